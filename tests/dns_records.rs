//! The cluster DNS end to end, through the real `corral server` and the real `dig`:
//! a service's A and SRV records and its tasks' names follow its instances as it
//! scales; a `DnsRecord` is served and says so in its status; `corral dns records`
//! lists everything with its source; names that cannot be made are reported, never
//! cut short; a service with a readiness check answers with an instance only once it
//! passed the check. Nodes are registered by the test and a SIMULATED agent reports tasks as
//! running (see dns_support).

mod dns_support;

use dns_support::{Server, dig_short, dig_status, until_answer};
use reqwest::Method;
use serde_json::{Value, json};

const SERVICES: &str = "/apis/corral.dev/v1/namespaces/default/services";
const RECORDS: &str = "/apis/corral.dev/v1/namespaces/default/dnsrecords";

fn service(name: &str, instances: u32, port: &str) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
        "spec": {"instances": instances, "constraints": [["hostname", "UNIQUE"]],
                 "template": {"image": "busybox", "command": ["sleep", "3600"], "resources": {"cpus": 0.1, "mem": 32},
                              "ports": [{"name": port}]}}})
}

fn record(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "DnsRecord", "metadata": {"name": name, "namespace": "default"},
        "spec": spec})
}

fn server() -> Server {
    Server::start(&["--dns-listen", "127.0.0.1:0", "--dns-upstream", "refuse", "--controllers", "all"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_and_its_tasks_resolve_and_the_answer_follows_scaling() {
    let s = server();
    let dns = s.dns.expect("dns");
    for (n, ip) in [("n1", "127.0.1.1"), ("n2", "127.0.1.2"), ("n3", "127.0.1.3")] {
        s.node(n, ip).await;
    }
    assert_eq!(dig_short(dns, "n2.node.corral.", "A"), vec!["127.0.1.2"]);
    assert_eq!(dig_short(dns, "leader.corral.", "A"), vec!["127.0.0.1"]);

    s.create(SERVICES, &service("web", 3, "http")).await;
    let three = vec!["127.0.1.1".to_string(), "127.0.1.2".into(), "127.0.1.3".into()];
    until_answer(&s, "web.default.corral.", "A", "three instances", |a| a == three).await;

    // SRV: one per instance, at its host port, on its task's name, which resolves.
    let srv = until_answer(&s, "_http._tcp.web.default.corral.", "SRV", "three SRV records", |a| a.len() == 3).await;
    for line in &srv {
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 4, "{line}");
        let port: u16 = parts[2].parse().expect("a port");
        assert!((31000..=31099).contains(&port), "the host port from the offer: {line}");
        let target = parts[3];
        assert!(target.ends_with(".default.task.corral."), "{line}");
        let a = dig_short(dns, target, "A");
        assert_eq!(a.len(), 1, "the task's own name resolves: {target} → {a:?}");
        assert!(three.contains(&a[0]), "{a:?}");
    }
    assert_eq!(dig_status(dns, "nothing.default.corral.", "A"), "NXDOMAIN");
    assert_eq!(dig_status(dns, "web.default.corral.", "TXT"), "NOERROR", "NODATA: the name exists");

    // Scale down: the answer follows.
    let (code, out) = s.call(Method::PATCH, &format!("{SERVICES}/web"), Some(&json!({"spec": {"instances": 1}}))).await;
    assert_eq!(code, 200, "{out}");
    let one = until_answer(&s, "web.default.corral.", "A", "one instance", |a| a.len() == 1).await;
    until_answer(&s, "_http._tcp.web.default.corral.", "SRV", "one SRV record", |a| a.len() == 1).await;
    assert!(three.contains(&one[0]), "{one:?}");

    // Up again.
    let (code, out) = s.call(Method::PATCH, &format!("{SERVICES}/web"), Some(&json!({"spec": {"instances": 2}}))).await;
    assert_eq!(code, 200, "{out}");
    until_answer(&s, "web.default.corral.", "A", "two instances", |a| a.len() == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_record_is_served_listed_and_its_status_says_so() {
    let s = server();
    let dns = s.dns.expect("dns");
    s.create(RECORDS, &record("www", json!({"name": "www", "type": "A", "values": ["192.0.2.10", "192.0.2.11"]})))
        .await;
    s.create(RECORDS, &record("alias", json!({"name": "alias", "type": "CNAME", "values": ["www"]}))).await;
    s.create(RECORDS, &record("note", json!({"name": "@", "type": "TXT", "values": ["hello corral"], "ttl": 60})))
        .await;
    s.create(
        RECORDS,
        &record("db", json!({"name": "_pg._tcp.db", "type": "SRV", "srv": [{"port": 5432, "target": "www"}]})),
    )
    .await;
    until_answer(&s, "www.default.corral.", "A", "the A record", |a| a == ["192.0.2.10", "192.0.2.11"]).await;
    until_answer(&s, "alias.default.corral.", "CNAME", "the CNAME", |a| a == ["www.default.corral."]).await;
    until_answer(&s, "default.corral.", "TXT", "the TXT", |a| a == ["\"hello corral\""]).await;
    until_answer(&s, "_pg._tcp.db.default.corral.", "SRV", "the SRV", |a| a == ["0 0 5432 www.default.corral."]).await;

    let (_, www) = s.call(Method::GET, &format!("{RECORDS}/www"), None).await;
    assert_eq!(www["status"]["served"], json!(["www.default.corral."]), "{www:#}");
    assert_eq!(www["status"]["conditions"][0]["type"], "Served", "{www:#}");
    assert_eq!(www["status"]["conditions"][0]["status"], "True", "{www:#}");

    // `corral dns records`: a table with the source of each record, and JSON.
    let (code, table, err) = s.corral(&["dns", "records"]);
    assert_eq!(code, 0, "{err}");
    let header = table.lines().next().unwrap_or_default();
    for col in ["NAME", "TYPE", "TTL", "DATA", "SOURCE"] {
        assert!(header.contains(col), "{table}");
    }
    let row = table.lines().find(|l| l.starts_with("www.default.corral.")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("192.0.2.10") && row.contains("DnsRecord/default/www"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("leader.corral.") && l.contains("Server/leader")), "{table}");
    let (code, json_out, err) = s.corral(&["dns", "records", "www.default", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&json_out).expect("json");
    let items = v["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{v:#}");
    assert!(items.iter().all(|i| i["name"] == "www.default.corral." && i["type"] == "A"), "{v:#}");
    assert_eq!(items[0]["source"], json!({"kind": "DnsRecord", "namespace": "default", "name": "www"}));
    let (code, yaml, _) = s.corral(&["dns", "records", "note", "-o", "yaml"]);
    assert_eq!(code, 0);
    assert!(yaml.contains("ttl: 60") && yaml.contains("hello corral"), "{yaml}");

    // Deleted: no longer served.
    let (code, _) = s.call(Method::DELETE, &format!("{RECORDS}/www"), None).await;
    assert_eq!(code, 200);
    until_answer(&s, "www.default.corral.", "A", "the record gone", |a| a.is_empty()).await;
    assert_eq!(dig_status(dns, "www.default.corral.", "A"), "NXDOMAIN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_cannot_be_made_are_reported_on_their_object_never_cut() {
    let s = server();
    let dns = s.dns.expect("dns");
    s.node("n1", "127.0.1.1").await;
    // A port name of 63 characters makes an SRV label of 64 (`_` + name).
    let long_port = "p".repeat(63);
    s.create(SERVICES, &service("api", 1, &long_port)).await;
    // The service itself still resolves; its SRV name is reported on it.
    until_answer(&s, "api.default.corral.", "A", "the service", |a| a == ["127.0.1.1"]).await;
    let events = "/apis/corral.dev/v1/namespaces/default/events";
    let event = corral_testkit::within_patience(async || {
        let (_, list) = s.call(Method::GET, events, None).await;
        list["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|e| e["spec"]["reason"] == "InvalidName" && e["spec"]["involvedObject"]["name"] == "api")
                .cloned()
        })
    })
    .await
    .unwrap_or_else(|| panic!("an InvalidName event on service api\nlog:\n{}", s.log_text()));
    let message = event["spec"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("at most 63") && message.contains(&long_port), "{message}");
    assert_eq!(event["spec"]["type"], "Warning");
    // Nothing shortened is served in its place.
    let (_, listed, _) = s.corral(&["dns", "records", "api", "-o", "json"]);
    let v: Value = serde_json::from_str(&listed).expect("json");
    assert!(v["items"].as_array().is_some_and(|i| i.iter().all(|r| r["type"] != "SRV")), "{v:#}");

    // A DnsRecord whose label is too long says why in its status, and is not served.
    let long = "a".repeat(64);
    s.create(RECORDS, &record("long", json!({"name": long, "type": "A", "values": ["192.0.2.1"]}))).await;
    let status = corral_testkit::within_patience(async || {
        let (_, r) = s.call(Method::GET, &format!("{RECORDS}/long"), None).await;
        let c = r["status"]["conditions"][0].clone();
        (c["status"] == "False").then_some(c)
    })
    .await
    .expect("a status condition on the DnsRecord");
    assert_eq!(status["reason"], "InvalidName", "{status:#}");
    assert!(status["message"].as_str().is_some_and(|m| m.contains("at most 63")), "{status:#}");
    assert_eq!(dig_status(dns, &format!("{}.default.corral.", &long[..63]), "A"), "NXDOMAIN", "never cut short");

    // Two records with one name: the older serves, the newer says who holds it.
    s.create(RECORDS, &record("first", json!({"name": "shared", "type": "A", "values": ["192.0.2.2"]}))).await;
    until_answer(&s, "shared.default.corral.", "A", "the first record", |a| a == ["192.0.2.2"]).await;
    s.create(RECORDS, &record("second", json!({"name": "shared", "type": "A", "values": ["192.0.2.3"]}))).await;
    let taken = corral_testkit::within_patience(async || {
        let (_, r) = s.call(Method::GET, &format!("{RECORDS}/second"), None).await;
        let c = r["status"]["conditions"][0].clone();
        (c["status"] == "False").then_some(c)
    })
    .await
    .expect("the second record's status");
    assert_eq!(taken["reason"], "NameTaken", "{taken:#}");
    assert!(taken["message"].as_str().is_some_and(|m| m.contains("DnsRecord default/first")), "{taken:#}");
    assert_eq!(dig_short(dns, "shared.default.corral.", "A"), vec!["192.0.2.2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_with_a_readiness_check_answers_only_once_its_instance_passed_it() {
    let s = server();
    s.node("n1", "127.0.1.1").await;
    let mut svc = service("gated", 1, "http");
    svc["spec"]["readinessCheck"] =
        json!({"portName": "http", "path": "/ready", "intervalSeconds": 1, "timeoutSeconds": 1});
    s.create(SERVICES, &svc).await;

    // The instance runs (its own name resolves: the DNS controller saw it running),
    // but nothing answers on its port: the service has no address yet.
    let tasks = "/apis/corral.dev/v1/namespaces/default/tasks";
    let task = corral_testkit::within_patience(async || {
        dns_support::agent_pass(&s).await;
        let (_, list) = s.call(Method::GET, tasks, None).await;
        list["items"].as_array().and_then(|items| items.iter().find(|t| t["status"]["phase"] == "RUNNING").cloned())
    })
    .await
    .expect("the instance runs");
    let name = task["metadata"]["name"].as_str().expect("a name").to_string();
    let port = task["status"]["ports"]["http"].as_u64().expect("a host port") as u16;
    until_answer(&s, &format!("{name}.default.task.corral."), "A", "the task's name", |a| a == ["127.0.1.1"]).await;
    let dns = s.dns.expect("dns");
    assert!(dig_short(dns, "gated.default.corral.", "A").is_empty(), "not ready, not answered");

    // Its readiness endpoint answers 200: the service answers with it.
    let listener = tokio::net::TcpListener::bind(("127.0.1.1", port)).await.expect("the instance's port is free");
    let ready = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        }
    });
    until_answer(&s, "gated.default.corral.", "A", "the ready instance", |a| a == ["127.0.1.1"]).await;
    ready.abort();
}
