//! One copy of every task for the controllers that need them all — offers, services,
//! jobs and node lifecycle — as client-go's shared informers: one watch, one decode per
//! event, one cache (100,000 tasks kept three times cost most of the control plane's
//! memory), and each controller told of every change through its own callback.
//!
//! The first controller to subscribe starts the reflector; the last to leave stops
//! it (a controller restarted alone joins the one running). A subscriber that joins
//! a running reflector is first told of every task already cached, as `Applied`, so
//! it starts from the whole present as it would from its own first list; it may be
//! told of a change twice, never missed.

use std::sync::Arc;

use corral_api::Resource;
use corral_api::kinds::task::{Task, TaskSummary};
use corral_client::{Api, Client, ListParams};
use corral_runtime::reflector::Change;
use corral_runtime::{Cache, CancellationToken, Reflector};
use parking_lot::{Mutex, RwLock};

use crate::services::service_of;

/// A subscriber's callback.
pub(crate) type OnTask = Arc<dyn Fn(Change<TaskSummary>) + Send + Sync>;

/// Index of the cache: the node a task is bound to.
pub(crate) const BY_NODE: &str = "node";
/// Index of the cache: the framework that launched a task.
pub(crate) const BY_FRAMEWORK: &str = "framework";
/// Index of the cache: `NAMESPACE/SERVICE` of a service's task.
pub(crate) const BY_SERVICE: &str = "service";
/// Index of the cache: `NAMESPACE/RUN` of a job run's task.
pub(crate) const BY_RUN: &str = "run";

/// The shared copy of every task: one per process, for the built-in controllers and
/// the DNS controller beside them (see [`crate::builtin_sharing`] and
/// [`crate::dns::DnsRecords::sharing`]).
#[derive(Default)]
pub struct SharedTasks {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    running: Option<Running>,
    next_id: u64,
}

struct Running {
    cache: Cache<TaskSummary>,
    subscribers: Arc<RwLock<Vec<(u64, OnTask)>>>,
    stop: CancellationToken,
}

/// Held while a controller uses the shared copy; dropping it unsubscribes.
pub(crate) struct Subscription {
    shared: Arc<SharedTasks>,
    id: u64,
}

impl SharedTasks {
    /// Subscribes `on_change`, starting the reflector through `client` if none runs.
    /// Returns the cache (wait for it to be synced before acting on it).
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        client: &Client,
        on_change: OnTask,
    ) -> (Cache<TaskSummary>, Subscription) {
        let mut inner = self.inner.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let running = inner.running.get_or_insert_with(|| start(client));
        {
            // Under the write lock no change is handed out: whatever the cache does not
            // hold yet reaches this subscriber through the reflector afterwards.
            let mut subscribers = running.subscribers.write();
            for task in running.cache.list() {
                on_change(Change::Applied { object: task, previous: None });
            }
            subscribers.push((id, on_change));
        }
        (running.cache.clone(), Subscription { shared: self.clone(), id })
    }
}

fn start(client: &Client) -> Running {
    let api = Api::<TaskSummary>::for_kind(client.clone(), Task::shared_kind_info(), None);
    let reflector = Reflector::new(api, ListParams::default())
        .index(BY_NODE, Arc::new(|t: &TaskSummary| t.spec.node_name.clone().into_iter().collect()))
        .index(BY_FRAMEWORK, Arc::new(|t: &TaskSummary| t.spec.framework.clone().into_iter().collect()))
        .index(BY_SERVICE, Arc::new(|t: &TaskSummary| service_of(t).into_iter().collect()))
        .index(BY_RUN, Arc::new(|t: &TaskSummary| crate::jobs::run_of(t).into_iter().collect()));
    let cache = reflector.cache();
    let subscribers: Arc<RwLock<Vec<(u64, OnTask)>>> = Arc::default();
    let stop = CancellationToken::new();
    let to = subscribers.clone();
    tokio::spawn(reflector.run(stop.clone(), move |change| {
        for (_, on_change) in to.read().iter() {
            on_change(change.clone());
        }
    }));
    Running { cache, subscribers, stop }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.shared.inner.lock();
        let Some(running) = inner.running.as_mut() else { return };
        let mut subscribers = running.subscribers.write();
        subscribers.retain(|(id, _)| *id != self.id);
        if subscribers.is_empty() {
            drop(subscribers);
            running.stop.cancel();
            inner.running = None;
        }
    }
}

