//! Writing task statuses through a node's reports ([`corral_api::task_report`]):
//! the writes made while a report is in flight go together in the next.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use corral_api::kinds::task::Task;
use corral_api::task_report::{MAX_REPORT_ENTRIES, TaskStatusEntry, TaskStatusReport};
use corral_client::task_report::entry_result;
use corral_client::{Client, Error, Result};
use tokio::sync::oneshot;

/// Writes the statuses of one node's tasks through reports: status writes made while
/// a report is in flight wait and go together in the next, as a store's group commit
/// gathers writes. A single write goes out at once, alone; a burst (ten tasks started
/// in one second) goes in one or two requests instead of one each. Cheap to clone.
#[derive(Clone)]
pub struct StatusReporter {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    node: String,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// Whether a sender is at work; it sends until nothing waits.
    sending: bool,
}

struct Waiting {
    entry: TaskStatusEntry,
    answer: oneshot::Sender<Result<u64>>,
}

impl StatusReporter {
    /// A reporter for node `node`'s tasks, over `client`.
    pub fn new(client: Client, node: impl Into<String>) -> Self {
        let inner = Inner { client, node: node.into(), queue: Default::default() };
        StatusReporter { inner: Arc::new(inner) }
    }

    /// The node it reports for.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Writes `entry`'s status, in the next report; its task's revision after the
    /// write.
    ///
    /// # Errors
    /// As the task's own status write would fail (see [`entry_result`]), or as the
    /// report carrying it failed.
    pub async fn write(&self, entry: TaskStatusEntry) -> Result<u64> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut q = self.inner.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.waiting.push_back(Waiting { entry, answer });
            !std::mem::replace(&mut q.sending, true)
        };
        if start {
            tokio::spawn(self.inner.clone().send_all());
        }
        answered.await.map_err(|_| Error::Invalid("the status reporter stopped before answering".into()))?
    }

    /// Writes `task`'s status, as it is, through [`StatusReporter::write`] (only if
    /// the task is still at its revision, when it names one); the task as written —
    /// the same, at its new revision.
    ///
    /// # Errors
    /// As [`StatusReporter::write`].
    pub async fn write_task(&self, mut task: Task) -> Result<Task> {
        let entry = TaskStatusEntry {
            namespace: task.metadata.namespace.clone().unwrap_or_default(),
            name: task.metadata.name.clone(),
            resource_version: task.metadata.resource_version.clone(),
            status: task.status.clone().unwrap_or_default(),
        };
        let revision = self.write(entry).await?;
        task.metadata.resource_version = Some(revision.to_string());
        Ok(task)
    }
}

impl Inner {
    /// Sends reports until nothing waits.
    async fn send_all(self: Arc<Self>) {
        // Writes made together (a node's tasks started in one pass) join the first report.
        tokio::task::yield_now().await;
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                let batch = take_batch(&mut q.waiting);
                if batch.is_empty() {
                    q.sending = false;
                    return;
                }
                batch
            };
            let (entries, answers): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.entry, w.answer)).unzip();
            let report = TaskStatusReport { entries };
            match self.client.report_task_statuses(&self.node, &report).await {
                Ok(outcomes) => {
                    for (outcome, answer) in outcomes.iter().zip(answers) {
                        // A writer that stopped waiting no longer needs the answer.
                        let _ = answer.send(entry_result(outcome));
                    }
                }
                Err(e) => {
                    for answer in answers {
                        let _ = answer.send(Err(copy_of(&e)));
                    }
                }
            }
        }
    }
}

/// The next report's entries: the oldest waiting, at most
/// [`MAX_REPORT_ENTRIES`], and no task
/// twice (a later write of a task waits for the next report, so the writes of one
/// task stay in order).
fn take_batch(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    let mut names = HashSet::new();
    let mut batch = Vec::new();
    while batch.len() < MAX_REPORT_ENTRIES
        && let Some(next) = waiting.front()
        && names.insert((next.entry.namespace.clone(), next.entry.name.clone()))
        && let Some(w) = waiting.pop_front()
    {
        batch.push(w);
    }
    batch
}

/// `e` again, for each writer whose report failed with it.
fn copy_of(e: &Error) -> Error {
    match e {
        Error::Api(s) => Error::Api(s.clone()),
        Error::Transport { server, failure, source } => {
            Error::Transport { server: server.clone(), failure: *failure, source: source.to_string().into() }
        }
        Error::Decode { what, message } => Error::Decode { what: what.clone(), message: message.clone() },
        other => Error::Invalid(other.to_string()),
    }
}
