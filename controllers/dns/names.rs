//! The names the cluster DNS serves, made from object names by RFC 1123 rules.
//!
//! A name is never shortened or rewritten to fit: a label longer than 63 bytes, a name
//! longer than 253, a character outside `a-z 0-9 -` (or a label starting or ending
//! with `-`) makes the name impossible, and the caller reports the [`NameError`] on
//! the object instead of serving it (Mesos-DNS cut names at 24 characters, silently,
//! and two tasks could then share one).
//!
//! The names, under the zone `corral.`:
//! - `SERVICE.NAMESPACE.corral.` — a service;
//! - `_PORT._tcp.SERVICE.NAMESPACE.corral.` (`_udp` for UDP ports) — its ports;
//! - `TASK.NAMESPACE.task.corral.` — a task;
//! - `NODE.node.corral.` — a node;
//! - `leader.corral.` — the control plane.
//!
//! `task.corral.`, `node.corral.` and `leader.corral.` are reserved: a service in a
//! namespace called `task` or `node` gets no name (it would mix with tasks' or nodes'
//! names), and a `DnsRecord` may not declare a name there.

use std::fmt;

/// The zone every name is in.
pub const ZONE: &str = "corral.";
/// Longest label (RFC 1035).
pub const MAX_LABEL: usize = 63;
/// Longest name, without its final dot (RFC 1035's 255 bytes on the wire).
pub const MAX_NAME: usize = 253;
/// The names under which only Corral makes records.
pub const RESERVED: &[&str] = &["task.corral.", "node.corral.", "leader.corral."];

/// Why a name cannot be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    /// A label is empty (two dots in a row, or an empty object name).
    EmptyLabel {
        /// The name being made.
        name: String,
    },
    /// A label is longer than 63 bytes.
    LabelTooLong {
        /// The label.
        label: String,
    },
    /// The whole name is longer than 253 bytes.
    NameTooLong {
        /// The name.
        name: String,
    },
    /// A label holds a character DNS names may not, or starts or ends with `-`.
    InvalidLabel {
        /// The label.
        label: String,
        /// What is wrong.
        why: String,
    },
    /// An absolute name outside `corral.`.
    OutsideZone {
        /// The name.
        name: String,
    },
    /// The name lies under a reserved name.
    Reserved {
        /// The name.
        name: String,
        /// What it may not be under.
        under: String,
    },
}

impl NameError {
    /// A CamelCase reason, for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            NameError::Reserved { .. } | NameError::OutsideZone { .. } => "NameReserved",
            _ => "InvalidName",
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::EmptyLabel { name } => write!(f, "{name:?} has an empty label"),
            NameError::LabelTooLong { label } => write!(
                f,
                "the DNS label {label:?} is {} characters long; DNS allows at most {MAX_LABEL} (names are never cut short: shorten the name)",
                label.len()
            ),
            NameError::NameTooLong { name } => write!(
                f,
                "the DNS name {name:?} is {} characters long; DNS allows at most {MAX_NAME} (shorten the names it is made of)",
                name.trim_end_matches('.').len()
            ),
            NameError::InvalidLabel { label, why } => write!(f, "{label:?} cannot be a DNS label: {why}"),
            NameError::OutsideZone { name } => {
                write!(
                    f,
                    "{name:?} is outside the zone {ZONE} (a relative name, without the final dot, is taken in the namespace's domain)"
                )
            }
            NameError::Reserved { name, under } => {
                write!(f, "{name:?} is under {under:?}, where only Corral makes names")
            }
        }
    }
}

/// Checks one label (RFC 1123): 1 to 63 of `a-z 0-9 -`, not starting or ending with `-`.
/// Upper-case letters are refused rather than folded, so two objects can never meet at
/// one name by case alone.
pub fn check_label(label: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel { name: label.into() });
    }
    if label.len() > MAX_LABEL {
        return Err(NameError::LabelTooLong { label: label.into() });
    }
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if let Some(bad) = label.chars().find(|c| !ok(*c)) {
        return Err(NameError::InvalidLabel {
            label: label.into(),
            why: format!("{bad:?} is not allowed (lowercase letters, digits and '-' only)"),
        });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::InvalidLabel { label: label.into(), why: "it starts or ends with '-'".into() });
    }
    Ok(())
}

