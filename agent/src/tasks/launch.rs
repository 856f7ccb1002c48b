//! Launching a task: its sandbox, artifacts, image, command, service-account
//! credential, environment, user and mounts, then the runtime's launch.

use std::sync::Arc;
use std::time::Duration;

use corral_api::kinds::task::{Task, TaskPhase, TaskStatus};
use corral_runtime::{Action, ObjectRef};

use super::TaskContext;
use super::checks::start_health_checks;
use super::ports::{assign_ports, record_ports};
use super::report::{ensure_finalizer, fail, running_status, write_status};
use super::state::{End, Ports};
use super::supervise::cleanup;
use crate::error::{Error, Result};
use crate::layout::TaskDir;
use crate::runtime::{LaunchSpec, Mount};

/// Launches a task not launched before: ports, preparation, the runtime's launch, then
/// `RUNNING` (or `FAILED`) and the finalizer.
pub(super) async fn launch(ctx: &Arc<TaskContext>, mut task: Task, uid: String) -> Result<Action> {
    let t0 = std::time::Instant::now();
    let mut st = task.status.clone().unwrap_or_default();
    st.host_ip = Some(ctx.address.clone());
    // Host ports come with the task (see `ports`); one it lacks, or one another task
    // holds, will not change on a retry: the task fails as a bad image does.
    let ports = match assign_ports(ctx, &task, &uid) {
        Ok(ports) => ports,
        Err((reason, e)) => return fail(ctx, &task, st, reason, &e.to_string()).await,
    };
    st.ports = ports.clone();
    // An image the node lacks is pulled from the control plane (or the registry the
    // reference names) before anything else is prepared.
    let pulling = match &task.spec.image {
        Some(reference) if !ctx.images.contains(reference).await => Some(reference.clone()),
        _ => None,
    };
    let staging = !task.spec.artifacts.is_empty() || pulling.is_some();
    if staging {
        // Fetching takes a while: say so first.
        task = ensure_finalizer(ctx, task).await?;
        st.phase = TaskPhase::Staging;
        task = write_status(ctx, &task, st.clone()).await?;
    }
    if let Some(reference) = pulling {
        let (pulled, latest) = pull_image(ctx, task, &st, &reference).await;
        task = latest;
        if let Err(e) = pulled {
            ctx.local.lock().remove(&uid);
            // Missing everywhere is what it was before registries: ImageNotFound. The
            // message names this agent's work dir, where an offline import must go.
            let (reason, message) = match &e {
                Error::ImageUnknown(_) => {
                    let work = ctx.layout.root().display();
                    let hint = format!(
                        "; nor is it in this node's image store ({work}/images): on a node without the registry,                          `corral image import --work-dir {work} FILE`"
                    );
                    ("ImageNotFound", format!("{e}{hint}"))
                }
                _ => ("ImagePullFailed", e.to_string()),
            };
            return fail(ctx, &task, st, reason, &message).await;
        }
        st.message = None;
    }
    let dir = TaskDir(ctx.layout.task(&uid));
    let spec = match prepare(ctx, &task, &uid, &dir, &ports).await {
        Ok(spec) => spec,
        Err((reason, e)) => {
            // Never launched: nothing to clean up but the ports it was given.
            ctx.local.lock().remove(&uid);
            return fail(ctx, &task, st, reason, &e.to_string()).await;
        }
    };
    if staging {
        // Staged tasks are slow to start anyway; the others go straight to RUNNING.
        st.phase = TaskPhase::Starting;
        task = write_status(ctx, &task, st.clone()).await?;
    }
    // The status write after the start may fail, or the agent die before it: the
    // ports must survive for the next reconcile to report them.
    record_ports(&ctx.layout, &uid, &ports);
    if let Some(l) = ctx.local.lock().get_mut(&uid) {
        l.key = Some(ObjectRef::of(&ctx.kind, &task));
    }
    // Nothing is written between accepting the task and starting it: the runtime's
    // durable checkpoint is what prevents a second launch, an object deleted
    // meanwhile is found and killed, and every write on this path (or competing with
    // runc for the CPU) would add to every start. RUNNING is the first word; the
    // finalizer follows it.
    let launched = ctx.runtime.launch(spec).await;
    match launched {
        Ok(started) => {
            ctx.metrics.launched(t0.elapsed());
            tracing::info!(uid, task = %task.metadata.name, pid = started.pid, "task running");
            if let Some(l) = ctx.local.lock().get_mut(&uid) {
                l.state.started(started.clone());
            }
            ctx.watch_exit(&uid);
            ctx.metrics.running.set(ctx.running_count() as i64);
            // Should this fail, the next reconcile finds the task running and says so.
            running_status(&mut st, &started, &ctx.address);
            let task = write_status(ctx, &task, st).await?;
            let task = ensure_finalizer(ctx, task).await?;
            if !task.spec.health_checks.is_empty() {
                start_health_checks(ctx, &task, &uid);
            }
            Ok(Action::requeue(Duration::from_secs(60)))
        }
        Err(e) => {
            // The checkpoint exists, so this task will never be launched again; a
            // failed launch is final.
            if let Some(l) = ctx.local.lock().get_mut(&uid) {
                l.state.ended(End::NotStarted(e.to_string()));
            }
            cleanup(ctx, &uid).await;
            fail(ctx, &task, st, "LaunchFailed", &e.to_string()).await
        }
    }
}

