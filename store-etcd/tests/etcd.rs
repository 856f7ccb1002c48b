//! What is particular to the store on etcd: its layout in etcd, one revision per
//! transaction, several stores (API servers) on one etcd, and etcd's credentials.

#[path = "../../store/tests/common/mod.rs"]
mod common;
mod support;

use common::*;
use corral_store::{Error, EventType, Storage, TxnOp, TxnOutcome, UpdateOutcome, WatchEvent, WatchRequest};
use corral_store_etcd::{EtcdStore, Options};
use serde_json::json;
use support::Etcd;

#[tokio::test]
async fn objects_live_under_the_prefix_without_their_revision() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    let o = s.create(key("a"), cm("a", "1")).await.unwrap();
    let mut raw = etcd_client::Client::connect([etcd.endpoint()], None).await.unwrap();
    let got = raw.get(&b"/corral/corral.dev/configmaps\0default\0a"[..], None).await.unwrap();
    let kv = got.kvs().first().expect("the object is one key under /corral/");
    assert_eq!(kv.mod_revision() as u64, o.revision);
    let stored: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
    assert!(stored["metadata"].get("resourceVersion").is_none(), "{stored}");
    assert_eq!(stored["metadata"]["uid"], o.value().unwrap()["metadata"]["uid"]);
    // Another prefix is another store.
    let other = etcd.store_with(Options { prefix: "/other/".into(), ..Options::default() }).await;
    assert!(other.get(&key("a")).await.unwrap().is_none());
}

#[tokio::test]
async fn a_transaction_takes_one_revision_for_all_its_writes() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    let offer = s.create(key("offer"), cm("offer", "1")).await.unwrap();
    let mut w = s.watch(WatchRequest { from: Some(offer.revision), ..Default::default() }).await.unwrap();
    let ops = vec![
        TxnOp::Create { key: key("t1"), object: cm("t1", "x") },
        TxnOp::Create { key: key("t2"), object: cm("t2", "y") },
        TxnOp::Update { key: key("t2"), object: cm("t2", "z"), expected: None },
        TxnOp::Delete { key: key("offer"), expected: Some(offer.revision) },
    ];
    let out = s.transact(ops).await.unwrap();
    let rev = offer.revision + 1;
    assert_eq!(s.stats().revision, rev);
    let revisions: Vec<u64> = out
        .iter()
        .map(|o| match o {
            TxnOutcome::Created(o) => o.revision,
            TxnOutcome::Updated(u) => u.object().revision,
            TxnOutcome::Deleted(d) => match d {
                corral_store::DeleteOutcome::Deleted(o) | corral_store::DeleteOutcome::Finalizing(o) => o.revision,
            },
        })
        .collect();
    assert_eq!(revisions, [rev; 4]);
    // One event per key, with its final state, all at the transaction's revision.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let WatchEvent::Event(e) = next(&mut w).await else { panic!("an event") };
        seen.push((e.revision, e.event_type, e.object.key.name.clone()));
        if e.object.key.name == "t2" {
            assert_eq!(e.object.value().unwrap()["spec"]["data"]["v"], "z");
        }
    }
    seen.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        seen,
        [
            (rev, EventType::Deleted, "offer".to_string()),
            (rev, EventType::Added, "t1".to_string()),
            (rev, EventType::Added, "t2".to_string())
        ]
    );
}

