//! Writing: options, round trip, duplicates, group commit, flush, close and failed commits.

use super::*;
use crate::ledger::*;

#[test]
fn options_outside_their_limits_are_refused() {
    let dir = TempDir::new("options");
    for (flush_ms, max_batch) in [(0, 512), (1001, 512), (200, 0)] {
        let opts = LedgerOptions {
            flush_interval: Duration::from_millis(flush_ms),
            max_batch,
        };
        let err = Ledger::open(&dir.db(), opts).expect_err("refused");
        assert!(matches!(err, LedgerError::Options(_)), "{err}");
    }
    assert!(!dir.db().exists(), "nothing is created for refused options");
}

#[test]
fn open_creates_missing_directories() {
    let dir = TempDir::new("mkdir");
    let path = dir.path().join("a/b/ledger.sqlite3");
    let ledger = Ledger::open(&path, LedgerOptions::default()).unwrap();
    assert!(path.exists());
    assert_eq!(ledger.path(), path);
}

#[tokio::test]
async fn record_round_trips_every_field() {
    let dir = TempDir::new("roundtrip");
    let ledger = open(&dir, 200, 512);
    let full = LedgerRecord {
        id: "req-full".into(),
        at_ms: 1_750_000_000_123,
        day: DAY.into(),
        budget: "team-a".into(),
        key_id: Some("k-7".into()),
        requested_model: "auto".into(),
        tier: Some("large".into()),
        route_reason: "header: x-tier, \"quoted\"\nsecond line".into(),
        served_model: Some("claude-sonnet".into()),
        provider: Some("anthropic".into()),
        attempts: "openai:429 -> anthropic:200".into(),
        attempt_count: 2,
        input_tokens: 1_234,
        output_tokens: 567,
        cached_input_tokens: 89,
        cache_write_tokens: 10,
        estimated: true,
        cost_nanos: 4_321_000,
        price_version: "2025-06-01#3".into(),
        latency_ms: 2_500,
        ttft_ms: Some(310),
        status: 200,
        error_code: Some("none".into()),
        streamed: true,
    };
    let bare = LedgerRecord {
        id: "req-bare".into(),
        at_ms: 1_750_000_000_000,
        key_id: None,
        tier: None,
        served_model: None,
        provider: None,
        attempts: String::new(),
        attempt_count: 0,
        input_tokens: 0,
        output_tokens: 0,
        estimated: false,
        cost_nanos: 0,
        ttft_ms: None,
        status: 503,
        error_code: Some("no_upstream".into()),
        streamed: false,
        ..full.clone()
    };
    ledger.record(full.clone());
    ledger.record(bare.clone());
    ledger.flush().await.unwrap();
    assert_eq!(all(&ledger), vec![full, bare]);
}

#[tokio::test]
async fn duplicate_ids_are_written_once_and_the_first_wins() {
    let dir = TempDir::new("dup");
    let ledger = open(&dir, 200, 512);
    ledger.record(record("r1", "b", DAY, 100));
    ledger.record(record("r1", "b", DAY, 999));
    ledger.flush().await.unwrap();
    ledger.record(record("r1", "b", DAY, 555));
    ledger.flush().await.unwrap();
    assert_eq!(ledger.sum_cost("b", DAY).unwrap(), 100);
    let stats = ledger.stats();
    assert_eq!((stats.committed_records, stats.duplicates), (1, 2));
    assert_eq!(stats.queued, 0);
}

#[tokio::test]
async fn group_commit_turns_many_records_into_few_transactions() {
    let dir = TempDir::new("group");
    let ledger = open(&dir, 1000, 100);
    for i in 0..1_050 {
        ledger.record(record(&format!("r{i}"), "b", DAY, 1));
    }
    ledger.flush().await.unwrap();
    let stats = ledger.stats();
    assert_eq!(stats.committed_records, 1_050);
    // Ten full batches and the remaining 50 on flush; a flush-interval deadline passing on a
    // slow machine can split one batch more.
    assert!(
        (11..=13).contains(&stats.commits),
        "commits = {}",
        stats.commits
    );
}

