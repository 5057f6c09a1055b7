//! Budget alerts: exactly-once claims per (budget, day, threshold) and an outbox of
//! deliveries, one row per channel (webhook URL), retried until the channel answers 2xx.
//!
//! Embedded mode claims with [`Ledger::claim_alert`]: the `alerts` row is unique on
//! (budget, day, threshold), so of any number of concurrent claimers exactly one gets
//! `true`. In cluster mode the claim is a Redis `SET NX` elsewhere and the winner calls
//! [`Ledger::enqueue_alert`]. Either way the alert and its deliveries are written in one
//! transaction, so a crash after the claim cannot lose the alert: the deliverer finds it
//! with [`Ledger::outbox_due`] after restart. One deliverer per ledger is assumed; the
//! idempotency key in the payload lets receivers drop a repeat.
//!
//! These writes are rare and synchronous, on their own connection (busy timeout 5 s);
//! from async code call them inside `tokio::task::spawn_blocking`.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::{Ledger, LedgerError};

/// An alert to claim or enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertClaim {
    pub budget: String,
    pub day: String,
    /// Percentage of the budget crossed (e.g. 80, 100).
    pub threshold: u32,
    /// Unique per alert; sent in the payload so receivers can drop repeats.
    pub idempotency_key: String,
    pub payload_json: String,
    pub claimed_at_ms: i64,
    /// Webhook URLs; each gets its own outbox row and retries.
    pub channels: Vec<String>,
}

/// One pending delivery of an alert to one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub idempotency_key: String,
    pub budget: String,
    pub day: String,
    pub threshold: u32,
    pub payload_json: String,
    pub channel: String,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_attempt_ms: i64,
}

/// The delivery state of an alert on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertDelivery {
    pub channel: String,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    /// `None` while undelivered.
    pub delivered_at_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// An alert as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRow {
    pub budget: String,
    pub day: String,
    pub threshold: u32,
    pub idempotency_key: String,
    pub payload_json: String,
    pub claimed_at_ms: i64,
    pub deliveries: Vec<AlertDelivery>,
}

impl Ledger {
    /// Claims the alert (budget, day, threshold) and queues one delivery per channel, in one
    /// transaction. `Ok(true)` for the one call that claimed it; `Ok(false)` when it was
    /// already claimed (or its idempotency key already used). Blocking.
    pub fn claim_alert(&self, claim: &AlertClaim) -> Result<bool, LedgerError> {
        insert_alert(&mut self.inner.alerts.lock(), claim)
    }

    /// Queues an alert claimed elsewhere (cluster mode). Idempotent on the idempotency key:
    /// repeating it adds nothing. `Ok(true)` when this call queued it; `Ok(false)` when it
    /// was already there, or when the same (budget, day, threshold) was queued under another
    /// key (logged: two claims for one alert). Blocking.
    pub fn enqueue_alert(&self, claim: &AlertClaim) -> Result<bool, LedgerError> {
        let conn = &mut self.inner.alerts.lock();
        let queued = insert_alert(conn, claim)?;
        if !queued {
            let existing: Option<String> = conn
                .query_row(
                    "SELECT idempotency_key FROM alerts \
                     WHERE budget = ?1 AND day = ?2 AND threshold = ?3",
                    params![claim.budget, claim.day, claim.threshold],
                    |r| r.get(0),
                )
                .optional()?;
            if existing
                .as_deref()
                .is_some_and(|k| k != claim.idempotency_key)
            {
                tracing::warn!(
                    budget = %claim.budget,
                    day = %claim.day,
                    threshold = claim.threshold,
                    key = %claim.idempotency_key,
                    "Alert already queued under another idempotency key; not queued again."
                );
            }
        }
        Ok(queued)
    }

    /// Undelivered items whose next attempt is due at `now_ms`, earliest first. Blocking.
    pub fn outbox_due(&self, now_ms: i64, limit: u32) -> Result<Vec<OutboxItem>, LedgerError> {
        self.inner.reads.with(|conn| due(conn, now_ms, limit))
    }

    /// Marks an item delivered (the channel answered 2xx), counting that attempt. A second
    /// call keeps the first delivery time. Blocking.
    pub fn outbox_delivered(&self, id: i64, at_ms: i64) -> Result<(), LedgerError> {
        let conn = self.inner.alerts.lock();
        let n = conn.execute(
            "UPDATE alert_outbox SET \
             attempts = attempts + (delivered_at_ms IS NULL), \
             delivered_at_ms = COALESCE(delivered_at_ms, ?2), last_error = NULL \
             WHERE id = ?1",
            params![id, at_ms],
        )?;
        known(n, id)
    }

