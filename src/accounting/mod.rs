//! Budget counters: how much of a budget is spent and how much is held by requests in
//! flight, per budget and day, exact to the nano-dollar under concurrency.
//!
//! Before a request is sent, the caller estimates its maximum cost and [`BudgetStore::reserve`]s
//! it; when the request completes it [`BudgetStore::settle`]s the reservation to the actual
//! cost, or [`BudgetStore::release`]s it when nothing was billed. Settling returns the spent
//! figure before and after, so the caller can tell which alert thresholds this very settle
//! crossed, and [`BudgetStore::claim_alert`] makes sure each (budget, day, threshold) alert
//! is sent once. A "day" is a string such as `2026-11-21`, computed by the caller in the
//! budget's time zone; the stores treat it as an opaque name.
//!
//! Two stores implement [`BudgetStore`]:
//! - [`LocalStore`] keeps the counters in this process (embedded mode, one gateway);
//! - [`RedisStore`] keeps them in Redis so that several gateway processes share one budget
//!   (cluster mode), with a failure policy for when Redis cannot be reached.
//!
//! All amounts are `u64` nano-dollars.

mod local;
mod reconcile;
mod redis;
mod scripts;
mod shadow;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::SystemTime;

pub use self::local::LocalStore;
pub use self::redis::{FailurePolicy, RedisOptions, RedisStore};

/// A budget's counters for one day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Settled cost.
    pub spent: u64,
    /// Sum of the reservations not yet settled or released.
    pub reserved: u64,
}

impl Snapshot {
    /// Spent plus reserved: what a new reservation is checked against.
    pub fn committed(&self) -> u64 {
        self.spent.saturating_add(self.reserved)
    }
}

/// The spent figure around one settle: a threshold `t` was crossed by this settle exactly
/// when `spent_before < t <= spent_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    pub spent_before: u64,
    pub spent_after: u64,
}

impl Settled {
    /// Whether this settle moved spent from below `threshold` to at least `threshold`.
    pub fn crossed(&self, threshold: u64) -> bool {
        self.spent_before < threshold && threshold <= self.spent_after
    }
}

/// The answer to [`BudgetStore::reserve`].
#[derive(Debug)]
pub enum ReserveOutcome {
    /// The amount is now held against the budget.
    Reserved(Reservation),
    /// The amount does not fit in what is left of the limit; nothing was held.
    Exceeded(Snapshot),
}

/// An amount held against a budget for one request.
///
/// It must be given back exactly once, to [`BudgetStore::settle`] or [`BudgetStore::release`]
/// of the store that made it. A reservation dropped without either keeps its amount reserved
/// until the day's counters expire; dropping one logs a warning.
#[derive(Debug)]
pub struct Reservation {
    budget: String,
    day: String,
    amount: u64,
    id: String,
    armed: bool,
}

impl Reservation {
    pub(crate) fn new(budget: &str, day: &str, amount: u64, id: String) -> Self {
        Reservation {
            budget: budget.to_string(),
            day: day.to_string(),
            amount,
            id,
            armed: true,
        }
    }

    pub fn budget(&self) -> &str {
        &self.budget
    }

    pub fn day(&self) -> &str {
        &self.day
    }

    /// The amount held, in nano-dollars.
    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// Unique among all reservations of all replicas.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Marks the reservation as given back: dropping it afterwards is silent.
    pub(crate) fn consume(mut self) -> ConsumedReservation {
        self.armed = false;
        ConsumedReservation {
            budget: std::mem::take(&mut self.budget),
            day: std::mem::take(&mut self.day),
            amount: self.amount,
            id: std::mem::take(&mut self.id),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.armed {
            tracing::warn!(
                budget = %self.budget,
                day = %self.day,
                amount = self.amount,
                id = %self.id,
                "Reservation dropped without settle or release; its amount stays reserved."
            );
        }
    }
}

/// The fields of a reservation being settled or released.
#[derive(Debug, Clone)]
pub(crate) struct ConsumedReservation {
    pub budget: String,
    pub day: String,
    pub amount: u64,
    pub id: String,
}

/// A budget store failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The shared store cannot be reached and the failure policy is `fail_closed`: the
    /// request cannot be checked against its budget (answer 503).
    #[error("The budget store is unavailable.")]
    Unavailable,
    /// The store's configuration is invalid (for example a malformed Redis URL).
    #[error("Invalid budget store configuration: {0}")]
    Config(String),
}

/// How a store is doing, for metrics and the admin page.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StoreHealth {
    /// The shared store answers (always true for the embedded store).
    pub connected: bool,
    /// When the current outage began.
    pub degraded_since: Option<SystemTime>,
    /// Operations and days waiting to be written to the shared store.
    pub pending_reconcile: usize,
    /// Failed or timed-out operations since start.
    pub errors_total: u64,
}

/// Budget counters shared by every request of a gateway (and, for [`RedisStore`], of every
/// replica).
#[async_trait::async_trait]
pub trait BudgetStore: Send + Sync + 'static {
    /// Atomically: when `enforce` and spent + reserved + `amount` > `limit`, answers
    /// [`ReserveOutcome::Exceeded`] with the counters seen and holds nothing; otherwise holds
    /// `amount` (reserved += amount). With `enforce` false the amount is always held (the
    /// `allow` policy: recorded, not blocked).
    async fn reserve(
        &self,
        budget: &str,
        day: &str,
        amount: u64,
        limit: u64,
        enforce: bool,
    ) -> Result<ReserveOutcome, StoreError>;

    /// Atomically: reserved -= the reservation's amount; spent += `actual`. Returns spent
    /// before and after this settle, so exactly one settle crosses each threshold.
    async fn settle(&self, r: Reservation, actual: u64) -> Result<Settled, StoreError>;

    /// Gives a reservation back without spending (the request failed before any billing).
    async fn release(&self, r: Reservation) -> Result<(), StoreError>;

    /// The current counters of `budget` on `day` (zero when never used).
    async fn snapshot(&self, budget: &str, day: &str) -> Result<Snapshot, StoreError>;

    /// The last known counters, without I/O (for the synchronous router); `None` when this
    /// store has never seen the budget on that day.
    fn cached(&self, budget: &str, day: &str) -> Option<Snapshot>;

    /// Claims the alert (budget, day, threshold) once across all replicas. `true` when this
    /// call won, and also when the claim is already held with the same `token` (a retry after
    /// a crash or a timeout), so retrying a claim is safe.
    async fn claim_alert(
        &self,
        budget: &str,
        day: &str,
        threshold: u32,
        token: &str,
    ) -> Result<bool, StoreError>;

    /// Raises spent to the ledger's figure at start-up (call it before serving traffic for
    /// that budget and day). Never lowers spent; calling it twice with one figure is a no-op.
    async fn seed_spent(&self, budget: &str, day: &str, spent: u64) -> Result<(), StoreError>;

    /// `"embedded"` or `"redis"`.
    fn backend(&self) -> &'static str;

    /// Connection state and backlog, for metrics and the admin page.
    fn health(&self) -> StoreHealth;
}

/// A reservation id unique across processes: a random per-process prefix and a counter.
pub(crate) fn next_reservation_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| fastrand::u64(..) >> 16);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:012x}{n:x}")
}
