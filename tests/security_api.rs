//! Issue 10 (security), what the API itself must refuse, against a real server over
//! HTTP: values the agents cannot decode (finding 6), custom kinds in the built-in
//! group (finding 6), and deleting the namespaces the system runs on (finding 1, see
//! also `api_gc.rs`).

mod api_support;

use api_support::{TestServer, causes};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TASKS: &str = "/apis/corral.dev/v1/namespaces/default/tasks";

fn task(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "Task",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

/// Finding 6: `mem` 2^64 and a grace period of 2^32 were stored; the agent could not
/// decode the task, which never got a status while the agent retried forever. Every
/// integer now has the range of what reads it, and the 422 names the field.
#[tokio::test]
async fn integers_beyond_what_agents_decode_are_refused_naming_the_field() {
    let s = TestServer::start().await;
    let base = json!({"command": ["/bin/true"], "nodeName": "n1"});
    let cases = [
        ("mem", json!({"resources": {"mem": 18446744073709551616.0f64}}), "spec.resources.mem"),
        ("mem-unsafe", json!({"resources": {"mem": 9007199254740993u64}}), "spec.resources.mem"),
        ("grace", json!({"killGracePeriodSeconds": 4294967296u64}), "spec.killGracePeriodSeconds"),
        (
            "check",
            json!({"healthChecks": [{"command": ["true"], "intervalSeconds": 4294967296u64}]}),
            "spec.healthChecks[0].intervalSeconds",
        ),
    ];
    for (name, extra, field) in cases {
        let mut spec = base.clone();
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (code, body) = s.post(TASKS, &task(name, spec)).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert!(causes(&body).iter().any(|f| f == field), "{name}: expected {field} in {body}");
        let (code, _) = s.get(&format!("{TASKS}/{name}")).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{name}: nothing was stored");
    }
    // The largest values that fit are taken.
    let mut spec = base.clone();
    spec["resources"] = json!({"mem": 9007199254740991u64});
    spec["killGracePeriodSeconds"] = json!(4294967295u64);
    let (code, body) = s.post(TASKS, &task("fits", spec)).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    s.stop().await;
}

/// Finding 6: a definition could claim the built-in group, passing its kind for one of
/// the system's own.
#[tokio::test]
async fn custom_kinds_cannot_take_the_built_in_group() {
    let s = TestServer::start().await;
    let crd = json!({
        "apiVersion": "corral.dev/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "secrets.corral.dev"},
        "spec": {"group": "corral.dev", "version": "v1", "kind": "Secret", "plural": "secrets", "scope": "Namespaced"}
    });
    let (code, body) = s.post("/apis/corral.dev/v1/customresourcedefinitions", &crd).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(causes(&body).iter().any(|f| f == "spec.group"), "{body}");
    let (code, _) = s.get("/apis/corral.dev/v1/namespaces/default/secrets").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "no such kind is served");
    s.stop().await;
}
