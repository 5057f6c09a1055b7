//! Rate-limit cells in this process (embedded mode, and cluster mode while Redis cannot be
//! reached under `redis_failure = "fail_open"`), decided by the `governor` crate's GCRA.
//!
//! governor keeps one limit per limiter and commits each decision on its own, while a
//! request here takes from several cells (a key's and its budget's, requests and tokens) all
//! or nothing, and has its token cells corrected once its real usage is known. So each
//! cell's state, its theoretical arrival time (TAT, nanoseconds since the epoch), lives in
//! one map behind one lock, and each cell of a request is decided by a one-shot governor
//! limiter: `Quota::per_minute(limit)` (a burst of the whole limit, one unit back every
//! `60 s / limit`) on a [`StagedCell`] that hands governor the cell's TAT relative to a
//! clock frozen at the request's instant and only records the TAT governor would set. The
//! recorded TATs are written back only when every cell admitted. Corrections
//! ([`LocalCells::adjust`]) move the stored TAT directly: governor has no refunds.
//!
//! governor counts `60 s / limit` per unit in whole nanoseconds; the Redis script
//! (`gcra.rs`) counts `n × 60 s / limit` per take in whole microseconds. Both admit a burst
//! of exactly `limit` units and refill one every `60 s / limit`, so a replica that falls back
//! here enforces the limit Redis did; they can differ only at instants within rounding
//! (microseconds; tens of them for takes of many thousand tokens) of a boundary. Limits above `u32::MAX` per minute, governor's largest
//! burst, are enforced as `u32::MAX` (budget files stop at 10⁹ anyway).

use std::cell::Cell;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use governor::Quota;
use parking_lot::Mutex;

use super::{gcra, Correction, Take, Verdict};

/// Backlogs handed to governor stop here (about 146 years): far beyond any wait, and
/// governor's sums on it stay within `u64`.
const MAX_BACKLOG_NS: u64 = 1 << 62;

/// The cells of one gateway (embedded mode, or cluster mode while Redis is away).
#[derive(Debug, Default)]
pub struct LocalCells {
    inner: Mutex<Cells>,
}

#[derive(Debug, Default)]
struct Cells {
    /// TAT per cell name, nanoseconds since the epoch.
    tat: HashMap<String, i128>,
    /// Size above which idle (full) cells are dropped.
    prune_at: usize,
}

impl LocalCells {
    /// At `now` (nanoseconds since the epoch): if every cell admits its take, takes them all.
    /// Returns whether it did, and each cell's verdict (after the take if it did, else
    /// before it).
    pub fn take(&self, now: i128, takes: &[Take<'_>]) -> (bool, Vec<Verdict>) {
        let mut c = self.inner.lock();
        let staged: Vec<Staged> = takes
            .iter()
            .map(|t| {
                let tat = c.tat.get(t.name).copied().unwrap_or(now);
                Staged::decide(t.limit, t.cost, backlog(tat, now))
            })
            .collect();
        let ok = staged.iter().all(|s| s.admits);
        if ok {
            for (t, s) in takes.iter().zip(&staged) {
                if let Some((after, _)) = s.proposed {
                    c.tat
                        .insert(t.name.to_string(), now + i128::from(after.as_u64()));
                }
            }
            if c.tat.len() > c.prune_at {
                c.tat.retain(|_, t| *t > now);
                c.prune_at = (c.tat.len() * 2).max(1024);
            }
        }
        let verdicts = staged.iter().map(|s| s.verdict(ok)).collect();
        (ok, verdicts)
    }

    /// At `now`: corrects each cell (name, limit) by `correction`, never behind now.
    pub fn adjust(&self, now: i128, cells: &[(&str, u64)], correction: Correction) {
        let mut c = self.inner.lock();
        for (name, limit) in cells {
            let tat = c.tat.get(*name).map_or(now, |t| (*t).max(now));
            let tat = match correction {
                Correction::Charge(units) => tat + weight(*limit, units),
                Correction::Refund(units) => tat - weight(*limit, units),
            };
            if tat > now {
                c.tat.insert((*name).to_string(), tat);
            } else {
                c.tat.remove(*name);
            }
        }
    }
}

/// governor's quota for `limit` per minute: a burst of the whole limit (at most
/// `u32::MAX`), one unit back every `60 s / limit`. `None` for a limit of 0.
fn quota(limit: u64) -> Option<Quota> {
    let burst = u32::try_from(limit).unwrap_or(u32::MAX);
    NonZeroU32::new(burst).map(Quota::per_minute)
}

/// A cell's backlog (its TAT relative to `now`), as governor takes it.
fn backlog(tat: i128, now: i128) -> Nanos {
    let ns = (tat - now).clamp(0, i128::from(MAX_BACKLOG_NS));
    Nanos::from(ns as u64)
}

/// How far `units` move the TAT of a cell with `limit` per minute: governor's interval per
/// unit times `units`, capped like the Redis path's increments (`gcra::increment`).
fn weight(limit: u64, units: u64) -> i128 {
    let cap = u128::from(gcra::MAX_INCREMENT_US.unsigned_abs()) * 1000;
    let ns = match quota(limit) {
        Some(q) => (q.replenish_interval().as_nanos() * u128::from(units)).min(cap),
        None => cap,
    };
    ns as i128
}

/// governor's clock for one decision: stopped at the request's instant, which is its zero
/// (the [`StagedCell`] holds the TAT relative to it).
#[derive(Debug, Clone, Copy)]
struct FrozenClock;

impl governor::clock::Clock for FrozenClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(0)
    }
}

