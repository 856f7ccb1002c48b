//! Where an agent may fetch artifacts from: not the node's own services, its cloud's
//! metadata endpoint or the private network behind it (server-side request forgery),
//! unless the agent's operator allows a range (`corral agent --artifact-allow-net`).
//!
//! Names are checked after resolution, by the resolver the HTTP client connects
//! through — so a name that resolves to a private address, or a redirect to one, is
//! refused as surely as an address written in the URL.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// An address range, `ADDRESS/PREFIX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = addr.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() { max } else { prefix.parse().map_err(|e| format!("{s:?}: {e}"))? };
        if prefix > max {
            return Err(format!("{s:?}: the prefix is longer than the address"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 address mapped into IPv6 is judged as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is one an artifact server on the internet would never have:
/// loopback, link-local (metadata services), private, shared, unspecified, multicast.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 0
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xfe00) == 0xfc00 // unique local
        }
    }
}

/// Which internal ranges an agent may still reach.
#[derive(Clone, Debug, Default)]
pub struct NetPolicy {
    /// Ranges allowed although internal.
    pub allowed: Vec<Cidr>,
}

impl NetPolicy {
    /// Why `ip` may not be fetched from, if it may not.
    pub fn refuse(&self, ip: IpAddr) -> Option<String> {
        (is_internal(ip) && !self.allowed.iter().any(|c| c.contains(ip))).then(|| {
            format!(
                "{ip} is a loopback, link-local or private address; the agent fetches artifacts only from public \
                 addresses unless its operator allows the range (corral agent --artifact-allow-net CIDR)"
            )
        })
    }
}

/// A resolver that drops the addresses the policy refuses, and fails when none is
/// left.
pub struct GuardedResolver {
    policy: Arc<NetPolicy>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<NetPolicy>) -> Self {
        GuardedResolver { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut why = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.refuse(a.ip()) {
                    Some(reason) => {
                        why = Some(reason);
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let reason = why.unwrap_or_else(|| "it resolves to no address".into());
                return Err(format!("{host}: {reason}").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The address a URL names literally, if it does (a resolver never sees those).
pub fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    url.host_str()?.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_unless_their_range_is_allowed() {
        let closed = NetPolicy::default();
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(closed.refuse(ip(internal)).is_some(), "{internal}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(closed.refuse(ip(public)).is_none(), "{public}");
        }
        let open = NetPolicy { allowed: vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()] };
        assert!(open.refuse(ip("127.0.0.2")).is_none());
        assert!(open.refuse(ip("::ffff:127.0.0.1")).is_none());
        assert!(open.refuse(ip("fd12::1")).is_none());
        assert!(open.refuse(ip("169.254.169.254")).is_some());
    }

    #[test]
    fn ranges_parse_with_or_without_a_prefix() {
        assert!("10.0.0.0/8".parse::<Cidr>().unwrap().contains(ip("10.255.0.1")));
        assert!("10.0.0.5".parse::<Cidr>().unwrap().contains(ip("10.0.0.5")));
        assert!(!"10.0.0.5".parse::<Cidr>().unwrap().contains(ip("10.0.0.6")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("1.2.3.4")));
        for bad in ["10.0.0.0/33", "x/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
