//! Parsing of `/apis/...` paths. The shapes collide in a static router
//! (`namespaces/{ns}/{plural}` versus `{plural}/{name}/status`), so they are told
//! apart here by hand.

/// What a path under `/apis/` designates, before the kind is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiPath {
    /// `/apis/{g}/{v}`: the resources of a group version.
    GroupVersion {
        /// Group.
        group: String,
        /// Version.
        version: String,
    },
    /// A collection, an object or an object's status.
    Resource(ResourcePath),
}

/// Which part of a resource a path addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The collection: list, watch, create.
    Collection,
    /// One object.
    Object,
    /// One object's status.
    Status,
    /// One object's log (kinds with the `log` subresource).
    Log,
    /// One object's desired and observed count (kinds with the `scale` subresource).
    Scale,
    /// `offers/{name}/accept`: launch tasks on an offer.
    Accept,
    /// `offers/{name}/decline`: turn an offer down.
    Decline,
    /// `namespaces/{ns}/syncs/{name}/trigger`: sync now.
    Trigger,
    /// `nodes/{name}/taskstatus`: the statuses of the node's tasks, many at once
    /// ([`corral_api::task_report`]).
    TaskStatus,
}

/// A path to a collection, object or status of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// Group.
    pub group: String,
    /// Version.
    pub version: String,
    /// The kind's plural.
    pub plural: String,
    /// The namespace from `/namespaces/{ns}/`, if the path has one.
    pub namespace: Option<String>,
    /// The object name, for object and status paths.
    pub name: Option<String>,
    /// What is addressed.
    pub target: Target,
}

/// Parses the path after `/apis/`; `None` when it has no meaning.
pub fn parse(rest: &str) -> Option<ApiPath> {
    Some(match parse_parts(rest)? {
        Parts::GroupVersion { group, version } => {
            ApiPath::GroupVersion { group: group.into(), version: version.into() }
        }
        Parts::Resource { group, version, plural, namespace, name, target } => ApiPath::Resource(ResourcePath {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            namespace: namespace.map(Into::into),
            name: name.map(Into::into),
            target,
        }),
    })
}

/// An [`ApiPath`] borrowed from the path it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts<'a> {
    /// `/apis/{g}/{v}`.
    GroupVersion {
        /// Group.
        group: &'a str,
        /// Version.
        version: &'a str,
    },
    /// A collection, an object or an object's status or log.
    Resource {
        /// Group.
        group: &'a str,
        /// Version.
        version: &'a str,
        /// The kind's plural.
        plural: &'a str,
        /// The namespace, if the path has one.
        namespace: Option<&'a str>,
        /// The object name.
        name: Option<&'a str>,
        /// What is addressed.
        target: Target,
    },
}

