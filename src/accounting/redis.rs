//! [`RedisStore`]: budget counters in Redis, shared exactly by every gateway replica
//! (cluster mode).
//!
//! Reserve, settle, release and the start-up seed are single Lua scripts on the day's hash
//! (see `scripts.rs` for the keys); each returns the new counters, which keep
//! [`BudgetStore::cached`] fresh. Every Redis call is bounded by `op_timeout`, and
//! connecting by `connect_timeout`: the store never hangs on Redis.
//!
//! # When Redis cannot be reached
//!
//! A failed or timed-out call marks the store degraded (logged once, shown by
//! [`BudgetStore::health`]); until a background task reconnects, calls do not wait on Redis.
//! Reservations follow the [`FailurePolicy`]: `FailClosed` answers
//! [`StoreError::Unavailable`]; `FailOpen` reserves against the last counters Redis gave
//! plus this replica's own changes since, so limits still roughly apply. Under both
//! policies settles, releases and seeds are never lost: they are queued and written once
//! Redis answers again, and `FailOpen` alert claims are decided here and written later.
//!
//! A reply lost after the script ran (a timeout, a dropped connection) is safe: every
//! script applies once per reservation id, because the hash keeps an `h:<id>` field per
//! reservation (the amount while held, then `x`); a replayed settle or release finds the
//! mark and changes nothing, and a reserve arriving after its release holds nothing. The
//! cost is one small field per request in the day's hash, until the hash expires.
//!
//! # When Redis loses its data
//!
//! A Redis restarted without persistence comes back empty. Each replica keeps, per day,
//! what it has settled in each generation of the hash (the hash's creation time), its
//! seeded ledger figure, the reservations it holds and the alerts it won. When it sees a
//! newer generation (in any reply, or after a reconnect or a change of the server's run
//! id), it writes its own part back, holds its reservations again and re-claims its alerts
//! (`shadow.rs`). Once every replica has done so, spent is again the sum of all settles.
//! A replica that is not running cannot restore its part: it does so from its ledger with
//! [`BudgetStore::seed_spent`] when it starts.
//!
//! The store must be created (with [`RedisStore::connect`]) inside the Tokio runtime it will
//! be used from, which must outlive it: the connection and the background task run there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ::redis::aio::MultiplexedConnection;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::Notify;

use super::reconcile;
use super::scripts::{self, BudgetOp, FloorMode, Keys, Reply, Status};
use super::shadow::{DayKey, Gen, Hold, Observed, Pending, Shadow};
use super::{
    next_reservation_id, BudgetStore, Reservation, ReserveOutcome, Settled, Snapshot, StoreError,
    StoreHealth,
};

/// What reservations do while Redis cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Keep serving: reserve against this replica's last known counters.
    #[default]
    FailOpen,
    /// Refuse: reserve answers [`StoreError::Unavailable`].
    FailClosed,
}

impl FailurePolicy {
    pub fn as_str(&self) -> &'static str {
        match self {
            FailurePolicy::FailOpen => "fail_open",
            FailurePolicy::FailClosed => "fail_closed",
        }
    }
}

/// How to reach Redis and what to do without it.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every key (default `tollgate`).
    pub key_prefix: String,
    /// Bound of every Redis call (default 250 ms).
    pub op_timeout: Duration,
    /// Bound of one connection attempt (default 1 s).
    pub connect_timeout: Duration,
    pub failure_policy: FailurePolicy,
    /// This replica's name, stable across restarts and unique per ledger (default: the
    /// host name). Each replica's part of spent is kept under it, so that seeding from its
    /// ledger and restoring after Redis lost its data add up exactly.
    pub replica: String,
}

impl RedisOptions {
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            key_prefix: "tollgate".into(),
            op_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(1),
            failure_policy: FailurePolicy::default(),
            replica: default_replica(),
        }
    }
}

/// The host name, or `tollgate` when it cannot be read.
fn default_replica() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "tollgate".into())
}

/// The current connection, if any.
#[derive(Default)]
pub(super) struct Link {
    pub conn: Option<(u64, MultiplexedConnection)>,
    pub epoch: u64,
    pub degraded_since: Option<SystemTime>,
    pub run_id: Option<String>,
}