/// governor's state store for one decision: the cell's TAT relative to the frozen now, and
/// the TAT governor would replace it with, recorded instead of committed.
#[derive(Debug)]
struct StagedCell {
    tat: Nanos,
    proposed: Cell<Option<Nanos>>,
}

impl StateStore for StagedCell {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _key: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let (outcome, tat) = f(Some(self.tat))?;
        self.proposed.set(Some(tat));
        Ok(outcome)
    }
}

type OneShot = governor::RateLimiter<NotKeyed, StagedCell, FrozenClock, StateInformationMiddleware>;

fn one_shot(quota: Quota, backlog: Nanos) -> OneShot {
    let cell = StagedCell {
        tat: backlog,
        proposed: Cell::new(None),
    };
    governor::RateLimiter::new(quota, cell, FrozenClock)
}

/// Units left in a cell at `backlog`: what governor leaves after one more unit, plus that
/// unit; 0 when not even one fits.
fn remaining(quota: Quota, backlog: Nanos) -> u64 {
    match one_shot(quota, backlog).check() {
        Ok(state) => u64::from(state.remaining_burst_capacity()) + 1,
        Err(_) => 0,
    }
}

/// governor's decision on one cell, not yet committed.
struct Staged {
    quota: Option<Quota>,
    /// Before the take.
    backlog: Nanos,
    admits: bool,
    retry_in: Option<Duration>,
    /// When governor admitted a take: the backlog it leaves, and the units then left.
    proposed: Option<(Nanos, u64)>,
}

impl Staged {
    fn decide(limit: u64, cost: u64, backlog: Nanos) -> Staged {
        let mut staged = Staged {
            quota: quota(limit),
            backlog,
            admits: false,
            retry_in: None,
            proposed: None,
        };
        // No quota (a limit of 0) admits nothing. A cost above the burst never fits: governor
        // answers InsufficientCapacity, but only after multiplying the cost by the interval,
        // which overflows for huge costs, so it is refused before asking.
        let Some(quota) = staged.quota else {
            return staged;
        };
        if cost > u64::from(quota.burst_size().get()) {
            return staged;
        }
        let Some(n) = u32::try_from(cost).ok().and_then(NonZeroU32::new) else {
            // Nothing to take: the cell admits unless charges pushed it past its whole burst.
            let whole = quota.burst_size_replenished_in();
            let over = Duration::from(backlog).saturating_sub(whole);
            staged.admits = over.is_zero();
            staged.retry_in = Some(over);
            return staged;
        };
        let governor = one_shot(quota, backlog);
        match governor.check_n(n) {
            Ok(Ok(state)) => {
                let left = u64::from(state.remaining_burst_capacity());
                let proposed = governor.into_state_store().proposed.get();
                staged.admits = proposed.is_some();
                staged.retry_in = Some(Duration::ZERO);
                staged.proposed = proposed.map(|tat| (tat, left));
            }
            Ok(Err(not_until)) => staged.retry_in = Some(not_until.wait_time_from(Nanos::from(0))),
            // More than the whole burst: never fits.
            Err(_) => {}
        }
        staged
    }

    /// After the take when `taken`, else before it (the same when there was nothing to take).
    fn verdict(&self, taken: bool) -> Verdict {
        let (backlog, remaining) = match (taken, self.proposed) {
            (true, Some(after)) => after,
            _ => (
                self.backlog,
                self.quota.map_or(0, |q| remaining(q, self.backlog)),
            ),
        };
        Verdict {
            admits: self.admits,
            retry_in: self.retry_in,
            remaining,
            reset_in: Duration::from(backlog),
        }
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
