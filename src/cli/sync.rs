//! `corral sync`: GitOps from the command line.
//!
//! `corral sync DIR` syncs a directory itself, through the same engine as the sync
//! controller (validated whole, written in one transaction, pruned by inventory), and
//! records it as a Sync with a `pushed` source, so `corral sync status` and
//! `corral get syncs` show it beside the controller's. `--watch` syncs again on every
//! saved change. `status`, `now`, `diff` and `token` work on any Sync.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use corral_api::kinds::sync::{PushedSource, SyncObject, SyncSource, SyncSpec, Webhook};
use corral_api::transaction::{Outcome, Transaction};
use corral_client::credentials::{BearerToken, sha256_hex};
use corral_client::{Api, Patch, TransactParams, WriteParams};
use corral_controllers::sync::decide::drifted_fields;
use corral_controllers::sync::engine::{self, describe, short};
use corral_controllers::sync::source;
use serde_json::{Value, json};

use super::args::{SyncArgs, SyncCommand, SyncNameArgs, SyncNowArgs};
use super::output::{Table, human_duration, now_unix, parse_rfc3339};
use super::{Ctx, name_of};

/// How long a burst of saves is gathered before one sync.
const SETTLE: Duration = Duration::from_millis(100);

pub(crate) async fn run(ctx: &Ctx, args: SyncArgs) -> anyhow::Result<u8> {
    match args.command {
        Some(SyncCommand::Status(a)) => status(ctx, a).await,
        Some(SyncCommand::Now(a)) => now(ctx, a).await,
        Some(SyncCommand::Diff(a)) => diff(ctx, a).await,
        Some(SyncCommand::Token(a)) => token(ctx, a).await,
        None => {
            let Some(dir) = args.dir.clone() else {
                bail!("name a directory to sync (`corral sync DIR`) or a subcommand (`corral sync status`)");
            };
            push(ctx, &args, &dir).await
        }
    }
}

fn api(ctx: &Ctx, ns: &str) -> Api<SyncObject> {
    Api::namespaced(ctx.client.clone(), ns)
}

/// A Sync's name made of a directory's: lower case, `-` for anything else.
fn name_for(dir: &Path) -> String {
    let base = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "root".into());
    let mut name: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    name = name.trim_matches('-').to_string();
    if name.is_empty() { "root".into() } else { name }
}

