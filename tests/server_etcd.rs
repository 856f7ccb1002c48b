//! `corral server --store etcd://…`: the real binary on a real etcd. Objects written
//! and watched through the HTTP API live in etcd: a server restarted on another data
//! directory finds them as they were and goes on from their revisions.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `corral server` on `store`, with its data directory in `dir`, on a port of
/// its own choosing (`127.0.0.1:0`: a port picked beforehand could be taken by a
/// parallel test's process first); the server and its URL once it listens.
fn start(dir: &std::path::Path, store: &str) -> (Server, String) {
    let log = dir.join("server.log");
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["server", "--listen", "127.0.0.1:0", "--store", store, "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "warn,corral_server=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn corral server"),
    );
    let url = corral_testkit::wait_logged(&mut server.0, &log, "listening url=");
    (server, url)
}

/// A client with the administrator's token the server wrote into `dir`, once the
/// server is healthy.
async fn admin(dir: &std::path::Path, base: &str) -> reqwest::Client {
    let anonymous = reqwest::Client::new();
    corral_testkit::eventually(&format!("the server at {base} is healthy"), async || {
        anonymous.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()).then_some(())
    })
    .await;
    let config = corral_client::Config::from_kubeconfig(&dir.join("admin.conf")).expect("admin.conf");
    corral_testkit::authorized_http(&config.token.expect("a token"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_etcd_serves_writes_and_watches_and_a_restarted_one_finds_them() {
    let etcd_dir = tempfile::tempdir().unwrap();
    let (etcd, _version) = corral_bench::procs::start_etcd(etcd_dir.path()).await.expect("etcd");
    let store = format!("etcd://{}", etcd.addr);
    let url = "/apis/corral.dev/v1/namespaces/default/configmaps";

    let first_dir = tempfile::tempdir().unwrap();
    let (server, base) = start(first_dir.path(), &store);
    let http = admin(first_dir.path(), &base).await;
    let list: Value = http.get(format!("{base}{url}")).send().await.unwrap().json().await.unwrap();
    let from = list["metadata"]["resourceVersion"].as_str().expect("a list's revision").to_string();
    let mut watch = http.get(format!("{base}{url}?watch=true&resourceVersion={from}")).send().await.unwrap();
    assert!(watch.status().is_success(), "{}", watch.status());
    let body = json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
        "metadata": {"name": "kept"}, "spec": {"data": {"v": "1"}}});
    let resp = http.post(format!("{base}{url}")).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let created: Value = resp.json().await.unwrap();
    // The watch sees it, at the revision the create answered.
    let mut seen = String::new();
    let added = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = watch.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            for line in seen.lines() {
                let Ok(ev) = serde_json::from_str::<Value>(line) else { continue };
                if ev["type"] == "ADDED" && ev["object"]["metadata"]["name"] == "kept" {
                    return ev;
                }
            }
        }
        panic!("the watch ended: {seen}")
    })
    .await
    .expect("the watch delivers the create");
    assert_eq!(added["object"]["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);
    drop(watch);
    drop(server);

    // Another server, another data directory: the object comes from etcd.
    let second_dir = tempfile::tempdir().unwrap();
    let (server, base) = start(second_dir.path(), &store);
    let http = admin(second_dir.path(), &base).await;
    let got: Value = http.get(format!("{base}{url}/kept")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(got["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);
    let mut changed = got.clone();
    changed["spec"]["data"]["v"] = json!("2");
    let resp = http.put(format!("{base}{url}/kept")).json(&changed).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let updated: Value = resp.json().await.unwrap();
    let rv = |v: &Value| v["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap();
    assert!(rv(&updated) > rv(&created), "revisions go on from etcd's");
    // A stale write conflicts, as on sled.
    let resp = http.put(format!("{base}{url}/kept")).json(&got).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    // The server first: it would log its watches failing with etcd gone.
    drop(server);
    drop(etcd);
}

#[test]
fn a_store_that_is_neither_sled_nor_etcd_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["server", "--listen", "127.0.0.1:0", "--store", "redis://127.0.0.1:6379", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run corral server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("etcd://") && err.contains("sled"), "{err}");
}

/// The next event of `name` in a watch response, within a bound.
async fn next_event_of(watch: &mut reqwest::Response, name: &str) -> Value {
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = watch.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            for line in seen.lines() {
                let Ok(ev) = serde_json::from_str::<Value>(line) else { continue };
                if ev["object"]["metadata"]["name"] == name {
                    return ev;
                }
            }
        }
        panic!("the watch ended: {seen}")
    })
    .await
    .expect("the watch delivers the event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_etcd_serve_one_cluster() {
    let etcd_dir = tempfile::tempdir().unwrap();
    let (etcd, _version) = corral_bench::procs::start_etcd(etcd_dir.path()).await.expect("etcd");
    let store = format!("etcd://{}", etcd.addr);
    let url = "/apis/corral.dev/v1/namespaces/default/configmaps";
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // One after the other: both then serve at once.
    let (server_a, base_a) = start(dir_a.path(), &store);
    let http_a = admin(dir_a.path(), &base_a).await;
    let (server_b, base_b) = start(dir_b.path(), &store);
    let http_b = admin(dir_b.path(), &base_b).await;

    let list: Value = http_b.get(format!("{base_b}{url}")).send().await.unwrap().json().await.unwrap();
    let from = list["metadata"]["resourceVersion"].as_str().expect("a list's revision").to_string();
    let mut watch_b = http_b.get(format!("{base_b}{url}?watch=true&resourceVersion={from}")).send().await.unwrap();
    let body = json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
        "metadata": {"name": "shared"}, "spec": {"data": {"v": "a"}}});
    let resp = http_a.post(format!("{base_a}{url}")).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let created: Value = resp.json().await.unwrap();
    // Written through A, watched through B.
    let ev = next_event_of(&mut watch_b, "shared").await;
    assert_eq!(
        (ev["type"].as_str(), &ev["object"]["metadata"]["resourceVersion"]),
        (Some("ADDED"), &created["metadata"]["resourceVersion"])
    );
    // Updated through B; A's write from the old revision conflicts.
    let mut from_b = created.clone();
    from_b["spec"]["data"]["v"] = json!("b");
    assert_eq!(http_b.put(format!("{base_b}{url}/shared")).json(&from_b).send().await.unwrap().status().as_u16(), 200);
    let mut from_a = created.clone();
    from_a["spec"]["data"]["v"] = json!("a2");
    assert_eq!(http_a.put(format!("{base_a}{url}/shared")).json(&from_a).send().await.unwrap().status().as_u16(), 409);
    let got: Value = http_a.get(format!("{base_a}{url}/shared")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["spec"]["data"]["v"], "b");
    drop(watch_b);
    drop((server_a, server_b));
    drop(etcd);
}

