//! The Events a service's status change is worth: what a person reading `corral
//! describe service/NAME` or the service's page wants told — a deployment started,
//! completed or superseded, instances that no offer fits, launches held back by the
//! backoff. A pure function of the status last stored and the one about to be
//! written, so that a restarted controller, comparing with what it stored before,
//! tells nothing twice, and so that rounds that change only counts tell nothing.

use corral_api::kinds::service::{DeploymentPhase, ServiceStatus, Waiting};

pub use crate::happenings::Happening;

/// Whether some constraint or resource turned offers down (not merely: no offer yet).
fn refused(w: Option<&Waiting>) -> bool {
    w.is_some_and(|w| !w.refusals.is_empty())
}

fn backing_off(w: Option<&Waiting>) -> bool {
    w.is_some_and(|w| w.backoff_until.is_some())
}

/// The Events that going from `old` (the stored status, if any) to `new` is worth.
pub fn happenings(old: Option<&ServiceStatus>, new: &ServiceStatus) -> Vec<Happening> {
    let mut out = Vec::new();
    let (before, now) = (old.and_then(|s| s.deployment.as_ref()), new.deployment.as_ref());
    if let Some(d) = now {
        let fresh = before.is_none_or(|b| b.revision != d.revision);
        if let Some(b) = before.filter(|b| b.revision != d.revision && b.phase == DeploymentPhase::InProgress) {
            out.push(Happening::normal(
                "DeploymentSuperseded",
                format!(
                    "the deployment of revision {} gave way to revision {} before it completed",
                    b.revision, d.revision
                ),
            ));
        }
        if fresh {
            let message = if d.old == 0 {
                format!("revision {}: launching {} instance(s)", d.revision, d.target)
            } else {
                format!("revision {}: replacing {} old task(s), aiming at {} instance(s)", d.revision, d.old, d.target)
            };
            out.push(Happening::normal("DeploymentStarted", message));
        }
        let was_complete = !fresh && before.is_some_and(|b| b.phase == DeploymentPhase::Complete);
        if d.phase == DeploymentPhase::Complete && !was_complete {
            out.push(Happening::normal(
                "DeploymentComplete",
                format!("revision {} rolled out: {} of {} instance(s) updated", d.revision, d.updated, d.target),
            ));
        }
    }
    let (w_old, w_new) = (old.and_then(|s| s.waiting.as_ref()), new.waiting.as_ref());
    if let Some(w) = w_new.filter(|_| refused(w_new) && !refused(w_old)) {
        out.push(Happening::warning("NotPlaced", format!("{} instance(s) not placed: {}", w.instances, w.message)));
    }
    if let Some(w) = w_new.filter(|_| backing_off(w_new) && !backing_off(w_old)) {
        out.push(Happening::warning("BackOff", w.message.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use corral_api::kinds::service::{Deployment, Refusal};

    use super::*;

    fn status(deployment: Option<(u64, DeploymentPhase, u32)>, waiting: Option<Waiting>) -> ServiceStatus {
        ServiceStatus {
            deployment: deployment.map(|(revision, phase, old)| Deployment {
                revision,
                phase,
                updated: if phase == DeploymentPhase::Complete { 3 } else { 1 },
                old,
                target: 3,
                ..Default::default()
            }),
            waiting,
            ..Default::default()
        }
    }

    fn refusing() -> Waiting {
        Waiting {
            instances: 1,
            offers_examined: 4,
            refusals: vec![Refusal { reason: "hostname UNIQUE".into(), offers: 4, nodes: 2 }],
            message: "hostname UNIQUE turned down 4 offers on 2 nodes".into(),
            ..Default::default()
        }
    }

    fn reasons(h: &[Happening]) -> Vec<&str> {
        h.iter().map(|h| h.reason).collect()
    }

    #[test]
    fn a_deployment_is_told_when_it_starts_completes_and_is_superseded_and_not_in_between() {
        use DeploymentPhase::*;
        let cases: Vec<(Option<ServiceStatus>, ServiceStatus, Vec<&str>)> = vec![
            (None, status(Some((1, InProgress, 0)), None), vec!["DeploymentStarted"]),
            (Some(status(Some((1, InProgress, 0)), None)), status(Some((1, InProgress, 0)), None), vec![]),
            (
                Some(status(Some((1, InProgress, 0)), None)),
                status(Some((1, Complete, 0)), None),
                vec!["DeploymentComplete"],
            ),
            (Some(status(Some((1, Complete, 0)), None)), status(Some((1, Complete, 0)), None), vec![]),
            // Started and done between two writes: both told.
            (
                Some(status(Some((1, Complete, 0)), None)),
                status(Some((2, Complete, 0)), None),
                vec!["DeploymentStarted", "DeploymentComplete"],
            ),
            (
                Some(status(Some((2, InProgress, 3)), None)),
                status(Some((3, InProgress, 3)), None),
                vec!["DeploymentSuperseded", "DeploymentStarted"],
            ),
        ];
        for (old, new, want) in cases {
            assert_eq!(reasons(&happenings(old.as_ref(), &new)), want, "{old:?} -> {new:?}");
        }
        let replacing =
            happenings(Some(&status(Some((1, Complete, 0)), None)), &status(Some((2, InProgress, 3)), None));
        assert_eq!(replacing[0].message, "revision 2: replacing 3 old task(s), aiming at 3 instance(s)");
    }

    #[test]
    fn refusals_and_backoff_are_warned_of_once_and_waiting_for_offers_is_not() {
        let waiting_for_offers = Waiting { instances: 2, message: "no offer yet".into(), ..Default::default() };
        let none = status(None, None);
        assert!(happenings(Some(&none), &status(None, Some(waiting_for_offers.clone()))).is_empty());
        let warned = happenings(Some(&none), &status(None, Some(refusing())));
        assert_eq!(reasons(&warned), vec!["NotPlaced"]);
        assert!(warned[0].warning);
        assert!(warned[0].message.contains("hostname UNIQUE"), "{}", warned[0].message);
        // Still refused, with other figures: already told.
        let mut again = refusing();
        again.offers_examined = 9;
        assert!(happenings(Some(&status(None, Some(refusing()))), &status(None, Some(again))).is_empty());
        let backoff = Waiting {
            backoff_until: Some("2026-12-06T01:00:00Z".into()),
            message: "launch failed".into(),
            ..Default::default()
        };
        assert_eq!(reasons(&happenings(Some(&none), &status(None, Some(backoff.clone())))), vec!["BackOff"]);
        assert!(happenings(Some(&status(None, Some(backoff.clone()))), &status(None, Some(backoff))).is_empty());
    }
}
