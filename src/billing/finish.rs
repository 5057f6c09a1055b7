//! The end of a request: its usage (reported, or counted when the provider reported
//! none), its cost, the settle of its reservations, its ledger record, and the alerts the
//! settle crossed.

use std::sync::Arc;

use super::{Billing, Hold};
use crate::alerts::{idempotency_key, AlertFacts};
use crate::budget::Budget;
use crate::config::ModelConfig;
use crate::ledger::{AlertClaim, GroupBy, Ledger, LedgerRecord};
use crate::metrics::Metrics;
use crate::tokens::Encoding;
use crate::usage::Usage;

/// What is known about a request when it ends.
#[derive(Debug)]
pub struct Finished<'a> {
    pub request_id: &'a str,
    /// Unix milliseconds at the request's start.
    pub started_ms: i64,
    pub budget: &'a Arc<Budget>,
    pub key_id: Option<&'a str>,
    pub requested_model: &'a str,
    pub tier: Option<&'a str>,
    pub route_reason: &'a str,
    /// The model that answered (its response reached the client), if any.
    pub served: Option<&'a ModelConfig>,
    pub provider: Option<&'a str>,
    pub attempts: &'a str,
    pub attempt_count: u32,
    /// Usage the provider reported.
    pub usage: Option<crate::usage::Usage>,
    /// Prompt tokens counted before sending.
    pub prompt_tokens: u64,
    /// Text relayed to the client (for counting output when no usage was reported).
    pub output_text: &'a str,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub status: u16,
    pub error_code: Option<String>,
    pub streamed: bool,
    pub price_version: &'a str,
}

/// The usage to bill: the provider's, or, when a served request reported none (a stream
/// cut short, a client gone), the counted prompt and relayed output, marked estimated.
pub fn billable_usage(f: &Finished<'_>) -> Usage {
    match (f.usage, f.served) {
        (Some(u), _) => u,
        (None, Some(m)) => Usage {
            input_tokens: f.prompt_tokens,
            output_tokens: Encoding::for_model(&m.upstream).count(f.output_text),
            estimated: true,
            ..Usage::default()
        },
        (None, None) => Usage::default(),
    }
}

/// Thresholds of one budget's day crossed at once, and the spending that crossed them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Crossing<'a> {
    pub budget: &'a Arc<Budget>,
    pub day: &'a str,
    pub thresholds: &'a [u32],
    pub spent: u64,
}

/// In cluster mode, whether an alert is queued locally before or after its shared claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    /// A settle crossed the threshold: this replica owns it unless a sweep got there first.
    QueueFirst,
    /// A sweep found the threshold crossed: any replica's settle may have crossed it.
    ClaimFirst,
}

impl Billing {
    /// Prices, settles and records a finished request; returns its usage and cost.
    pub async fn finish(
        &self,
        f: Finished<'_>,
        hold: Option<Hold>,
        metrics: &Metrics,
    ) -> (Usage, u64) {
        let usage = billable_usage(&f);
        let cost = f
            .served
            .map(|m| crate::pricing::cost_nanos(&m.price, &usage))
            .unwrap_or(0);
        let day = hold
            .as_ref()
            .and_then(|h| h.day().map(str::to_string))
            .unwrap_or_else(|| f.budget.day_at(self.clock.now()));
        if let Some(m) = f.served {
            metrics.add_cost(&f.budget.name, &m.name, cost);
        }
        // Settle first, then record: once a request's ledger row is visible, the budget's
        // spent figure includes it. Alerts come last so their top models include it too.
        let mut crossed = Vec::new();
        if let Some(hold) = hold {
            for (budget, r) in hold.entries {
                let day = r.day().to_string();
                match self.store.settle(r, cost).await {
                    Ok(s) => {
                        let thresholds = budget.crossed(s.spent_before, s.spent_after);
                        if !thresholds.is_empty() {
                            crossed.push((budget.clone(), day, thresholds, s.spent_after));
                        }
                        metrics
                            .budget_spent_ratio
                            .with_label_values(&[&budget.name])
                            .set(budget.percent(s.spent_after) as f64 / 100.0);
                    }
                    Err(e) => tracing::error!(budget = %budget.name, error = %e,
                        "Could not settle a budget reservation; it is kept for reconciliation."),
                }
            }
        }
        if let Some(ledger) = &self.ledger {
            ledger.record(LedgerRecord {
                id: f.request_id.to_string(),
                at_ms: f.started_ms,
                day: day.clone(),
                budget: f.budget.name.clone(),
                key_id: f.key_id.map(str::to_string),
                requested_model: f.requested_model.to_string(),
                tier: f.tier.map(str::to_string),
                route_reason: f.route_reason.to_string(),
                served_model: f.served.map(|m| m.name.clone()),
                provider: f.provider.map(str::to_string),
                attempts: f.attempts.to_string(),
                attempt_count: f.attempt_count,
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cached_input_tokens: usage.cached_input_tokens,
                cache_write_tokens: usage.cache_write_tokens,
                estimated: usage.estimated,
                cost_nanos: cost,
                price_version: f.price_version.to_string(),
                latency_ms: f.latency_ms,
                ttft_ms: f.ttft_ms,
                status: f.status,
                error_code: f.error_code.clone(),
                streamed: f.streamed,
            });
        }
        for (budget, day, thresholds, spent) in crossed {
            let crossing = Crossing {
                budget: &budget,
                day: &day,
                thresholds: &thresholds,
                spent,
            };
            self.alert(crossing, Order::QueueFirst, metrics).await;
        }
        (usage, cost)
    }

