//! Local persistent volumes on the node: the agent's half of the `Volume` kind.
//!
//! A volume bound to this node (`spec.nodeName`) lives in the work dir, at
//! `volumes/<namespace>/<name>/`: a loop-mounted ext4 image of the volume's size where
//! the host allows (`filesystem`: writes beyond the size fail), else a plain
//! directory whose usage is measured (`measured`); see [`disk`]. A host-path volume
//! is a host directory under the agent's allow-list, used as it is ([`host_path`]).
//!
//! The agent makes each volume once, when it first sees it, and keeps it mounted
//! across tasks and agent restarts (tasks still running use it); a restarted agent,
//! or one on a rebooted host, mounts the images again. It writes only the status
//! fields that are its own — `used`, `enforcement`, `message`, and phase `Failed` when
//! a volume cannot be made or mounted — and, once a deleted volume is no longer used
//! (its `corral.dev/volume-protection` finalizer gone), unmounts it, removes its data
//! with reclaim policy `Delete` (then drops `corral.dev/volume-data`), or keeps it
//! with `Retain`. Host directories are never removed.

pub mod disk;
pub mod host_path;
mod reconcile;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use corral_api::KindInfo;
use corral_api::kinds::volume::{Volume, VolumePhase, VolumeStatus};
use corral_client::{Api, Client};
use corral_runtime::{ObjectRef, WorkQueue};

use crate::error::{Error, Result};
use crate::layout::Layout;
pub use disk::{Enforcement, Prepared};
pub use reconcile::{error_policy, reconcile, sweep};

/// How often a volume's usage is measured and reported.
pub const USAGE_INTERVAL: Duration = Duration::from_secs(30);

/// Writes tried before a conflicting status write gives up.
const WRITE_ATTEMPTS: usize = 5;

/// How the node's volumes are kept.
#[derive(Clone, Debug, Default)]
pub struct VolumeConfig {
    /// Never make filesystem images (`--no-volume-images`): sizes are measured only.
    pub no_images: bool,
    /// Host directories host-path volumes may use, by prefix (`--host-path-allow`).
    pub host_path_allow: Vec<PathBuf>,
}

/// The node's volumes: what the task launch and the volume controller share.
pub struct Volumes {
    /// This node's name.
    pub node: String,
    layout: Layout,
    api: Api<Volume>,
    kind: Arc<KindInfo>,
    host_path_allow: Vec<PathBuf>,
    tools: std::result::Result<disk::ImageTools, String>,
    /// One make, mount or release at a time: they are rare, and a task's launch and
    /// the controller may reach the same volume together.
    lock: tokio::sync::Mutex<()>,
    /// What each volume was last prepared as.
    prepared: parking_lot::Mutex<HashMap<(String, String), Prepared>>,
    queue: OnceLock<Arc<WorkQueue<ObjectRef>>>,
}

impl Volumes {
    /// The volumes of `node`, kept under `layout`.
    pub fn new(node: String, client: Client, layout: Layout, cfg: &VolumeConfig) -> Arc<Self> {
        let tools = disk::image_support(!cfg.no_images);
        match &tools {
            Ok(_) => tracing::info!("volumes are loop-mounted filesystem images: sizes are enforced"),
            Err(why) => tracing::info!(%why, "volumes are plain directories: sizes are measured, not enforced"),
        }
        let api = Api::<Volume>::all(client);
        Arc::new(Volumes {
            node,
            layout,
            kind: api.kind().clone(),
            api,
            host_path_allow: cfg.host_path_allow.clone(),
            tools,
            lock: tokio::sync::Mutex::new(()),
            prepared: parking_lot::Mutex::new(HashMap::new()),
            queue: OnceLock::new(),
        })
    }

    /// Hands the volume controller's queue over, so that a task's end can have its
    /// volumes measured again at once.
    pub fn set_queue(&self, queue: Arc<WorkQueue<ObjectRef>>) {
        let _ = self.queue.set(queue);
    }

    /// Asks for volume `namespace/name` to be measured and reported soon.
    pub fn touch(&self, namespace: &str, name: &str) {
        if let Some(q) = self.queue.get() {
            q.add(ObjectRef::namespaced(self.kind.resource(), namespace, name));
        }
    }

    /// The volume `name` of `namespace` for a task about to launch on this node.
    ///
    /// # Errors
    /// [`Error::Invalid`] with a message for the task's status: the volume is missing,
    /// bound to another node (or to none), being deleted, or `Failed`.
    pub async fn for_task(&self, namespace: &str, name: &str) -> Result<Volume> {
        let v = match self.api.in_namespace(namespace).get(name).await {
            Ok(v) => v,
            Err(e) if e.is_not_found() => {
                return Err(Error::Invalid(format!("volume {name:?} does not exist in namespace {namespace:?}")));
            }
            Err(e) if e.code() == Some(403) => {
                return Err(Error::Invalid(format!("volume {name:?} is not bound to node {:?}", self.node)));
            }
            Err(e) => return Err(e.into()),
        };
        match v.spec.node_name.as_deref() {
            Some(n) if n == self.node => {}
            Some(n) => {
                return Err(Error::Invalid(format!("volume {name:?} is bound to node {n:?}, not {:?}", self.node)));
            }
            None => return Err(Error::Invalid(format!("volume {name:?} is not bound to a node yet"))),
        }
        if v.metadata.deletion_timestamp.is_some() {
            return Err(Error::Invalid(format!("volume {name:?} is being deleted")));
        }
        if let Some(st) = v.status.as_ref().filter(|s| s.phase == VolumePhase::Failed) {
            let why = st.message.as_deref().unwrap_or("no reason given");
            return Err(Error::Invalid(format!("volume {name:?} has failed: {why}")));
        }
        Ok(v)
    }

