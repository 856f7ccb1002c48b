//! Accepting and declining offers (`POST /apis/corral.dev/v1/offers/NAME/accept`
//! and `…/decline`), and binding tasks by hand: every write that puts tasks on a
//! node is checked against what the node has free, under the node's lock
//! ([`crate::ledger`]), so that no node is ever oversubscribed — also when
//! frameworks race.
//!
//! An accept creates all of its tasks and deletes the offer in one store
//! transaction: the tasks exist, or none does and the offer is untouched.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use corral_api::allocation::{self, Free, covers, show_ports};
use corral_api::kinds::Task;
use corral_api::kinds::framework::{DEFAULT_ROLE, Offer, OfferDecline};
use corral_api::kinds::node::{Node, PortRange, Resources};
use corral_api::kinds::task::AGENT_FINALIZER;
use corral_api::{FieldError, GROUP};
use corral_store::{Key, StoredObject, TxnOp, TxnOutcome};
use serde::Deserialize as _;
use serde_json::{Value, json};

use super::auth::{Attributes, Decision};
use super::body;
use super::error::{ApiError, ApiResult};
use super::ledger::Hold;
use super::resources::{Ctx, object_name, strip_for_create};
use super::volume_binding::{Claimant, Claims};

/// An [`OfferAccept`](corral_api::kinds::framework::OfferAccept) as it arrives: each task is kept as sent (as a create keeps
/// its body) and read typed besides, rather than built typed and encoded again.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AcceptBody {
    framework: String,
    tasks: Vec<Value>,
}

/// How long a decline keeps the node from the framework by default (as Mesos).
const DEFAULT_REFUSE_SECONDS: u64 = 5;

