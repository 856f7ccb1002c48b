//! `Sync`: keeps a set of objects in the cluster equal to the manifests of a git
//! repository or a directory — GitOps, as Flux's Kustomization with its GitRepository,
//! or an Argo CD Application.
//!
//! Each revision of the source (a commit, or the content of a directory) is applied
//! whole or not at all: every manifest is validated by the server first, and all are
//! written in one store transaction. What a Sync wrote is recorded in its status (the
//! inventory), so pruning deletes exactly that and nothing else. It applies as the
//! service account it names, so a repository can change only what that account may.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::service::Condition;
use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

/// Field manager of every apply a Sync makes: `sync:NAMESPACE.NAME`.
pub fn field_manager(namespace: &str, name: &str) -> String {
    format!("sync:{namespace}.{name}")
}

/// Label on every object a Sync applied: `NAMESPACE.NAME` of the Sync. Pruning
/// deletes only objects that are in the Sync's inventory *and* still carry it.
pub const SYNC_LABEL: &str = "corral.dev/sync";

/// Finalizer on every Sync that prunes (and is not pushed by `corral sync DIR`):
/// deleting the Sync deletes what it applied first, as Flux does.
pub const PRUNE_FINALIZER: &str = "corral.dev/sync-prune";

/// Annotation ordering the objects of one revision: an integer, lower first, 0 by
/// default (as Argo CD's sync waves). Namespaces and CustomResourceDefinitions always
/// come before every wave.
pub const WAVE_ANNOTATION: &str = "corral.dev/sync-wave";

/// Annotation asking for a sync now (any new value), as Flux's
/// `reconcile.fluxcd.io/requestedAt`; the trigger endpoint and `corral sync now` set it.
pub const REQUESTED_AT_ANNOTATION: &str = "corral.dev/sync-requested-at";

/// Default seconds between two syncs.
pub const DEFAULT_INTERVAL_SECONDS: u64 = 60;
/// Default seconds a sync waits for its objects to become healthy.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 300;

/// A git repository to sync from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSource {
    /// Any URL git understands: `https://…`, `ssh://…`, `file:///…`, or a local path.
    pub url: String,
    /// Branch to follow (default: the remote's HEAD). At most one of branch, tag and commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Tag to apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Commit id to apply (full or abbreviated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Where a Sync's manifests come from: exactly one of these.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncSource {
    /// A git repository, fetched by the sync controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    /// A directory on the machine the sync controller runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// A directory on a client's machine, pushed by `corral sync DIR` (the
    /// controller does not read it; the client writes the status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed: Option<PushedSource>,
}

/// A directory `corral sync DIR` applies from a client's machine.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushedSource {
    /// The client machine's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The directory there.
    pub path: String,
}

/// A push notification receiver for a Sync (as Flux's Receiver).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    /// SHA-256 (hex) of the token a push notification presents as
    /// `Authorization: Bearer TOKEN` to `POST …/syncs/NAME/trigger`; the token itself
    /// is never stored. `corral sync token NAME` makes one.
    pub token_sha256: String,
}

/// Desired state of a [`Sync`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncSpec {
    /// Where the manifests come from.
    pub source: SyncSource,
    /// Directory inside the source whose manifests (`*.yaml`, `*.yml`, `*.json`,
    /// recursively) are applied; default the whole source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Seconds between two syncs (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
    /// Delete the objects a previous revision applied and this one no longer has,
    /// and every object the Sync applied when the Sync itself is deleted.
    #[serde(default)]
    pub prune: bool,
    /// Revert hand edits of synced objects at each sync (they are always reported).
    #[serde(default)]
    pub self_heal: bool,
    /// Stop syncing until set back to false.
    #[serde(default)]
    pub suspend: bool,
    /// Syncs (`NAME` in this namespace, or `NAMESPACE/NAME`) that must be Ready
    /// before this one applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Wait after applying until services are rolled out and jobs are not failing,
    /// before Ready (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    /// Seconds that wait may take before the Sync is Stalled (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// The service account (of this namespace) the Sync applies as; without one, the
    /// sync controller's own rights are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Namespace of namespaced objects that name none (default: the Sync's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// A push notification receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
}

impl SyncSpec {
    /// Seconds between two syncs.
    pub fn interval(&self) -> u64 {
        self.interval_seconds.unwrap_or(DEFAULT_INTERVAL_SECONDS).max(1)
    }

    /// Whether a sync waits for health.
    pub fn waits(&self) -> bool {
        self.wait.unwrap_or(true)
    }

    /// Seconds the health wait may take.
    pub fn timeout(&self) -> u64 {
        self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS)
    }
}

/// One object a Sync applied.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InventoryEntry {
    /// `group/version`.
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Its namespace; none for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

/// A synced object that differs from its manifest.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Drift {
    /// The object.
    pub object: InventoryEntry,
    /// Dotted paths of the fields that differ (or `(deleted)` when it is gone).
    pub fields: Vec<String>,
}

/// Health of one synced object that has any (services, jobs).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectHealth {
    /// The object.
    pub object: InventoryEntry,
    /// `Healthy`, `Progressing` or `Failed`.
    pub health: String,
    /// Why, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What went wrong with one manifest of a revision.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncError {
    /// File, relative to the source's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based document in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    /// `Kind/name`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Dotted path of the field, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Observed state of a [`Sync`], written by the sync controller (or by `corral sync`
/// for a pushed source).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncStatus {
    /// The revision in the cluster: a commit id, or `sha256:…` of a directory's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The last revision tried, applied or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// When the last sync ended (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// The `spec`'s generation the status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last value of the requested-at annotation acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_request: Option<String>,
    /// `Ready` (always first), `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// How many objects the inventory holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
    /// Every object the applied revision holds, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryEntry>,
    /// Synced objects edited by hand since (reverted at the next sync with `selfHeal`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
    /// Health of the synced services and jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<ObjectHealth>,
    /// Why the last attempted revision was not applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SyncError>,
    /// Objects written by the last sync (unchanged ones are not written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_writes: Option<u64>,
}

/// A set of manifests kept in the cluster, namespaced: the `Sync` kind (named
/// `SyncObject` in Rust so as not to hide the `Sync` trait).
pub type SyncObject = Object<SyncSpec, SyncStatus>;

impl KindSpec for SyncSpec {
    type Status = SyncStatus;

    const KIND: &'static str = "Sync";
    const PLURAL: &'static str = "syncs";
    const SHORT_NAMES: &'static [&'static str] = &[];
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str = "Keeps the objects of a git repository or a directory applied: each \
         revision validated whole and written in one transaction, pruned by inventory, drift reported and healed.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("READY", ".status.conditions[0].status", ColumnType::String),
            PrinterColumn::new("REVISION", ".status.lastAppliedRevision", ColumnType::String),
            PrinterColumn::new("OBJECTS", ".status.objects", ColumnType::Integer),
            PrinterColumn::new("LAST-SYNC", ".status.lastSyncTime", ColumnType::Date),
        ]
    }
}

/// The user a Sync without `serviceAccountName` applies as (bound to the
/// `sync-controller` ClusterRole).
pub const SYNC_CONTROLLER_USER: &str = "system:controller:sync";
