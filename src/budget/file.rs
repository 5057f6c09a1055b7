//! One budget file (`budgets/NAME.toml`) → [`Budget`], with every problem reported by file,
//! line and setting, like `routes.toml`.

use serde::Deserialize;

use super::{Budget, KeyEntry, KeyHash, Policy, RateLimits, DEFAULT_THRESHOLDS};
use crate::config::locate::Locator;
use crate::config::{ConfigErrors, Problem};
use crate::money::Decimal9;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    daily_limit: Decimal9,
    #[serde(default = "utc")]
    timezone: String,
    #[serde(default)]
    thresholds: Option<Vec<u32>>,
    #[serde(default = "block")]
    policy: Policy,
    #[serde(default)]
    max_request_cost: Option<Decimal9>,
    #[serde(default)]
    global: bool,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    keys: Vec<RawKey>,
}

/// `[limits]`, and the same two fields on a `[[keys]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    requests_per_minute: Option<i64>,
    #[serde(default)]
    tokens_per_minute: Option<i64>,
}

/// Highest accepted rate limit, per minute (keeps the limiter's arithmetic exact).
const MAX_PER_MINUTE: i64 = 1_000_000_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    #[serde(default)]
    webhooks: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: String,
    sha256: String,
    #[serde(default)]
    #[allow(dead_code)]
    created: Option<String>,
    #[serde(default)]
    requests_per_minute: Option<i64>,
    #[serde(default)]
    tokens_per_minute: Option<i64>,
}

fn utc() -> String {
    "UTC".into()
}

fn block() -> Policy {
    Policy::Block
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Parses and validates the budget `name` from `src`; `origin` names the file in reports.
pub fn parse_budget(name: &str, src: &str, origin: &str) -> Result<Budget, ConfigErrors> {
    let loc = Locator::new(src);
    let mut problems: Vec<Problem> = Vec::new();
    let report = |problems: &mut Vec<Problem>, path: &[&str], message: String| {
        problems.push(Problem {
            origin: origin.to_string(),
            line: loc.line(path),
            path: path.join("."),
            message,
        })
    };
    if !valid_name(name) {
        report(
&mut problems,
            &[],
            format!("budget name `{name}` (the file name) may use only letters, digits, `-`, `_` and `.`"),
        );
    }
    let raw: RawBudget = match toml::from_str(src) {
        Ok(r) => r,
        Err(e) => {
            let line = e.span().map(|s| loc.line_of_offset(s.start));
            problems.push(Problem {
                origin: origin.to_string(),
                line,
                path: String::new(),
                message: e.message().to_string(),
            });
            return Err(ConfigErrors(problems));
        }
    };
    let timezone = match jiff::tz::TimeZone::get(&raw.timezone) {
        Ok(tz) => Some(tz),
        Err(_) => {
            report(
                &mut problems,
                &["timezone"],
                format!(
                    "unknown time zone `{}` (use an IANA name such as `Europe/Berlin` or `UTC`)",
                    raw.timezone
                ),
            );
            None
        }
    };
    let thresholds = raw
        .thresholds
        .unwrap_or_else(|| DEFAULT_THRESHOLDS.to_vec());
    if thresholds.iter().any(|t| *t == 0 || *t > 100) {
        report(
            &mut problems,
            &["thresholds"],
            "thresholds are percentages from 1 to 100".into(),
        );
    }
    if thresholds.windows(2).any(|w| w[0] >= w[1]) {
        report(
            &mut problems,
            &["thresholds"],
            "thresholds must be strictly ascending".into(),
        );
    }
    for (i, url) in raw.alerts.webhooks.iter().enumerate() {
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
        if !ok {
            let idx = i.to_string();
            report(
                &mut problems,
                &["alerts", "webhooks", &idx],
                format!("`{url}` is not an http(s) URL"),
            );
        }
    }
    let limits = |problems: &mut Vec<Problem>, path: &[&str], raw: &RawLimits| {
        let mut check = |field: &str, v: Option<i64>| {
            let v = v?;
            if (1..=MAX_PER_MINUTE).contains(&v) {
                return Some(v as u64);
            }
            let mut at = path.to_vec();
            at.push(field);
            report(
                problems,
                &at,
                format!("{field} must be a whole number from 1 to {MAX_PER_MINUTE}, got {v}"),
            );
            None
        };
        RateLimits {
            requests_per_minute: check("requests_per_minute", raw.requests_per_minute),
            tokens_per_minute: check("tokens_per_minute", raw.tokens_per_minute),
        }
    };
    let budget_limits = limits(&mut problems, &["limits"], &raw.limits);
    let mut keys = Vec::with_capacity(raw.keys.len());
    for (i, k) in raw.keys.iter().enumerate() {
        let idx = i.to_string();
        let path = ["keys", idx.as_str()];
        if !valid_name(&k.id) {
            report(
                &mut problems,
                &path,
                format!(
                    "key id `{}` may use only letters, digits, `-`, `_` and `.`",
                    k.id
                ),
            );
        }
        if keys.iter().any(|e: &KeyEntry| e.id == k.id) {
            report(
                &mut problems,
                &path,
                format!("key id `{}` appears twice", k.id),
            );
        }
        match KeyHash::from_hex(&k.sha256) {
            Some(hash) => keys.push(KeyEntry {
                id: k.id.clone(),
                hash,
                limits: limits(
                    &mut problems,
                    &path,
                    &RawLimits {
                        requests_per_minute: k.requests_per_minute,
                        tokens_per_minute: k.tokens_per_minute,
                    },
                ),
            }),
            None => report(
&mut problems,
                &path,
                "sha256 must be 64 hex digits (the key's SHA-256; create keys with `tollgate key new`)".into(),
            ),
        }
    }
    match timezone {
        Some(timezone) if problems.is_empty() => Ok(Budget {
            name: name.to_string(),
            daily_limit: raw.daily_limit,
            timezone_name: raw.timezone,
            timezone,
            thresholds,
            policy: raw.policy,
            max_request_cost: raw.max_request_cost,
            webhooks: raw.alerts.webhooks,
            keys,
            global: raw.global,
            limits: budget_limits,
        }),
        _ => Err(ConfigErrors(problems)),
    }
}