#[tokio::test]
async fn partial_batch_is_committed_after_the_flush_interval_without_flush() {
    let dir = TempDir::new("interval");
    let ledger = open(&dir, 50, 512);
    for i in 0..3 {
        ledger.record(record(&format!("r{i}"), "b", DAY, 7));
    }
    let mut waited = Duration::ZERO;
    while ledger.stats().committed_records < 3 {
        assert!(waited < Duration::from_secs(20), "never committed");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    assert_eq!(ledger.stats().commits, 1);
    assert_eq!(ledger.sum_cost("b", DAY).unwrap(), 21);
}

#[test]
fn close_commits_queued_records_and_later_ones_are_counted_lost() {
    let dir = TempDir::new("close");
    let ledger = open(&dir, 1000, 512);
    let other = ledger.clone();
    for i in 0..10 {
        ledger.record(record(&format!("r{i}"), "b", DAY, 3));
    }
    ledger.close().unwrap();
    assert_eq!(other.stats().committed_records, 10);
    other.record(record("late", "b", DAY, 3));
    assert_eq!(other.stats().lost, 1);
    assert!(other.close().is_ok(), "closing twice is harmless");
    assert_eq!(other.sum_cost("b", DAY).unwrap(), 30);
}

/// Makes every insert into `requests` fail until `allow_inserts` runs.
pub(super) fn refuse_inserts(dir: &TempDir) {
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON requests BEGIN SELECT RAISE(ABORT, 'refused'); END;",
    )
    .unwrap();
}

pub(super) fn allow_inserts(dir: &TempDir) {
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.execute_batch("DROP TRIGGER refuse").unwrap();
}

#[tokio::test]
async fn failed_commit_keeps_the_records_and_a_later_commit_writes_them() {
    let dir = TempDir::new("retry");
    let ledger = open(&dir, 20, 512);
    refuse_inserts(&dir);
    for i in 0..5 {
        ledger.record(record(&format!("r{i}"), "b", DAY, 2));
    }
    let err = ledger.flush().await.unwrap_err();
    assert!(matches!(err, LedgerError::Commit(_)), "{err}");
    let stats = ledger.stats();
    assert!(stats.failed_commits >= 1);
    assert_eq!((stats.queued, stats.committed_records), (5, 0));
    allow_inserts(&dir);
    ledger.flush().await.unwrap();
    assert_eq!(ledger.sum_cost("b", DAY).unwrap(), 10);
    assert_eq!(ledger.stats().queued, 0);
}

#[test]
fn close_that_cannot_commit_reports_the_error_and_counts_the_records_lost() {
    let dir = TempDir::new("closefail");
    let ledger = open(&dir, 10, 512);
    refuse_inserts(&dir);
    for i in 0..4 {
        ledger.record(record(&format!("r{i}"), "b", DAY, 2));
    }
    assert!(matches!(ledger.close(), Err(LedgerError::Commit(_))));
    let stats = ledger.stats();
    assert_eq!(
        (stats.lost, stats.queued, stats.committed_records),
        (4, 0, 0)
    );
}

#[test]
fn close_racing_with_recording_accounts_for_every_record() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 5_000;
    let dir = TempDir::new("closerace");
    let ledger = open(&dir, 5, 64);
    let start = std::sync::Arc::new(std::sync::Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ledger, start) = (ledger.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for i in 0..PER_THREAD {
                    ledger.record(record(&format!("t{t}-{i}"), "b", DAY, 1));
                }
            })
        })
        .collect();
    start.wait();
    while ledger.stats().committed_records == 0 {
        std::thread::yield_now();
    }
    ledger.close().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    let stats = ledger.stats();
    assert_eq!(stats.queued, 0, "{stats:?}");
    assert_eq!(
        stats.committed_records + stats.lost,
        (THREADS * PER_THREAD) as u64,
        "{stats:?}"
    );
    assert_eq!(ledger.sum_cost("b", DAY).unwrap(), stats.committed_records);
}

#[tokio::test]
async fn flush_after_close_reports_closed() {
    let dir = TempDir::new("flushclosed");
    let ledger = open(&dir, 200, 512);
    ledger.shutdown().await.unwrap();
    assert!(matches!(ledger.flush().await, Err(LedgerError::Closed)));
}

#[tokio::test]
async fn values_above_i64_max_are_clamped_not_wrapped() {
    let dir = TempDir::new("clamp");
    let ledger = open(&dir, 200, 512);
    let mut rec = record("huge", "b", DAY, u64::MAX);
    rec.output_tokens = u64::MAX - 1;
    ledger.record(rec);
    ledger.flush().await.unwrap();
    let back = &all(&ledger)[0];
    assert_eq!(back.cost_nanos, i64::MAX as u64);
    assert_eq!(back.output_tokens, i64::MAX as u64);
}

#[tokio::test]
async fn negative_stored_integer_is_an_error_on_read() {
    let dir = TempDir::new("negative");
    let ledger = open(&dir, 200, 512);
    ledger.record(record("r", "b", DAY, 1));
    ledger.flush().await.unwrap();
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.execute("UPDATE requests SET cost_nanos = -5", [])
        .unwrap();
    let err = ledger.sum_cost("b", DAY).unwrap_err();
    assert!(matches!(err, LedgerError::Sqlite(_)), "{err}");
    assert!(ledger.recent(&RecentFilter::default()).is_err());
}
