//! Checks on an object about to be written that go beyond its schema and depend on
//! who writes it or where: the node restriction ([`crate::auth::node`]), a node's
//! `agentEndpoint` (only the node itself sets it: the server proxies logs there), and
//! the task security policy of the task's namespace.
//!
//! The task security policy is a label on the namespace, as Kubernetes' Pod Security
//! Standards: `corral.dev/task-security: restricted` (the default, also for any
//! unknown value) or `privileged`. A restricted namespace refuses native tasks (they
//! run on the host), tasks asking for uid 0, and `file://` artifacts; its tasks run
//! as a non-root user (the agent enforces that side, see `corral-agent`).

use corral_api::kinds::task::TaskSpec;
use corral_store::Key;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::path::Target;
use crate::resources::Ctx;

use corral_api::kinds::namespace::{TASK_SECURITY_LABEL, TASK_SECURITY_PRIVILEGED as PRIVILEGED};

/// Runs every check on `object`, about to be written through `ctx`.
pub(crate) async fn admit(ctx: &Ctx, object: &Value) -> ApiResult<()> {
    if ctx.info.group != corral_api::GROUP {
        return Ok(());
    }
    if let Some(node) = ctx.identity.node() {
        crate::auth::node::admit(ctx, node, object).await?;
    }
    match ctx.info.plural.as_str() {
        "nodes" => agent_endpoint(ctx, object).await,
        "volumes" if ctx.target != Target::Status => crate::volume_binding::admit_volume(ctx, object).await,
        "tasks" if ctx.target != Target::Status => {
            service_account_fixed(ctx, object).await?;
            crate::volume_binding::task_update(ctx, object).await?;
            task_spec(ctx, object, "/spec", "spec").await
        }
        "services" if ctx.target != Target::Status => {
            service_template(ctx, object)?;
            // Judged now, as the tasks it will launch would be, rather than refused
            // launch after launch.
            task_spec(ctx, object, "/spec/template", "spec.template").await
        }
        "jobs" | "jobruns" if ctx.target != Target::Status => {
            if object.pointer("/spec/run").is_none_or(Value::is_null) {
                return Ok(());
            }
            job_template(ctx, object)?;
            if ctx.info.plural == "jobs" {
                run_names_fit(ctx, object)?;
            }
            task_spec(ctx, object, "/spec/run/task", "spec.run.task").await
        }
        "syncs" if ctx.target != Target::Status => sync_spec(ctx, object),
        _ => Ok(()),
    }
}

/// A Sync names exactly one source, a git source at most one of branch, tag and
/// commit, and a webhook token's hash as 64 hex digits: refused now rather than
/// failing at each sync.
fn sync_spec(ctx: &Ctx, object: &Value) -> ApiResult<()> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let set = |p: &str| object.pointer(p).is_some_and(|v| !v.is_null());
    let mut why = Vec::new();
    let sources = ["git", "directory", "pushed"].into_iter().filter(|s| set(&format!("/spec/source/{s}"))).count();
    if sources != 1 {
        why.push(corral_api::FieldError::new(
            "spec.source",
            format!("must name exactly one of git, directory and pushed (names {sources})"),
        ));
    }
    let refs = ["branch", "tag", "commit"].into_iter().filter(|r| set(&format!("/spec/source/git/{r}"))).count();
    if refs > 1 {
        why.push(corral_api::FieldError::new("spec.source.git", "names at most one of branch, tag and commit"));
    }
    if let Some(h) = object.pointer("/spec/webhook/tokenSha256").and_then(Value::as_str)
        && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        why.push(corral_api::FieldError::new(
            "spec.webhook.tokenSha256",
            "must be the SHA-256 of the token as 64 hex digits (`corral sync token NAME` makes one)",
        ));
    }
    if why.is_empty() { Ok(()) } else { Err(ApiError::invalid(&ctx.info, name, why)) }
}

/// The admission of a task being created in namespace `ns`, whose privilege
/// (`privileged`: [`namespace_privileged`]) the caller judged once for many tasks
/// (an offer's accept): the kind's schema, then [`admit`]'s rules as they stand for
/// a create — a new task has no service account to keep and no spec admitted before,
/// so what is left is a node identity's own rules and the namespace's task policy.
pub(crate) async fn admit_new_task(
    ctx: &Ctx,
    ns: &str,
    object: &Value,
    spec: &TaskSpec,
    privileged: bool,
) -> ApiResult<()> {
    let name = crate::resources::object_name(object);
    ctx.state.registry.validate(&ctx.info, object).map_err(|causes| ApiError::invalid(&ctx.info, name, causes))?;
    if let Some(node) = ctx.identity.node() {
        crate::auth::node::admit(ctx, node, object).await?;
    }
    let why = spec.field_errors("spec");
    if !why.is_empty() {
        return Err(ApiError::invalid(&ctx.info, name, why));
    }
    if privileged { Ok(()) } else { restricted(ctx, ns, name, spec, "spec") }
}

