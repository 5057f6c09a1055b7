//! Finance routes on budgets, requests and alerts.
//!
//! - `GET /admin/api/budgets`: each budget's figures for its current day — limit, spent,
//!   reserved, remaining, percent, and each alert threshold with whether and when it was
//!   crossed. Spent and reserved come from the budget store, so in cluster mode (Redis)
//!   they cover the whole fleet (`"scope": "fleet"`).
//! - `GET /admin/api/requests`: recent ledger rows, newest first, filtered by `budget`,
//!   `model` and `status`, paged with `limit` and `offset` or `before` (a request id).
//! - `GET /admin/api/alerts`: budget alerts of a range of days with their deliveries.
//!
//! The ledger is per replica: routes that read it say `"scope": "replica"`.

use std::sync::Arc;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::{json, Map, Value};

use super::reply::{
    bad_param, day_in, day_range, ledger_failed, no_ledger, put_money, rfc3339, shift, Answer,
    Query,
};
use super::AdminApp;
use crate::budget::Budget;
use crate::ledger::{AlertRow, Ledger, LedgerError, LedgerRecord, RecentFilter, MAX_PAGE};

/// An API answer: the JSON body of a 200, or the error response to send instead.
pub(super) type ApiResult = Result<Value, Answer>;

impl AdminApp {
    /// Runs a blocking ledger read on the blocking pool.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, Answer> {
        let Some(ledger) = self.state.billing.ledger.clone() else {
            return Err(no_ledger());
        };
        match tokio::task::spawn_blocking(move || f(ledger)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ledger_failed(what, &e.to_string())),
            Err(e) => Err(ledger_failed(what, &e.to_string())),
        }
    }

    /// `"fleet"` when budget figures come from a store shared by every replica.
    fn budget_scope(&self) -> &'static str {
        match self.state.billing.store.backend() {
            "redis" => "fleet",
            _ => "replica",
        }
    }

    /// Today in `budget`'s time zone when it names a known budget, else in UTC.
    pub(super) fn today(&self, budget: Option<&str>) -> Date {
        let now = self.state.billing.clock.now();
        let cfg = self.state.config.load();
        match budget.and_then(|b| cfg.budgets.get(b)) {
            Some(b) => day_in(now, &b.timezone),
            None => day_in(now, &TimeZone::UTC),
        }
    }

    /// The days a query covers: `day`, or `from`/`to`, or else the last `days` days
    /// (default `default_days`) up to today.
    pub(super) fn days_of(&self, q: &Query, default_days: u32) -> Result<(Date, Date), Answer> {
        let today = self.today(q.get("budget"));
        if q.get("day").is_some() || q.get("from").is_some() || q.get("to").is_some() {
            return day_range(q, today);
        }
        let days = q.uint("days", default_days, 1, super::reply::MAX_DAYS as u32)?;
        Ok((shift(today, 1 - i64::from(days)), today))
    }

    pub(super) async fn budgets(&self) -> ApiResult {
        let cfg = self.state.config.load_full();
        let billing = &self.state.billing;
        let now = billing.clock.now();
        let days: Vec<(Arc<Budget>, String)> = cfg
            .budgets
            .iter()
            .map(|b| (b.clone(), b.day_at(now)))
            .collect();
        let lo = days.iter().map(|(_, d)| d.clone()).min();
        let hi = days.iter().map(|(_, d)| d.clone()).max();
        // When each threshold was crossed: the alert claims this replica's ledger holds.
        let alerts = match (lo, hi) {
            (Some(lo), Some(hi)) if billing.ledger.is_some() => self
                .read("alerts", move |l| l.alerts_list(&lo, &hi, None))
                .await
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut out = Vec::with_capacity(days.len());
        for (b, day) in &days {
            let (snap, stale) = match billing.store.snapshot(&b.name, day).await {
                Ok(s) => (s, false),
                Err(e) => {
                    tracing::warn!(budget = %b.name, error = %e, "Budget figures from cache.");
                    (billing.store.cached(&b.name, day).unwrap_or_default(), true)
                }
            };
            out.push(budget_json(
                b,
                day,
                snap.spent,
                snap.reserved,
                stale,
                &alerts,
            ));
        }
        Ok(json!({
            "scope": self.budget_scope(),
            "backend": billing.store.backend(),
            "budgets": out,
        }))
    }

    pub(super) async fn requests(&self, q: &Query) -> ApiResult {
        let status = match q.get("status") {
            None => None,
            Some(s) => match s.parse::<u16>() {
                Ok(v) if (100..=599).contains(&v) => Some(v),
                _ => return Err(bad_param("status", "`status` must be an HTTP status code.")),
            },
        };
        let filter = RecentFilter {
            budget: q.get("budget").map(String::from),
            model: q.get("model").map(String::from),
            status,
            before_id: q.get("before").map(String::from),
            offset: q.uint("offset", 0, 0, 10_000_000)?,
            limit: q.uint("limit", 50, 1, MAX_PAGE)?,
        };
        let limit = filter.limit;
        let offset = filter.offset;
        let rows = self.read("requests", move |l| l.recent(&filter)).await?;
        let next_before = match rows.last() {
            Some(r) if rows.len() == limit as usize => Value::from(r.id.clone()),
            _ => Value::Null,
        };
        Ok(json!({
            "scope": "replica",
            "limit": limit,
            "offset": offset,
            "count": rows.len(),
            "next_before": next_before,
            "requests": rows.iter().map(request_json).collect::<Vec<_>>(),
        }))
    }

    pub(super) async fn alerts(&self, q: &Query) -> ApiResult {
        let (from, to) = self.days_of(q, 30)?;
        let budget = q.get("budget").map(String::from);
        let (f, t) = (from.to_string(), to.to_string());
        let rows = self
            .read("alerts", move |l| l.alerts_list(&f, &t, budget.as_deref()))
            .await?;
        Ok(json!({
            "scope": "replica",
            "from": from.to_string(),
            "to": to.to_string(),
            "alerts": rows.iter().map(alert_json).collect::<Vec<_>>(),
        }))
    }
}

