//! Spend routes, from this replica's ledger (`"scope": "replica"`):
//!
//! - `GET /admin/api/spend?day=|from=&to=&by=&budget=`: cost and request count grouped by
//!   `budget` (default), `model`, `provider`, `tier` or `day`, over one budget-day or a
//!   range (default today);
//! - `GET /admin/api/spend/daily?days=30&budget=`: cost per day over the last `days` days,
//!   every day present (zero when nothing was spent), for a chart;
//! - `GET /admin/api/routing?day=|from=&to=|days=&budget=&premium=`: the routing mix by
//!   tier and what the same tokens would have cost on the premium model (default
//!   `gpt-4-turbo`), i.e. the estimated saving of routing.
//!
//! Days are budget days (each budget's own time zone), as the ledger records them.

use serde_json::{Map, Value};

use super::api::ApiResult;
use super::reply::{bad_param, day_range, put_money, put_signed_money, shift, Query};
use super::AdminApp;
use crate::ledger::GroupBy;
use crate::pricing::cost_nanos;
use crate::usage::Usage;

/// The model the routing saving is measured against, unless `premium=` names another.
pub const PREMIUM_MODEL: &str = "gpt-4-turbo";

fn group_by(name: &str) -> Option<GroupBy> {
    Some(match name {
        "budget" => GroupBy::Budget,
        "model" => GroupBy::Model,
        "provider" => GroupBy::Provider,
        "tier" => GroupBy::Tier,
        "day" => GroupBy::Day,
        _ => return None,
    })
}

impl AdminApp {
    pub(super) async fn spend(&self, q: &Query) -> ApiResult {
        let by_name = q.get("by").unwrap_or("budget");
        let Some(by) = group_by(by_name) else {
            return Err(bad_param(
                "by",
                "`by` must be one of budget, model, provider, tier, day.",
            ));
        };
        let (from, to) = day_range(q, self.today(q.get("budget")))?;
        let budget = q.get("budget").map(String::from);
        let (f, t, b) = (from.to_string(), to.to_string(), budget.clone());
        let rows = self
            .read("spend", move |l| l.spend_grouped(&f, &t, b.as_deref(), by))
            .await?;
        let (mut total, mut requests) = (0u64, 0u64);
        let groups: Vec<Value> = rows
            .iter()
            .map(|(key, cost, n)| {
                total = total.saturating_add(*cost);
                requests += n;
                group_json(key, *cost, *n)
            })
            .collect();
        let mut o = Map::new();
        o.insert("scope".into(), Value::from("replica"));
        o.insert("from".into(), Value::from(from.to_string()));
        o.insert("to".into(), Value::from(to.to_string()));
        o.insert("by".into(), Value::from(by_name));
        o.insert(
            "budget".into(),
            budget.map(Value::from).unwrap_or(Value::Null),
        );
        put_money(&mut o, "total", total);
        o.insert("requests".into(), Value::from(requests));
        o.insert("groups".into(), Value::from(groups));
        Ok(Value::Object(o))
    }

    pub(super) async fn daily(&self, q: &Query) -> ApiResult {
        let (from, to) = self.days_of(q, 30)?;
        let budget = q.get("budget").map(String::from);
        let (f, t, b) = (from.to_string(), to.to_string(), budget.clone());
        let rows = self
            .read("daily spend", move |l| {
                l.spend_grouped(&f, &t, b.as_deref(), GroupBy::Day)
            })
            .await?;
        let mut days = Vec::new();
        let mut total = 0u64;
        let mut day = from;
        while day <= to {
            let key = day.to_string();
            let (cost, n) = rows
                .iter()
                .find(|(d, _, _)| *d == key)
                .map(|(_, c, n)| (*c, *n))
                .unwrap_or((0, 0));
            total = total.saturating_add(cost);
            let mut o = Map::new();
            o.insert("day".into(), Value::from(key));
            put_money(&mut o, "cost", cost);
            o.insert("requests".into(), Value::from(n));
            days.push(Value::Object(o));
            let next = shift(day, 1);
            if next == day {
                break;
            }
            day = next;
        }
        let mut o = Map::new();
        o.insert("scope".into(), Value::from("replica"));
        o.insert("from".into(), Value::from(from.to_string()));
        o.insert("to".into(), Value::from(to.to_string()));
        o.insert(
            "budget".into(),
            budget.map(Value::from).unwrap_or(Value::Null),
        );
        put_money(&mut o, "total", total);
        o.insert("days".into(), Value::from(days));
        Ok(Value::Object(o))
    }

