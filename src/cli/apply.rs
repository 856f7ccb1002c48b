//! `corral apply`: validate everything against the server first, then write.
//!
//! Validation is a server-side dry run of each document, so it checks exactly the
//! schema the server serves. Only when every document passes is anything written;
//! a half-applied directory is harder to reason about than an error.

use std::collections::BTreeSet;

use corral_api::{DynamicObject, KindInfo, Registry};
use serde_json::Value;

use super::args::{ApplyArgs, NamespaceArgs};
use super::manifest::{self, Document, Problem};
use super::{Ctx, kind_word};
use corral_client::{CLI_FIELD_MANAGER, Error as ClientError, Patch, WriteParams};

/// A document whose kind is served and whose namespace is settled.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    pub(crate) doc: Document,
    pub(crate) kind: KindInfo,
    pub(crate) name: String,
    pub(crate) namespace: Option<String>,
    /// The manifest to send, namespace filled in.
    pub(crate) body: Value,
}

impl Prepared {
    /// `kind/name`.
    pub(crate) fn short(&self) -> String {
        format!("{}/{}", kind_word(&self.kind), self.name)
    }
}

/// A document checked by a dry run: what is there now and what applying would leave.
#[derive(Clone, Debug)]
pub(crate) struct Planned {
    pub(crate) prepared: Prepared,
    pub(crate) live: Option<DynamicObject>,
    pub(crate) would_be: DynamicObject,
}

/// Reads the manifests and resolves every document's kind and namespace.
/// Problems found on the way are collected, not fatal.
pub(crate) async fn prepare(
    ctx: &Ctx,
    files: &[std::path::PathBuf],
    ns: &NamespaceArgs,
) -> anyhow::Result<(Vec<Prepared>, Vec<Problem>)> {
    let (docs, mut problems) = manifest::read_paths(files);
    if !docs.is_empty() {
        // Problems found locally are worth showing even when the server is not there.
        if let Err(e) = ctx.kinds().await {
            problems.sort_by_key(|p| p.order);
            for p in &problems {
                eprintln!("error: {p}");
            }
            return Err(e);
        }
    }
    let mut out = Vec::new();
    for doc in docs {
        match prepare_one(ctx, doc, ns).await? {
            Ok(p) => out.push(p),
            Err(p) => problems.extend(p),
        }
    }
    if out.is_empty() && problems.is_empty() {
        anyhow::bail!("no objects found in {}; a manifest needs apiVersion, kind and metadata.name", shown(files));
    }
    Ok((out, problems))
}

fn shown(files: &[std::path::PathBuf]) -> String {
    files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
}

async fn prepare_one(ctx: &Ctx, doc: Document, ns: &NamespaceArgs) -> anyhow::Result<Result<Prepared, Vec<Problem>>> {
    let mut problems = Vec::new();
    let (Some(api_version), Some(kind)) = (doc.api_version(), doc.kind()) else {
        for f in ["apiVersion", "kind"] {
            if doc.value.get(f).and_then(Value::as_str).is_none() {
                problems.push(doc.problem(Some(f), "required field is missing (or not a string)"));
            }
        }
        return Ok(Err(problems));
    };
    let Some(info) = ctx.by_kind(api_version, kind).await? else {
        let kinds = ctx.kinds().await?;
        let close = kinds.iter().find(|k| k.kind.eq_ignore_ascii_case(kind)).map(|k| &**k);
        let hint = match close.or_else(|| super::closest_kind(kinds, kind)) {
            Some(k) => format!("; did you mean apiVersion {} and kind {}?", k.api_version(), k.kind),
            None => "; run `corral api-resources` to list the kinds the server serves".to_string(),
        };
        problems
            .push(doc.problem(Some("kind"), format!("the server does not serve kind {kind} in {api_version}{hint}")));
        return Ok(Err(problems));
    };
    let Some(name) = doc.name().filter(|n| !n.is_empty()).map(str::to_string) else {
        problems.push(doc.problem(Some("metadata.name"), "required field is missing"));
        return Ok(Err(problems));
    };
    let mut body = doc.value.clone();
    let namespace = if info.namespaced {
        let ns = match (doc.namespace(), &ns.namespace) {
            (Some(written), Some(flag)) if written != flag => {
                problems.push(doc.problem(
                    Some("metadata.namespace"),
                    format!("the manifest says {written:?} but -n says {flag:?}; drop one of them"),
                ));
                return Ok(Err(problems));
            }
            (Some(written), _) => written.to_string(),
            (None, _) => ns.or_default().to_string(),
        };
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        Some(ns)
    } else {
        // Left as written: the server explains that a cluster-scoped kind takes none.
        doc.namespace().map(str::to_string)
    };
    Ok(Ok(Prepared { doc, kind: info, name, namespace, body }))
}

