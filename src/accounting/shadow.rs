//! What a [`RedisStore`](super::RedisStore) knows locally about each budget-day: the last
//! counters Redis answered, the effects of operations Redis has not acknowledged yet, the
//! reservations this replica holds, and what it would need to restore if Redis lost the
//! day's hash.
//!
//! A budget-day hash carries a generation (its creation time). Every settle this replica
//! saw acknowledged is counted under the generation it landed in. When a newer generation
//! appears, the hash was lost and recreated: the replica then restores as its "carry" all it
//! settled in other generations plus its seeded ledger figure, holds again the reservations
//! still in flight, and claims again the alerts it won. Other replicas do the same for
//! their own part, so Redis ends up with the sum of all parts.
//!
//! This module does no I/O; `redis.rs` and `reconcile.rs` drive it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::Snapshot;

/// (budget, day).
pub(super) type DayKey = (String, String);

/// Generation of a budget-day hash: its creation time in microseconds, sixteen digits, so
/// that string order is time order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Gen(pub String);

/// Where a reservation's amount is held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Hold {
    /// Only here: made while Redis was unreachable, or its reserve's reply was lost.
    Local,
    /// In the Redis hash of that generation.
    Redis(Gen),
}

struct Held {
    key: DayKey,
    amount: u64,
    hold: Hold,
}

/// An operation waiting for Redis. Every one is idempotent there (settles and releases by
/// reservation id, claims by token, seeds as a floor), so replaying one whose reply was lost
/// never applies it twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Pending {
    Settle {
        key: DayKey,
        id: String,
        actual: u64,
        /// The amount Redis holds for it (0 when Redis never held it).
        unhold: u64,
    },
    Release {
        key: DayKey,
        id: String,
        unhold: u64,
    },
    Claim {
        key: DayKey,
        threshold: u32,
        token: String,
    },
    Seed {
        key: DayKey,
        spent: u64,
    },
}

impl Pending {
    pub fn key(&self) -> &DayKey {
        match self {
            Pending::Settle { key, .. }
            | Pending::Release { key, .. }
            | Pending::Claim { key, .. }
            | Pending::Seed { key, .. } => key,
        }
    }
}

/// An alert claim this replica holds.
#[derive(Clone, Debug)]
struct Won {
    token: String,
    /// Generation of the day's hash when the claim was last known to be in Redis.
    asserted: Option<Gen>,
}

#[derive(Debug)]
struct Day {
    gen: Option<Gen>,
    seen: Snapshot,
    local_reserved: u64,
    pending_unhold: u64,
    pending_spent: u64,
    /// Acknowledged settles of this replica, per generation.
    confirmed: BTreeMap<Gen, u64>,
    /// The seeded ledger figure and the generation it was applied in.
    base: Option<(Gen, u64)>,
    won: HashMap<u32, Won>,
    needs_sync: bool,
    touched: Instant,
}

impl Day {
    fn new(now: Instant) -> Self {
        Day {
            gen: None,
            seen: Snapshot::default(),
            local_reserved: 0,
            pending_unhold: 0,
            pending_spent: 0,
            confirmed: BTreeMap::new(),
            base: None,
            won: HashMap::new(),
            needs_sync: false,
            touched: now,
        }
    }

    fn view(&self) -> Snapshot {
        Snapshot {
            spent: self.seen.spent.saturating_add(self.pending_spent),
            reserved: self
                .seen
                .reserved
                .saturating_add(self.local_reserved)
                .saturating_sub(self.pending_unhold),
        }
    }
}

/// How a reply's generation compares with the one known for its day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Observed {
    /// The first generation seen, or the known one: the counters were taken.
    Current,
    /// Newer than the known one: the hash was lost and recreated.
    Recreated,
    /// Older than the known one (a late reply): the counters were ignored.
    Stale,
}

/// What restoring a day needs: see [`Shadow::sync_plan`].
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SyncPlan {
    pub gen: Option<Gen>,
    /// What this replica's carry must be in `gen`.
    pub carry: u64,
    /// Reservations to hold in `gen`: (id, amount).
    pub adopt: Vec<(String, u64)>,
    /// Alert claims to assert in `gen`: (threshold, token).
    pub claims: Vec<(u32, String)>,
}

/// The local state of a `RedisStore`.
#[derive(Default)]
pub(super) struct Shadow {
    days: HashMap<DayKey, Day>,
    held: HashMap<String, Held>,
    local_holds: usize,
    pending: VecDeque<Pending>,
}

impl Shadow {
    fn day(&mut self, key: &DayKey) -> &mut Day {
        let now = Instant::now();
        let day = self
            .days
            .entry(key.clone())
            .or_insert_with(|| Day::new(now));
        day.touched = now;
        day
    }

    /// Redis's last counters plus what this replica has not written yet.
    pub fn cached(&self, key: &DayKey) -> Option<Snapshot> {
        self.days.get(key).map(Day::view)
    }

