//! Binding local persistent volumes to the tasks that mount them.
//!
//! A task that mounts volumes (`spec.volumeMounts[].volume`, each naming a `Volume`
//! of the task's namespace) is checked and its volumes claimed in the SAME store
//! transaction as the task's write, whenever the write puts it on a node (a create
//! with `spec.nodeName`, or an offer's accept):
//!
//! - each volume must exist (else 422 on `spec.volumeMounts[i].volume`) and not be
//!   being deleted (409);
//! - a volume takes one task at a time: the task last claiming it (the annotation
//!   [`CLAIM_ANNOTATION`], written only here) must have ended or be gone (else 409);
//! - its `spec.nodeName` is unset, and is set to the task's node in that
//!   transaction, or it is already the task's node (else 422 naming both nodes).
//!
//! Each claimed volume is rewritten in the transaction with its revision as read
//! (compare-and-swap): of two writes racing for one volume exactly one commits, the
//! other is refused 409 and nothing of it is stored.
//!
//! Disk: a volume's `spec.size` is reserved on its node from the moment it is bound
//! until it is gone ([`crate::ledger`] counts it, for the role `*`), whether or not a
//! task uses it. A task's own `resources.disk` is its scratch space, counted apart:
//! a task mounting a volume bound before asks its node only for its own resources; a
//! task binding a volume now asks for its own resources plus the volume's size.

use std::sync::Arc;

use corral_api::FieldError;
use corral_api::kinds::task::{TaskPhase, VolumeMount};
use corral_api::kinds::volume::VolumeSpec;
use corral_api::registry::KindInfo;
use corral_store::{Key, Storage, TxnOp};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};

/// The store resource of volumes.
pub(crate) const VOLUMES: &str = "corral.dev/volumes";

/// Annotation on a volume naming the task that last claimed it; written by the
/// server only, in the transaction that writes the task.
pub(crate) const CLAIM_ANNOTATION: &str = "corral.dev/claimed-by";

/// What placing tasks on a node does to the volumes they mount.
#[derive(Default)]
pub(crate) struct Claims {
    /// The volumes' writes, to commit with the tasks'.
    pub ops: Vec<TxnOp>,
    /// MiB of disk the volumes bound by these writes newly reserve on the node.
    pub new_disk: u64,
    /// The volumes claimed so far (a task or an accept may not name one twice).
    keys: Vec<Key>,
}

/// A task about to be written onto a node.
pub(crate) struct Claimant<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub task: &'a str,
    /// The node it is put on.
    pub node: &'a str,
    /// Where its spec is, for error messages (`spec`, `tasks[2].spec`).
    pub field: String,
}

impl Claims {
    /// Claims the volumes `mounts` of the task `c` names, as of now; the writes are
    /// added to [`Claims::ops`]. `info` and `name`: the object a 422 is about.
    ///
    /// # Errors
    /// 422 for a volume missing or bound to another node, 409 for one in use by
    /// another live task, or being deleted, or named twice.
    pub(crate) async fn claim(
        &mut self,
        store: &Arc<dyn Storage>,
        info: &KindInfo,
        name: &str,
        c: &Claimant<'_>,
        mounts: &[VolumeMount],
    ) -> ApiResult<()> {
        for (i, m) in mounts.iter().enumerate() {
            let field = format!("{}.volumeMounts[{i}].volume", c.field);
            let invalid = |msg: String| ApiError::invalid(info, name, vec![FieldError::new(field.clone(), msg)]);
            let key = Key::namespaced(VOLUMES, c.namespace, &m.volume);
            if self.keys.contains(&key) {
                return Err(ApiError::conflict(format!(
                    "{field}: volume {:?} is mounted twice; a volume takes one task at a time",
                    m.volume
                )));
            }
            let Some(live) = store.get(&key).await? else {
                return Err(invalid(format!(
                    "volume {:?} does not exist in namespace {:?}; create it (kind Volume) first",
                    m.volume, c.namespace
                )));
            };
            let mut volume: Value = serde_json::from_slice(&live.json).map_err(ApiError::internal)?;
            if volume.pointer("/metadata/deletionTimestamp").is_some_and(|d| !d.is_null()) {
                return Err(ApiError::conflict(format!(
                    "{field}: volume {:?} in namespace {:?} is being deleted; it takes no new task",
                    m.volume, c.namespace
                )));
            }
            let bound = volume.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty());
            match bound {
                Some(n) if n != c.node => {
                    return Err(invalid(format!(
                        "volume {:?} is bound to node {n:?}, and this task is for node {:?}: a volume's tasks run \
                         on its node",
                        m.volume, c.node
                    )));
                }
                Some(_) => {}
                None => {
                    self.new_disk += volume.pointer("/spec/size").and_then(Value::as_u64).unwrap_or(0);
                    volume["spec"]["nodeName"] = json!(c.node);
                }
            }
            let pointer = format!("/metadata/annotations/{}", CLAIM_ANNOTATION.replace('/', "~1"));
            if let Some(holder) = volume.pointer(&pointer).and_then(Value::as_str).filter(|t| *t != c.task)
                && task_live(store, c.namespace, holder).await?
            {
                return Err(ApiError::conflict(format!(
                    "{field}: volume {:?} is in use by task {holder:?} (a volume takes one task at a time); wait \
                     for that task to end, or delete it",
                    m.volume
                )));
            }
            set_annotation(&mut volume, CLAIM_ANNOTATION, c.task);
            self.ops.push(TxnOp::Update { key: key.clone(), object: volume, expected: Some(live.revision) });
            self.keys.push(key);
        }
        Ok(())
    }
}