/// `POST offers/NAME/accept`: launches the body's tasks on the offer's node.
pub(crate) async fn accept(ctx: &Ctx, bytes: Bytes) -> ApiResult<Response> {
    let req: AcceptBody = parse(&bytes, "OfferAccept")?;
    let (stored, offer) = live_offer(ctx, &req.framework).await?;
    if req.tasks.is_empty() {
        return Err(ApiError::bad_request("an accept carries at least one task; to turn the offer down, decline it"));
    }
    let tasks_info = ctx.state.builtin_kind("tasks")?;

    // Each task as it will be stored, judged as a create in its namespace would be.
    let mut objects = Vec::with_capacity(req.tasks.len());
    let mut want = Resources::default();
    let mut ports: Vec<u16> = Vec::new();
    let mut checked: BTreeMap<String, bool> = BTreeMap::new();
    let mut holds = Vec::with_capacity(req.tasks.len());
    // The tasks that mount volumes: their index, namespace, name and mounts.
    let mut mounting = Vec::new();
    for (i, mut object) in req.tasks.into_iter().enumerate() {
        let task = Task::deserialize(&object)
            .map_err(|e| ApiError::bad_request(format!("the body is not an OfferAccept: tasks[{i}]: {e}")))?;
        if let Some(map) = object.as_object_mut() {
            map.entry("apiVersion").or_insert_with(|| json!(format!("{GROUP}/{}", corral_api::VERSION)));
            map.entry("kind").or_insert_with(|| json!("Task"));
        }
        let ns = task.metadata.namespace.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
            invalid_task(ctx, i, "metadata.namespace", "required: the namespace the task is created in")
        })?;
        if task.spec.node_name.as_ref().is_some_and(|n| *n != offer.spec.node) {
            return Err(invalid_task(
                ctx,
                i,
                "spec.nodeName",
                &format!("leave it out: the offer is of node {:?}", offer.spec.node),
            ));
        }
        for (j, p) in task.spec.ports.iter().enumerate() {
            match p.host_port {
                Some(hp) if allocation::contains(&offer.spec.ports, &PortRange { begin: hp, end: hp }) => {
                    ports.push(hp)
                }
                Some(hp) => {
                    return Err(invalid_task(
                        ctx,
                        i,
                        &format!("spec.ports[{j}].hostPort"),
                        &format!("{hp} is not among the offer's ports ({})", show_ports(&offer.spec.ports)),
                    ));
                }
                None => {
                    return Err(invalid_task(
                        ctx,
                        i,
                        &format!("spec.ports[{j}].hostPort"),
                        &format!("required: pick it from the offer's ports ({})", show_ports(&offer.spec.ports)),
                    ));
                }
            }
        }
        want = allocation::add(&want, &task.spec.resources);
        holds.push(Hold {
            node: offer.spec.node.clone(),
            role: offer.spec.role.clone(),
            resources: task.spec.resources,
            ports: task.spec.ports.iter().filter_map(|p| p.host_port).collect(),
        });
        let spec = object
            .get_mut("spec")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::internal("a task serializes with a spec"))?;
        spec.insert("nodeName".into(), json!(offer.spec.node));
        spec.insert("framework".into(), json!(offer.spec.framework));
        spec.insert("role".into(), json!(offer.spec.role));
        spec.insert("offer".into(), json!(ctx.name));
        strip_for_create(&mut object);
        held_by_agent(&mut object);
        let task_ctx = Ctx {
            state: ctx.state.clone(),
            info: tasks_info.clone(),
            namespace: Some(ns.clone()),
            name: String::new(),
            dry_run: false,
            field_manager: None,
            force: false,
            client: ctx.client,
            identity: ctx.identity.clone(),
            target: super::path::Target::Collection,
        };
        // An accept's tasks are mostly of one namespace: it is judged once, and
        // each task against the kind's schema and the namespace's task policy.
        let privileged = match checked.get(&ns) {
            Some(p) => *p,
            None => {
                may_create_tasks(ctx, &ns)?;
                task_ctx.require_namespace().await?;
                let p = super::admission::namespace_privileged(ctx, &ns).await?;
                checked.insert(ns.clone(), p);
                p
            }
        };
        super::admission::admit_new_task(&task_ctx, &ns, &object, &task.spec, privileged).await?;
        if !task.spec.volume_mounts.is_empty() {
            mounting.push((i, ns.clone(), object_name(&object).to_string(), task.spec.volume_mounts.clone()));
        }
        objects.push((task_ctx.key(object_name(&object)), object));
    }
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    if distinct.len() != ports.len() {
        return Err(ApiError::conflict(
            "two of the tasks ask for the same host port; give each its own from the offer",
        ));
    }
    if !covers(&offer.spec.resources, &want) {
        return Err(ApiError::conflict(format!(
            "resources short: the tasks ask {}, offer {:?} holds {}",
            show(&want),
            ctx.name,
            show(&offer.spec.resources)
        )));
    }

    // The node's lock: no other binding write to it until these holds are recorded.
    let ledger = &ctx.state.ledger;
    ledger.ready(&ctx.state.store, ctx.state.closed()).await?;
    let _lock = ledger.lock(&offer.spec.node).await;
    let node = live_node(ctx, &offer.spec.node).await?;
    let tasks_want = want;
    // A volume rewritten between its read and the write (its status, by the volumes
    // controller or an agent) fails the transaction: the claims are made again.
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        let last = mounting.is_empty() || attempt >= CLAIM_ATTEMPTS;
        // The volumes the tasks mount, claimed in the accept's own transaction.
        let mut claims = Claims::default();
        for (i, ns, name, mounts) in &mounting {
            let claimant =
                Claimant { namespace: ns, task: name, node: &offer.spec.node, field: format!("tasks[{i}].spec") };
            claims.claim(&ctx.state.store, &ctx.info, &ctx.name, &claimant, mounts).await?;
        }
        // Volumes bound now reserve their size on the node, beside the tasks' own
        // disk. An offer shows disk net of bound volumes: the new ones must fit in it.
        let mut want = tasks_want;
        want.disk += claims.new_disk;
        if !covers(&offer.spec.resources, &want) {
            return Err(ApiError::conflict(
                format!(
                    "resources short: the tasks ask {}, offer {:?} holds {}",
                    show(&want),
                    ctx.name,
                    show(&offer.spec.resources)
                ) + &volumes_note(&claims),
            ));
        }
        let mut free = ledger.free(&node);
        if !free.take(&offer.spec.role, &want, &allocation::port_ranges(ports.iter().copied())) {
            return Err(ApiError::conflict(
                format!(
                    "resources short: node {:?} has {} free for role {:?} and ports {}, the tasks ask {} and ports {}; \
                 the offer is out of date — wait for the next one",
                    offer.spec.node,
                    show(&free.free_for(&offer.spec.role)),
                    offer.spec.role,
                    show_ports(&free.ports),
                    show(&want),
                    show_ports(&allocation::port_ranges(ports.iter().copied()))
                ) + &volumes_note(&claims),
            ));
        }
        // Hundreds of tasks are copied only when the write may be tried again.
        let mut ops: Vec<TxnOp> = if last {
            std::mem::take(&mut objects).into_iter().map(|(key, object)| TxnOp::Create { key, object }).collect()
        } else {
            objects.iter().map(|(key, object)| TxnOp::Create { key: key.clone(), object: object.clone() }).collect()
        };
        ops.push(TxnOp::Delete { key: stored.key.clone(), expected: Some(stored.revision) });
        ops.extend(claims.ops);
        match ctx.state.store.transact(ops).await {
            Ok(outcome) => break outcome,
            Err(e) if !last && super::volume_binding::raced(&e).is_some() => continue,
            Err(e) => {
                return Err(match e {
                    e if super::volume_binding::raced(&e).is_some() => {
                        super::volume_binding::raced(&e).unwrap_or_else(|| ApiError::internal("a race that was not"))
                    }
                    corral_store::Error::Conflict { .. } | corral_store::Error::NotFound(_) => gone(&ctx.name),
                    corral_store::Error::AlreadyExists(key) => ApiError::conflict(format!(
                        "task {:?} already exists in namespace {:?}; nothing was created and the offer stands",
                        key.name, key.namespace
                    )),
                    other => ApiError::from(other),
                });
            }
        }
    };
    // The list is assembled from the stored bytes: hundreds of tasks are not
    // decoded only to be encoded again.
    let mut list = Vec::with_capacity(
        outcome.iter().map(|o| if let TxnOutcome::Created(t) = o { t.json.len() + 1 } else { 0 }).sum::<usize>() + 64,
    );
    list.extend_from_slice(br#"{"apiVersion":"corral.dev/v1","kind":"TaskList","items":["#);
    // The ops were the tasks in order, then the offer's deletion.
    ledger.record_created(
        outcome.iter().filter_map(|o| if let TxnOutcome::Created(t) = o { Some(&**t) } else { None }).zip(holds),
    );
    record_volumes(ctx, &outcome);
    let mut count = 0;
    for o in &outcome {
        if let TxnOutcome::Created(t) = o {
            if count > 0 {
                list.push(b',');
            }
            list.extend_from_slice(&t.json);
            count += 1;
        }
    }
    list.extend_from_slice(b"]}");
    tracing::info!(offer = %ctx.name, framework = %offer.spec.framework, node = %offer.spec.node,
        tasks = count, "offer accepted");
    Ok(body::raw_json(StatusCode::CREATED, Bytes::from(list)))
}