/// Pulls `reference` into the node's store while writing each step of the pull to
/// the task's status message (one write per step: a few per image). Returns the
/// outcome and the task as last written.
async fn pull_image(ctx: &TaskContext, task: Task, st: &TaskStatus, reference: &str) -> (Result<()>, Task) {
    let source = crate::image::pull::Source { control_plane: ctx.tasks.client().clone() };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let pull = async move {
        let outcome = ctx.images.pull(&source, reference, &tx).await;
        // Dropping the sender ends the reporter below.
        drop(tx);
        outcome
    };
    let report = async {
        let mut latest = task;
        let mut st = st.clone();
        while let Some(message) = rx.recv().await {
            st.message = Some(message);
            match write_status(ctx, &latest, st.clone()).await {
                Ok(t) => latest = t,
                // Progress is a courtesy; the pull goes on without it.
                Err(e) => tracing::debug!(error = %e, "cannot report pull progress"),
            }
        }
        latest
    };
    let (outcome, latest) = tokio::join!(pull, report);
    match &outcome {
        Ok(Some(image)) => tracing::info!(task = %latest.metadata.name, reference, id = %image.id, "image pulled"),
        Ok(None) => tracing::debug!(task = %latest.metadata.name, reference, "image pulled by another task"),
        Err(e) => tracing::warn!(task = %latest.metadata.name, reference, error = %e, "image pull failed"),
    }
    (outcome.map(|_| ()), latest)
}

