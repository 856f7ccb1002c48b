//! What the node lifecycle controller decides about one node, from what it has
//! observed: a pure function of the node, how long its lease has gone unrenewed on this
//! controller's clock, and the node's tasks.

use std::time::{Duration, Instant};

use corral_api::kinds::node::NodePhase;
use corral_api::kinds::task::{AGENT_FINALIZER, TaskPhase, TaskSummary};

/// The heartbeat lease record last seen for a node, and since when this controller has
/// seen that very record. Kept on the controller's own monotonic clock, so that clock
/// skew between machines cannot make a live node look dead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The lease's `resourceVersion`; `None` while the node has no lease.
    pub record: Option<String>,
    /// When this controller first saw `record`.
    pub since: Instant,
}

impl Observed {
    /// The observation after seeing `record` at `now`: the same as before if the
    /// record did not change, else a new one starting now.
    pub fn update(previous: Option<&Observed>, record: Option<String>, now: Instant) -> Observed {
        match previous {
            Some(p) if p.record == record => p.clone(),
            _ => Observed { record, since: now },
        }
    }
}

/// One step of the plan for a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write the node's phase, with a message saying why.
    SetPhase {
        /// The phase.
        phase: NodePhase,
        /// Why.
        message: String,
    },
    /// Mark this task (namespace, name) `LOST`: its node is unreachable.
    MarkLost(String, String),
    /// Let the deletion of this task (namespace, name) complete without its agent,
    /// which may never come back.
    Release(String, String),
}

/// The plan for a node, and when to look at it again if nothing changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// What to write, in order.
    pub steps: Vec<Step>,
    /// When the node's reachability changes by itself (its grace period runs out).
    pub recheck_in: Option<Duration>,
}

/// Decides about a node in phase `phase` whose lease was `observed`, at `now`, with
/// `grace` as the longest silence of a reachable node and `tasks` bound to it.
///
/// - A lease renewed within the grace period: `Ready`.
/// - Silent for the whole grace period (or never heard from for that long):
///   `Unreachable`, each non-terminal task `LOST`, each task being deleted released.
/// - Otherwise (no lease yet, grace not over): nothing until the grace period ends.
///
/// Every node gets a whole grace period from the first observation, so a restarted
/// controller does not condemn nodes it simply has not heard from yet.
pub fn decide(
    phase: Option<NodePhase>,
    observed: &Observed,
    now: Instant,
    grace: Duration,
    tasks: &[&TaskSummary],
) -> Plan {
    let mut steps = Vec::new();
    if silent(observed, now, grace) {
        if phase != Some(NodePhase::Unreachable) {
            steps.push(Step::SetPhase {
                phase: NodePhase::Unreachable,
                message: format!("no heartbeat for {}s", grace.as_secs()),
            });
        }
        for t in tasks {
            let ns = t.metadata.namespace.clone().unwrap_or_default();
            let name = t.metadata.name.clone();
            if t.metadata.is_deleting() {
                if t.metadata.has_finalizer(AGENT_FINALIZER) {
                    steps.push(Step::Release(ns, name));
                }
            } else if !t.status.as_ref().map(|s| s.phase).unwrap_or_default().is_terminal() {
                steps.push(Step::MarkLost(ns, name));
            }
        }
        return Plan { steps, recheck_in: None };
    }
    if observed.record.is_some() && phase != Some(NodePhase::Ready) {
        steps.push(Step::SetPhase { phase: NodePhase::Ready, message: "the agent renews its lease".into() });
    }
    Plan { steps, recheck_in: Some(grace - now.saturating_duration_since(observed.since)) }
}

/// Whether a node has been silent for the whole grace period: only then do its
/// tasks matter to [`decide`].
pub fn silent(observed: &Observed, now: Instant, grace: Duration) -> bool {
    now.saturating_duration_since(observed.since) >= grace
}

/// The status of a task given up with its node.
pub fn lost(
    mut status: corral_api::kinds::task::TaskStatus,
    node: &str,
    now: String,
) -> corral_api::kinds::task::TaskStatus {
    status.phase = TaskPhase::Lost;
    status.reason = Some("NodeUnreachable".into());
    status.message = Some(format!("node {node} stopped sending heartbeats"));
    status.finish_time = Some(now);
    status
}

#[cfg(test)]
mod tests {
    use corral_api::kinds::task::{TaskSummarySpec, TaskSummaryStatus};
    use proptest::prelude::*;

    use super::*;

    const GRACE: Duration = Duration::from_secs(40);