    /// The newest generation known for the day.
    pub fn gen(&self, key: &DayKey) -> Option<Gen> {
        self.days.get(key).and_then(|d| d.gen.clone())
    }

    /// Takes in counters Redis answered for the day in generation `gen`.
    pub fn observe(&mut self, key: &DayKey, gen: &Gen, snap: Snapshot) -> Observed {
        let day = self.day(key);
        let observed = match &day.gen {
            None => Observed::Current,
            Some(known) if gen == known => Observed::Current,
            Some(known) if gen > known => Observed::Recreated,
            Some(_) => return Observed::Stale,
        };
        if observed == Observed::Recreated {
            day.needs_sync = true;
        }
        day.gen = Some(gen.clone());
        day.seen = snap;
        observed
    }

    /// Records that Redis holds reservation `id` in generation `gen`.
    pub fn hold_redis(&mut self, id: String, key: DayKey, amount: u64, gen: Gen) {
        self.held.insert(
            id,
            Held {
                key,
                amount,
                hold: Hold::Redis(gen),
            },
        );
    }

    /// Holds reservation `id` here only; Redis will be asked to hold it when it answers.
    pub fn hold_local(&mut self, id: String, key: DayKey, amount: u64) {
        let day = self.day(&key);
        day.local_reserved = day.local_reserved.saturating_add(amount);
        day.needs_sync = true;
        let replaced = self.held.insert(
            id,
            Held {
                key,
                amount,
                hold: Hold::Local,
            },
        );
        if !replaced.is_some_and(|h| h.hold == Hold::Local) {
            self.local_holds += 1;
        }
    }

    /// Forgets reservation `id` as it is being settled or released; returns where it was
    /// held (`None` for an id this replica does not hold).
    pub fn take_hold(&mut self, id: &str) -> Option<Hold> {
        let held = self.held.remove(id)?;
        if held.hold == Hold::Local {
            self.local_holds = self.local_holds.saturating_sub(1);
            if let Some(day) = self.days.get_mut(&held.key) {
                day.local_reserved = day.local_reserved.saturating_sub(held.amount);
            }
        }
        Some(held.hold)
    }

    /// Records that Redis now holds reservation `id` in `gen` (after a replayed reserve).
    pub fn adopted(&mut self, id: &str, gen: &Gen) {
        let Some(held) = self.held.get_mut(id) else {
            return;
        };
        if held.hold == Hold::Local {
            self.local_holds = self.local_holds.saturating_sub(1);
            if let Some(day) = self.days.get_mut(&held.key) {
                day.local_reserved = day.local_reserved.saturating_sub(held.amount);
            }
        }
        held.hold = Hold::Redis(gen.clone());
    }

    /// Counts an acknowledged settle of `actual` in `gen`. A late one from an older
    /// generation changes what the current generation must carry.
    pub fn confirm_settle(&mut self, key: &DayKey, gen: &Gen, actual: u64) {
        let day = self.day(key);
        *day.confirmed.entry(gen.clone()).or_default() += actual;
        if day.gen.as_ref().is_some_and(|known| gen < known) {
            day.needs_sync = true;
        }
    }

    /// Records the ledger figure seeded in `gen`.
    pub fn set_base(&mut self, key: &DayKey, gen: &Gen, spent: u64) {
        let day = self.day(key);
        let spent = day.base.as_ref().map_or(spent, |(_, b)| spent.max(*b));
        day.base = Some((gen.clone(), spent));
    }

    /// All this replica has settled outside generation `gen`, plus its seeded ledger figure
    /// when that was applied before `gen`: what its carry must be in `gen`.
    pub fn carry_for(&self, key: &DayKey, gen: &Gen) -> u64 {
        let Some(day) = self.days.get(key) else {
            return 0;
        };
        let base = match &day.base {
            Some((g, spent)) if g < gen => *spent,
            _ => 0,
        };
        day.confirmed
            .iter()
            .filter(|(g, _)| *g != gen)
            .fold(base, |sum, (_, v)| sum.saturating_add(*v))
    }

    /// An alert claim won by this replica: its token, if any.
    pub fn won_claim(&self, key: &DayKey, threshold: u32) -> Option<&str> {
        self.days
            .get(key)
            .and_then(|d| d.won.get(&threshold))
            .map(|w| w.token.as_str())
    }

    /// Records an alert claim won; `in_redis` when Redis acknowledged it.
    pub fn win_claim(&mut self, key: &DayKey, threshold: u32, token: &str, in_redis: bool) {
        let day = self.day(key);
        let asserted = if in_redis { day.gen.clone() } else { None };
        day.won.insert(
            threshold,
            Won {
                token: token.to_string(),
                asserted,
            },
        );
    }

    /// Forgets a claim another replica turned out to hold.
    pub fn lose_claim(&mut self, key: &DayKey, threshold: u32) {
        if let Some(day) = self.days.get_mut(key) {
            day.won.remove(&threshold);
        }
    }

