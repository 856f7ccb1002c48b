//! Failures of a highly available control plane, all real: a 3-member etcd cluster on
//! loopback and two `corral server`s on it, clients that know both servers, writers
//! that keep writing while a process is killed with SIGKILL.
//!
//! What must hold, whatever is killed: every write a client saw acknowledged is in the
//! store afterwards; writes go on; a watch sees every object's creation exactly once,
//! in revision order, across the failure. Writes whose answer was lost in the crash
//! may or may not have landed: the watch is compared with what the store holds, so
//! those count too, once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_api::kinds::ConfigMap;
use corral_api::kinds::configmap::ConfigMapSpec;
use corral_bench::cluster::{EtcdCluster, Server};
use corral_client::{Api, Client, ListParams};
use corral_runtime::CancellationToken;
use corral_runtime::watcher::Seen;

const WRITERS: usize = 8;

/// `corral server` of this build on `store`, without controllers (nothing here needs
/// them) and without DNS (two servers would want one port).
async fn server(dir: &std::path::Path, store: &str) -> Server {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_corral"));
    Server::start_exe(exe, dir, store, &["--controllers", "none", "--no-dns"]).await.expect("corral server")
}

fn config_map(name: &str) -> ConfigMap {
    let mut spec = ConfigMapSpec::default();
    spec.data.insert("written-as".into(), name.to_string());
    ConfigMap::namespaced("default", name, spec)
}

/// What the writers and the watch saw.
#[derive(Default)]
struct Ledger {
    acknowledged: BTreeSet<String>,
    /// Writes that failed: refused, or their answer lost (they may have landed).
    failed: usize,
    /// Names of ConfigMaps in the order the watch reported them created or changed.
    watched: Vec<String>,
    /// Fresh lists after the first: each would report objects again.
    relisted: usize,
}

