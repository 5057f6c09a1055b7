//! The single writer thread: records arrive over a channel and are committed in batches
//! (group commit), one transaction per batch.
//!
//! A batch is committed when `max_batch` records wait, when `flush_interval` has passed since
//! its first record, on [`Msg::Flush`] and on [`Msg::Close`]. While a batch is open the
//! thread sleeps parked rather than on the channel, so a record costs its sender a queue
//! push and no wake-up; senders unpark it for a flush, a close and every `max_batch`-th
//! record. A failed commit keeps the
//! records and retries with a doubling delay (capped at [`MAX_RETRY_DELAY`]); only a failure
//! of the final commit on close loses records, and that is counted and logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::record::INSERT;
use super::{LedgerError, LedgerOptions, LedgerRecord};

/// Longest wait between two attempts to commit a failing batch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// Attempts at the final commit on close before the batch is given up.
const CLOSE_ATTEMPTS: u32 = 3;

/// What the writer thread receives.
pub(crate) enum Msg {
    Record(Box<LedgerRecord>),
    /// Commit everything received so far, then answer.
    Flush(oneshot::Sender<Result<(), LedgerError>>),
    /// Commit everything received so far and stop.
    Close,
}

/// Counters shared between the writer and [`super::Ledger::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) committed: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) failed_commits: AtomicU64,
    pub(crate) lost: AtomicU64,
}

/// A snapshot of the writer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Rows inserted.
    pub committed_records: u64,
    /// Records ignored because their request id was already in the ledger.
    pub duplicates: u64,
    /// Transactions committed by the writer.
    pub commits: u64,
    /// Records handed to `record` and not yet committed.
    pub queued: u64,
    /// Commits that failed (their records stayed queued and were retried).
    pub failed_commits: u64,
    /// Records that could not be written: recorded after close, or still failing at close.
    pub lost: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> LedgerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LedgerStats {
            committed_records: get(&self.committed),
            duplicates: get(&self.duplicates),
            commits: get(&self.commits),
            queued: get(&self.queued),
            failed_commits: get(&self.failed_commits),
            lost: get(&self.lost),
        }
    }
}

/// Starts the writer thread; it owns `conn` and ends after [`Msg::Close`] or when every
/// sender is gone, returning the outcome of its final commit.
pub(crate) fn spawn(
    conn: Connection,
    rx: Receiver<Msg>,
    opts: LedgerOptions,
    counters: Arc<Counters>,
) -> std::io::Result<JoinHandle<Result<(), LedgerError>>> {
    let writer = Writer {
        conn,
        opts,
        counters,
        batch: Vec::with_capacity(opts.max_batch),
        due: None,
        failures: 0,
    };
    std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || {
            crate::logging::lower_thread_priority();
            writer.run(rx)
        })
}

struct Writer {
    conn: Connection,
    opts: LedgerOptions,
    counters: Arc<Counters>,
    batch: Vec<LedgerRecord>,
    /// When the current batch must be committed (or retried).
    due: Option<Instant>,
    /// Consecutive failed commits.
    failures: u32,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) -> Result<(), LedgerError> {
        let mut waiters = Vec::new();
        loop {
            let msg = match self.due {
                // Nothing waits: sleep on the channel until the first record.
                None => rx.recv().ok(),
                // A batch is open: take what has arrived, else sleep (parked, not on the
                // channel, so senders need not wake this thread for every record) until
                // it is due or a sender unparks it (flush, close, a full batch).
                Some(due) => match rx.try_recv() {
                    Ok(msg) => Some(msg),
                    Err(TryRecvError::Empty) => {
                        let now = Instant::now();
                        if now >= due {
                            let _ = self.commit();
                        } else {
                            std::thread::park_timeout(due - now);
                        }
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => None,
                },
            };
            match msg {
                Some(Msg::Record(rec)) => self.push(*rec),
                Some(Msg::Flush(reply)) => {
                    let _ = reply.send(self.commit());
                }
                Some(Msg::Close) | None => break,
            }
        }
        // Closing: take what is already in the channel, then commit it all.
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Record(rec) => self.batch.push(*rec),
                Msg::Flush(reply) => waiters.push(reply),
                Msg::Close => {}
            }
        }
        drop(rx);
        let outcome = self.commit_on_close();
        for reply in waiters {
            let copy = match &outcome {
                Ok(()) => Ok(()),
                Err(LedgerError::Commit(m)) => Err(LedgerError::Commit(m.clone())),
                Err(e) => Err(LedgerError::Commit(e.to_string())),
            };
            let _ = reply.send(copy);
        }
        outcome
    }

    fn push(&mut self, rec: LedgerRecord) {
        if self.batch.is_empty() {
            self.due = Some(Instant::now() + self.opts.flush_interval);
        }
        self.batch.push(rec);
        if self.batch.len() >= self.opts.max_batch && self.failures == 0 {
            let _ = self.commit();
        }
    }

    /// Commits the batch in one transaction. On failure the records stay and the next
    /// attempt is scheduled after a doubling delay.
    fn commit(&mut self) -> Result<(), LedgerError> {
        if self.batch.is_empty() {
            self.due = None;
            return Ok(());
        }
        match write_batch(&mut self.conn, &self.batch) {
            Ok(inserted) => {
                let n = self.batch.len() as u64;
                let c = &self.counters;
                c.committed.fetch_add(inserted, Ordering::Relaxed);
                c.duplicates.fetch_add(n - inserted, Ordering::Relaxed);
                c.commits.fetch_add(1, Ordering::Relaxed);
                c.queued.fetch_sub(n, Ordering::Relaxed);
                self.batch.clear();
                self.due = None;
                self.failures = 0;
                Ok(())
            }
            Err(e) => {
                self.failures += 1;
                self.counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                let delay = self
                    .opts
                    .flush_interval
                    .saturating_mul(1 << self.failures.min(16))
                    .min(MAX_RETRY_DELAY);
                self.due = Some(Instant::now() + delay);
                tracing::error!(
                    records = self.batch.len(),
                    failures = self.failures,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %e,
                    "Ledger commit failed; records kept for retry."
                );
                Err(LedgerError::Commit(e.to_string()))
            }
        }
    }

    /// The last commit: a few attempts, then the remaining records are counted as lost.
    fn commit_on_close(&mut self) -> Result<(), LedgerError> {
        let mut outcome = self.commit();
        for _ in 1..CLOSE_ATTEMPTS {
            if outcome.is_ok() {
                break;
            }
            std::thread::sleep(self.opts.flush_interval);
            outcome = self.commit();
        }
        if outcome.is_err() {
            let n = self.batch.len() as u64;
            self.counters.lost.fetch_add(n, Ordering::Relaxed);
            self.counters.queued.fetch_sub(n, Ordering::Relaxed);
            tracing::error!(
                records = n,
                "Ledger closed with records it could not commit."
            );
        }
        outcome
    }
}

/// Inserts `batch` in one immediate transaction; returns how many rows were new.
fn write_batch(conn: &mut Connection, batch: &[LedgerRecord]) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut inserted = 0;
    {
        let mut stmt = tx.prepare_cached(INSERT)?;
        for rec in batch {
            inserted += u64::from(rec.insert(&mut stmt)?);
        }
    }
    tx.commit()?;
    Ok(inserted)
}
