//! The background task of a [`RedisStore`](super::RedisStore): reconnects after an outage,
//! writes the queued operations, and restores this replica's part of each day Redis lost.
//!
//! While degraded it tries to connect with a growing pause (from 100 ms to 2 s). Once
//! connected it writes the queue in batches, then for each day marked for restoring it
//! raises this replica's carry, holds its reservations again and re-claims its alerts (see
//! `shadow.rs`). While connected it also watches the server's run id every second, so a
//! Redis restart is noticed even on days this replica is not using. The task ends when the
//! store is dropped.

use std::sync::Arc;
use std::time::Duration;

use ::redis::AsyncConnectionConfig;
use futures_util::future::join_all;
use tokio::time::Instant;

use super::redis::{Inner, Miss};
use super::scripts::{self, BudgetOp, FloorMode, Status};
use super::shadow::{DayKey, Pending};

/// First pause between connection attempts; it doubles up to [`MAX_RETRY`].
const MIN_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);
/// How often a connected store checks the server's run id.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Pause before another round when work is left after one.
const AGAIN_AFTER: Duration = Duration::from_millis(10);
/// Queued operations written concurrently.
const BATCH: usize = 64;
/// How long an untouched day's local state is kept.
const RETENTION: Duration = scripts::KEY_TTL;
const EVICT_EVERY: Duration = Duration::from_secs(600);

/// Connects and pings within the connect timeout; on success installs the connection and
/// marks every day for restoring (the outage may have lost data).
pub(super) async fn connect(inner: &Inner) -> Result<(), String> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(inner.opts.connect_timeout))
        .set_response_timeout(Some(inner.opts.op_timeout));
    let attempt = async {
        let mut conn = inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        ::redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await?;
        // INFO may be forbidden by ACLs: the run id is then unknown, not an error.
        let run_id = scripts::run_id(&mut conn).await.unwrap_or(None);
        Ok::<_, ::redis::RedisError>((conn, run_id))
    };
    let bound = inner.opts.connect_timeout + inner.opts.op_timeout;
    let (conn, run_id) = match tokio::time::timeout(bound, attempt).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("timed out".into()),
    };
    let mut link = inner.link.lock();
    link.epoch += 1;
    link.conn = Some((link.epoch, conn));
    if run_id.is_some() && link.run_id.is_some() && run_id != link.run_id {
        tracing::warn!("Redis restarted; restoring this replica's budget counters.");
    }
    link.run_id = run_id;
    if let Some(since) = link.degraded_since.take() {
        let outage = since.elapsed().unwrap_or_default();
        tracing::info!(
            outage_ms = outage.as_millis() as u64,
            "Redis answers again; writing the budget operations queued meanwhile."
        );
    }
    drop(link);
    inner.shadow.lock().mark_all_for_sync();
    Ok(())
}