type Prepared = std::result::Result<LaunchSpec, (&'static str, Error)>;

/// Whether the task's namespace is labelled privileged (the server admits tasks by
/// the same label; the agent checks again at launch, as the label may have changed).
async fn privileged(ctx: &TaskContext, task: &Task) -> std::result::Result<bool, (&'static str, Error)> {
    let ns = task.metadata.namespace.as_deref().unwrap_or("default");
    let namespaces: corral_client::Api<corral_api::kinds::Namespace> =
        corral_client::Api::all(ctx.tasks.client().clone());
    let namespace = namespaces
        .get(ns)
        .await
        .map_err(|e| ("NamespaceUnknown", Error::Invalid(format!("cannot read namespace {ns:?}: {e}"))))?;
    use corral_api::kinds::namespace::{TASK_SECURITY_LABEL, TASK_SECURITY_PRIVILEGED};
    Ok(namespace.metadata.labels.get(TASK_SECURITY_LABEL).map(String::as_str) == Some(TASK_SECURITY_PRIVILEGED))
}

/// Everything before the launch: sandbox, artifacts, image, command, credential, env,
/// user, mounts.
async fn prepare(ctx: &TaskContext, task: &Task, uid: &str, dir: &TaskDir, ports: &Ports) -> Prepared {
    let sandbox = dir.sandbox();
    std::fs::create_dir_all(&sandbox)
        .map_err(|e| ("SandboxFailed", Error::io("cannot create sandbox", &sandbox, e)))?;
    if !task.spec.artifacts.is_empty() {
        crate::artifacts::fetch(&task.spec.artifacts, &sandbox, &ctx.artifacts)
            .await
            .map_err(|e| ("ArtifactFetchFailed", e))?;
    }
    let spec = &task.spec;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut image_id = None;
    let (rootfs, argv, cwd, user) = match &spec.image {
        Some(reference) => {
            let image = ctx.images.resolve(reference).await.map_err(|e| ("ImageNotFound", e))?;
            image_id = Some(image.id.clone());
            for kv in &image.env {
                if let Some((k, v)) = kv.split_once('=') {
                    env.push((k.into(), v.into()));
                }
            }
            let argv: Vec<String> = if !spec.command.is_empty() {
                spec.command.iter().chain(&spec.args).cloned().collect()
            } else if !spec.args.is_empty() {
                image.entrypoint.iter().chain(&spec.args).cloned().collect()
            } else {
                image.entrypoint.iter().chain(&image.cmd).cloned().collect()
            };
            let cwd = spec.working_dir.clone().or(image.working_dir.clone());
            let asked = match &spec.user {
                Some(u) => Some(crate::users::resolve_in_rootfs(u, &image.rootfs).map_err(|e| ("InvalidSpec", e))?),
                None => None,
            };
            let image_user = match &image.user {
                Some(u) => Some(crate::users::resolve_in_rootfs(u, &image.rootfs).map_err(|e| ("InvalidSpec", e))?),
                None => None,
            };
            let user = crate::users::effective(asked, image_user, privileged(ctx, task).await?)
                .map_err(|e| ("InvalidSpec", e))?;
            (Some(image.rootfs.clone()), argv, cwd, Some(user))
        }
        None => {
            let argv: Vec<String> = spec.command.iter().chain(&spec.args).cloned().collect();
            if !privileged(ctx, task).await? {
                return Err((
                    "InvalidSpec",
                    Error::Invalid(
                        "spec.image: a native task runs on the host; its namespace must be privileged".into(),
                    ),
                ));
            }
            let asked = match &spec.user {
                Some(u) => Some(crate::users::resolve_on_host(u).map_err(|e| ("InvalidSpec", e))?),
                None => None,
            };
            let user = crate::users::effective(asked, None, true).map_err(|e| ("InvalidSpec", e))?;
            (None, argv, spec.working_dir.clone(), Some(user))
        }
    };
    if argv.is_empty() {
        return Err((
            "InvalidSpec",
            Error::Invalid("spec.command: empty, and the image has no entrypoint or cmd to run".into()),
        ));
    }
    let in_container = rootfs.is_some();
    // After the checks that refuse a task outright, so that a token is asked for only
    // for a task about to start; before the environment, so that `$(CORRAL_SERVER)`
    // expands in commands as the other variables do.
    let credential = super::service_account::provide(ctx, task, uid, &sandbox, user, in_container)
        .await
        .map_err(|e| ("ServiceAccountTokenFailed", e))?;
    let sandbox_seen = if in_container { "/mnt/sandbox".to_string() } else { sandbox.display().to_string() };
    env.push(("HOST".into(), ctx.address.clone()));
    env.push(("CORRAL_SANDBOX".into(), sandbox_seen));
    env.push(("CORRAL_TASK_ID".into(), uid.to_string()));
    env.push(("CORRAL_TASK_NAME".into(), task.metadata.name.clone()));
    env.push(("CORRAL_TASK_NAMESPACE".into(), task.metadata.namespace.clone().unwrap_or_default()));
    env.push(("CORRAL_NODE_NAME".into(), ctx.node.clone()));
    if let Some(c) = &credential {
        env.extend(c.env.iter().cloned());
    }
    for (i, p) in spec.ports.iter().enumerate() {
        if let Some(port) = ports.get(&p.name) {
            env.push((format!("PORT{i}"), port.to_string()));
            env.push((format!("PORT_{}", p.name.to_uppercase().replace('-', "_")), port.to_string()));
        }
    }
    if let Some(first) = spec.ports.first().and_then(|p| ports.get(&p.name)) {
        env.push(("PORT".into(), first.to_string()));
    }
    for (k, v) in &spec.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    // As Kubernetes does: `$(PORT_HTTP)` in the command takes the variable's value, so
    // that ports assigned at placement reach programs that take them as arguments.
    let argv: Vec<String> = argv.iter().map(|a| expand(a, &env)).collect();
    if !in_container && !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()));
    }
    let mut mounts = Vec::new();
    let ns = task.metadata.namespace.as_deref().unwrap_or("default");
    for m in &spec.volume_mounts {
        // A name that could not name a directory is a bad spec, not a bad volume.
        ctx.layout.volume(ns, &m.volume).map_err(|e| ("InvalidSpec", e))?;
        let volume = ctx.volumes.for_task(ns, &m.volume).await.map_err(|e| ("VolumeFailed", e))?;
        if volume.spec.host_path.is_some() && !privileged(ctx, task).await? {
            return Err((
                "VolumeFailed",
                Error::Invalid(format!(
                    "volume {:?} is a host path: only tasks of a privileged namespace may mount one",
                    m.volume
                )),
            ));
        }
        let ready = ctx.volumes.ensure_for_task(&volume).await.map_err(|e| ("VolumeFailed", e))?;
        if volume.spec.host_path.is_none() {
            // An empty volume belongs to the first task to use it (tasks run as non-root).
            let (dir, user) = (ready.dir.clone(), user);
            crate::blocking::run("claiming a volume", move || crate::volumes::disk::claim(&dir, user))
                .await
                .map_err(|e| ("VolumeFailed", e))?;
        }
        mounts.push(Mount { source: ready.dir, destination: m.mount_path.clone(), read_only: m.read_only });
    }
    mounts.extend(credential.and_then(|c| c.mount));
    // Last, so that no failure above leaves the image held.
    if let (Some(id), Some(_)) = (&image_id, &rootfs) {
        ctx.images.acquire(id, uid).await.map_err(|e| ("ImageUnusable", e))?;
    }
    Ok(LaunchSpec {
        uid: uid.to_string(),
        name: format!("{}/{}", task.metadata.namespace.clone().unwrap_or_default(), task.metadata.name),
        rootfs,
        argv,
        env,
        cwd,
        user,
        cpus: spec.resources.cpus,
        mem_mib: spec.resources.mem,
        mounts,
    })
}

/// Replaces `$(NAME)` by the value of `NAME` in `env`; `$$(` stands for a literal
/// `$(`, and unknown names are left as written.
fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$(") {
            out.push_str("$(");
            rest = t;
        } else if let Some((name, after)) = tail.strip_prefix("$(").and_then(|t| t.split_once(')'))
            && let Some((_, v)) = env.iter().rev().find(|(k, _)| k == name)
        {
            out.push_str(v);
            rest = after;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand_in_commands() {
        let env = vec![("PORT_HTTP".to_string(), "31080".to_string()), ("A".to_string(), "x".to_string())];
        assert_eq!(expand("-p=$(PORT_HTTP)", &env), "-p=31080");
        assert_eq!(expand("$(A)$(A) $$(A) $(NOPE) $5 $", &env), "xx $(A) $(NOPE) $5 $");
    }
}
