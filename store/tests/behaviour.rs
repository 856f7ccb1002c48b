//! Contract of `Storage` on a real sled store in a temp dir.

mod common;

use common::*;
use corral_api::Selector;
use corral_store::{DeleteOutcome, Error, EventType, Storage, UpdateOutcome, WatchEvent, WatchRequest};
use serde_json::json;

#[tokio::test]
async fn create_sets_server_metadata_and_rejects_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let o = s.create(key("a"), cm("a", "1")).await.unwrap();
    let v = o.value().unwrap();
    assert_eq!(v["metadata"]["resourceVersion"], "1");
    assert_eq!(v["metadata"]["generation"], 1);
    assert!(v["metadata"]["uid"].is_string());
    assert!(v["metadata"]["creationTimestamp"].is_string());
    assert!(matches!(s.create(key("a"), cm("a", "2")).await, Err(Error::AlreadyExists(_))));
    assert_eq!(s.stats().revision, 1, "a failed create uses no revision");
}

#[tokio::test]
async fn stale_resource_version_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let o = s.create(key("a"), cm("a", "1")).await.unwrap();
    s.update(key("a"), cm("a", "2"), Some(o.revision)).await.unwrap();
    let err = s.update(key("a"), cm("a", "3"), Some(o.revision)).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { expected: 1, actual: 2, .. }), "{err}");
    assert!(matches!(s.delete(key("a"), Some(1)).await, Err(Error::Conflict { .. })));
}

#[tokio::test]
async fn racing_updates_on_one_revision_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open(dir.path()));
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

#[tokio::test]
async fn generation_follows_spec_only_and_status_has_its_own_path() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
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
    // A spec update does not clobber status even though the body has none.
    let mut spec_change = labelled.clone();
    spec_change["spec"]["data"]["v"] = json!("2");
    let v = s.update(key("a"), spec_change, None).await.unwrap().object().value().unwrap();
    assert_eq!(v["metadata"]["generation"], 2);
    assert_eq!(v["status"], json!({}));
}

#[tokio::test]
async fn unchanged_update_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(key("a"), cm("a", "1")).await.unwrap();
    let out = s.update(key("a"), cm("a", "1"), None).await.unwrap();
    assert!(matches!(out, UpdateOutcome::Unchanged(_)));
    assert_eq!(s.stats().revision, 1);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut o = cm("a", "1");
    o["metadata"]["finalizers"] = json!(["corral.dev/test"]);
    s.create(key("a"), o.clone()).await.unwrap();
    let d = s.delete(key("a"), None).await.unwrap();
    let DeleteOutcome::Finalizing(pending) = d else { panic!("expected finalizing, got {d:?}") };
    assert!(pending.value().unwrap()["metadata"]["deletionTimestamp"].is_string());
    let head = s.head(&key("a")).await.unwrap().unwrap();
    assert!(head.deleting, "the index knows the deletion is pending");
    assert_eq!(head.revision, pending.revision);
    // Deleting again changes nothing; clearing deletionTimestamp through update is ignored.
    assert!(matches!(s.delete(key("a"), None).await.unwrap(), DeleteOutcome::Finalizing(_)));
    let rev = s.stats().revision;
    let out = s.update(key("a"), o.clone(), None).await.unwrap();
    assert!(matches!(out, UpdateOutcome::Unchanged(_)), "{out:?}");
    assert_eq!(s.stats().revision, rev);
    o["metadata"]["finalizers"] = json!([]);
    assert!(matches!(s.update(key("a"), o, None).await.unwrap(), UpdateOutcome::Deleted(_)));
    assert!(s.get(&key("a")).await.unwrap().is_none());
}

