//! kill -9 of a process in the middle of a write storm loses no acknowledged write.
//!
//! The test re-executes its own binary as the writer (selected by an environment
//! variable), reads the writer's acknowledgements as they happen, SIGKILLs it while
//! writes are in flight, reopens the store and checks every acknowledged write.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::*;
use corral_api::Selector;
use corral_store::{Storage, WatchEvent, WatchRequest};

const CHILD_ENV: &str = "CORRAL_CRASH_WRITER_DIR";
const WRITERS: usize = 16;
const ACKS_BEFORE_KILL: usize = 1500;
const ROUNDS: usize = 3;

#[test]
fn kill_9_during_write_storm_loses_no_acknowledged_write() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let round: usize = std::env::var("CORRAL_CRASH_ROUND").ok().and_then(|r| r.parse().ok()).unwrap_or(0);
        return writer(std::path::Path::new(&dir), round);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut max_acked = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kill_9_during_write_storm_loses_no_acknowledged_write",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("CORRAL_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut n = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("ack ") else { continue };
            let (name, rev) = rest.split_once(' ').unwrap();
            let rev: u64 = rev.parse().unwrap();
            max_acked = max_acked.max(rev);
            acked.insert(name.to_string(), rev);
            n += 1;
            if n == ACKS_BEFORE_KILL {
                child.kill().unwrap(); // SIGKILL: no chance to flush or clean up
                break;
            }
        }
        child.wait().unwrap();
        assert_eq!(n, ACKS_BEFORE_KILL, "writer died before the kill in round {round}");

        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = open(dir.path());
            let st = store.stats();
            assert!(st.revision >= max_acked, "revision went backwards: {} < {max_acked}", st.revision);
            for (name, rev) in &acked {
                let o = store.get(&key(name)).await.unwrap();
                let o = o.unwrap_or_else(|| panic!("acknowledged {name}@{rev} lost in round {round}"));
                assert!(o.revision >= *rev, "{name} went back from {rev} to {}", o.revision);
            }
            // The log is consistent with the objects: every revision once, in order.
            let mut w = store.watch(WatchRequest { from: Some(0), ..Default::default() }).await.unwrap();
            for expected in 1..=st.revision {
                let WatchEvent::Event(e) = next(&mut w).await else { panic!("expected an event") };
                assert_eq!(e.revision, expected);
            }
            drop(w);
            let list = store.list(RES, None, &Selector::everything()).await.unwrap();
            assert!(list.items.len() >= acked.len());
            store.shutdown().await;
        });
    }
}

/// The child: writes until killed, printing each acknowledged write.
fn writer(dir: &std::path::Path, round: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let store = Arc::new(open(dir));
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                // Bounded: the parent kills us long before this ends.
                for i in 0..1_000_000u64 {
                    let name = format!("r{round}-w{w}-{i}");
                    let o = store.create(key(&name), cm(&name, "x")).await.unwrap();
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ack {name} {}", o.revision).unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}
