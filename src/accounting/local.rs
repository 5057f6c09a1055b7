//! [`LocalStore`]: budget counters in this process, for the embedded (single gateway) mode.
//!
//! Every operation takes one short lock, so the counters are exact under any concurrency.
//! Days untouched for longer than the retention (four days by default) are evicted.
//!
//! Alert claims are kept in memory only, so they hold for the life of the process. In
//! embedded mode the durable claim is a unique row in the ledger database, written by the
//! caller; this map only spares it a database round trip for claims already taken here.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::{
    next_reservation_id, BudgetStore, Reservation, ReserveOutcome, Settled, Snapshot, StoreError,
    StoreHealth,
};

/// How long an untouched day is kept, by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(4 * 24 * 3600);

type DayKey = (String, String);

struct Day {
    snap: Snapshot,
    touched: Instant,
}

struct Claim {
    token: String,
    touched: Instant,
}

#[derive(Default)]
struct Tables {
    days: HashMap<DayKey, Day>,
    claims: HashMap<(String, String, u32), Claim>,
    last_sweep: Option<Instant>,
}

/// In-process budget counters. See the module documentation.
pub struct LocalStore {
    tables: Mutex<Tables>,
    retention: Duration,
}

impl Default for LocalStore {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalStore {
    pub fn new() -> Self {
        Self::with_retention(DEFAULT_RETENTION)
    }

    /// A store that forgets days (and their alert claims) untouched for `retention`.
    pub fn with_retention(retention: Duration) -> Self {
        LocalStore {
            tables: Mutex::new(Tables::default()),
            retention,
        }
    }

    /// Runs `f` on the day's counters, creating them, and evicts stale days now and then.
    fn with_day<T>(&self, budget: &str, day: &str, f: impl FnOnce(&mut Snapshot) -> T) -> T {
        let now = Instant::now();
        let mut t = self.tables.lock();
        self.sweep(&mut t, now);
        let entry = t
            .days
            .entry((budget.to_string(), day.to_string()))
            .or_insert(Day {
                snap: Snapshot::default(),
                touched: now,
            });
        entry.touched = now;
        f(&mut entry.snap)
    }

    /// Evicts days and claims untouched for the retention, at most every quarter of it.
    fn sweep(&self, t: &mut Tables, now: Instant) {
        if t.last_sweep
            .is_some_and(|last| now.duration_since(last) < self.retention / 4)
        {
            return;
        }
        t.last_sweep = Some(now);
        let retention = self.retention;
        t.days
            .retain(|_, d| now.duration_since(d.touched) <= retention);
        t.claims
            .retain(|_, c| now.duration_since(c.touched) <= retention);
    }
}

#[async_trait::async_trait]
impl BudgetStore for LocalStore {
    async fn reserve(
        &self,
        budget: &str,
        day: &str,
        amount: u64,
        limit: u64,
        enforce: bool,
    ) -> Result<ReserveOutcome, StoreError> {
        let fits = self.with_day(budget, day, |s| {
            if enforce && s.committed().saturating_add(amount) > limit {
                return Err(*s);
            }
            s.reserved = s.reserved.saturating_add(amount);
            Ok(())
        });
        Ok(match fits {
            Ok(()) => ReserveOutcome::Reserved(Reservation::new(
                budget,
                day,
                amount,
                next_reservation_id(),
            )),
            Err(snap) => ReserveOutcome::Exceeded(snap),
        })
    }

    async fn settle(&self, r: Reservation, actual: u64) -> Result<Settled, StoreError> {
        let r = r.consume();
        Ok(self.with_day(&r.budget, &r.day, |s| {
            let spent_before = s.spent;
            s.reserved = s.reserved.saturating_sub(r.amount);
            s.spent = s.spent.saturating_add(actual);
            Settled {
                spent_before,
                spent_after: s.spent,
            }
        }))
    }

    async fn release(&self, r: Reservation) -> Result<(), StoreError> {
        let r = r.consume();
        self.with_day(&r.budget, &r.day, |s| {
            s.reserved = s.reserved.saturating_sub(r.amount);
        });
        Ok(())
    }

    async fn snapshot(&self, budget: &str, day: &str) -> Result<Snapshot, StoreError> {
        Ok(self.cached(budget, day).unwrap_or_default())
    }

    fn cached(&self, budget: &str, day: &str) -> Option<Snapshot> {
        let t = self.tables.lock();
        t.days
            .get(&(budget.to_string(), day.to_string()))
            .map(|d| d.snap)
    }

    async fn claim_alert(
        &self,
        budget: &str,
        day: &str,
        threshold: u32,
        token: &str,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut t = self.tables.lock();
        self.sweep(&mut t, now);
        let claim = t
            .claims
            .entry((budget.to_string(), day.to_string(), threshold))
            .or_insert_with(|| Claim {
                token: token.to_string(),
                touched: now,
            });
        claim.touched = now;
        Ok(claim.token == token)
    }

    /// Raises spent to `spent` (never lowers it).
    async fn seed_spent(&self, budget: &str, day: &str, spent: u64) -> Result<(), StoreError> {
        self.with_day(budget, day, |s| s.spent = s.spent.max(spent));
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            connected: true,
            ..StoreHealth::default()
        }
    }
}