/// Starts the background task; it holds the store weakly and ends once it is dropped.
pub(super) fn spawn(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let wake = inner.wake.clone();
    tokio::spawn(async move {
        let mut retry = MIN_RETRY;
        let mut last_watch = Instant::now();
        let mut last_evict = Instant::now();
        loop {
            let notified = wake.notified();
            let next = match weak.upgrade() {
                None => return,
                Some(inner) => {
                    let next = step(&inner, &mut retry, &mut last_watch).await;
                    if last_evict.elapsed() >= EVICT_EVERY {
                        last_evict = Instant::now();
                        inner.shadow.lock().evict(RETENTION);
                    }
                    next
                }
            };
            match next {
                // Requests queueing work must not hurry connection attempts.
                Next::Reconnect(pause) => tokio::time::sleep(pause).await,
                Next::Idle(pause) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    });
}

/// When the task runs its next round.
enum Next {
    /// Not connected: after this pause, whatever happens meanwhile.
    Reconnect(Duration),
    /// After this pause, or sooner when an operation is queued.
    Idle(Duration),
}

/// One round of work.
async fn step(inner: &Inner, retry: &mut Duration, last_watch: &mut Instant) -> Next {
    if inner.conn().is_none() {
        if connect(inner).await.is_err() {
            let pause = *retry;
            *retry = (*retry * 2).min(MAX_RETRY);
            return Next::Reconnect(pause);
        }
        *retry = MIN_RETRY;
    }
    if last_watch.elapsed() >= WATCH_EVERY {
        *last_watch = Instant::now();
        watch_run_id(inner).await;
    }
    if drain(inner).await.is_err() || sync_days(inner).await.is_err() || inner.conn().is_none() {
        return Next::Reconnect(MIN_RETRY);
    }
    if inner.shadow.lock().backlog() > 0 {
        // Work arrived meanwhile: go on shortly, without spinning.
        return Next::Idle(AGAIN_AFTER);
    }
    Next::Idle(WATCH_EVERY)
}

/// Marks every day for restoring when the server's run id changed (Redis restarted).
async fn watch_run_id(inner: &Inner) {
    let Ok(run_id) = inner
        .call("run id", |mut conn| async move {
            scripts::run_id(&mut conn).await
        })
        .await
    else {
        return;
    };
    let mut link = inner.link.lock();
    let changed = run_id.is_some() && link.run_id.is_some() && run_id != link.run_id;
    link.run_id = run_id;
    drop(link);
    if changed {
        tracing::warn!("Redis restarted; restoring this replica's budget counters.");
        inner.shadow.lock().mark_all_for_sync();
    }
}

/// Writes the queued operations, a batch at a time, until the queue is empty or a call
/// fails (the failed ones go back to the front).
async fn drain(inner: &Inner) -> Result<(), Miss> {
    loop {
        let batch = inner.shadow.lock().take_pending(BATCH);
        if batch.is_empty() {
            return Ok(());
        }
        let results = join_all(batch.iter().map(|op| write(inner, op))).await;
        let mut failed = Vec::new();
        let mut shadow = inner.shadow.lock();
        for (op, result) in batch.into_iter().zip(results) {
            match result {
                Ok(()) => shadow.written(&op),
                Err(_) => failed.push(op),
            }
        }
        if !failed.is_empty() {
            shadow.requeue(failed);
            return Err(Miss::Failed);
        }
    }
}

/// Writes one queued operation.
async fn write(inner: &Inner, op: &Pending) -> Result<(), Miss> {
    let replica = inner.opts.replica.as_str();
    match op {
        Pending::Settle {
            key, id, actual, ..
        } => {
            let op = BudgetOp::Settle {
                id,
                actual: *actual,
                replica,
            };
            let reply = inner.budget(key, op).await?;
            if matches!(reply.status, Status::Ok | Status::Dup) {
                inner.shadow.lock().confirm_settle(key, &reply.gen, *actual);
            }
        }
        Pending::Release { key, id, .. } => {
            inner.budget(key, BudgetOp::Release { id }).await?;
        }
        Pending::Seed { key, spent } => {
            let op = BudgetOp::Floor {
                expected: None,
                replica,
                target: *spent,
                mode: FloorMode::Share,
            };
            let reply = inner.budget(key, op).await?;
            inner.shadow.lock().set_base(key, &reply.gen, *spent);
        }
        Pending::Claim {
            key,
            threshold,
            token,
        } => {
            if !claim(inner, key, *threshold, token).await? {
                inner.shadow.lock().lose_claim(key, *threshold);
            }
        }
    }
    Ok(())
}

/// Writes an alert claim this replica decided alone; false (logged) when another replica
/// holds it.
async fn claim(inner: &Inner, key: &DayKey, threshold: u32, token: &str) -> Result<bool, Miss> {
    let name = inner.keys.alert(&key.0, &key.1, threshold);
    let won = inner
        .call("alert claim", |mut conn| async move {
            scripts::claim(&mut conn, &name, token).await
        })
        .await?;
    if !won {
        tracing::warn!(
            budget = %key.0,
            day = %key.1,
            threshold,
            "Alert was claimed by another replica while Redis was unreachable; it was sent twice."
        );
    }
    Ok(won)
}

/// Restores every day marked for it; on failure the day stays marked.
async fn sync_days(inner: &Inner) -> Result<(), Miss> {
    let days = inner.shadow.lock().take_days_to_sync();
    for (i, key) in days.iter().enumerate() {
        if let Err(miss) = sync_day(inner, key).await {
            let mut shadow = inner.shadow.lock();
            for key in &days[i..] {
                shadow.mark_sync(key);
            }
            return Err(miss);
        }
    }
    Ok(())
}

/// Raises this replica's carry for the day's current generation, holds its reservations
/// there and asserts its alert claims. Retries when the generation moves meanwhile.
async fn sync_day(inner: &Inner, key: &DayKey) -> Result<(), Miss> {
    let replica = inner.opts.replica.as_str();
    for _ in 0..4 {
        let plan = inner.shadow.lock().sync_plan(key);
        let op = BudgetOp::Floor {
            expected: plan.gen.as_ref(),
            replica,
            target: plan.carry,
            mode: FloorMode::Carry,
        };
        let reply = inner.budget(key, op).await?;
        if reply.status == Status::Moved {
            continue;
        }
        for (id, amount) in &plan.adopt {
            let op = BudgetOp::Reserve {
                id,
                amount: *amount,
                limit: 0,
                enforce: false,
            };
            let held = inner.budget(key, op).await?;
            inner.shadow.lock().adopted(id, &held.gen);
        }
        for (threshold, token) in &plan.claims {
            if claim(inner, key, *threshold, token).await? {
                inner
                    .shadow
                    .lock()
                    .asserted_claim(key, *threshold, &reply.gen);
            } else {
                inner.shadow.lock().lose_claim(key, *threshold);
            }
        }
        return Ok(());
    }
    // The generation kept moving: try again on the next round.
    inner.shadow.lock().mark_sync(key);
    Ok(())
}