/// Why a call did not produce a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Miss {
    /// The store is degraded: nothing was sent.
    NotSent,
    /// Sent, but it failed or timed out: it may have run.
    Failed,
}

pub(super) struct Inner {
    pub opts: RedisOptions,
    pub client: ::redis::Client,
    pub keys: Keys,
    pub link: Mutex<Link>,
    pub shadow: Mutex<Shadow>,
    pub wake: Arc<Notify>,
    errors_total: AtomicU64,
}

impl Inner {
    /// The current connection, or `None` while degraded.
    pub fn conn(&self) -> Option<(u64, MultiplexedConnection)> {
        self.link.lock().conn.clone()
    }

    /// Records a failed call on connection `epoch`; the first failure of an epoch drops the
    /// connection and starts the outage.
    pub fn fail(&self, epoch: u64, what: &str, error: &str) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        let mut link = self.link.lock();
        if link.conn.as_ref().is_some_and(|(e, _)| *e == epoch) {
            link.conn = None;
            if link.degraded_since.is_none() {
                link.degraded_since = Some(SystemTime::now());
                tracing::warn!(
                    operation = what,
                    error,
                    policy = self.opts.failure_policy.as_str(),
                    "Redis unreachable; budget counters are degraded until it answers again."
                );
            }
        }
        drop(link);
        self.wake.notify_one();
    }

    /// Runs `f` on the current connection within `op_timeout`.
    pub async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, Miss>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        let Some((epoch, conn)) = self.conn() else {
            return Err(Miss::NotSent);
        };
        match tokio::time::timeout(self.opts.op_timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.fail(epoch, what, &e.to_string());
                Err(Miss::Failed)
            }
            Err(_) => {
                self.fail(epoch, what, "timed out");
                Err(Miss::Failed)
            }
        }
    }

    /// Runs a budget script for `key` and takes in its counters.
    pub async fn budget(&self, key: &DayKey, op: BudgetOp<'_>) -> Result<Reply, Miss> {
        let name = self.keys.budget(&key.0, &key.1);
        let known = self.shadow.lock().gen(key);
        let reply = self
            .call("budget script", |mut conn| async move {
                scripts::budget(&mut conn, &name, known.as_ref(), op).await
            })
            .await?;
        self.observe(key, &reply.gen, reply.snap);
        Ok(reply)
    }

    /// Takes in counters Redis answered; wakes the background task when they show the
    /// day's hash was lost and recreated.
    pub fn observe(&self, key: &DayKey, gen: &Gen, snap: Snapshot) {
        let observed = self.shadow.lock().observe(key, gen, snap);
        if observed == Observed::Recreated {
            tracing::debug!(
                budget = %key.0,
                day = %key.1,
                "Redis lost this budget's counters; restoring this replica's part."
            );
            self.wake.notify_one();
        }
    }

    /// Queues an operation for the background task.
    pub fn queue(&self, op: Pending) {
        self.shadow.lock().queue(op);
        self.wake.notify_one();
    }
}

/// Budget counters in Redis. See the module documentation.
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl RedisStore {
    /// Connects within `connect_timeout`. When Redis cannot be reached the store still
    /// starts, degraded, and connects later; only a malformed URL is an error.
    pub async fn connect(opts: RedisOptions) -> Result<RedisStore, StoreError> {
        let client = ::redis::Client::open(opts.url.as_str())
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let inner = Arc::new(Inner {
            keys: Keys::new(&opts.key_prefix),
            opts,
            client,
            link: Mutex::new(Link::default()),
            shadow: Mutex::new(Shadow::default()),
            wake: Arc::new(Notify::new()),
            errors_total: AtomicU64::new(0),
        });
        if let Err(error) = reconcile::connect(&inner).await {
            inner.errors_total.fetch_add(1, Ordering::Relaxed);
            inner.link.lock().degraded_since = Some(SystemTime::now());
            tracing::warn!(
                %error,
                policy = inner.opts.failure_policy.as_str(),
                "Redis unreachable at start; budget counters are degraded until it answers."
            );
        }
        reconcile::spawn(&inner);
        Ok(RedisStore { inner })
    }

    fn policy(&self) -> FailurePolicy {
        self.inner.opts.failure_policy
    }

    fn key(budget: &str, day: &str) -> DayKey {
        (budget.to_string(), day.to_string())
    }

    /// Reserves against this replica's view while Redis cannot be reached (`FailOpen`).
    fn reserve_locally(
        &self,
        key: DayKey,
        id: String,
        amount: u64,
        limit: u64,
        enforce: bool,
    ) -> ReserveOutcome {
        let mut shadow = self.inner.shadow.lock();
        let view = shadow.cached(&key).unwrap_or_default();
        if enforce && view.committed().saturating_add(amount) > limit {
            return ReserveOutcome::Exceeded(view);
        }
        shadow.hold_local(id.clone(), key.clone(), amount);
        drop(shadow);
        self.inner.wake.notify_one();
        ReserveOutcome::Reserved(Reservation::new(&key.0, &key.1, amount, id))
    }
}

