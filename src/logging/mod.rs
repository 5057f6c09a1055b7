//! Where log lines go: a buffer in memory, written to stderr by a background thread.
//!
//! Every request ends in one access-log line. Written straight to stderr, each line is a
//! `write(2)` under stderr's lock on the request's worker thread; at thousands of requests
//! per second that was a large share of the gateway's CPU time per request. Here
//! [`BufferedWriter`] appends each formatted line to a shared buffer instead, and a thread
//! named `log-writer` writes whatever has gathered every [`FLUSH_EVERY`] (sooner once
//! [`WAKE_AT`] bytes wait) in one call. Lines are never dropped: above [`MAX_PENDING`] the
//! logging thread writes the backlog itself. Lines at `WARN` and `ERROR` are written at
//! once, after everything before them, so a problem is on screen when it happens. The
//! [`LogGuard`] returned by [`BufferedWriter::spawn`] writes the rest when it is dropped
//! (at the end of `main`); a panic writes it too.

mod fields;

pub use fields::PlainFields;

use std::io::{self, Write};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use parking_lot::Mutex;
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Buffered bytes at which the writer thread is woken early.
pub const WAKE_AT: usize = 64 * 1024;
/// Buffered bytes above which the logging thread writes the backlog itself.
pub const MAX_PENDING: usize = 4 * 1024 * 1024;

type Sink = Box<dyn Write + Send>;

struct Shared {
    pending: Mutex<Vec<u8>>,
    /// Held while writing to the sink, so lines leave in the order they were buffered.
    sink: Mutex<Sink>,
    writer: OnceLock<Thread>,
    stop: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Writes everything buffered so far to the sink.
    fn flush(&self) {
        let mut sink = self.sink.lock();
        let batch = std::mem::take(&mut *self.pending.lock());
        if !batch.is_empty() {
            // A log line that cannot be written has nowhere else to go.
            let _ = sink.write_all(&batch);
            let _ = sink.flush();
        }
    }

    fn append(&self, line: &[u8], urgent: bool) {
        let len = {
            let mut p = self.pending.lock();
            p.extend_from_slice(line);
            p.len()
        };
        if urgent || len > MAX_PENDING {
            self.flush();
        } else if len >= WAKE_AT {
            if let Some(t) = self.writer.get() {
                t.unpark();
            }
        }
    }
}

/// A `MakeWriter` for `tracing_subscriber::fmt` that buffers lines (see the module docs).
#[derive(Clone)]
pub struct BufferedWriter {
    shared: Arc<Shared>,
}

/// Writes the buffered lines and stops the writer thread when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BufferedWriter {
    /// A buffered writer to `sink`, and the guard that owns its writer thread.
    pub fn spawn(sink: impl Write + Send + 'static) -> io::Result<(BufferedWriter, LogGuard)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(WAKE_AT)),
            sink: Mutex::new(Box::new(sink)),
            writer: OnceLock::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                use std::sync::atomic::Ordering;
                lower_thread_priority();
                while !s.stop.load(Ordering::Acquire) {
                    std::thread::park_timeout(FLUSH_EVERY);
                    s.flush();
                }
            })?;
        let _ = shared.writer.set(thread.thread().clone());
        let guard = LogGuard {
            shared: shared.clone(),
            thread: Some(thread),
        };
        Ok((BufferedWriter { shared }, guard))
    }

    /// Writes everything buffered so far (also called by the panic hook).
    pub fn flush(&self) {
        self.shared.flush();
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        self.shared.flush();
    }
}

/// Lowers the calling thread's scheduling priority (nice + 10), for threads that do
/// background work (writing logs, committing the ledger): on a busy machine the kernel then
/// runs request handling first, and the background thread catches up in the gaps. Does
/// nothing where threads have no priority of their own.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take and return plain integers; on Linux a thread id
    // names one thread for PRIO_PROCESS.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (nice + 10).min(19));
    }
}

/// One event's writer: `tracing_subscriber::fmt` formats the whole line, then writes it
/// with one `write_all`.
pub struct LineWriter<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.append(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read, counting the writes it received.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut c = self.0.lock();
            c.0.extend_from_slice(buf);
            c.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            self.0.lock().1
        }
    }

    fn line(w: &BufferedWriter, level: Level, text: &str) {
        let mut lw = LineWriter {
            shared: &w.shared,
            urgent: level <= Level::WARN,
        };
        lw.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn info_lines_are_batched_into_one_write_and_keep_their_order() {
        let sink = Capture::default();
        let (w, guard) = BufferedWriter::spawn(sink.clone()).unwrap();
        // Held so the writer thread cannot interleave a flush.
        let hold = w.shared.sink.lock();
        for i in 0..100 {
            line(&w, Level::INFO, &format!("line {i}\n"));
        }
        drop(hold);
        w.flush();
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(sink.text(), expected);
        assert_eq!(sink.writes(), 1, "100 lines, one write");
        drop(guard);
    }

    #[test]
    fn the_writer_thread_writes_buffered_lines_within_the_flush_interval() {
        let sink = Capture::default();
        let (w, _guard) = BufferedWriter::spawn(sink.clone()).unwrap();
        line(&w, Level::INFO, "hello\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.text().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.text(), "hello\n");
    }

    #[test]
    fn warnings_are_written_at_once_after_the_lines_before_them() {
        let sink = Capture::default();
        let (w, _guard) = BufferedWriter::spawn(sink.clone()).unwrap();
        let hold = w.shared.sink.lock();
        line(&w, Level::INFO, "a\n");
        drop(hold);
        line(&w, Level::WARN, "b\n");
        // No waiting: the warning wrote itself and what preceded it.
        assert_eq!(sink.text(), "a\nb\n");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn background_threads_run_at_a_lower_priority() {
        let nice = || {
            // SAFETY: as in lower_thread_priority.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::getpriority(libc::PRIO_PROCESS, tid)
            }
        };
        let (before, after) = std::thread::spawn(move || {
            let before = nice();
            lower_thread_priority();
            (before, nice())
        })
        .join()
        .unwrap();
        assert_eq!(after, (before + 10).min(19));
    }

    #[test]
    fn dropping_the_guard_writes_what_is_left() {
        let sink = Capture::default();
        let (w, guard) = BufferedWriter::spawn(sink.clone()).unwrap();
        let hold = w.shared.sink.lock();
        line(&w, Level::INFO, "last words\n");
        drop(hold);
        drop(guard);
        assert_eq!(sink.text(), "last words\n");
    }

    #[test]
    fn a_large_backlog_is_written_by_the_logging_thread_and_nothing_is_lost() {
        let sink = Capture::default();
        let (w, guard) = BufferedWriter::spawn(sink.clone()).unwrap();
        let text = "x".repeat(999) + "\n";
        let n = MAX_PENDING / text.len() + 10;
        for _ in 0..n {
            line(&w, Level::INFO, &text);
        }
        assert!(w.shared.pending.lock().len() < MAX_PENDING);
        drop(guard);
        assert_eq!(sink.text().len(), n * text.len());
    }
}
