//! What the services controller decides about one service: a pure function of its
//! spec, the status last written, its tasks and the clock, giving the tasks to launch,
//! kill and forget, the status to write, and when to look again.
//!
//! Marathon's semantics, with these refinements:
//!
//! - A template revision is the template together with `restartedAt`. Going back to a
//!   template still in the history (`corral rollout undo`) renumbers it as the newest,
//!   as Kubernetes does, so revision numbers only grow and the history stays oldest
//!   first.
//! - The backoff counts failures of the wanted revision only, and a new revision starts
//!   it afresh (Marathon keys its launch delay by app version): a fixed template should
//!   not wait out the broken one's delay. Only a task *started since the last failure*
//!   that runs healthy resets the count, so one healthy instance cannot hide another's
//!   crash loop.
//! - When `minimumHealthCapacity` and `maximumOverCapacity` leave no room — nothing may
//!   stop and nothing may start on top — a deployment may run one task over capacity.
//! - Tasks on their way out (`killing`) count for nothing: not as instances, not in
//!   the status figures.

use std::cmp::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_api::kinds::service::{
    Backoff, Condition, Deployment, DeploymentPhase, HISTORY_LIMIT, KillSelection, ServiceSpec, ServiceStatus,
    TemplateRevision, Waiting,
};
use corral_api::kinds::task::TaskPhase;

use crate::matching::{Shortfall, why};

pub(crate) use crate::rounds::{parse_rfc3339, rfc3339};

/// One task of the service, as the wiring sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskView {
    /// The task's name.
    pub name: String,
    /// The template revision it runs, from its `corral.dev/service-revision` label; 0
    /// if the label is missing (such a task is of no wanted revision, so it is replaced).
    pub revision: u64,
    /// The node it is bound to.
    pub node: Option<String>,
    /// Its phase.
    pub phase: TaskPhase,
    /// The result of its health checks; `None` while none has been reported (or it has
    /// none).
    pub healthy: Option<bool>,
    /// Whether its template has health checks: without any, a running task is healthy.
    pub has_health_checks: bool,
    /// Whether its readiness check passed (`true` when the service has none).
    pub ready: bool,
    /// `spec.kill` is set or it is being deleted: it is already on its way out.
    pub killing: bool,
    /// When it was created.
    pub created: SystemTime,
    /// When it started running.
    pub started: Option<SystemTime>,
    /// When it became terminal; for a `LOST` task, when it was marked lost.
    pub finished: Option<SystemTime>,
}

impl TaskView {
    /// Running, and its health checks pass (or it has none).
    fn is_healthy(&self) -> bool {
        self.phase == TaskPhase::Running && self.healthy.unwrap_or(!self.has_health_checks)
    }

    /// Healthy and ready: what a deployment counts as updated.
    fn is_available(&self) -> bool {
        self.is_healthy() && self.ready
    }

    /// The time its age is measured from.
    fn since(&self) -> SystemTime {
        self.started.unwrap_or(self.created)
    }
}

/// Everything [`decide`] looks at for one service.
#[derive(Clone, Debug, PartialEq)]
pub struct Input<'a> {
    /// The service's spec.
    pub spec: &'a ServiceSpec,
    /// The service's `metadata.generation`.
    pub generation: i64,
    /// The status last written: history, deployment, failures in a row, conditions.
    pub status: &'a ServiceStatus,
    /// Every task of the service, terminal ones included.
    pub tasks: Vec<TaskView>,
}

/// What to do about one service.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The template revision now wanted; new tasks carry it.
    pub revision: u64,
    /// How many new tasks of `revision` to place now (0 while a backoff runs).
    pub launch: u32,
    /// Tasks to kill (set `spec.kill`), by name.
    pub kill: Vec<String>,
    /// Tasks to forget (delete), by name: terminal ones, after they were counted, and
    /// expunged `LOST` ones.
    pub delete: Vec<String>,
    /// The status to write. `waiting` holds only the backoff (the matcher fills in the
    /// rest); the `Placed` condition is passed through unchanged.
    pub status: ServiceStatus,
    /// When to look again even if nothing changes: a backoff's end, a lost task's
    /// inactive or expunge time.
    pub wake_at: Option<SystemTime>,
}