#[async_trait::async_trait]
impl BudgetStore for RedisStore {
    async fn reserve(
        &self,
        budget: &str,
        day: &str,
        amount: u64,
        limit: u64,
        enforce: bool,
    ) -> Result<ReserveOutcome, StoreError> {
        let key = Self::key(budget, day);
        let id = next_reservation_id();
        let op = BudgetOp::Reserve {
            id: &id,
            amount,
            limit,
            enforce,
        };
        let miss = match self.inner.budget(&key, op).await {
            Ok(reply) if reply.status == Status::Exceeded => {
                let view = self.inner.shadow.lock().cached(&key);
                return Ok(ReserveOutcome::Exceeded(view.unwrap_or(reply.snap)));
            }
            Ok(reply) => {
                let mut shadow = self.inner.shadow.lock();
                shadow.hold_redis(id.clone(), key, amount, reply.gen);
                return Ok(ReserveOutcome::Reserved(Reservation::new(
                    budget, day, amount, id,
                )));
            }
            Err(miss) => miss,
        };
        match self.policy() {
            FailurePolicy::FailOpen => Ok(self.reserve_locally(key, id, amount, limit, enforce)),
            FailurePolicy::FailClosed => {
                if miss == Miss::Failed {
                    // The reserve may have run: give it back once Redis answers.
                    self.inner.queue(Pending::Release { key, id, unhold: 0 });
                }
                Err(StoreError::Unavailable)
            }
        }
    }

    async fn settle(&self, r: Reservation, actual: u64) -> Result<Settled, StoreError> {
        let r = r.consume();
        let key = Self::key(&r.budget, &r.day);
        let hold = self.inner.shadow.lock().take_hold(&r.id);
        let replica = self.inner.opts.replica.as_str();
        let op = BudgetOp::Settle {
            id: &r.id,
            actual,
            replica,
        };
        if let Ok(reply) = self.inner.budget(&key, op).await {
            if matches!(reply.status, Status::Ok | Status::Dup) {
                self.inner
                    .shadow
                    .lock()
                    .confirm_settle(&key, &reply.gen, actual);
                return Ok(Settled {
                    spent_before: reply.spent_before,
                    spent_after: reply.snap.spent,
                });
            }
        }
        let unhold = match hold {
            Some(Hold::Redis(_)) => r.amount,
            Some(Hold::Local) | None => 0,
        };
        let spent_before = self
            .inner
            .shadow
            .lock()
            .cached(&key)
            .unwrap_or_default()
            .spent;
        self.inner.queue(Pending::Settle {
            key,
            id: r.id,
            actual,
            unhold,
        });
        Ok(Settled {
            spent_before,
            spent_after: spent_before.saturating_add(actual),
        })
    }

    async fn release(&self, r: Reservation) -> Result<(), StoreError> {
        let r = r.consume();
        let key = Self::key(&r.budget, &r.day);
        let hold = self.inner.shadow.lock().take_hold(&r.id);
        if self
            .inner
            .budget(&key, BudgetOp::Release { id: &r.id })
            .await
            .is_ok()
        {
            return Ok(());
        }
        let unhold = match hold {
            Some(Hold::Redis(_)) => r.amount,
            Some(Hold::Local) | None => 0,
        };
        self.inner.queue(Pending::Release {
            key,
            id: r.id,
            unhold,
        });
        Ok(())
    }

