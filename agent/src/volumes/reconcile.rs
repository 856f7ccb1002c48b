//! The agent's volume controller: [`decide`] what one volume bound to this node needs
//! (pure), then [`reconcile`] does it; [`sweep`] unmounts what the previous steps could
//! not see go (a `Retain` volume deleted: its object is simply gone).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use corral_api::kinds::volume::{
    ReclaimPolicy, VOLUME_DATA_FINALIZER, VOLUME_FINALIZER, Volume, VolumePhase, VolumeStatus,
};
use corral_runtime::{Action, Cache, CancellationToken};

use super::{Enforcement, Volumes, disk, key};
use crate::error::{Error, Result};

/// What one volume needs from this node's agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Not this node's volume.
    Ignore,
    /// Deleted, but a task may still use it (the protection finalizer is on): wait.
    Wait,
    /// Deleted and unused: unmount; remove the data if `delete_data`; then drop the
    /// data finalizer if `drop_finalizer`.
    Release {
        /// Reclaim policy `Delete`, and not a host directory.
        delete_data: bool,
        /// The volume carries `corral.dev/volume-data`.
        drop_finalizer: bool,
    },
    /// Make (or re-mount) it, measure it, report.
    Prepare,
}

/// Decides what volume `v` needs from the agent of `node`.
pub fn decide(v: &Volume, node: &str) -> Step {
    if v.spec.node_name.as_deref() != Some(node) {
        return Step::Ignore;
    }
    if v.metadata.deletion_timestamp.is_none() {
        return Step::Prepare;
    }
    let has = |f: &str| v.metadata.finalizers.iter().any(|x| x == f);
    if has(VOLUME_FINALIZER) {
        return Step::Wait;
    }
    Step::Release {
        delete_data: v.spec.reclaim_policy == ReclaimPolicy::Delete && v.spec.host_path.is_none(),
        drop_finalizer: has(VOLUME_DATA_FINALIZER),
    }
}

/// The status fields the agent owns, from how the volume was prepared and what it
/// holds: `used`, `enforcement` and a `message` when there is something to say.
///
/// A `Failed` volume keeps its message: the agent never moves a volume out of
/// `Failed` (phases other than `Failed` are the volumes controller's), and the message
/// is what its tasks are refused with.
pub fn agent_status(st: &mut VolumeStatus, size: u64, prepared: &super::Prepared, usage: Option<disk::Usage>) {
    st.enforcement = Some(prepared.enforcement.as_str().to_string());
    st.used = usage.map(|u| u.mib());
    if st.phase == VolumePhase::Failed {
        return;
    }
    let mut notes: Vec<String> = prepared.note.iter().cloned().collect();
    if let Some(u) = usage {
        if !u.complete {
            notes.push(format!(
                "usage is at least {} MiB (measuring stopped after {} files)",
                u.mib(),
                disk::MEASURE_LIMIT
            ));
        }
        if prepared.enforcement == Enforcement::Measured && u.mib() > size {
            notes.push(format!("over its size: {} MiB used of {size} MiB", u.mib()));
        }
    }
    st.message = if notes.is_empty() { None } else { Some(notes.join("; ")) };
}

/// The reconcile of one volume: see [`decide`].
pub async fn reconcile(v: Arc<Volume>, ctx: Arc<Volumes>) -> Result<Action> {
    match decide(&v, &ctx.node) {
        Step::Ignore | Step::Wait => Ok(Action::await_change()),
        Step::Release { delete_data, drop_finalizer } => {
            ctx.release(&v, delete_data).await?;
            if drop_finalizer {
                ctx.drop_finalizer((*v).clone(), VOLUME_DATA_FINALIZER).await?;
            }
            Ok(Action::await_change())
        }
        Step::Prepare => {
            let prepared = match ctx.ensure(&v).await {
                Ok(p) => p,
                Err(e) => {
                    let message = e.to_string();
                    tracing::warn!(volume = %v.metadata.name, error = %message, "cannot prepare a volume");
                    ctx.write_status((*v).clone(), |st| super::failed(st, &message)).await?;
                    // Retried now and then: a host path may appear, a disk be freed.
                    return Ok(Action::requeue(Duration::from_secs(60)));
                }
            };
            let measured = prepared.clone();
            let usage = crate::blocking::run("measuring a volume", move || disk::usage(&measured)).await?;
            let size = v.spec.size;
            ctx.write_status((*v).clone(), |st| agent_status(st, size, &prepared, usage)).await?;
            Ok(Action::requeue(super::USAGE_INTERVAL))
        }
    }
}

/// Backs off on errors; conflicts just re-read.
pub fn error_policy(v: &Arc<Volume>, err: &Error, _ctx: &Arc<Volumes>) -> Action {
    match err {
        Error::Api(e) if e.is_conflict() => Action::requeue(Duration::from_millis(50)),
        _ => {
            tracing::warn!(volume = %v.metadata.name, error = %err, "volume reconcile failed; retrying");
            Action::requeue(Duration::from_secs(2))
        }
    }
}

