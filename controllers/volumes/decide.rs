//! What the volumes controller does about one volume: a pure function of the volume
//! and what is known of the task that last claimed it.

use corral_api::kinds::volume::VolumePhase;

/// What is known of the task a volume's claim names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// No claim on the volume.
    None,
    /// The task is in the cache and has not ended.
    Live,
    /// The task is in the cache and has ended.
    Ended,
    /// The task is not in the cache: gone, or not yet seen (the cache may lag the
    /// claim). Shown as free; a finalizer is only removed once a fresh read agrees.
    Missing,
}

/// The part of a volume the decision reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed<'a> {
    /// `spec.nodeName` is set.
    pub bound: bool,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// It carries the protection finalizer.
    pub protected: bool,
    /// Its current `status.phase`; `None` before any status is written.
    pub phase: Option<VolumePhase>,
    /// Its current `status.task`.
    pub task: Option<&'a str>,
    /// The task its claim names.
    pub claimed_by: Option<&'a str>,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write `status.phase` and `status.task` (the agent's fields are kept).
    SetStatus {
        /// The phase.
        phase: VolumePhase,
        /// The task using it.
        task: Option<String>,
    },
    /// Remove the protection finalizer once a fresh read finds the claiming task
    /// (named, if any) ended or gone.
    Release {
        /// The task to check first.
        task: Option<String>,
    },
}

/// The steps for volume `v` whose claim's task is `holder`.
///
/// - `InUse` with the task's name while a live task holds it; `Bound` when bound
///   and free; `Pending` while unbound.
/// - `Failed` (written by the node's agent when it cannot make or mount the volume)
///   stands: only `task` is kept up to date. The agent keeps retrying, and deleting
///   and re-creating the volume starts again.
/// - Being deleted and not held by a live task: its protection finalizer goes.
pub fn decide(v: &Observed<'_>, holder: Holder) -> Vec<Step> {
    let mut steps = Vec::new();
    let (phase, task) = match (holder, v.claimed_by) {
        (Holder::Live, Some(t)) => (VolumePhase::InUse, Some(t)),
        _ if v.bound => (VolumePhase::Bound, None),
        _ => (VolumePhase::Pending, None),
    };
    let phase = if v.phase == Some(VolumePhase::Failed) { VolumePhase::Failed } else { phase };
    if v.phase != Some(phase) || v.task != task {
        steps.push(Step::SetStatus { phase, task: task.map(str::to_string) });
    }
    if v.deleting && v.protected && holder != Holder::Live {
        let check = match holder {
            Holder::Missing => v.claimed_by.map(str::to_string),
            _ => None,
        };
        steps.push(Step::Release { task: check });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol<'a>(bound: bool, phase: VolumePhase, task: Option<&'a str>, claimed_by: Option<&'a str>) -> Observed<'a> {
        Observed { bound, deleting: false, protected: true, phase: Some(phase), task, claimed_by }
    }

    fn status(phase: VolumePhase, task: Option<&str>) -> Step {
        Step::SetStatus { phase, task: task.map(str::to_string) }
    }

    #[test]
    fn phase_follows_binding_and_the_claiming_task() {
        use VolumePhase::*;
        let table: &[(Observed<'_>, Holder, Vec<Step>)] = &[
            (vol(false, Pending, None, None), Holder::None, vec![]),
            (Observed { phase: None, ..vol(false, Pending, None, None) }, Holder::None, vec![status(Pending, None)]),
            (vol(true, Pending, None, Some("t")), Holder::Live, vec![status(InUse, Some("t"))]),
            (vol(true, InUse, Some("t"), Some("t")), Holder::Live, vec![]),
            (vol(true, InUse, Some("t"), Some("t")), Holder::Ended, vec![status(Bound, None)]),
            (vol(true, InUse, Some("t"), Some("t")), Holder::Missing, vec![status(Bound, None)]),
            (vol(true, Bound, None, Some("t")), Holder::Ended, vec![]),
            (vol(true, Pending, None, None), Holder::None, vec![status(Bound, None)]),
            // The agent's Failed stands; the task using it is still told.
            (vol(true, Failed, Some("t"), Some("t")), Holder::Live, vec![]),
            (vol(true, Failed, Some("t"), Some("u")), Holder::Live, vec![status(Failed, Some("u"))]),
            (vol(true, Failed, Some("t"), Some("t")), Holder::Ended, vec![status(Failed, None)]),
        ];
        for (i, (v, h, want)) in table.iter().enumerate() {
            assert_eq!(&decide(v, *h), want, "row {i}: {v:?} {h:?}");
        }
    }

    #[test]
    fn a_deleting_volume_is_released_only_when_no_live_task_holds_it() {
        let deleting = |claimed_by, phase, task| Observed {
            bound: true,
            deleting: true,
            protected: true,
            phase: Some(phase),
            task,
            claimed_by,
        };
        assert_eq!(decide(&deleting(Some("t"), VolumePhase::InUse, Some("t")), Holder::Live), vec![]);
        assert_eq!(
            decide(&deleting(Some("t"), VolumePhase::Bound, None), Holder::Ended),
            vec![Step::Release { task: None }]
        );
        assert_eq!(
            decide(&deleting(Some("t"), VolumePhase::Bound, None), Holder::Missing),
            vec![Step::Release { task: Some("t".into()) }],
            "a task not in the cache is read afresh first"
        );
        assert_eq!(decide(&deleting(None, VolumePhase::Bound, None), Holder::None), vec![Step::Release { task: None }]);
        let mut released = deleting(None, VolumePhase::Bound, None);
        released.protected = false;
        assert_eq!(decide(&released, Holder::None), vec![]);
    }
}
