//! kill -9 of etcd in the middle of a write storm loses no acknowledged write: etcd
//! is restarted on the same data directory and every write a store acknowledged is
//! there, at its revision or later, and the history holds every revision once.

#[path = "../../store/tests/common/mod.rs"]
mod common;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use corral_store::{Storage, WatchEvent, WatchRequest};
use support::Etcd;

const WRITERS: usize = 8;
const ACKS_BEFORE_KILL: usize = 400;
const ROUNDS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_etcd_during_a_write_storm_loses_no_acknowledged_write() {
    let mut etcd = Etcd::start().await;
    let base = etcd.store().await.stats().revision;
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut max_acked = 0;
    for round in 0..ROUNDS {
        let store = Arc::new(etcd.store().await);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (store, tx) = (store.clone(), tx.clone());
            writers.push(tokio::spawn(async move {
                // Bounded: etcd is killed long before this ends.
                for i in 0..1_000_000u64 {
                    let name = format!("r{round}-w{w}-{i}");
                    match store.create(key(&name), cm(&name, "x")).await {
                        Ok(o) => {
                            if tx.send((name, o.revision)).is_err() {
                                return;
                            }
                        }
                        // etcd is gone: this write may or may not have happened.
                        Err(_) => return,
                    }
                }
            }));
        }
        drop(tx);
        let mut n = 0;
        while let Some((name, rev)) = rx.recv().await {
            max_acked = max_acked.max(rev);
            acked.insert(name, rev);
            n += 1;
            if n == ACKS_BEFORE_KILL {
                etcd.kill();
                break;
            }
        }
        assert_eq!(n, ACKS_BEFORE_KILL, "writers stopped before the kill in round {round}");
        // Acknowledgements that were on their way when etcd died count too.
        let drain = async {
            while let Some((name, rev)) = rx.recv().await {
                max_acked = max_acked.max(rev);
                acked.insert(name, rev);
            }
        };
        tokio::time::timeout(Duration::from_secs(60), drain).await.expect("writers notice etcd is gone");
        for w in writers {
            w.await.unwrap();
        }
        drop(store);

        etcd.restart().await;
        let store = etcd.store().await;
        let st = store.stats();
        assert!(st.revision >= max_acked, "revision went backwards: {} < {max_acked}", st.revision);
        for (name, rev) in &acked {
            let o = store.get(&key(name)).await.unwrap();
            let o = o.unwrap_or_else(|| panic!("acknowledged {name}@{rev} lost in round {round}"));
            assert!(o.revision >= *rev, "{name} went back from {rev} to {}", o.revision);
        }
        // The history is consistent with the objects: every revision once, in order.
        let mut w = store.watch(WatchRequest { from: Some(base), ..Default::default() }).await.unwrap();
        for expected in base + 1..=st.revision {
            let WatchEvent::Event(e) = next(&mut w).await else { panic!("expected an event") };
            assert_eq!(e.revision, expected);
        }
    }
}