/// Parses the path after `/apis/` without copying it (every request is parsed for
/// authorization); `None` when it has no meaning.
pub fn parse_parts(rest: &str) -> Option<Parts<'_>> {
    let mut segs = [""; 7];
    let mut len = 0;
    for seg in rest.trim_end_matches('/').split('/') {
        if seg.is_empty() || len == segs.len() {
            return None;
        }
        segs[len] = seg;
        len += 1;
    }
    let res = |plural, namespace, name, target| {
        Some(Parts::Resource { group: segs[0], version: segs[1], plural, namespace, name, target })
    };
    match len {
        2 => Some(Parts::GroupVersion { group: segs[0], version: segs[1] }),
        3 => res(segs[2], None, None, Target::Collection),
        4 => res(segs[2], None, Some(segs[3]), Target::Object),
        // `namespaces/{name}/status` is the status of a Namespace, not a collection
        // of a kind called `status` inside it.
        5 if segs[2] == "namespaces" && segs[4] != "status" => res(segs[4], Some(segs[3]), None, Target::Collection),
        5 if segs[4] == "status" => res(segs[2], None, Some(segs[3]), Target::Status),
        5 if segs[4] == "log" && segs[2] != "namespaces" => res(segs[2], None, Some(segs[3]), Target::Log),
        5 if segs[4] == "scale" && segs[2] != "namespaces" => res(segs[2], None, Some(segs[3]), Target::Scale),
        5 if segs[4] == "accept" && segs[2] != "namespaces" => res(segs[2], None, Some(segs[3]), Target::Accept),
        5 if segs[4] == "decline" && segs[2] != "namespaces" => res(segs[2], None, Some(segs[3]), Target::Decline),
        5 if segs[4] == corral_api::task_report::SUBRESOURCE && segs[2] != "namespaces" => {
            res(segs[2], None, Some(segs[3]), Target::TaskStatus)
        }
        6 if segs[2] == "namespaces" => res(segs[4], Some(segs[3]), Some(segs[5]), Target::Object),
        7 if segs[2] == "namespaces" && segs[6] == "status" => {
            res(segs[4], Some(segs[3]), Some(segs[5]), Target::Status)
        }
        7 if segs[2] == "namespaces" && segs[6] == "log" => res(segs[4], Some(segs[3]), Some(segs[5]), Target::Log),
        7 if segs[2] == "namespaces" && segs[6] == "scale" => res(segs[4], Some(segs[3]), Some(segs[5]), Target::Scale),
        7 if segs[2] == "namespaces" && segs[6] == "trigger" => {
            res(segs[4], Some(segs[3]), Some(segs[5]), Target::Trigger)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(rest: &str) -> ResourcePath {
        match parse(rest) {
            Some(ApiPath::Resource(r)) => r,
            other => panic!("{rest}: {other:?}"),
        }
    }

    #[test]
    fn every_documented_shape_parses() {
        let p = r("corral.dev/v1/configmaps");
        assert_eq!((p.plural.as_str(), p.namespace, p.name, p.target), ("configmaps", None, None, Target::Collection));
        let p = r("corral.dev/v1/namespaces/web");
        assert_eq!((p.plural.as_str(), p.name.as_deref(), p.target), ("namespaces", Some("web"), Target::Object));
        let p = r("corral.dev/v1/namespaces/web/status");
        assert_eq!((p.plural.as_str(), p.name.as_deref(), p.target), ("namespaces", Some("web"), Target::Status));
        let p = r("corral.dev/v1/nodes/n1/status");
        assert_eq!((p.plural.as_str(), p.name.as_deref(), p.target), ("nodes", Some("n1"), Target::Status));
        let p = r("corral.dev/v1/namespaces/web/configmaps");
        assert_eq!(
            (p.namespace.as_deref(), p.plural.as_str(), p.target),
            (Some("web"), "configmaps", Target::Collection)
        );
        let p = r("corral.dev/v1/namespaces/web/configmaps/a");
        assert_eq!((p.namespace.as_deref(), p.name.as_deref(), p.target), (Some("web"), Some("a"), Target::Object));
        let p = r("corral.dev/v1/namespaces/web/tasks/a/log");
        assert_eq!((p.plural.as_str(), p.name.as_deref(), p.target), ("tasks", Some("a"), Target::Log));
        let p = r("corral.dev/v1/nodes/n1/taskstatus");
        assert_eq!((p.plural.as_str(), p.name.as_deref(), p.target), ("nodes", Some("n1"), Target::TaskStatus));
        let p = r("corral.dev/v1/namespaces/web/syncs/app/trigger");
        assert_eq!((p.plural.as_str(), p.name.as_deref(), p.target), ("syncs", Some("app"), Target::Trigger));
        let p = r("corral.dev/v1/namespaces/web/configmaps/a/status");
        assert_eq!((p.namespace.as_deref(), p.name.as_deref(), p.target), (Some("web"), Some("a"), Target::Status));
        assert_eq!(
            parse("corral.dev/v1"),
            Some(ApiPath::GroupVersion { group: "corral.dev".into(), version: "v1".into() })
        );
    }

    #[test]
    fn meaningless_paths_are_rejected() {
        for p in ["", "corral.dev", "corral.dev//configmaps", "g/v/a/b/c/d", "g/v/namespaces/ns/cm/a/spec", "g/v/x/y/z"]
        {
            assert_eq!(parse(p), None, "{p}");
        }
    }
}
