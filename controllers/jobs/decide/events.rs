//! The Events the jobs controller records: on a run, when it fails, is killed or
//! tries again after a failed attempt ([`run_happenings`], from the change between
//! its stored status and the one written); on a job, when its plan refuses a manual
//! run, kills a run it replaces or starts a run late ([`job_happenings`]). A run
//! that starts and succeeds on time is told by its own status and the job's history
//! alone: thousands of runs a minute should not cost thousands of Events.

use corral_api::kinds::job::{Attempt, JobRunStatus, RunPhase};

pub use crate::happenings::Happening;

use super::JobPlan;

/// How an attempt ended, in a few words: `exit 3`, or its reason.
fn ending(a: &Attempt) -> String {
    match (a.exit_code, a.reason.as_deref()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(reason)) => reason.to_string(),
        (None, None) => "no exit code".to_string(),
    }
}

/// The Events that a run's status going from `old` to `new` is worth.
pub fn run_happenings(old: Option<&JobRunStatus>, new: &JobRunStatus) -> Vec<Happening> {
    let mut out = Vec::new();
    let before = old.map(|s| s.attempts.len()).unwrap_or(0);
    let after = new.attempts.len();
    if after > before && after >= 2 {
        let failed = &new.attempts[after - 2];
        out.push(Happening::warning(
            "Retrying",
            format!("attempt {after} launched: attempt {} ended with {}", after - 1, ending(failed)),
        ));
    }
    let was = old.map(|s| s.phase).unwrap_or_default();
    if new.phase != was {
        let why = new.message.clone();
        match new.phase {
            RunPhase::Failed => {
                out.push(Happening::warning("RunFailed", why.unwrap_or_else(|| "the run failed".into())))
            }
            RunPhase::Killed => {
                out.push(Happening::normal("RunKilled", why.unwrap_or_else(|| "the run was killed".into())))
            }
            _ => {}
        }
    }
    out
}

/// The Events a job's plan is worth, besides what its runs tell: `late` names the
/// runs it starts late, with what their status says of it.
pub fn job_happenings(plan: &JobPlan) -> Vec<Happening> {
    let mut out = Vec::new();
    for (run, why) in &plan.refuse {
        out.push(Happening::warning("RunRefused", format!("run {run} refused: {why}")));
    }
    for run in &plan.kill {
        out.push(Happening::normal(
            "RunReplaced",
            format!("run {run} is killed: its schedule's REPLACE policy starts another"),
        ));
    }
    for start in plan.start.iter().filter(|s| s.message.is_some()) {
        let said = start.message.as_deref().unwrap_or_default();
        out.push(Happening::warning("StartedLate", format!("schedule {}: {said}", start.schedule)));
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::super::NewRun;
    use super::*;

    fn attempt(exit: Option<i32>, reason: Option<&str>) -> Attempt {
        Attempt { task: "t".into(), exit_code: exit, reason: reason.map(Into::into), ..Default::default() }
    }

    fn status(phase: RunPhase, attempts: Vec<Attempt>, message: Option<&str>) -> JobRunStatus {
        JobRunStatus { phase, attempts, message: message.map(Into::into), ..Default::default() }
    }

    fn reasons(h: &[Happening]) -> Vec<&str> {
        h.iter().map(|h| h.reason).collect()
    }

    #[test]
    fn a_run_tells_its_failures_retries_and_kill_once_and_a_good_run_tells_nothing() {
        use RunPhase::*;
        let one = vec![attempt(None, None)];
        let failed_once = vec![attempt(Some(3), None), attempt(None, None)];
        let cases: Vec<(Option<JobRunStatus>, JobRunStatus, Vec<&str>)> = vec![
            (None, status(Running, one.clone(), None), vec![]),
            (Some(status(Running, one.clone(), None)), status(Succeeded, vec![attempt(Some(0), None)], None), vec![]),
            (Some(status(Running, one.clone(), None)), status(Running, failed_once.clone(), None), vec!["Retrying"]),
            (Some(status(Running, failed_once.clone(), None)), status(Running, failed_once.clone(), None), vec![]),
            (
                Some(status(Running, failed_once.clone(), None)),
                status(Failed, failed_once.clone(), Some("the deadline passed")),
                vec!["RunFailed"],
            ),
            (Some(status(Failed, failed_once.clone(), None)), status(Failed, failed_once.clone(), None), vec![]),
            (Some(status(Running, one.clone(), None)), status(Killed, one.clone(), None), vec!["RunKilled"]),
        ];
        for (old, new, want) in cases {
            assert_eq!(reasons(&run_happenings(old.as_ref(), &new)), want, "{old:?} -> {new:?}");
        }
        let retry = run_happenings(Some(&status(Running, one, None)), &status(Running, failed_once, None));
        assert_eq!(retry[0].message, "attempt 2 launched: attempt 1 ended with exit 3");
        assert!(retry[0].warning);
        let lost = run_happenings(None, &status(Running, vec![attempt(None, Some("LOST")), attempt(None, None)], None));
        assert_eq!(lost[0].message, "attempt 2 launched: attempt 1 ended with LOST");
    }

    #[test]
    fn a_job_tells_refusals_replacements_and_late_starts() {
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 1, 0, 0).single().expect("a time");
        let plan = JobPlan {
            refuse: vec![("nightly-manual".into(), "FORBID: run nightly-1 is active".into())],
            kill: vec!["nightly-1".into()],
            start: vec![
                NewRun { schedule: "s".into(), time: at, message: None },
                NewRun { schedule: "s".into(), time: at, message: Some("started 40 s late".into()) },
            ],
            ..Default::default()
        };
        let h = job_happenings(&plan);
        assert_eq!(reasons(&h), vec!["RunRefused", "RunReplaced", "StartedLate"]);
        assert_eq!(h[0].message, "run nightly-manual refused: FORBID: run nightly-1 is active");
        assert_eq!(h[2].message, "schedule s: started 40 s late");
        assert!(job_happenings(&JobPlan::default()).is_empty());
    }
}
