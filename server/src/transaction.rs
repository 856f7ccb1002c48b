//! `POST /transactions`: many applies, creates, updates and deletes, committed in one
//! store transaction or not at all (the wire types are [`corral_api::transaction`]).
//!
//! Decide, then act: every operation is first planned against the store as it is,
//! plus what the operations before it would have written (so a namespace created
//! earlier in the transaction exists for the objects after it, and an object of a
//! kind that an earlier CustomResourceDefinition defines is validated against that
//! definition's schema). Planning authorizes
//! the operation as its single request would be, computes the object that request
//! would store with the same functions, and validates and admits it. If any
//! operation fails, the whole transaction is refused with every problem named;
//! otherwise the writes go to [`corral_store::Storage::transact`] at once, each
//! conditioned on the revision it was computed from. A write that lost a race makes
//! the whole plan be computed again, a bounded number of times.
//!
//! The status of a refusal, when operations fail for different reasons: 403 if any
//! operation is forbidden (the caller needs other rights before anything else
//! matters); otherwise a 5xx if the server failed; otherwise 409 if every problem is
//! a conflict (re-reading and retrying may succeed); otherwise 422, since the
//! transaction itself must change (an invalid object, a missing namespace, a missing
//! object to update).
//!
//! Not done in a transaction, as their own requests do: tasks bound to a node
//! (`spec.nodeName`) are created only by their own `POST` (the node ledger accounts
//! for them there), and a deleted namespace's phase is set to `Terminating` by the
//! namespace collector rather than at once. Nodes may not send transactions.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use corral_api::FieldError;
use corral_api::delete::{NAMESPACE_FINALIZER, Propagation};
use corral_api::transaction::{
    MAX_OPERATIONS, Operation, OperationResult, Outcome, Target as OpTarget, Transaction, TransactionResult, Verb,
    cause_field,
};
use corral_store::{DeleteOutcome, Error as StoreError, Key, TxnOp, TxnOutcome, UpdateOutcome};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::auth::{Attributes, Identity};
use super::body;
use super::error::{ApiError, ApiResult, StatusDetails};
use super::patch_bounds::{MAX_OBJECT_BYTES, json_size_within};
use super::path::Target;
use super::resources::{self, Ctx};
use super::watch_limits::ClientAddr;

/// Largest transaction body: many objects, each up to a single request's size.
pub const MAX_TRANSACTION_BYTES: usize = 64 << 20;

/// Times a transaction is planned again after losing a race before it gives up.
const MAX_ATTEMPTS: usize = 8;

/// Query parameters, as on PATCH.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    dry_run: Option<String>,
    field_manager: Option<String>,
    force: Option<String>,
}

/// What the transaction as a whole was asked.
struct Asked {
    dry_run: bool,
    field_manager: Option<String>,
    force: bool,
}

/// The router's entry for `POST /transactions`.
pub(crate) async fn serve(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
    identity: Option<axum::Extension<Arc<Identity>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The guard in front of every route always sets the identity.
    let Some(axum::Extension(identity)) = identity else {
        return ApiError::unauthorized("this request was not authenticated").into_response();
    };
    let metrics = state.metrics.clone();
    match run(state, client.map(|c| c.0), identity, uri, headers, body).await {
        Ok((result, dry_run)) => {
            metrics.observe_transaction(if dry_run { "dryRun" } else { "committed" }, result.results.len());
            match serde_json::to_value(&result) {
                Ok(v) => body::json(StatusCode::OK, &v),
                Err(e) => ApiError::internal(format!("encoding a transaction's result: {e}")).into_response(),
            }
        }
        Err((e, operations)) => {
            metrics.observe_transaction("refused", operations);
            e.into_response()
        }
    }
}

