//! The database file: connection set-up (WAL, synchronous mode, busy timeout) and the schema,
//! versioned with SQLite's `user_version` and migrated forward on open.
//!
//! `synchronous=FULL`: every commit fsyncs the write-ahead log, so a committed batch survives
//! a power loss, not only a process crash. Group commit makes that one fsync per batch (at
//! most every flush interval or `max_batch` records), which is why the cost is acceptable
//! for money records. `NORMAL` would only survive process crashes.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::LedgerError;

/// The schema version this build writes.
pub(crate) const VERSION: i64 = 1;

/// How long a statement waits for another connection's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migrations by target version: `MIGRATIONS[i]` moves the schema from `i` to `i + 1`.
const MIGRATIONS: [&str; VERSION as usize] = [V1];

const V1: &str = "
CREATE TABLE requests (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at_ms INTEGER NOT NULL,
    day TEXT NOT NULL,
    budget TEXT NOT NULL,
    key_id TEXT,
    requested_model TEXT NOT NULL,
    tier TEXT,
    route_reason TEXT NOT NULL,
    served_model TEXT,
    provider TEXT,
    attempts TEXT NOT NULL,
    attempt_count INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL,
    price_version TEXT NOT NULL,
    latency_ms INTEGER NOT NULL,
    ttft_ms INTEGER,
    status INTEGER NOT NULL,
    error_code TEXT,
    streamed INTEGER NOT NULL
);
CREATE INDEX requests_budget_day ON requests (budget, day, cost_nanos);
CREATE INDEX requests_day ON requests (day);
CREATE INDEX requests_at ON requests (at_ms, seq);

CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    budget TEXT NOT NULL,
    day TEXT NOT NULL,
    threshold INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    payload_json TEXT NOT NULL,
    claimed_at_ms INTEGER NOT NULL,
    UNIQUE (budget, day, threshold)
);
CREATE INDEX alerts_day ON alerts (day);

CREATE TABLE alert_outbox (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    channel TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    last_error TEXT,
    UNIQUE (alert_id, channel)
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_ms) WHERE delivered_at_ms IS NULL;
";

/// Opens (creating if needed) a read-write connection in WAL mode and brings the schema up
/// to [`VERSION`].
pub(crate) fn open_writer(path: &Path) -> Result<Connection, LedgerError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LedgerError::NotWal(mode));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(&conn)?;
    Ok(conn)
}

/// Opens a read-only connection to a file `open_writer` has prepared.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, LedgerError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Applies the migrations the file has not seen yet, each in its own transaction.
fn migrate(conn: &Connection) -> Result<(), LedgerError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > VERSION {
        return Err(LedgerError::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let to = from as i64 + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql} PRAGMA user_version = {to}; COMMIT;"
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
        tracing::info!(version = to, "Ledger schema migrated.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tests::TempDir;

    #[test]
    fn open_writer_sets_wal_full_and_current_version() {
        let dir = TempDir::new("pragmas");
        let conn = open_writer(&dir.db()).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "FULL is 2");
        assert_eq!(version, VERSION);
    }

    #[test]
    fn reopening_a_migrated_file_keeps_its_rows() {
        let dir = TempDir::new("reopen");
        let conn = open_writer(&dir.db()).unwrap();
        conn.execute(
            "INSERT INTO alerts (budget, day, threshold, idempotency_key, payload_json, \
             claimed_at_ms) VALUES ('b', '2025-01-01', 80, 'k', '{}', 1)",
            [],
        )
        .unwrap();
        drop(conn);
        let conn = open_writer(&dir.db()).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM alerts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn newer_schema_version_is_refused() {
        let dir = TempDir::new("newer");
        let conn = Connection::open(dir.db()).unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        drop(conn);
        let err = open_writer(&dir.db()).unwrap_err();
        assert!(matches!(err, LedgerError::SchemaTooNew { found, .. } if found == VERSION + 1));
    }

    #[test]
    fn garbage_file_is_an_error_not_a_panic() {
        let dir = TempDir::new("garbage");
        std::fs::write(dir.db(), vec![0x5a; 8192]).unwrap();
        let err = open_writer(&dir.db()).unwrap_err();
        assert!(matches!(err, LedgerError::Sqlite(_)), "{err}");
    }
}