/// Decides, at `now`, what to do about the service described by `input`.
///
/// - **Revision**: the history entry whose template and `restartedAt` equal the spec's,
///   if it is the newest; otherwise a new one (last + 1) is appended and the history
///   cut to [`HISTORY_LIMIT`].
/// - **Terminal tasks** (`FINISHED`, `FAILED`, `KILLED`) are deleted. One of the wanted
///   revision that was not being killed is a failure: it adds one to
///   `consecutiveFailures`, and launches wait `backoffSeconds * backoffFactor^(n-1)`
///   (at most `maxLaunchDelaySeconds`) from it. A task of the wanted revision started
///   since then that runs healthy resets the count.
/// - **`LOST` tasks** count as instances for `inactiveAfterSeconds`, then are replaced,
///   and are deleted after `expungeAfterSeconds` (never before they are inactive).
/// - **Instances**: missing ones are launched, extra ones killed — those not running or
///   unhealthy first, then older revisions, then by `killSelection`.
/// - **Deployment**, while tasks of other revisions remain: new tasks are launched while
///   the total stays within `instances + floor(instances * maximumOverCapacity)`, and
///   healthy old tasks are killed only as far as `ceil(instances *
///   minimumHealthCapacity)` healthy (and, if new, ready) tasks remain. Old tasks that
///   are not healthy may always go.
///
/// # Guarantees
/// - Only tasks of `input.tasks` are named; a task is never both killed and deleted, and
///   tasks already on their way out are never killed again.
/// - Once `ceil(instances * minimumHealthCapacity)` tasks are healthy, the kills of a
///   plan never leave fewer healthy.
/// - Launches never bring the tasks counted as instances above the deployment's
///   maximum (one more when the strategy leaves no room), nor new tasks above
///   `instances`.
pub fn decide(input: &Input<'_>, now: SystemTime) -> Plan {
    let spec = input.spec;
    let prev = input.status;
    let now_text = rfc3339(now);
    let n = spec.instances as usize;
    let (history, revision) = revisions(input, &now_text);
    let mut wake = Wake::default();

    // A new revision starts the backoff afresh.
    let (mut failures, mut last_failure) = if prev.revision == revision {
        (prev.consecutive_failures, prev.last_failure_time.as_deref().and_then(parse_rfc3339))
    } else {
        (0, None)
    };

    let mut delete = Vec::new();
    // Tasks counted as instances: not terminal (or lost, not yet inactive), not killing.
    let mut active: Vec<&TaskView> = Vec::new();
    for t in &input.tasks {
        match t.phase {
            TaskPhase::Finished | TaskPhase::Failed | TaskPhase::Killed => {
                delete.push(t.name.clone());
                // A service's task should never exit, so FINISHED fails as well; a KILLED
                // task nobody asked to kill was killed by its health checks.
                if !t.killing && t.revision == revision {
                    failures = failures.saturating_add(1);
                    // Whole seconds, as the status keeps it, so that this plan and the
                    // next compute the same backoff end.
                    let at = whole_seconds(t.finished.unwrap_or(now));
                    last_failure = Some(last_failure.map_or(at, |l: SystemTime| l.max(at)));
                }
            }
            TaskPhase::Lost => {
                let us = &spec.unreachable_strategy;
                let since = t.finished.or(t.started).unwrap_or(t.created);
                let inactive_at = since.checked_add(Duration::from_secs(us.inactive_after_seconds));
                let expunge_at =
                    since.checked_add(Duration::from_secs(us.expunge_after_seconds.max(us.inactive_after_seconds)));
                if expunge_at.is_some_and(|at| now >= at) {
                    delete.push(t.name.clone());
                    continue;
                }
                wake.at(expunge_at);
                if !t.killing && inactive_at.is_none_or(|at| now < at) {
                    wake.at(inactive_at);
                    active.push(t);
                }
            }
            TaskPhase::Staging | TaskPhase::Starting | TaskPhase::Running => {
                if !t.killing {
                    active.push(t);
                }
            }
        }
    }

    let healthy_since_failure =
        active.iter().any(|t| t.revision == revision && t.is_healthy() && last_failure.is_none_or(|l| t.since() >= l));
    if healthy_since_failure {
        failures = 0;
        last_failure = None;
    }
    let backoff_end = match last_failure {
        Some(l) if failures > 0 => l.checked_add(backoff_delay(&spec.backoff, failures)).filter(|end| *end > now),
        _ => None,
    };

    // The deployment's bounds. Fractions of tenths are not exact in binary (0.7 * 10 is
    // 7.000000000000001), so a hair is taken off before rounding.
    let us = &spec.upgrade_strategy;
    let min_healthy = ceil_of(n, us.minimum_health_capacity);
    let mut max_total = n + floor_of(n, us.maximum_over_capacity);
    let (new, old): (Vec<&TaskView>, Vec<&TaskView>) = active.iter().copied().partition(|t| t.revision == revision);
    // Both bounds at `instances`: no old task may stop before a new one is healthy, and
    // no new one may start beside them, so nothing would ever move. One task over
    // capacity lets it go.
    let no_room = !old.is_empty() && n > 0 && max_total <= min_healthy;
    if no_room {
        max_total = min_healthy + 1;
    }

    let order = kill_order(spec.kill_selection, revision);
    let mut kill: Vec<&TaskView> = Vec::new();
    // New tasks beyond `instances`: a plain scale-down.
    let mut new_sorted = new.clone();
    new_sorted.sort_by(&order);
    let excess = new.len().saturating_sub(n);
    kill.extend(&new_sorted[..excess]);
    let kept_new = &new_sorted[excess..];
    // Old tasks that are not healthy hold up nothing.
    let (mut old_healthy, mut old_unhealthy): (Vec<&TaskView>, Vec<&TaskView>) =
        old.iter().copied().partition(|t| t.is_healthy());
    old_unhealthy.sort_by(&order);
    kill.extend(&old_unhealthy);
    // Healthy old tasks, as far as enough healthy ones remain.
    let healthy_left = old_healthy.len() + kept_new.iter().filter(|t| t.is_available()).count();
    let may_stop = healthy_left.saturating_sub(min_healthy);
    old_healthy.sort_by(&order);
    kill.extend(old_healthy.iter().take(may_stop));

    let total_left = active.len() - kill.len();
    let missing = max_total.saturating_sub(total_left).min(n.saturating_sub(kept_new.len()));
    let missing = u32::try_from(missing).unwrap_or(u32::MAX);
    let (launch, waiting) = match backoff_end {
        Some(end) if missing > 0 => {
            wake.at(Some(end));
            let until = rfc3339(end);
            let message =
                format!("{missing} launch(es) wait until {until}: backoff after {failures} failure(s) in a row");
            (0, Some(Waiting { backoff_until: Some(until), message, ..Default::default() }))
        }
        _ => (missing, None),
    };

    // The figures describe the tasks as observed, before this plan acts.
    let staged = count(&active, |t| matches!(t.phase, TaskPhase::Staging | TaskPhase::Starting));
    let running = count(&active, |t| t.phase == TaskPhase::Running);
    let healthy = count(&active, |t| t.is_healthy());
    let updated = count(&new, |t| t.is_available());
    let old_count = count(&old, |_| true);
    let complete = old.is_empty() && updated as usize >= n;

    let mut message = if complete {
        format!("all {n} task(s) run revision {revision}, healthy and ready")
    } else {
        format!("{updated} of {n} task(s) of revision {revision} healthy and ready, {old_count} old left")
    };
    if !complete && waiting.is_some() {
        message.push_str("; launches wait for the backoff");
    }
    if no_room {
        message.push_str(
            "; minimumHealthCapacity and maximumOverCapacity leave no room, so one task over capacity is allowed",
        );
    }
    let start_time = prev
        .deployment
        .as_ref()
        .filter(|d| d.revision == revision)
        .and_then(|d| d.start_time.clone())
        .unwrap_or_else(|| now_text.clone());
    let deployment = Deployment {
        revision,
        phase: if complete { DeploymentPhase::Complete } else { DeploymentPhase::InProgress },
        updated,
        old: old_count,
        target: spec.instances,
        start_time: Some(start_time),
        message: Some(message.clone()),
    };

    let available = healthy as usize >= min_healthy;
    let mut conditions = vec![
        condition(
            &prev.conditions,
            "Available",
            available,
            if available { "MinimumHealthy" } else { "BelowMinimumHealthy" },
            format!("{healthy} of {n} task(s) healthy, at least {min_healthy} wanted"),
            &now_text,
        ),
        condition(
            &prev.conditions,
            "Progressing",
            !complete,
            if complete { "DeploymentComplete" } else { "Deploying" },
            message,
            &now_text,
        ),
    ];
    // `Placed` is the matcher's, and any other condition is someone else's too.
    conditions.extend(prev.conditions.iter().filter(|c| c.type_ != "Available" && c.type_ != "Progressing").cloned());

    let status = ServiceStatus {
        observed_generation: Some(input.generation),
        instances: spec.instances,
        staged,
        running,
        healthy,
        revision,
        deployment: Some(deployment),
        waiting,
        consecutive_failures: failures,
        last_failure_time: last_failure.map(rfc3339),
        conditions,
        history,
    };
    Plan { revision, launch, kill: kill.iter().map(|t| t.name.clone()).collect(), delete, status, wake_at: wake.0 }
}

