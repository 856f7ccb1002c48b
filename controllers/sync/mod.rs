//! The sync controller: GitOps. Every [`SyncObject`] keeps the objects of a git
//! repository or a directory applied, as Flux's Kustomization does.
//!
//! A round goes over every Sync ([`decide::next`]): one that is due — its interval
//! passed, its spec changed, or a sync was requested (the trigger endpoint or
//! `corral sync now` set [`REQUESTED_AT_ANNOTATION`]) — has its source fetched
//! ([`source`]: `git ls-remote` first, so an unchanged repository costs no fetch)
//! and is synced ([`engine::sync_revision`]):
//!
//! 1. the revision's manifests are read and checked whole ([`decide::desired`]);
//! 2. the objects the Sync's label selects are read;
//! 3. [`decide::plan`] says what to apply (all of a new revision, only drifted
//!    objects of the same one with `selfHeal`) and what to prune;
//! 4. the plan goes to the server as one transaction, as the Sync's service account:
//!    validated whole, written whole or not at all;
//! 5. the status (inventory, drift, health, conditions) is written, with an Event.
//!
//! A Sync waits for the Syncs it `dependsOn` to be Ready, and after applying, for its
//! services and jobs to be healthy ([`decide::health`]) until its timeout. A Sync
//! that prunes carries [`PRUNE_FINALIZER`]: deleting it deletes what it applied
//! first. A Sync with a `pushed` source belongs to `corral sync DIR`, which syncs it
//! itself.

pub mod decide;
pub mod engine;
pub mod source;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use corral_api::kinds::sync::{
    PRUNE_FINALIZER, REQUESTED_AT_ANNOTATION, SYNC_LABEL, SyncObject, SyncStatus, field_manager,
};
use corral_api::transaction::{Operation, Target, Transaction};
use corral_client::{Api, Client, ListParams, TransactParams};
use corral_runtime::events::{EventType, Recorder};
use corral_runtime::{Cache, CancellationToken, Reflector, Runnable};
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use self::decide::Next;
use self::engine::{applies_as, rfc3339, set_condition, short};
use crate::error::Error;
use crate::rounds::poke;

/// The controller's name, in logs, metrics and `--controllers`.
pub const NAME: &str = "sync";

/// How often health is checked while a sync waits for it.
const HEALTH_EVERY: Duration = Duration::from_secs(2);
/// How long a Sync waits before checking its dependencies again.
const DEPENDENCY_EVERY: Duration = Duration::from_secs(5);
/// Syncs fetched and applied at once.
const IN_FLIGHT: usize = 4;
/// How long to gather changes before a round.
const SETTLE: Duration = Duration::from_millis(20);

/// Settings of the sync controller.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Where the working copies of git sources live (one directory per Sync); a
    /// directory of the system's temporary directory when unset.
    pub work_dir: Option<PathBuf>,
    /// Directories under which a Sync may name a `directory` source; none by default,
    /// since such a source reads the files of the machine the controller runs on.
    pub directory_allow: Vec<PathBuf>,
}

/// The sync controller, for a [`corral_runtime::Manager`].
pub struct Syncs {
    config: Config,
    counts: Arc<Counts>,
}

struct Counts {
    syncs: Counter,
    failures: Counter,
    writes: Counter,
    duration: Histogram,
}

impl Counts {
    fn new() -> Self {
        Counts {
            syncs: Counter::default(),
            failures: Counter::default(),
            writes: Counter::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
        }
    }
}

impl Syncs {
    /// The controller.
    pub fn new(config: Config) -> Self {
        Syncs { config, counts: Arc::new(Counts::new()) }
    }
}

/// What the controller remembers of one Sync between rounds.
#[derive(Default)]
struct Memory {
    /// When it last synced (or tried to).
    last_sync: Option<DateTime<Utc>>,
    /// The revision last fetched, so an unchanged remote costs no fetch.
    fetched: Option<String>,
    /// Since when it waits for health, if it does.
    waiting_since: Option<DateTime<Utc>>,
    /// Not before then (dependencies not ready).
    not_before: Option<DateTime<Utc>>,
}

#[async_trait]
impl Runnable for Syncs {
    fn name(&self) -> &str {
        NAME
    }

    fn register_metrics(&self, registry: &mut Registry) {
        registry.register("corral_sync_runs", "Syncs of a revision, applied or refused", self.counts.syncs.clone());
        registry.register("corral_sync_failures", "Syncs whose revision was not applied", self.counts.failures.clone());
        registry.register("corral_sync_writes", "Objects written by syncs", self.counts.writes.clone());
        registry.register(
            "corral_sync_duration_seconds",
            "How long one sync of one Sync took, fetch included",
            self.counts.duration.clone(),
        );
    }

