//! Serving a Prometheus registry: OpenMetrics to scrapers that ask for it, otherwise
//! the classic Prometheus text format (what `promtool` and older scrapers read).
//! Shared by every Corral server that exposes `/metrics`.

use prometheus_client::registry::Registry;

/// Content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of Prometheus text 0.0.4.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Encodes `registry` for a scraper whose `Accept` header is `accept`: the body and
/// its content type.
///
/// # Errors
/// Only if a metric fails to encode itself.
pub fn render(registry: &Registry, accept: Option<&str>) -> Result<(String, &'static str), std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        (text, OPENMETRICS)
    } else {
        (openmetrics_to_prometheus(&text), PROMETHEUS_TEXT)
    })
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