/// The history to write and the wanted revision in it.
fn revisions(input: &Input<'_>, now: &str) -> (Vec<TemplateRevision>, u64) {
    let spec = input.spec;
    let same = |h: &TemplateRevision| h.template == spec.template && h.restarted_at == spec.restarted_at;
    let mut history = input.status.history.clone();
    if let Some(last) = history.last()
        && same(last)
    {
        let revision = last.revision;
        return (history, revision);
    }
    // Above every number in use, so that tasks of a forgotten status never pass for new.
    let next = history
        .iter()
        .map(|h| h.revision)
        .chain(input.tasks.iter().map(|t| t.revision))
        .chain([input.status.revision])
        .max()
        .unwrap_or(0)
        + 1;
    // An undo: the old entry moves to the end under its new number.
    history.retain(|h| !same(h));
    history.push(TemplateRevision {
        revision: next,
        template: spec.template.clone(),
        restarted_at: spec.restarted_at.clone(),
        time: Some(now.to_string()),
    });
    let excess = history.len().saturating_sub(HISTORY_LIMIT);
    history.drain(..excess);
    (history, next)
}

/// The order in which tasks are killed: not running first, then running but unhealthy,
/// then not ready; among equals older revisions first, then by `selection`.
fn kill_order(selection: KillSelection, wanted: u64) -> impl Fn(&&TaskView, &&TaskView) -> Ordering {
    fn rank(t: &TaskView) -> u8 {
        match (t.phase == TaskPhase::Running, t.is_healthy(), t.ready) {
            (false, _, _) => 0,
            (true, false, _) => 1,
            (true, true, false) => 2,
            (true, true, true) => 3,
        }
    }
    move |a: &&TaskView, b: &&TaskView| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| (a.revision == wanted).cmp(&(b.revision == wanted)))
            .then_with(|| a.revision.cmp(&b.revision))
            .then_with(|| match selection {
                KillSelection::YoungestFirst => b.since().cmp(&a.since()),
                KillSelection::OldestFirst => a.since().cmp(&b.since()),
            })
            .then_with(|| a.name.cmp(&b.name))
    }
}

