//! `corral scale`, `corral restart` and `corral rollout status|history|undo`: a
//! service's instances and template revisions.
//!
//! These commands write only the service's spec; the services controller does the
//! rest (launches, kills, deployments) and reports it in the status, which `rollout`
//! reads: `status.deployment` for progress, `status.history` for the revisions kept.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use corral_api::Resource;
use corral_api::kinds::service::{DeploymentPhase, Service, TemplateRevision};
use corral_api::kinds::task::TaskSpec;
use corral_client::{Api, Patch, WriteParams};
use serde_json::json;

use super::Ctx;
use super::args::{
    HistoryFormat, RestartArgs, RolloutCommand, RolloutHistoryArgs, RolloutStatusArgs, RolloutUndoArgs, ScaleArgs,
};
use super::follow::Ended;
use super::output::{Table, to_json, to_yaml};

/// Read-modify-write attempts of `undo` before a conflict is an error.
const UPDATE_ATTEMPTS: usize = 5;

/// The longest COMMAND cell of `rollout history`, in characters.
const COMMAND_WIDTH: usize = 50;

pub(crate) async fn run(ctx: &Ctx, cmd: RolloutCommand) -> anyhow::Result<u8> {
    match cmd {
        RolloutCommand::Status(a) => status(ctx, a).await,
        RolloutCommand::History(a) => history(ctx, a).await,
        RolloutCommand::Undo(a) => undo(ctx, a).await,
    }
}

/// The name in `service/NAME` (the kind may be any of the Service kind's names).
fn service_name(target: &str) -> anyhow::Result<&str> {
    let Some((kind, name)) = target.split_once('/') else {
        bail!("give the service as service/NAME, e.g. `service/{target}`");
    };
    if !Service::kind_info().matches_name(kind) {
        bail!("{target:?} is not a service: this command acts on services, given as service/NAME");
    }
    if name.is_empty() || name.contains('/') {
        bail!("{target:?}: give the service as service/NAME, e.g. `service/web`");
    }
    Ok(name)
}

/// The services of namespace `ns`.
fn services(ctx: &Ctx, ns: &str) -> Api<Service> {
    Api::namespaced(ctx.client.clone(), ns)
}

/// A client error about `service/NAME` as the user should read it.
fn explain(e: corral_client::Error, name: &str, ns: &str) -> anyhow::Error {
    if e.is_not_found() {
        anyhow!("service/{name} not found in namespace {ns:?}; list them with `corral get services -n {ns}`")
    } else {
        anyhow::Error::new(e).context(format!("service/{name}"))
    }
}

async fn get(api: &Api<Service>, name: &str, ns: &str) -> anyhow::Result<Service> {
    api.get(name).await.map_err(|e| explain(e, name, ns))
}

/// Merge-patches the spec of `service/NAME` with `spec`.
async fn patch_spec(api: &Api<Service>, name: &str, ns: &str, spec: serde_json::Value) -> anyhow::Result<()> {
    let patch = json!({ "spec": spec });
    api.patch(name, Patch::Merge(&patch), &WriteParams::default()).await.map_err(|e| explain(e, name, ns))?;
    Ok(())
}

/// `corral scale service/NAME N`: sets `spec.instances`.
pub(crate) async fn scale(ctx: &Ctx, args: ScaleArgs) -> anyhow::Result<u8> {
    let name = service_name(&args.target)?;
    let ns = args.ns.or_default();
    patch_spec(&services(ctx, ns), name, ns, json!({ "instances": args.instances })).await?;
    outln!("service/{name} scaled to {}", args.instances)?;
    Ok(0)
}

/// `corral restart service/NAME`: sets `spec.restartedAt` to now, which makes a new
/// revision of the same template. Microseconds, so that two restarts in one second
/// are two.
pub(crate) async fn restart(ctx: &Ctx, args: RestartArgs) -> anyhow::Result<u8> {
    let name = service_name(&args.target)?;
    let ns = args.ns.or_default();
    let now = corral_api::meta::now_micro_timestamp();
    patch_spec(&services(ctx, ns), name, ns, json!({ "restartedAt": now })).await?;
    outln!("service/{name} restarted")?;
    Ok(0)
}

/// Where a service's rollout is, as one line for people.
#[derive(Debug, PartialEq, Eq)]
struct Progress {
    line: String,
    /// The deployment of the latest template is complete.
    done: bool,
}