/// Dry-runs every document. Returns the plans, or every problem the server found.
/// `force` takes over fields other managers applied (`--force-conflicts`).
pub(crate) async fn plan(
    ctx: &Ctx,
    prepared: Vec<Prepared>,
    force: bool,
) -> anyhow::Result<(Vec<Planned>, Vec<Problem>)> {
    // Namespaces the same run creates: their objects cannot be dry-run against the
    // server yet, so they are validated locally against the served schema instead.
    let new_namespaces: BTreeSet<String> =
        prepared.iter().filter(|p| is_namespace(&p.kind)).map(|p| p.name.clone()).collect();
    let mut local: Option<Registry> = None;
    let mut plans = Vec::new();
    let mut problems = Vec::new();
    for p in prepared {
        let live = match ctx.client.get(&p.kind, p.namespace.as_deref(), &p.name).await {
            Ok(o) => Some(o),
            Err(e) if e.is_not_found() => None,
            // E.g. a name the server refuses in a path: a problem of this document.
            Err(e @ ClientError::Api(_)) => {
                problems.extend(server_problems(&p.doc, &e)?);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let params = WriteParams { dry_run: true, field_manager: Some(CLI_FIELD_MANAGER.into()), force };
        match ctx.client.patch(&p.kind, p.namespace.as_deref(), &p.name, Patch::Apply(&p.body), &params).await {
            Ok(w) => plans.push(Planned { prepared: p, live, would_be: w.object }),
            Err(e)
                if live.is_none()
                    && e.is_not_found()
                    && p.namespace.as_ref().is_some_and(|ns| new_namespaces.contains(ns)) =>
            {
                let reg = match &mut local {
                    Some(r) => r,
                    None => local.insert(local_registry(ctx).await?),
                };
                match local_check(reg, &p) {
                    Ok(would_be) => plans.push(Planned { prepared: p, live: None, would_be }),
                    Err(mut ps) => problems.append(&mut ps),
                }
            }
            Err(e) => problems.extend(server_problems(&p.doc, &e)?),
        }
    }
    Ok((plans, problems))
}

pub(crate) fn is_namespace(kind: &KindInfo) -> bool {
    kind.group == corral_api::GROUP && kind.kind == "Namespace"
}

async fn local_registry(ctx: &Ctx) -> anyhow::Result<Registry> {
    let reg = Registry::default();
    for k in ctx.kinds().await? {
        reg.register((**k).clone())?;
    }
    Ok(reg)
}

fn local_check(reg: &Registry, p: &Prepared) -> Result<DynamicObject, Vec<Problem>> {
    let mut object = p.body.clone();
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    if let Err(errors) = reg.validate(&p.kind, &object) {
        return Err(errors.iter().map(|e| p.doc.problem(Some(&e.field), e.message.clone())).collect());
    }
    serde_json::from_value(object).map_err(|e| vec![p.doc.problem(None, format!("cannot be read as an object: {e}"))])
}

/// Turns a server error about one document into problems naming the document.
/// Errors not about the document (the server is unreachable) stay errors.
fn server_problems(doc: &Document, e: &ClientError) -> anyhow::Result<Vec<Problem>> {
    let ClientError::Api(status) = e else {
        anyhow::bail!("{}: {e}", doc.place());
    };
    if status.causes().is_empty() {
        return Ok(vec![doc.problem(None, status.message.clone())]);
    }
    Ok(status.causes().iter().map(|c| doc.problem(Some(&c.field), c.message.clone())).collect())
}

/// How many documents (or files) the problems are about.
pub(crate) fn documents_with_problems(problems: &[Problem]) -> usize {
    problems.iter().map(|p| p.order).collect::<BTreeSet<_>>().len()
}

/// Prints every problem, in file order, and a summary of what to do. `total` is the
/// number of documents read.
pub(crate) fn print_problems(mut problems: Vec<Problem>, total: usize, consequence: &str) {
    problems.sort_by_key(|p| p.order);
    for p in &problems {
        eprintln!("error: {p}");
    }
    let n = documents_with_problems(&problems);
    let total = total.max(n);
    let noun = if total == 1 { "document" } else { "documents" };
    let verb = if n == 1 { "is" } else { "are" };
    eprintln!(
        "error: {n} of {total} {noun} {verb} invalid; {consequence}. Fix what is listed above and run the command again"
    );
}

pub(crate) async fn run(ctx: &Ctx, args: ApplyArgs) -> anyhow::Result<u8> {
    let (prepared, mut problems) = prepare(ctx, &args.files, &args.ns).await?;
    let total = prepared.len() + documents_with_problems(&problems);
    let (mut plans, server) = plan(ctx, prepared, args.force_conflicts).await?;
    problems.extend(server);
    if !problems.is_empty() {
        print_problems(problems, total, "nothing was applied");
        return Ok(1);
    }
    // Namespaces first, so that objects in new namespaces have somewhere to go.
    plans.sort_by_key(|p| !is_namespace(&p.prepared.kind));
    if args.dry_run {
        for p in &plans {
            let what = match &p.live {
                None => "created",
                Some(live) if super::diff::comparable(live) == super::diff::comparable(&p.would_be) => "unchanged",
                Some(_) => "configured",
            };
            outln!("{} {what} (dry run)", p.prepared.short())?;
        }
        return Ok(0);
    }
    let mut failed = 0;
    let params =
        WriteParams { dry_run: false, field_manager: Some(CLI_FIELD_MANAGER.into()), force: args.force_conflicts };
    for p in &plans {
        let pr = &p.prepared;
        match ctx.client.patch(&pr.kind, pr.namespace.as_deref(), &pr.name, Patch::Apply(&pr.body), &params).await {
            Ok(w) => {
                let before = p.live.as_ref().and_then(|l| l.metadata.resource_version.as_deref());
                let what = if w.created {
                    "created"
                } else if before.is_some() && before == w.object.metadata.resource_version.as_deref() {
                    "unchanged"
                } else {
                    "configured"
                };
                // A closed stdout must not stop an apply halfway: keep writing objects.
                let _ = outln!("{} {what}", pr.short());
            }
            Err(e @ ClientError::Api(_)) => {
                failed += 1;
                for prob in server_problems(&pr.doc, &e)? {
                    eprintln!("error: {prob}");
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} objects could not be applied (the others were); fix them and apply again",
            plans.len()
        );
        return Ok(1);
    }
    Ok(0)
}