async fn run(
    state: AppState,
    client: Option<ClientAddr>,
    identity: Arc<Identity>,
    uri: Uri,
    headers: HeaderMap,
    req_body: Body,
) -> Result<(TransactionResult, bool), (ApiError, usize)> {
    let params = Query::<Params>::try_from_uri(&uri).map_err(|e| (ApiError::bad_request(e.body_text()), 0))?.0;
    let asked = Asked {
        dry_run: resources::dry_run(params.dry_run.as_deref()).map_err(|e| (e, 0))?,
        field_manager: params.field_manager.clone(),
        force: resources::flag("force", params.force.as_deref()).map_err(|e| (e, 0))?,
    };
    if identity.node().is_some() {
        return Err((
            ApiError::forbidden(format!(
                "user {:?} is a node: nodes write their own objects one request at a time, never in a transaction",
                identity.user
            )),
            0,
        ));
    }
    let content_length =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let bytes = body::read_limited(req_body, content_length, MAX_TRANSACTION_BYTES).await.map_err(|e| (e, 0))?;
    body::check_depth(corral_api::nesting::check_json(&bytes, corral_api::nesting::MAX_NESTING_DEPTH))
        .map_err(|e| (e, 0))?;
    let txn: Transaction = serde_json::from_slice(&bytes)
        .map_err(|e| (ApiError::bad_request(format!("the body is not a Transaction: {e}")), 0))?;
    let n = txn.operations.len();
    if n > MAX_OPERATIONS {
        return Err((
            ApiError::entity_too_large(format!(
                "a transaction may hold at most {MAX_OPERATIONS} operations; this one has {n}: split it"
            )),
            n,
        ));
    }
    let txn_ctx = TxnCtx { state, client, identity, asked };
    txn_ctx.execute(&txn.operations).await.map(|r| (r, txn_ctx.asked.dry_run)).map_err(|e| (e, n))
}

/// What every operation of one transaction shares.
struct TxnCtx {
    state: AppState,
    client: Option<ClientAddr>,
    identity: Arc<Identity>,
    asked: Asked,
}

/// One operation, planned.
struct Planned {
    ctx: Ctx,
    key: Key,
    step: Step,
    /// It writes tokens or RBAC objects: the policy must hold it before the answer.
    policy: bool,
}

/// What one planned operation does to the store.
enum Step {
    /// Create `object`.
    Create { object: Value, predicted: Value },
    /// Replace with `object`, conditioned on `expected`.
    Update { object: Value, expected: Option<u64>, predicted: Value },
    /// Delete, after adding finalizers (`with_finalizers`: the object with them).
    Delete { with_finalizers: Option<Value>, expected: Option<u64> },
    /// Nothing to write.
    Nothing { outcome: Outcome, object: Option<Value> },
}

/// The state of one key as the operations before see it: `None`, absent.
#[derive(Clone)]
struct Seen {
    value: Option<Value>,
    /// The store revision the first read found; `None` once an earlier operation of
    /// this transaction writes the key (its own write is conditioned already).
    revision: Option<u64>,
}

impl TxnCtx {
    async fn execute(&self, operations: &[Operation]) -> ApiResult<TransactionResult> {
        for _ in 0..MAX_ATTEMPTS {
            let plan = self.plan(operations).await?;
            if self.asked.dry_run {
                return Ok(dry_result(&plan, self.state.store.stats().revision));
            }
            if let Some(result) = self.commit(plan).await? {
                return Ok(result);
            }
            tracing::debug!("a transaction lost a race; planning it again on the new state");
        }
        Err(ApiError::conflict(format!(
            "the objects of this transaction kept changing while it was computed ({MAX_ATTEMPTS} attempts); retry"
        )))
    }

    /// Plans every operation in order, or fails with every problem of every one.
    async fn plan(&self, operations: &[Operation]) -> ApiResult<Vec<Planned>> {
        let mut seen: HashMap<Key, Seen> = HashMap::new();
        let mut planned = Vec::with_capacity(operations.len());
        let mut problems: Vec<(usize, String, ApiError)> = Vec::new();
        for (i, op) in operations.iter().enumerate() {
            match self.plan_one(op, &mut seen).await {
                Ok(p) => planned.push(p),
                Err((what, e)) => problems.push((i, what, e)),
            }
        }
        if problems.is_empty() {
            return Ok(planned);
        }
        Err(refusal(operations.len(), &problems))
    }