/// `corral sync DIR [--prune] [--watch]`.
async fn push(ctx: &Ctx, args: &SyncArgs, dir: &Path) -> anyhow::Result<u8> {
    let dir = std::fs::canonicalize(dir).with_context(|| format!("{}", dir.display()))?;
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let ns = args.ns.or_default().to_string();
    let name = args.name.clone().unwrap_or_else(|| name_for(&dir));
    if !args.watch {
        return push_once(ctx, &ns, &name, &dir, args.prune).await;
    }
    // Watching starts before the first sync: a change saved while it runs is not lost.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if let Ok(e) = e {
            // Reads (access events) change nothing.
            if !matches!(e.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    })
    .context("cannot watch the directory for changes")?;
    notify::Watcher::watch(&mut watcher, &dir, notify::RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    let mut code = push_once(ctx, &ns, &name, &dir, args.prune).await?;
    eprintln!("watching {} for changes (Ctrl-C to stop)", dir.display());
    loop {
        tokio::select! {
            got = rx.recv() => {
                if got.is_none() {
                    return Ok(code);
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(code),
        }
        // Gather the rest of a burst (an editor writes, renames, touches).
        tokio::time::sleep(SETTLE).await;
        while rx.try_recv().is_ok() {}
        code = match push_once(ctx, &ns, &name, &dir, args.prune).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        };
    }
}

/// One sync of `dir` as the Sync `ns/name`; prints what it did.
async fn push_once(ctx: &Ctx, ns: &str, name: &str, dir: &Path, prune: bool) -> anyhow::Result<u8> {
    let api = api(ctx, ns);
    let host = std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty());
    let pushed = PushedSource { host, path: dir.display().to_string() };
    let mut sync = match api.get_opt(name).await? {
        Some(s) => {
            if s.spec.source.pushed.is_none() {
                bail!(
                    "sync/{name} in namespace {ns:?} syncs {}; name another with --name",
                    if s.spec.source.git.is_some() { "a git repository" } else { "a directory of the control plane" }
                );
            }
            s
        }
        None => {
            let spec = SyncSpec {
                source: SyncSource { pushed: Some(pushed.clone()), ..Default::default() },
                prune,
                ..Default::default()
            };
            api.create(&SyncObject::namespaced(ns, name, spec))
                .await
                .with_context(|| format!("creating sync/{name}"))?
        }
    };
    if sync.spec.prune != prune || sync.spec.source.pushed.as_ref() != Some(&pushed) {
        sync.spec.prune = prune;
        sync.spec.source.pushed = Some(pushed);
        sync = api.update(&sync).await.with_context(|| format!("updating sync/{name}"))?;
    }
    let fetched = source::directory(dir).await?;
    let now = chrono::Utc::now();
    let outcome = engine::sync_revision(&ctx.client, &ctx.client, &sync, &fetched.revision, dir, now).await?;
    let mut status = outcome.status.clone();
    let now_s = engine::rfc3339(now);
    if outcome.applied {
        engine::set_condition(
            &mut status.conditions,
            "Ready",
            true,
            "Applied",
            &format!("revision {} applied", short(&fetched.revision)),
            &now_s,
        );
        engine::set_condition(&mut status.conditions, "Stalled", false, "Applied", "", &now_s);
    }
    if sync.status.as_ref() != Some(&status) {
        let mut updated = sync.clone();
        updated.status = Some(status.clone());
        if let Err(e) = api.update_status(&updated).await {
            eprintln!("warning: the status of sync/{name} could not be written: {e}");
        }
    }
    if !outcome.applied {
        eprintln!("sync/{name}: {} of {} not applied; nothing was changed:", short(&fetched.revision), dir.display());
        for e in &status.errors {
            eprintln!("  {}", describe(e));
        }
        return Ok(1);
    }
    let c = outcome.counts;
    outln!(
        "sync/{name}: {} applied: {} objects ({} created, {} configured, {} unchanged, {} pruned), {} written",
        short(&fetched.revision),
        status.inventory.len(),
        c.created,
        c.configured,
        c.unchanged,
        c.deleted,
        outcome.writes
    )?;
    Ok(0)
}

/// `corral sync status [NAME]`.
async fn status(ctx: &Ctx, a: SyncNameArgs) -> anyhow::Result<u8> {
    let ns = a.ns.or_default();
    let api = api(ctx, ns);
    if let Some(name) = &a.name {
        let name = name_of::<SyncObject>(name, "sync")?;
        let s = api.get_opt(name).await?.ok_or_else(|| anyhow!("sync/{name} not found in namespace {ns:?}"))?;
        print_one(&s)?;
        return Ok(0);
    }
    let list = api.list(&Default::default()).await?;
    let mut t = Table::new(["NAME", "READY", "REVISION", "OBJECTS", "DRIFT", "LAST SYNC", "SOURCE", "MESSAGE"]);
    let now = now_unix();
    for s in &list.items {
        let st = s.status.clone().unwrap_or_default();
        let ready = st.conditions.first();
        t.rows.push(vec![
            s.metadata.name.clone(),
            ready.map_or("Unknown".into(), |c| c.status.clone()),
            st.last_applied_revision.as_deref().map_or("-".into(), |r| short(r).to_string()),
            st.inventory.len().to_string(),
            st.drift.len().to_string(),
            st.last_sync_time.as_deref().and_then(parse_rfc3339).map_or("-".into(), |t| human_duration(now - t)),
            source_text(&s.spec.source),
            ready.and_then(|c| c.message.clone()).unwrap_or_default(),
        ]);
    }
    out!("{}", t.render())?;
    Ok(0)
}

fn source_text(s: &SyncSource) -> String {
    if let Some(g) = &s.git {
        let r = g.branch.as_deref().or(g.tag.as_deref()).or(g.commit.as_deref()).unwrap_or("HEAD");
        return format!("{}@{r}", g.url);
    }
    if let Some(d) = &s.directory {
        return d.clone();
    }
    s.pushed.as_ref().map_or("-".into(), |p| match &p.host {
        Some(h) => format!("{h}:{}", p.path),
        None => p.path.clone(),
    })
}