#[tokio::test]
async fn list_filters_by_namespace_and_selector() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(key("a"), cm("a", "1")).await.unwrap();
    let mut other = cm("b", "1");
    other["metadata"]["labels"] = json!({"app": "db"});
    s.create(key("b"), other).await.unwrap();
    let mut elsewhere = cm("c", "1");
    elsewhere["metadata"]["namespace"] = json!("prod");
    s.create(corral_store::Key::namespaced(RES, "prod", "c"), elsewhere).await.unwrap();
    let all = s.list(RES, None, &Selector::everything()).await.unwrap();
    assert_eq!(all.items.len(), 3);
    assert_eq!(all.revision, 3);
    let web = s.list(RES, Some("default"), &Selector::parse("app=web").unwrap()).await.unwrap();
    assert_eq!(web.items.iter().map(|o| o.key.name.as_str()).collect::<Vec<_>>(), ["a"]);
    let prod = s.list(RES, Some("prod"), &Selector::everything()).await.unwrap();
    assert_eq!(prod.items.len(), 1);
    assert!(s.list("corral.dev/other", None, &Selector::everything()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn watch_from_revision_replays_then_streams_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..5 {
        s.create(key(&format!("o{i}")), cm(&format!("o{i}"), "1")).await.unwrap();
    }
    let mut w =
        s.watch(WatchRequest { resources: vec![RES.into()], from: Some(2), ..Default::default() }).await.unwrap();
    s.delete(key("o0"), None).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        match next(&mut w).await {
            WatchEvent::Event(e) => seen.push((e.revision, e.event_type)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, [(3, EventType::Added), (4, EventType::Added), (5, EventType::Added), (6, EventType::Deleted)]);
}

#[tokio::test]
async fn watch_without_revision_starts_with_current_objects() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(key("a"), cm("a", "1")).await.unwrap();
    let mut w = s.watch(WatchRequest::default()).await.unwrap();
    let WatchEvent::Event(e) = next(&mut w).await else { panic!() };
    assert_eq!((e.event_type, e.object.key.name.as_str()), (EventType::Added, "a"));
    s.update(key("a"), cm("a", "2"), None).await.unwrap();
    let WatchEvent::Event(e) = next(&mut w).await else { panic!() };
    assert_eq!((e.event_type, e.revision), (EventType::Modified, 2));
}

#[tokio::test]
async fn compacted_revision_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..10 {
        s.create(key(&format!("o{i}")), cm(&format!("o{i}"), "1")).await.unwrap();
    }
    s.compact(6).await.unwrap();
    let err = s.watch(WatchRequest { from: Some(5), ..Default::default() }).await.err().expect("gone");
    assert!(matches!(err, Error::Gone { requested: 5, compacted: 6 }), "{err}");
    let mut w = s.watch(WatchRequest { from: Some(6), ..Default::default() }).await.unwrap();
    let WatchEvent::Event(e) = next(&mut w).await else { panic!() };
    assert_eq!(e.revision, 7);
    drop(w);
    s.shutdown().await;
    // Compaction survives a restart.
    let s = open(dir.path());
    assert!(s.watch(WatchRequest { from: Some(5), ..Default::default() }).await.is_err());
    assert_eq!(s.stats().compacted, 6);
}

#[tokio::test]
async fn a_revision_ahead_of_the_store_is_refused_not_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(key("a"), cm("a", "1")).await.unwrap();
    for from in [2, u64::MAX] {
        let err = s.watch(WatchRequest { from: Some(from), ..Default::default() }).await.err().unwrap();
        assert!(matches!(err, Error::Ahead { requested, current: 1 } if requested == from), "{err}");
    }
    // The current revision itself is a valid place to start.
    let mut w = s.watch(WatchRequest { from: Some(1), ..Default::default() }).await.unwrap();
    s.create(key("b"), cm("b", "1")).await.unwrap();
    let WatchEvent::Event(e) = next(&mut w).await else { panic!() };
    assert_eq!(e.revision, 2);
}

#[tokio::test]
async fn automatic_compaction_keeps_the_configured_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with(dir.path(), |o| o.compaction_retain = 10);
    for i in 0..40 {
        s.create(key(&format!("o{i}")), cm(&format!("o{i}"), "1")).await.unwrap();
    }
    let st = s.stats();
    assert!(st.compacted > 0, "{st:?}");
    assert!(st.revision - st.compacted >= 10, "window kept: {st:?}");
    assert!(s.watch(WatchRequest { from: Some(st.revision - 10), ..Default::default() }).await.is_ok());
}