/// `POST offers/NAME/decline`: the framework turns the offer down and refuses the
/// node for a while; the offers controller takes it back.
pub(crate) async fn decline(ctx: &Ctx, bytes: Bytes) -> ApiResult<Response> {
    let req: OfferDecline = parse(&bytes, "OfferDecline")?;
    let (stored, _) = live_offer(ctx, &req.framework).await?;
    let mut object = stored.value().map_err(ApiError::internal)?;
    let seconds = req.refuse_seconds.unwrap_or(DEFAULT_REFUSE_SECONDS);
    object["status"] = json!({"declinedForSeconds": seconds});
    let out = ctx
        .state
        .store
        .update_status(stored.key.clone(), object, Some(stored.revision))
        .await
        .map_err(|_| gone(&ctx.name))?;
    Ok(body::raw_json(StatusCode::OK, out.object().json.clone()))
}

/// Creates a task bound by hand to a node, within what the node has free; ports
/// without a host port get the node's lowest free ones.
pub(crate) async fn create_bound(ctx: &Ctx, key: Key, object: Value, node: &str) -> ApiResult<Arc<StoredObject>> {
    if object.pointer("/spec/volumeMounts").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return create_bound_once(ctx, key, object, node).await.map_err(Attempt::into_error);
    }
    // A volume rewritten between its read and the write (its status, by the volumes
    // controller or an agent) fails the transaction: the claims are made again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match create_bound_once(ctx, key.clone(), object.clone(), node).await {
            Err(Attempt::Raced(_)) if attempt < CLAIM_ATTEMPTS => continue,
            other => return other.map_err(Attempt::into_error),
        }
    }
}

/// How many times a write claiming volumes is tried when a volume it read changed
/// before the write.
const CLAIM_ATTEMPTS: u32 = 5;

/// Why one try of a binding write failed.
enum Attempt {
    /// A volume it claimed changed between its read and the write.
    Raced(ApiError),
    /// Anything else.
    Failed(ApiError),
}

impl Attempt {
    fn into_error(self) -> ApiError {
        match self {
            Attempt::Raced(e) | Attempt::Failed(e) => e,
        }
    }
}

impl From<ApiError> for Attempt {
    fn from(e: ApiError) -> Self {
        Attempt::Failed(e)
    }
}

impl From<corral_store::Error> for Attempt {
    fn from(e: corral_store::Error) -> Self {
        Attempt::Failed(e.into())
    }
}

