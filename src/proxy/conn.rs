//! Per-connection guard around the public proxy app: a deadline on reading each request
//! header, and a count of open client connections for graceful shutdown.
//!
//! Pingora times out each header *read* (60 s) but not the header as a whole, so a client
//! trickling one header byte at a time could hold a connection for hours. [`GuardedApp`]
//! wraps every accepted stream in a [`HeaderDeadline`] that fails reads once the header has
//! taken longer than `client_header_timeout`: from the connection's start for its first
//! request (idle connections that never send anything are closed too), and from the first
//! byte of each later request on a kept-alive connection. The body has its own deadline (see
//! `chat::read_body`). Waiting connections cost a task and a small buffer, never a thread.
//!
//! [`ActiveConnections`] counts connections being served; after SIGTERM the server waits
//! for it to reach zero instead of sleeping through the whole grace period.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How many client connections are open on the guarded app.
#[derive(Debug, Default)]
pub struct ActiveConnections(AtomicUsize);

impl ActiveConnections {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    fn enter(self: &Arc<Self>) -> ActiveGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(self.clone())
    }
}

struct ActiveGuard(Arc<ActiveConnections>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Wraps a Pingora app: every HTTP/1 stream gets a header deadline; every connection is
/// counted in `active` while it is served.
pub struct GuardedApp<A> {
    pub inner: Arc<A>,
    pub header_timeout: Duration,
    pub active: Arc<ActiveConnections>,
}

#[async_trait]
impl<A> ServerApp for GuardedApp<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _active = self.active.enter();
        // HTTP/2 frames are binary; the header scan below only understands HTTP/1.
        let stream: Stream = if stream.selected_alpn_proto() == Some(ALPN::H2) {
            stream
        } else {
            Box::new(HeaderDeadline::new(stream, self.header_timeout))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// A stream whose reads fail with `TimedOut` once a request header has been arriving for
/// longer than the timeout. The end of a header is the first blank line (`\r\n\r\n`) after
/// the header starts; a response written (other than `1xx`) starts the wait for the next.
pub struct HeaderDeadline {
    inner: Stream,
    timeout: Duration,
    /// Armed while a header is being read.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Reading a header (rather than a body, or waiting for the response to go out).
    in_header: bool,
    /// How much of `\r\n\r\n` the bytes read so far end with.
    matched: u8,
}

impl HeaderDeadline {
    pub fn new(inner: Stream, timeout: Duration) -> Self {
        HeaderDeadline {
            inner,
            timeout,
            // The first request's clock starts at accept.
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            in_header: true,
            matched: 0,
        }
    }

    fn scan(&mut self, bytes: &[u8]) {
        if !self.in_header || bytes.is_empty() {
            return;
        }
        if self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep_until(
                Instant::now() + self.timeout,
            )));
        }
        if header_ends(&mut self.matched, bytes) {
            self.in_header = false;
            self.deadline = None;
            self.matched = 0;
        }
    }
}

/// Feeds `bytes` to a `\r\n\r\n` matcher whose progress is `matched` (0 to 3); true once
/// the blank line ending a header has been seen.
fn header_ends(matched: &mut u8, bytes: &[u8]) -> bool {
    for &b in bytes {
        *matched = match (*matched, b) {
            (0 | 2, b'\r') => *matched + 1,
            (1 | 3, b'\n') => *matched + 1,
            (_, b'\r') => 1,
            _ => 0,
        };
        if *matched == 4 {
            return true;
        }
    }
    false
}

impl fmt::Debug for HeaderDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderDeadline")
            .field("inner", &self.inner)
            .field("in_header", &self.in_header)
            .finish()
    }
}

impl AsyncRead for HeaderDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(d) = this.deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request header not received in time",
                )));
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.scan(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HeaderDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // `100 Continue` is written in the middle of a request; any other response means
        // the next bytes read start a new request.
        if !this.in_header && !buf.is_empty() && !buf.starts_with(b"HTTP/1.1 1") {
            this.in_header = true;
            this.matched = 0;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty());
        if let Some(b) = first {
            if !this.in_header && !b.starts_with(b"HTTP/1.1 1") {
                this.in_header = true;
                this.matched = 0;
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeaderDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeaderDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeaderDeadline {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeaderDeadline {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeaderDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeaderDeadline {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeaderDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_line_ends_the_header_even_split_across_reads() {
        let mut m = 0;
        assert!(!header_ends(&mut m, b"POST / HTTP/1.1\r\nHost: x\r"));
        assert!(!header_ends(&mut m, b"\n\r"));
        assert!(header_ends(&mut m, b"\n{\"body\":1}"));
        let mut m = 0;
        assert!(!header_ends(&mut m, b"GET / HTTP/1.1\r\n\r\r\n"));
        assert!(header_ends(&mut m, b"\r\n"));
    }
}