/// The progress `svc`'s status reports. Done when the controller has seen the
/// current spec (`observedGeneration`), and the deployment of the current revision
/// is `Complete`.
fn progress(svc: &Service) -> Progress {
    let name = &svc.metadata.name;
    let waiting = |line: String| Progress { line, done: false };
    let Some(st) = &svc.status else {
        return waiting(format!("Waiting for the services controller to pick up service/{name}..."));
    };
    let generation = svc.metadata.generation.unwrap_or(0);
    let observed = st.observed_generation.unwrap_or(0);
    if observed < generation {
        return waiting(format!(
            "Waiting for the services controller to observe generation {generation} of service/{name} \
             (it has seen {observed})..."
        ));
    }
    let Some(d) = &st.deployment else {
        return waiting(format!("Waiting for the first deployment of service/{name}..."));
    };
    if d.revision != st.revision {
        return waiting(format!("Waiting for the deployment of revision {} to start...", st.revision));
    }
    let detail = d
        .message
        .as_deref()
        .or(st.waiting.as_ref().map(|w| w.message.as_str()))
        .filter(|m| !m.is_empty())
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    match d.phase {
        DeploymentPhase::Complete => Progress {
            line: format!(
                "service/{name} successfully rolled out: revision {}, {} of {} updated",
                d.revision, d.updated, d.target
            ),
            done: true,
        },
        DeploymentPhase::InProgress => waiting(format!(
            "Waiting for deployment of revision {}: {} of {} updated, {} old remaining{detail}...",
            d.revision, d.updated, d.target, d.old
        )),
        DeploymentPhase::Superseded => {
            waiting(format!("Deployment of revision {} was superseded; waiting for the next one...", d.revision))
        }
    }
}

/// `corral rollout status`: prints progress lines as they change until the rollout
/// completes (0), the service is deleted (1) or the timeout passes (1).
async fn status(ctx: &Ctx, args: RolloutStatusArgs) -> anyhow::Result<u8> {
    let name = service_name(&args.target)?;
    let ns = args.ns.or_default();
    let api = services(ctx, ns);
    let svc = get(&api, name, ns).await?;
    let now = progress(&svc);
    outln!("{}", now.line)?;
    if now.done || !args.watch {
        return Ok(0);
    }
    let following = follow(&api, name, ns, svc, now.line);
    if args.timeout == 0 {
        return following.await;
    }
    match tokio::time::timeout(Duration::from_secs(args.timeout), following).await {
        Ok(result) => result,
        Err(_) => {
            eprintln!(
                "error: service/{name} did not finish rolling out within {}s (--timeout); the rollout goes on: \
                 `corral rollout status service/{name} -n {ns}` follows it again",
                args.timeout
            );
            Ok(1)
        }
    }
}

/// Watches `service/NAME` from `last`, printing each new progress line, until done.
async fn follow(api: &Api<Service>, name: &str, ns: &str, last: Service, mut shown: String) -> anyhow::Result<u8> {
    let from = last.metadata.resource_version.clone();
    let ended = super::follow::follow(api, name, from, |svc| {
        let now = progress(svc);
        if now.line != shown {
            outln!("{}", now.line)?;
            shown = now.line;
        }
        Ok(now.done.then_some(0))
    })
    .await
    .map_err(|e| match e.downcast::<corral_client::Error>() {
        Ok(e) => explain(e, name, ns),
        Err(e) => e,
    })?;
    match ended {
        Ended::Done(code) => Ok(code),
        Ended::Deleted => {
            eprintln!("error: service/{name} was deleted from namespace {ns:?} before it rolled out");
            Ok(1)
        }
    }
}

/// `command` and `args` as one line, words with spaces or quotes in single quotes.
fn command_line(t: &TaskSpec) -> String {
    let words: Vec<String> = t
        .command
        .iter()
        .chain(&t.args)
        .map(|w| {
            if w.is_empty() || w.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                format!("'{}'", w.replace('\'', r"'\''"))
            } else {
                w.clone()
            }
        })
        .collect();
    if words.is_empty() { "<image default>".to_string() } else { words.join(" ") }
}

/// `s` cut to `max` characters, `…` marking the cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}…", s.chars().take(max - 1).collect::<String>()) }
}

/// The `rollout history` table: one row per kept revision, oldest first.
fn history_table(history: &[TemplateRevision], current: u64) -> Table {
    let mut t = Table::new(["REVISION", "TIME", "IMAGE", "COMMAND"]);
    for r in history {
        let revision = if r.revision == current { format!("{} (current)", r.revision) } else { r.revision.to_string() };
        t.rows.push(vec![
            revision,
            r.time.clone().unwrap_or_else(|| "<unknown>".to_string()),
            r.template.image.clone().unwrap_or_else(|| "<none>".to_string()),
            truncate(&command_line(&r.template), COMMAND_WIDTH),
        ]);
    }
    t
}

/// `corral rollout history`: the revisions the service keeps.
async fn history(ctx: &Ctx, args: RolloutHistoryArgs) -> anyhow::Result<u8> {
    let name = service_name(&args.target)?;
    let ns = args.ns.or_default();
    let svc = get(&services(ctx, ns), name, ns).await?;
    let st = svc.status.unwrap_or_default();
    if st.history.is_empty() {
        eprintln!(
            "service/{name} has no revisions recorded yet: the services controller records each template it deploys"
        );
        if args.output == HistoryFormat::Table {
            return Ok(0);
        }
    }
    let text = match args.output {
        HistoryFormat::Table => history_table(&st.history, st.revision).render(),
        HistoryFormat::Yaml => to_yaml(&st.history)?,
        HistoryFormat::Json => to_json(&st.history)?,
    };
    out!("{text}")?;
    Ok(0)
}