/// One try of [`create_bound`].
async fn create_bound_once(ctx: &Ctx, key: Key, mut object: Value, node: &str) -> Result<Arc<StoredObject>, Attempt> {
    let ledger = &ctx.state.ledger;
    ledger.ready(&ctx.state.store, ctx.state.closed()).await?;
    let _lock = ledger.lock(node).await;
    // The volumes it mounts, claimed in the task's own transaction.
    let mut claims = Claims::default();
    let mounts = super::volume_binding::mounts_of(&object);
    if !mounts.is_empty() {
        let claimant = Claimant { namespace: &key.namespace, task: &key.name, node, field: "spec".into() };
        claims.claim(&ctx.state.store, &ctx.info, &key.name, &claimant, &mounts).await?;
    }
    let Some(live) = ctx.state.store.get(&Key::cluster(format!("{GROUP}/nodes"), node)).await? else {
        // No such node (yet): nothing to oversubscribe, but no ranges to pick ports from.
        if let Some(i) = object
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .and_then(|ps| ps.iter().position(|p| p.get("hostPort").is_none_or(Value::is_null)))
        {
            return Err(Attempt::Failed(ApiError::invalid(
                &ctx.info,
                &key.name,
                vec![FieldError::new(
                    format!("spec.ports[{i}].hostPort"),
                    format!(
                        "required while node {node:?} is not registered: the server picks free host ports from \
                         a node's ranges, and this node has none yet; give one, or create the task once the node is up"
                    ),
                )],
            )));
        }
        let stored = create_with_claims(ctx, key, object, claims).await?;
        ledger.record(&stored);
        return Ok(stored);
    };
    let node_obj: Node = serde_json::from_slice(&live.json).map_err(ApiError::internal)?;
    held_by_agent(&mut object);
    let mut free = ledger.free(&node_obj);
    let role = object.pointer("/spec/role").and_then(Value::as_str).unwrap_or(DEFAULT_ROLE).to_string();
    let mut want: Resources =
        object.pointer("/spec/resources").and_then(|r| serde_json::from_value(r.clone()).ok()).unwrap_or_default();
    // Volumes bound now reserve their size on the node, beside the task's own disk.
    want.disk += claims.new_disk;
    assign_ports(&mut object, &free)?;
    let hold = super::ledger::Hold::of(&object).map(|h| h.ports).unwrap_or_default();
    if !free.take(&role, &want, &allocation::port_ranges(hold.iter().copied())) {
        return Err(Attempt::Failed(ApiError::conflict(
            format!(
                "node {node:?} has {} free for role {role:?} and ports {}; the task asks {} and ports {}",
                show(&free.free_for(&role)),
                show_ports(&free.ports),
                show(&want),
                show_ports(&allocation::port_ranges(hold.iter().copied()))
            ) + &volumes_note(&claims),
        )));
    }
    let stored = create_with_claims(ctx, key, object, claims).await?;
    ledger.record(&stored);
    Ok(stored)
}

/// Creates the task `object` at `key` and writes the volumes it claims, in one
/// transaction; records the volumes' reservations in the ledger.
async fn create_with_claims(ctx: &Ctx, key: Key, object: Value, claims: Claims) -> Result<Arc<StoredObject>, Attempt> {
    if claims.ops.is_empty() {
        return Ok(ctx.state.store.create(key.clone(), object).await.map_err(ctx.store_error(&key.name))?);
    }
    let mut ops = vec![TxnOp::Create { key: key.clone(), object }];
    ops.extend(claims.ops);
    let outcome = ctx.state.store.transact(ops).await.map_err(|e| match super::volume_binding::raced(&e) {
        Some(api) => Attempt::Raced(api),
        None => Attempt::Failed(ApiError::from_store(e, &ctx.info, &key.name)),
    })?;
    record_volumes(ctx, &outcome);
    Ok(outcome
        .into_iter()
        .find_map(|o| if let TxnOutcome::Created(t) = o { Some(t) } else { None })
        .ok_or_else(|| ApiError::internal("a transaction that created a task returned no task"))?)
}

/// Records in the ledger the volumes a transaction wrote.
fn record_volumes(ctx: &Ctx, outcome: &[TxnOutcome]) {
    for o in outcome {
        if let TxnOutcome::Updated(u) = o {
            ctx.state.ledger.record_volume(u.object());
        }
    }
}

/// What a refusal for resources says about volumes bound by the write.
fn volumes_note(claims: &Claims) -> String {
    if claims.new_disk == 0 {
        return String::new();
    }
    format!(
        " (the disk asked includes {} MiB for the volumes this task binds to the node: a volume's size is reserved \
         on its node for as long as it is bound)",
        claims.new_disk
    )
}

