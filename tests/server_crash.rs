//! kill -9 of the real `corral server` during a storm of HTTP writes loses no
//! acknowledged write, and revisions never go backwards across restarts.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

const CLIENTS: usize = 32;
const ACKS_BEFORE_KILL: usize = 600;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `corral server` on `listen` with its data in `dir/data` and its log in
/// `dir/server.log` (written anew); the server and its URL, once it says it listens.
/// A first start listens on a port of its own choosing (`127.0.0.1:0`): one picked
/// beforehand could be taken by a parallel test's process first, whose answers would
/// then be taken for ours. A restart on the same address fails at once, saying why,
/// should a parallel test's process have taken it meanwhile.
fn start(dir: &Path, listen: &str) -> (Server, String) {
    let log = dir.join("server.log");
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(dir.join("data"))
            .env("RUST_LOG", "warn,corral_server=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn corral server"),
    );
    let base = corral_testkit::wait_logged(&mut server.0, &log, "listening url=");
    (server, base)
}

/// Starts `corral server` again on `base`, where it listened before.
fn start_again(dir: &Path, base: &str) -> Server {
    let (server, now) = start(dir, base.trim_start_matches("http://"));
    assert_eq!(now, base, "the server listens where it did before");
    server
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    corral_testkit::eventually(&format!("the server at {base} is healthy"), async || {
        http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()).then_some(())
    })
    .await
}

/// Waits for the storm's signal, kill -9s the server with writes in flight, lets
/// every client see it fail, and starts a server again on the same data and address.
async fn kill_9_and_restart(
    mut server: Server,
    mut kill_rx: tokio::sync::watch::Receiver<bool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
    dir: &Path,
    base: &str,
    http: &reqwest::Client,
) -> Server {
    tokio::time::timeout(Duration::from_secs(120), kill_rx.wait_for(|k| *k))
        .await
        .expect("the write storm stalled")
        .unwrap();
    server.0.kill().unwrap(); // SIGKILL, with writes in flight
    server.0.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    drop(server);
    let server = start_again(dir, base);
    wait_healthy(http, base).await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_server_during_http_write_storm_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = start(dir.path(), "127.0.0.1:0");
    let url = format!("{base}/apis/corral.dev/v1/namespaces/default/configmaps");
    let mut http = reqwest::Client::new();
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut max_rev = 0u64;

    // The first round's server is the one just started; each later round's starts again.
    let mut first = Some(server);
    for round in 0..2 {
        let server = first.take().unwrap_or_else(|| start_again(dir.path(), &base));
        wait_healthy(&http, &base).await;
        // The administrator's credential the server wrote (kept across restarts).
        let admin = corral_client::Config::from_kubeconfig(&dir.path().join("data/admin.conf")).expect("admin.conf");
        http = corral_testkit::authorized_http(&admin.token.expect("a token"));
        let (kill_tx, kill_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (http, url, acked, kill_tx) = (http.clone(), url.clone(), acked.clone(), kill_tx.clone());
            tasks.push(tokio::spawn(async move {
                // Bounded; the server dies long before.
                for i in 0..100_000 {
                    let name = format!("r{round}-c{c}-{i}");
                    let body = json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
                        "metadata": {"name": name}, "spec": {"data": {"i": i.to_string()}}});
                    let Ok(resp) = http.post(&url).json(&body).send().await else { return };
                    if resp.status().as_u16() != 201 {
                        return;
                    }
                    let Ok(v) = resp.json::<Value>().await else { return };
                    let rev = v["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
                    let mut a = acked.lock().unwrap();
                    a.insert(name, rev);
                    if a.len() >= ACKS_BEFORE_KILL * (round + 1) {
                        let _ = kill_tx.send(true);
                    }
                }
            }));
        }
        let _server = kill_9_and_restart(server, kill_rx, tasks, dir.path(), &base, &http).await;
        let list: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        let present: BTreeMap<String, u64> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let m = &o["metadata"];
                (m["name"].as_str().unwrap().to_string(), m["resourceVersion"].as_str().unwrap().parse().unwrap())
            })
            .collect();
        let list_rev: u64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        let acked = acked.lock().unwrap().clone();
        for (name, rev) in &acked {
            assert_eq!(present.get(name), Some(rev), "acknowledged {name}@{rev} lost after kill -9 in round {round}");
        }
        let top = *acked.values().max().unwrap();
        assert!(list_rev >= top && list_rev >= max_rev, "revision went backwards: {list_rev} < {top}");
        max_rev = list_rev;
    }
}

/// Objects each transaction of the transaction storm writes.
const PER_TRANSACTION: usize = 50;
/// Transactions acknowledged before the kill.
const TRANSACTIONS_BEFORE_KILL: usize = 40;

/// A Sync's revision is one transaction: kill -9 in the middle of a storm of them
/// leaves each whole or absent, and every acknowledged one whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_server_during_transactions_leaves_each_whole_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = start(dir.path(), "127.0.0.1:0");
    let url = format!("{base}/apis/corral.dev/v1/namespaces/default/configmaps");
    wait_healthy(&reqwest::Client::new(), &base).await;
    let admin = corral_client::Config::from_kubeconfig(&dir.path().join("data/admin.conf")).expect("admin.conf");
    let http = corral_testkit::authorized_http(&admin.token.expect("a token"));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let (kill_tx, kill_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for c in 0..4 {
        let (http, base, acked, kill_tx) = (http.clone(), base.clone(), acked.clone(), kill_tx.clone());
        tasks.push(tokio::spawn(async move {
            // Bounded; the server dies long before.
            for i in 0..10_000 {
                let txn = format!("t{c}-{i}");
                let operations: Vec<Value> = (0..PER_TRANSACTION)
                    .map(|j| {
                        json!({"verb": "apply", "object": {"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
                            "metadata": {"name": format!("{txn}-{j}"), "namespace": "default", "labels": {"txn": txn}},
                            "spec": {"data": {"j": j.to_string()}}}})
                    })
                    .collect();
                let body = json!({"operations": operations});
                let sent = http.post(format!("{base}/transactions?fieldManager=crash")).json(&body).send().await;
                let Ok(resp) = sent else { return };
                if resp.status().as_u16() != 200 {
                    return;
                }
                let mut a = acked.lock().unwrap();
                a.push(txn);
                if a.len() >= TRANSACTIONS_BEFORE_KILL {
                    let _ = kill_tx.send(true);
                }
            }
        }));
    }
    let _server = kill_9_and_restart(server, kill_rx, tasks, dir.path(), &base, &http).await;
    let list: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    let mut by_txn: BTreeMap<String, usize> = BTreeMap::new();
    for o in list["items"].as_array().unwrap() {
        if let Some(t) = o["metadata"]["labels"]["txn"].as_str() {
            *by_txn.entry(t.to_string()).or_default() += 1;
        }
    }
    for (txn, n) in &by_txn {
        assert_eq!(*n, PER_TRANSACTION, "transaction {txn} is half there after kill -9: {n} of {PER_TRANSACTION}");
    }
    for txn in acked.lock().unwrap().iter() {
        assert_eq!(by_txn.get(txn), Some(&PER_TRANSACTION), "acknowledged transaction {txn} lost after kill -9");
    }
}
