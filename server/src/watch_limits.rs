//! How many watches one client may hold open.
//!
//! Each open watch holds a task, a buffer and, while its client reads slowly, the
//! events not yet sent. Connections are capped per client (see `connections`), but one
//! HTTP/2 connection carries many watches, so watches are counted per client address
//! too. Requests that did not come over the network (the controller manager in the
//! same process) are not counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use super::error::{ApiError, ApiResult};

/// Default for [`crate::ServerConfig::max_watches_per_client`].
pub const DEFAULT_MAX_WATCHES_PER_CLIENT: usize = 4096;

/// The address a request came from, put in its extensions by the connection loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub IpAddr);

/// Open watches by client address.
#[derive(Debug)]
pub(crate) struct WatchLimits {
    max_per_client: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open watch; frees its place when the watch ends.
#[derive(Debug)]
pub(crate) struct WatchSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(n) = open.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

impl WatchLimits {
    /// At most `max_per_client` open watches per client address.
    pub(crate) fn new(max_per_client: usize) -> Self {
        WatchLimits { max_per_client, open: Arc::default() }
    }

    /// A place for one more watch of `client`, or 429 when it holds the maximum.
    pub(crate) fn admit(&self, client: Option<ClientAddr>) -> ApiResult<Option<WatchSlot>> {
        let Some(ClientAddr(ip)) = client else { return Ok(None) };
        let mut open = self.open.lock();
        let n = open.entry(ip).or_default();
        if *n >= self.max_per_client {
            return Err(ApiError::too_many_requests(format!(
                "{ip} has {} watches open, the most one client may; close some, or watch a whole \
                 collection once instead of each object",
                self.max_per_client
            )));
        }
        *n += 1;
        Ok(Some(WatchSlot { open: self.open.clone(), client: ip }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_capped_per_client_and_freed_when_they_end() {
        let limits = WatchLimits::new(2);
        let a = Some(ClientAddr([127, 0, 0, 2].into()));
        let b = Some(ClientAddr([127, 0, 0, 3].into()));
        let (w1, w2) = (limits.admit(a), limits.admit(a));
        assert!(w1.is_ok() && w2.is_ok());
        let refused = limits.admit(a).err().map(|e| (e.code.as_u16(), e.message)).unwrap_or_default();
        assert_eq!(refused.0, 429);
        assert!(refused.1.contains("127.0.0.2 has 2 watches open"), "{}", refused.1);
        assert!(limits.admit(b).is_ok_and(|s| s.is_some()), "another client is not affected");
        assert!(limits.admit(None).is_ok_and(|s| s.is_none()), "in-process requests are not counted");
        drop(w1);
        assert!(limits.admit(a).is_ok(), "an ended watch frees its place");
        drop(w2);
        assert!(limits.open.lock().is_empty());
    }
}
