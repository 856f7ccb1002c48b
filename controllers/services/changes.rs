//! What the services controller's reflectors saw change between two rounds: which
//! services to decide again, which tasks and offers came or went. A round works from
//! these, so that its cost follows what changed rather than the size of the cluster:
//! at 100,000 tasks, deciding every service every round was most of the CPU the
//! control plane spent.

use std::collections::HashSet;
use std::sync::Arc;

use corral_api::kinds::framework::Offer;
use corral_api::kinds::node::Node;
use corral_api::kinds::service::Service;
use corral_api::kinds::task::TaskSummary;
use corral_runtime::Change;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{service_key, service_of, task_key};

/// A task the cache saw change, as the round's memory of its own writes needs it.
pub(super) struct TaskSeen {
    /// `namespace/name` of its service.
    pub service: String,
    /// `namespace/name` of the task.
    pub key: String,
    /// The task's name.
    pub name: String,
    /// Deleted (or no longer a service's).
    pub gone: bool,
    /// Asked to die, or being deleted.
    pub going: bool,
}

/// Changes gathered since the last round.
#[derive(Default)]
pub(super) struct Changed {
    /// Services to decide again (`namespace/name`).
    pub services: HashSet<String>,
    /// Decide every service again: a node came, went or changed its attributes,
    /// which constraints read.
    pub all: bool,
    /// Tasks seen, in order.
    pub tasks: Vec<TaskSeen>,
    /// Offers seen deleted.
    pub offers_gone: Vec<String>,
}

/// The changes, shared between the reflectors' callbacks and the round loop.
pub(super) type Shared = Arc<Mutex<Changed>>;

/// Callback of the services' reflector.
pub(super) fn on_service(changed: &Shared, wake: &Arc<Notify>) -> impl Fn(Change<Service>) + Send + Sync + use<> {
    let (changed, wake) = (changed.clone(), wake.clone());
    move |c| {
        changed.lock().services.insert(service_key(c.object()));
        wake.notify_one();
    }
}

/// Callback of the tasks' reflector.
pub(super) fn on_task(changed: &Shared, wake: &Arc<Notify>) -> impl Fn(Change<TaskSummary>) + Send + Sync + use<> {
    let (changed, wake) = (changed.clone(), wake.clone());
    move |c| {
        let t = c.object();
        // The copy holds every task: one that is not (or no longer) a service's is
        // gone for the service it was of.
        let was = match &c {
            Change::Applied { previous: Some(p), .. } => service_of(&**p),
            _ => None,
        };
        let now = service_of(&**t);
        let mut ch = changed.lock();
        let mut told = false;
        for (service, gone) in [(was.filter(|w| Some(w) != now.as_ref()), true), (now, false)] {
            let Some(service) = service else { continue };
            ch.tasks.push(TaskSeen {
                key: task_key(t),
                name: t.metadata.name.clone(),
                gone: gone || matches!(c, Change::Deleted(_)),
                going: t.spec.kill || t.metadata.deletion_timestamp.is_some(),
                service: service.clone(),
            });
            ch.services.insert(service);
            told = true;
        }
        drop(ch);
        if told {
            wake.notify_one();
        }
    }
}

/// Callback of the offers' reflector: every offer made or taken back may change
/// what can be placed.
pub(super) fn on_offer(changed: &Shared, wake: &Arc<Notify>) -> impl Fn(Change<Offer>) + Send + Sync + use<> {
    let (changed, wake) = (changed.clone(), wake.clone());
    move |c| {
        if let Change::Deleted(o) = &c {
            changed.lock().offers_gone.push(o.metadata.name.clone());
        }
        wake.notify_one();
    }
}

/// Callback of the nodes' reflector. A heartbeat changes nothing a service reads;
/// only nodes coming, going or changing their attributes do.
pub(super) fn on_node(changed: &Shared, wake: &Arc<Notify>) -> impl Fn(Change<Node>) + Send + Sync + use<> {
    let (changed, wake) = (changed.clone(), wake.clone());
    move |c| {
        let relevant = match &c {
            Change::Applied { object, previous: Some(p) } => object.spec.attributes != p.spec.attributes,
            Change::Applied { previous: None, .. } | Change::Deleted(_) => true,
        };
        if relevant {
            changed.lock().all = true;
            wake.notify_one();
        }
    }
}

/// Callback of the reflector of services' volumes: a volume made, bound or gone
/// changes where its service's instance can go.
pub(super) fn on_volume(
    changed: &Shared,
    wake: &Arc<Notify>,
) -> impl Fn(Change<corral_api::kinds::Volume>) + Send + Sync + use<> {
    let (changed, wake) = (changed.clone(), wake.clone());
    move |c| {
        let v = c.object();
        let Some(service) = v.metadata.labels.get(corral_api::kinds::volume::VOLUME_SERVICE_LABEL) else { return };
        changed.lock().services.insert(format!("{}/{service}", v.metadata.namespace.as_deref().unwrap_or_default()));
        wake.notify_one();
    }
}