    /// Redis's counters plus this replica's changes not yet written. While Redis cannot be
    /// reached: the last known counters (`FailOpen`) or [`StoreError::Unavailable`].
    async fn snapshot(&self, budget: &str, day: &str) -> Result<Snapshot, StoreError> {
        let key = Self::key(budget, day);
        let name = self.inner.keys.budget(budget, day);
        let read = self
            .inner
            .call("snapshot", |mut conn| async move {
                scripts::read(&mut conn, &name).await
            })
            .await;
        match read {
            Ok((snap, Some(gen))) => {
                self.inner.observe(&key, &gen, snap);
                Ok(self.inner.shadow.lock().cached(&key).unwrap_or(snap))
            }
            Ok((snap, None)) => Ok(self.inner.shadow.lock().cached(&key).unwrap_or(snap)),
            Err(_) => match self.policy() {
                FailurePolicy::FailOpen => Ok(self.cached(budget, day).unwrap_or_default()),
                FailurePolicy::FailClosed => Err(StoreError::Unavailable),
            },
        }
    }

    fn cached(&self, budget: &str, day: &str) -> Option<Snapshot> {
        self.inner.shadow.lock().cached(&Self::key(budget, day))
    }

    /// While Redis cannot be reached: `FailClosed` answers [`StoreError::Unavailable`] (retry
    /// later with the same token); `FailOpen` decides among this replica's claims and writes
    /// the claim once Redis answers. If another replica claimed the same alert meanwhile,
    /// both have sent it; that is logged when found.
    async fn claim_alert(
        &self,
        budget: &str,
        day: &str,
        threshold: u32,
        token: &str,
    ) -> Result<bool, StoreError> {
        let key = Self::key(budget, day);
        let name = self.inner.keys.alert(budget, day, threshold);
        let claimed = self
            .inner
            .call("alert claim", |mut conn| async move {
                scripts::claim(&mut conn, &name, token).await
            })
            .await;
        match claimed {
            Ok(won) => {
                if won {
                    self.inner
                        .shadow
                        .lock()
                        .win_claim(&key, threshold, token, true);
                }
                Ok(won)
            }
            Err(_) if self.policy() == FailurePolicy::FailClosed => Err(StoreError::Unavailable),
            Err(_) => {
                let mut shadow = self.inner.shadow.lock();
                if let Some(held) = shadow.won_claim(&key, threshold) {
                    return Ok(held == token);
                }
                shadow.win_claim(&key, threshold, token, false);
                drop(shadow);
                self.inner.queue(Pending::Claim {
                    key,
                    threshold,
                    token: token.to_string(),
                });
                Ok(true)
            }
        }
    }

    /// Raises this replica's part of spent (what its scripts settled plus what it restored
    /// or seeded before) to `spent`, adding the difference to spent. So each replica seeds
    /// from its own ledger, any number of times, in any order, and spent becomes the sum of
    /// the ledgers. Queued while Redis cannot be reached.
    async fn seed_spent(&self, budget: &str, day: &str, spent: u64) -> Result<(), StoreError> {
        let key = Self::key(budget, day);
        let op = BudgetOp::Floor {
            expected: None,
            replica: &self.inner.opts.replica,
            target: spent,
            mode: FloorMode::Share,
        };
        match self.inner.budget(&key, op).await {
            Ok(reply) => self.inner.shadow.lock().set_base(&key, &reply.gen, spent),
            Err(_) => self.inner.queue(Pending::Seed { key, spent }),
        }
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "redis"
    }

    fn health(&self) -> StoreHealth {
        let link = self.inner.link.lock();
        let (connected, degraded_since) = (link.conn.is_some(), link.degraded_since);
        drop(link);
        StoreHealth {
            connected,
            degraded_since,
            pending_reconcile: self.inner.shadow.lock().backlog(),
            errors_total: self.inner.errors_total.load(Ordering::Relaxed),
        }
    }
}
