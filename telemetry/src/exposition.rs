//! Serving Prometheus registries: OpenMetrics to scrapers that ask for it, otherwise
//! the classic Prometheus text format (what `promtool` and older scrapers read).
//! Shared by every Corral process that exposes `/metrics`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

/// Content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of Prometheus text 0.0.4.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `registry` as OpenMetrics text, without the closing `# EOF`, so that several can
/// be joined into one exposition.
///
/// # Errors
/// Only if a metric fails to encode itself.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    if let Some(body) = text.strip_suffix("# EOF\n") {
        text.truncate(body.len());
    }
    Ok(text)
}

/// Joins encoded registries (see [`encode`]) into one exposition for a scraper whose
/// `Accept` header is `accept`: the body and its content type. A family that appears
/// more than once (two controllers of one process registering the same families under
/// their own labels, or two parts) is merged into one, since a scraper rejects a
/// family whose metadata repeats.
pub fn join(parts: &[String], accept: Option<&str>) -> (String, &'static str) {
    let mut text = merge_families(&parts.concat());
    text.push_str("# EOF\n");
    if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        (text, OPENMETRICS)
    } else {
        (openmetrics_to_prometheus(&text), PROMETHEUS_TEXT)
    }
}

/// Encodes `registries`, one after the other, for a scraper whose `Accept` header is
/// `accept`: the body and its content type.
///
/// # Errors
/// Only if a metric fails to encode itself.
pub fn render(registries: &[&Registry], accept: Option<&str>) -> Result<(String, &'static str), std::fmt::Error> {
    let parts = registries.iter().map(|r| encode(r)).collect::<Result<Vec<_>, _>>()?;
    Ok(join(&parts, accept))
}

/// The `/metrics` answer made of encoded registries (see [`encode`]), negotiated from
/// the request's headers.
pub fn respond(parts: &[String], headers: &HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (body, content_type) = join(parts, accept);
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The whole `/metrics` answer for `registries`, negotiated from the request's
/// headers; a 500 (logged) if a metric fails to encode.
pub fn metrics_response(registries: &[&Registry], headers: &HeaderMap) -> Response {
    match registries.iter().map(|r| encode(r)).collect::<Result<Vec<_>, _>>() {
        Ok(parts) => respond(&parts, headers),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n").into_response()
        }
    }
}

/// A router answering `GET /metrics` from `registry` and `GET /healthz` with `ok`: all
/// a process needs that serves nothing else (a controller run on its own).
pub fn router(registry: crate::SharedRegistry) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move |headers: HeaderMap| {
                let registry = registry.clone();
                async move { registry.read(|r| metrics_response(&[r], &headers)) }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
}

/// Groups OpenMetrics text (without `# EOF`) by family: each family's metadata once,
/// at its first appearance, followed by all its samples, wherever they appeared.
fn merge_families(text: &str) -> String {
    let mut order: Vec<&str> = Vec::new();
    let mut families: std::collections::HashMap<&str, (Vec<&str>, Vec<&str>)> = std::collections::HashMap::new();
    let mut current: Option<&str> = None;
    for line in text.lines() {
        let family = ["# HELP ", "# TYPE ", "# UNIT "]
            .iter()
            .find_map(|prefix| line.strip_prefix(prefix))
            .map(|rest| rest.split_once(' ').map_or(rest, |(name, _)| name));
        match (family, current) {
            (Some(name), _) => {
                current = Some(name);
                let (meta, _) = families.entry(name).or_insert_with(|| {
                    order.push(name);
                    (Vec::new(), Vec::new())
                });
                // A repeat of the family's HELP or TYPE line is dropped.
                if !meta.iter().any(|m| m.split(' ').nth(1) == line.split(' ').nth(1)) {
                    meta.push(line);
                }
            }
            (None, Some(name)) => {
                if let Some((_, samples)) = families.get_mut(name) {
                    samples.push(line);
                }
            }
            // Samples before any metadata (none are encoded so) keep their place.
            (None, None) => {
                order.push(line);
                families.entry(line).or_insert_with(|| (vec![line], Vec::new()));
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    for name in order {
        if let Some((meta, samples)) = families.remove(name) {
            for line in meta.iter().chain(&samples) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: counter families are named
/// after their `_total` samples, and `# EOF` / `# UNIT` lines go.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;

    fn registry(name: &str) -> Registry {
        let mut r = Registry::default();
        let c: Counter = Counter::default();
        c.inc();
        r.register(format!("{name}_things"), "Things done", c);
        r.register(format!("{name}_level"), "A level", Gauge::<i64>::default());
        r
    }

    #[test]
    fn several_registries_make_one_exposition_with_one_eof() {
        let (a, b) = (registry("a"), registry("b"));
        let (text, ct) = render(&[&a, &b], Some("application/openmetrics-text")).expect("encodes");
        assert_eq!(ct, OPENMETRICS);
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("a_things_total 1") && text.contains("b_things_total 1"), "{text}");
    }

    #[test]
    fn prometheus_text_names_counter_families_after_their_samples() {
        let a = registry("a");
        let (text, ct) = render(&[&a], None).expect("encodes");
        assert_eq!(ct, PROMETHEUS_TEXT);
        assert!(text.contains("# TYPE a_things_total counter"), "{text}");
        assert!(text.contains("# HELP a_things_total Things done"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn one_family_registered_under_two_labels_is_exposed_once_with_both_samples() {
        use std::borrow::Cow;
        let mut r = Registry::default();
        for controller in ["tasks", "volumes"] {
            let sub = r.sub_registry_with_label((Cow::Borrowed("controller"), Cow::Owned(controller.to_string())));
            let c: Counter = Counter::default();
            c.inc();
            sub.register("reconciles", "Reconciles finished", c);
            sub.register("depth", "Keys waiting", Gauge::<i64>::default());
        }
        let (text, _) = render(&[&r], None).expect("encodes");
        assert_eq!(text.matches("# HELP reconciles_total").count(), 1, "{text}");
        assert_eq!(text.matches("# TYPE depth gauge").count(), 1, "{text}");
        let family: Vec<&str> =
            text.lines().skip_while(|l| !l.starts_with("# HELP reconciles_total")).take(4).collect();
        assert!(family[2].starts_with("reconciles_total{") && family[3].starts_with("reconciles_total{"), "{text}");
        assert!(text.contains("controller=\"tasks\"") && text.contains("controller=\"volumes\""), "{text}");
    }
}