/// Writers `which` creating ConfigMaps named `w{writer}-{i}` until `stop`, each through
/// its own client of `servers` (which fails over in the order given). Every writer
/// started is handed back: the check waits for each, so that no write is still in
/// flight when the store is read.
fn start_writers(
    config: &corral_client::Config,
    ledger: Arc<Mutex<Ledger>>,
    stop: CancellationToken,
    which: std::ops::Range<usize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    which
        .map(|w| {
            let client = Client::from_config(config).expect("client");
            let (ledger, stop) = (ledger.clone(), stop.clone());
            tokio::spawn(async move {
                let api: Api<ConfigMap> = Api::namespaced(client, "default");
                let mut i = 0;
                while !stop.is_cancelled() {
                    let name = format!("w{w}-{i}");
                    i += 1;
                    let written = api.create(&config_map(&name)).await.is_ok();
                    {
                        let mut l = ledger.lock().unwrap();
                        match written {
                            true => l.acknowledged.insert(name),
                            false => {
                                l.failed += 1;
                                false
                            }
                        };
                    }
                    // While a failure is being handled every write may fail at once:
                    // a tight loop of failures would only load the survivors.
                    if !written {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect()
}

/// A watch of ConfigMaps through `client`, noting each one it reports.
fn start_watch(client: Client, ledger: Arc<Mutex<Ledger>>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    tokio::spawn(corral_runtime::watcher::watch(api, ListParams::default(), stop, None, move |seen| {
        let mut l = ledger.lock().unwrap();
        match seen {
            Seen::Applied(o) => l.watched.push(o.metadata.name.clone()),
            Seen::Listed { objects, .. } => {
                l.relisted += 1;
                l.watched.extend(objects.into_iter().map(|o| o.metadata.name.clone()));
            }
            _ => {}
        }
        async {}
    }))
}

/// Waits (bounded) until the watch has listed (nothing yet): from then on it reports
/// each creation as it happens, in revision order.
async fn until_listed(ledger: &Mutex<Ledger>) {
    for _ in 0..1200 {
        if ledger.lock().unwrap().relisted > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the watch never listed");
}

/// Waits (bounded) until `more` writes have been acknowledged beyond `from`.
async fn until_acknowledged(ledger: &Mutex<Ledger>, more: usize, what: &str) -> usize {
    let start = ledger.lock().unwrap().acknowledged.len();
    for _ in 0..2400 {
        let now = ledger.lock().unwrap().acknowledged.len();
        if now >= start + more {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let l = ledger.lock().unwrap();
    panic!("{what}: {} writes acknowledged, {} failed; wanted {more} more", l.acknowledged.len(), l.failed);
}

/// Stops the writers, lets the watch catch up with what the store holds, and checks
/// every guarantee against the store read through `client`.
async fn check(
    client: Client,
    ledger: Arc<Mutex<Ledger>>,
    stop_writes: CancellationToken,
    writers: Vec<tokio::task::JoinHandle<()>>,
    stop_watch: CancellationToken,
    watching: tokio::task::JoinHandle<()>,
) {
    stop_writes.cancel();
    for w in writers {
        w.await.expect("writer");
    }
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut stored = api.list_all(&ListParams::default(), 500).await.expect("list after the storm").items;
    stored.sort_by_key(|o| o.metadata.resource_version.as_deref().and_then(|r| r.parse::<u64>().ok()));
    let names: Vec<String> = stored.iter().map(|o| o.metadata.name.clone()).collect();
    let held: BTreeSet<&String> = names.iter().collect();
    {
        let l = ledger.lock().unwrap();
        let lost: Vec<&String> = l.acknowledged.iter().filter(|n| !held.contains(n)).collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
        for o in &stored {
            assert_eq!(
                o.spec.data.get("written-as"),
                Some(&o.metadata.name),
                "{} holds what was written",
                o.metadata.name
            );
        }
    }
    // The watch reports the last writes a moment after they are listed.
    for _ in 0..1200 {
        if ledger.lock().unwrap().watched.len() >= names.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_watch.cancel();
    let _ = watching.await;
    let l = ledger.lock().unwrap();
    assert_eq!(l.relisted, 1, "the watch resumed from its revision, never listed again");
    assert_eq!(l.watched.len(), names.len(), "every object reported once, none missed, none twice");
    assert_eq!(l.watched, names, "the watch reported the creations in revision order");
}

/// The etcd leader, killed during a storm of writes through both API servers: no
/// acknowledged write is lost, writes resume once another member leads, and a watch
/// sees every creation once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_etcd_leader_killed_during_a_write_storm_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(&dir.path().join("etcd"), 3).await.expect("etcd cluster");
    let store = etcd.store_url();
    let a = server(&dir.path().join("a"), &store).await;
    let b = server(&dir.path().join("b"), &store).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (stop_writes, stop_watch) = (CancellationToken::new(), CancellationToken::new());
    // Half the writers start on each server; the watch is on A.
    let on_a = a.admin_config(&format!("{},{}", a.base_url(), b.base_url())).unwrap();
    let on_b = b.admin_config(&format!("{},{}", b.base_url(), a.base_url())).unwrap();
    let watching = start_watch(Client::from_config(&on_a).unwrap(), ledger.clone(), stop_watch.clone());
    until_listed(&ledger).await;
    let mut writers = start_writers(&on_a, ledger.clone(), stop_writes.clone(), 0..WRITERS / 2);
    writers.extend(start_writers(&on_b, ledger.clone(), stop_writes.clone(), WRITERS / 2..WRITERS));
    until_acknowledged(&ledger, 100, "before the kill").await;
    let leader = etcd.leader().await.expect("a leader");
    etcd.kill(leader);
    until_acknowledged(&ledger, 200, "after the etcd leader was killed").await;
    check(Client::from_config(&on_b).unwrap(), ledger, stop_writes, writers, stop_watch, watching).await;
    drop((a, b));
}

/// An API server killed during a storm of writes that all go through it: the clients
/// go on through the other server, no acknowledged write is lost, and a watch that
/// was served by the killed server resumes on the other, seeing every creation once,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_server_killed_during_a_write_storm_leaves_clients_and_watches_going_on_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&dir.path().join("etcd"), 3).await.expect("etcd cluster");
    let store = etcd.store_url();
    let mut a = server(&dir.path().join("a"), &store).await;
    let b = server(&dir.path().join("b"), &store).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (stop_writes, stop_watch) = (CancellationToken::new(), CancellationToken::new());
    let both = a.admin_config(&format!("{},{}", a.base_url(), b.base_url())).unwrap();
    let watch_client = Client::from_config(&both).unwrap();
    let watching = start_watch(watch_client.clone(), ledger.clone(), stop_watch.clone());
    until_listed(&ledger).await;
    let writers = start_writers(&both, ledger.clone(), stop_writes.clone(), 0..WRITERS);
    until_acknowledged(&ledger, 100, "before the kill").await;
    a.kill();
    until_acknowledged(&ledger, 200, "after server A was killed").await;
    assert_eq!(watch_client.server(), b.base_url(), "the watch went on through B");
    check(Client::from_config(&both).unwrap(), ledger, stop_writes, writers, stop_watch, watching).await;
    drop((b, etcd));
}

/// The store's own watch on etcd, while each member in turn is killed and started
/// again (the cluster keeps its quorum): the watch never ends and delivers every
/// write once, in order — it resumes on another member from the revision after the
/// last one it delivered, so its reader never has to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_watch_goes_on_across_the_death_of_each_etcd_member_in_turn() {
    use corral_store::{Key, Storage, WatchEvent, WatchRequest};
    use corral_store_etcd::{EtcdStore, Options};
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(dir.path(), 3).await.expect("etcd cluster");
    let store = EtcdStore::connect(&etcd.endpoints(), Options::default()).await.expect("connect");
    let from = store.stats().revision;
    let request = WatchRequest { resources: vec!["configmaps".into()], from: Some(from), ..Default::default() };
    let mut events = store.watch(request).await.expect("watch");
    let mut written = Vec::new();
    let mut seen = Vec::new();
    for round in 0..3 {
        for member in 0..3 {
            etcd.kill(member);
            for i in 0..5 {
                let name = format!("r{round}-m{member}-{i}");
                let object = serde_json::json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": "default"}, "spec": {"data": {}}});
                // A write in flight when the member died may fail: only acknowledged
                // ones are expected (none is lost), each seen once.
                if store.create(Key::namespaced("configmaps", "default", &name), object).await.is_ok() {
                    written.push(name);
                }
            }
            etcd.restart(member).await.expect("member restarts");
            // Drain what the watch has for what was acknowledged so far.
            while seen.len() < written.len() {
                match tokio::time::timeout(Duration::from_secs(60), events.next()).await {
                    Ok(Some(WatchEvent::Event(e))) => seen.push(e.object.key.name.clone()),
                    Ok(Some(WatchEvent::Bookmark(_))) => {}
                    Ok(Some(WatchEvent::Gone { .. })) => panic!("the watch was compacted away"),
                    Ok(None) => panic!("the watch ended when member {member} died (round {round})"),
                    Err(_) => panic!("the watch delivered nothing for 60 s (round {round}, member {member})"),
                }
            }
        }
    }
    assert!(written.len() >= 30, "writes went on while one member was down: {} of 45", written.len());
    // A write whose answer was lost may have landed: it is seen, though not
    // acknowledged. Every acknowledged one is seen, once, in the order written.
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice: {seen:?}");
    let acknowledged: BTreeSet<&String> = written.iter().collect();
    let in_order: Vec<&String> = seen.iter().filter(|n| acknowledged.contains(n)).collect();
    assert_eq!(in_order, written.iter().collect::<Vec<_>>(), "every acknowledged write seen, in order");
}