/// Whether task `name` of `ns` exists and has not ended.
async fn task_live(store: &Arc<dyn Storage>, ns: &str, name: &str) -> ApiResult<bool> {
    let Some(t) = store.get(&Key::namespaced(crate::ledger::TASKS, ns, name)).await? else { return Ok(false) };
    let v: Value = serde_json::from_slice(&t.json).map_err(ApiError::internal)?;
    let phase = v.pointer("/status/phase").and_then(|p| serde_json::from_value::<TaskPhase>(p.clone()).ok());
    Ok(!phase.is_some_and(|p| p.is_terminal()))
}

fn set_annotation(object: &mut Value, key: &str, value: &str) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[key] = json!(value);
}

/// The error for a failed transaction that claimed volumes: a volume changed or
/// went between its read and the write (another task claimed it at the same
/// moment); `None` when the failure is about another key.
pub(crate) fn raced(e: &corral_store::Error) -> Option<ApiError> {
    let key = match e {
        corral_store::Error::Conflict { key, .. } | corral_store::Error::NotFound(key) => key,
        _ => return None,
    };
    (key.resource == VOLUMES).then(|| {
        ApiError::conflict(format!(
            "volume {:?} in namespace {:?} was claimed or changed by another write at the same moment; nothing was \
             written — retry",
            key.name, key.namespace
        ))
    })
}

/// Checks, for a task created without a node, that the volumes it mounts exist.
///
/// # Errors
/// 422 naming `spec.volumeMounts[i].volume`.
pub(crate) async fn exist(
    store: &Arc<dyn Storage>,
    info: &KindInfo,
    name: &str,
    ns: &str,
    mounts: &[VolumeMount],
) -> ApiResult<()> {
    for (i, m) in mounts.iter().enumerate() {
        if store.head(&Key::namespaced(VOLUMES, ns, &m.volume)).await?.is_none() {
            return Err(ApiError::invalid(
                info,
                name,
                vec![FieldError::new(
                    format!("spec.volumeMounts[{i}].volume"),
                    format!("volume {:?} does not exist in namespace {ns:?}; create it (kind Volume) first", m.volume),
                )],
            ));
        }
    }
    Ok(())
}

/// A task's volumes are claimed when it is bound: an update may not bind a task
/// that mounts volumes, move it, nor change what it mounts (the claims would be
/// skipped). Reads the live task only for tasks that mount volumes.
///
/// # Errors
/// 422 naming `spec.nodeName` or `spec.volumeMounts`.
pub(crate) async fn task_update(ctx: &crate::resources::Ctx, object: &Value) -> ApiResult<()> {
    let mounts = object.pointer("/spec/volumeMounts").and_then(Value::as_array).is_some_and(|m| !m.is_empty());
    if !mounts || ctx.target != crate::path::Target::Object {
        return Ok(());
    }
    let name = crate::resources::object_name(object).to_string();
    let Some(live) = ctx.state.store.get(&ctx.key(&name)).await? else { return Ok(()) };
    let live: Value = serde_json::from_slice(&live.json).map_err(ApiError::internal)?;
    // Compared decoded: a writer of the typed task leaves out what is default.
    let node =
        |v: &Value| v.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_string);
    let mut why = Vec::new();
    for (field, same) in
        [("spec.nodeName", node(&live) == node(object)), ("spec.volumeMounts", mounts_of(&live) == mounts_of(object))]
    {
        if !same {
            why.push(FieldError::new(
                field,
                "cannot change on a task that mounts volumes (its volumes are claimed when it is placed): create \
                 a new task, bound to the volumes' node",
            ));
        }
    }
    if why.is_empty() { Ok(()) } else { Err(ApiError::invalid(&ctx.info, &name, why)) }
}

/// The mounts of the task `object`.
pub(crate) fn mounts_of(object: &Value) -> Vec<VolumeMount> {
    object
        .pointer("/spec/volumeMounts")
        .and_then(|v| serde_json::from_value::<Vec<VolumeMount>>(v.clone()).ok())
        .unwrap_or_default()
}

