//! The wire form of deletion: Kubernetes' `DeleteOptions` (what Corral reads of it)
//! and the finalizers through which dependents and namespace contents are collected.

use serde::{Deserialize, Serialize};

/// Finalizer of an object whose dependents are deleted before it disappears.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer of an object whose dependents lose their reference to it before it
/// disappears.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// Finalizer of a namespace whose objects are deleted before it disappears.
pub const NAMESPACE_FINALIZER: &str = "corral.dev/namespace";

/// How a delete treats the dependents of the deleted object (`propagationPolicy`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// The object goes at once; the garbage collector then deletes its dependents.
    #[default]
    Background,
    /// The object stays (with `deletionTimestamp`) until its blocking dependents are
    /// deleted.
    Foreground,
    /// The object goes once its dependents no longer reference it; they survive.
    Orphan,
}

impl Propagation {
    /// Parses the wire name (`Background`, `Foreground`, `Orphan`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Background" => Some(Propagation::Background),
            "Foreground" => Some(Propagation::Foreground),
            "Orphan" => Some(Propagation::Orphan),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
            Propagation::Orphan => "Orphan",
        }
    }

    /// The finalizer through which the garbage collector does this policy's work, if
    /// any.
    pub fn finalizer(self) -> Option<&'static str> {
        match self {
            Propagation::Background => None,
            Propagation::Foreground => Some(FOREGROUND_FINALIZER),
            Propagation::Orphan => Some(ORPHAN_FINALIZER),
        }
    }
}

/// Conditions a delete must meet, or it fails with 409 and changes nothing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Preconditions {
    /// The object must be this incarnation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The object must be at this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

impl Preconditions {
    /// Whether there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.uid.is_none() && self.resource_version.is_none()
    }
}

/// A `DeleteOptions` body, as Kubernetes clients send it. Fields Corral does not use
/// (such as `gracePeriodSeconds`) are accepted and ignored.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOptions {
    /// Wire name of a [`Propagation`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation_policy: Option<String>,
    /// `["All"]`: compute the outcome, change nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<String>,
    /// What must hold for the delete to happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preconditions: Option<Preconditions>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_parses_wire_names_only() {
        assert_eq!(Propagation::parse("Foreground"), Some(Propagation::Foreground));
        assert_eq!(Propagation::parse("orphan"), None);
        assert_eq!(Propagation::Orphan.finalizer(), Some(ORPHAN_FINALIZER));
        assert_eq!(Propagation::default().finalizer(), None);
    }
}
