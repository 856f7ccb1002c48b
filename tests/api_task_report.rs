//! A node's report of many task statuses in one request
//! (`POST /apis/corral.dev/v1/nodes/{node}/taskstatus`), against a real server over
//! HTTP: each entry written or refused on its own, the report refused whole only for
//! what concerns it whole, and the runtime's `StatusReporter` sending a burst of
//! writes in fewer requests than writes.

mod api_support;

use api_support::{TestServer, rv};
use corral_api::kinds::task::{TaskPhase, TaskStatus};
use corral_api::task_report::{MAX_REPORT_ENTRIES, TaskStatusEntry};
use corral_runtime::StatusReporter;
use reqwest::StatusCode;
use serde_json::{Value, json};

const V1: &str = "/apis/corral.dev/v1";
const TASKS: &str = "/apis/corral.dev/v1/namespaces/default/tasks";

async fn task(s: &TestServer, name: &str, node: &str) -> Value {
    let t = json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": name},
        "spec": {"command": ["sleep", "1"], "nodeName": node}});
    let (code, body) = s.post(TASKS, &t).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    body
}

fn entry(name: &str, rv: Option<&str>, status: Value) -> Value {
    let mut e = json!({"namespace": "default", "name": name, "status": status});
    if let Some(rv) = rv {
        e["resourceVersion"] = json!(rv);
    }
    e
}

fn running() -> Value {
    json!({"phase": "RUNNING", "message": "started"})
}

/// `corral_http_requests` served with `method`, summed over codes, from `/metrics`.
async fn requests(s: &TestServer, method: &str) -> u64 {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(s.url("/metrics"))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = format!("method=\"{method}\"");
    text.lines()
        .filter(|l| l.starts_with("corral_http_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn each_entry_is_written_or_refused_on_its_own_and_the_answer_says_which() {
    let s = TestServer::start().await;
    s.register_node("n1", 4.0, 4096).await;
    s.register_node("n2", 4.0, 4096).await;
    for name in ["t1", "t2", "t3"] {
        task(&s, name, "n1").await;
    }
    let t4 = task(&s, "t4", "n1").await;
    task(&s, "elsewhere", "n2").await;
    let report = json!({"entries": [
        entry("t1", None, running()),
        entry("t2", Some("1"), running()),
        entry("ghost", None, running()),
        entry("elsewhere", None, running()),
        entry("t3", None, json!({"phase": "SPRINTING", "bogus": 1})),
        entry("t1", None, json!({"phase": "FINISHED"})),
        entry("t4", Some(&rv(&t4)), running()),
    ]});
    let path = format!("{V1}/nodes/n1/taskstatus");

    // A dry run judges every entry and writes none.
    let (code, dry) = s.post(&format!("{path}?dryRun=All"), &report).await;
    assert_eq!(code, StatusCode::OK, "{dry}");
    assert_eq!(dry["entries"][0]["resourceVersion"], json!(rv(&s.get(&format!("{TASKS}/t1")).await.1)));
    let (_, t1) = s.get(&format!("{TASKS}/t1")).await;
    assert!(t1["status"].is_null(), "a dry run wrote {t1}");

    let (code, answer) = s.post(&path, &report).await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let entries = answer["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 7, "{answer}");
    let codes: Vec<Value> = entries.iter().map(|e| e["error"]["code"].clone()).collect();
    assert_eq!(codes, vec![json!(null), json!(409), json!(404), json!(403), json!(422), json!(422), json!(null)]);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["name"], report["entries"][i]["name"], "outcomes come in the order sent: {answer}");
    }
    let invalid = entries[4]["error"]["message"].as_str().unwrap();
    assert!(invalid.contains("entries[4].status.phase") && invalid.contains("entries[4].status.bogus"), "{invalid}");
    assert!(entries[3]["error"]["message"].as_str().unwrap().contains("not bound to node \"n1\""), "{answer}");
    assert!(entries[5]["error"]["message"].as_str().unwrap().contains("earlier entry"), "{answer}");

    // Written: t1 and t4, each at the revision the answer names; the rest untouched.
    for (name, at) in [("t1", 0), ("t4", 6)] {
        let (_, t) = s.get(&format!("{TASKS}/{name}")).await;
        assert_eq!(t["status"]["phase"], "RUNNING", "{t}");
        assert_eq!(json!(rv(&t)), entries[at]["resourceVersion"], "{t}");
    }
    for name in ["t2", "t3", "elsewhere"] {
        let (_, t) = s.get(&format!("{TASKS}/{name}")).await;
        assert!(t["status"].is_null(), "{name} was written: {t}");
    }
    // The same status again writes nothing: the revision stays.
    let (_, again) = s.post(&path, &json!({"entries": [entry("t1", None, running())]})).await;
    assert_eq!(again["entries"][0]["resourceVersion"], entries[0]["resourceVersion"], "{again}");

    // Refused whole: no such node, too many entries, not a report.
    let (code, body) = s.post(&format!("{V1}/nodes/n9/taskstatus"), &report).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    let many: Vec<Value> = (0..=MAX_REPORT_ENTRIES).map(|i| entry(&format!("t{i}"), None, running())).collect();
    let (code, body) = s.post(&path, &json!({ "entries": many })).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (code, body) = s.post(&path, &json!({"items": []})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("TaskStatusReport"), "{body}");
    let (_, t2) = s.get(&format!("{TASKS}/t2")).await;
    assert!(t2["status"].is_null(), "a refused report wrote {t2}");
    s.stop().await;
}

/// A burst of status writes through one node's reporter goes out in far fewer
/// requests than writes, and every write lands. One thread, so that the burst is
/// made before the reporter's first request can leave.
#[tokio::test(flavor = "current_thread")]
async fn a_reporter_sends_a_burst_of_writes_in_few_reports() {
    let s = TestServer::start().await;
    s.register_node("n1", 64.0, 65536).await;
    const BURST: usize = 40;
    let mut tasks = Vec::new();
    for i in 0..BURST {
        tasks.push(task(&s, &format!("b{i}"), "n1").await);
    }
    let reporter = StatusReporter::new(s.api(), "n1");
    let before = requests(&s, "POST").await;
    let writes = tasks.iter().map(|t| {
        let entry = TaskStatusEntry {
            namespace: "default".into(),
            name: t["metadata"]["name"].as_str().unwrap().into(),
            resource_version: Some(rv(t)),
            status: TaskStatus { phase: TaskPhase::Running, ..Default::default() },
        };
        reporter.write(entry)
    });
    let written = futures::future::join_all(writes).await;
    let sent = requests(&s, "POST").await - before;
    for (t, w) in tasks.iter().zip(&written) {
        let revision = w.as_ref().unwrap_or_else(|e| panic!("{}: {e}", t["metadata"]["name"]));
        let (_, now) = s.get(&format!("{TASKS}/{}", t["metadata"]["name"].as_str().unwrap())).await;
        assert_eq!(now["status"]["phase"], "RUNNING", "{now}");
        assert_eq!(rv(&now), revision.to_string());
    }
    assert!((1..=2).contains(&sent), "{BURST} writes went in {sent} requests");
    // A stale write is refused as the single write would be: a conflict.
    let stale = TaskStatusEntry {
        namespace: "default".into(),
        name: "b0".into(),
        resource_version: Some(rv(&tasks[0])),
        status: TaskStatus { phase: TaskPhase::Finished, ..Default::default() },
    };
    let e = reporter.write(stale).await.expect_err("stale");
    assert!(e.is_conflict(), "{e}");
    s.stop().await;
}