/// Slack for products of a count and a fraction written in decimal.
const HAIR: f64 = 1e-9;

/// `ceil(n * fraction)`, the fraction taken within 0..=1.
fn ceil_of(n: usize, fraction: f64) -> usize {
    to_count((n as f64 * unit(fraction) - HAIR).ceil(), n)
}

/// `floor(n * fraction)`, the fraction taken within 0..=1.
fn floor_of(n: usize, fraction: f64) -> usize {
    to_count((n as f64 * unit(fraction) + HAIR).floor(), n)
}

/// `fraction` within 0..=1 (0 if it is not a number).
fn unit(fraction: f64) -> f64 {
    if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) }
}

/// A rounded product back to a count, within 0..=n.
fn to_count(x: f64, n: usize) -> usize {
    // The float-to-int cast saturates; the bounds are the clamp's.
    (x.max(0.0) as usize).min(n)
}

/// The delay before the next launch after `failures` failures in a row.
fn backoff_delay(b: &Backoff, failures: u32) -> Duration {
    if failures == 0 || b.backoff_seconds.is_nan() || b.backoff_seconds <= 0.0 {
        return Duration::ZERO;
    }
    let factor = if b.backoff_factor.is_nan() { 1.0 } else { b.backoff_factor.max(1.0) };
    let grown = b.backoff_seconds * factor.powf(f64::from(failures - 1));
    let cap = if b.max_launch_delay_seconds.is_nan() { 0.0 } else { b.max_launch_delay_seconds.max(0.0) };
    // A cap past any real wait keeps the addition to a SystemTime from overflowing.
    let seconds = grown.min(cap).min(f64::from(u32::MAX));
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO)
}