#[tokio::test]
async fn slow_watcher_falls_back_to_the_log_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with(dir.path(), |o| o.event_buffer = 4);
    let mut w = s.watch(WatchRequest { from: Some(0), ..Default::default() }).await.unwrap();
    // Far more events than the live buffer holds, written before the watcher reads any.
    for i in 0..300 {
        s.create(key(&format!("o{i}")), cm(&format!("o{i}"), "1")).await.unwrap();
    }
    for expected in 1..=300u64 {
        let WatchEvent::Event(e) = next(&mut w).await else { panic!() };
        assert_eq!(e.revision, expected);
    }
}

#[tokio::test]
async fn a_watch_of_one_kind_gets_all_of_its_kind_and_nothing_else_even_when_slow() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with(dir.path(), |o| o.event_buffer = 4);
    let other = |name: &str| corral_store::Key::namespaced("corral.dev/tasks", "default", name);
    let mut maps =
        s.watch(WatchRequest { resources: vec![RES.into()], from: Some(0), ..Default::default() }).await.unwrap();
    let mut tasks = s
        .watch(WatchRequest { resources: vec!["corral.dev/tasks".into()], from: Some(0), ..Default::default() })
        .await
        .unwrap();
    // Writes of two kinds interleaved, far more than the live buffer holds, before
    // either watcher reads: odd revisions are config maps, even ones tasks.
    for i in 0..150 {
        s.create(key(&format!("o{i}")), cm(&format!("o{i}"), "1")).await.unwrap();
        s.create(other(&format!("t{i}")), cm(&format!("t{i}"), "1")).await.unwrap();
    }
    for i in 0..150u64 {
        let WatchEvent::Event(e) = next(&mut maps).await else { panic!() };
        assert_eq!((e.revision, e.object.key.resource.as_str()), (2 * i + 1, RES));
        let WatchEvent::Event(e) = next(&mut tasks).await else { panic!() };
        assert_eq!((e.revision, e.object.key.resource.as_str()), (2 * i + 2, "corral.dev/tasks"));
    }
    // And live: the next write of each kind reaches only its own watcher.
    s.create(other("late"), cm("late", "1")).await.unwrap();
    s.create(key("late"), cm("late", "1")).await.unwrap();
    let WatchEvent::Event(e) = next(&mut maps).await else { panic!() };
    assert_eq!((e.revision, e.object.key.name.as_str()), (302, "late"));
    let WatchEvent::Event(e) = next(&mut tasks).await else { panic!() };
    assert_eq!((e.revision, e.object.key.name.as_str()), (301, "late"));
}

