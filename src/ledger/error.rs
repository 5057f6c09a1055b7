//! `LedgerError`: everything that can go wrong opening, writing or reading the ledger.
//!
//! A corrupt, locked or unwritable database surfaces here as an error value; nothing in the
//! ledger panics on bad storage.

use std::path::PathBuf;

/// A ledger failure.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite refused a statement (corrupt file, locked past the busy timeout, disk full…).
    #[error("ledger database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory could not be created.
    #[error("ledger directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `LedgerOptions` outside their allowed range.
    #[error("invalid ledger options: {0}")]
    Options(String),
    /// The file holds a schema written by a newer build.
    #[error("ledger schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    /// SQLite would not switch the file to write-ahead logging.
    #[error("ledger database refused WAL mode (journal mode is `{0}`)")]
    NotWal(String),
    /// The writer could not commit a batch; the records stay queued and are retried.
    #[error("ledger commit failed, records stay queued: {0}")]
    Commit(String),
    /// The ledger was closed; nothing more can be written.
    #[error("the ledger is closed")]
    Closed,
    /// Writing an export to its destination failed.
    #[error("writing the CSV export: {0}")]
    Export(#[source] std::io::Error),
    /// An outbox id that is not in the database.
    #[error("no outbox item with id {0}")]
    UnknownOutboxItem(i64),
    /// A blocking task was cancelled or panicked.
    #[error("ledger background task: {0}")]
    Task(String),
}
