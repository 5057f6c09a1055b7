//! The durable request ledger and the alert outbox, in one SQLite file (WAL mode).
//!
//! Every request is recorded with [`Ledger::record`], which only hands the record to an
//! unbounded channel and never blocks: one writer thread (`writer.rs`) commits records in
//! batches, one transaction per batch (group commit). The channel is unbounded because a
//! bounded one must either block the request path or drop money records when the disk
//! stalls; instead its length is in [`LedgerStats::queued`] and logged when it grows past
//! 100 000. [`Ledger::flush`] waits until everything recorded before it is committed;
//! [`Ledger::close`] (or dropping the last handle) commits the rest and stops the writer,
//! for graceful shutdown. After a crash at most the last `flush_interval` of records is
//! missing, and the budget counters can be rebuilt with [`Ledger::spent_by_budget_day`].
//!
//! Reads (dashboard pages, CSV export, spend per day/model/provider/tier/budget) go through
//! a small pool of read-only connections and are blocking: call them from async code inside
//! `tokio::task::spawn_blocking`. Budget alerts are claimed exactly once per (budget, day,
//! threshold) and queued per channel in an outbox that survives restarts (`outbox.rs`).
//!
//! ```no_run
//! # async fn demo(rec: tollgate::ledger::LedgerRecord) -> Result<(), tollgate::ledger::LedgerError> {
//! use tollgate::ledger::{Ledger, LedgerOptions};
//! let ledger = Ledger::open("data/ledger.sqlite3".as_ref(), LedgerOptions::default())?;
//! ledger.record(rec);
//! ledger.flush().await?;
//! ledger.shutdown().await?;
//! # Ok(()) }
//! ```

mod csv;
mod error;
mod outbox;
mod query;
mod record;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rusqlite::Connection;
use tokio::sync::oneshot;

pub use csv::format_dollars;
pub use error::LedgerError;
pub use outbox::{AlertClaim, AlertDelivery, AlertRow, OutboxItem};
pub use query::{GroupBy, RecentFilter, TierUsage, MAX_PAGE};
pub use record::LedgerRecord;
pub use writer::LedgerStats;

use query::ReadPool;
use writer::{Counters, Msg};

/// The ledger's file name in a data directory: `Ledger::open(&dir.join(FILE_NAME), ..)`.
pub const FILE_NAME: &str = "ledger.sqlite3";

/// Queue length at which `record` warns that the writer is falling behind.
const QUEUE_WARN: u64 = 100_000;

/// How the writer batches records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerOptions {
    /// Longest time a record waits before its batch is committed; at most 1 s. This is
    /// also what a crash can lose. Default 200 ms.
    pub flush_interval: Duration,
    /// A batch is committed as soon as this many records wait. Default 512.
    pub max_batch: usize,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            flush_interval: Duration::from_millis(200),
            max_batch: 512,
        }
    }
}

impl LedgerOptions {
    fn validate(&self) -> Result<(), LedgerError> {
        if self.flush_interval.is_zero() || self.flush_interval > Duration::from_secs(1) {
            return Err(LedgerError::Options(format!(
                "flush_interval must be within (0, 1 s], got {:?}",
                self.flush_interval
            )));
        }
        if self.max_batch == 0 {
            return Err(LedgerError::Options("max_batch must be at least 1".into()));
        }
        Ok(())
    }
}

/// A handle on the ledger; cheap to clone, `Send + Sync`. The writer stops when
/// [`Ledger::close`] is called or the last handle is dropped (which commits what is queued
/// and joins the writer thread, blocking briefly).
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

// The handle is shared across tasks and threads.
const _: fn() = || {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Ledger>();
};

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.inner.path)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    path: PathBuf,
    tx: Sender<Msg>,
    writer: Mutex<Option<JoinHandle<Result<(), LedgerError>>>>,
    /// The writer thread, unparked when it must not wait for its batch to fall due.
    writer_thread: std::thread::Thread,
    max_batch: u64,
    counters: Arc<Counters>,
    /// Set by close; held for reading while a record is sent, so no record can follow
    /// the writer's `Close` message into the channel.
    closed: RwLock<bool>,
    reads: ReadPool,
    alerts: Mutex<Connection>,
}

