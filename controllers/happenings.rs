//! Events the round-based controllers (services, jobs) record about the objects they
//! run: each controller's pure `decide` says what happened ([`Happening`]); the round
//! queues them ([`Queue`]) and one task records them, a few at once, so that no round
//! waits on an Event and a burst cannot grow memory without bound.

use std::sync::Arc;

use corral_api::ApiObject;
use corral_runtime::{EventType, Recorder};
use futures::StreamExt;
use tokio::sync::mpsc;

/// Events waiting to be recorded; past this, new ones are dropped (and logged).
const QUEUED: usize = 4096;
/// Events recorded at once.
const IN_FLIGHT: usize = 8;

/// One Event to record about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Happening {
    /// A warning (something keeps the object from doing its work) or not.
    pub warning: bool,
    /// The Event's reason, in Kubernetes' style: `DeploymentStarted`.
    pub reason: &'static str,
    /// What happened, for a person.
    pub message: String,
}

impl Happening {
    /// A `Normal` Event.
    pub fn normal(reason: &'static str, message: String) -> Self {
        Happening { warning: false, reason, message }
    }

    /// A `Warning` Event.
    pub fn warning(reason: &'static str, message: String) -> Self {
        Happening { warning: true, reason, message }
    }
}

/// Where a round puts the Events it wants recorded.
pub(crate) struct Queue<K> {
    tx: mpsc::Sender<(Arc<K>, Happening)>,
}

impl<K: ApiObject + Send + Sync + 'static> Queue<K> {
    /// A queue, and the task recording what it is given with `recorder` (which names
    /// the component), until the queue is dropped.
    pub(crate) fn new(recorder: Recorder) -> (Self, impl std::future::Future<Output = ()> + Send) {
        let (tx, mut rx) = mpsc::channel::<(Arc<K>, Happening)>(QUEUED);
        let recording = async move {
            futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
                .for_each_concurrent(IN_FLIGHT, |(object, h)| {
                    let recorder = &recorder;
                    async move {
                        let type_ = if h.warning { EventType::Warning } else { EventType::Normal };
                        if let Err(e) = recorder.publish(&*object, type_, h.reason, &h.message).await {
                            tracing::debug!(error = %e, object = %object.meta().name, reason = h.reason, "cannot record an event");
                        }
                    }
                })
                .await;
        };
        (Queue { tx }, recording)
    }

    /// Queues `happenings` about `object`; dropped when the queue is full.
    pub(crate) fn push(&self, object: &Arc<K>, happenings: impl IntoIterator<Item = Happening>) {
        for h in happenings {
            if self.tx.try_send((object.clone(), h)).is_err() {
                tracing::debug!(object = %object.meta().name, "too many events queued; one is dropped");
            }
        }
    }
}
