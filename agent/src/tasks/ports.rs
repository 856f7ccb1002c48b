//! Host ports handed to tasks.
//!
//! A port the spec leaves open goes to the first port of the node's ranges that no task
//! of this node holds and nothing else has bound. Finding one binds sockets, port after
//! port, which is slow when a range is crowded: it is done on the blocking pool and
//! without the lock every task shares. Another launch may then take the same port
//! meanwhile; the claim, under the lock, checks for that and probes again.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use corral_api::kinds::node::PortRange;
use corral_api::kinds::task::{Task, TaskPort};
use parking_lot::Mutex;

use super::TaskContext;
use super::state::{Local, Ports, TaskState};
use crate::blocking;
use crate::error::{Error, Result};
use crate::layout::Layout;

/// Probes in a row that may lose their ports to other launches before the launch
/// gives up, to be retried by the next reconcile. Each loss is to a launch that has
/// then claimed its ports, so with fewer launches at once than this, the bound is
/// never reached.
const CLAIM_ATTEMPTS: usize = 16;

/// Host ports of the task's named ports: as given, or (until a scheduler assigns them)
/// free ports of the node's ranges. What is handed out is held by the task from now
/// until it is cleaned up, and never handed to another task meanwhile.
///
/// # Errors
/// Other launches took the ports found free [`CLAIM_ATTEMPTS`] times in a row.
pub(super) async fn assign_ports(ctx: &TaskContext, task: &Task, uid: &str) -> Result<Ports> {
    let ranges = ctx.port_ranges.clone();
    claim(&ctx.local, &task.spec.ports, uid, move |excluded, count| {
        let ranges = ranges.clone();
        blocking::run("probing for free host ports", move || Ok(probe(&ranges, &excluded, count)))
    })
    .await
}

/// [`assign_ports`] with the probe given: `probe(excluded, count)` finds up to
/// `count` free ports, none of them in `excluded`.
async fn claim<P, F>(local: &Mutex<HashMap<String, Local>>, wanted: &[TaskPort], uid: &str, probe: P) -> Result<Ports>
where
    P: Fn(HashSet<u16>, usize) -> F,
    F: Future<Output = Result<Vec<u16>>>,
{
    let open = wanted.iter().filter(|p| p.host_port.is_none()).count();
    // The task's own fixed ports are not free for its open ones either.
    let fixed: HashSet<u16> = wanted.iter().filter_map(|p| p.host_port).collect();
    for _ in 0..CLAIM_ATTEMPTS {
        let found = if open == 0 {
            Vec::new()
        } else {
            let excluded = held_by_others(&local.lock(), uid).union(&fixed).copied().collect();
            probe(excluded, open).await?
        };
        let mut local = local.lock();
        let held = held_by_others(&local, uid);
        if found.iter().any(|p| held.contains(p)) {
            continue;
        }
        let mut found = found.into_iter();
        let ports: Ports =
            wanted.iter().filter_map(|p| Some((p.name.clone(), p.host_port.or_else(|| found.next())?))).collect();
        let state = TaskState::preparing(ports.clone());
        match local.get_mut(uid) {
            Some(l) => l.state = state,
            None => {
                local.insert(uid.to_string(), Local::new(state));
            }
        }
        return Ok(ports);
    }
    Err(Error::Runtime(format!(
        "task {uid}: other launches took the free host ports found for it {CLAIM_ATTEMPTS} times in a row; \
         trying again"
    )))
}

/// The ports the tasks other than `uid` hold.
fn held_by_others(local: &HashMap<String, Local>, uid: &str) -> HashSet<u16> {
    local
        .iter()
        .filter(|(u, _)| u.as_str() != uid)
        .flat_map(|(_, l)| l.state.ports())
        .flat_map(|p| p.values().copied())
        .collect()
}

