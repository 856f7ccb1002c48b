//! The `Storage` contract, backend-independent: every test takes a [`Fixture`] and
//! counts revisions from the store's revision when it starts (a fresh sled store is
//! at 0, a fresh etcd at 1). `contract_tests!(fixture)` declares each as a test.
//! Run on sled by `store/tests/contract.rs`, on etcd by `store-etcd/tests/contract.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_api::Selector;
use corral_store::{
    DeleteOutcome, Error, EventType, Key, ListRequest, Storage, TxnOp, TxnOutcome, UpdateOutcome, WatchEvent,
    WatchRequest,
};
use serde_json::json;

use crate::common::*;

/// Declares every test of the suite, each on a new `$fixture`.
macro_rules! contract_tests {
    (@each $fixture:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let mut f = $fixture;
                contract::$name(&mut f).await;
            }
        )*
    };
    ($fixture:expr) => {
        contract_tests!(@each $fixture;
            create_sets_server_metadata_and_rejects_duplicates,
            stale_resource_version_conflicts,
            racing_updates_on_one_revision_have_one_winner,
            generation_follows_spec_only_and_status_has_its_own_path,
            unchanged_update_writes_nothing,
            finalizers_hold_deletion_until_removed,
            list_filters_by_namespace_and_selector,
            watch_from_revision_replays_then_streams_in_order,
            watch_without_revision_starts_with_current_objects,
            compacted_revision_is_gone_and_stays_gone_after_reopen,
            a_revision_ahead_of_the_store_is_refused_not_awaited,
            a_watch_that_reads_late_misses_nothing,
            a_watch_of_one_kind_gets_all_of_its_kind_and_nothing_else,
            a_watch_of_several_kinds_gets_those_kinds_replayed_listed_and_live,
            a_progress_request_is_answered_with_a_bookmark_once_the_watch_has_read_every_write,
            state_survives_reopen,
            a_failing_write_undoes_the_whole_transaction,
            pages_of_a_list_are_consistent_at_its_revision_while_writes_go_on,
            a_page_at_a_compacted_revision_is_gone,
            a_watch_without_revision_lists_then_follows,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn list_plus_watch_from_its_revision_rebuilds_state_under_concurrent_writes() {
            let mut f = $fixture;
            contract::list_plus_watch_from_its_revision_rebuilds_state_under_concurrent_writes(&mut f).await;
        }
    };
}

fn named(i: impl std::fmt::Display) -> (Key, serde_json::Value) {
    let name = format!("o{i}");
    (key(&name), cm(&name, "1"))
}

pub async fn create_sets_server_metadata_and_rejects_duplicates(f: &mut impl Fixture) {
    let s = f.store();
    let base = s.stats().revision;
    let o = s.create(key("a"), cm("a", "1")).await.unwrap();
    let v = o.value().unwrap();
    assert_eq!(v["metadata"]["resourceVersion"], (base + 1).to_string());
    assert_eq!(o.revision, base + 1);
    assert_eq!(v["metadata"]["generation"], 1);
    assert!(v["metadata"]["uid"].is_string());
    assert!(v["metadata"]["creationTimestamp"].is_string());
    assert!(matches!(s.create(key("a"), cm("a", "2")).await, Err(Error::AlreadyExists(_))));
    assert_eq!(s.stats().revision, base + 1, "a failed create uses no revision");
    let got = s.get(&key("a")).await.unwrap().unwrap();
    assert_eq!(got.json, o.json, "read back exactly as written");
}

pub async fn stale_resource_version_conflicts(f: &mut impl Fixture) {
    let s = f.store();
    let o = s.create(key("a"), cm("a", "1")).await.unwrap();
    s.update(key("a"), cm("a", "2"), Some(o.revision)).await.unwrap();
    let err = s.update(key("a"), cm("a", "3"), Some(o.revision)).await.unwrap_err();
    assert!(
        matches!(err, Error::Conflict { expected, actual, .. } if expected == o.revision && actual == o.revision + 1),
        "{err}"
    );
    assert!(matches!(s.delete(key("a"), Some(o.revision)).await, Err(Error::Conflict { .. })));
}