impl Ledger {
    /// Opens or creates the ledger file at `path` (creating its directory), migrates the
    /// schema and starts the writer thread.
    pub fn open(path: &Path, opts: LedgerOptions) -> Result<Ledger, LedgerError> {
        opts.validate()?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::Directory {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let write_conn = schema::open_writer(path)?;
        let alerts = schema::open_writer(path)?;
        let reads = ReadPool::new(path.to_path_buf());
        reads.check()?;
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel();
        let handle = writer::spawn(write_conn, rx, opts, counters.clone())
            .map_err(|e| LedgerError::Task(format!("starting the ledger writer thread: {e}")))?;
        tracing::info!(path = %path.display(), ?opts, "Ledger opened.");
        Ok(Ledger {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                tx,
                writer_thread: handle.thread().clone(),
                writer: Mutex::new(Some(handle)),
                max_batch: opts.max_batch as u64,
                counters,
                closed: RwLock::new(false),
                reads,
                alerts: Mutex::new(alerts),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Queues `rec` for the writer and returns at once; never blocks. A record for an id
    /// already in the ledger is ignored when written. After [`Ledger::close`] the record
    /// cannot be written: it is counted in [`LedgerStats::lost`] and logged.
    pub fn record(&self, rec: LedgerRecord) {
        let c = &self.inner.counters;
        let closed = self.inner.closed.read();
        if *closed {
            c.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(request_id = %rec.id, "Ledger closed; record not written.");
            return;
        }
        let queued = c.queued.fetch_add(1, Ordering::Relaxed) + 1;
        if queued == QUEUE_WARN {
            tracing::warn!(queued, "Ledger writer is falling behind.");
        }
        if let Err(mpsc::SendError(Msg::Record(rec))) =
            self.inner.tx.send(Msg::Record(Box::new(rec)))
        {
            c.queued.fetch_sub(1, Ordering::Relaxed);
            c.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(request_id = %rec.id, "Ledger writer stopped; record not written.");
            return;
        }
        // The writer inserts into its open batch when woken (every `SLICE` records) and
        // commits a full one.
        if queued % writer::SLICE == 0 || queued % self.inner.max_batch == 0 {
            self.inner.writer_thread.unpark();
        }
    }

    /// Waits until every record recorded before this call is committed. An error means the
    /// commit failed; the records stay queued and the writer keeps retrying.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        let (reply, done) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Flush(reply))
            .map_err(|_| LedgerError::Closed)?;
        self.inner.writer_thread.unpark();
        done.await.map_err(|_| LedgerError::Closed)?
    }

    /// Commits everything queued, stops the writer and waits for it (blocking: from async
    /// code prefer [`Ledger::shutdown`]). Later calls return `Ok(())`; records recorded
    /// afterwards are counted as lost.
    pub fn close(&self) -> Result<(), LedgerError> {
        self.inner.close()
    }

    /// [`Ledger::close`] on a blocking thread, for graceful shutdown from async code.
    pub async fn shutdown(&self) -> Result<(), LedgerError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.close())
            .await
            .map_err(|e| LedgerError::Task(e.to_string()))?
    }

    /// The writer's counters.
    pub fn stats(&self) -> LedgerStats {
        self.inner.counters.snapshot()
    }
}

impl Inner {
    fn close(&self) -> Result<(), LedgerError> {
        // Held until the writer has stopped, so a concurrent close returns only after it.
        let mut writer = self.writer.lock();
        let Some(handle) = writer.take() else {
            return Ok(());
        };
        {
            let mut closed = self.closed.write();
            *closed = true;
            let _ = self.tx.send(Msg::Close);
            self.writer_thread.unpark();
        }
        let outcome = handle
            .join()
            .map_err(|_| LedgerError::Task("the ledger writer thread panicked".into()))?;
        tracing::info!(stats = ?self.counters.snapshot(), "Ledger closed.");
        outcome
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "Ledger close on drop failed.");
        }
    }
}
