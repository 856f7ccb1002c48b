//! DELETE of one object, with a propagation policy for its dependents
//! (`?propagationPolicy=` or a `DeleteOptions` body), and the namespace rules that
//! come with deletion.

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use std::sync::Arc;

use corral_api::KindInfo;
use corral_api::delete::{DeleteOptions, NAMESPACE_FINALIZER, Preconditions, Propagation};
use corral_api::kinds::task::{AGENT_FINALIZER, TaskPhase};
use corral_store::{DeleteOutcome, Error as StoreError, Key, Storage, StoredObject, UpdateOutcome};
use serde::Deserialize;
use serde_json::Value;

use super::body;
use super::error::{ApiError, ApiResult, StatusDetails};
use super::resources::Ctx;

fn parse_policy(s: &str) -> ApiResult<Propagation> {
    Propagation::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "propagationPolicy={s:?} is not supported; use Background (the default), Foreground or Orphan"
        ))
    })
}

/// What a delete asks for: the policy from the query and the optional body (they must
/// agree when both are given), a dry run, and the preconditions.
#[derive(Debug, Default, PartialEq)]
struct Asked {
    policy: Propagation,
    dry_run: bool,
    preconditions: Preconditions,
}

fn asked(query: Option<&str>, body_bytes: &Bytes) -> ApiResult<Asked> {
    let options: DeleteOptions = if body_bytes.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(body_bytes)
            .map_err(|e| ApiError::bad_request(format!("the DELETE body is not valid DeleteOptions: {e}")))?
    };
    let dry_run = match options.dry_run.as_slice() {
        [] => false,
        [all] if all == "All" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "dryRun={other:?} is not supported; the only value is [\"All\"]"
            )));
        }
    };
    let from_query = query.filter(|s| !s.is_empty()).map(parse_policy).transpose()?;
    let from_body = options.propagation_policy.as_deref().map(parse_policy).transpose()?;
    let policy = match (from_query, from_body) {
        (Some(q), Some(b)) if q != b => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy is {} in the query but {} in the body; give one",
                q.as_str(),
                b.as_str()
            )));
        }
        (q, b) => q.or(b).unwrap_or_default(),
    };
    Ok(Asked { policy, dry_run, preconditions: options.preconditions.unwrap_or_default() })
}

/// The revision the preconditions require, after checking their uid against `live`.
fn check_preconditions(ctx: &Ctx, p: &Preconditions, live: &StoredObject) -> ApiResult<Option<u64>> {
    let name = ctx.name.as_str();
    if let Some(uid) = &p.uid {
        let live_uid = live.value().map_err(ctx.store_error(name))?;
        let live_uid = live_uid.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
        if live_uid != uid {
            return Err(ApiError::conflict(format!(
                "precondition failed: {} {name:?} is now uid {live_uid}, not {uid} (it was deleted and created again)",
                ctx.info.kind
            ))
            .with_details(StatusDetails::object(&ctx.info, name)));
        }
    }
    match p.resource_version.as_deref() {
        None | Some("") => Ok(None),
        Some(rv) => rv.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!("preconditions.resourceVersion={rv:?} is not a resourceVersion"))
        }),
    }
}

/// Namespaces the system cannot run without; they are never deleted.
pub(crate) const SYSTEM_NAMESPACES: [&str; 2] = ["default", corral_api::kinds::node::NODE_LEASE_NAMESPACE];

pub(super) fn is_namespace(ctx: &Ctx) -> bool {
    ctx.info.group == corral_api::GROUP && ctx.info.kind == "Namespace"
}