    /// Records a failed attempt: the attempts made so far, when to try again (computed by
    /// the deliverer's backoff) and why it failed. Ignored for a delivered item. Blocking.
    pub fn outbox_failed(
        &self,
        id: i64,
        attempts: u32,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), LedgerError> {
        let conn = self.inner.alerts.lock();
        let n = conn.execute(
            "UPDATE alert_outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4 \
             WHERE id = ?1 AND delivered_at_ms IS NULL",
            params![id, attempts, next_attempt_ms, error],
        )?;
        if n == 0 {
            let exists: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM alert_outbox WHERE id = ?1)",
                [id],
                |r| r.get(0),
            )?;
            return known(usize::from(exists), id);
        }
        Ok(())
    }

    /// Alerts of the days `from_day..=to_day` (optionally one budget), newest day first,
    /// each with its delivery state per channel. Blocking.
    pub fn alerts_list(
        &self,
        from_day: &str,
        to_day: &str,
        budget: Option<&str>,
    ) -> Result<Vec<AlertRow>, LedgerError> {
        self.inner.reads.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT a.id, a.budget, a.day, a.threshold, a.idempotency_key, a.payload_json, \
                 a.claimed_at_ms, o.channel, o.attempts, o.next_attempt_ms, o.delivered_at_ms, \
                 o.last_error \
                 FROM alerts a LEFT JOIN alert_outbox o ON o.alert_id = a.id \
                 WHERE a.day BETWEEN ?1 AND ?2 AND (?3 IS NULL OR a.budget = ?3) \
                 ORDER BY a.day DESC, a.budget, a.threshold, a.id, o.id",
            )?;
            let mut rows = stmt.query(params![from_day, to_day, budget])?;
            let mut out: Vec<AlertRow> = Vec::new();
            let mut last_id = None;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                if last_id != Some(id) {
                    last_id = Some(id);
                    out.push(AlertRow {
                        budget: r.get(1)?,
                        day: r.get(2)?,
                        threshold: r.get(3)?,
                        idempotency_key: r.get(4)?,
                        payload_json: r.get(5)?,
                        claimed_at_ms: r.get(6)?,
                        deliveries: Vec::new(),
                    });
                }
                if let (Some(channel), Some(alert)) =
                    (r.get::<_, Option<String>>(7)?, out.last_mut())
                {
                    alert.deliveries.push(AlertDelivery {
                        channel,
                        attempts: r.get(8)?,
                        next_attempt_ms: r.get(9)?,
                        delivered_at_ms: r.get(10)?,
                        last_error: r.get(11)?,
                    });
                }
            }
            Ok(out)
        })
    }
}

/// Inserts the alert and, if it is new, its outbox rows; one immediate transaction.
fn insert_alert(conn: &mut Connection, claim: &AlertClaim) -> Result<bool, LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO alerts \
         (budget, day, threshold, idempotency_key, payload_json, claimed_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            claim.budget,
            claim.day,
            claim.threshold,
            claim.idempotency_key,
            claim.payload_json,
            claim.claimed_at_ms
        ],
    )? == 1;
    if inserted {
        let alert_id = tx.last_insert_rowid();
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO alert_outbox (alert_id, channel, next_attempt_ms) \
             VALUES (?1, ?2, ?3)",
        )?;
        for channel in &claim.channels {
            stmt.execute(params![alert_id, channel, claim.claimed_at_ms])?;
        }
        drop(stmt);
    }
    tx.commit()?;
    Ok(inserted)
}

/// The due outbox items, joined with their alerts.
fn due(conn: &Connection, now_ms: i64, limit: u32) -> Result<Vec<OutboxItem>, LedgerError> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.id, a.idempotency_key, a.budget, a.day, a.threshold, a.payload_json, \
         o.channel, o.attempts, o.next_attempt_ms \
         FROM alert_outbox o JOIN alerts a ON a.id = o.alert_id \
         WHERE o.delivered_at_ms IS NULL AND o.next_attempt_ms <= ?1 \
         ORDER BY o.next_attempt_ms, o.id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now_ms, limit], |r| {
        Ok(OutboxItem {
            id: r.get(0)?,
            idempotency_key: r.get(1)?,
            budget: r.get(2)?,
            day: r.get(3)?,
            threshold: r.get(4)?,
            payload_json: r.get(5)?,
            channel: r.get(6)?,
            attempts: r.get(7)?,
            next_attempt_ms: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn known(changed: usize, id: i64) -> Result<(), LedgerError> {
    if changed == 0 {
        Err(LedgerError::UnknownOutboxItem(id))
    } else {
        Ok(())
    }
}