    /// Plans one operation; on failure, the object it names (`Kind/ns/name`) and why.
    async fn plan_one(&self, op: &Operation, seen: &mut HashMap<Key, Seen>) -> Result<Planned, (String, ApiError)> {
        let described = describe(op);
        let (ctx, attrs_verb, pending) = self.ctx_of(op, seen).map_err(|e| (described.clone(), e))?;
        let what = format!(
            "{}/{}{}",
            ctx.info.kind,
            ctx.namespace.as_deref().map(|ns| format!("{ns}/")).unwrap_or_default(),
            ctx.name
        );
        let fail = |e: ApiError| (what.clone(), e);
        // Authorized as the single request: a create names no object, the others do.
        let attrs = Attributes::Resource {
            verb: attrs_verb.into(),
            group: ctx.info.group.as_str().into(),
            resource: ctx.info.plural.as_str().into(),
            subresource: None,
            namespace: ctx.namespace.as_deref().map(Into::into),
            name: (op.verb != Verb::Create).then(|| ctx.name.as_str().into()),
        };
        let allowed = self.state.auth.policy.read().authorize(&self.identity, &attrs).allowed();
        if !allowed {
            return Err(fail(super::auth::forbidden(&self.identity, Some(&attrs))));
        }
        let policy = super::auth::index::changes_policy(&attrs);
        let key = ctx.key(&ctx.name);
        let live = match seen.get(&key) {
            Some(s) => s.clone(),
            None => {
                let stored = self.state.store.get(&key).await.map_err(|e| fail(ApiError::from(e)))?;
                match stored {
                    Some(o) => Seen {
                        value: Some(o.value().map_err(|e| fail(ApiError::from(e)))?),
                        revision: Some(o.revision),
                    },
                    None => Seen { value: None, revision: None },
                }
            }
        };
        let step = match op.verb {
            Verb::Create => self.plan_create(&ctx, &pending, op, &live, seen).await,
            Verb::Apply => self.plan_apply(&ctx, &pending, op, &live, seen).await,
            Verb::Update => self.plan_update(&ctx, &pending, op, &live).await,
            Verb::Delete => plan_delete(&ctx, op, &live),
        }
        .map_err(fail)?;
        let after = match &step {
            Step::Create { predicted, .. } | Step::Update { predicted, .. } => Some(predicted.clone()),
            Step::Delete { with_finalizers, .. } => with_finalizers
                .as_ref()
                .or(live.value.as_ref())
                .filter(|v| !finalizers(v).is_empty())
                .map(|v| marked(v.clone())),
            Step::Nothing { .. } => live.value.clone(),
        };
        let wrote = !matches!(step, Step::Nothing { .. });
        seen.insert(key.clone(), Seen { value: after, revision: if wrote { None } else { live.revision } });
        Ok(Planned { ctx, key, step, policy })
    }

    /// The request context of `op`, the RBAC verb its single request has, and, for a
    /// kind defined by an earlier operation of this transaction, a registry serving it.
    fn ctx_of(&self, op: &Operation, seen: &HashMap<Key, Seen>) -> ApiResult<(Ctx, &'static str, Pending)> {
        let (api_version, kind, namespace, name) = match (op.verb, &op.object, &op.target) {
            (Verb::Delete, _, Some(t)) => (t.api_version.clone(), t.kind.clone(), t.namespace.clone(), t.name.clone()),
            (Verb::Delete, _, None) => return Err(missing("target", "a delete names its object in `target`")),
            (_, Some(o), _) => {
                let text = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
                let ns = Some(text("/metadata/namespace")).filter(|s| !s.is_empty());
                (text("/apiVersion"), text("/kind"), ns, text("/metadata/name"))
            }
            (_, None, _) => return Err(missing("object", "apply, create and update carry the manifest in `object`")),
        };
        let field = if op.verb == Verb::Delete { "target" } else { "object" };
        if let (Verb::Apply | Verb::Create | Verb::Update, Some(o)) = (op.verb, &op.object)
            && !o.is_object()
        {
            return Err(missing(field, "the manifest must be a JSON object"));
        }
        if api_version.is_empty() || kind.is_empty() {
            return Err(missing(field, "apiVersion and kind are required"));
        }
        let (info, pending) = match self.state.registry.by_kind(&api_version, &kind) {
            Some(info) => (info, None),
            None => defined_earlier(seen, &api_version, &kind)?.ok_or_else(|| {
                ApiError::not_found(format!("the server does not serve kind {kind:?} in {api_version}"))
                    .with_details(cause("kind", format!("no kind {kind:?} is served in {api_version}")))
            })?,
        };
        if name.is_empty() {
            return Err(ApiError::invalid(&info, "", vec![FieldError::new("metadata.name", "a name is required")]));
        }
        // As `kubectl apply`: a namespaced object without a namespace goes to `default`.
        let namespace = info.namespaced.then(|| namespace.unwrap_or_else(|| "default".to_string()));
        let verb = match op.verb {
            // What PATCH with an apply patch is authorized as.
            Verb::Apply => "patch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
        };
        let ctx = Ctx {
            state: self.state.clone(),
            info,
            namespace,
            name,
            dry_run: self.asked.dry_run,
            field_manager: self.asked.field_manager.clone(),
            force: self.asked.force,
            client: self.client,
            identity: self.identity.clone(),
            target: Target::Object,
        };
        Ok((ctx, verb, pending))
    }

