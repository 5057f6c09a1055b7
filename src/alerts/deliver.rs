//! The alert outbox deliverer: a background task that sends every due outbox row to its
//! webhook and records the result, retrying with exponential backoff (with jitter, capped
//! by `[alerts] max_backoff_secs`) until the webhook answers 2xx.
//!
//! In cluster mode the alert was claimed in Redis when it was queued; the deliverer
//! re-asserts the claim with the same token before sending (a no-op normally, and the
//! claim itself when the gateway crashed between queueing and claiming), and drops rows
//! whose alert another replica owns.

use std::sync::Arc;
use std::time::Duration;

use pingora::server::ShutdownWatch;
use prometheus::IntCounterVec;
use tokio::sync::Notify;

use crate::accounting::BudgetStore;
use crate::ledger::{Ledger, OutboxItem};

/// How often the outbox is polled when nothing wakes the deliverer.
const POLL: Duration = Duration::from_millis(500);
/// Rows sent per poll.
const BATCH: u32 = 32;

/// Claims alerts in a shared store before sending (cluster mode).
pub struct ClusterClaim {
    pub store: Arc<dyn BudgetStore>,
    /// This replica's stable token prefix (survives restarts).
    pub replica: String,
}

/// Sends queued alerts.
pub struct Deliverer {
    ledger: Ledger,
    client: reqwest::Client,
    max_backoff: Duration,
    claim: Option<ClusterClaim>,
    deliveries: IntCounterVec,
    wake: Arc<Notify>,
    clock: Arc<dyn crate::clock::Clock>,
}

/// Delay before attempt `attempts + 1`: 1 s, 2 s, 4 s … up to `max`, ±20% jitter.
pub fn backoff(attempts: u32, max: Duration, jitter: f64) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1u32 << attempts.min(20));
    let capped = base.min(max);
    capped.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

impl Deliverer {
    pub fn new(
        ledger: Ledger,
        settings: &crate::config::AlertSettings,
        claim: Option<ClusterClaim>,
        deliveries: IntCounterVec,
        clock: Arc<dyn crate::clock::Clock>,
        wake: Arc<Notify>,
    ) -> Deliverer {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.webhook_timeout_secs.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Deliverer {
            ledger,
            client,
            max_backoff: Duration::from_secs(settings.max_backoff_secs.max(1)),
            claim,
            deliveries,
            wake,
            clock,
        }
    }

    /// Sends what is due until `shutdown` fires.
    pub async fn run(&self, mut shutdown: ShutdownWatch) {
        loop {
            self.deliver_due().await;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Sends every due row once; returns how many were delivered.
    pub async fn deliver_due(&self) -> usize {
        let ledger = self.ledger.clone();
        let now = self.clock.now_ms();
        let due = match tokio::task::spawn_blocking(move || ledger.outbox_due(now, BATCH)).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Cannot read the alert outbox.");
                return 0;
            }
            Err(_) => return 0,
        };
        let mut delivered = 0;
        for item in due {
            if self.deliver(item).await {
                delivered += 1;
            }
        }
        delivered
    }

    async fn owned_here(&self, item: &OutboxItem) -> Result<bool, String> {
        let Some(c) = &self.claim else {
            return Ok(true);
        };
        let token = format!("{}:{}", c.replica, item.idempotency_key);
        c.store
            .claim_alert(&item.budget, &item.day, item.threshold, &token)
            .await
            .map_err(|e| e.to_string())
    }

    async fn deliver(&self, item: OutboxItem) -> bool {
        let result = match self.owned_here(&item).await {
            Ok(false) => {
                tracing::info!(budget = %item.budget, day = %item.day, threshold = item.threshold,
                    "Alert belongs to another replica; not sending it from here.");
                self.finish(item.id, None).await;
                return false;
            }
            Err(e) => Err(format!("cannot confirm the alert claim: {e}")),
            Ok(true) => self.post(&item).await,
        };
        match result {
            Ok(()) => {
                self.deliveries.with_label_values(&["delivered"]).inc();
                tracing::info!(budget = %item.budget, day = %item.day, threshold = item.threshold,
                    channel = %redact(&item.channel), "Budget alert delivered.");
                self.finish(item.id, None).await;
                true
            }
            Err(e) => {
                self.deliveries.with_label_values(&["failed"]).inc();
                let attempts = item.attempts + 1;
                let delay = backoff(attempts - 1, self.max_backoff, fastrand::f64());
                let next = self.clock.now_ms() + delay.as_millis() as i64;
                tracing::warn!(budget = %item.budget, threshold = item.threshold, attempts,
                    retry_in_ms = delay.as_millis() as u64, channel = %redact(&item.channel),
                    error = %e, "Budget alert delivery failed; will retry.");
                self.finish(item.id, Some((attempts, next, e))).await;
                false
            }
        }
    }

    async fn post(&self, item: &OutboxItem) -> Result<(), String> {
        let resp = self
            .client
            .post(&item.channel)
            .header("content-type", "application/json")
            .header("idempotency-key", &item.idempotency_key)
            .body(item.payload_json.clone())
            .send()
            .await
            .map_err(|e| format!("request failed: {}", e.without_url()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("webhook answered {}", resp.status().as_u16()))
        }
    }

    /// Marks a row delivered (`None`) or failed, off the async threads.
    async fn finish(&self, id: i64, failed: Option<(u32, i64, String)>) {
        let ledger = self.ledger.clone();
        let now = self.clock.now_ms();
        let r = tokio::task::spawn_blocking(move || match failed {
            None => ledger.outbox_delivered(id, now),
            Some((attempts, next, e)) => ledger.outbox_failed(id, attempts, next, &e),
        })
        .await;
        if let Ok(Err(e)) = r {
            tracing::error!(error = %e, "Cannot update the alert outbox.");
        }
    }
}

/// A webhook URL without its path (Slack puts its secret there).
fn redact(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(u) => format!(
            "{}://{}/…",
            u.scheme_str().unwrap_or("http"),
            u.authority().map(|a| a.as_str()).unwrap_or("")
        ),
        Err(_) => "(invalid url)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let max = Duration::from_secs(300);
        assert_eq!(backoff(0, max, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(3, max, 0.5), Duration::from_secs(8));
        assert_eq!(backoff(30, max, 0.5), max);
        assert!(backoff(3, max, 0.0) >= Duration::from_millis(6400));
        assert!(backoff(3, max, 1.0) <= Duration::from_millis(9600));
    }

    #[test]
    fn redaction_keeps_only_scheme_and_host() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T0/B0/SECRET"),
            "https://hooks.slack.com/…"
        );
    }
}