/// A task bound to a registered node carries the agent's finalizer from its creation:
/// deleting it waits until the node's agent has stopped it, and the agent need not
/// write each task once more just to take it (a third of the writes of a launch).
/// A task bound to a node not registered gets none: no agent may ever come for it.
fn held_by_agent(object: &mut Value) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if list.is_null() {
        *list = json!([]);
    }
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|f| f == AGENT_FINALIZER)
    {
        list.push(json!(AGENT_FINALIZER));
    }
}

/// Gives each port without a host port the lowest free one of the node.
fn assign_ports(object: &mut Value, free: &Free) -> ApiResult<()> {
    let Some(ports) = object.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else { return Ok(()) };
    let taken: BTreeSet<u64> = ports.iter().filter_map(|p| p.get("hostPort").and_then(Value::as_u64)).collect();
    let mut candidates = free.ports.iter().flat_map(|r| r.begin..=r.end).filter(|p| !taken.contains(&u64::from(*p)));
    for (i, p) in ports.iter_mut().enumerate() {
        if p.get("hostPort").is_some_and(|h| !h.is_null()) {
            continue;
        }
        let Some(next) = candidates.next() else {
            return Err(ApiError::conflict(format!(
                "spec.ports[{i}]: the node has no free host port left in its ranges ({})",
                show_ports(&free.ports)
            )));
        };
        p["hostPort"] = json!(next);
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("the body is not an {what}: {e}")))
}

/// The offer as stored, if it is still good for `framework`.
async fn live_offer(ctx: &Ctx, framework: &str) -> ApiResult<(Arc<StoredObject>, Offer)> {
    let stored = ctx.state.store.get(&ctx.key(&ctx.name)).await?.ok_or_else(|| gone(&ctx.name))?;
    let offer: Offer = serde_json::from_slice(&stored.json).map_err(ApiError::internal)?;
    if offer.spec.framework != framework {
        return Err(ApiError::forbidden(format!(
            "offer {:?} was made to framework {:?}, not {framework:?}",
            ctx.name, offer.spec.framework
        )));
    }
    if offer.metadata.deletion_timestamp.is_some() {
        return Err(gone(&ctx.name));
    }
    let expires = chrono::DateTime::parse_from_rfc3339(&offer.spec.expires).map_err(ApiError::internal)?;
    if expires <= chrono::Utc::now() {
        return Err(ApiError::conflict(format!(
            "offer {:?} expired at {}; wait for the next offer",
            ctx.name, offer.spec.expires
        )));
    }
    if offer.status.as_ref().is_some_and(|s| s.declined_for_seconds.is_some()) {
        return Err(ApiError::conflict(format!("offer {:?} was declined", ctx.name)));
    }
    Ok((stored, offer))
}

async fn live_node(ctx: &Ctx, name: &str) -> ApiResult<Node> {
    let live = ctx
        .state
        .store
        .get(&Key::cluster(format!("{GROUP}/nodes"), name))
        .await?
        .ok_or_else(|| ApiError::conflict(format!("node {name:?} is gone; the offer is void")))?;
    serde_json::from_slice(&live.json).map_err(ApiError::internal)
}

fn may_create_tasks(ctx: &Ctx, ns: &str) -> ApiResult<()> {
    let attrs = Attributes::Resource {
        verb: "create".into(),
        group: GROUP.into(),
        resource: "tasks".into(),
        subresource: None,
        namespace: Some(ns.into()),
        name: None,
    };
    match ctx.state.auth.policy.read().authorize(&ctx.identity, &attrs) {
        Decision::Allow(_) => Ok(()),
        Decision::Deny => Err(ApiError::forbidden(format!(
            "user {:?} cannot create tasks in namespace {ns:?}, which accepting this offer does",
            ctx.identity.user
        ))),
    }
}

fn gone(name: &str) -> ApiError {
    ApiError::conflict(format!(
        "offer {name:?} is no longer outstanding: it was accepted, declined, rescinded or it expired; wait for the next offer"
    ))
}

fn invalid_task(ctx: &Ctx, i: usize, field: &str, reason: &str) -> ApiError {
    ApiError::invalid(&ctx.info, &ctx.name, vec![FieldError::new(format!("tasks[{i}].{field}"), reason.to_string())])
}

fn show(r: &Resources) -> String {
    format!("cpus {}, mem {} MiB, disk {} MiB", r.cpus, r.mem, r.disk)
}
