//! Which runtime serves a connection.
//!
//! A watch is cheap per event but not per burst: one write wakes every watcher at
//! once, and a thousand of them, or five hundred replaying the whole store after a
//! restart, fill the run queue of the runtime they share. A `/healthz` probe or a write
//! that lands behind them waits for all of them to be polled (tens of milliseconds).
//! Connections that open with a watch are therefore served on a runtime of their own,
//! so that the operating system, not the order of a run queue, shares the CPU between
//! streaming and answering: the runtime answering requests is mostly idle, and its
//! threads run as soon as they are woken.
//!
//! Where a connection goes is read from its first request line, peeked before hyper
//! reads it. HTTP/2 connections multiplex both kinds and stay on the main runtime, as
//! do HTTP/1 connections that open with anything else.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::runtime::{Handle, Runtime};

/// How a connection opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    /// With an HTTP/1 watch request.
    Watch,
    /// With anything else: a request, or the HTTP/2 preface.
    Other,
}

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Most of a request line looked at; longer ones are served as [`Opening::Other`].
const REQUEST_LINE_PEEK: usize = 4096;

/// Waits until the client has sent its first request line (or the HTTP/2 preface),
/// for at most `timeout`, and tells how the connection opens; `None` if the client
/// sent nothing in time, or closed. hyper's header-read timeout only starts once the
/// protocol is known, so a client that connects and stays silent is dropped here.
pub(crate) async fn opening(tcp: &TcpStream, timeout: Duration) -> Option<Opening> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; REQUEST_LINE_PEEK];
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return None,
        };
        if n == 0 {
            return None;
        }
        if let Some(opening) = classify(&buf[..n], n == buf.len()) {
            return Some(opening);
        }
        // A peek of bytes already there completes at once, and a timeout lets a ready
        // future finish past its deadline: without this check, a client that sent
        // part of a line and stopped (or closed) would be peeked at forever, and hold
        // up the server's graceful shutdown.
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        // Peeking again would return the same bytes at once: give the rest of the
        // line a moment to arrive.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How a connection whose first bytes are `seen` opens; `None` while that cannot be
/// told yet. `full`: no more bytes will be looked at.
fn classify(seen: &[u8], full: bool) -> Option<Opening> {
    if seen.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(seen) {
        return None;
    }
    if seen.starts_with(H2_PREFACE) {
        return Some(Opening::Other);
    }
    // Not an HTTP/1 request line at all (a TLS handshake sent to plain HTTP, as
    // registry clients try first): hyper answers it 400 and closes, at once.
    if seen.first().is_some_and(|b| !b.is_ascii_uppercase()) {
        return Some(Opening::Other);
    }
    match seen.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Some(if is_watch(&seen[..end]) { Opening::Watch } else { Opening::Other }),
        None if full => Some(Opening::Other),
        None => None,
    }
}

/// Whether an HTTP/1 request line asks for a watch (`GET …?watch=true`, or `=1`, as
/// the API accepts).
fn is_watch(line: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(line) else { return false };
    let mut parts = line.split(' ');
    let (Some("GET"), Some(target)) = (parts.next(), parts.next()) else { return false };
    let Some((_, query)) = target.split_once('?') else { return false };
    query.split('&').any(|pair| matches!(pair, "watch=true" | "watch=1"))
}

/// The runtime that serves watch connections; shut down without waiting when dropped
/// (its connections have ended by then, or are being abandoned with the server).
pub(crate) struct StreamsRuntime(Option<Runtime>);

impl StreamsRuntime {
    /// A multi-threaded runtime with a worker per core.
    pub(crate) fn new() -> std::io::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("corral-watch")
            .enable_all()
            .build()?;
        Ok(StreamsRuntime(Some(rt)))
    }

    /// Where watch connections are spawned.
    pub(crate) fn handle(&self) -> Option<&Handle> {
        self.0.as_ref().map(Runtime::handle)
    }
}

impl Drop for StreamsRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which a runtime's own thread must not do.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_requests_are_told_from_everything_else() {
        let line = |l: &str| classify(format!("{l}\r\nHost: x\r\n\r\n").as_bytes(), false);
        assert_eq!(line("GET /api/v1/namespaces/default/pods?watch=true HTTP/1.1"), Some(Opening::Watch));
        assert_eq!(line("GET /apis/corral.dev/v1/tasks?resourceVersion=5&watch=1 HTTP/1.1"), Some(Opening::Watch));
        assert_eq!(line("GET /apis/corral.dev/v1/tasks?watch=false HTTP/1.1"), Some(Opening::Other));
        assert_eq!(line("GET /apis/corral.dev/v1/tasks?watchx=true HTTP/1.1"), Some(Opening::Other));
        assert_eq!(line("POST /apis/corral.dev/v1/tasks?watch=true HTTP/1.1"), Some(Opening::Other));
        assert_eq!(line("GET /healthz HTTP/1.1"), Some(Opening::Other));
        assert_eq!(classify(H2_PREFACE, false), Some(Opening::Other));
    }

    #[test]
    fn an_opening_is_told_only_once_its_line_is_complete() {
        assert_eq!(classify(b"PRI * HT", false), None, "part of the HTTP/2 preface");
        assert_eq!(classify(b"GET /apis/corral.dev/v1/tasks?wat", false), None);
        assert_eq!(classify(b"GET /apis/corral.dev/v1/tasks?wat", true), Some(Opening::Other), "too long a line");
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x00], false), Some(Opening::Other), "a TLS ClientHello");
    }

    #[tokio::test]
    async fn a_client_that_sends_part_of_a_line_and_stops_is_dropped_at_the_deadline() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b"GET /apis/corral.dev/v1/tas").await.unwrap();
        // The bound only keeps a broken build from hanging; the deadline is 50 ms.
        let told = tokio::time::timeout(Duration::from_secs(60), opening(&server, Duration::from_millis(50))).await;
        assert_eq!(told.expect("opening() returned"), None);
    }
}