#[tokio::test(start_paused = true)]
async fn bookmarks_carry_the_last_delivered_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with(dir.path(), |o| o.bookmark_interval = std::time::Duration::from_secs(1));
    s.create(key("a"), cm("a", "1")).await.unwrap();
    let mut w = s
        .watch(WatchRequest {
            from: Some(1),
            bookmarks: true,
            selector: Selector::parse("app=none").unwrap(),
            ..Default::default()
        })
        .await
        .unwrap();
    s.create(key("b"), cm("b", "1")).await.unwrap();
    // Nothing matches the selector, yet the bookmark advances past revision 2.
    loop {
        match next(&mut w).await {
            WatchEvent::Bookmark(2) => break,
            WatchEvent::Bookmark(1) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_watch_of_several_kinds_gets_those_kinds_replayed_listed_and_live() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let of = |resource: &str, name: &str| corral_store::Key::namespaced(resource, "default", name);
    let kinds = ["corral.dev/tasks", "corral.dev/nodes", RES];
    for (i, kind) in kinds.iter().enumerate() {
        s.create(of(kind, "before"), cm("before", &i.to_string())).await.unwrap();
    }
    let wanted = vec![RES.to_string(), "corral.dev/tasks".to_string()];
    let names = |events: Vec<WatchEvent>| -> Vec<(String, u64)> {
        events
            .into_iter()
            .map(|e| match e {
                WatchEvent::Event(e) => (e.object.key.resource.clone(), e.revision),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    };
    let mut replayed =
        s.watch(WatchRequest { resources: wanted.clone(), from: Some(0), ..Default::default() }).await.unwrap();
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

#[tokio::test]
async fn a_progress_request_is_answered_with_a_bookmark_once_the_watch_has_read_every_write() {
    let dir = tempfile::tempdir().unwrap();
    // The periodic bookmark would come far too late to pass for the answer.
    let s = open_with(dir.path(), |o| o.bookmark_interval = std::time::Duration::from_secs(3600));
    let mut w = s
        .watch(WatchRequest {
            resources: vec!["corral.dev/tasks".into()],
            from: Some(0),
            bookmarks: true,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..40 {
        s.create(key(&format!("o{i}")), cm(&format!("o{i}"), "1")).await.unwrap();
    }
    s.request_progress();
    assert_eq!(next(&mut w).await, WatchEvent::Bookmark(40));
    // Asked again with nothing new, it answers again.
    s.request_progress();
    assert_eq!(next(&mut w).await, WatchEvent::Bookmark(40));
}

fn task_key(name: &str) -> corral_store::Key {
    corral_store::Key::namespaced("corral.dev/tasks", "default", name)
}

/// The first thing a watch of tasks from the start yields, read by a task of its own:
/// the watch is being read, and waits, while the test writes.
async fn first_task_event(s: &corral_store::SledStore) -> tokio::task::JoinHandle<WatchEvent> {
    let mut tasks = s
        .watch(WatchRequest { resources: vec!["corral.dev/tasks".into()], from: Some(0), ..Default::default() })
        .await
        .unwrap();
    tokio::spawn(async move { next(&mut tasks).await })
}

#[tokio::test]
async fn a_watch_of_one_kind_sleeps_through_writes_of_other_kinds() {
    let dir = tempfile::tempdir().unwrap();
    // A sweep every 64 revisions: the 500 writes below cross it a few times.
    let s = open_with(dir.path(), |o| o.event_buffer = 256);
    let reader = first_task_event(&s).await;
    let before = s.stats().watch_wakeups;
    for i in 0..500 {
        s.create(key(&format!("o{i}")), cm(&format!("o{i}"), "1")).await.unwrap();
    }
    s.create(task_key("t"), cm("t", "1")).await.unwrap();
    let WatchEvent::Event(e) = reader.await.unwrap() else { panic!("an event") };
    assert_eq!((e.revision, e.object.key.name.as_str()), (501, "t"));
    // Woken by the task and the sweeps (7), not by each of the 500 writes.
    let woken = s.stats().watch_wakeups - before;
    assert!(woken <= 10, "woken {woken} times");
    // A watch of every kind still wakes for every write.
    let mut every = s.watch(WatchRequest { from: Some(501), ..Default::default() }).await.unwrap();
    let reader = tokio::spawn(async move {
        for _ in 0..20 {
            next(&mut every).await;
        }
    });
    for i in 0..20 {
        s.create(key(&format!("p{i}")), cm(&format!("p{i}"), "1")).await.unwrap();
    }
    reader.await.unwrap();
}

#[tokio::test]
async fn a_sleeping_watch_of_one_kind_is_swept_along_by_large_writes_of_others() {
    let dir = tempfile::tempdir().unwrap();
    // 16 events of 4 KiB fill the in-memory buffer; history beyond 20 revisions goes.
    let s = open_with(dir.path(), |o| {
        o.event_buffer_bytes = 64 << 10;
        o.compaction_retain = 20;
    });
    let reader = first_task_event(&s).await;
    let big = "x".repeat(4000);
    for i in 0..400 {
        s.create(key(&format!("o{i}")), cm(&format!("o{i}"), &big)).await.unwrap();
    }
    let st = s.stats();
    assert!(st.compacted > 100, "{st:?}");
    // Far fewer revisions than a sweep's worth went by, but many buffers' worth of
    // bytes: the watch was woken to read past them while they were in memory.
    assert!(st.watch_wakeups >= 10, "swept {} times: {st:?}", st.watch_wakeups);
    s.create(task_key("t"), cm("t", "1")).await.unwrap();
    // And it gets the task.
    match reader.await.unwrap() {
        WatchEvent::Event(e) => assert_eq!((e.revision, e.object.key.name.as_str()), (401, "t")),
        other => panic!("expected the task, got {other:?}"),
    }
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.create(key("a"), cm("a", "1")).await.unwrap();
        s.create(key("b"), cm("b", "1")).await.unwrap();
        s.delete(key("a"), None).await.unwrap();
        let mut held = cm("h", "1");
        held["metadata"]["finalizers"] = json!(["x"]);
        s.create(key("h"), held).await.unwrap();
        s.delete(key("h"), None).await.unwrap();
        assert!(!s.head(&key("b")).await.unwrap().unwrap().deleting);
    }
    let s = open(dir.path());
    assert!(s.head(&key("h")).await.unwrap().unwrap().deleting, "pending deletion survives reopen");
    assert!(!s.head(&key("b")).await.unwrap().unwrap().deleting);
    assert_eq!(s.stats().revision, 5);
    assert!(s.get(&key("a")).await.unwrap().is_none());
    assert_eq!(s.get(&key("b")).await.unwrap().unwrap().revision, 2);
    let o = s.create(key("c"), cm("c", "1")).await.unwrap();
    assert_eq!(o.revision, 6, "revisions continue after reopen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_plus_watch_from_its_revision_rebuilds_state_under_concurrent_writes() {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
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
    // revision (no write that is not yet durable and published), and some are followed
    // forward by a watch from that revision.
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
                "list at {} returned {} in a state it was not published in",
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

#[tokio::test]
async fn a_transaction_writes_all_or_nothing_in_consecutive_revisions() {
    use corral_store::{TxnOp, TxnOutcome};
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let offer = s.create(key("offer"), cm("offer", "1")).await.unwrap();
    let mut w = s.watch(WatchRequest { from: Some(offer.revision), ..Default::default() }).await.unwrap();

    // The offer changed since it was read: nothing of the transaction is written.
    s.update(key("offer"), cm("offer", "2"), None).await.unwrap();
    let stale = vec![
        TxnOp::Create { key: key("t1"), object: cm("t1", "x") },
        TxnOp::Delete { key: key("offer"), expected: Some(offer.revision) },
    ];
    assert!(matches!(s.transact(stale).await, Err(Error::Conflict { .. })));
    assert!(s.get(&key("t1")).await.unwrap().is_none(), "the create before the failing delete is undone");
    assert_eq!(s.stats().revision, 2);

    let fresh = vec![
        TxnOp::Create { key: key("t1"), object: cm("t1", "x") },
        TxnOp::Create { key: key("t2"), object: cm("t2", "y") },
        TxnOp::Update { key: key("t2"), object: cm("t2", "z"), expected: Some(4) },
        TxnOp::Delete { key: key("offer"), expected: Some(2) },
    ];
    let out = s.transact(fresh).await.unwrap();
    assert!(matches!(out[0], TxnOutcome::Created(_)) && matches!(out[3], TxnOutcome::Deleted(_)));
    assert_eq!(s.stats().revision, 6);
    assert_eq!(s.get(&key("t2")).await.unwrap().unwrap().value().unwrap()["spec"]["data"]["v"], "z");
    let mut seen = Vec::new();
    for _ in 0..5 {
        if let WatchEvent::Event(e) = next(&mut w).await {
            seen.push((e.revision, e.event_type));
        }
    }
    assert_eq!(
        seen,
        vec![
            (2, EventType::Modified),
            (3, EventType::Added),
            (4, EventType::Added),
            (5, EventType::Modified),
            (6, EventType::Deleted)
        ]
    );
}
