//! The audit log of `corral server` (issue 10): who did what to which object, and the
//! answer, one JSON line each; writes and refusals are kept, plain reads are not
//! unless asked for, and no credential reaches the file.

mod hardening_support;

use hardening_support::Server;
use serde_json::{Value, json};

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_refusals_are_audited_with_who_what_and_the_answer() {
    let s = Server::start().await;
    let log = s._dir.path().join("data/audit.log");
    s.create_configmap("audited", json!({"k": "v"})).await;
    let read = s.http.get(s.configmap_url("audited")).send().await.expect("GET");
    assert_eq!(read.status(), 200);
    let anonymous = reqwest::Client::new().delete(s.configmap_url("audited")).send().await.expect("DELETE");
    assert_eq!(anonymous.status(), 401);
    let tokens = s.http.get(format!("{}/apis/corral.dev/v1/tokens", s.base)).send().await.expect("list tokens");
    assert_eq!(tokens.status(), 200);

    let entries = corral_testkit::eventually("the audit lines are written", async || {
        let entries = lines(&log);
        (entries.len() >= 3).then_some(entries)
    })
    .await;
    let create = entries.iter().find(|e| e["verb"] == "create").expect("the create is audited");
    assert_eq!(create["user"], "admin");
    assert!(create["groups"].as_array().unwrap().contains(&json!("system:masters")));
    assert_eq!(
        (&create["resource"], &create["namespace"], &create["name"], &create["code"]),
        (&json!("configmaps"), &json!("default"), &Value::Null, &json!(201)),
        "{create}"
    );
    assert_eq!(create["decision"], "allowed");
    assert_eq!(create["authorizedBy"], "ClusterRoleBinding/cluster-admin");
    let refused = entries.iter().find(|e| e["code"] == 401).expect("the refusal is audited");
    assert_eq!(
        (&refused["verb"], &refused["name"], &refused["decision"]),
        (&json!("delete"), &json!("audited"), &json!("unauthenticated"))
    );
    assert!(refused["user"].is_null());
    assert!(entries.iter().any(|e| e["verb"] == "list" && e["resource"] == "tokens"), "reads of tokens are kept");
    assert!(!entries.iter().any(|e| e["verb"] == "get" && e["resource"] == "configmaps"), "plain reads are not");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&s.token), "a credential reached the audit log");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
}