/// Handles DELETE of `ctx.name`: 200 with the last state when it is gone at once,
/// 202 with the object (carrying `deletionTimestamp`) when finalizers keep it.
pub(super) async fn delete(ctx: &Ctx, policy_param: Option<&str>, body_bytes: Bytes) -> ApiResult<Response> {
    let name = ctx.name.as_str();
    let asked = asked(policy_param, &body_bytes)?;
    let mut add: Vec<&str> = asked.policy.finalizer().into_iter().collect();
    if is_namespace(ctx) && SYSTEM_NAMESPACES.contains(&name) {
        // Everything without a namespace lands in `default`, and every node's
        // heartbeat lease lives in `corral-system`: deleting it would mark every node
        // unreachable and every task lost. Kubernetes protects its own the same way.
        return Err(forbidden(format!("the namespace {name:?} may not be deleted: the system needs it"), name));
    }
    if is_namespace(ctx) {
        // A namespace is emptied before it goes, whatever the policy.
        add.push(NAMESPACE_FINALIZER);
    }
    let expected = if asked.preconditions.is_empty() {
        None
    } else {
        check_preconditions(ctx, &asked.preconditions, &*ctx.live(name).await?)?
    };
    if ctx.dry_run || asked.dry_run {
        return dry_run(ctx, &add, expected).await;
    }
    let key = ctx.key(name);
    let store = ctx.state.store.as_ref();
    match mark_for_deletion(store, &key, expected, &ctx.info, &add).await.map_err(ctx.store_error(name))? {
        DeleteOutcome::Deleted(o) => {
            record_deletion(ctx, &o, true).await;
            Ok(body::raw_json(StatusCode::OK, o.json.clone()))
        }
        DeleteOutcome::Finalizing(o) if is_namespace(ctx) => {
            Ok(body::raw_json(StatusCode::ACCEPTED, terminating(ctx, o).await?.json.clone()))
        }
        DeleteOutcome::Finalizing(o) => {
            record_deletion(ctx, &o, false).await;
            Ok(body::raw_json(StatusCode::ACCEPTED, o.json.clone()))
        }
    }
}

/// The kinds whose deletions are recorded as Events: what runs and what makes it run,
/// whose disappearance a user asks about afterwards.
const RECORDED_KINDS: [&str; 4] = ["tasks", "services", "jobs", "jobruns"];

/// Records the deletion of `o` as an Event in its namespace, naming who asked:
/// `Deleted` when it is gone, `Deleting` while finalizers hold it (its agent then
/// records the kill). `corral get events` shows it after the object is gone. Best
/// effort: a delete that happened is not failed by its record.
pub(super) async fn record_deletion(ctx: &Ctx, o: &StoredObject, gone: bool) {
    use corral_api::kinds::event::{Event, EventSource, EventSpec, EventType, ObjectReference};
    if ctx.info.group != corral_api::GROUP || !RECORDED_KINDS.contains(&ctx.info.plural.as_str()) {
        return;
    }
    // The system's own housekeeping (history limits, scaling down, a node dropping
    // what it ran) is not news, and would add an event to every run of every cron
    // job for as long as events are kept; the controllers record what they decide.
    if ctx.identity.node().is_some() || ctx.identity.user == crate::auth::CONTROLLER_MANAGER {
        return;
    }
    let (Some(ns), Ok(v)) = (ctx.namespace.as_deref(), o.value()) else { return };
    let name = ctx.name.as_str();
    let uid = v.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string);
    let user = &ctx.identity.user;
    let (reason, message) = if gone {
        ("Deleted", format!("{} {name} deleted by {user}", ctx.info.kind))
    } else {
        let finalizers: Vec<&str> = v
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        (
            "Deleting",
            format!(
                "deletion of {} {name} requested by {user}; it goes once its finalizers are done: {}",
                ctx.info.kind,
                finalizers.join(", ")
            ),
        )
    };
    // One event per incarnation and outcome: the uid tells a later object of the same
    // name apart, and a repeated delete finds its event there already.
    let tag: String = uid.as_deref().unwrap_or("none").chars().filter(char::is_ascii_alphanumeric).take(12).collect();
    let event_name = format!("{}.{}.{tag}", name.chars().take(40).collect::<String>(), reason.to_ascii_lowercase());
    let now = corral_api::meta::now_timestamp();
    let spec = EventSpec {
        involved_object: ObjectReference {
            api_version: ctx.info.api_version(),
            kind: ctx.info.kind.clone(),
            namespace: Some(ns.to_string()),
            name: name.to_string(),
            uid,
        },
        reason: reason.to_string(),
        message,
        type_: EventType::Normal,
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource { component: Some("apiserver".to_string()) }),
    };
    let Ok(event) = serde_json::to_value(Event::namespaced(ns, event_name.clone(), spec)) else { return };
    let key = Key::namespaced(format!("{}/events", corral_api::GROUP), ns, &event_name);
    if let Err(e) = ctx.state.store.create(key, event).await {
        tracing::debug!(event = event_name, error = %e, "deletion not recorded as an event");
    }
}