fn print_one(s: &SyncObject) -> anyhow::Result<()> {
    let st = s.status.clone().unwrap_or_default();
    outln!("Name:          {}/{}", s.metadata.namespace.as_deref().unwrap_or(""), s.metadata.name)?;
    outln!(
        "Source:        {}{}",
        source_text(&s.spec.source),
        s.spec.path.as_deref().map(|p| format!(" (path {p})")).unwrap_or_default()
    )?;
    outln!("Applied:       {}", st.last_applied_revision.as_deref().unwrap_or("-"))?;
    outln!("Attempted:     {}", st.last_attempted_revision.as_deref().unwrap_or("-"))?;
    outln!("Last sync:     {}", st.last_sync_time.as_deref().unwrap_or("-"))?;
    outln!(
        "Objects:       {} (prune {}, self-heal {}, suspend {})",
        st.inventory.len(),
        s.spec.prune,
        s.spec.self_heal,
        s.spec.suspend
    )?;
    outln!("Conditions:")?;
    for c in &st.conditions {
        outln!(
            "  {:<12} {:<6} {:<20} {}",
            c.type_,
            c.status,
            c.reason.as_deref().unwrap_or(""),
            c.message.as_deref().unwrap_or("")
        )?;
    }
    if !st.errors.is_empty() {
        outln!("Errors:")?;
        for e in &st.errors {
            outln!("  {}", describe(e))?;
        }
    }
    if !st.drift.is_empty() {
        outln!("Drift:")?;
        for d in &st.drift {
            let ns = d.object.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default();
            outln!("  {}/{ns}{}: {}", d.object.kind, d.object.name, d.fields.join(", "))?;
        }
    }
    if !st.health.is_empty() {
        outln!("Health:")?;
        for h in &st.health {
            outln!("  {}/{}: {} {}", h.object.kind, h.object.name, h.health, h.message.as_deref().unwrap_or(""))?;
        }
    }
    Ok(())
}

