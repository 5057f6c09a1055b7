//! Budget alerts: what is sent when a budget crosses 50, 75, 90 or 100 percent of its
//! daily limit, and the outbox deliverer that sends it.
//!
//! An alert is claimed once per (budget, day, threshold) — by a unique row in the ledger
//! database, or in cluster mode by a Redis `SET NX` — and written to the ledger's outbox in
//! the same step, so a crash before delivery only delays it: [`deliver::Deliverer`] finds
//! it on the next start. Each webhook is retried with exponential backoff until it answers
//! 2xx. The payload is Slack-compatible (`text`) and carries an idempotency key (also sent
//! as the `Idempotency-Key` header) so a receiver can drop the repeat of a delivery whose
//! answer was lost.

pub mod deliver;

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::money::Decimal9;

/// Everything an alert says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFacts {
    pub budget: String,
    pub day: String,
    pub timezone: String,
    pub threshold: u32,
    /// Nano-dollars spent when the threshold was crossed.
    pub spent: u64,
    pub limit: u64,
    /// Costliest models of the day so far: (model, nano-dollars).
    pub top_models: Vec<(String, u64)>,
    pub dashboard_url: Option<String>,
    pub at: Timestamp,
}

/// The key identifying one alert everywhere (ledger, Redis claim, payload, header).
pub fn idempotency_key(budget: &str, day: &str, threshold: u32) -> String {
    format!("tollgate-alert:{budget}:{day}:{threshold}")
}

fn dollars(nanos: u64) -> String {
    // Cents for people (the exact figure is in the structured fields); amounts under a
    // dollar keep their digits, so a small budget does not read "$0.00 of $0.00".
    let d = Decimal9(nanos).to_string();
    if nanos < crate::money::NANOS_PER_DOLLAR {
        return d;
    }
    match d.split_once('.') {
        Some((i, f)) => format!("{i}.{:0<2}", &f[..f.len().min(2)]),
        None => format!("{d}.00"),
    }
}

impl AlertFacts {
    pub fn idempotency_key(&self) -> String {
        idempotency_key(&self.budget, &self.day, self.threshold)
    }

    /// One line a person can read in a chat channel.
    pub fn text(&self) -> String {
        let what = if self.threshold >= 100 {
            "has spent its whole daily limit".to_string()
        } else {
            format!("reached {}% of its daily limit", self.threshold)
        };
        let mut text = format!(
            "tollgate: budget `{}` {what} on {} ({}): ${} of ${} spent.",
            self.budget,
            self.day,
            self.timezone,
            dollars(self.spent),
            dollars(self.limit)
        );
        if !self.top_models.is_empty() {
            let top: Vec<String> = self
                .top_models
                .iter()
                .map(|(m, c)| format!("{m} ${}", dollars(*c)))
                .collect();
            text.push_str(&format!(" Top models: {}.", top.join(", ")));
        }
        if let Some(url) = &self.dashboard_url {
            text.push_str(&format!(" Dashboard: {url}"));
        }
        text
    }

    /// The webhook body: Slack's `text`, plus the same facts as structured fields (exact
    /// decimal dollar strings and integer nano-dollars).
    pub fn payload(&self) -> Value {
        json!({
            "text": self.text(),
            "idempotency_key": self.idempotency_key(),
            "budget": self.budget,
            "day": self.day,
            "timezone": self.timezone,
            "threshold_percent": self.threshold,
            "spent": Decimal9(self.spent).to_string(),
            "limit": Decimal9(self.limit).to_string(),
            "spent_nanodollars": self.spent,
            "limit_nanodollars": self.limit,
            "top_models": self.top_models.iter().map(|(m, c)| json!({
                "model": m, "cost": Decimal9(*c).to_string()
            })).collect::<Vec<_>>(),
            "dashboard_url": self.dashboard_url,
            "at": self.at.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(threshold: u32) -> AlertFacts {
        AlertFacts {
            budget: "payments".into(),
            day: "2026-11-21".into(),
            timezone: "Europe/Berlin".into(),
            threshold,
            spent: 7_512_345_678,
            limit: 10_000_000_000,
            top_models: vec![
                ("gpt-4o".into(), 5_000_000_000),
                ("claude-sonnet".into(), 2_512_345_678),
            ],
            dashboard_url: Some("http://tollgate.internal:9090/".into()),
            at: "2026-11-21T10:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn payload_names_budget_day_threshold_money_models_and_link() {
        let p = facts(75).payload();
        assert_eq!(
            p["idempotency_key"],
            "tollgate-alert:payments:2026-11-21:75"
        );
        assert_eq!(p["threshold_percent"], 75);
        assert_eq!(p["spent"], "7.512345678");
        assert_eq!(p["limit_nanodollars"], 10_000_000_000u64);
        assert_eq!(p["top_models"][0]["model"], "gpt-4o");
        let text = p["text"].as_str().unwrap();
        assert_eq!(
            text,
            "tollgate: budget `payments` reached 75% of its daily limit on 2026-11-21 \
             (Europe/Berlin): $7.51 of $10.00 spent. Top models: gpt-4o $5.00, claude-sonnet \
             $2.51. Dashboard: http://tollgate.internal:9090/"
        );
    }

    #[test]
    fn the_hundred_percent_alert_says_the_limit_is_spent() {
        assert!(facts(100)
            .text()
            .contains("has spent its whole daily limit"));
    }
}