/// Joins checked labels and the zone into an absolute name, checking its length.
fn join(labels: &[&str]) -> Result<String, NameError> {
    for l in labels {
        check_label(l)?;
    }
    finish(format!("{}.{ZONE}", labels.join(".")))
}

/// Checks the whole name's length.
fn finish(name: String) -> Result<String, NameError> {
    if name.trim_end_matches('.').len() > MAX_NAME {
        return Err(NameError::NameTooLong { name });
    }
    Ok(name)
}

/// Whether `namespace` may hold names (`task` and `node` are reserved).
fn check_namespace(namespace: &str) -> Result<(), NameError> {
    if namespace == "task" || namespace == "node" {
        return Err(NameError::Reserved { name: format!("{namespace}.{ZONE}"), under: format!("{namespace}.{ZONE}") });
    }
    Ok(())
}

/// `SERVICE.NAMESPACE.corral.`
pub fn service(namespace: &str, service: &str) -> Result<String, NameError> {
    check_namespace(namespace)?;
    join(&[service, namespace])
}

/// `_PORT._tcp.SERVICE.NAMESPACE.corral.` (`_udp` when `protocol` is `udp`, any case).
pub fn srv(namespace: &str, service_name: &str, port: &str, protocol: Option<&str>) -> Result<String, NameError> {
    let base = service(namespace, service_name)?;
    check_label(port)?;
    let port_label = format!("_{port}");
    if port_label.len() > MAX_LABEL {
        return Err(NameError::LabelTooLong { label: port_label });
    }
    let proto = if protocol.is_some_and(|p| p.eq_ignore_ascii_case("udp")) { "_udp" } else { "_tcp" };
    finish(format!("{port_label}.{proto}.{base}"))
}

/// `TASK.NAMESPACE.task.corral.`
pub fn task(namespace: &str, task: &str) -> Result<String, NameError> {
    join(&[task, namespace, "task"])
}

/// `NODE.node.corral.`; a node name with dots makes one label each.
pub fn node(node: &str) -> Result<String, NameError> {
    let mut labels: Vec<&str> = node.split('.').collect();
    labels.push("node");
    join(&labels)
}

/// `leader.corral.`
pub fn leader() -> String {
    format!("leader.{ZONE}")
}

/// The absolute name a `DnsRecord` in `namespace` declares as `name`: relative to
/// `NAMESPACE.corral.` (`@` is that name), or absolute (ending in a dot) inside
/// `corral.` and outside the reserved names.
pub fn user(namespace: &str, name: &str) -> Result<String, NameError> {
    check_namespace(namespace)?;
    let absolute = if name == "@" {
        format!("{namespace}.{ZONE}")
    } else if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.{namespace}.{ZONE}")
    };
    absolute_in_zone(&absolute)
}

/// Checks an absolute name inside `corral.`, outside the reserved names; `_` may
/// start a label (service labels of SRV names).
pub fn absolute_in_zone(name: &str) -> Result<String, NameError> {
    let Some(labels) = name.strip_suffix(&format!(".{ZONE}")) else {
        return Err(NameError::OutsideZone { name: name.into() });
    };
    for label in labels.split('.') {
        let plain = label.strip_prefix('_').unwrap_or(label);
        if label.len() > MAX_LABEL {
            return Err(NameError::LabelTooLong { label: label.into() });
        }
        check_label(plain).map_err(|e| match e {
            NameError::EmptyLabel { .. } => NameError::EmptyLabel { name: name.into() },
            other => other,
        })?;
    }
    if let Some(under) = RESERVED.iter().find(|r| name == **r || name.ends_with(&format!(".{r}"))) {
        return Err(NameError::Reserved { name: name.into(), under: (*under).into() });
    }
    finish(name.to_string())
}