    async fn run(&self, client: Client, shutdown: CancellationToken) -> corral_runtime::Result<()> {
        let wake = Arc::new(Notify::new());
        let syncs = Reflector::new(Api::<SyncObject>::all(client.clone()), ListParams::default());
        let cache = syncs.cache();
        let work = self.config.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("corral-sync"));
        let reflect = syncs.run(shutdown.clone(), poke(&wake));
        let allow = self.config.directory_allow.clone();
        let rounds = rounds(client, cache, work, allow, wake, self.counts.clone(), shutdown.clone());
        tokio::select! {
            _ = reflect => {}
            _ = rounds => {}
        }
        Ok(())
    }
}

async fn rounds(
    client: Client,
    cache: Cache<SyncObject>,
    work: PathBuf,
    allow: Vec<PathBuf>,
    wake: Arc<Notify>,
    counts: Arc<Counts>,
    shutdown: CancellationToken,
) {
    cache.wait_synced().await;
    let recorder = Recorder::new(client.clone(), "sync-controller");
    let mut memory: HashMap<String, Memory> = HashMap::new();
    loop {
        let now = Utc::now();
        let all = cache.list();
        memory.retain(|k, _| all.iter().any(|s| key(s) == *k));
        let mut due = Vec::new();
        let mut next_at: Option<DateTime<Utc>> = None;
        for s in &all {
            if s.spec.source.pushed.is_some() {
                continue;
            }
            let pruning = s.metadata.has_finalizer(PRUNE_FINALIZER);
            if s.metadata.deletion_timestamp.is_some() {
                if pruning && memory.get(&key(s)).is_none_or(|m| m.not_before.is_none_or(|t| t <= now)) {
                    due.push((s.clone(), Step::Finalize));
                }
                continue;
            }
            if s.spec.prune != pruning {
                // The watch brings the Sync back with its finalizer set right.
                due.push((s.clone(), Step::Finalizer(s.spec.prune)));
                continue;
            }
            let m = memory.entry(key(s)).or_default();
            if m.last_sync.is_none() {
                m.last_sync = s.status.as_ref().and_then(|st| st.last_sync_time.as_deref()).and_then(parse_time);
            }
            if m.not_before.is_some_and(|t| t > now) {
                next_at = earliest(next_at, m.not_before);
                continue;
            }
            let status = s.status.clone().unwrap_or_default();
            let requested = s.metadata.annotations.get(REQUESTED_AT_ANNOTATION).map(String::as_str);
            match decide::next(
                &s.spec,
                &status,
                s.metadata.generation.unwrap_or(0),
                requested,
                m.last_sync,
                m.waiting_since.is_some(),
                now,
            ) {
                Next::Suspended => {
                    if status.conditions.first().is_none_or(|c| c.reason.as_deref() != Some("Suspended")) {
                        due.push((s.clone(), Step::Suspend));
                    }
                }
                Next::Sync => due.push((s.clone(), Step::Sync)),
                Next::CheckHealth => {
                    due.push((s.clone(), Step::Health));
                    next_at =
                        earliest(next_at, Some(now + chrono::Duration::from_std(HEALTH_EVERY).unwrap_or_default()));
                }
                Next::WaitUntil(t) => next_at = earliest(next_at, Some(t)),
            }
        }
        let ctx =
            Ctx { client: &client, cache: &cache, work: &work, allow: &allow, recorder: &recorder, counts: &counts };
        let done: Vec<(String, Memory, Option<DateTime<Utc>>)> = futures::stream::iter(due)
            .map(|(s, step)| {
                let m = memory.remove(&key(&s)).unwrap_or_default();
                let ctx = &ctx;
                async move {
                    let m = ctx.step(&s, step, m).await;
                    let due = decide::interval_due(&s.spec, m.last_sync);
                    (key(&s), m, due)
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for (k, m, due) in done {
            if m.waiting_since.is_some() {
                next_at =
                    earliest(next_at, Some(Utc::now() + chrono::Duration::from_std(HEALTH_EVERY).unwrap_or_default()));
            }
            // A sync that wrote nothing (an unchanged revision) changes no status, so no
            // watch event wakes this loop: its next interval must be slept to.
            next_at = earliest(next_at, m.not_before);
            next_at = earliest(next_at, due);
            memory.insert(k, m);
        }
        // A time already past is due now (not in a minute).
        let sleep = next_at
            .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(60))
            .clamp(Duration::from_millis(10), Duration::from_secs(60));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => tokio::time::sleep(SETTLE).await,
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

enum Step {
    Sync,
    Health,
    Suspend,
    /// Put the prune finalizer on (true) or take it off (false).
    Finalizer(bool),
    /// The Sync is being deleted: delete what it applied, then let it go.
    Finalize,
}

struct Ctx<'a> {
    client: &'a Client,
    cache: &'a Cache<SyncObject>,
    work: &'a PathBuf,
    allow: &'a [PathBuf],
    recorder: &'a Recorder,
    counts: &'a Counts,
}

impl Ctx<'_> {
    async fn step(&self, s: &Arc<SyncObject>, step: Step, mut m: Memory) -> Memory {
        let now = Utc::now();
        let mut status = s.status.clone().unwrap_or_default();
        let now_s = rfc3339(now);
        match step {
            Step::Finalizer(on) => self.set_finalizer(s, on).await,
            Step::Finalize => {
                if let Err(why) = self.prune_all(s).await {
                    self.publish(s, true, "PruneFailed", &why).await;
                    m.not_before = Some(now + chrono::Duration::from_std(DEPENDENCY_EVERY).unwrap_or_default());
                } else {
                    self.set_finalizer(s, false).await;
                }
            }
            Step::Suspend => {
                set_condition(&mut status.conditions, "Ready", false, "Suspended", "spec.suspend is true", &now_s);
                set_condition(&mut status.conditions, "Reconciling", false, "Suspended", "", &now_s);
                self.write_status(s, status).await;
            }
            Step::Health => {
                let started = m.waiting_since.unwrap_or(now);
                match self.health(s, &mut status, started, now).await {
                    Ok(done) => {
                        if done {
                            m.waiting_since = None;
                        }
                        self.write_status(s, status).await;
                    }
                    Err(e) => tracing::debug!(error = %e, sync = %key(s), "cannot read the health of a sync's objects"),
                }
            }
            Step::Sync => {
                let started = std::time::Instant::now();
                self.sync(s, &mut m, status, now).await;
                self.counts.duration.observe(started.elapsed().as_secs_f64());
            }
        }
        m
    }

    async fn sync(&self, s: &Arc<SyncObject>, m: &mut Memory, mut status: SyncStatus, now: DateTime<Utc>) {
        let now_s = rfc3339(now);
        let requested = s.metadata.annotations.get(REQUESTED_AT_ANNOTATION).cloned();
        // Dependencies first: a Sync applies only on top of Ready ones.
        if let Some(why) = self.dependencies_not_ready(s) {
            set_condition(&mut status.conditions, "Ready", false, "DependencyNotReady", &why, &now_s);
            set_condition(&mut status.conditions, "Reconciling", true, "DependencyNotReady", &why, &now_s);
            m.not_before = Some(now + chrono::Duration::from_std(DEPENDENCY_EVERY).unwrap_or_default());
            self.write_status(s, status).await;
            return;
        }
        m.not_before = None;
        m.last_sync = Some(now);
        self.counts.syncs.inc();
        let fetched = match &s.spec.source {
            src if src.git.is_some() => {
                let dir =
                    self.work.join(format!("{}.{}", s.metadata.namespace.as_deref().unwrap_or(""), s.metadata.name));
                let git = src.git.clone().unwrap_or_default();
                source::fetch_git(&dir, &git, m.fetched.as_deref()).await
            }
            src => match &src.directory {
                Some(d) => match source::allowed(std::path::Path::new(d), self.allow) {
                    Ok(dir) => source::directory(&dir).await,
                    Err(e) => Err(e),
                },
                None => Err(Error::Source("spec.source names neither git nor directory".into())),
            },
        };
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) => {
                self.counts.failures.inc();
                let message = format!("cannot fetch the source: {e}");
                status.last_sync_time = Some(now_s.clone());
                status.observed_generation = s.metadata.generation;
                status.last_handled_request = requested;
                set_condition(&mut status.conditions, "Ready", false, "SourceFailed", &message, &now_s);
                set_condition(&mut status.conditions, "Stalled", true, "SourceFailed", &message, &now_s);
                self.publish(s, true, "SourceFailed", &message).await;
                self.write_status(s, status).await;
                return;
            }
        };
        m.fetched = Some(fetched.revision.clone());
        let writer = self.client.impersonating(&applies_as(s), &[]);
        let outcome = match engine::sync_revision(self.client, &writer, s, &fetched.revision, &fetched.root, now).await
        {
            Ok(o) => o,
            Err(e) => {
                self.counts.failures.inc();
                tracing::warn!(error = %e, sync = %key(s), "a sync could not reach the server");
                return;
            }
        };
        self.counts.writes.inc_by(outcome.writes);
        let mut status = outcome.status;
        status.last_handled_request = requested;
        if let Some((warning, reason, message)) = &outcome.event {
            self.publish(s, *warning, reason, message).await;
        }
        if !outcome.applied {
            self.counts.failures.inc();
            self.write_status(s, status).await;
            return;
        }
        set_condition(&mut status.conditions, "Stalled", false, "Applied", "", &now_s);
        if s.spec.waits() && outcome.health.iter().any(|h| h.health != "Healthy") {
            // A new wait starts with a new revision; a resync of the same keeps it.
            if m.waiting_since.is_none() || outcome.writes > 0 {
                m.waiting_since = Some(now);
            }
            let _ = self.health(s, &mut status, m.waiting_since.unwrap_or(now), now).await;
        } else {
            m.waiting_since = None;
            ready(&mut status, &now_s);
        }
        self.write_status(s, status).await;
    }

    /// Reads the health of the Sync's objects into `status`; whether the wait is over
    /// (healthy, failed, or past the timeout).
    async fn health(
        &self,
        s: &SyncObject,
        status: &mut SyncStatus,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let now_s = rfc3339(now);
        let health = self.read_health(s, status).await?;
        status.health = health;
        let failed: Vec<String> = status
            .health
            .iter()
            .filter(|h| h.health == "Failed")
            .map(|h| format!("{}/{}: {}", h.object.kind, h.object.name, h.message.clone().unwrap_or_default()))
            .collect();
        let pending: Vec<String> = status
            .health
            .iter()
            .filter(|h| h.health == "Progressing")
            .map(|h| format!("{}/{}: {}", h.object.kind, h.object.name, h.message.clone().unwrap_or_default()))
            .collect();
        if !failed.is_empty() {
            let message = format!("unhealthy: {}", failed.join("; "));
            set_condition(&mut status.conditions, "Ready", false, "HealthCheckFailed", &message, &now_s);
            set_condition(&mut status.conditions, "Reconciling", false, "HealthCheckFailed", "", &now_s);
            return Ok(true);
        }
        if pending.is_empty() {
            ready(status, &now_s);
            return Ok(true);
        }
        let waited = (now - since).num_seconds().max(0) as u64;
        let message =
            format!("waiting for {} of {} objects: {}", pending.len(), status.health.len(), pending.join("; "));
        if waited >= s.spec.timeout() {
            let message = format!("{message} (not healthy within {} s)", s.spec.timeout());
            set_condition(&mut status.conditions, "Ready", false, "HealthCheckTimeout", &message, &now_s);
            set_condition(&mut status.conditions, "Stalled", true, "HealthCheckTimeout", &message, &now_s);
            set_condition(&mut status.conditions, "Reconciling", false, "HealthCheckTimeout", "", &now_s);
            return Ok(true);
        }
        set_condition(&mut status.conditions, "Ready", false, "Progressing", &message, &now_s);
        set_condition(&mut status.conditions, "Reconciling", true, "Progressing", &message, &now_s);
        Ok(false)
    }

    async fn read_health(
        &self,
        s: &SyncObject,
        status: &SyncStatus,
    ) -> Result<Vec<corral_api::kinds::sync::ObjectHealth>, Error> {
        // Only the kinds that have a health.
        let inventory: Vec<_> =
            status.inventory.iter().filter(|e| matches!(e.kind.as_str(), "Service" | "Job")).cloned().collect();
        if inventory.is_empty() {
            return Ok(Vec::new());
        }
        let label = decide::label_value(s.metadata.namespace.as_deref().unwrap_or("default"), &s.metadata.name);
        let kinds = self.client.kinds().await?;
        let live = engine::read_live(self.client, &kinds, &[], &inventory, &label).await?;
        Ok(decide::health(&live, &status.inventory))
    }

    async fn set_finalizer(&self, s: &SyncObject, on: bool) {
        let mut updated = s.clone();
        let changed = if on {
            updated.metadata.add_finalizer(PRUNE_FINALIZER)
        } else {
            updated.metadata.remove_finalizer(PRUNE_FINALIZER)
        };
        if !changed {
            return;
        }
        let api: Api<SyncObject> =
            Api::namespaced(self.client.clone(), s.metadata.namespace.as_deref().unwrap_or("default"));
        if let Err(e) = api.update(&updated).await {
            tracing::debug!(error = %e, sync = %key(s), "cannot update a sync's finalizers");
        }
    }

    /// Deletes every object of the Sync's inventory that still carries its label, in
    /// one transaction, as whom the Sync applies as.
    async fn prune_all(&self, s: &SyncObject) -> Result<(), String> {
        let ns = s.metadata.namespace.as_deref().unwrap_or("default");
        let label = decide::label_value(ns, &s.metadata.name);
        let inventory = s.status.as_ref().map(|st| st.inventory.as_slice()).unwrap_or_default();
        // Namespaces last: their deletion takes what is in them anyway.
        let mut entries: Vec<_> = inventory.iter().collect();
        entries.sort_by_key(|e| e.kind == "Namespace");
        let operations: Vec<Operation> = entries
            .into_iter()
            .map(|e| {
                Operation::delete(Target {
                    api_version: e.api_version.clone(),
                    kind: e.kind.clone(),
                    namespace: e.namespace.clone(),
                    name: e.name.clone(),
                    uid: None,
                    label: Some(format!("{SYNC_LABEL}={label}")),
                })
            })
            .collect();
        if operations.is_empty() {
            return Ok(());
        }
        let count = operations.len();
        let writer = self.client.impersonating(&applies_as(s), &[]);
        let params = TransactParams { field_manager: Some(field_manager(ns, &s.metadata.name)), ..Default::default() };
        match writer.transact(&Transaction { operations }, &params).await {
            Ok(r) => {
                tracing::info!(sync = %key(s), objects = count, deleted = r.writes, "a deleted sync's objects pruned");
                Ok(())
            }
            Err(e) => Err(format!("the Sync is deleted but its {count} objects could not be: {e}")),
        }
    }

    fn dependencies_not_ready(&self, s: &SyncObject) -> Option<String> {
        let ns = s.metadata.namespace.as_deref().unwrap_or("default");
        let mut waiting = Vec::new();
        for dep in &s.spec.depends_on {
            let (dns, dname) = dep.split_once('/').unwrap_or((ns, dep));
            let ready = self
                .cache
                .get(&corral_runtime::ObjectRef::namespaced(self.cache.resource(), dns, dname))
                .and_then(|d| d.status.clone())
                .is_some_and(|st| st.conditions.first().is_some_and(|c| c.type_ == "Ready" && c.status == "True"));
            if !ready {
                waiting.push(format!("{dns}/{dname}"));
            }
        }
        (!waiting.is_empty()).then(|| format!("waiting for {} to be Ready", waiting.join(", ")))
    }

    async fn publish(&self, s: &SyncObject, warning: bool, reason: &str, message: &str) {
        let t = if warning { EventType::Warning } else { EventType::Normal };
        if let Err(e) = self.recorder.publish(s, t, reason, message).await {
            tracing::debug!(error = %e, sync = %key(s), "cannot record an Event");
        }
    }

    async fn write_status(&self, s: &SyncObject, status: SyncStatus) {
        if s.status.as_ref() == Some(&status) {
            return;
        }
        let mut updated = s.clone();
        updated.status = Some(status);
        let api: Api<SyncObject> =
            Api::namespaced(self.client.clone(), s.metadata.namespace.as_deref().unwrap_or("default"));
        if let Err(e) = api.update_status(&updated).await {
            tracing::debug!(error = %e, sync = %key(s), "cannot write a sync's status");
        }
    }
}

fn ready(status: &mut SyncStatus, now: &str) {
    let rev = status.last_applied_revision.as_deref().map(short).unwrap_or("?").to_string();
    let message = if status.drift.is_empty() {
        format!("revision {rev} applied")
    } else {
        format!("revision {rev} applied; {} objects drifted from it", status.drift.len())
    };
    set_condition(&mut status.conditions, "Ready", true, "Applied", &message, now);
    set_condition(&mut status.conditions, "Reconciling", false, "Applied", "", now);
    set_condition(&mut status.conditions, "Stalled", false, "Applied", "", now);
}

fn key(s: &SyncObject) -> String {
    format!("{}/{}", s.metadata.namespace.as_deref().unwrap_or_default(), s.metadata.name)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}