    async fn plan_create(
        &self,
        ctx: &Ctx,
        pending: &Pending,
        op: &Operation,
        live: &Seen,
        seen: &HashMap<Key, Seen>,
    ) -> ApiResult<Step> {
        let mut object = op.object.clone().unwrap_or(Value::Null);
        ctx.fill_identity(&mut object, Some(&ctx.name))?;
        resources::strip_for_create(&mut object);
        namespace_usable(ctx, seen).await?;
        within_size(ctx, &object)?;
        validate(ctx, pending, &object).await?;
        if live.value.is_some() {
            return Err(ApiError::from_store(StoreError::AlreadyExists(ctx.key(&ctx.name)), &ctx.info, &ctx.name));
        }
        self.created(ctx, object).await
    }

    /// The create step of a valid new `object`, as `POST` would store it.
    async fn created(&self, ctx: &Ctx, mut object: Value) -> ApiResult<Step> {
        let ours = ctx.info.group == corral_api::GROUP;
        if ours && ctx.info.plural == "tasks" {
            if object.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
                return Err(ApiError::invalid(
                    &ctx.info,
                    &ctx.name,
                    vec![FieldError::new(
                        "spec.nodeName",
                        "a task bound to a node is created by its own POST (the node's resources are \
                         accounted there), not in a transaction; leave spec.nodeName to the scheduler",
                    )],
                ));
            }
            if object.pointer("/spec/volumeMounts").is_some() {
                let mounts = super::volume_binding::mounts_of(&object);
                let ns = ctx.namespace.clone().unwrap_or_default();
                super::volume_binding::exist(&ctx.state.store, &ctx.info, &ctx.name, &ns, &mounts).await?;
            }
        }
        let predicted = resources::would_be_created(object.clone());
        resources::initial_status(&ctx.info, &mut object);
        if ours && ctx.info.plural == "volumes" {
            super::volume_binding::volume_finalizers(&mut object);
        }
        Ok(Step::Create { object, predicted })
    }

    async fn plan_apply(
        &self,
        ctx: &Ctx,
        pending: &Pending,
        op: &Operation,
        live: &Seen,
        seen: &HashMap<Key, Seen>,
    ) -> ApiResult<Step> {
        let mut manifest = op.object.clone().unwrap_or(Value::Null);
        ctx.fill_identity(&mut manifest, Some(&ctx.name))?;
        let desired = corral_api::apply::prepare_manifest(&manifest, ctx.field_manager.as_deref());
        let Some(live_value) = &live.value else {
            // The namespace first: admission judges tasks by their namespace's label.
            namespace_usable(ctx, seen).await?;
            within_size(ctx, &desired)?;
            validate(ctx, pending, &desired).await?;
            return self.created(ctx, desired).await;
        };
        let mut merged = super::patch::apply_onto(ctx, &desired, live_value).await?;
        self.changed(ctx, pending, live, live_value, &mut merged).await
    }

    async fn plan_update(&self, ctx: &Ctx, pending: &Pending, op: &Operation, live: &Seen) -> ApiResult<Step> {
        let mut object = op.object.clone().unwrap_or(Value::Null);
        ctx.fill_identity(&mut object, Some(&ctx.name))?;
        let Some(live_value) = &live.value else {
            validate(ctx, pending, &object).await?;
            return Err(ApiError::object_not_found(&ctx.info, &ctx.name));
        };
        self.changed(ctx, pending, live, live_value, &mut object).await
    }

    /// The update step that makes `live_value` into `object` (validated, its own
    /// `resourceVersion`, if other than the live one, a precondition), or nothing when
    /// it would not change it.
    async fn changed(
        &self,
        ctx: &Ctx,
        pending: &Pending,
        live: &Seen,
        live_value: &Value,
        object: &mut Value,
    ) -> ApiResult<Step> {
        if !object.is_object() {
            return Err(ApiError::invalid(&ctx.info, &ctx.name, vec![FieldError::new("", "not a JSON object")]));
        }
        ctx.fill_identity(object, Some(&ctx.name))?;
        within_size(ctx, object)?;
        validate(ctx, pending, object).await?;
        let asked = resources::precondition(ctx, object)?;
        let live_rv =
            live_value.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok());
        if let Some(rv) = asked
            && Some(rv) != live_rv
        {
            return Err(ApiError::conflict(format!(
                "{} {:?} is at resourceVersion {}, not {rv} as the operation requires; read it again",
                ctx.info.kind,
                ctx.name,
                live_rv.map(|r: u64| r.to_string()).unwrap_or_else(|| "(not yet written)".into())
            ))
            .with_details(StatusDetails::object(&ctx.info, &ctx.name)));
        }
        let predicted = resources::would_be_updated(live_value, object, false);
        if predicted == *live_value {
            return Ok(Step::Nothing { outcome: Outcome::Unchanged, object: Some(predicted) });
        }
        Ok(Step::Update { object: object.clone(), expected: live.revision, predicted })
    }

    /// Writes the plan in one store transaction; `None` when it lost a race.
    async fn commit(&self, plan: Vec<Planned>) -> ApiResult<Option<TransactionResult>> {
        let mut ops = Vec::new();
        // Per planned operation: the index of its last store write, if it writes.
        let mut last_op = Vec::with_capacity(plan.len());
        for p in &plan {
            match &p.step {
                Step::Create { object, .. } => ops.push(TxnOp::Create { key: p.key.clone(), object: object.clone() }),
                Step::Update { object, expected, .. } => {
                    ops.push(TxnOp::Update { key: p.key.clone(), object: object.clone(), expected: *expected })
                }
                Step::Delete { with_finalizers, expected } => {
                    let mut expected = *expected;
                    if let Some(v) = with_finalizers {
                        ops.push(TxnOp::Update { key: p.key.clone(), object: v.clone(), expected });
                        // The update before is conditioned; the delete follows it at once.
                        expected = None;
                    }
                    ops.push(TxnOp::Delete { key: p.key.clone(), expected });
                }
                Step::Nothing { .. } => {
                    last_op.push(None);
                    continue;
                }
            }
            last_op.push(Some(ops.len() - 1));
        }
        let outcomes = if ops.is_empty() {
            Vec::new()
        } else {
            match self.state.store.transact(ops).await {
                Ok(o) => o,
                Err(StoreError::Conflict { .. } | StoreError::NotFound(_) | StoreError::AlreadyExists(_)) => {
                    return Ok(None);
                }
                Err(e) => return Err(ApiError::from(e)),
            }
        };
        let mut results = Vec::with_capacity(plan.len());
        let mut writes = 0u64;
        // Every outcome carries its object's revision: a write's own, an unchanged
        // object's earlier one; the greatest is the transaction's last write.
        let revision = outcomes
            .iter()
            .map(|o| match o {
                TxnOutcome::Created(o) => o.revision,
                TxnOutcome::Updated(u) => u.object().revision,
                TxnOutcome::Deleted(DeleteOutcome::Deleted(o) | DeleteOutcome::Finalizing(o)) => o.revision,
            })
            .max();
        let (mut crds, mut policy) = (false, false);
        for (p, at) in plan.iter().zip(last_op) {
            let Some(at) = at else {
                let Step::Nothing { outcome, object } = &p.step else { continue };
                results.push(OperationResult { outcome: *outcome, object: object.clone() });
                continue;
            };
            crds |= corral_api::crd::is_crd_kind(&p.ctx.info);
            policy |= p.policy;
            let (outcome, object, wrote) = match outcomes.get(at) {
                Some(TxnOutcome::Created(o)) => (Outcome::Created, Some(o.clone()), true),
                Some(TxnOutcome::Updated(UpdateOutcome::Updated(o))) => (Outcome::Configured, Some(o.clone()), true),
                Some(TxnOutcome::Updated(UpdateOutcome::Unchanged(o))) => (Outcome::Unchanged, Some(o.clone()), false),
                Some(TxnOutcome::Updated(UpdateOutcome::Deleted(o))) => (Outcome::Configured, Some(o.clone()), true),
                Some(TxnOutcome::Deleted(DeleteOutcome::Deleted(o))) => {
                    super::delete::record_deletion(&p.ctx, o, true).await;
                    (Outcome::Deleted, None, true)
                }
                Some(TxnOutcome::Deleted(DeleteOutcome::Finalizing(o))) => {
                    super::delete::record_deletion(&p.ctx, o, false).await;
                    (Outcome::Deleted, None, true)
                }
                None => return Err(ApiError::internal("the store answered fewer writes than it was given")),
            };
            // The finalizers' update before a delete is a write of its own.
            if matches!(p.step, Step::Delete { with_finalizers: Some(_), .. }) {
                writes += 1;
            }
            writes += u64::from(wrote);
            let object = object
                .map(|o| serde_json::from_slice(&o.json))
                .transpose()
                .map_err(|e| ApiError::internal(format!("a stored object is not JSON: {e}")))?;
            results.push(OperationResult { outcome, object });
        }
        if crds {
            super::crd::after_write(&self.state).await;
        }
        if policy {
            self.state.auth.index.caught_up(self.state.store.as_ref()).await;
        }
        let revision = match revision {
            Some(r) if writes > 0 => r,
            _ => self.state.store.stats().revision,
        };
        Ok(Some(TransactionResult { revision, writes, results }))
    }
}