/// Sets the phase of the namespace `o` (being deleted) to `Terminating`; the collector
/// may do so first, which is as good.
async fn terminating(ctx: &Ctx, mut o: Arc<StoredObject>) -> ApiResult<Arc<StoredObject>> {
    let name = ctx.name.as_str();
    for _ in 0..8 {
        let mut v = o.value().map_err(ctx.store_error(name))?;
        if v.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
            return Ok(o);
        }
        set_terminating(&mut v);
        match ctx.state.store.update_status(ctx.key(name), v, Some(o.revision)).await {
            Ok(out) => return Ok(out.object().clone()),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(ApiError::from_store(e, &ctx.info, name)),
        }
        match ctx.state.store.get(&ctx.key(name)).await.map_err(ctx.store_error(name))? {
            Some(fresh) => o = fresh,
            // Already emptied and gone: report the last state seen.
            None => return Ok(o),
        }
    }
    Ok(o)
}

/// What a delete would do, writing nothing.
async fn dry_run(ctx: &Ctx, add: &[&str], expected: Option<u64>) -> ApiResult<Response> {
    let name = ctx.name.as_str();
    let live = ctx.live(name).await?;
    if let Some(e) = expected.filter(|e| *e != live.revision) {
        return Err(super::resources::stale(ctx, name, e, &live));
    }
    let mut value = live.value().map_err(ctx.store_error(name))?;
    if !is_deleting(&value) {
        finalizers_on_delete(&ctx.info, &mut value, add);
    }
    let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Ok(body::raw_json(StatusCode::OK, live.json.clone()));
    };
    let finalizing = meta.get("finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    if !finalizing {
        return Ok(body::raw_json(StatusCode::OK, live.json.clone()));
    }
    meta.entry("deletionTimestamp").or_insert_with(|| Value::String(corral_api::meta::now_timestamp()));
    if is_namespace(ctx) {
        set_terminating(&mut value);
    }
    Ok(body::json(StatusCode::ACCEPTED, &value))
}

/// The error for a create in namespace `ns` while it is being deleted.
pub(super) fn namespace_terminating(ns: &str) -> ApiError {
    forbidden(
        format!(
            "namespace {ns:?} is being deleted (Terminating): no new objects can be created in it; \
             wait until it is gone and create it again, or use another namespace"
        ),
        ns,
    )
}

/// 403 `Forbidden` about the namespace `ns`.
pub(super) fn forbidden(message: String, ns: &str) -> ApiError {
    ApiError { code: StatusCode::FORBIDDEN, reason: "Forbidden", message, details: None }.with_details(StatusDetails {
        group: corral_api::GROUP.to_string(),
        kind: "Namespace".to_string(),
        name: ns.to_string(),
        causes: Vec::new(),
    })
}

/// Sets `status.phase` of a namespace to `Terminating`.
fn set_terminating(v: &mut Value) {
    if let Some(map) = v.as_object_mut() {
        let status = map.entry("status").or_insert_with(|| Value::Object(Default::default()));
        if let Some(s) = status.as_object_mut() {
            s.insert("phase".into(), Value::String("Terminating".into()));
        }
    }
}

