//! Host ports handed to tasks.

use std::collections::BTreeMap;

use corral_api::kinds::task::Task;

use super::TaskContext;
use super::state::{Local, TaskState};
use crate::layout::Layout;

/// Host ports of the task's named ports: as given, or (until a scheduler assigns them)
/// the first ports of the node's ranges that no task of this node holds and nothing
/// else has bound. What is handed out is remembered until the task is cleaned up.
pub(super) fn assign_ports(ctx: &TaskContext, task: &Task, uid: &str) -> BTreeMap<String, u16> {
    let mut local = ctx.local.lock();
    let taken: std::collections::HashSet<u16> = local
        .iter()
        .filter(|(u, _)| u.as_str() != uid)
        .flat_map(|(_, l)| l.state.ports())
        .flat_map(|p| p.values().copied())
        .collect();
    let mut out = BTreeMap::new();
    let mut candidates = ctx
        .port_ranges
        .iter()
        .flat_map(|r| r.begin..=r.end)
        .filter(|p| !taken.contains(p) && std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok());
    for p in &task.spec.ports {
        let port = match p.host_port {
            Some(port) => Some(port),
            None => candidates.find(|c| !out.values().any(|v| v == c)),
        };
        if let Some(port) = port {
            out.insert(p.name.clone(), port);
        }
    }
    let state = TaskState::preparing(out.clone());
    match local.get_mut(uid) {
        Some(l) => l.state = state,
        None => {
            local.insert(uid.to_string(), Local::new(state));
        }
    }
    out
}

pub(super) fn ports_path(layout: &Layout, uid: &str) -> std::path::PathBuf {
    layout.task(uid).join("ports.json")
}

/// The ports a task was started with, as recorded beside it.
pub(super) fn recorded_ports(layout: &Layout, uid: &str) -> Option<BTreeMap<String, u16>> {
    serde_json::from_slice(&std::fs::read(ports_path(layout, uid)).ok()?).ok()
}