/// A task's service account is fixed once the task exists, as a pod's: the token its
/// agent got is bound to the task, and must not come to stand for another account.
async fn service_account_fixed(ctx: &Ctx, object: &Value) -> ApiResult<()> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let Some(live) = live_value(ctx, name).await? else { return Ok(()) };
    let account = |v: &Value| v.pointer("/spec/serviceAccount").cloned();
    if account(&live) == account(object) {
        return Ok(());
    }
    Err(ApiError::invalid(
        &ctx.info,
        name,
        vec![corral_api::FieldError::new(
            "spec.serviceAccount",
            "cannot change once the task exists (its token is bound to the task); delete the task and create it again",
        )],
    ))
}

async fn agent_endpoint(ctx: &Ctx, object: &Value) -> ApiResult<()> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if ctx.identity.node() == Some(name) {
        return Ok(());
    }
    let live = live_value(ctx, name).await?;
    // An update of the object keeps the stored status: only creates and status
    // writes can set the endpoint.
    if ctx.target == Target::Object && live.is_some() {
        return Ok(());
    }
    let wanted = object.pointer("/status/agentEndpoint");
    let current = live.as_ref().and_then(|l| l.pointer("/status/agentEndpoint"));
    if wanted.is_some_and(|w| !w.is_null()) && wanted != current {
        return Err(ApiError::forbidden(format!(
            "only node {name:?} itself sets its status.agentEndpoint (the server fetches task logs there); \
             user {:?} may not",
            ctx.identity.user
        )));
    }
    Ok(())
}

/// The stored object `name`; none for a create, which must find none (the store
/// refuses it otherwise): a scheduler's accept creates hundreds of tasks at once.
async fn live_value(ctx: &Ctx, name: &str) -> ApiResult<Option<Value>> {
    if ctx.target == Target::Collection {
        return Ok(None);
    }
    match ctx.state.store.get(&ctx.key(name)).await.map_err(ApiError::from)? {
        Some(o) => serde_json::from_slice(&o.json).map(Some).map_err(ApiError::internal),
        None => Ok(None),
    }
}

/// Whether namespace `ns` is labelled privileged.
pub(crate) async fn namespace_privileged(ctx: &Ctx, ns: &str) -> ApiResult<bool> {
    let key = Key::cluster(format!("{}/namespaces", corral_api::GROUP), ns);
    // The index holds its labels: the namespace itself is not read.
    let Some(head) = ctx.state.store.head(&key).await.map_err(ApiError::from)? else { return Ok(false) };
    Ok(head.labels.get(TASK_SECURITY_LABEL).map(String::as_str) == Some(PRIVILEGED))
}

/// Judges the task spec at `pointer` of `object` (a task's spec, a template), its
/// fields named under `prefix`: what can be judged without a node is refused now
/// ([`TaskSpec::field_errors`], 422) rather than failed `InvalidSpec` by the node, and
/// a restricted namespace's policy applies ([`restricted`], 403). A spec stored before
/// and unchanged is not judged again (a finalizer or label change, or a namespace made
/// stricter since, must not block writes to running tasks); the live object is read
/// only when the spec fails a check, so the writes of good specs cost no read.
async fn task_spec(ctx: &Ctx, object: &Value, pointer: &str, prefix: &str) -> ApiResult<()> {
    let decode = |v: &Value| serde_json::from_value::<TaskSpec>(v.pointer(pointer).cloned().unwrap_or_default()).ok();
    // The schema has passed: the spec decodes.
    let Some(spec) = decode(object) else { return Ok(()) };
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let inconsistent = spec.field_errors(prefix);
    let policy = match ctx.namespace.as_deref() {
        Some(ns) if !namespace_privileged(ctx, ns).await? => restricted(ctx, ns, name, &spec, prefix),
        _ => Ok(()),
    };
    if inconsistent.is_empty() && policy.is_ok() {
        return Ok(());
    }
    if let Some(live) = live_value(ctx, name).await?
        && decode(&live).as_ref() == Some(&spec)
    {
        return Ok(());
    }
    if !inconsistent.is_empty() {
        return Err(ApiError::invalid(&ctx.info, name, inconsistent));
    }
    policy
}

/// Judges `spec` (of the object `name`, its fields named under `prefix`) by the
/// policy of a restricted namespace `ns`.
fn restricted(ctx: &Ctx, ns: &str, name: &str, spec: &TaskSpec, prefix: &str) -> ApiResult<()> {
    let mut why = Vec::new();
    if spec.image.is_none() {
        why.push(corral_api::FieldError::new(
            format!("{prefix}.image"),
            "a task without an image runs natively on the host; only a privileged namespace allows that",
        ));
    }
    if spec.user.as_deref().is_some_and(is_root) {
        why.push(corral_api::FieldError::new(
            format!("{prefix}.user"),
            "uid 0 (root) is allowed only in a privileged namespace",
        ));
    }
    for (i, a) in spec.artifacts.iter().enumerate() {
        if a.uri.trim_start().to_ascii_lowercase().starts_with("file:") {
            why.push(corral_api::FieldError::new(
                format!("{prefix}.artifacts[{i}].uri"),
                "file:// artifacts read the node's files; only a privileged namespace allows them",
            ));
        }
    }
    if why.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "namespace {ns:?} is restricted (label {TASK_SECURITY_LABEL}={PRIVILEGED} lifts it; only a cluster \
         administrator can set it): {}",
        why.iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>().join("; ")
    ))
    .with_details(crate::error::StatusDetails {
        group: ctx.info.group.clone(),
        kind: ctx.info.kind.clone(),
        name: name.to_string(),
        causes: why,
    }))
}