    pub(super) async fn routing(&self, q: &Query) -> ApiResult {
        let (from, to) = self.days_of(q, 1)?;
        let cfg = self.state.config.load_full();
        let premium_name = q.get("premium").unwrap_or(PREMIUM_MODEL);
        let premium = cfg
            .aliases
            .get(premium_name)
            .map(String::as_str)
            .unwrap_or(premium_name);
        let price = cfg.models.get(premium).map(|m| m.price);
        if price.is_none() && q.get("premium").is_some() {
            return Err(bad_param(
                "premium",
                "`premium` must name a configured model.",
            ));
        }
        let budget = q.get("budget").map(String::from);
        let (f, t, b) = (from.to_string(), to.to_string(), budget.clone());
        let rows = self
            .read("routing mix", move |l| l.tier_usage(&f, &t, b.as_deref()))
            .await?;
        let all: u64 = rows.iter().map(|r| r.requests).sum();
        let (mut actual, mut at_premium) = (0u64, 0u64);
        let tiers: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut o = Map::new();
                o.insert("tier".into(), Value::from(r.tier.clone()));
                o.insert("requests".into(), Value::from(r.requests));
                let share = (r.requests * 100).checked_div(all).unwrap_or(0);
                o.insert("percent_of_requests".into(), Value::from(share));
                o.insert("input_tokens".into(), Value::from(r.input_tokens));
                o.insert("output_tokens".into(), Value::from(r.output_tokens));
                put_money(&mut o, "cost", r.cost_nanos);
                actual = actual.saturating_add(r.cost_nanos);
                if let Some(p) = &price {
                    let usage = Usage {
                        input_tokens: r.input_tokens,
                        output_tokens: r.output_tokens,
                        cached_input_tokens: r.cached_input_tokens,
                        cache_write_tokens: r.cache_write_tokens,
                        estimated: false,
                    };
                    let would = cost_nanos(p, &usage);
                    at_premium = at_premium.saturating_add(would);
                    put_money(&mut o, "premium_cost", would);
                    put_signed_money(
                        &mut o,
                        "saving",
                        i128::from(would) - i128::from(r.cost_nanos),
                    );
                }
                Value::Object(o)
            })
            .collect();
        let mut o = Map::new();
        o.insert("scope".into(), Value::from("replica"));
        o.insert("from".into(), Value::from(from.to_string()));
        o.insert("to".into(), Value::from(to.to_string()));
        o.insert(
            "budget".into(),
            budget.map(Value::from).unwrap_or(Value::Null),
        );
        let premium_json = price.as_ref().map(|_| Value::from(premium));
        o.insert("premium_model".into(), premium_json.unwrap_or(Value::Null));
        o.insert("requests".into(), Value::from(all));
        put_money(&mut o, "cost", actual);
        if price.is_some() {
            put_money(&mut o, "premium_cost", at_premium);
            put_signed_money(
                &mut o,
                "saving",
                i128::from(at_premium) - i128::from(actual),
            );
        }
        o.insert("tiers".into(), Value::from(tiers));
        Ok(Value::Object(o))
    }
}

fn group_json(key: &str, cost: u64, requests: u64) -> Value {
    let mut o = Map::new();
    o.insert("key".into(), Value::from(key));
    put_money(&mut o, "cost", cost);
    o.insert("requests".into(), Value::from(requests));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_group_key_is_known_and_others_are_not() {
        for k in ["budget", "model", "provider", "tier", "day"] {
            assert!(group_by(k).is_some(), "{k}");
        }
        assert!(group_by("team").is_none());
        assert_eq!(
            json!(group_json("m", 1_000_000_001, 2))["cost_usd"],
            "1.000000001"
        );
    }
}
