//! `corral describe`: one object, for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use corral_api::apply::is_last_applied;
use corral_api::kinds::{Event, EventType};
use corral_api::{DynamicObject, KindInfo};
use corral_client::{Api, DEFAULT_PAGE_SIZE, ListParams};

use super::Ctx;
use super::args::DescribeArgs;
use super::output::{age, now_unix, to_yaml};

pub(crate) async fn run(ctx: &Ctx, args: DescribeArgs) -> anyhow::Result<u8> {
    let kind = ctx.resolve(&args.kind).await?;
    let namespace = kind.namespaced.then(|| args.ns.or_default().to_string());
    let names = if args.names.is_empty() {
        let list = ctx.client.list_all(&kind, namespace.as_deref(), &ListParams::default(), DEFAULT_PAGE_SIZE).await?;
        if list.items.is_empty() {
            let place = namespace.as_deref().map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
            eprintln!("No {} found{place}.", kind.plural);
        }
        list.items.into_iter().map(|o| o.metadata.name).collect()
    } else {
        args.names.clone()
    };
    let mut failed = false;
    let mut first = true;
    for name in &names {
        match ctx.client.get(&kind, namespace.as_deref(), name).await {
            Ok(obj) => {
                if !first {
                    outln!()?;
                }
                first = false;
                out!("{}", describe(&kind, &obj, now_unix())?)?;
                out!("{}", events_about(ctx, &obj).await)?;
            }
            Err(e) if e.is_not_found() => {
                failed = true;
                let place = namespace.as_deref().map(|ns| format!(" in namespace {ns:?}")).unwrap_or_default();
                eprintln!(
                    "error: {} {name:?} not found{place}; list them with `corral get {}`",
                    kind.kind, kind.plural
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(u8::from(failed))
}

/// The `Events:` section: events recorded about this incarnation of the object,
/// oldest first, selected by the server. Best effort: describing works on servers
/// without events too.
async fn events_about(ctx: &Ctx, obj: &DynamicObject) -> String {
    let ns = obj.metadata.namespace.as_deref().unwrap_or("default");
    let events: Api<Event> = Api::namespaced(ctx.client.clone(), ns);
    let about = ListParams::default()
        .fields(&format!("spec.involvedObject.name={},spec.involvedObject.kind={}", obj.metadata.name, obj.kind));
    let Ok(list) = events.list(&about).await else { return String::new() };
    let mut rows: Vec<(String, String, String, String, String)> = list
        .items
        .iter()
        .filter(|e| {
            let seen = e.spec.involved_object.uid.as_deref();
            obj.metadata.uid.as_deref().is_none_or(|u| seen.is_none_or(|x| x == u))
        })
        .map(|e| {
            let s = &e.spec;
            let ty = match s.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            };
            let from = s.source.as_ref().and_then(|c| c.component.as_deref()).unwrap_or_default();
            (
                s.last_timestamp.clone().unwrap_or_default(),
                ty.to_string(),
                s.reason.clone(),
                format!("{from} (x{})", s.count.unwrap_or(1)),
                s.message.clone(),
            )
        })
        .collect();
    if rows.is_empty() {
        return "Events:           <none>\n".to_string();
    }
    rows.sort();
    let mut out = String::from("Events:\n");
    out.push_str(&format!("  {:<21} {:<8} {:<20} {:<28} {}\n", "LAST SEEN", "TYPE", "REASON", "FROM", "MESSAGE"));
    for (when, ty, reason, from, message) in rows {
        out.push_str(&format!("  {when:<21} {ty:<8} {reason:<20} {from:<28} {message}\n"));
    }
    out
}

/// The description of `obj`: metadata as aligned fields, then spec and status as
/// indented YAML.
pub(crate) fn describe(kind: &KindInfo, obj: &DynamicObject, now: i64) -> anyhow::Result<String> {
    let m = &obj.metadata;
    let mut out = String::new();
    let mut field = |label: &str, value: &str| {
        let _ = writeln!(out, "{:<18}{value}", format!("{label}:"));
    };
    field("Name", &m.name);
    if let Some(ns) = &m.namespace {
        field("Namespace", ns);
    }
    field("Kind", &format!("{} ({})", kind.kind, obj.api_version));
    if let Some(uid) = &m.uid {
        field("UID", uid);
    }
    if let Some(ts) = &m.creation_timestamp {
        field("Created", &format!("{ts} ({} ago)", age(Some(ts), now)));
    }
    if let Some(rv) = &m.resource_version {
        field("Resource Version", rv);
    }
    if let Some(g) = m.generation {
        field("Generation", &g.to_string());
    }
    if let Some(ts) = &m.deletion_timestamp {
        field("Deletion Requested", &format!("{ts} ({} ago)", age(Some(ts), now)));
    }
    write_map(&mut out, "Labels", &m.labels);
    let annotations: BTreeMap<String, String> =
        m.annotations.iter().filter(|(k, _)| !is_last_applied(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    write_map(&mut out, "Annotations", &annotations);
    let owners: Vec<String> = m
        .owner_references
        .iter()
        .map(|o| {
            let controller = if o.controller == Some(true) { " (controller)" } else { "" };
            format!("{}/{} uid={}{controller}", o.kind, o.name, o.uid)
        })
        .collect();
    write_list(&mut out, "Owner References", &owners);
    write_list(&mut out, "Finalizers", &m.finalizers);
    for (label, key) in [("Spec", "spec"), ("Status", "status")] {
        match obj.rest.get(key) {
            Some(v) if !is_empty(v) => {
                let _ = writeln!(out, "{label}:");
                for line in to_yaml(v)?.lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
            _ => {
                let _ = writeln!(out, "{:<18}<none>", format!("{label}:"));
            }
        }
    }
    // Custom kinds may carry other top-level fields; show them too.
    for (key, v) in obj.rest.iter().filter(|(k, _)| *k != "spec" && *k != "status") {
        let _ = writeln!(out, "{key}:");
        for line in to_yaml(v)?.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    Ok(out)
}

fn is_empty(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn write_map(out: &mut String, label: &str, map: &BTreeMap<String, String>) {
    let items: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    write_list(out, label, &items);
}

fn write_list(out: &mut String, label: &str, items: &[String]) {
    if items.is_empty() {
        let _ = writeln!(out, "{:<18}<none>", format!("{label}:"));
        return;
    }
    for (i, item) in items.iter().enumerate() {
        let head = if i == 0 { format!("{label}:") } else { String::new() };
        let _ = writeln!(out, "{head:<18}{item}");
    }
}

#[cfg(test)]
mod tests {
    use corral_api::apply::LAST_APPLIED_ANNOTATION;

    use super::*;

    #[test]
    fn description_shows_metadata_then_spec_as_yaml() {
        let kind = corral_api::Registry::builtin().resolve("cm").map(|k| (*k).clone()).unwrap();
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "corral.dev/v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"},
                         "annotations": {LAST_APPLIED_ANNOTATION: "{}"}, "finalizers": ["x.dev/cleanup"],
                         "creationTimestamp": "1970-01-01T00:00:00Z"},
            "spec": {"data": {"k": "v"}}
        }))
        .unwrap();
        let text = describe(&kind, &obj, 90).unwrap();
        assert!(text.contains("Name:             web\n"), "{text}");
        assert!(text.contains("Labels:           app=web\n                  tier=front\n"), "{text}");
        assert!(text.contains("Annotations:      <none>\n"), "{text}");
        assert!(text.contains("Finalizers:       x.dev/cleanup\n"), "{text}");
        assert!(text.contains("(90s ago)"), "{text}");
        assert!(text.contains("Spec:\n  data:\n    k: v\n"), "{text}");
        assert!(text.contains("Status:           <none>\n"), "{text}");
    }
}
