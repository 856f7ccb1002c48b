//! What the sled store does beyond the shared `Storage` contract (`shared/contract.rs`,
//! run on sled by `contract.rs`): its automatic compaction, its in-memory event buffer
//! and the log behind it, watch wake-ups, paused-clock bookmarks, and one revision per
//! write of a transaction. On a real sled store in a temp dir.

mod common;

use common::*;
use corral_api::Selector;
use corral_store::{Error, EventType, Storage, WatchEvent, WatchRequest};

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