    /// Claims and queues the alerts of `c.thresholds`; logs each one this replica owns.
    pub(super) async fn alert(&self, c: Crossing<'_>, order: Order, metrics: &Metrics) {
        let b = c.budget;
        let Some(ledger) = self.ledger.clone() else {
            tracing::warn!(budget = %b.name, day = %c.day, thresholds = ?c.thresholds,
                "Budget alert (no ledger to queue it).");
            return;
        };
        // Alerts are rare: commit what is queued so the top models include this request.
        let _ = ledger.flush().await;
        let (budget, d) = (b.name.clone(), c.day.to_string());
        let l = ledger.clone();
        let top: Vec<(String, u64)> = tokio::task::spawn_blocking(move || {
            l.spend_grouped(&d, &d, Some(&budget), GroupBy::Model)
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
        .into_iter()
        .take(3)
        .map(|(m, cost, _)| (m, cost))
        .collect();
        for &threshold in c.thresholds {
            let facts = AlertFacts {
                budget: b.name.clone(),
                day: c.day.to_string(),
                timezone: b.timezone_name.clone(),
                threshold,
                spent: c.spent,
                limit: b.limit_nanos(),
                top_models: top.clone(),
                dashboard_url: self.dashboard_url.clone(),
                at: self.clock.now(),
            };
            let claim = AlertClaim {
                budget: b.name.clone(),
                day: c.day.to_string(),
                threshold,
                idempotency_key: idempotency_key(&b.name, c.day, threshold),
                payload_json: facts.payload().to_string(),
                claimed_at_ms: self.clock.now_ms(),
                channels: b.webhooks.clone(),
            };
            match self.claim(&ledger, claim, order).await {
                Ok(true) => {
                    metrics
                        .alerts
                        .with_label_values(&[&b.name, &threshold.to_string()])
                        .inc();
                    tracing::warn!(budget = %b.name, day = %c.day, threshold,
                        alert = %facts.text(), "Budget alert.");
                    self.alert_wake.notify_one();
                }
                Ok(false) => {}
                Err(e) => tracing::error!(budget = %b.name, threshold, error = %e,
                    "Could not claim a budget alert; it is claimed again on the next sweep."),
            }
        }
    }

    /// Claims one alert and queues its deliveries; `Ok(true)` when this replica owns it.
    async fn claim(
        &self,
        ledger: &Ledger,
        claim: AlertClaim,
        order: Order,
    ) -> Result<bool, String> {
        // Embedded, the unique alert row is the claim; in cluster mode it only queues.
        let embedded = self.replica.is_none();
        let queue = |c: AlertClaim| {
            let l = ledger.clone();
            async move {
                let r = tokio::task::spawn_blocking(move || match embedded {
                    true => l.claim_alert(&c),
                    false => l.enqueue_alert(&c),
                })
                .await;
                match r {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let Some(replica) = &self.replica else {
            return queue(claim).await;
        };
        // Cluster: the claim is a Redis key holding this replica's token; claiming again
        // with the same token answers true, so either order can be repeated safely.
        let token = format!("{replica}:{}", claim.idempotency_key);
        let (budget, day, threshold) = (claim.budget.clone(), claim.day.clone(), claim.threshold);
        let shared = || async {
            self.store
                .claim_alert(&budget, &day, threshold, &token)
                .await
                .map_err(|e| e.to_string())
        };
        match order {
            // Queue durably, then claim: the deliverer re-asserts the claim before
            // sending, so a crash in between only delays the alert.
            Order::QueueFirst => {
                queue(claim).await?;
                shared().await
            }
            // Claim, then queue: a threshold found crossed by a sweep may be another
            // replica's, and only its owner should queue it.
            Order::ClaimFirst => {
                if !shared().await? {
                    return Ok(false);
                }
                queue(claim).await?;
                Ok(true)
            }
        }
    }
}