/// A registry serving a kind that an earlier operation of the transaction defines
/// (a CustomResourceDefinition not yet stored); `None` for kinds already served.
type Pending = Option<Arc<corral_api::Registry>>;

/// Longest the validation against a definition of the transaction may take, as
/// for stored custom kinds.
const VALIDATION_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// The kind `kind` of `api_version` as a CustomResourceDefinition written by an
/// earlier operation defines it, with a registry that validates its objects.
fn defined_earlier(
    seen: &HashMap<Key, Seen>,
    api_version: &str,
    kind: &str,
) -> ApiResult<Option<(Arc<corral_api::KindInfo>, Pending)>> {
    use corral_api::Resource as _;
    use corral_api::kinds::CustomResourceDefinition;
    let resource = format!("{}/{}", corral_api::GROUP, CustomResourceDefinition::PLURAL);
    for (key, s) in seen {
        let Some(value) = s.value.as_ref().filter(|_| key.resource == resource) else { continue };
        let Ok(crd) = serde_json::from_value::<CustomResourceDefinition>(value.clone()) else { continue };
        let info = corral_api::KindInfo::from_crd(&crd);
        if info.api_version() != api_version || info.kind != kind {
            continue;
        }
        let registry = corral_api::Registry::default();
        let info = registry.register(info).map_err(|e| {
            ApiError::bad_request(format!("the definition of {kind} in this transaction is not served: {e}"))
        })?;
        return Ok(Some((info, Some(Arc::new(registry)))));
    }
    Ok(None)
}

