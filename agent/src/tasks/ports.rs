//! Host ports held by tasks.
//!
//! The agent does not pick host ports: a task reaches its node with every
//! `spec.ports[].hostPort` set, by the framework from the ports of the offer it
//! accepted, or by the API server (the node's lowest free ports) for a task bound by
//! hand. Both choose from what the server's ledger knows is free on the node, so the
//! agent takes the ports as given — binding sockets to find free ones here would only
//! race the server's choices.
//!
//! It still records which task holds which port, for what depends on it (the task's
//! `PORT_<NAME>` variables, health checks by port name, the ports reported after a
//! restart), and it refuses what cannot be right: a port without a host port (a task
//! written before ports were assigned upstream, or by some other path), and a host
//! port that another live task of this node holds (tasks written before, or bound by
//! hand to the same fixed port). Either ends the task `FAILED`: retrying would refuse
//! it again.

use std::collections::HashMap;

use corral_api::kinds::node::PortRange;
use corral_api::kinds::task::{Task, TaskPort};
use parking_lot::Mutex;

use super::TaskContext;
use super::state::{Local, Ports, TaskState};
use crate::error::Error;
use crate::layout::Layout;

/// Status reason of a task with a port that has no host port.
pub(super) const PORT_UNASSIGNED: &str = "PortUnassigned";

/// Status reason of a task with a host port another live task of this node holds.
pub(super) const PORT_IN_USE: &str = "PortInUse";