/// Sets the finalizers `v` carries once a delete added `add` (those missing) and let
/// go of the agent's on a task that has ended. Returns whether that changed them.
///
/// The agent holds a task so that deleting it waits until nothing of it runs. Once
/// the task's status says it ended, nothing does, so its deletion completes at once
/// (as Kubernetes deletes a pod that ended without a grace period), and an agent need
/// not write every task that ends once more just to let go of it.
pub(super) fn finalizers_on_delete(info: &KindInfo, v: &mut Value, add: &[&str]) -> bool {
    let current = v.pointer("/metadata/finalizers").and_then(Value::as_array);
    let mut list: Vec<Value> = current.cloned().unwrap_or_default();
    let ended = info.group == corral_api::GROUP
        && info.kind == "Task"
        && v.pointer("/status/phase").and_then(|p| TaskPhase::deserialize(p).ok()).is_some_and(TaskPhase::is_terminal);
    if ended {
        list.retain(|f| f.as_str() != Some(AGENT_FINALIZER));
    }
    for f in add {
        if !list.iter().any(|x| x.as_str() == Some(f)) {
            list.push(Value::String((*f).to_string()));
        }
    }
    if Some(&list) == current || (list.is_empty() && current.is_none()) {
        return false;
    }
    match v.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(meta) => {
            meta.insert("finalizers".into(), Value::Array(list));
            true
        }
        None => false,
    }
}

/// Whether `v` is marked for deletion already.
pub(super) fn is_deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// Deletes the object at `key` after adding the finalizers `add` (those that are
/// missing), so that it stays, marked with `deletionTimestamp`, until they are
/// removed, and letting go of those [`finalizers_on_delete`] says need not be waited
/// for. An object already being deleted is left as it is. With `expected`, the
/// object must still be at that revision.
///
/// # Errors
/// `NotFound`, `Conflict` (when `expected` no longer holds, or after repeated
/// concurrent writes), or a store failure.
async fn mark_for_deletion(
    store: &dyn Storage,
    key: &Key,
    expected: Option<u64>,
    info: &KindInfo,
    add: &[&str],
) -> Result<DeleteOutcome, StoreError> {
    const ATTEMPTS: usize = 8;
    let mut expected = expected;
    let mut last_conflict = None;
    for _ in 0..ATTEMPTS {
        let live = store.get(key).await?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
        if let Some(e) = expected.filter(|e| *e != live.revision) {
            return Err(StoreError::Conflict { key: key.clone(), expected: e, actual: live.revision });
        }
        let mut v = live.value()?;
        let at = if is_deleting(&v) || !finalizers_on_delete(info, &mut v, add) {
            live.revision
        } else {
            match store.update(key.clone(), v, Some(live.revision)).await {
                Ok(UpdateOutcome::Updated(o) | UpdateOutcome::Unchanged(o)) => o.revision,
                Ok(UpdateOutcome::Deleted(o)) => return Ok(DeleteOutcome::Deleted(o)),
                Err(e @ StoreError::Conflict { .. }) => {
                    last_conflict = Some(e);
                    expected = None;
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        match store.delete(key.clone(), Some(at)).await {
            Err(e @ StoreError::Conflict { .. }) => {
                // Someone wrote in between; the finalizers we added may still be there,
                // which the next attempt sees.
                last_conflict = Some(e);
                expected = None;
            }
            other => return other,
        }
    }
    Err(last_conflict.unwrap_or(StoreError::Closed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_comes_from_query_or_body_and_they_must_agree() {
        let policy = |q: Option<&str>, b: &Bytes| asked(q, b).map(|a| (a.policy, a.dry_run));
        let empty = Bytes::new();
        assert_eq!(policy(None, &empty).ok(), Some((Propagation::Background, false)));
        assert_eq!(policy(Some("Orphan"), &empty).ok(), Some((Propagation::Orphan, false)));
        let body = Bytes::from_static(br#"{"kind":"DeleteOptions","propagationPolicy":"Foreground","dryRun":["All"]}"#);
        assert_eq!(policy(None, &body).ok(), Some((Propagation::Foreground, true)));
        assert!(policy(Some("Orphan"), &body).is_err());
        assert!(policy(Some("orphan"), &empty).is_err());
        assert!(policy(None, &Bytes::from_static(b"not json")).is_err());
    }

    #[test]
    fn preconditions_come_from_the_body() {
        let body = Bytes::from_static(br#"{"preconditions":{"uid":"u1","resourceVersion":"7"}}"#);
        let a = asked(None, &body).expect("parses");
        assert_eq!(a.preconditions.uid.as_deref(), Some("u1"));
        assert_eq!(a.preconditions.resource_version.as_deref(), Some("7"));
    }
}
