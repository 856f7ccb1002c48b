//! What the garbage collector decides, from what it knows of an object and of the
//! objects it is tied to: pure functions, no I/O. Cascading deletion follows the three
//! Kubernetes modes; a deleted namespace is emptied before it goes.

use corral_api::delete::{FOREGROUND_FINALIZER, NAMESPACE_FINALIZER, ORPHAN_FINALIZER};

/// How one owner of a dependent stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Being deleted in foreground: waits for its dependents.
    Waiting,
    /// Gone, or replaced by another object of the same name (another uid).
    Absent,
}

impl OwnerState {
    /// The state of an owner that exists: waiting if it is being deleted in foreground.
    pub fn of(deleting: bool, foreground: bool) -> Self {
        if deleting && foreground { OwnerState::Waiting } else { OwnerState::Solid }
    }
}

/// What becomes of a dependent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DependentStep {
    /// A live owner keeps it; references to these owners (uids), gone or waiting for
    /// their dependents, are dropped so that they are not held up.
    Keep {
        /// Owner uids whose references go.
        drop_references: Vec<String>,
    },
    /// No live owner is left: delete it — in foreground when an owner waits and it has
    /// dependents of its own, so that the wait covers the whole tree.
    Delete {
        /// Delete in foreground.
        foreground: bool,
    },
}

/// Decides about a dependent whose owners (uid and state) are `owners`.
pub fn dependent(owners: &[(String, OwnerState)], has_dependents: bool) -> DependentStep {
    let solid = owners.iter().any(|(_, s)| *s == OwnerState::Solid);
    if solid {
        let drop_references = owners.iter().filter(|(_, s)| *s != OwnerState::Solid).map(|(u, _)| u.clone()).collect();
        return DependentStep::Keep { drop_references };
    }
    let waiting = owners.iter().any(|(_, s)| *s == OwnerState::Waiting);
    DependentStep::Delete { foreground: waiting && has_dependents }
}

/// What the collector knows of an object being deleted (an owner, or a namespace).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deleting {
    /// Its finalizers.
    pub finalizers: Vec<String>,
    /// For a namespace: whether its phase says `Terminating` already, and how many
    /// objects are left in it.
    pub namespace: Option<NamespaceContents>,
    /// Dependents that block its foreground deletion (`blockOwnerDeletion: true`).
    pub blocking_dependents: usize,
}

/// A namespace being emptied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NamespaceContents {
    /// Whether `status.phase` is `Terminating`.
    pub terminating: bool,
    /// Objects still in it.
    pub objects: usize,
}

/// One step of the work on an object being deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerStep {
    /// Remove every dependent's reference to it.
    OrphanDependents,
    /// Collect its dependents that are not being deleted yet.
    CollectDependents,
    /// Set the namespace's phase to `Terminating`.
    MarkTerminating,
    /// Delete every object in the namespace that is not being deleted yet.
    DeleteNamespaceContents,
    /// Its work is done: remove this finalizer.
    RemoveFinalizer(&'static str),
}