    /// What restoring the day needs now: the carry for its known generation, the
    /// reservations Redis does not hold in it, and the claims not asserted in it.
    pub fn sync_plan(&self, key: &DayKey) -> SyncPlan {
        let gen = self.gen(key);
        let carry = gen.as_ref().map_or(0, |g| self.carry_for(key, g));
        let adopt = self
            .held
            .iter()
            .filter(|(_, h)| &h.key == key)
            .filter(|(_, h)| match &h.hold {
                Hold::Local => true,
                Hold::Redis(g) => gen.as_ref().is_some_and(|known| g < known),
            })
            .map(|(id, h)| (id.clone(), h.amount))
            .collect();
        let claims = self.days.get(key).map_or_else(Vec::new, |d| {
            d.won
                .iter()
                .filter(|(_, w)| w.asserted.is_some() && w.asserted != d.gen)
                .map(|(t, w)| (*t, w.token.clone()))
                .collect()
        });
        SyncPlan {
            gen,
            carry,
            adopt,
            claims,
        }
    }

    /// Records that the claim for `threshold` is in Redis in generation `gen`.
    pub fn asserted_claim(&mut self, key: &DayKey, threshold: u32, gen: &Gen) {
        if let Some(w) = self
            .days
            .get_mut(key)
            .and_then(|d| d.won.get_mut(&threshold))
        {
            w.asserted = Some(gen.clone());
        }
    }

    /// Days to restore, clearing their marks.
    pub fn take_days_to_sync(&mut self) -> Vec<DayKey> {
        self.days
            .iter_mut()
            .filter(|(_, d)| d.needs_sync)
            .map(|(k, d)| {
                d.needs_sync = false;
                k.clone()
            })
            .collect()
    }

    /// Marks a day for restoring.
    pub fn mark_sync(&mut self, key: &DayKey) {
        self.day(key).needs_sync = true;
    }

    /// Marks every day for restoring (after an outage or a Redis restart).
    pub fn mark_all_for_sync(&mut self) {
        for day in self.days.values_mut() {
            day.needs_sync = true;
        }
    }

    /// Queues an operation for Redis; the view includes its effect meanwhile.
    pub fn queue(&mut self, op: Pending) {
        let day = self.day(op.key());
        match &op {
            Pending::Settle { actual, unhold, .. } => {
                day.pending_spent = day.pending_spent.saturating_add(*actual);
                day.pending_unhold = day.pending_unhold.saturating_add(*unhold);
            }
            Pending::Release { unhold, .. } => {
                day.pending_unhold = day.pending_unhold.saturating_add(*unhold);
            }
            Pending::Claim { .. } | Pending::Seed { .. } => {}
        }
        self.pending.push_back(op);
    }

    /// Takes up to `n` queued operations, oldest first.
    pub fn take_pending(&mut self, n: usize) -> Vec<Pending> {
        let n = n.min(self.pending.len());
        self.pending.drain(..n).collect()
    }

    /// Puts back operations that could not be written, ahead of the others.
    pub fn requeue(&mut self, ops: Vec<Pending>) {
        for op in ops.into_iter().rev() {
            self.pending.push_front(op);
        }
    }

    /// Removes a written operation's effect from the view (Redis's counters now carry it).
    pub fn written(&mut self, op: &Pending) {
        let Some(day) = self.days.get_mut(op.key()) else {
            return;
        };
        match op {
            Pending::Settle { actual, unhold, .. } => {
                day.pending_spent = day.pending_spent.saturating_sub(*actual);
                day.pending_unhold = day.pending_unhold.saturating_sub(*unhold);
            }
            Pending::Release { unhold, .. } => {
                day.pending_unhold = day.pending_unhold.saturating_sub(*unhold);
            }
            Pending::Claim { .. } | Pending::Seed { .. } => {}
        }
    }

    /// Queued operations, reservations only held here, and days to restore.
    pub fn backlog(&self) -> usize {
        self.pending.len() + self.local_holds + self.days.values().filter(|d| d.needs_sync).count()
    }

    /// Forgets days untouched for `retention` that have nothing left to write, with the
    /// reservations of theirs never given back.
    pub fn evict(&mut self, retention: Duration) {
        let now = Instant::now();
        let queued: std::collections::HashSet<&DayKey> =
            self.pending.iter().map(Pending::key).collect();
        let stale: Vec<DayKey> = self
            .days
            .iter()
            .filter(|(k, d)| {
                now.duration_since(d.touched) > retention && !d.needs_sync && !queued.contains(k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &stale {
            self.days.remove(key);
        }
        let before = self.held.len();
        self.held.retain(|_, h| self.days.contains_key(&h.key));
        if self.held.len() != before {
            self.local_holds = self.held.values().filter(|h| h.hold == Hold::Local).count();
        }
    }
}

#[cfg(test)]
#[path = "shadow_tests.rs"]
mod tests;