/// The shared copy against a stand-in API (SIMULATED: a transport answering the
/// list with two tasks and holding every watch open), so the joining and leaving of
/// subscribers is seen without a server.
#[cfg(test)]
mod sharing_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use bytes::Bytes;
    use corral_client::{Response, Transport};
    use futures::StreamExt;

    use corral_api::kinds::service::SERVICE_LABEL;

    use super::*;

    #[derive(Default)]
    struct TwoTasks {
        lists: AtomicUsize,
    }

    #[async_trait]
    impl Transport for TwoTasks {
        async fn send(&self, request: http::Request<Bytes>) -> corral_client::Result<Response> {
            let watch = request.uri().query().is_some_and(|q| q.contains("watch=true"));
            let body = if watch {
                futures::stream::pending().boxed()
            } else {
                self.lists.fetch_add(1, Ordering::SeqCst);
                let task = |name: &str, rv: u64| {
                    serde_json::json!({"apiVersion": "corral.dev/v1", "kind": "Task",
                        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv.to_string(),
                            "labels": {SERVICE_LABEL: "web"}},
                        "spec": {"nodeName": "n1", "framework": "services"}})
                };
                let list = serde_json::json!({"apiVersion": "corral.dev/v1", "kind": "TaskList",
                    "metadata": {"resourceVersion": "7"}, "items": [task("a", 5), task("b", 6)]});
                futures::stream::iter([Ok(Bytes::from(list.to_string()))]).boxed()
            };
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
            Ok(Response { status: http::StatusCode::OK, headers, body })
        }

        fn server(&self) -> String {
            "simulated".into()
        }
    }

    #[test]
    fn a_services_task_is_indexed_by_namespace_and_service() {
        let mut t = TaskSummary::default();
        assert_eq!(service_of(&t), None);
        t.metadata.namespace = Some("shop".into());
        t.metadata.labels.insert(SERVICE_LABEL.into(), "web".into());
        assert_eq!(service_of(&t).as_deref(), Some("shop/web"));
    }

    fn counter() -> (Arc<AtomicUsize>, OnTask) {
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        (
            seen,
            Arc::new(move |_| {
                s.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

    #[tokio::test]
    async fn a_late_subscriber_is_told_of_every_cached_task_and_the_last_to_leave_stops_the_watch() {
        let api = Arc::new(TwoTasks::default());
        let client = Client::new(api.clone());
        let shared = Arc::new(SharedTasks::default());
        let (first_seen, first) = counter();
        let (cache, a) = shared.subscribe(&client, first);
        cache.wait_synced().await;
        assert_eq!(first_seen.load(Ordering::SeqCst), 2, "the first list reaches the first subscriber");
        assert_eq!(cache.by_index(BY_SERVICE, "ns/web").len(), 2);
        assert_eq!(cache.by_index(BY_NODE, "n1").len(), 2);
        assert_eq!(cache.by_index(BY_FRAMEWORK, "services").len(), 2);

        let (late_seen, late) = counter();
        let (_, b) = shared.subscribe(&client, late);
        assert_eq!(late_seen.load(Ordering::SeqCst), 2, "a late subscriber is told of what is cached");
        assert_eq!(api.lists.load(Ordering::SeqCst), 1, "one watch for both");

        drop(a);
        assert!(shared.inner.lock().running.is_some(), "one subscriber is left");
        drop(b);
        assert!(shared.inner.lock().running.is_none(), "the last to leave stops it");
        let (again_seen, again) = counter();
        let (cache, _c) = shared.subscribe(&client, again);
        cache.wait_synced().await;
        assert_eq!(api.lists.load(Ordering::SeqCst), 2, "a new subscriber starts a new watch");
        assert_eq!(again_seen.load(Ordering::SeqCst), 2);
    }
}