pub async fn racing_updates_on_one_revision_have_one_winner(f: &mut impl Fixture) {
    let s = f.store();
    let o = s.create(key("a"), cm("a", "0")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        let rv = o.revision;
        tasks.push(tokio::spawn(async move { s.update(key("a"), cm("a", &format!("w{i}")), Some(rv)).await }));
    }
    let mut wins = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(UpdateOutcome::Updated(_)) => wins += 1,
            Err(Error::Conflict { .. }) => conflicts += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((wins, conflicts), (1, 15));
}

pub async fn generation_follows_spec_only_and_status_has_its_own_path(f: &mut impl Fixture) {
    let s = f.store();
    s.create(key("a"), cm("a", "1")).await.unwrap();
    let mut labelled = cm("a", "1");
    labelled["metadata"]["labels"]["tier"] = json!("front");
    let o = s.update(key("a"), labelled.clone(), None).await.unwrap();
    assert_eq!(o.object().value().unwrap()["metadata"]["generation"], 1, "metadata change keeps generation");
    let mut with_status = labelled.clone();
    with_status["status"] = json!({});
    let o = s.update_status(key("a"), with_status, None).await.unwrap();
    let v = o.object().value().unwrap();
    assert_eq!(v["metadata"]["generation"], 1);
    assert_eq!(v["status"], json!({}));
    // The rest of the object is as it was; only the revision moved.
    assert_eq!(v["metadata"]["resourceVersion"], json!(o.object().revision.to_string()), "{v}");
    assert_eq!(v["metadata"]["labels"]["tier"], "front", "{v}");
    assert_eq!(v["spec"], labelled["spec"], "{v}");
    let read = s.get(&key("a")).await.unwrap().unwrap().value().unwrap();
    assert_eq!(read, v);
    // A spec update does not clobber status even though the body has none.
    let mut spec_change = labelled.clone();
    spec_change["spec"]["data"]["v"] = json!("2");
    let v = s.update(key("a"), spec_change, None).await.unwrap().object().value().unwrap();
    assert_eq!(v["metadata"]["generation"], 2);
    assert_eq!(v["status"], json!({}));
}

pub async fn unchanged_update_writes_nothing(f: &mut impl Fixture) {
    let s = f.store();
    let o = s.create(key("a"), cm("a", "1")).await.unwrap();
    let out = s.update(key("a"), cm("a", "1"), None).await.unwrap();
    assert!(matches!(out, UpdateOutcome::Unchanged(_)));
    assert_eq!(s.stats().revision, o.revision);
    // A status write is judged by the status alone: the same one, whatever else its
    // body says, writes nothing; another changes the status and nothing else.
    let mut reported = cm("a", "1");
    reported["status"] = json!({"phase": "Running"});
    assert!(matches!(s.update_status(key("a"), reported, None).await.unwrap(), UpdateOutcome::Updated(_)));
    let rev = s.stats().revision;
    let mut same = cm("a", "other spec");
    same["status"] = json!({"phase": "Running"});
    assert!(matches!(s.update_status(key("a"), same, None).await.unwrap(), UpdateOutcome::Unchanged(_)));
    assert_eq!(s.stats().revision, rev);
    let mut cleared = cm("a", "other spec");
    cleared["status"] = serde_json::Value::Null;
    let v = s.update_status(key("a"), cleared, None).await.unwrap().object().value().unwrap();
    assert!(v.get("status").is_none(), "{v}");
    assert_eq!(v["spec"]["data"]["v"], "1", "{v}");
    assert_eq!(s.stats().revision, rev + 1);
}

