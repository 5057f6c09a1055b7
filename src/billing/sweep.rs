//! Alert sweeps: a threshold that today's spending has crossed with no alert claimed for it
//! is claimed late rather than never. That happens when the gateway stops or crashes
//! between a request's settle and its alert claims (the next settle starts above the
//! threshold, so no settle crosses it again), or when a reload lowers a budget's limit below
//! what was already spent. The alerts service sweeps on start and then every minute.

use std::sync::Arc;

use super::finish::{Crossing, Order};
use super::Billing;
use crate::budget::Budget;
use crate::metrics::Metrics;

impl Billing {
    /// Claims the alerts of every threshold that today's spending of `budgets` has crossed
    /// and that this ledger holds no alert for.
    pub async fn sweep_alerts(&self, budgets: &[Arc<Budget>], metrics: &Metrics) {
        let Some(ledger) = self.ledger.clone() else {
            return;
        };
        let now = self.clock.now();
        for b in budgets {
            let day = b.day_at(now);
            let Ok(snap) = self.store.snapshot(&b.name, &day).await else {
                continue;
            };
            let crossed = b.crossed(0, snap.spent);
            if crossed.is_empty() {
                continue;
            }
            let (l, name, d) = (ledger.clone(), b.name.clone(), day.clone());
            let known = tokio::task::spawn_blocking(move || l.alerts_list(&d, &d, Some(&name)))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let known = match known {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!(budget = %b.name, error = %e, "Cannot read the alerts to sweep.");
                    continue;
                }
            };
            let missing: Vec<u32> = crossed
                .into_iter()
                .filter(|t| !known.iter().any(|a| a.threshold == *t))
                .collect();
            if missing.is_empty() {
                continue;
            }
            tracing::info!(budget = %b.name, %day, thresholds = ?missing,
                "Spending is past thresholds with no alert here; claiming them.");
            let crossing = Crossing {
                budget: b,
                day: &day,
                thresholds: &missing,
                spent: snap.spent,
            };
            self.alert(crossing, Order::ClaimFirst, metrics).await;
        }
    }
}