/// `corral sync now NAME [--wait]`.
async fn now(ctx: &Ctx, a: SyncNowArgs) -> anyhow::Result<u8> {
    let ns = a.ns.or_default();
    let name = name_of::<SyncObject>(&a.name, "sync")?;
    let requested = ctx.client.trigger_sync(ns, name).await.map_err(|e| {
        if e.is_not_found() { anyhow!("sync/{name} not found in namespace {ns:?}") } else { anyhow::Error::new(e) }
    })?;
    outln!("sync/{name}: sync requested at {requested}")?;
    if !a.wait {
        return Ok(0);
    }
    let api = api(ctx, ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout.max(1));
    loop {
        let s = api.get(name).await?;
        let st = s.status.clone().unwrap_or_default();
        if st.last_handled_request.as_deref() == Some(requested.as_str()) {
            let ready = st.conditions.first();
            outln!(
                "sync/{name}: {} {}",
                ready.and_then(|c| c.reason.clone()).unwrap_or_default(),
                ready.and_then(|c| c.message.clone()).unwrap_or_default()
            )?;
            for e in &st.errors {
                outln!("  {}", describe(e))?;
            }
            let applied = st.last_applied_revision.is_some() && st.last_applied_revision == st.last_attempted_revision;
            return Ok(u8::from(!applied || !st.errors.is_empty()));
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!("sync/{name}: not synced within {} s", a.timeout);
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `corral sync diff NAME`: the next sync's changes, computed by a dry run of its
/// transaction.
async fn diff(ctx: &Ctx, a: SyncNameArgs) -> anyhow::Result<u8> {
    let ns = a.ns.or_default();
    let name = a.name.as_deref().ok_or_else(|| anyhow!("name the Sync: corral sync diff NAME"))?;
    let name = name_of::<SyncObject>(name, "sync")?;
    let sync = api(ctx, ns).get_opt(name).await?.ok_or_else(|| anyhow!("sync/{name} not found in namespace {ns:?}"))?;
    let scratch = tempfile_dir()?;
    let root: PathBuf = if let Some(g) = &sync.spec.source.git {
        source::fetch_git(&scratch, g, None).await?.root
    } else if let Some(d) = &sync.spec.source.directory {
        PathBuf::from(d)
    } else if let Some(p) = &sync.spec.source.pushed {
        PathBuf::from(&p.path)
    } else {
        bail!("sync/{name} names no source");
    };
    let prepared = match engine::prepare(&ctx.client, &sync, &root, true).await? {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}", describe(e));
            }
            let _ = std::fs::remove_dir_all(&scratch);
            return Ok(2);
        }
    };
    let _ = std::fs::remove_dir_all(&scratch);
    let params = TransactParams {
        dry_run: true,
        field_manager: Some(corral_api::kinds::sync::field_manager(ns, name)),
        force: true,
    };
    let writer = ctx.client.impersonating(&engine::applies_as(&sync), &[]);
    let tx = Transaction { operations: prepared.plan.operations.clone() };
    let result = if tx.operations.is_empty() { Default::default() } else { writer.transact(&tx, &params).await? };
    let mut differs = false;
    for (i, r) in result.results.iter().enumerate() {
        let Some(source) = prepared.plan.sources.get(i) else { continue };
        let entry = match source {
            Some(d) => &prepared.desired[*d].entry,
            None => match tx.operations[i].target.as_ref() {
                Some(t) => {
                    if r.outcome == Outcome::Deleted {
                        differs = true;
                        outln!("- {}/{} (pruned)", t.kind, qualified(t.namespace.as_deref(), &t.name))?;
                    }
                    continue;
                }
                None => continue,
            },
        };
        let id = format!("{}/{}", entry.kind, qualified(entry.namespace.as_deref(), &entry.name));
        match r.outcome {
            Outcome::Created => {
                differs = true;
                outln!("+ {id} (created)")?;
            }
            Outcome::Configured => {
                differs = true;
                let before = prepared.live.get(entry).cloned().unwrap_or(Value::Null);
                let after = r.object.clone().unwrap_or(Value::Null);
                let fields = changed_fields(&before, &after);
                outln!("~ {id}: {}", fields.join(", "))?;
            }
            _ => {}
        }
    }
    Ok(u8::from(differs))
}

fn qualified(ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(n) => format!("{n}/{name}"),
        None => name.to_string(),
    }
}

/// Fields of `after` that differ from `before` (either way), without what every
/// write changes.
fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in ["resourceVersion", "generation", "uid", "creationTimestamp", "managedFields", "annotations"] {
                m.remove(f);
            }
        }
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        v
    };
    let (b, a) = (strip(before), strip(after));
    let mut fields = drifted_fields(&a, &b);
    for f in drifted_fields(&b, &a) {
        if !fields.contains(&f) {
            fields.push(f);
        }
    }
    fields
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("corral-sync-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `corral sync token NAME`: a new webhook token.
async fn token(ctx: &Ctx, a: SyncNameArgs) -> anyhow::Result<u8> {
    let ns = a.ns.or_default();
    let name = a.name.as_deref().ok_or_else(|| anyhow!("name the Sync: corral sync token NAME"))?;
    let name = name_of::<SyncObject>(name, "sync")?;
    let token = BearerToken::generate()?.expose();
    let webhook = Webhook { token_sha256: sha256_hex(&token) };
    api(ctx, ns)
        .patch(name, Patch::Merge(&json!({"spec": {"webhook": webhook}})), &WriteParams::default())
        .await
        .map_err(|e| {
            if e.is_not_found() { anyhow!("sync/{name} not found in namespace {ns:?}") } else { anyhow::Error::new(e) }
        })?;
    outln!("{token}")?;
    eprintln!(
        "a push notification syncs sync/{name} at once with:\n  curl -X POST -H 'Authorization: Bearer {token}' {}/apis/corral.dev/v1/namespaces/{ns}/syncs/{name}/trigger\n(the token is shown once; only its hash is stored)",
        ctx.client.server()
    );
    Ok(0)
}