/// How often [`sweep`] looks for volumes whose objects are gone (a directory listing
/// and the mount table: cheap).
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Every [`SWEEP_INTERVAL`], unmounts the volumes mounted under the work dir
/// whose objects are gone (deleted with `Retain`: the data stays, unmounted; a new
/// volume of the same name finds it again). Nothing is removed here.
///
/// A volume is unmounted only when it was missing from the cache at two rounds in a
/// row: a volume just created, mounted by a task's launch before the cache heard of
/// it, must not lose its mount under the task.
pub async fn sweep(ctx: Arc<Volumes>, cache: Cache<Volume>, stop: CancellationToken) {
    tokio::select! {
        _ = cache.wait_synced() => {}
        _ = stop.cancelled() => return,
    }
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    let mut suspects: HashSet<(String, String)> = HashSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let known: HashSet<(String, String)> = cache.list().iter().map(|v| key(v)).collect();
        let root = ctx.layout.volumes();
        let _one = ctx.lock.lock().await;
        let before = std::mem::take(&mut suspects);
        let swept = crate::blocking::run("sweeping volumes", move || Ok(unmount_orphans(&root, &known, &before))).await;
        match swept {
            Ok((n, missing)) => {
                if n > 0 {
                    tracing::info!(unmounted = n, "unmounted volumes whose objects are gone");
                }
                suspects = missing;
            }
            Err(e) => tracing::warn!(error = %e, "cannot sweep volumes"),
        }
    }
}

/// Unmounts each `<root>/<ns>/<name>` mounted, not in `known`, and already in
/// `suspects`; returns how many, and the mounted volumes not in `known` (the next
/// round's suspects).
fn unmount_orphans(
    root: &std::path::Path,
    known: &HashSet<(String, String)>,
    suspects: &HashSet<(String, String)>,
) -> (usize, HashSet<(String, String)>) {
    let (mut n, mut missing) = (0, HashSet::new());
    let Ok(namespaces) = std::fs::read_dir(root) else { return (0, missing) };
    for ns in namespaces.flatten() {
        let Ok(volumes) = std::fs::read_dir(ns.path()) else { continue };
        let ns_name = ns.file_name().to_string_lossy().to_string();
        for v in volumes.flatten() {
            let id = (ns_name.clone(), v.file_name().to_string_lossy().to_string());
            if known.contains(&id) || !disk::is_mounted(&v.path()) {
                continue;
            }
            if !suspects.contains(&id) {
                missing.insert(id);
                continue;
            }
            match disk::unmount(&v.path()) {
                Ok(()) => n += 1,
                Err(e) => {
                    tracing::warn!(volume = %v.path().display(), error = %e, "cannot unmount a deleted volume");
                    missing.insert(id);
                }
            }
        }
    }
    (n, missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::kinds::volume::VolumeSpec;

    fn volume(node: Option<&str>, deleting: bool, finalizers: &[&str], policy: ReclaimPolicy, host: bool) -> Volume {
        let mut v = Volume::new(
            "v",
            VolumeSpec {
                size: 16,
                reclaim_policy: policy,
                node_name: node.map(str::to_string),
                host_path: host.then(|| "/srv".to_string()),
            },
        );
        if deleting {
            v.metadata.deletion_timestamp = Some(corral_api::meta::now_timestamp());
        }
        v.metadata.finalizers = finalizers.iter().map(|f| f.to_string()).collect();
        v
    }

    #[test]
    fn volumes_are_prepared_waited_for_or_released_by_their_own_node_only() {
        use ReclaimPolicy::{Delete, Retain};
        let both = [VOLUME_FINALIZER, VOLUME_DATA_FINALIZER];
        let release = |delete_data, drop_finalizer| Step::Release { delete_data, drop_finalizer };
        let cases = [
            ("another node's", volume(Some("b"), false, &[], Retain, false), Step::Ignore),
            ("unbound", volume(None, false, &[], Retain, false), Step::Ignore),
            ("live", volume(Some("a"), false, &both, Delete, false), Step::Prepare),
            ("deleted while in use", volume(Some("a"), true, &both, Delete, false), Step::Wait),
            (
                "deleted, unused, Delete",
                volume(Some("a"), true, &[VOLUME_DATA_FINALIZER], Delete, false),
                release(true, true),
            ),
            ("deleted, unused, Retain", volume(Some("a"), true, &[], Retain, false), release(false, false)),
            (
                "a host path is never removed",
                volume(Some("a"), true, &[VOLUME_DATA_FINALIZER], Delete, true),
                release(false, true),
            ),
            ("another node's deletion", volume(Some("b"), true, &[VOLUME_DATA_FINALIZER], Delete, false), Step::Ignore),
        ];
        for (name, v, want) in cases {
            assert_eq!(decide(&v, "a"), want, "{name}");
        }
    }

    #[test]
    fn the_agents_status_says_how_the_size_is_held_and_when_it_is_exceeded() {
        let p = |enforcement, note: Option<&str>| super::super::Prepared {
            dir: "/v".into(),
            enforcement,
            note: note.map(str::to_string),
        };
        let usage = |mib: u64, complete| Some(disk::Usage { bytes: mib * disk::MIB, complete });
        let mut st = VolumeStatus::default();
        agent_status(&mut st, 16, &p(Enforcement::Filesystem, None), usage(3, true));
        assert_eq!((st.used, st.enforcement.as_deref(), st.message.as_deref()), (Some(3), Some("filesystem"), None));
        agent_status(&mut st, 16, &p(Enforcement::Measured, Some("no loop devices")), usage(20, false));
        assert_eq!(st.enforcement.as_deref(), Some("measured"));
        let m = st.message.clone().unwrap_or_default();
        assert!(m.contains("no loop devices") && m.contains("at least 20") && m.contains("20 MiB used of 16"), "{m}");
        agent_status(&mut st, 16, &p(Enforcement::None, Some("a host directory")), None);
        assert_eq!((st.used, st.enforcement.as_deref()), (None, Some("none")));
        st.phase = VolumePhase::Failed;
        st.message = Some("cannot mount".into());
        agent_status(&mut st, 16, &p(Enforcement::Filesystem, None), usage(1, true));
        assert_eq!((st.used, st.message.as_deref()), (Some(1), Some("cannot mount")), "a failure's message stays");
    }
}