#[tokio::test]
async fn removing_the_last_finalizer_deletes_in_one_revision() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    let mut o = cm("a", "1");
    o["metadata"]["finalizers"] = json!(["corral.dev/test"]);
    s.create(key("a"), o.clone()).await.unwrap();
    let corral_store::DeleteOutcome::Finalizing(pending) = s.delete(key("a"), None).await.unwrap() else {
        panic!("finalizing")
    };
    let mut w = s.watch(WatchRequest { from: Some(s.stats().revision), ..Default::default() }).await.unwrap();
    o["metadata"]["finalizers"] = json!([]);
    let UpdateOutcome::Deleted(gone) = s.update(key("a"), o, None).await.unwrap() else { panic!("deleted") };
    assert_eq!(gone.value().unwrap()["metadata"]["finalizers"], json!([]), "the caller gets the final state");
    let WatchEvent::Event(e) = next(&mut w).await else { panic!("an event") };
    assert_eq!((e.revision, e.event_type), (gone.revision, EventType::Deleted));
    // etcd cannot write a key and delete it in one transaction: the event carries the
    // state before the update that removed the finalizer, at the deletion's revision.
    let last = e.object.value().unwrap();
    assert!(last["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(last["metadata"]["resourceVersion"], gone.revision.to_string());
    assert_eq!(gone.revision, pending.revision + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_etcd_share_revisions_watches_and_conflicts() {
    let etcd = Etcd::start().await;
    let (a, b) = (etcd.store().await, etcd.store().await);
    let o = a.create(key("x"), cm("x", "1")).await.unwrap();
    assert_eq!(b.get(&key("x")).await.unwrap().unwrap().json, o.json);
    let mut w = b.watch(WatchRequest { from: Some(o.revision), ..Default::default() }).await.unwrap();
    let (ra, rb) = tokio::join!(
        a.update(key("x"), cm("x", "from-a"), Some(o.revision)),
        b.update(key("x"), cm("x", "from-b"), Some(o.revision))
    );
    let won = match (ra, rb) {
        (Ok(UpdateOutcome::Updated(w)), Err(Error::Conflict { .. }))
        | (Err(Error::Conflict { .. }), Ok(UpdateOutcome::Updated(w))) => w,
        other => panic!("one update wins, the other conflicts: {other:?}"),
    };
    let WatchEvent::Event(e) = next(&mut w).await else { panic!("an event") };
    assert_eq!(
        (e.revision, e.event_type, e.object.json.clone()),
        (won.revision, EventType::Modified, won.json.clone())
    );
}

#[tokio::test]
async fn etcd_credentials_are_used_and_required_once_auth_is_on() {
    let etcd = Etcd::start().await;
    let mut admin = etcd_client::Client::connect([etcd.endpoint()], None).await.unwrap();
    admin.user_add("root", "root-secret", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();
    let user = Options { user: Some(("root".into(), "root-secret".into())), ..Options::default() };
    let s = EtcdStore::connect(&[etcd.endpoint()], user).await.unwrap();
    s.create(key("a"), cm("a", "1")).await.unwrap();
    let wrong = Options { user: Some(("root".into(), "wrong".into())), ..Options::default() };
    let err = EtcdStore::connect(&[etcd.endpoint()], wrong).await.err().expect("refused");
    assert!(matches!(err, Error::Backend(_)), "{err}");
    let anonymous = EtcdStore::connect(&[etcd.endpoint()], Options::default()).await;
    assert!(anonymous.is_err(), "etcd refuses reads without a user once auth is on");
}

#[tokio::test]
async fn tls_to_etcd_with_its_authority_and_a_client_certificate() {
    let etcd = Etcd::start_tls().await;
    let tls = etcd.tls().expect("etcd serves TLS");
    let s = etcd.store_with(Options { tls: Some(tls.clone()), ..Options::default() }).await;
    let o = s.create(key("a"), cm("a", "1")).await.unwrap();
    assert_eq!(s.get(&key("a")).await.unwrap().unwrap().json, o.json);
    // Without a client certificate, etcd refuses the connection.
    let anonymous = corral_store_etcd::Tls { identity_pem: None, ..tls };
    let refused = EtcdStore::connect(&[etcd.endpoint()], Options { tls: Some(anonymous), ..Options::default() }).await;
    assert!(refused.is_err(), "etcd asks for a client certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_three_members_keeps_serving_when_one_is_killed() {
    let mut cluster = support::Cluster::start(3).await;
    let s = EtcdStore::connect(&cluster.endpoints(), Options::default()).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(s.create(key(&format!("before{i}")), cm("before", "1")).await.unwrap());
    }
    cluster.kill(0);
    // A request on its way to the killed member fails; the next go to the others.
    // (Bounded: a store that does not fail over runs out of attempts.)
    let (mut written, mut failed) = (0, 0);
    while written < 10 && failed < 200 {
        match s.create(key(&format!("after{written}")), cm("after", "1")).await {
            Ok(o) => {
                acked.push(o);
                written += 1;
            }
            // An earlier attempt went through though its answer was lost.
            Err(Error::AlreadyExists(_)) => written += 1,
            Err(Error::Backend(_) | Error::Unavailable(_)) => {
                failed += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(written, 10, "writes go on with two members of three");
    for o in &acked {
        assert!(s.get(&o.key).await.unwrap().is_some(), "{} acknowledged, then lost", o.key);
    }
}

#[tokio::test]
async fn an_import_keeps_objects_as_they_were_into_an_empty_store_only() {
    // What a sled store holds: created, given a status, deleting behind a finalizer.
    let dir = tempfile::tempdir().unwrap();
    let sled = open(dir.path());
    sled.create(key("plain"), cm("plain", "1")).await.unwrap();
    let mut held = cm("held", "1");
    held["metadata"]["finalizers"] = json!(["corral.dev/test"]);
    sled.create(key("held"), held).await.unwrap();
    sled.delete(key("held"), None).await.unwrap();
    let mut status = cm("plain", "1");
    status["status"] = json!({"phase": "Ready"});
    sled.update_status(key("plain"), status, None).await.unwrap();
    let before = sled.list(RES, None, &corral_api::Selector::everything()).await.unwrap().items;

    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    assert!(s.is_empty().await.unwrap());
    s.import(&before).await.unwrap();
    assert!(!s.is_empty().await.unwrap());
    let after = s.list(RES, None, &corral_api::Selector::everything()).await.unwrap().items;
    assert_eq!(after.len(), before.len());
    for (b, a) in before.iter().zip(&after) {
        let (mut bv, mut av) = (b.value().unwrap(), a.value().unwrap());
        assert_eq!(av["metadata"]["resourceVersion"], a.revision.to_string());
        // Everything but the revision is as it was.
        bv["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        av["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        assert_eq!(av, bv);
    }
    // The finalizer still holds the deletion: removing it deletes, as before.
    let mut done = after.iter().find(|o| o.key.name == "held").unwrap().value().unwrap();
    done["metadata"]["finalizers"] = json!([]);
    assert!(matches!(s.update(key("held"), done, None).await.unwrap(), UpdateOutcome::Deleted(_)));
    // Into a store that holds them, nothing is written.
    let err = s.import(&before).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
}

#[tokio::test]
async fn a_pinned_revision_stays_readable_through_compactions_asked_of_the_store() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    for i in 0..5 {
        s.create(key(&format!("o{i}")), cm(&format!("o{i}"), "v1")).await.unwrap();
    }
    let page = |at: Option<u64>| corral_store::ListRequest {
        at,
        limit: Some(2),
        ..corral_store::ListRequest::new(RES, Some("default"), &corral_api::Selector::everything())
    };
    let first = s.list_page(&page(None)).await.unwrap();
    let pin = s.pin(first.revision).unwrap();
    for i in 0..5 {
        s.update(key(&format!("o{i}")), cm(&format!("o{i}"), "v2"), None).await.unwrap();
    }
    s.compact(s.stats().revision).await.unwrap();
    assert_eq!(s.stats().compacted, first.revision, "compaction stops at the pin");
    let again = s.list_page(&page(Some(first.revision))).await.unwrap();
    assert!(again.items.iter().all(|o| o.value().unwrap()["spec"]["data"]["v"] == "v1"), "as they were");
    drop(pin);
    s.compact(s.stats().revision).await.unwrap();
    assert!(s.stats().compacted > first.revision);
    let err = s.list_page(&page(Some(first.revision))).await.unwrap_err();
    assert!(matches!(err, Error::Gone { .. }), "{err}");
    assert!(matches!(s.pin(first.revision), Err(Error::Gone { .. })));
    assert!(matches!(s.pin(s.stats().revision + 1), Err(Error::Ahead { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_when_etcd_does_not_answer_and_when_it_is_back() {
    let mut etcd = Etcd::start().await;
    let quick = Options { refresh_interval: std::time::Duration::from_millis(50), ..Options::default() };
    let s = etcd.store_with(quick).await;
    assert_eq!(s.health(), Ok(()));
    // Bounded waits on the periodic refresh: a few rounds of it.
    let settle = async |want_ok: bool| {
        for _ in 0..400 {
            if s.health().is_ok() == want_ok {
                return s.health();
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("health never became {}", if want_ok { "ok" } else { "failed" });
    };
    etcd.kill();
    let why = settle(false).await.unwrap_err();
    assert!(why.contains("etcd"), "{why}");
    etcd.restart().await;
    settle(true).await.unwrap();
    s.create(key("a"), cm("a", "1")).await.unwrap();
}