/// The revision `undo` goes back to: `wanted`, else the latest before `current`.
fn undo_target<'h>(
    history: &'h [TemplateRevision],
    current: u64,
    wanted: Option<u64>,
    name: &str,
) -> anyhow::Result<&'h TemplateRevision> {
    let kept = || {
        if history.is_empty() {
            "none yet".to_string()
        } else {
            history.iter().map(|r| r.revision.to_string()).collect::<Vec<_>>().join(", ")
        }
    };
    match wanted {
        Some(n) => history.iter().find(|r| r.revision == n).ok_or_else(|| {
            anyhow!(
                "service/{name} keeps no revision {n}; the revisions kept are: {} (see `corral rollout history \
                 service/{name}`)",
                kept()
            )
        }),
        None => history.iter().filter(|r| r.revision < current).max_by_key(|r| r.revision).ok_or_else(|| {
            anyhow!(
                "service/{name} keeps no revision before its current one ({current}) to go back to; the revisions \
                 kept are: {}",
                kept()
            )
        }),
    }
}

/// `corral rollout undo`: the spec's template (and `restartedAt`) set back to an
/// earlier revision's, by read-modify-write at the read `resourceVersion` (retried
/// when someone else wrote meanwhile).
async fn undo(ctx: &Ctx, args: RolloutUndoArgs) -> anyhow::Result<u8> {
    let name = service_name(&args.target)?;
    let ns = args.ns.or_default();
    let api = services(ctx, ns);
    let mut attempt = 1;
    loop {
        let mut svc = get(&api, name, ns).await?;
        let st = svc.status.take().unwrap_or_default();
        let target = undo_target(&st.history, st.revision, args.to_revision, name)?;
        if svc.spec.template == target.template && svc.spec.restarted_at == target.restarted_at {
            outln!("service/{name} already has the template of revision {}; nothing to do", target.revision)?;
            return Ok(0);
        }
        svc.spec.template = target.template.clone();
        svc.spec.restarted_at = target.restarted_at.clone();
        match api.update(&svc).await {
            Ok(_) => {
                outln!("service/{name} rolled back to revision {}", target.revision)?;
                return Ok(0);
            }
            Err(e) if e.is_conflict() && attempt < UPDATE_ATTEMPTS => attempt += 1,
            Err(e) => return Err(explain(e, name, ns)).context("the template was not changed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use corral_api::kinds::service::{Deployment, ServiceSpec, ServiceStatus};

    use super::*;

    fn service(generation: i64, status: Option<ServiceStatus>) -> Service {
        let mut svc = Service::namespaced("default", "web", ServiceSpec::default());
        svc.metadata.generation = Some(generation);
        svc.status = status;
        svc
    }

    fn deployment(revision: u64, phase: DeploymentPhase) -> Deployment {
        Deployment { revision, phase, updated: 2, old: 1, target: 5, ..Deployment::default() }
    }

    #[test]
    fn progress_is_done_only_when_the_current_revision_completed() {
        assert!(!progress(&service(1, None)).done);
        let st = |observed, revision, d| ServiceStatus {
            observed_generation: Some(observed),
            revision,
            deployment: Some(d),
            ..ServiceStatus::default()
        };
        let p = progress(&service(2, Some(st(2, 3, deployment(3, DeploymentPhase::InProgress)))));
        assert_eq!(p.line, "Waiting for deployment of revision 3: 2 of 5 updated, 1 old remaining...");
        assert!(!p.done);
        assert!(progress(&service(2, Some(st(2, 3, deployment(3, DeploymentPhase::Complete))))).done);
        assert!(!progress(&service(3, Some(st(2, 3, deployment(3, DeploymentPhase::Complete))))).done, "stale");
        assert!(!progress(&service(2, Some(st(2, 4, deployment(3, DeploymentPhase::Complete))))).done, "older");
    }

    #[test]
    fn targets_are_service_slash_name() {
        assert_eq!(service_name("service/web").ok(), Some("web"));
        assert_eq!(service_name("svc/web").ok(), Some("web"));
        assert!(service_name("web").is_err());
        assert!(service_name("task/web").is_err());
        assert!(service_name("service/").is_err());
    }

    #[test]
    fn undo_goes_to_the_revision_before_the_current_one() {
        let rev = |revision| TemplateRevision { revision, ..TemplateRevision::default() };
        let history = [rev(1), rev(2), rev(4)];
        assert_eq!(undo_target(&history, 4, None, "web").map(|r| r.revision).ok(), Some(2));
        assert_eq!(undo_target(&history, 4, Some(1), "web").map(|r| r.revision).ok(), Some(1));
        let e = undo_target(&history, 4, Some(3), "web").expect_err("not kept").to_string();
        assert!(e.contains("kept are: 1, 2, 4"), "{e}");
        assert!(undo_target(&history[..1], 1, None, "web").is_err());
    }

    #[test]
    fn commands_print_as_shell_words() {
        let t = TaskSpec { command: vec!["/bin/sh".into(), "-c".into(), "echo 'hi' $X".into()], ..TaskSpec::default() };
        assert_eq!(command_line(&t), r"/bin/sh -c 'echo '\''hi'\'' $X'");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