/// Decides the work on an object being deleted. One finalizer at a time, in order:
/// orphaning, then foreground collection, then a namespace's emptying; the update
/// that removes one brings the object back for the next.
pub fn deleting(d: &Deleting) -> Vec<OwnerStep> {
    let has = |f: &str| d.finalizers.iter().any(|x| x == f);
    if has(ORPHAN_FINALIZER) {
        return vec![OwnerStep::OrphanDependents, OwnerStep::RemoveFinalizer(ORPHAN_FINALIZER)];
    }
    if has(FOREGROUND_FINALIZER) {
        let mut steps = vec![OwnerStep::CollectDependents];
        if d.blocking_dependents == 0 {
            steps.push(OwnerStep::RemoveFinalizer(FOREGROUND_FINALIZER));
        }
        return steps;
    }
    match d.namespace {
        Some(ns) if has(NAMESPACE_FINALIZER) => {
            let mut steps = Vec::new();
            if !ns.terminating {
                steps.push(OwnerStep::MarkTerminating);
            }
            steps.push(if ns.objects == 0 {
                OwnerStep::RemoveFinalizer(NAMESPACE_FINALIZER)
            } else {
                OwnerStep::DeleteNamespaceContents
            });
            steps
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use OwnerState::*;

    fn owners(states: &[OwnerState]) -> Vec<(String, OwnerState)> {
        states.iter().enumerate().map(|(i, s)| (format!("u{i}"), *s)).collect()
    }

    #[test]
    fn dependents_follow_their_owners() {
        let cases: &[(&[OwnerState], bool, DependentStep)] = &[
            (&[Solid], false, DependentStep::Keep { drop_references: vec![] }),
            (&[Absent], false, DependentStep::Delete { foreground: false }),
            (&[Absent], true, DependentStep::Delete { foreground: false }),
            (&[Waiting], false, DependentStep::Delete { foreground: false }),
            (&[Waiting], true, DependentStep::Delete { foreground: true }),
            (&[Solid, Absent], false, DependentStep::Keep { drop_references: vec!["u1".into()] }),
            (&[Waiting, Solid], true, DependentStep::Keep { drop_references: vec!["u0".into()] }),
            (&[Absent, Waiting], true, DependentStep::Delete { foreground: true }),
        ];
        for (states, has_dependents, want) in cases {
            assert_eq!(&dependent(&owners(states), *has_dependents), want, "{states:?} {has_dependents}");
        }
    }

    #[test]
    fn deletions_do_one_finalizer_at_a_time() {
        let d = |f: &[&str], ns: Option<NamespaceContents>, blocking| Deleting {
            finalizers: f.iter().map(|s| s.to_string()).collect(),
            namespace: ns,
            blocking_dependents: blocking,
        };
        assert_eq!(
            deleting(&d(&[ORPHAN_FINALIZER, FOREGROUND_FINALIZER], None, 3)),
            vec![OwnerStep::OrphanDependents, OwnerStep::RemoveFinalizer(ORPHAN_FINALIZER)]
        );
        assert_eq!(deleting(&d(&[FOREGROUND_FINALIZER], None, 2)), vec![OwnerStep::CollectDependents]);
        assert_eq!(
            deleting(&d(&[FOREGROUND_FINALIZER], None, 0)),
            vec![OwnerStep::CollectDependents, OwnerStep::RemoveFinalizer(FOREGROUND_FINALIZER)]
        );
        let full = NamespaceContents { terminating: false, objects: 4 };
        assert_eq!(
            deleting(&d(&[NAMESPACE_FINALIZER], Some(full), 0)),
            vec![OwnerStep::MarkTerminating, OwnerStep::DeleteNamespaceContents]
        );
        let empty = NamespaceContents { terminating: true, objects: 0 };
        assert_eq!(
            deleting(&d(&[NAMESPACE_FINALIZER], Some(empty), 0)),
            vec![OwnerStep::RemoveFinalizer(NAMESPACE_FINALIZER)]
        );
        assert!(deleting(&d(&["example.com/mine"], None, 0)).is_empty(), "others' finalizers are theirs");
    }

    fn state() -> impl Strategy<Value = OwnerState> {
        prop_oneof![Just(Solid), Just(Waiting), Just(Absent)]
    }

    proptest! {
        #[test]
        fn a_dependent_goes_exactly_when_no_owner_is_solid(
            states in proptest::collection::vec(state(), 1..5), has_dependents in any::<bool>()
        ) {
            let step = dependent(&owners(&states), has_dependents);
            let solid = states.contains(&Solid);
            prop_assert_eq!(matches!(step, DependentStep::Delete { .. }), !solid);
            if let DependentStep::Keep { drop_references } = step {
                // Exactly the references to owners that are not solid go.
                prop_assert_eq!(drop_references.len(), states.iter().filter(|s| **s != Solid).count());
            }
        }
    }
}
