//! The response body of the simulated servers: a queue of frames sent one by one, with an
//! optional delay between them, ending cleanly or with a connection reset, and a guard that
//! tells whether the client went away before the end.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// Stream counters shared by a server and its bodies.
#[derive(Debug, Default)]
pub(crate) struct StreamCounters {
    pub open: AtomicUsize,
    pub aborted: AtomicUsize,
}

/// Counts a stream as open while it lives, and as aborted when it is dropped before its end
/// (hyper drops the body when the client disconnects).
#[derive(Debug)]
pub(crate) struct StreamGuard {
    counters: Arc<StreamCounters>,
    finished: bool,
}

impl StreamGuard {
    pub fn new(counters: Arc<StreamCounters>) -> Self {
        counters.open.fetch_add(1, Ordering::SeqCst);
        StreamGuard {
            counters,
            finished: false,
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.counters.aborted.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// How the body ends once its frames are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyEnd {
    /// A clean end (last chunk of a chunked body).
    Clean,
    /// An error, which makes hyper drop the connection without a clean end.
    Reset,
}

/// The pause before a reset, so that the frames already queued reach the client first.
const RESET_FLUSH_PAUSE: Duration = Duration::from_millis(30);

/// A response body made of frames sent in order.
pub(crate) struct SimBody {
    frames: VecDeque<Bytes>,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Pause before the first frame (a reset with nothing to send still flushes the head).
    pause_first: bool,
    end: BodyEnd,
    done: bool,
    exact_len: Option<u64>,
    guard: Option<StreamGuard>,
    /// Sent again and again once the frames are out: the body never ends.
    repeat: Option<Bytes>,
}

impl SimBody {
    /// A complete body with a `content-length`.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b: Bytes = bytes.into();
        SimBody {
            exact_len: Some(b.len() as u64),
            frames: VecDeque::from([b]),
            delay: Duration::ZERO,
            sleep: None,
            pause_first: false,
            end: BodyEnd::Clean,
            done: false,
            guard: None,
            repeat: None,
        }
    }

    /// A chunked body of `frames`, `delay` apart, ending with `end`.
    pub fn frames(frames: Vec<Bytes>, delay: Duration, end: BodyEnd) -> Self {
        SimBody {
            pause_first: end == BodyEnd::Reset && frames.is_empty(),
            frames: frames.into(),
            delay,
            sleep: None,
            end,
            done: false,
            exact_len: None,
            guard: None,
            repeat: None,
        }
    }

    /// A chunked body of `frames`, then `repeat` forever, `delay` apart.
    pub fn endless(frames: Vec<Bytes>, repeat: Bytes, delay: Duration) -> Self {
        let mut b = Self::frames(frames, delay, BodyEnd::Clean);
        b.repeat = Some(repeat);
        b
    }

    /// Attaches the open/aborted stream accounting.
    pub fn guarded(mut self, guard: StreamGuard) -> Self {
        self.guard = Some(guard);
        self
    }

    fn finish(&mut self) {
        self.done = true;
        if let Some(g) = self.guard.as_mut() {
            g.finished = true;
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.pause_first {
            this.pause_first = false;
            this.sleep = Some(Box::pin(tokio::time::sleep(RESET_FLUSH_PAUSE)));
        }
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        if this.frames.is_empty() {
            if let Some(r) = &this.repeat {
                this.frames.push_back(r.clone());
            }
        }
        if let Some(frame) = this.frames.pop_front() {
            let more = !this.frames.is_empty() || this.repeat.is_some();
            let pause = match this.end {
                _ if more => this.delay,
                BodyEnd::Reset => this.delay.max(RESET_FLUSH_PAUSE),
                BodyEnd::Clean => Duration::ZERO,
            };
            if !pause.is_zero() {
                this.sleep = Some(Box::pin(tokio::time::sleep(pause)));
            }
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        this.finish();
        match this.end {
            BodyEnd::Clean => Poll::Ready(None),
            BodyEnd::Reset => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "simulated connection reset",
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        // Only once polled to the end, so that hyper always polls the end and the guard
        // sees a finished stream.
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
