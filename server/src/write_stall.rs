//! Closing connections whose peer has stopped reading.
//!
//! A watch whose client never reads cannot fall behind without bound — the store's
//! cursor stops and the client gets `410 Gone` once it reads again — but the
//! connection itself stays: its descriptor, hyper's buffers, and the batch of frames
//! waiting to be written, which for a watch of large objects pins events the store has
//! already let go. The Kubernetes API server drops a watcher that blocks its fan-out;
//! here a connection on which nothing could be written for
//! [`ConnectionLimits::write_stall_timeout`](crate::ConnectionLimits) is closed, and
//! everything it held is freed. A client that reads again before then loses nothing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// An I/O stream whose writes fail with [`io::ErrorKind::TimedOut`] once they have
/// made no progress for the stall timeout.
pub(crate) struct StallGuard<T> {
    inner: T,
    timeout: Duration,
    /// The deadline, allocated at the first stall and re-armed at each later one (a
    /// watcher on a slow link stalls often: no allocation per stall).
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether a write is waiting, with `deadline` running for it.
    armed: bool,
    /// Counts the connections given up on.
    given_up: Counter,
    counted: bool,
}

impl<T> StallGuard<T> {
    /// Wraps `inner`, allowing writes to wait at most `timeout` for the peer; each
    /// stream given up on counts in `given_up`.
    pub(crate) fn new(inner: T, timeout: Duration, given_up: Counter) -> Self {
        StallGuard { inner, timeout, deadline: None, armed: false, given_up, counted: false }
    }

    /// On a write that must wait: arms the deadline if it is not armed, and fails
    /// once it has passed. The deadline wakes this task, so an idle connection with
    /// a full socket is noticed without another write being attempted.
    fn waiting(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        let at = Instant::now() + timeout;
        let armed = std::mem::replace(&mut self.armed, true);
        let sleep = match &mut self.deadline {
            Some(sleep) => {
                if !armed {
                    sleep.as_mut().reset(at);
                }
                sleep
            }
            none => none.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        ready!(sleep.as_mut().poll(cx));
        // The passed deadline stays armed until a write goes through, so a retry fails
        // at once; the stream is counted once.
        if !self.counted {
            self.counted = true;
            self.given_up.inc();
        }
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the peer read nothing for {} s", timeout.as_secs_f64()),
        ))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.waiting(cx).map(Err),
            done => {
                self.armed = false;
                done
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.waiting(cx).map(Err),
            done => {
                self.armed = false;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.waiting(cx).map(Err),
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Pending => self.waiting(cx).map(Err),
            done => done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn writes_fail_once_the_peer_has_read_nothing_for_the_timeout() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let given_up = Counter::default();
        let mut guarded = StallGuard::new(ours, Duration::from_secs(30), given_up.clone());
        // The peer reads the first 64 bytes, so a stall that ends is forgiven.
        guarded.write_all(&[1; 64]).await.unwrap();
        let mut got = [0; 64];
        theirs.read_exact(&mut got).await.unwrap();
        guarded.write_all(&[2; 64]).await.unwrap();
        // Now it reads nothing: the next write waits, then fails after the timeout
        // (the paused clock advances by itself once every task is waiting).
        let started = Instant::now();
        let err = guarded.write_all(&[3; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(given_up.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_within_the_timeout_is_never_cut_off() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(ours, Duration::from_secs(30), Counter::default());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0; 64];
            // Reads a little every 20 s: each write waits, none for 30 s.
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                match theirs.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        for i in 0..5u8 {
            guarded.write_all(&[i; 64]).await.unwrap();
        }
        guarded.shutdown().await.unwrap();
        drop(guarded);
        assert_eq!(reader.await.unwrap().len(), 5 * 64);
    }
}