/// The first `count` ports of `ranges`, in order, that are not `excluded` and that
/// nothing on this host has bound. Blocks (a bind per port tried).
fn probe(ranges: &[PortRange], excluded: &HashSet<u16>, count: usize) -> Vec<u16> {
    ranges
        .iter()
        .flat_map(|r| r.begin..=r.end)
        .filter(|p| !excluded.contains(p) && std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
        .take(count)
        .collect()
}

fn ports_path(layout: &Layout, uid: &str) -> std::path::PathBuf {
    layout.task(uid).join("ports.json")
}

/// Records the ports handed to a task beside it, for a restarted agent.
pub(super) fn record_ports(layout: &Layout, uid: &str, ports: &Ports) {
    if let Ok(bytes) = serde_json::to_vec(ports)
        && let Err(e) = crate::layout::write_replace(&ports_path(layout, uid), &bytes)
    {
        tracing::warn!(uid, error = %e, "cannot record the task's ports");
    }
}

/// The ports a task was started with, as recorded beside it.
pub(super) fn recorded_ports(layout: &Layout, uid: &str) -> Option<Ports> {
    serde_json::from_slice(&std::fs::read(ports_path(layout, uid)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn port(name: &str, host_port: Option<u16>) -> TaskPort {
        TaskPort { name: name.into(), host_port, ..TaskPort::default() }
    }

    /// Free ports from 31000 on, as a probe that cannot see claims would find them.
    fn first_free(excluded: &HashSet<u16>, count: usize) -> Vec<u16> {
        (31000..32000).filter(|p| !excluded.contains(p)).take(count).collect()
    }

    fn holding(uid: &str, ports: &[(&str, u16)]) -> (String, Local) {
        let ports = ports.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        (uid.to_string(), Local::new(TaskState::preparing(ports)))
    }

    #[tokio::test]
    async fn open_ports_get_free_ones_and_fixed_ones_stay() {
        let local = Mutex::new(HashMap::from([holding("other", &[("web", 31000)])]));
        let wanted = [port("a", None), port("fixed", Some(31001)), port("b", None)];
        let ports = claim(&local, &wanted, "me", |ex, n| async move { Ok(first_free(&ex, n)) }).await.unwrap();
        assert_eq!(ports, Ports::from([("a".into(), 31002), ("fixed".into(), 31001), ("b".into(), 31003)]));
        assert_eq!(local.lock()["me"].state.ports(), Some(&ports), "held from now on");
    }

    #[tokio::test]
    async fn a_port_claimed_while_probing_is_not_handed_out_twice() {
        let local = Mutex::new(HashMap::new());
        let probes = AtomicUsize::new(0);
        let ports = claim(&local, &[port("http", None)], "me", |ex, n| {
            // The first probe finds 31000 free; another launch claims it before this
            // one can.
            if probes.fetch_add(1, Ordering::SeqCst) == 0 {
                local.lock().extend([holding("other", &[("http", 31000)])]);
            }
            async move { Ok(first_free(&ex, n)) }
        })
        .await
        .unwrap();
        assert_eq!(ports["http"], 31001);
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn ports_lost_again_and_again_fail_the_launch_for_a_retry() {
        let local = Mutex::new(HashMap::new());
        let n = AtomicUsize::new(0);
        let outcome = claim(&local, &[port("http", None)], "me", |_, _| {
            let i = n.fetch_add(1, Ordering::SeqCst) as u16;
            local.lock().extend([holding(&format!("other-{i}"), &[("http", 31000 + i)])]);
            async move { Ok(vec![31000 + i]) }
        })
        .await;
        assert!(matches!(outcome, Err(Error::Runtime(_))), "{outcome:?}");
        assert_eq!(n.load(Ordering::SeqCst), CLAIM_ATTEMPTS);
        assert!(!local.lock().contains_key("me"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_launches_never_share_a_port() {
        let local = Arc::new(Mutex::new(HashMap::new()));
        let mut launches = Vec::new();
        for i in 0..12 {
            let local = local.clone();
            launches.push(tokio::spawn(async move {
                let wanted = [port("a", None), port("b", None), port("c", None)];
                claim(&local, &wanted, &format!("task-{i}"), |ex, n| async move {
                    // Let the others probe too before this one claims.
                    tokio::task::yield_now().await;
                    Ok(first_free(&ex, n))
                })
                .await
                .unwrap()
            }));
        }
        let mut all = Vec::new();
        for l in launches {
            all.extend(l.await.unwrap().into_values());
        }
        let distinct: BTreeSet<u16> = all.iter().copied().collect();
        assert_eq!(all.len(), 36);
        assert_eq!(distinct.len(), 36, "a port was handed out twice: {all:?}");
    }
}