/// One budget's figures on `day`.
fn budget_json(
    b: &Budget,
    day: &str,
    spent: u64,
    reserved: u64,
    stale: bool,
    alerts: &[AlertRow],
) -> Value {
    let limit = b.limit_nanos();
    let crossed = b.crossed(0, spent);
    let thresholds: Vec<Value> = b
        .thresholds
        .iter()
        .map(|t| {
            let line = (u128::from(limit) * u128::from(*t)).div_ceil(100);
            let at = alerts
                .iter()
                .find(|a| a.budget == b.name && a.day == day && a.threshold == *t)
                .map(|a| a.claimed_at_ms);
            let mut o = Map::new();
            o.insert("percent".into(), Value::from(*t));
            put_money(&mut o, "amount", u64::try_from(line).unwrap_or(u64::MAX));
            o.insert("crossed".into(), Value::from(crossed.contains(t)));
            o.insert(
                "crossed_at_ms".into(),
                at.map(Value::from).unwrap_or(Value::Null),
            );
            o.insert("crossed_at".into(), at.map(rfc3339).unwrap_or(Value::Null));
            Value::Object(o)
        })
        .collect();
    let mut o = Map::new();
    o.insert("name".into(), Value::from(b.name.clone()));
    o.insert("day".into(), Value::from(day));
    o.insert("timezone".into(), Value::from(b.timezone_name.clone()));
    o.insert("policy".into(), Value::from(b.policy.as_str()));
    o.insert("global".into(), Value::from(b.global));
    put_money(&mut o, "limit", limit);
    put_money(&mut o, "spent", spent);
    put_money(&mut o, "reserved", reserved);
    put_money(
        &mut o,
        "remaining",
        limit.saturating_sub(spent.saturating_add(reserved)),
    );
    o.insert("percent".into(), Value::from(b.percent(spent)));
    o.insert("thresholds".into(), Value::from(thresholds));
    o.insert("stale".into(), Value::from(stale));
    Value::Object(o)
}

/// A ledger row with its cost also in dollars and its start time in RFC 3339.
fn request_json(rec: &LedgerRecord) -> Value {
    let mut v = serde_json::to_value(rec).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        put_money(o, "cost", rec.cost_nanos);
        o.insert("at".into(), rfc3339(rec.at_ms));
    }
    v
}

fn alert_json(a: &AlertRow) -> Value {
    let payload: Value = serde_json::from_str(&a.payload_json).unwrap_or(Value::Null);
    let mut o = Map::new();
    o.insert("budget".into(), Value::from(a.budget.clone()));
    o.insert("day".into(), Value::from(a.day.clone()));
    o.insert("threshold".into(), Value::from(a.threshold));
    o.insert("claimed_at_ms".into(), Value::from(a.claimed_at_ms));
    o.insert("claimed_at".into(), rfc3339(a.claimed_at_ms));
    o.insert(
        "idempotency_key".into(),
        Value::from(a.idempotency_key.clone()),
    );
    let text = payload.get("text").cloned().unwrap_or(Value::Null);
    o.insert("message".into(), text);
    for (key, name) in [
        ("spent_nanodollars", "spent"),
        ("limit_nanodollars", "limit"),
    ] {
        if let Some(n) = payload.get(key).and_then(Value::as_u64) {
            put_money(&mut o, name, n);
        }
    }
    let delivered =
        !a.deliveries.is_empty() && a.deliveries.iter().all(|d| d.delivered_at_ms.is_some());
    o.insert("delivered".into(), Value::from(delivered));
    let deliveries = serde_json::to_value(&a.deliveries).unwrap_or(Value::Null);
    o.insert("deliveries".into(), deliveries);
    Value::Object(o)
}
