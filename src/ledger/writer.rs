//! The single writer thread: records arrive over a channel and are committed in batches
//! (group commit), one transaction per batch.
//!
//! A batch is committed when `max_batch` records wait, when `flush_interval` has passed since
//! its first record, on [`Msg::Flush`] and on [`Msg::Close`]. While a batch is open the
//! thread sleeps parked rather than on the channel, so a record costs its sender a queue
//! push and no wake-up; senders unpark it for a flush, a close and every
//! [`SLICE`]-th record. Each time it wakes, the thread inserts what has arrived into the
//! batch's open transaction, so the work of a batch is spread over its interval instead of
//! being done in one burst at the commit, which would hold a core for milliseconds and delay
//! the requests waiting for it. A failed commit keeps the
//! records and retries with a doubling delay (capped at [`MAX_RETRY_DELAY`]); only a failure
//! of the final commit on close loses records, and that is counted and logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::record::INSERT;
use super::{LedgerError, LedgerOptions, LedgerRecord};

/// Longest wait between two attempts to commit a failing batch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// Attempts at the final commit on close before the batch is given up.
const CLOSE_ATTEMPTS: u32 = 3;
/// Senders wake the writer every this many records to insert them into the open batch.
pub(crate) const SLICE: u64 = 32;

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
        inserted: 0,
        new_rows: 0,
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
    /// How many records of `batch` are inserted in the open transaction.
    inserted: usize,
    /// How many of those were new rows (the others were duplicate ids).
    new_rows: u64,
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
                            // A failed batch waits for its retry, which inserts it anew.
                            if self.failures == 0 && self.insert_pending().is_err() {
                                let _ = self.commit();
                            }
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

    /// Inserts the records of the batch not yet inserted, opening its transaction first if
    /// needed (`BEGIN IMMEDIATE`: the write lock is taken now, not at the first insert).
    fn insert_pending(&mut self) -> rusqlite::Result<()> {
        if self.inserted == self.batch.len() {
            return Ok(());
        }
        if self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
        }
        let mut stmt = self.conn.prepare_cached(INSERT)?;
        for rec in &self.batch[self.inserted..] {
            self.new_rows += u64::from(rec.insert(&mut stmt)?);
            self.inserted += 1;
        }
        Ok(())
    }

    /// Inserts the rest of the batch and commits its transaction. On failure the
    /// transaction is rolled back, the records stay, and the next attempt (which inserts
    /// them all again) is scheduled after a doubling delay.
    fn commit(&mut self) -> Result<(), LedgerError> {
        if self.batch.is_empty() {
            self.due = None;
            return Ok(());
        }
        let written = self
            .insert_pending()
            .and_then(|()| self.conn.execute_batch("COMMIT"));
        let inserted = std::mem::take(&mut self.new_rows);
        self.inserted = 0;
        if written.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        match written {
            Ok(()) => {
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