    fn task(name: &str, phase: Option<TaskPhase>, deleting: bool, finalizer: bool) -> TaskSummary {
        let mut t = TaskSummary {
            metadata: corral_api::meta::ObjectMeta::named(name),
            spec: TaskSummarySpec { node_name: Some("n1".into()), ..Default::default() },
            status: phase.map(|phase| TaskSummaryStatus { phase, ..Default::default() }),
            ..Default::default()
        };
        t.metadata.namespace = Some("default".into());
        if deleting {
            t.metadata.deletion_timestamp = Some("2026-12-01T00:00:00Z".into());
        }
        if finalizer {
            t.metadata.finalizers.push(AGENT_FINALIZER.into());
        }
        t
    }

    fn seen(record: Option<&str>, ago: Duration, now: Instant) -> Observed {
        Observed { record: record.map(str::to_string), since: now - ago }
    }

    #[test]
    fn a_renewing_node_is_ready_and_rechecked_when_its_grace_would_run_out() {
        let now = Instant::now() + GRACE * 2;
        let plan = decide(Some(NodePhase::Pending), &seen(Some("7"), Duration::from_secs(10), now), now, GRACE, &[]);
        assert_eq!(
            plan.steps,
            vec![Step::SetPhase { phase: NodePhase::Ready, message: "the agent renews its lease".into() }]
        );
        assert_eq!(plan.recheck_in, Some(Duration::from_secs(30)));
        let plan = decide(Some(NodePhase::Ready), &seen(Some("7"), Duration::from_secs(10), now), now, GRACE, &[]);
        assert!(plan.steps.is_empty(), "nothing to write when already Ready");
    }

    #[test]
    fn a_silent_node_becomes_unreachable_and_its_running_tasks_lost() {
        let now = Instant::now() + GRACE * 2;
        let running = task("running", Some(TaskPhase::Running), false, true);
        let unstarted = task("unstarted", None, false, false);
        let done = task("done", Some(TaskPhase::Finished), false, false);
        let deleting = task("deleting", Some(TaskPhase::Running), true, true);
        let released = task("released", Some(TaskPhase::Running), true, false);
        let tasks = [&running, &unstarted, &done, &deleting, &released];
        let plan = decide(Some(NodePhase::Ready), &seen(Some("7"), GRACE, now), now, GRACE, &tasks);
        assert_eq!(
            plan.steps,
            vec![
                Step::SetPhase { phase: NodePhase::Unreachable, message: "no heartbeat for 40s".into() },
                Step::MarkLost("default".into(), "running".into()),
                Step::MarkLost("default".into(), "unstarted".into()),
                Step::Release("default".into(), "deleting".into()),
            ]
        );
        assert_eq!(plan.recheck_in, None, "nothing changes by itself once unreachable");
    }

    #[test]
    fn a_node_never_heard_from_waits_a_whole_grace_period() {
        let now = Instant::now() + GRACE * 2;
        let plan = decide(None, &seen(None, GRACE - Duration::from_secs(1), now), now, GRACE, &[]);
        assert!(plan.steps.is_empty());
        assert_eq!(plan.recheck_in, Some(Duration::from_secs(1)));
        let plan = decide(None, &seen(None, GRACE, now), now, GRACE, &[]);
        assert!(matches!(plan.steps[0], Step::SetPhase { phase: NodePhase::Unreachable, .. }));
    }

    #[test]
    fn an_observation_restarts_only_when_the_record_changes() {
        let t0 = Instant::now();
        let first = Observed::update(None, Some("1".into()), t0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(Observed::update(Some(&first), Some("1".into()), later).since, t0);
        assert_eq!(Observed::update(Some(&first), Some("2".into()), later).since, later);
    }

    proptest! {
        #[test]
        fn reachability_follows_the_silence_alone(silent_s in 0u64..100, has_lease in any::<bool>()) {
            let now = Instant::now() + Duration::from_secs(200);
            let observed = seen(has_lease.then_some("1"), Duration::from_secs(silent_s), now);
            let running = task("t", Some(TaskPhase::Running), false, true);
            let plan = decide(Some(NodePhase::Ready), &observed, now, GRACE, &[&running]);
            let lost = plan.steps.iter().any(|s| matches!(s, Step::MarkLost(..)));
            prop_assert_eq!(lost, silent_s >= GRACE.as_secs());
            prop_assert_eq!(plan.recheck_in.is_none(), silent_s >= GRACE.as_secs());
        }
    }
}