/// Validates `object` as its single request would (`ctx.validate`), or, for a kind
/// defined earlier in the transaction, against that definition's schema.
async fn validate(ctx: &Ctx, pending: &Pending, object: &Value) -> ApiResult<()> {
    let Some(registry) = pending else { return ctx.validate(object).await };
    let invalid = |causes| ApiError::invalid(&ctx.info, &ctx.name, causes);
    let (registry, info, copy) = (registry.clone(), ctx.info.clone(), object.clone());
    // A custom schema is the user's: off the async workers, and bounded in time.
    let check = tokio::task::spawn_blocking(move || registry.validate(&info, &copy));
    match tokio::time::timeout(VALIDATION_TIME, check).await {
        Ok(Ok(r)) => r.map_err(invalid),
        Ok(Err(e)) => Err(ApiError::internal(format!("validation failed: {e}"))),
        Err(_) => Err(invalid(vec![FieldError::new(
            "spec",
            format!("validation against the {} schema took too long; simplify it", ctx.info.kind),
        )])),
    }
}

/// The answer of a dry run: what each operation would do.
fn dry_result(plan: &[Planned], revision: u64) -> TransactionResult {
    let mut writes = 0;
    let results = plan
        .iter()
        .map(|p| {
            let (outcome, object) = match &p.step {
                Step::Create { predicted, .. } => (Outcome::Created, Some(predicted.clone())),
                Step::Update { predicted, .. } => (Outcome::Configured, Some(predicted.clone())),
                Step::Delete { .. } => (Outcome::Deleted, None),
                Step::Nothing { outcome, object } => (*outcome, object.clone()),
            };
            if !matches!(p.step, Step::Nothing { .. }) {
                writes += 1;
            }
            OperationResult { outcome, object }
        })
        .collect();
    TransactionResult { revision, writes, results }
}

