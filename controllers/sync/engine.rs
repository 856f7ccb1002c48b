//! One sync of one revision, through the API: read the manifests, read what is live,
//! [`decide::plan`], send the plan as one transaction, and say what came of it. The
//! sync controller and `corral sync DIR` both sync with it.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use corral_api::ApiObject;
use corral_api::kinds::service::Condition;
use corral_api::kinds::sync::{
    InventoryEntry, ObjectHealth, SYNC_LABEL, SyncError, SyncObject, SyncStatus, field_manager,
};
use corral_api::transaction::{Outcome as TxOutcome, Transaction, TransactionResult, split_cause};
use corral_client::manifests::read_tree;
use corral_client::{Client, ListParams, TransactParams};
use serde_json::Value;

use super::decide::{self, Desired, Plan, label_value};
use crate::error::{Error, Result};

/// The user a Sync without `serviceAccountName` applies as.
pub use corral_api::kinds::sync::SYNC_CONTROLLER_USER;

/// What one sync came to.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The status to write.
    pub status: SyncStatus,
    /// Objects written.
    pub writes: u64,
    /// Whether the revision was applied (or was already there).
    pub applied: bool,
    /// What to tell in an Event: `(warning, reason, message)`; none when nothing
    /// happened worth telling.
    pub event: Option<(bool, &'static str, String)>,
    /// Health of the synced services and jobs.
    pub health: Vec<ObjectHealth>,
    /// How many objects were created, changed, left as they were and deleted.
    pub counts: Counts,
}

/// What became of a transaction's objects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Created.
    pub created: usize,
    /// Changed.
    pub configured: usize,
    /// Left as they were.
    pub unchanged: usize,
    /// Deleted (pruned).
    pub deleted: usize,
}

impl Counts {
    fn of(result: &TransactionResult) -> Self {
        let mut c = Counts::default();
        for r in &result.results {
            match r.outcome {
                TxOutcome::Created => c.created += 1,
                TxOutcome::Configured => c.configured += 1,
                TxOutcome::Unchanged => c.unchanged += 1,
                TxOutcome::Deleted => c.deleted += 1,
                TxOutcome::Absent => {}
            }
        }
        c
    }
}

/// Whom a Sync applies as: its service account, or [`SYNC_CONTROLLER_USER`].
pub fn applies_as(sync: &SyncObject) -> String {
    match &sync.spec.service_account_name {
        Some(sa) => format!("system:serviceaccount:{}:{sa}", sync.metadata.namespace.as_deref().unwrap_or("default")),
        None => SYNC_CONTROLLER_USER.to_string(),
    }
}

/// The condition `type_` set to `status`, first of `conditions` when `Ready`; its
/// transition time kept while its status stays.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
) {
    let status = if status { "True" } else { "False" };
    let since = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    conditions.retain(|c| c.type_ != type_);
    let c = Condition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()).filter(|m: &String| !m.is_empty()),
        last_transition_time: Some(since),
    };
    if type_ == "Ready" {
        conditions.insert(0, c);
    } else {
        conditions.push(c);
    }
}

/// A revision read and planned against the cluster.
pub struct Prepared {
    /// What the revision wants, in order.
    pub desired: Vec<Desired>,
    /// The live objects the Sync's label selects.
    pub live: HashMap<InventoryEntry, Value>,
    /// What to send.
    pub plan: Plan,
}

/// Reads the manifests of `sync` under `root` (`spec.path` inside it) and plans
/// them against the live objects, as a new revision when `changed`.
///
/// # Errors
/// The outer error when the server cannot be reached; the inner one with every
/// problem of the manifests.
pub async fn prepare(
    reader: &Client,
    sync: &SyncObject,
    root: &Path,
    changed: bool,
) -> Result<std::result::Result<Prepared, Vec<SyncError>>> {
    let ns = sync.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let label = label_value(&ns, &sync.metadata.name);
    let inventory = sync.status.as_ref().map(|s| s.inventory.clone()).unwrap_or_default();
    let dir = match &sync.spec.path {
        Some(p) => root.join(p.trim_start_matches('/')),
        None => root.to_path_buf(),
    };
    let (mut docs, mut problems) = tokio::task::spawn_blocking(move || read_tree(&dir))
        .await
        .map_err(|e| Error::Source(format!("reading the manifests: {e}")))?;
    // Files are named as the repository names them, from its root.
    if let Some(prefix) = sync.spec.path.as_deref().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        for d in &mut docs {
            d.source = format!("{prefix}/{}", d.source);
        }
        for p in &mut problems {
            p.place = format!("{prefix}/{}", p.place);
        }
    }
    let kinds = reader.kinds().await?;
    let lookup = |api_version: &str, kind: &str| {
        kinds.iter().find(|k| k.api_version() == api_version && k.kind == kind).map(|k| k.namespaced)
    };
    let target_ns = sync.spec.target_namespace.clone().unwrap_or_else(|| ns.clone());
    let desired = match decide::desired(&docs, &problems, &lookup, &label, &target_ns) {
        Ok(d) => d,
        Err(errors) => return Ok(Err(errors)),
    };
    let live = read_live(reader, &kinds, &desired, &inventory, &label).await?;
    let plan = decide::plan(&desired, &live, &inventory, changed, &sync.spec, &label);
    Ok(Ok(Prepared { desired, live, plan }))
}

