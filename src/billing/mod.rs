//! Billing one request: reserve its maximum cost against the caller's budget (and the
//! global one) before anything is sent, then, when it ends, price what it really used,
//! settle the reservations to that cost, write its ledger record, and claim the alerts
//! whose thresholds this settle crossed.
//!
//! The reservation makes the budget exact under concurrency: a request that cannot fit in
//! `limit − spent − reserved` is refused (or downgraded, or allowed, by the budget's
//! policy) before it costs anything, and a budget can be exceeded by at most what the
//! requests already running turned out to cost above their own estimates. Settling moves
//! the reserved estimate to the actual cost; because the store reports spending before and
//! after each settle atomically, exactly one settle crosses each threshold.

mod finish;
mod open;
mod sweep;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::accounting::{BudgetStore, LocalStore, Reservation, ReserveOutcome};
use crate::budget::{Budget, Policy};
use crate::clock::Clock;
use crate::error::BudgetExceeded;
use crate::ledger::Ledger;

pub use finish::{billable_usage, Finished};
pub use open::LEDGER_FILE;

/// The reservations a running request holds, one per budget it bills to.
#[derive(Debug)]
pub struct Hold {
    pub entries: Vec<(Arc<Budget>, Reservation)>,
    /// The reserved estimate, nano-dollars.
    pub estimate: u64,
}

impl Hold {
    /// The day of the caller's budget the request is billed to.
    pub fn day(&self) -> Option<&str> {
        self.entries.first().map(|(_, r)| r.day())
    }
}

/// Why a request was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// It does not fit in `budget`, whose policy is `policy`.
    Exceeded {
        detail: Box<BudgetExceeded>,
        policy: Policy,
    },
    /// The budget store cannot be used (fail-closed while Redis is down).
    Unavailable(String),
}

/// Budget state, ledger and alerting of one gateway.
pub struct Billing {
    pub store: Arc<dyn BudgetStore>,
    pub ledger: Option<Ledger>,
    pub clock: Arc<dyn Clock>,
    /// This replica's stable id when budgets are shared (cluster mode).
    pub replica: Option<String>,
    /// Wakes the alert deliverer when an alert is queued.
    pub alert_wake: Arc<Notify>,
    pub dashboard_url: Option<String>,
}

impl Billing {
    /// In-process budget counters and no ledger (tests and tools that do not record).
    pub fn in_memory(clock: Arc<dyn Clock>) -> Billing {
        Billing {
            store: Arc::new(LocalStore::new()),
            ledger: None,
            clock,
            replica: None,
            alert_wake: Arc::new(Notify::new()),
            dashboard_url: None,
        }
    }

    /// Percent of `budget`'s limit spent today, from the last known figures (no I/O), for
    /// the budget-aware routing matrix.
    pub fn percent_spent(&self, budget: &Budget) -> u32 {
        let day = budget.day_at(self.clock.now());
        let spent = self
            .store
            .cached(&budget.name, &day)
            .map(|s| s.spent)
            .unwrap_or(0);
        budget.percent(spent)
    }

    /// Reserves `estimate` against every budget in `budgets` (the caller's, then the
    /// global one). All or nothing: a refusal releases what was already reserved.
    pub async fn admit(&self, budgets: &[Arc<Budget>], estimate: u64) -> Result<Hold, Refusal> {
        let now = self.clock.now();
        let mut hold = Hold {
            entries: Vec::with_capacity(budgets.len()),
            estimate,
        };
        for b in budgets {
            let day = b.day_at(now);
            let enforce = b.policy != Policy::Allow;
            let outcome = self
                .store
                .reserve(&b.name, &day, estimate, b.limit_nanos(), enforce)
                .await;
            let refusal = match outcome {
                Ok(ReserveOutcome::Reserved(r)) => {
                    hold.entries.push((b.clone(), r));
                    continue;
                }
                Ok(ReserveOutcome::Exceeded(s)) => Refusal::Exceeded {
                    detail: Box::new(BudgetExceeded {
                        budget: b.name.clone(),
                        day,
                        timezone: b.timezone_name.clone(),
                        limit: b.limit_nanos(),
                        spent: s.spent,
                        reserved: s.reserved,
                        needed: estimate,
                    }),
                    policy: b.policy,
                },
                Err(e) => Refusal::Unavailable(e.to_string()),
            };
            self.release(hold).await;
            return Err(refusal);
        }
        Ok(hold)
    }

    /// Gives a hold back without spending anything.
    pub async fn release(&self, hold: Hold) {
        for (b, r) in hold.entries {
            if let Err(e) = self.store.release(r).await {
                tracing::error!(budget = %b.name, error = %e, "Could not release a budget reservation.");
            }
        }
    }

    /// Spending per budget is rebuilt from the ledger on start (embedded state): today's
    /// ledger total of each budget becomes its spent figure. The global budget gets the
    /// total of all budgets on its day.
    pub async fn rebuild_from_ledger(&self, budgets: &[Arc<Budget>]) -> Result<(), String> {
        let Some(ledger) = self.ledger.clone() else {
            return Ok(());
        };
        let now = self.clock.now();
        let days: Vec<(Arc<Budget>, String)> =
            budgets.iter().map(|b| (b.clone(), b.day_at(now))).collect();
        let earliest = days.iter().map(|(_, d)| d.clone()).min();
        let rows =
            tokio::task::spawn_blocking(move || ledger.spent_by_budget_day(earliest.as_deref()))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        for (b, day) in &days {
            let spent: u64 = if b.global {
                rows.iter()
                    .filter(|(_, d, _)| d == day)
                    .map(|(_, _, c)| *c)
                    .sum()
            } else {
                rows.iter()
                    .filter(|(n, d, _)| n == &b.name && d == day)
                    .map(|(_, _, c)| *c)
                    .sum()
            };
            if spent > 0 {
                self.store
                    .seed_spent(&b.name, day, spent)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(budget = %b.name, %day, spent = %crate::pricing::dollars(spent),
                    "Budget spending rebuilt from the ledger.");
            }
        }
        Ok(())
    }
}
