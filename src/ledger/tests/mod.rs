//! Unit tests of the ledger handle, by concern: writing (options, group commit, flush,
//! close, failures), queries (dashboard reads, CSV export) and alerts (claims, outbox);
//! plus the fixtures they share with the other modules' tests.

mod alerts;
mod queries;
mod slices;
mod writing;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Ledger, LedgerOptions, LedgerRecord, RecentFilter, MAX_PAGE};

/// A unique directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tollgate-ledger-{name}-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.0.join("ledger.sqlite3")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A successful, non-streamed record with every optional field set.
pub(crate) fn record(id: &str, budget: &str, day: &str, cost_nanos: u64) -> LedgerRecord {
    LedgerRecord {
        id: id.to_string(),
        at_ms: 1_750_000_000_000,
        day: day.to_string(),
        budget: budget.to_string(),
        key_id: Some("key-1".into()),
        requested_model: "auto".into(),
        tier: Some("small".into()),
        route_reason: "classifier".into(),
        served_model: Some("gpt-4o-mini".into()),
        provider: Some("openai".into()),
        attempts: "openai/gpt-4o-mini:200".into(),
        attempt_count: 1,
        input_tokens: 120,
        output_tokens: 40,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
        estimated: false,
        cost_nanos,
        price_version: "p1".into(),
        latency_ms: 350,
        ttft_ms: None,
        status: 200,
        error_code: None,
        streamed: false,
    }
}

pub(crate) const DAY: &str = "2025-06-15";

pub(crate) fn open(dir: &TempDir, flush_ms: u64, max_batch: usize) -> Ledger {
    let opts = LedgerOptions {
        flush_interval: Duration::from_millis(flush_ms),
        max_batch,
    };
    Ledger::open(&dir.db(), opts).unwrap()
}

pub(crate) fn all(ledger: &Ledger) -> Vec<LedgerRecord> {
    let filter = RecentFilter {
        limit: MAX_PAGE,
        ..RecentFilter::default()
    };
    ledger.recent(&filter).unwrap()
}