/// Syncs `sync` to the manifests of `revision`, found under `root` (the source's
/// root; `spec.path` is read inside it). `reader` reads as the controller; `writer`
/// writes as whom the Sync applies as.
///
/// # Errors
/// Only when the server cannot be reached to read the live objects; every refusal
/// of the revision itself is in the outcome's status.
pub async fn sync_revision(
    reader: &Client,
    writer: &Client,
    sync: &SyncObject,
    revision: &str,
    root: &Path,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let ns = sync.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = sync.metadata.name.clone();
    let old = sync.status.clone().unwrap_or_default();
    let changed =
        old.last_applied_revision.as_deref() != Some(revision) || old.observed_generation != sync.metadata.generation;
    let Prepared { desired, mut live, plan } = match prepare(reader, sync, root, changed).await? {
        Ok(p) => p,
        Err(errors) => return Ok(refused(sync, revision, errors, "InvalidManifests", now)),
    };
    let mut writes = 0;
    let mut counts = Counts::default();
    if !plan.operations.is_empty() {
        let params = TransactParams { dry_run: false, field_manager: Some(field_manager(&ns, &name)), force: true };
        let tx = Transaction { operations: plan.operations.clone() };
        match writer.transact(&tx, &params).await {
            Ok(result) => {
                writes = result.writes;
                counts = Counts::of(&result);
                // What the health wait reads: the objects as the transaction left
                // them, from its answer rather than another list.
                for (i, r) in result.results.iter().enumerate() {
                    match (plan.sources.get(i).copied().flatten(), &r.object) {
                        (Some(d), Some(obj)) => {
                            live.insert(desired[d].entry.clone(), obj.clone());
                        }
                        (None, _) => {
                            if let Some(t) = plan.operations.get(i).and_then(|o| o.target.as_ref()) {
                                live.retain(|e, _| {
                                    !(e.kind == t.kind && e.namespace == t.namespace && e.name == t.name)
                                });
                            }
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                let errors = refusal_errors(&e, &plan, &desired, &applies_as(sync));
                let reason = match e.code() {
                    Some(403) => "Forbidden",
                    Some(409) => "Conflict",
                    Some(422) => "Invalid",
                    _ => "ApplyFailed",
                };
                if e.code().is_none_or(|c| c >= 500) {
                    return Err(e.into());
                }
                return Ok(refused(sync, revision, errors, reason, now));
            }
        }
    }
    let health = decide::health(&live, &plan.inventory);
    let mut status = old.clone();
    let now_s = rfc3339(now);
    status.last_attempted_revision = Some(revision.to_string());
    status.last_applied_revision = Some(revision.to_string());
    status.observed_generation = sync.metadata.generation;
    status.errors.clear();
    status.objects = Some(plan.inventory.len() as u64);
    status.inventory = plan.inventory.clone();
    // Drift healed by this very sync is not drift any more.
    status.drift = if sync.spec.self_heal { Vec::new() } else { plan.drift.clone() };
    status.health = health.clone();
    if changed || writes > 0 {
        status.last_writes = Some(writes);
        status.last_sync_time = Some(now_s.clone());
    }
    let event = if changed {
        Some((
            false,
            "Synced",
            format!(
                "revision {} applied: {} objects, {} written, {} pruned",
                short(revision),
                plan.inventory.len(),
                writes,
                plan.pruned.len()
            ),
        ))
    } else if writes > 0 {
        Some((false, "Healed", format!("{writes} objects edited by hand were applied again: {}", drift_list(&plan))))
    } else if !plan.drift.is_empty() && plan.drift != old.drift {
        Some((true, "Drift", format!("objects differ from revision {}: {}", short(revision), drift_list(&plan))))
    } else {
        None
    };
    Ok(Outcome { status, writes, applied: true, event, health, counts })
}

fn drift_list(plan: &Plan) -> String {
    plan.drift
        .iter()
        .take(5)
        .map(|d| format!("{}/{} ({})", d.object.kind, d.object.name, d.fields.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `now` as the RFC 3339 UTC times statuses hold.
pub fn rfc3339(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The first 12 characters of a revision, as people read commit ids.
pub fn short(revision: &str) -> &str {
    let end = revision.char_indices().nth(if revision.starts_with("sha256:") { 19 } else { 12 });
    end.map_or(revision, |(i, _)| &revision[..i])
}

/// The outcome of a revision refused: the cluster stays at the last good revision.
pub fn refused(
    sync: &SyncObject,
    revision: &str,
    errors: Vec<SyncError>,
    reason: &'static str,
    now: DateTime<Utc>,
) -> Outcome {
    let mut status = sync.status.clone().unwrap_or_default();
    // The same revision refused for the same reasons again: nothing new to write.
    let again = status.last_attempted_revision.as_deref() == Some(revision)
        && status.errors == errors
        && status.observed_generation == sync.metadata.generation;
    let now_s = if again { status.last_sync_time.clone().unwrap_or_else(|| rfc3339(now)) } else { rfc3339(now) };
    status.last_attempted_revision = Some(revision.to_string());
    status.observed_generation = sync.metadata.generation;
    status.last_sync_time = Some(now_s.clone());
    status.last_writes = Some(0);
    let first = errors.first().map(describe).unwrap_or_default();
    let message = format!(
        "revision {} not applied ({} problem{}): {first}; the cluster stays at {}",
        short(revision),
        errors.len(),
        if errors.len() == 1 { "" } else { "s" },
        status.last_applied_revision.as_deref().map_or("no revision", short)
    );
    status.errors = errors;
    set_condition(&mut status.conditions, "Ready", false, reason, &message, &now_s);
    set_condition(&mut status.conditions, "Stalled", true, reason, &message, &now_s);
    set_condition(&mut status.conditions, "Reconciling", false, reason, "", &now_s);
    let event = (!again).then_some((true, reason, message));
    Outcome { status, writes: 0, applied: false, event, health: Vec::new(), counts: Counts::default() }
}

/// `FILE: document N (Kind/name): field: message`.
pub fn describe(e: &SyncError) -> String {
    let mut s = String::new();
    if let Some(f) = &e.file {
        s.push_str(f);
        if let Some(d) = e.document {
            s.push_str(&format!(": document {d}"));
        }
    }
    if let Some(o) = &e.object {
        s.push_str(&format!(" ({o})"));
    }
    if let Some(f) = &e.field {
        s.push_str(&format!(": {f}"));
    }
    if !s.is_empty() {
        s.push_str(": ");
    }
    s.push_str(&e.message);
    s
}

/// The refusal of a transaction, as one error per cause, each naming its manifest.
fn refusal_errors(e: &corral_client::Error, plan: &Plan, desired: &[Desired], who: &str) -> Vec<SyncError> {
    let causes = e.causes();
    let mut out: Vec<SyncError> = causes
        .iter()
        .map(|c| match split_cause(&c.field) {
            Some((i, field)) => match plan.sources.get(i).copied().flatten().and_then(|d| desired.get(d)) {
                Some(d) => d.error(Some(field), c.message.clone()),
                None => SyncError { field: Some(c.field.clone()), message: c.message.clone(), ..Default::default() },
            },
            None => SyncError {
                field: Some(c.field.clone()).filter(|f| !f.is_empty()),
                message: c.message.clone(),
                ..Default::default()
            },
        })
        .collect();
    if out.is_empty() {
        let mut message = e.to_string();
        if e.code() == Some(403) {
            message = format!("{message} (the Sync applies as {who})");
        }
        out.push(SyncError { message, ..Default::default() });
    }
    out
}

/// The live objects the Sync's label selects, of every kind `desired` and
/// `inventory` name, by entry.
pub(crate) async fn read_live(
    reader: &Client,
    kinds: &[std::sync::Arc<corral_api::KindInfo>],
    desired: &[Desired],
    inventory: &[InventoryEntry],
    label: &str,
) -> Result<HashMap<InventoryEntry, Value>> {
    let mut live = HashMap::new();
    let params = ListParams { label_selector: Some(format!("{SYNC_LABEL}={label}")), ..Default::default() };
    for (api_version, kind) in decide::kinds_to_read(desired, inventory).into_keys() {
        // A kind the revision itself defines has nothing live yet.
        let Some(info) = kinds.iter().find(|k| k.api_version() == api_version && k.kind == kind) else { continue };
        let list = reader.list_all(info, None, &params, 0).await?;
        for obj in list.items {
            let entry = InventoryEntry {
                api_version: api_version.clone(),
                kind: kind.clone(),
                namespace: obj.namespace().map(str::to_string),
                name: obj.name().to_string(),
            };
            let value = serde_json::to_value(&obj).map_err(|e| Error::Source(format!("reading {kind}: {e}")))?;
            live.insert(entry, value);
        }
    }
    Ok(live)
}