/// Plans a delete as DELETE would do it (default propagation): an absent object, or
/// one whose uid or label no longer matches, is left alone.
fn plan_delete(ctx: &Ctx, op: &Operation, live: &Seen) -> ApiResult<Step> {
    let absent = Step::Nothing { outcome: Outcome::Absent, object: None };
    let Some(target) = &op.target else { return Err(missing("target", "a delete names its object")) };
    if super::delete::is_namespace(ctx) && super::delete::SYSTEM_NAMESPACES.contains(&ctx.name.as_str()) {
        return Err(super::delete::forbidden(
            format!("the namespace {:?} may not be deleted: the system needs it", ctx.name),
            &ctx.name,
        ));
    }
    let Some(live_value) = &live.value else { return Ok(absent) };
    if !still_matches(target, live_value)? {
        return Ok(absent);
    }
    let mut add: Vec<&str> = Propagation::default().finalizer().into_iter().collect();
    if super::delete::is_namespace(ctx) {
        // A namespace is emptied before it goes, whatever the policy.
        add.push(NAMESPACE_FINALIZER);
    }
    if super::delete::is_deleting(live_value) {
        // Marked already: deleting again changes nothing, as DELETE.
        return Ok(Step::Nothing { outcome: Outcome::Deleted, object: None });
    }
    let mut v = live_value.clone();
    let with_finalizers = super::delete::finalizers_on_delete(&ctx.info, &mut v, &add).then_some(v);
    Ok(Step::Delete { with_finalizers, expected: live.revision })
}

/// Whether the live object still is the one `target` means (uid, label).
fn still_matches(target: &OpTarget, live: &Value) -> ApiResult<bool> {
    if let Some(uid) = &target.uid
        && live.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str())
    {
        return Ok(false);
    }
    if let Some(label) = &target.label {
        let Some((k, v)) = label.split_once('=') else {
            return Err(ApiError::bad_request(format!("target.label {label:?} is not key=value"))
                .with_details(cause("target.label", format!("{label:?} is not key=value"))));
        };
        let labels = live.pointer("/metadata/labels").and_then(Value::as_object);
        if labels.and_then(|l| l.get(k)).and_then(Value::as_str) != Some(v) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The namespace of a new object exists and is not terminating, counting what the
/// operations before wrote.
async fn namespace_usable(ctx: &Ctx, seen: &HashMap<Key, Seen>) -> ApiResult<()> {
    let Some(ns) = ctx.namespace.as_deref().filter(|_| ctx.info.namespaced) else { return Ok(()) };
    let key = Key::cluster(format!("{}/namespaces", corral_api::GROUP), ns);
    match seen.get(&key).map(|s| &s.value) {
        Some(Some(v)) if v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) => {
            Err(super::delete::namespace_terminating(ns))
        }
        Some(Some(_)) => Ok(()),
        Some(None) => {
            Err(ApiError::not_found(format!("namespace {ns:?} is deleted by an earlier operation of this transaction")))
        }
        None => ctx.require_namespace().await,
    }
}

fn within_size(ctx: &Ctx, object: &Value) -> ApiResult<()> {
    if json_size_within(object, MAX_OBJECT_BYTES).is_none() {
        return Err(ApiError::invalid(
            &ctx.info,
            &ctx.name,
            vec![FieldError::new("", format!("larger than {MAX_OBJECT_BYTES} bytes, the largest an object may be"))],
        ));
    }
    Ok(())
}

