//! The resolv.conf of container tasks: the cluster DNS, searched in the task's
//! namespace first (`web` is `web.NAMESPACE.corral.`, a task `t1` is
//! `t1.NAMESPACE.task.corral.`), then the whole zone.

use std::net::{IpAddr, SocketAddr};

use crate::error::{Error, Result};
use crate::layout::TaskDir;

/// The file in a task's directory that the container sees as `/etc/resolv.conf`.
pub const FILE: &str = "resolv.conf";

/// The nameserver a resolv.conf can name for `cluster_dns`: its address when it
/// listens on port 53; none otherwise (a resolv.conf cannot carry a port), with a
/// warning saying so.
pub fn nameserver(cluster_dns: Option<SocketAddr>) -> Option<IpAddr> {
    let addr = cluster_dns?;
    if addr.port() != 53 {
        tracing::warn!(
            %addr,
            "the cluster DNS is not on port 53, and a resolv.conf cannot name a port: container tasks keep the \
             host's resolv.conf (serve the cluster DNS on port 53 with --dns-listen to give them its names)"
        );
        return None;
    }
    Some(addr.ip())
}

/// The resolv.conf of the task `namespace/name` (as `LaunchSpec::name` holds it).
pub fn content(nameserver: IpAddr, task: &str) -> String {
    let namespace = task.split_once('/').map_or("default", |(ns, _)| ns);
    format!(
        "# Written by Corral: the cluster DNS, and the search domains of namespace {namespace}.\n\
         nameserver {nameserver}\n\
         search {namespace}.corral. {namespace}.task.corral. corral.\n\
         options ndots:3\n"
    )
}

/// Writes `text` as the task's resolv.conf, which its bundle then mounts.
///
/// # Errors
/// [`Error::Io`] if it cannot be written.
pub(crate) fn write(dir: &TaskDir, text: &str) -> Result<()> {
    let path = dir.0.join(FILE);
    std::fs::write(&path, text).map_err(|e| Error::io("cannot write", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_resolves_in_its_namespace_first() {
        let text = content("127.0.0.153".parse().unwrap(), "shop/web-1");
        assert!(text.contains("nameserver 127.0.0.153\n"), "{text}");
        assert!(text.contains("search shop.corral. shop.task.corral. corral.\n"), "{text}");
        assert!(text.contains("options ndots:3\n"), "{text}");
    }

    #[test]
    fn a_cluster_dns_off_port_53_cannot_be_named() {
        assert_eq!(nameserver(Some("127.0.0.153:53".parse().unwrap())), Some("127.0.0.153".parse().unwrap()));
        assert_eq!(nameserver(Some("127.0.0.1:5353".parse().unwrap())), None);
        assert_eq!(nameserver(None), None);
    }
}