/// How many of `tasks` match.
fn count(tasks: &[&TaskView], f: impl Fn(&TaskView) -> bool) -> u32 {
    u32::try_from(tasks.iter().filter(|t| f(t)).count()).unwrap_or(u32::MAX)
}

/// A condition of `type_`, keeping its transition time when its status did not change.
fn condition(prev: &[Condition], type_: &str, value: bool, reason: &str, message: String, now: &str) -> Condition {
    let status = if value { "True" } else { "False" };
    let last_transition_time = prev
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: Some(last_transition_time),
    }
}

/// Writes why instances wait (`status.waiting`, after any backoff [`decide`] put
/// there) and the `Placed` condition, once the round's offers are matched: `short`
/// when the matcher left the service short, `launch` the tasks [`decide`] wanted.
pub fn placement(status: &mut ServiceStatus, launch: u32, short: Option<Shortfall<'_>>, now: SystemTime) {
    let (value, reason, message) = match short {
        Some(u) => {
            let message = why(&u);
            let mut w = status.waiting.take().unwrap_or_default();
            w.instances = u.instances;
            w.offers_examined = u.offers_examined;
            w.refusals = u.refusals.to_vec();
            w.message = match &w.backoff_until {
                Some(_) if !w.message.is_empty() => format!("{}; {message}", w.message),
                _ => message.clone(),
            };
            status.waiting = Some(w);
            (false, "NotPlaced", message)
        }
        None if launch > 0 => (true, "Placing", format!("{launch} instance(s) being launched")),
        None if status.waiting.is_some() => (false, "Backoff", "launches wait out a backoff".to_string()),
        None => (true, "Placed", "every instance has a node".to_string()),
    };
    let placed = condition(&status.conditions, "Placed", value, reason, message, &rfc3339(now));
    match status.conditions.iter_mut().find(|c| c.type_ == "Placed") {
        Some(c) => *c = placed,
        None => status.conditions.push(placed),
    }
}

/// The earliest of the times offered.
#[derive(Default)]
struct Wake(Option<SystemTime>);

impl Wake {
    fn at(&mut self, t: Option<SystemTime>) {
        if let Some(t) = t {
            self.0 = Some(self.0.map_or(t, |w| w.min(t)));
        }
    }
}

/// `t` without its fraction of a second.
fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

pub mod events;

#[cfg(test)]
mod tests;
