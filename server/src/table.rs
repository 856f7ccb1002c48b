//! Server-side tables, as Kubernetes serves them to kubectl: a `GET` whose `Accept`
//! asks for `as=Table;g=meta.k8s.io` gets a `meta.k8s.io/v1` `Table` — NAME, the kind's
//! printer columns and AGE, each cell as `corral get` shows it — instead of the
//! objects, so that `kubectl get` prints the same columns as `corral get`.

use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use corral_api::KindInfo;
use corral_api::table::{age, now_unix, printer_cell};
use serde_json::{Value, json};

/// Whether the request asks for a table (any of the media types it accepts).
pub(crate) fn wanted(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    })
}

/// The table of `objects` of `kind`; `list_meta` (resourceVersion, continue) is the
/// list's, if they are one.
pub(crate) fn of(kind: &KindInfo, objects: &[Value], list_meta: Value) -> Value {
    let now = now_unix();
    let column = |name: &str, description: &str, priority: i32| json!({"name": name, "type": "string", "format": "", "description": description, "priority": priority});
    let mut columns = vec![column("Name", "The object's name, unique in its namespace.", 0)];
    for c in &kind.columns {
        columns.push(column(&c.name, c.description.as_deref().unwrap_or_default(), c.priority));
    }
    columns.push(column("Age", "Time since the object was created.", 0));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            for c in &kind.columns {
                let value = c.pointer().and_then(|p| o.pointer(&p));
                cells.push(Value::String(printer_cell(c.type_, value, now)));
            }
            cells.push(Value::String(age(o.pointer("/metadata/creationTimestamp").and_then(Value::as_str), now)));
            let metadata = o.get("metadata").cloned().unwrap_or_else(|| json!({}));
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": columns,
        "rows": rows})
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use corral_api::Resource as _;
    use corral_api::kinds::Node;

    use super::*;

    #[test]
    fn kubectl_s_accept_header_asks_for_a_table_and_a_plain_one_does_not() {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wanted(&h));
        h.insert(
            ACCEPT,
            HeaderValue::from_static(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            ),
        );
        assert!(wanted(&h));
    }

    #[test]
    fn a_table_has_name_the_kind_s_columns_and_age() {
        let node = json!({"metadata": {"name": "n1", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {}, "status": {"phase": "Ready", "capacity": {"cpus": 2.0, "mem": 1024}}});
        let t = of(&Node::kind_info(), &[node], json!({"resourceVersion": "7"}));
        let names: Vec<&str> =
            t["columnDefinitions"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names.first(), Some(&"Name"));
        assert_eq!(names.last(), Some(&"Age"));
        assert_eq!(names.len(), Node::kind_info().columns.len() + 2);
        let cells = t["rows"][0]["cells"].as_array().unwrap();
        assert_eq!(cells[0], "n1");
        assert!(cells.iter().any(|c| c == "Ready"), "{cells:?}");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "n1");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }
}