/// A service's template leaves to the scheduler what is the scheduler's, and its
/// unreachable strategy forgets a task only once it is replaced.
fn service_template(ctx: &Ctx, object: &Value) -> ApiResult<()> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let mut why = left_to_the_scheduler(
        object,
        "/spec/template",
        "spec.template",
        "services",
        "spec.role of the service",
        "scale the service down or delete it",
    );
    let seconds =
        |f: &str| object.pointer(&format!("/spec/unreachableStrategy/{f}")).and_then(Value::as_u64).unwrap_or(0);
    if seconds("expungeAfterSeconds") < seconds("inactiveAfterSeconds") {
        why.push(corral_api::FieldError::new(
            "spec.unreachableStrategy.expungeAfterSeconds",
            "must be at least inactiveAfterSeconds: a task is forgotten only once it is replaced",
        ));
    }
    if why.is_empty() { Ok(()) } else { Err(ApiError::invalid(&ctx.info, name, why)) }
}

/// A job's (or a run's) task template leaves placement to the jobs framework.
fn job_template(ctx: &Ctx, object: &Value) -> ApiResult<()> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let why = left_to_the_scheduler(object, "/spec/run/task", "spec.run.task", "jobs", "spec.run.role", "kill the run");
    if why.is_empty() { Ok(()) } else { Err(ApiError::invalid(&ctx.info, name, why)) }
}

/// A job's runs are named `JOB-YYYYmmddHHMMSS` (`JOB-SCHEDULE-…` when it has several
/// schedules; a manual run adds three letters) and their attempts' tasks `RUN-N`
/// (N up to 1000): a name must leave room for that within 63 characters, or the
/// job would be accepted and then fail at each run.
fn run_names_fit(ctx: &Ctx, object: &Value) -> ApiResult<()> {
    // "-" + 14 digits + 3 letters of a manual run + "-1000".
    const SUFFIX: usize = 1 + 14 + 3 + 5;
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let schedules = object.pointer("/spec/schedules").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let budget = corral_api::names::MAX_NAME_LEN - SUFFIX;
    let mut why = Vec::new();
    if name.len() > budget {
        why.push(corral_api::FieldError::new(
            "metadata.name",
            format!(
                "must be at most {budget} characters (has {}): runs and their tasks are named after the job, \
                 with the time and attempt added",
                name.len()
            ),
        ));
    } else if schedules.len() > 1 {
        for (i, s) in schedules.iter().enumerate() {
            let id = s.get("id").and_then(Value::as_str).unwrap_or("default");
            if name.len() + 1 + id.len() > budget {
                why.push(corral_api::FieldError::new(
                    format!("spec.schedules[{i}].id"),
                    format!(
                        "with several schedules, runs are named JOB-ID-TIME: the job's name and this id \
                         together must be at most {} characters (have {})",
                        budget - 1,
                        name.len() + id.len()
                    ),
                ));
            }
        }
    }
    if why.is_empty() { Ok(()) } else { Err(ApiError::invalid(&ctx.info, name, why)) }
}

/// The fields of the task template at `at` (shown to users as `shown`) that the
/// built-in `framework` or the server sets, and that a template must leave out.
fn left_to_the_scheduler(
    object: &Value,
    at: &str,
    shown: &str,
    framework: &str,
    role_instead: &str,
    kill_instead: &str,
) -> Vec<corral_api::FieldError> {
    let mut why = Vec::new();
    for (field, whose) in [
        ("nodeName", format!("the {framework} framework places each task on a node from an offer")),
        ("kill", format!("the {framework} framework kills its tasks; {kill_instead}")),
        ("framework", format!("the {framework} framework stamps it")),
        ("offer", "the server stamps it when an offer is accepted".to_string()),
        ("role", format!("set {role_instead} instead")),
    ] {
        if object.pointer(&format!("{at}/{field}")).is_some_and(|v| !v.is_null() && *v != false) {
            why.push(corral_api::FieldError::new(format!("{shown}.{field}"), format!("leave it out: {whose}")));
        }
    }
    why
}

/// Whether `user` (`name`, `uid` or `uid:gid`) names root.
fn is_root(user: &str) -> bool {
    let u = user.split(':').next().unwrap_or_default().trim();
    u == "root" || u.parse::<u32>() == Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_is_recognised_by_name_and_number() {
        for root in ["0", "0:0", "root", "root:wheel", " 0:5", "00"] {
            assert!(super::is_root(root), "{root}");
        }
        for other in ["65534", "1000:0", "nobody", "rooty"] {
            assert!(!super::is_root(other), "{other}");
        }
    }
}