fn finalizers(v: &Value) -> Vec<Value> {
    v.pointer("/metadata/finalizers").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// `v` as the store leaves it after a delete with finalizers (for later operations).
fn marked(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("deletionTimestamp".into(), Value::String(corral_api::meta::now_timestamp()));
    }
    v
}

/// Details with one cause at `field`.
fn cause(field: &str, message: String) -> StatusDetails {
    StatusDetails { causes: vec![FieldError::new(field, message)], ..Default::default() }
}

fn missing(field: &str, message: &str) -> ApiError {
    ApiError::bad_request(message.to_string()).with_details(cause(field, message.to_string()))
}

/// What an operation names, before its kind is known.
fn describe(op: &Operation) -> String {
    match (&op.object, &op.target) {
        (_, Some(t)) if op.verb == Verb::Delete => {
            format!("{}/{}{}", t.kind, t.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(), t.name)
        }
        (Some(o), _) => {
            let text = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or("?").to_string();
            let ns = o.pointer("/metadata/namespace").and_then(Value::as_str).map(|n| format!("{n}/"));
            format!("{}/{}{}", text("/kind"), ns.unwrap_or_default(), text("/metadata/name"))
        }
        _ => "(no object)".to_string(),
    }
}

/// The one error refusing a transaction: each problem a cause naming its operation.
fn refusal(total: usize, problems: &[(usize, String, ApiError)]) -> ApiError {
    let mut causes = Vec::new();
    for (i, what, e) in problems {
        match e.details.as_ref().filter(|d| !d.causes.is_empty()) {
            Some(d) => causes.extend(
                d.causes.iter().map(|c| FieldError::new(cause_field(*i, &c.field), format!("{what}: {}", c.message))),
            ),
            None => causes.push(FieldError::new(cause_field(*i, ""), format!("{what}: {}", e.message))),
        }
    }
    let codes: Vec<StatusCode> = problems.iter().map(|(_, _, e)| e.code).collect();
    let (code, reason) = if codes.contains(&StatusCode::FORBIDDEN) {
        (StatusCode::FORBIDDEN, "Forbidden")
    } else if let Some(c) = codes.iter().find(|c| c.is_server_error()) {
        (*c, "InternalError")
    } else if codes.iter().all(|c| *c == StatusCode::CONFLICT) {
        (StatusCode::CONFLICT, "Conflict")
    } else {
        (StatusCode::UNPROCESSABLE_ENTITY, "Invalid")
    };
    let first =
        problems.first().map(|(i, what, e)| format!("; operations[{i}] ({what}): {}", e.message)).unwrap_or_default();
    let message = format!(
        "the transaction was refused and nothing was written: {} of its {total} operations failed{first}{}",
        problems.len(),
        if problems.len() > 1 { " (details.causes lists every problem)" } else { "" }
    );
    ApiError { code, reason, message, details: None }.with_details(StatusDetails {
        kind: "Transaction".into(),
        causes,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_forbidden_before_invalid_before_conflict() {
        let p = |code| {
            (
                0usize,
                "ConfigMap/default/a".to_string(),
                ApiError { code, reason: "x", message: "m".into(), details: None },
            )
        };
        assert_eq!(refusal(3, &[p(StatusCode::CONFLICT), p(StatusCode::FORBIDDEN)]).code, StatusCode::FORBIDDEN);
        assert_eq!(
            refusal(3, &[p(StatusCode::CONFLICT), p(StatusCode::NOT_FOUND)]).code,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(refusal(3, &[p(StatusCode::CONFLICT), p(StatusCode::CONFLICT)]).code, StatusCode::CONFLICT);
    }

    #[test]
    fn a_label_precondition_must_still_hold() {
        let live = serde_json::json!({"metadata": {"uid": "u1", "labels": {"owner": "s1"}}});
        let t = |uid: Option<&str>, label: Option<&str>| OpTarget {
            uid: uid.map(str::to_string),
            label: label.map(str::to_string),
            ..Default::default()
        };
        assert!(still_matches(&t(Some("u1"), Some("owner=s1")), &live).unwrap_or(false));
        assert!(!still_matches(&t(Some("u2"), None), &live).unwrap_or(true));
        assert!(!still_matches(&t(None, Some("owner=s2")), &live).unwrap_or(true));
        assert!(still_matches(&t(None, Some("owner")), &live).is_err());
    }
}