/// Admission of a `Volume` being written: its size, its host path (absolute,
/// normalized, and only in a privileged namespace), its node, size, host path and
/// reclaim policy fixed once it exists.
///
/// # Errors
/// 422 naming the field, 403 for a host path in a restricted namespace.
pub(crate) async fn admit_volume(ctx: &crate::resources::Ctx, object: &Value) -> ApiResult<()> {
    let name = crate::resources::object_name(object).to_string();
    let mut why = Vec::new();
    if object.pointer("/spec/size").and_then(Value::as_u64).unwrap_or(0) == 0 {
        why.push(FieldError::new("spec.size", "must be at least 1 (MiB)"));
    }
    let host_path = object.pointer("/spec/hostPath").and_then(Value::as_str).map(str::to_string);
    if let Some(p) = &host_path
        && let Some(reason) = bad_host_path(p)
    {
        why.push(FieldError::new("spec.hostPath", reason));
    }
    let live = match ctx.target {
        crate::path::Target::Collection => None,
        _ => ctx.state.store.get(&ctx.key(&name)).await?,
    };
    let live: Option<Value> = match live {
        Some(l) => Some(serde_json::from_slice(&l.json).map_err(ApiError::internal)?),
        None => None,
    };
    if let Some(live) = &live {
        let node = |v: &Value| v.pointer("/spec/nodeName").and_then(Value::as_str).map(str::to_string);
        if let Some(was) = node(live)
            && node(object).as_deref() != Some(was.as_str())
        {
            why.push(FieldError::new(
                "spec.nodeName",
                format!("is {was:?} and cannot change: the volume's data lives on that node"),
            ));
        }
        // Compared decoded, defaults filled in: a client that writes back the whole
        // typed object sends `reclaimPolicy: Retain` where the stored one has none.
        let spec = |v: &Value| serde_json::from_value::<VolumeSpec>(v.get("spec").cloned().unwrap_or_default()).ok();
        if let (Some(was), Some(is)) = (spec(live), spec(object)) {
            for (f, same) in [
                ("size", was.size == is.size),
                ("hostPath", was.host_path == is.host_path),
                ("reclaimPolicy", was.reclaim_policy == is.reclaim_policy),
            ] {
                if !same {
                    why.push(FieldError::new(
                        format!("spec.{f}"),
                        "cannot change once the volume exists; make a new volume",
                    ));
                }
            }
        }
    }
    if !why.is_empty() {
        return Err(ApiError::invalid(&ctx.info, &name, why));
    }
    if host_path.is_some()
        && let Some(ns) = ctx.namespace.as_deref()
        && !crate::admission::namespace_privileged(ctx, ns).await?
    {
        return Err(ApiError::forbidden(format!(
            "namespace {ns:?} is restricted: spec.hostPath (a directory of the node) is allowed only in a \
             namespace whose task policy allows host paths (label {}={})",
            corral_api::kinds::namespace::TASK_SECURITY_LABEL,
            corral_api::kinds::namespace::TASK_SECURITY_PRIVILEGED
        )));
    }
    Ok(())
}

/// A volume being created gets its finalizers: [`VOLUME_FINALIZER`] (deleting it
/// waits until no task uses it), and with `reclaimPolicy: Delete` and no host path
/// [`VOLUME_DATA_FINALIZER`] (deleting it waits until its node's agent has removed
/// the data).
///
/// [`VOLUME_FINALIZER`]: corral_api::kinds::volume::VOLUME_FINALIZER
/// [`VOLUME_DATA_FINALIZER`]: corral_api::kinds::volume::VOLUME_DATA_FINALIZER
pub(crate) fn volume_finalizers(object: &mut Value) {
    use corral_api::kinds::volume::{VOLUME_DATA_FINALIZER, VOLUME_FINALIZER};
    let delete = object.pointer("/spec/reclaimPolicy").and_then(Value::as_str) == Some("Delete");
    let host_path = object.pointer("/spec/hostPath").is_some_and(|p| !p.is_null());
    add_finalizer(object, VOLUME_FINALIZER);
    if delete && !host_path {
        add_finalizer(object, VOLUME_DATA_FINALIZER);
    }
}

/// Why `p` is not an acceptable host path, if it is not: absolute, normalized.
fn bad_host_path(p: &str) -> Option<String> {
    if !p.starts_with('/') {
        return Some(format!("{p:?} must be an absolute path"));
    }
    if p.split('/').any(|c| c == ".." || c == ".") {
        return Some(format!("{p:?} must not contain \".\" or \"..\" components"));
    }
    if p.len() > 1 && (p.ends_with('/') || p.contains("//")) {
        return Some(format!("{p:?} must be normalized (no empty components, no trailing \"/\")"));
    }
    if p.contains('\0') {
        return Some("must not contain NUL".into());
    }
    None
}

fn add_finalizer(object: &mut Value, f: &str) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|x| x == f)
    {
        list.push(json!(f));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_paths_must_be_absolute_and_normalized() {
        for good in ["/", "/srv/data", "/var/lib/x-1"] {
            assert_eq!(super::bad_host_path(good), None, "{good}");
        }
        for bad in ["srv", "/srv/../etc", "/srv/./x", "/srv//x", "/srv/", ""] {
            assert!(super::bad_host_path(bad).is_some(), "{bad}");
        }
    }
}