pub async fn finalizers_hold_deletion_until_removed(f: &mut impl Fixture) {
    let s = f.store();
    let mut o = cm("a", "1");
    o["metadata"]["finalizers"] = json!(["corral.dev/test"]);
    s.create(key("a"), o.clone()).await.unwrap();
    let d = s.delete(key("a"), None).await.unwrap();
    let DeleteOutcome::Finalizing(pending) = d else { panic!("expected finalizing, got {d:?}") };
    assert!(pending.value().unwrap()["metadata"]["deletionTimestamp"].is_string());
    let head = s.head(&key("a")).await.unwrap().unwrap();
    assert!(head.deleting, "the store knows the deletion is pending");
    assert_eq!(head.revision, pending.revision);
    // Deleting again changes nothing; clearing deletionTimestamp through update is ignored.
    assert!(matches!(s.delete(key("a"), None).await.unwrap(), DeleteOutcome::Finalizing(_)));
    let rev = s.stats().revision;
    let out = s.update(key("a"), o.clone(), None).await.unwrap();
    assert!(matches!(out, UpdateOutcome::Unchanged(_)), "{out:?}");
    assert_eq!(s.stats().revision, rev);
    // A status written meanwhile (an agent reporting the end) keeps it pending.
    let mut ended = o.clone();
    ended["status"] = json!({"phase": "Ended"});
    let UpdateOutcome::Updated(reported) = s.update_status(key("a"), ended, None).await.unwrap() else {
        panic!("a status write on a pending deletion is written")
    };
    assert!(reported.value().unwrap()["metadata"]["deletionTimestamp"].is_string());
    assert!(s.head(&key("a")).await.unwrap().unwrap().deleting);
    let rev = rev + 1;
    o["metadata"]["finalizers"] = json!([]);
    let UpdateOutcome::Deleted(gone) = s.update(key("a"), o, None).await.unwrap() else { panic!("deleted") };
    assert_eq!(gone.revision, rev + 1);
    assert_eq!(gone.value().unwrap()["status"]["phase"], "Ended");
    assert!(s.get(&key("a")).await.unwrap().is_none());
}

pub async fn list_filters_by_namespace_and_selector(f: &mut impl Fixture) {
    let s = f.store();
    let base = s.stats().revision;
    s.create(key("a"), cm("a", "1")).await.unwrap();
    let mut other = cm("b", "1");
    other["metadata"]["labels"] = json!({"app": "db"});
    s.create(key("b"), other).await.unwrap();
    let mut elsewhere = cm("c", "1");
    elsewhere["metadata"]["namespace"] = json!("prod");
    s.create(Key::namespaced(RES, "prod", "c"), elsewhere).await.unwrap();
    let all = s.list(RES, None, &Selector::everything()).await.unwrap();
    assert_eq!(all.items.len(), 3);
    assert_eq!(all.revision, base + 3);
    let web = s.list(RES, Some("default"), &Selector::parse("app=web").unwrap()).await.unwrap();
    assert_eq!(web.items.iter().map(|o| o.key.name.as_str()).collect::<Vec<_>>(), ["a"]);
    let prod = s.list(RES, Some("prod"), &Selector::everything()).await.unwrap();
    assert_eq!(prod.items.len(), 1);
    assert!(s.list("corral.dev/other", None, &Selector::everything()).await.unwrap().items.is_empty());
    // A kind whose name starts with another's is not part of it.
    assert!(s.list("corral.dev/config", None, &Selector::everything()).await.unwrap().items.is_empty());
}

