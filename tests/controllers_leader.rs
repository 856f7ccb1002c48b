//! Leader election: of two replicas exactly one acts; when the leader dies the other
//! takes over once the lease runs out. The server runs in-process on a real sled store;
//! on etcd, each replica talks to an API server of its own, both on one real etcd.
//! Short leases keep the test quick; it asserts order and exclusivity, not timing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_api::Registry;
use corral_api::kinds::Lease;
use corral_api::kinds::namespace::{Namespace, NamespaceSpec};
use corral_client::{Api, Client};
use corral_runtime::{LeaderConfig, LeaderElector};
use corral_server::auth::Identity;
use corral_server::in_process::InProcess;
use corral_server::{AppState, app};
use corral_store::{SledStore, Storage};
use corral_store_etcd::{EtcdStore, Options as EtcdOptions};

#[derive(Default)]
struct Stage {
    acting: Option<&'static str>,
    overlap: bool,
    turns: Vec<&'static str>,
    ticks_of_a_while_b_waits: u32,
}

async fn act(who: &'static str, stage: Arc<Mutex<Stage>>, changed: Arc<tokio::sync::Notify>) {
    loop {
        {
            let mut s = stage.lock().unwrap();
            if s.acting.is_some_and(|a| a != who) {
                s.overlap = true;
            }
            s.acting = Some(who);
            if s.turns.last() != Some(&who) {
                s.turns.push(who);
            }
            if who == "a" {
                s.ticks_of_a_while_b_waits += 1;
            }
        }
        changed.notify_waiters();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until `cond` holds, re-checking whenever a replica acts.
async fn until(what: &str, stage: &Mutex<Stage>, changed: &tokio::sync::Notify, cond: impl Fn(&Stage) -> bool) {
    for _ in 0..2400 {
        let notified = changed.notified();
        if cond(&stage.lock().unwrap()) {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
    panic!("never happened: {what}");
}

/// An in-process API server on `store`, and a client of it acting as the administrator.
async fn server_on(store: Arc<dyn Storage>) -> Client {
    let state = AppState::new(store, Arc::new(Registry::builtin()));
    state.load_policy().await.unwrap();
    Client::new(Arc::new(InProcess::new(app(state), Identity::admin())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_the_other_takes_over_when_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let client = server_on(Arc::new(SledStore::open(dir.path(), Default::default()).unwrap())).await;
    leader_fails_over(client.clone(), client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_etcd_a_replica_of_another_api_server_takes_over_when_the_leader_dies() {
    let dir = tempfile::tempdir().unwrap();
    let (etcd, _version) = corral_bench::procs::start_etcd(dir.path()).await.expect("etcd");
    let endpoints = [format!("http://{}", etcd.addr)];
    let store = || async {
        let s = EtcdStore::connect(&endpoints, EtcdOptions::default()).await.expect("connect to etcd");
        Arc::new(s) as Arc<dyn Storage>
    };
    let (a, b) = (server_on(store().await).await, server_on(store().await).await);
    leader_fails_over(a, b).await;
    drop(etcd);
}

/// Replica a acts through `a`, replica b through `b` (the same server, or two).
async fn leader_fails_over(a_client: Client, b_client: Client) {
    let client = a_client.clone();
    Api::<Namespace>::all(client.clone()).create(&Namespace::new("default", NamespaceSpec {})).await.unwrap();

    // Generous against a loaded machine: a renewal would have to stall for over two
    // seconds before b could (rightly) take over from a live leader.
    let lease = Duration::from_secs(3);
    let config = |id: &str| LeaderConfig {
        lease_duration: lease,
        renew_every: Duration::from_millis(500),
        retry_every: Duration::from_millis(100),
        ..LeaderConfig::new("default", "manager", id)
    };
    let stage: Arc<Mutex<Stage>> = Arc::default();
    let changed = Arc::new(tokio::sync::Notify::new());
    let a = tokio::spawn(LeaderElector::new(a_client, config("a")).run(act("a", stage.clone(), changed.clone())));
    until("a leads", &stage, &changed, |s| s.acting == Some("a")).await;
    let b = tokio::spawn(LeaderElector::new(b_client, config("b")).run(act("b", stage.clone(), changed.clone())));
    // While a lives and renews, b only campaigns: let a act through two lease periods.
    stage.lock().unwrap().ticks_of_a_while_b_waits = 0;
    until("a acts through two lease periods", &stage, &changed, |s| s.ticks_of_a_while_b_waits >= 300).await;
    assert_eq!(stage.lock().unwrap().turns, ["a"], "b acted while a held the lease");

    // a dies: it stops acting and renewing at once.
    a.abort();
    let _ = a.await;
    let died = std::time::Instant::now();
    stage.lock().unwrap().acting = None;
    until("b takes over", &stage, &changed, |s| s.acting == Some("b")).await;
    eprintln!("takeover after the leader died: {:?} (lease {lease:?})", died.elapsed());
    {
        let s = stage.lock().unwrap();
        assert_eq!(s.turns, ["a", "b"]);
        assert!(!s.overlap, "two replicas acted at once");
    }
    let l = Api::<Lease>::namespaced(client.clone(), "default").get("manager").await.unwrap();
    assert_eq!(l.spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(l.spec.lease_transitions, Some(1));
    b.abort();
}
