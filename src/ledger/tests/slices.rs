//! Sliced batches: records are inserted into the open batch as they arrive (every
//! `SLICE` records) and committed together at the interval or a full batch.

use super::writing::{allow_inserts, refuse_inserts};
use super::*;
use crate::ledger::writer::SLICE;

/// Whether another connection can take the write lock right now (no waiting).
fn write_lock_free(dir: &TempDir) -> bool {
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.busy_timeout(Duration::ZERO).unwrap();
    match conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;") {
        Ok(()) => true,
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => false,
        Err(e) => panic!("{e}"),
    }
}

/// Waits (up to 10 s) until the writer holds the write lock: it has inserted a slice.
fn until_a_slice_is_inserted(dir: &TempDir) {
    let started = std::time::Instant::now();
    while write_lock_free(dir) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no slice inserted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test]
async fn records_are_inserted_before_their_batch_falls_due() {
    let dir = TempDir::new("slice");
    // A batch falls due after 1 s; a slice of records is inserted long before.
    let ledger = open(&dir, 1000, 512);
    assert!(write_lock_free(&dir));
    let started = std::time::Instant::now();
    for i in 0..SLICE {
        ledger.record(record(&format!("r{i}"), "b", DAY, 1));
    }
    until_a_slice_is_inserted(&dir);
    assert!(started.elapsed() < Duration::from_millis(900));
    // Inserted, not committed: nothing is visible or counted yet.
    assert_eq!(ledger.stats().committed_records, 0);
    assert_eq!(ledger.sum_cost("b", DAY).unwrap(), 0);
    ledger.flush().await.unwrap();
    let stats = ledger.stats();
    assert_eq!((stats.committed_records, stats.commits), (SLICE, 1));
    assert_eq!(ledger.sum_cost("b", DAY).unwrap(), SLICE);
    assert!(write_lock_free(&dir), "the commit released the lock");
}

#[tokio::test]
async fn a_refused_slice_is_retried_with_its_whole_batch() {
    let dir = TempDir::new("slicefail");
    let ledger = open(&dir, 1000, 512);
    refuse_inserts(&dir);
    let n = SLICE + 8;
    for i in 0..n {
        ledger.record(record(&format!("r{i}"), "b", DAY, 3));
    }
    // The slice's insert fails; the batch is rolled back and waits for its retry.
    let started = std::time::Instant::now();
    while ledger.stats().failed_commits == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "no failure");
        std::thread::sleep(Duration::from_millis(5));
    }
    // At the slice, not when the batch fell due.
    assert!(started.elapsed() < Duration::from_millis(900));
    assert!(write_lock_free(&dir), "the failed batch was rolled back");
    allow_inserts(&dir);
    ledger.flush().await.unwrap();
    let stats = ledger.stats();
    assert_eq!((stats.committed_records, stats.duplicates), (n, 0));
    assert_eq!(stats.queued, 0);
    assert_eq!(ledger.sum_cost("b", DAY).unwrap(), 3 * n);
}

#[test]
fn an_alert_claim_waits_for_the_open_batch_and_succeeds() {
    let dir = TempDir::new("slicealert");
    let ledger = open(&dir, 300, 512);
    for i in 0..SLICE {
        ledger.record(record(&format!("r{i}"), "b", DAY, 1));
    }
    until_a_slice_is_inserted(&dir);
    let c = super::alerts::claim("b", 50, "b-50", &["https://hook"]);
    assert!(ledger.claim_alert(&c).unwrap());
    assert_eq!(ledger.stats().committed_records, SLICE);
    assert_eq!(ledger.outbox_due(1_000, 10).unwrap().len(), 1);
}