/// A client given both servers (`--server a,b`) goes on through the other when the one
/// it uses is killed: its writes land, and a watch resumed there sees every event once,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_two_servers_goes_on_through_the_other_when_one_is_killed() {
    use corral_api::kinds::ConfigMap;
    use corral_api::kinds::configmap::ConfigMapSpec;
    let etcd_dir = tempfile::tempdir().unwrap();
    let (etcd, _version) = corral_bench::procs::start_etcd(etcd_dir.path()).await.expect("etcd");
    let store = format!("etcd://{}", etcd.addr);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (server_a, base_a) = start(dir_a.path(), &store);
    admin(dir_a.path(), &base_a).await;
    let (server_b, base_b) = start(dir_b.path(), &store);
    admin(dir_b.path(), &base_b).await;
    let admin_a = corral_client::Config::from_kubeconfig(&dir_a.path().join("admin.conf")).expect("admin.conf");
    let config = corral_client::Config { server: format!("{base_a},{base_b}"), ..admin_a };
    let client = corral_client::Client::from_config(&config).expect("client");
    assert_eq!(client.server(), base_a);
    let api: corral_client::Api<ConfigMap> = corral_client::Api::namespaced(client.clone(), "default");
    let cm = |i: usize| {
        let mut spec = ConfigMapSpec::default();
        spec.data.insert("i".into(), i.to_string());
        ConfigMap::namespaced("default", format!("cm-{i}"), spec)
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listed = Arc::new(tokio::sync::Notify::new());
    let stop = corral_runtime::CancellationToken::new();
    let watching = {
        let (api, stop) = (corral_client::Api::<ConfigMap>::namespaced(client.clone(), "default"), stop.clone());
        let listed = listed.clone();
        tokio::spawn(corral_runtime::watcher::watch(api, Default::default(), stop, None, move |seen| {
            match seen {
                corral_runtime::watcher::Seen::Applied(o) => {
                    let _ = tx.send(o.metadata.name.clone());
                }
                corral_runtime::watcher::Seen::Listed { .. } => listed.notify_one(),
                _ => {}
            }
            async {}
        }))
    };
    // Every object is created after the watch's first listing, so that each comes as
    // an event of its own.
    tokio::time::timeout(Duration::from_secs(60), listed.notified()).await.expect("the watch listed");
    let seen = tokio::spawn(async move {
        let mut names = Vec::new();
        while names.len() < 20 {
            match rx.recv().await {
                Some(n) => names.push(n),
                None => break,
            }
        }
        names
    });
    for i in 0..10 {
        api.create(&cm(i)).await.expect("created through A");
    }
    drop(server_a); // kill: the client's next request cannot reach A
    for i in 10..20 {
        match api.create(&cm(i)).await {
            Ok(_) => {}
            // The first request after the kill may go out on a kept-alive connection
            // to A before the client has seen it close. The transport does not send a
            // request again once it went out (it may have been acted on), so the
            // caller gets the error, as the transport documents; its next request
            // goes to B.
            Err(corral_client::Error::Transport { failure: corral_client::TransportFailure::Broken, .. })
                if i == 10 =>
            {
                api.create(&cm(i)).await.expect("created through B once A is gone");
            }
            Err(e) => panic!("created through B once A is gone: {e}"),
        }
    }
    assert_eq!(client.server(), base_b);
    let names = tokio::time::timeout(Duration::from_secs(60), seen).await.expect("the watch went on").unwrap();
    let expected: Vec<String> = (0..20).map(|i| format!("cm-{i}")).collect();
    assert_eq!(names, expected, "every event once, in order, across the failover");
    stop.cancel();
    let _ = watching.await;
    drop(server_b);
    drop(etcd);
}
