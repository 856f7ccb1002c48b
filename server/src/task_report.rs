//! `POST /apis/corral.dev/v1/nodes/{node}/taskstatus`: a node's report of many of its
//! tasks' statuses in one request ([`corral_api::task_report`]).
//!
//! Each entry is judged and written as the task's own status write would be; the
//! writes are submitted together, so the store's writer commits them in one batch.
//! The gain is in all that a request costs besides its write: the connection's
//! turn, routing, authorization, and a whole task parsed in and sent back out, where
//! an entry carries only the status and is answered with a revision.

use std::collections::HashSet;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use corral_api::task_report::{EntryError, MAX_REPORT_ENTRIES, TaskStatusOutcome, TaskStatusReportResult};
use corral_api::{GROUP, KindInfo, nesting};
use corral_store::Key;
use serde_json::Value;

use super::body;
use super::error::{ApiError, ApiResult};
use super::resources::Ctx;

/// A [`TaskStatusReport`](corral_api::task_report::TaskStatusReport) as it arrives:
/// each status kept as sent, to be validated against the schema and stored as is.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReportBody {
    entries: Vec<EntryBody>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EntryBody {
    namespace: String,
    name: String,
    #[serde(default)]
    resource_version: Option<String>,
    status: Value,
}

/// Serves a report to node `ctx.name`.
pub(crate) async fn serve(ctx: &Ctx, bytes: Bytes) -> ApiResult<Response> {
    if ctx.info.group != GROUP || ctx.info.plural != "nodes" {
        return Err(ApiError::not_found(format!(
            "{} has no {}; only nodes do (POST /apis/{}/nodes/{{node}}/{})",
            ctx.info.kind,
            corral_api::task_report::SUBRESOURCE,
            corral_api::API_VERSION,
            corral_api::task_report::SUBRESOURCE
        )));
    }
    body::check_depth(nesting::check_json(&bytes, nesting::MAX_NESTING_DEPTH))?;
    let report: ReportBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not a TaskStatusReport: {e}")))?;
    if report.entries.len() > MAX_REPORT_ENTRIES {
        return Err(ApiError::entity_too_large(format!(
            "a report carries at most {MAX_REPORT_ENTRIES} entries, this one {}; send the rest in another",
            report.entries.len()
        )));
    }
    // A report for a node that does not exist is refused whole, as any request on a
    // missing object's subresource.
    ctx.live(&ctx.name).await?;
    let tasks = ctx.state.builtin_kind("tasks")?;

    let mut seen = HashSet::with_capacity(report.entries.len());
    let writes = report.entries.iter().enumerate().map(|(i, entry)| {
        let twice = !seen.insert((entry.namespace.as_str(), entry.name.as_str()));
        write(ctx, &tasks, i, entry, twice)
    });
    let outcomes = futures::future::join_all(writes).await;
    let entries = report
        .entries
        .into_iter()
        .zip(outcomes)
        .map(|(EntryBody { namespace, name, .. }, outcome)| match outcome {
            Ok(revision) => {
                TaskStatusOutcome { namespace, name, resource_version: Some(revision.to_string()), error: None }
            }
            Err(e) => TaskStatusOutcome {
                namespace,
                name,
                resource_version: None,
                error: Some(EntryError { code: e.code.as_u16(), reason: e.reason.to_string(), message: e.message }),
            },
        })
        .collect();
    let answer = serde_json::to_vec(&TaskStatusReportResult { entries }).map_err(ApiError::internal)?;
    Ok(body::raw_json(StatusCode::OK, Bytes::from(answer)))
}

/// Judges and writes entry `i`; the task's revision after it.
async fn write(ctx: &Ctx, tasks: &Arc<KindInfo>, i: usize, entry: &EntryBody, twice: bool) -> ApiResult<u64> {
    let EntryBody { namespace, name, resource_version, status } = entry;
    let node = ctx.name.as_str();
    if twice {
        return Err(ApiError::invalid(
            tasks,
            name,
            vec![corral_api::FieldError::new(format!("entries[{i}]"), "names a task an earlier entry names")],
        ));
    }
    ctx.state.registry.validate_status(tasks, status).map_err(|causes| {
        let causes = causes
            .into_iter()
            .map(|c| corral_api::FieldError::new(format!("entries[{i}].{}", c.field), c.message))
            .collect();
        ApiError::invalid(tasks, name, causes)
    })?;
    let expected = match resource_version.as_deref() {
        None | Some("") => None,
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
            let why = format!("{rv:?} is not a resourceVersion this server gave out");
            ApiError::invalid(
                tasks,
                name,
                vec![corral_api::FieldError::new(format!("entries[{i}].resourceVersion"), why)],
            )
        })?),
    };
    let key = Key::namespaced(tasks.resource(), namespace, name);
    let store = &ctx.state.store;
    let live = store
        .get(&key)
        .await
        .map_err(|e| ApiError::from_store(e, tasks, name))?
        .ok_or_else(|| ApiError::object_not_found(tasks, name))?;
    if crate::auth::node::bound_node(&live.json) != Some(node) {
        return Err(ApiError::forbidden(format!(
            "task {namespace}/{name} is not bound to node {node:?}: a node reports only its own tasks"
        )));
    }
    if ctx.dry_run {
        return match expected {
            Some(e) if e != live.revision => {
                let stale = corral_store::Error::Conflict { key, expected: e, actual: live.revision };
                Err(ApiError::from_store(stale, tasks, name))
            }
            _ => Ok(live.revision),
        };
    }
    let outcome = store
        .update_status(key, serde_json::json!({ "status": status }), expected)
        .await
        .map_err(|e| ApiError::from_store(e, tasks, name))?;
    Ok(outcome.object().revision)
}