pub async fn watch_from_revision_replays_then_streams_in_order(f: &mut impl Fixture) {
    let s = f.store();
    let base = s.stats().revision;
    for i in 0..5 {
        let (k, o) = named(i);
        s.create(k, o).await.unwrap();
    }
    let mut w = s
        .watch(WatchRequest { resources: vec![RES.into()], from: Some(base + 2), ..Default::default() })
        .await
        .unwrap();
    s.delete(key("o0"), None).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        match next(&mut w).await {
            WatchEvent::Event(e) => seen.push((e.revision - base, e.event_type)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, [(3, EventType::Added), (4, EventType::Added), (5, EventType::Added), (6, EventType::Deleted)]);
}

pub async fn watch_without_revision_starts_with_current_objects(f: &mut impl Fixture) {
    let s = f.store();
    let a = s.create(key("a"), cm("a", "1")).await.unwrap();
    let mut w = s.watch(WatchRequest::default()).await.unwrap();
    let WatchEvent::Event(e) = next(&mut w).await else { panic!() };
    assert_eq!((e.event_type, e.object.key.name.as_str()), (EventType::Added, "a"));
    s.update(key("a"), cm("a", "2"), None).await.unwrap();
    let WatchEvent::Event(e) = next(&mut w).await else { panic!() };
    assert_eq!((e.event_type, e.revision), (EventType::Modified, a.revision + 1));
}

pub async fn compacted_revision_is_gone_and_stays_gone_after_reopen(f: &mut impl Fixture) {
    let s = f.store();
    let base = s.stats().revision;
    for i in 0..10 {
        let (k, o) = named(i);
        s.create(k, o).await.unwrap();
    }
    s.compact(base + 6).await.unwrap();
    let err = s.watch(WatchRequest { from: Some(base + 5), ..Default::default() }).await.err().expect("gone");
    assert!(
        matches!(err, Error::Gone { requested, compacted } if requested == base + 5 && compacted == base + 6),
        "{err}"
    );
    let mut w = s.watch(WatchRequest { from: Some(base + 6), ..Default::default() }).await.unwrap();
    let WatchEvent::Event(e) = next(&mut w).await else { panic!() };
    assert_eq!(e.revision, base + 7);
    drop(w);
    drop(s);
    f.reopen().await;
    let s = f.store();
    assert!(s.watch(WatchRequest { from: Some(base + 5), ..Default::default() }).await.is_err());
    assert_eq!(s.stats().compacted, base + 6);
}

pub async fn a_revision_ahead_of_the_store_is_refused_not_awaited(f: &mut impl Fixture) {
    let s = f.store();
    let a = s.create(key("a"), cm("a", "1")).await.unwrap();
    for from in [a.revision + 1, u64::MAX] {
        let err = s.watch(WatchRequest { from: Some(from), ..Default::default() }).await.err().unwrap();
        assert!(
            matches!(err, Error::Ahead { requested, current } if requested == from && current == a.revision),
            "{err}"
        );
    }
    // The current revision itself is a valid place to start.
    let mut w = s.watch(WatchRequest { from: Some(a.revision), ..Default::default() }).await.unwrap();
    s.create(key("b"), cm("b", "1")).await.unwrap();
    let WatchEvent::Event(e) = next(&mut w).await else { panic!() };
    assert_eq!(e.revision, a.revision + 1);
}

pub async fn a_watch_that_reads_late_misses_nothing(f: &mut impl Fixture) {
    let s = f.store();
    let base = s.stats().revision;
    let mut w = s.watch(WatchRequest { from: Some(base), ..Default::default() }).await.unwrap();
    // Written before the watcher reads any.
    for i in 0..300 {
        let (k, o) = named(i);
        s.create(k, o).await.unwrap();
    }
    for expected in 1..=300u64 {
        let WatchEvent::Event(e) = next(&mut w).await else { panic!() };
        assert_eq!(e.revision, base + expected);
    }
}

pub async fn a_watch_of_one_kind_gets_all_of_its_kind_and_nothing_else(f: &mut impl Fixture) {
    let s = f.store();
    let base = s.stats().revision;
    let other = |name: &str| Key::namespaced("corral.dev/tasks", "default", name);
    let mut maps =
        s.watch(WatchRequest { resources: vec![RES.into()], from: Some(base), ..Default::default() }).await.unwrap();
    let mut tasks = s
        .watch(WatchRequest { resources: vec!["corral.dev/tasks".into()], from: Some(base), ..Default::default() })
        .await
        .unwrap();
    // Writes of two kinds interleaved before either watcher reads: odd revisions
    // (from the base) are config maps, even ones tasks.
    for i in 0..50 {
        let (k, o) = named(i);
        s.create(k, o).await.unwrap();
        s.create(other(&format!("t{i}")), cm(&format!("t{i}"), "1")).await.unwrap();
    }
    for i in 0..50u64 {
        let WatchEvent::Event(e) = next(&mut maps).await else { panic!() };
        assert_eq!((e.revision - base, e.object.key.resource.as_str()), (2 * i + 1, RES));
        let WatchEvent::Event(e) = next(&mut tasks).await else { panic!() };
        assert_eq!((e.revision - base, e.object.key.resource.as_str()), (2 * i + 2, "corral.dev/tasks"));
    }
    // And live: the next write of each kind reaches only its own watcher.
    s.create(other("late"), cm("late", "1")).await.unwrap();
    s.create(key("late"), cm("late", "1")).await.unwrap();
    let WatchEvent::Event(e) = next(&mut maps).await else { panic!() };
    assert_eq!((e.revision - base, e.object.key.name.as_str()), (102, "late"));
    let WatchEvent::Event(e) = next(&mut tasks).await else { panic!() };
    assert_eq!((e.revision - base, e.object.key.name.as_str()), (101, "late"));
}

pub async fn a_watch_of_several_kinds_gets_those_kinds_replayed_listed_and_live(f: &mut impl Fixture) {
    let s = f.store();
    let base = s.stats().revision;
    let of = |resource: &str, name: &str| Key::namespaced(resource, "default", name);
    let kinds = ["corral.dev/tasks", "corral.dev/nodes", RES];
    for (i, kind) in kinds.iter().enumerate() {
        s.create(of(kind, "before"), cm("before", &i.to_string())).await.unwrap();
    }
    let wanted = vec![RES.to_string(), "corral.dev/tasks".to_string()];
    let names = |events: Vec<WatchEvent>| -> Vec<(String, u64)> {
        events
            .into_iter()
            .map(|e| match e {
                WatchEvent::Event(e) => (e.object.key.resource.clone(), e.revision - base),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    };
    let mut replayed =
        s.watch(WatchRequest { resources: wanted.clone(), from: Some(base), ..Default::default() }).await.unwrap();
    let mut listed = s.watch(WatchRequest { resources: wanted.clone(), ..Default::default() }).await.unwrap();
    let mut first = Vec::new();
    for _ in 0..2 {
        first.push(next(&mut replayed).await);
    }
    assert_eq!(names(first), [("corral.dev/tasks".into(), 1), (RES.into(), 3)]);
    let mut first = Vec::new();
    for _ in 0..2 {
        first.push(next(&mut listed).await);
    }
    let mut got = names(first);
    got.sort();
    assert_eq!(got, [(RES.into(), 3), ("corral.dev/tasks".into(), 1)]);
    // Live: a write of an unwatched kind passes both by.
    s.create(of("corral.dev/nodes", "after"), cm("after", "1")).await.unwrap();
    s.create(of("corral.dev/tasks", "after"), cm("after", "1")).await.unwrap();
    assert_eq!(names(vec![next(&mut replayed).await]), [("corral.dev/tasks".into(), 5)]);
    assert_eq!(names(vec![next(&mut listed).await]), [("corral.dev/tasks".into(), 5)]);
}

pub async fn a_progress_request_is_answered_with_a_bookmark_once_the_watch_has_read_every_write(f: &mut impl Fixture) {
    let s = f.store();
    let base = s.stats().revision;
    let mut w = s
        .watch(WatchRequest {
            resources: vec!["corral.dev/tasks".into()],
            from: Some(base),
            bookmarks: true,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..40 {
        let (k, o) = named(i);
        s.create(k, o).await.unwrap();
    }
    s.request_progress();
    // A periodic bookmark may come first; the answer is one at the newest revision.
    for _ in 0..100 {
        match next(&mut w).await {
            WatchEvent::Bookmark(r) if r == base + 40 => break,
            WatchEvent::Bookmark(r) if r < base + 40 => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Asked again with nothing new, it answers again.
    s.request_progress();
    assert_eq!(next(&mut w).await, WatchEvent::Bookmark(base + 40));
}

pub async fn state_survives_reopen(f: &mut impl Fixture) {
    let s = f.store();
    let base = s.stats().revision;
    s.create(key("a"), cm("a", "1")).await.unwrap();
    s.create(key("b"), cm("b", "1")).await.unwrap();
    s.delete(key("a"), None).await.unwrap();
    let mut held = cm("h", "1");
    held["metadata"]["finalizers"] = json!(["x"]);
    s.create(key("h"), held).await.unwrap();
    s.delete(key("h"), None).await.unwrap();
    assert!(!s.head(&key("b")).await.unwrap().unwrap().deleting);
    drop(s);
    f.reopen().await;
    let s = f.store();
    assert!(s.head(&key("h")).await.unwrap().unwrap().deleting, "pending deletion survives reopen");
    assert!(!s.head(&key("b")).await.unwrap().unwrap().deleting);
    assert_eq!(s.stats().revision, base + 5);
    assert!(s.get(&key("a")).await.unwrap().is_none());
    assert_eq!(s.get(&key("b")).await.unwrap().unwrap().revision, base + 2);
    let o = s.create(key("c"), cm("c", "1")).await.unwrap();
    assert_eq!(o.revision, base + 6, "revisions continue after reopen");
}

/// All or nothing; how many revisions a transaction takes differs between backends
/// (one each on sled, one in all on etcd) and is tested beside each.
pub async fn a_failing_write_undoes_the_whole_transaction(f: &mut impl Fixture) {
    let s = f.store();
    let offer = s.create(key("offer"), cm("offer", "1")).await.unwrap();
    s.update(key("offer"), cm("offer", "2"), None).await.unwrap();
    let rev = s.stats().revision;
    let stale = vec![
        TxnOp::Create { key: key("t1"), object: cm("t1", "x") },
        TxnOp::Delete { key: key("offer"), expected: Some(offer.revision) },
    ];
    assert!(matches!(s.transact(stale).await, Err(Error::Conflict { .. })));
    assert!(s.get(&key("t1")).await.unwrap().is_none(), "the create before the failing delete is undone");
    assert_eq!(s.stats().revision, rev);
    let taken = vec![
        TxnOp::Create { key: key("t1"), object: cm("t1", "x") },
        TxnOp::Create { key: key("offer"), object: cm("offer", "again") },
    ];
    assert!(matches!(s.transact(taken).await, Err(Error::AlreadyExists(_))));
    assert!(s.get(&key("t1")).await.unwrap().is_none());
    let fresh = vec![
        TxnOp::Create { key: key("t1"), object: cm("t1", "x") },
        TxnOp::Create { key: key("t2"), object: cm("t2", "y") },
        TxnOp::Update { key: key("t2"), object: cm("t2", "z"), expected: None },
        TxnOp::Delete { key: key("offer"), expected: Some(rev) },
    ];
    let out = s.transact(fresh).await.unwrap();
    assert!(matches!(out[0], TxnOutcome::Created(_)) && matches!(out[3], TxnOutcome::Deleted(_)));
    assert_eq!(s.get(&key("t2")).await.unwrap().unwrap().value().unwrap()["spec"]["data"]["v"], "z");
    assert!(s.get(&key("offer")).await.unwrap().is_none());
}

fn page(at: Option<u64>, after: Option<Key>, limit: usize) -> ListRequest {
    ListRequest {
        at,
        after,
        limit: Some(limit),
        count_remaining: true,
        ..ListRequest::new(RES, Some("default"), &Selector::everything())
    }
}

pub async fn pages_of_a_list_are_consistent_at_its_revision_while_writes_go_on(f: &mut impl Fixture) {
    let s = f.store();
    for i in 0..30 {
        s.create(key(&format!("o{i:02}")), cm(&format!("o{i:02}"), "v1")).await.unwrap();
    }
    let first = s.list_page(&page(None, None, 10)).await.unwrap();
    assert_eq!((first.items.len(), first.remaining), (10, 20));
    let at = first.revision;
    s.update(key("o05"), cm("o05", "v2"), None).await.unwrap();
    s.update(key("o15"), cm("o15", "v2"), None).await.unwrap();
    s.update(key("o15"), cm("o15", "v3"), None).await.unwrap();
    s.delete(key("o25"), None).await.unwrap();
    s.create(key("o28a"), cm("o28a", "v1")).await.unwrap();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut next = first.next.clone();
    for o in &first.items {
        seen.insert(o.key.name.clone(), o.value().unwrap()["spec"]["data"]["v"].as_str().unwrap().into());
    }
    let mut pages = 1;
    while let Some(after) = next {
        let p = s.list_page(&page(Some(at), Some(after), 10)).await.unwrap();
        assert_eq!(p.revision, at);
        for o in &p.items {
            assert!(o.revision <= at, "{} at {} is newer than the list", o.key, o.revision);
            seen.insert(o.key.name.clone(), o.value().unwrap()["spec"]["data"]["v"].as_str().unwrap().into());
        }
        next = p.next;
        pages += 1;
        assert!(pages <= 10, "pages never end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 30, "o25 is still there, o28a not yet: {seen:?}");
    assert!(seen.values().all(|v| v == "v1"), "every object as it was at the list's revision: {seen:?}");
    let now = s.list_page(&page(None, None, 100)).await.unwrap();
    assert_eq!(now.items.len(), 30);
    assert!(now.items.iter().any(|o| o.key.name == "o28a"));
}

pub async fn a_page_at_a_compacted_revision_is_gone(f: &mut impl Fixture) {
    let s = f.store();
    for i in 0..5 {
        let (k, o) = named(i);
        s.create(k, o).await.unwrap();
    }
    let first = s.list_page(&page(None, None, 2)).await.unwrap();
    for _ in 0..3 {
        s.update(key("o4"), cm("o4", &format!("{}", s.stats().revision)), None).await.unwrap();
    }
    s.compact(s.stats().revision).await.unwrap();
    let err = s.list_page(&page(Some(first.revision), first.next, 2)).await.unwrap_err();
    assert!(matches!(err, Error::Gone { .. }), "{err}");
    let err = s.list_page(&page(Some(s.stats().revision + 1), None, 2)).await.unwrap_err();
    assert!(matches!(err, Error::Ahead { .. }), "{err}");
}

pub async fn a_watch_without_revision_lists_then_follows(f: &mut impl Fixture) {
    let s = f.store();
    for i in 0..200 {
        s.create(key(&format!("o{i:03}")), cm(&format!("o{i:03}"), "1")).await.unwrap();
    }
    let mut w = s.watch(WatchRequest { resources: vec![RES.into()], ..Default::default() }).await.unwrap();
    // Written after the watch started: not in its listing, but after it.
    s.delete(key("o000"), None).await.unwrap();
    let mut names = Vec::new();
    for _ in 0..200 {
        let WatchEvent::Event(e) = next(&mut w).await else { panic!() };
        assert_eq!(e.event_type, EventType::Added);
        names.push(e.object.key.name.clone());
    }
    assert_eq!(names.first().map(String::as_str), Some("o000"));
    let WatchEvent::Event(e) = next(&mut w).await else { panic!() };
    assert_eq!((e.event_type, e.object.key.name.as_str()), (EventType::Deleted, "o000"));
}

pub async fn list_plus_watch_from_its_revision_rebuilds_state_under_concurrent_writes(f: &mut impl Fixture) {
    let s: Arc<dyn Storage> = f.store();
    let mut writers = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..150u32 {
                let name = format!("k{}", (i * 7 + w) % 20);
                let _ = match i % 3 {
                    0 => s.create(key(&name), cm(&name, &i.to_string())).await.map(|_| ()),
                    1 => s.update(key(&name), cm(&name, &format!("{w}-{i}")), None).await.map(|_| ()),
                    _ => s.delete(key(&name), None).await.map(|_| ()),
                };
            }
        }));
    }
    // Snapshots taken while the writers run: each must show exactly the state at its
    // revision, and some are followed forward by a watch from that revision.
    let mut snapshots = Vec::new();
    let mut lists = 0;
    while !writers.iter().all(|t| t.is_finished()) && lists < 20_000 {
        lists += 1;
        let list = s.list(RES, None, &Selector::everything()).await.unwrap();
        for o in &list.items {
            let v = o.value().unwrap();
            let json_rv: u64 = v["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
            assert_eq!(
                json_rv, o.revision,
                "list at {} returned {} with a wrong resourceVersion",
                list.revision, o.key
            );
            assert!(o.revision <= list.revision);
        }
        if lists % 25 == 1 {
            let w = s
                .watch(WatchRequest { resources: vec![RES.into()], from: Some(list.revision), ..Default::default() })
                .await
                .unwrap();
            let state: BTreeMap<String, (u64, bytes::Bytes)> =
                list.items.iter().map(|o| (o.key.name.clone(), (o.revision, o.json.clone()))).collect();
            snapshots.push((list.revision, state, w));
        }
        tokio::task::yield_now().await;
    }
    for t in writers {
        t.await.unwrap();
    }
    let fin = s.list(RES, None, &Selector::everything()).await.unwrap();
    let want: BTreeMap<String, (u64, bytes::Bytes)> =
        fin.items.iter().map(|o| (o.key.name.clone(), (o.revision, o.json.clone()))).collect();
    for (rev, mut state, mut w) in snapshots {
        let mut at = rev;
        while at < fin.revision {
            let WatchEvent::Event(e) = next(&mut w).await else { panic!("expected an event") };
            assert_eq!(e.revision, at + 1, "events follow the list's revision without gaps");
            at = e.revision;
            match e.event_type {
                EventType::Deleted => {
                    assert!(state.remove(&e.object.key.name).is_some(), "deleted an object the snapshot lacked");
                }
                EventType::Added => {
                    assert!(state.insert(e.object.key.name.clone(), (e.revision, e.object.json.clone())).is_none());
                }
                EventType::Modified => {
                    assert!(state.insert(e.object.key.name.clone(), (e.revision, e.object.json.clone())).is_some());
                }
            }
        }
        assert_eq!(state, want, "snapshot at {rev} plus its events equals the final state");
    }
}
