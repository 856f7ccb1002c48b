//! A node's report of many task statuses in one request
//! ([`corral_api::task_report`]).

use corral_api::task_report::{TaskStatusOutcome, TaskStatusReport, TaskStatusReportResult, report_path};

use crate::{Client, Error, Result, Status};

impl Client {
    /// Writes the statuses `report` carries, for tasks bound to node `node`, in one
    /// request. Each entry is written or refused on its own; the outcomes come back in
    /// the order sent ([`entry_result`] reads one as a single status write's result).
    ///
    /// # Errors
    /// The report as a whole: 400 when it cannot be read, 413 past
    /// [`corral_api::task_report::MAX_REPORT_ENTRIES`] entries, 403 when the caller
    /// may not report for `node`, 404 when the node does not exist; transport errors.
    pub async fn report_task_statuses(&self, node: &str, report: &TaskStatusReport) -> Result<Vec<TaskStatusOutcome>> {
        let body = crate::client::json_body(report)?;
        let path = report_path(node);
        let (_, answer): (_, TaskStatusReportResult) =
            self.call(http::Method::POST, path.clone(), Some(("application/json", body)), &path).await?;
        if answer.entries.len() != report.entries.len() {
            return Err(Error::Invalid(format!(
                "the server answered {} outcomes to a report of {} entries",
                answer.entries.len(),
                report.entries.len()
            )));
        }
        Ok(answer.entries)
    }
}

/// One entry's outcome as the result of the task's own status write would be: its new
/// revision, or the error the write would have failed with (so that
/// [`Error::is_conflict`] and [`Error::is_not_found`] work on it).
pub fn entry_result(outcome: &TaskStatusOutcome) -> Result<u64> {
    if let Some(e) = &outcome.error {
        return Err(Error::Api(Box::new(Status {
            code: e.code,
            reason: e.reason.clone(),
            message: e.message.clone(),
            details: None,
        })));
    }
    outcome.resource_version.as_deref().and_then(|rv| rv.parse().ok()).ok_or_else(|| {
        Error::Invalid(format!("the server answered task {}/{} without a revision", outcome.namespace, outcome.name))
    })
}