/// Why a task's ports are refused: the status reason (a constant above, for programs
/// to match) and the error that explains it (for people).
pub(super) type Refused = (&'static str, Error);

/// The host ports of the task's named ports, as its spec gives them, held by the task
/// from now until it is cleaned up.
///
/// # Errors
/// [`PORT_UNASSIGNED`] if a port has no host port; [`PORT_IN_USE`] if another task of
/// this node that has not ended holds one of them. Both are final: the spec will not
/// change by itself.
pub(super) fn assign_ports(ctx: &TaskContext, task: &Task, uid: &str) -> Result<Ports, Refused> {
    claim(&ctx.local, &task.spec.ports, uid, &ctx.port_ranges)
}

/// [`assign_ports`] on the agent's task table; `ranges` (the node's) only serve to
/// tell the user where host ports come from.
fn claim(
    local: &Mutex<HashMap<String, Local>>,
    wanted: &[TaskPort],
    uid: &str,
    ranges: &[PortRange],
) -> Result<Ports, Refused> {
    let mut ports = Ports::new();
    for (i, p) in wanted.iter().enumerate() {
        let Some(host_port) = p.host_port else {
            return Err((
                PORT_UNASSIGNED,
                Error::Invalid(format!(
                    "spec.ports[{i}] ({:?}) has no hostPort, and the agent no longer picks host ports: the \
                     framework picks them from the offer it accepts, and the API server picks them for a task \
                     bound to a node by hand (this node's ranges: {}); create the task again through one of \
                     those, or give the port a hostPort",
                    p.name,
                    corral_api::allocation::show_ports(ranges)
                )),
            ));
        };
        ports.insert(p.name.clone(), host_port);
    }
    // Checked and held under one lock, so that of two tasks given the same port only
    // one ever holds it.
    let mut local = local.lock();
    for (i, p) in wanted.iter().enumerate() {
        let Some(host_port) = p.host_port else { continue };
        if let Some((other, holder)) = holder_of(&local, uid, host_port) {
            let holder = holder
                .key
                .as_ref()
                .map(|k| format!("task {}/{} (uid {other})", k.namespace.as_deref().unwrap_or_default(), k.name))
                .unwrap_or_else(|| format!("the task with uid {other}"));
            let message = format!(
                "spec.ports[{i}] ({:?}): host port {host_port} is held by {holder}, which has not ended on \
                 this node; two tasks cannot listen on one port. Create the task again with a free host port (the \
                 framework's offer, or the server for a task bound by hand, gives one), or once the other has \
                 ended",
                p.name
            );
            // Never launched: it holds nothing.
            local.remove(uid);
            return Err((PORT_IN_USE, Error::Invalid(message)));
        }
    }
    let state = TaskState::preparing(ports.clone());
    match local.get_mut(uid) {
        Some(l) => l.state = state,
        None => {
            local.insert(uid.to_string(), Local::new(state));
        }
    }
    Ok(ports)
}

/// The task other than `uid` that holds `port` and has not ended, with its uid. An
/// ended task keeps its ports until it is cleaned up, but its process let them go,
/// and the server hands them out again as soon as the end is reported — which comes
/// before the clean-up.
fn holder_of<'a>(local: &'a HashMap<String, Local>, uid: &str, port: u16) -> Option<(&'a str, &'a Local)> {
    local.iter().find_map(|(u, l)| {
        let holds = u.as_str() != uid
            && l.state.end().is_none()
            && l.state.ports().is_some_and(|ps| ps.values().any(|p| *p == port));
        holds.then_some((u.as_str(), l))
    })
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
    use corral_runtime::ObjectRef;

    use super::*;
    use crate::tasks::state::End;

    fn port(name: &str, host_port: Option<u16>) -> TaskPort {
        TaskPort { name: name.into(), host_port, ..TaskPort::default() }
    }

    fn holding(uid: &str, ports: &[(&str, u16)]) -> (String, Local) {
        let ports = ports.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        (uid.to_string(), Local::new(TaskState::preparing(ports)))
    }

    const RANGES: &[PortRange] = &[PortRange { begin: 31000, end: 32000 }];

    #[test]
    fn ports_are_taken_as_the_spec_gives_them() {
        let local = Mutex::new(HashMap::from([holding("other", &[("web", 31000)])]));
        let wanted = [port("a", Some(31002)), port("fixed", Some(8080)), port("b", Some(31001))];
        let ports = claim(&local, &wanted, "me", RANGES).unwrap();
        assert_eq!(ports, Ports::from([("a".into(), 31002), ("fixed".into(), 8080), ("b".into(), 31001)]));
        assert_eq!(local.lock()["me"].state.ports(), Some(&ports), "held from now on");
    }

    #[test]
    fn a_task_without_ports_holds_none() {
        let local = Mutex::new(HashMap::new());
        assert_eq!(claim(&local, &[], "me", RANGES).unwrap(), Ports::new());
        assert_eq!(local.lock()["me"].state.ports(), Some(&Ports::new()));
    }

    #[test]
    fn a_port_without_host_port_is_refused_naming_it() {
        let local = Mutex::new(HashMap::new());
        let wanted = [port("web", Some(31000)), port("admin", None)];
        let (reason, e) = claim(&local, &wanted, "me", RANGES).unwrap_err();
        assert_eq!(reason, PORT_UNASSIGNED);
        let message = e.to_string();
        assert!(message.contains("spec.ports[1]") && message.contains("\"admin\""), "{message}");
        assert!(message.contains("framework") && message.contains("server"), "{message}");
        assert!(message.contains("31000-32000"), "{message}");
        assert!(!local.lock().contains_key("me"), "holds nothing");
    }

    #[test]
    fn a_port_held_by_another_task_is_refused() {
        let mut other = holding("other", &[("web", 31000)]);
        other.1.key = Some(ObjectRef::namespaced("corral.dev/tasks", "shop", "web-1"));
        let local = Mutex::new(HashMap::from([other]));
        let (reason, e) = claim(&local, &[port("http", Some(31000))], "me", RANGES).unwrap_err();
        assert_eq!(reason, PORT_IN_USE);
        let message = e.to_string();
        assert!(message.contains("31000") && message.contains("shop/web-1"), "{message}");
        assert!(!local.lock().contains_key("me"), "holds nothing");
        assert_eq!(local.lock()["other"].state.ports().map(|p| p["web"]), Some(31000), "the holder keeps it");
    }

    #[test]
    fn a_holder_not_reconciled_yet_is_named_by_uid() {
        let local = Mutex::new(HashMap::from([holding("uid-1", &[("web", 31000)])]));
        let (reason, e) = claim(&local, &[port("http", Some(31000))], "me", RANGES).unwrap_err();
        assert_eq!(reason, PORT_IN_USE);
        assert!(e.to_string().contains("uid-1"), "{e}");
    }

    #[test]
    fn a_port_of_an_ended_task_may_be_taken() {
        let (uid, mut ended) = holding("ended", &[("web", 31000)]);
        ended.state.ended(End::NotStarted("gone".into()));
        let local = Mutex::new(HashMap::from([(uid, ended)]));
        let ports = claim(&local, &[port("http", Some(31000))], "me", RANGES).unwrap();
        assert_eq!(ports["http"], 31000);
    }

    #[test]
    fn claiming_again_keeps_the_tasks_own_ports() {
        let local = Mutex::new(HashMap::new());
        let wanted = [port("http", Some(31000))];
        claim(&local, &wanted, "me", RANGES).unwrap();
        // A retried reconcile (its status write failed) claims the same ports again.
        assert_eq!(claim(&local, &wanted, "me", RANGES).unwrap()["http"], 31000);
    }

    #[test]
    fn ports_recorded_beside_a_task_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path()).unwrap();
        std::fs::create_dir_all(layout.task("me")).unwrap();
        let ports = Ports::from([("http".into(), 31000)]);
        record_ports(&layout, "me", &ports);
        assert_eq!(recorded_ports(&layout, "me"), Some(ports));
        assert_eq!(recorded_ports(&layout, "unknown"), None);
    }
}