    /// Makes `v` ready on this node (see [`disk::prepare`] and [`host_path::resolve`])
    /// and remembers how. Idempotent: a mounted volume is left as it is.
    ///
    /// # Errors
    /// Why the volume cannot be used, for its status and its tasks'.
    pub async fn ensure(&self, v: &Volume) -> Result<Prepared> {
        let (ns, name) = key(v);
        let prepared = match &v.spec.host_path {
            Some(hp) => Prepared {
                dir: host_path::resolve(hp, &self.host_path_allow)?,
                enforcement: Enforcement::None,
                note: Some("a host directory: its size is neither enforced nor measured".into()),
            },
            None => {
                let dir = self.layout.volume(&ns, &name)?;
                let image = self.layout.volume_image(&ns, &name)?;
                let (size, tools) = (v.spec.size, self.tools.clone());
                let _one = self.lock.lock().await;
                crate::blocking::run("preparing a volume", move || disk::prepare(&dir, &image, size, &tools)).await?
            }
        };
        self.prepared.lock().insert((ns, name), prepared.clone());
        Ok(prepared)
    }

    /// Ensures `v` for a task, recording a failure on the volume (phase `Failed`) so
    /// that its later tasks fail at once with the same reason.
    ///
    /// # Errors
    /// As [`Volumes::ensure`].
    pub async fn ensure_for_task(&self, v: &Volume) -> Result<Prepared> {
        let (ns, name) = key(v);
        match self.ensure(v).await {
            Ok(p) => {
                self.touch(&ns, &name);
                Ok(p)
            }
            Err(e) => {
                let message = e.to_string();
                if let Err(w) = self.write_status(v.clone(), |st| failed(st, &message)).await {
                    tracing::warn!(volume = %name, error = %w, "cannot record a volume's failure");
                }
                Err(e)
            }
        }
    }

    /// Unmounts `v` and, if `delete_data`, removes its data; host directories are
    /// never touched.
    async fn release(&self, v: &Volume, delete_data: bool) -> Result<()> {
        let (ns, name) = key(v);
        self.prepared.lock().remove(&(ns.clone(), name.clone()));
        if v.spec.host_path.is_some() {
            return Ok(());
        }
        let dir = self.layout.volume(&ns, &name)?;
        let image = self.layout.volume_image(&ns, &name)?;
        let _one = self.lock.lock().await;
        tracing::info!(namespace = %ns, volume = %name, delete_data, "releasing a deleted volume");
        crate::blocking::run("releasing a volume", move || disk::release(&dir, &image, delete_data)).await
    }

    /// Applies `change` to the volume's status and writes it, again on a fresh copy
    /// after a conflict (another writer, the volumes controller, owns the phase).
    async fn write_status(&self, mut v: Volume, change: impl Fn(&mut VolumeStatus)) -> Result<Volume> {
        let (ns, name) = key(&v);
        let api = self.api.in_namespace(&ns);
        for _ in 1..WRITE_ATTEMPTS {
            let mut st = v.status.clone().unwrap_or_default();
            change(&mut st);
            if v.status.as_ref() == Some(&st) {
                return Ok(v);
            }
            v.status = Some(st);
            match api.update_status(&v).await {
                Ok(written) => return Ok(written),
                Err(e) if e.is_conflict() => v = api.get(&name).await?,
                Err(e) => return Err(e.into()),
            }
        }
        let mut st = v.status.clone().unwrap_or_default();
        change(&mut st);
        v.status = Some(st);
        Ok(api.update_status(&v).await?)
    }

    /// Drops the finalizer `finalizer` from `v`, again on a fresh copy after a conflict.
    async fn drop_finalizer(&self, mut v: Volume, finalizer: &str) -> Result<()> {
        let (ns, name) = key(&v);
        let api = self.api.in_namespace(&ns);
        for attempt in 1..=WRITE_ATTEMPTS {
            if !v.metadata.finalizers.iter().any(|f| f == finalizer) {
                return Ok(());
            }
            v.metadata.finalizers.retain(|f| f != finalizer);
            match api.update(&v).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) if e.is_conflict() && attempt < WRITE_ATTEMPTS => match api.get_opt(&name).await? {
                    Some(fresh) => v = fresh,
                    None => return Ok(()),
                },
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// A volume's namespace and name.
fn key(v: &Volume) -> (String, String) {
    (v.metadata.namespace.clone().unwrap_or_else(|| "default".into()), v.metadata.name.clone())
}

/// Marks a status `Failed` with `message`.
fn failed(st: &mut VolumeStatus, message: &str) {
    st.phase = VolumePhase::Failed;
    st.message = Some(message.to_string());
}