/// The absolute form of a name a `DnsRecord` points at (a CNAME's or an SRV's
/// target): relative names are taken in `NAMESPACE.corral.`; absolute ones may be
/// anywhere (`example.com.`).
pub fn target(namespace: &str, name: &str) -> Result<String, NameError> {
    let absolute = if name.ends_with('.') { name.to_ascii_lowercase() } else { format!("{name}.{namespace}.{ZONE}") };
    let bare = absolute.trim_end_matches('.');
    for label in bare.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel { name: absolute.clone() });
        }
        if label.len() > MAX_LABEL {
            return Err(NameError::LabelTooLong { label: label.into() });
        }
    }
    finish(absolute)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_under_the_zone() {
        assert_eq!(service("shop", "web").as_deref(), Ok("web.shop.corral."));
        assert_eq!(task("shop", "web-1").as_deref(), Ok("web-1.shop.task.corral."));
        assert_eq!(node("n1").as_deref(), Ok("n1.node.corral."));
        assert_eq!(srv("shop", "web", "http", None).as_deref(), Ok("_http._tcp.web.shop.corral."));
        assert_eq!(srv("shop", "web", "dns", Some("UDP")).as_deref(), Ok("_dns._udp.web.shop.corral."));
        assert_eq!(leader(), "leader.corral.");
    }

    #[test]
    fn a_label_of_64_characters_is_refused_never_cut() {
        let long = "a".repeat(64);
        assert_eq!(task("ns", &long), Err(NameError::LabelTooLong { label: long.clone() }));
        assert!(task("ns", &"a".repeat(63)).is_ok());
        // The port label gains an underscore: 63 characters make 64.
        let e = srv("ns", "web", &"p".repeat(63), None).expect_err("too long");
        assert!(matches!(e, NameError::LabelTooLong { .. }), "{e}");
        assert!(e.to_string().contains("never cut"), "{e}");
    }

    #[test]
    fn a_name_longer_than_253_is_refused() {
        let label = "a".repeat(63);
        let name = format!("{label}.{label}.{label}.{label}");
        let e = user("ns", &name).expect_err("too long");
        assert!(matches!(e, NameError::NameTooLong { .. }), "{e}");
    }

    #[test]
    fn invalid_characters_and_case_are_refused() {
        assert!(matches!(srv("ns", "web", "HTTP", None), Err(NameError::InvalidLabel { .. })));
        assert!(matches!(srv("ns", "web", "my_port", None), Err(NameError::InvalidLabel { .. })));
        assert!(matches!(user("ns", "-x"), Err(NameError::InvalidLabel { .. })));
        assert!(matches!(user("ns", "a..b"), Err(NameError::EmptyLabel { .. })));
    }

    #[test]
    fn user_names_are_relative_to_the_namespace_or_absolute_in_the_zone() {
        assert_eq!(user("shop", "www").as_deref(), Ok("www.shop.corral."));
        assert_eq!(user("shop", "@").as_deref(), Ok("shop.corral."));
        assert_eq!(user("shop", "db.corral.").as_deref(), Ok("db.corral."));
        assert_eq!(user("shop", "_x._tcp.db.corral.").as_deref(), Ok("_x._tcp.db.corral."));
        assert!(matches!(user("shop", "example.com."), Err(NameError::OutsideZone { .. })));
        assert!(matches!(user("shop", "x.node.corral."), Err(NameError::Reserved { .. })));
        assert!(matches!(user("shop", "leader.corral."), Err(NameError::Reserved { .. })));
        assert!(matches!(service("task", "web"), Err(NameError::Reserved { .. })));
    }

    #[test]
    fn targets_may_be_outside_the_zone() {
        assert_eq!(target("shop", "example.com.").as_deref(), Ok("example.com."));
        assert_eq!(target("shop", "db").as_deref(), Ok("db.shop.corral."));
        assert!(target("shop", &"x".repeat(64)).is_err());
    }
}
