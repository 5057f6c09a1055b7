//! A billed gateway with two budgets and a known mix of traffic (routed tiers, a model
//! named by the caller, a stream, a failure, and a small budget pushed past its alert
//! thresholds), for the admin API and dashboard tests.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tollgate::budget::keys::KeyHash;
use tollgate::clock::{Clock, SystemClock};
use tollgate::ledger::{LedgerRecord, RecentFilter};

use super::dir::{DirGateway, ADMIN};
use super::user;

pub const TEAM_KEY: &str = "tg-finance-team-key";
pub const OPS_KEY: &str = "tg-finance-ops-key";

/// Requests [`start_with_traffic`] sends.
pub const REQUESTS: usize = 13;

fn budget_file(limit: &str, key: &str, extra: &str) -> String {
    format!(
        "daily_limit = \"{limit}\"\n{extra}\n[[keys]]\nid = \"svc\"\nsha256 = \"{}\"\n",
        KeyHash::of(key).to_hex()
    )
}

/// Test routes with anonymous access off and a cheap `simple` and a premium `complex`
/// tier.
pub fn tiered(routes: String) -> String {
    routes
        .replace("allow_anonymous = true", "allow_anonymous = false")
        .replace(
            "default_model = \"gpt-4o-mini\"",
            "default_model = \"gpt-4o-mini\"\nallow_tier_header = true",
        )
        + "\n[[routing.tiers]]\nname = \"simple\"\nchain = [\"gpt-4o-mini\"]\n\
           \n[[routing.tiers]]\nname = \"complex\"\npremium = true\nchain = [\"gpt-4-turbo\"]\n"
}

/// The budget day of a UTC budget now.
pub fn today() -> String {
    SystemClock.now().to_string()[..10].to_string()
}

/// Starts a billed gateway with budgets `team` ($5/day) and `ops` ($0.0001/day, `allow`),
/// sends [`REQUESTS`] requests and waits until the ledger holds them all.
pub async fn start_with_traffic(name: &str) -> DirGateway {
    let g = DirGateway::start_billed(
        name,
        tiered,
        &[
            ("team", &budget_file("5", TEAM_KEY, "")),
            ("ops", &budget_file("0.0001", OPS_KEY, "policy = \"allow\"")),
        ],
        std::sync::Arc::new(SystemClock),
    )
    .await;
    let send = |key: &'static str, tier: Option<&'static str>, body: Value| {
        let mut req = g
            .client
            .post(g.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body);
        if let Some(t) = tier {
            req = req.header("x-tollgate-tier", t);
        }
        async move {
            let r = req.send().await.expect("request sent");
            let status = r.status().as_u16();
            r.bytes().await.expect("body read");
            status
        }
    };
    let auto = |text: &str| json!({"model": "auto", "messages": user(text)});
    for i in 0..3 {
        let s = send(TEAM_KEY, Some("simple"), auto(&format!("simple {i}"))).await;
        assert_eq!(s, 200);
    }
    for i in 0..2 {
        let s = send(TEAM_KEY, Some("complex"), auto(&format!("hard {i}"))).await;
        assert_eq!(s, 200);
    }
    for i in 0..2 {
        let body = json!({"model": "mistral-small", "messages": user(&format!("named {i}"))});
        assert_eq!(send(TEAM_KEY, None, body).await, 200);
    }
    let stream = json!({"model": "gpt-4o-mini", "stream": true, "messages": user("stream it")});
    assert_eq!(send(TEAM_KEY, None, stream).await, 200);
    let failing = json!({"model": "gpt-4o-mini", "messages": user("[[sim: status=400]] no")});
    assert_eq!(send(TEAM_KEY, None, failing).await, 400);
    for i in 0..4 {
        let body = json!({"model": "gpt-4o-mini", "messages": user(&format!("[[sim: words=50]] ops {i}"))});
        assert_eq!(send(OPS_KEY, None, body).await, 200);
    }
    wait_recorded(&g, REQUESTS).await;
    g
}

/// Every ledger row, newest first, once at least `n` are committed.
pub async fn wait_recorded(g: &DirGateway, n: usize) -> Vec<LedgerRecord> {
    let ledger = g.state.billing.ledger.clone().expect("ledger open");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        ledger.flush().await.expect("flush");
        let rows = ledger
            .recent(&RecentFilter {
                limit: 1000,
                ..RecentFilter::default()
            })
            .expect("read ledger");
        if rows.len() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} rows recorded",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET path` on the admin listener with the token; asserts 200 and returns the JSON.
pub async fn admin_json(g: &DirGateway, path: &str) -> Value {
    let r = g
        .client
        .get(g.admin_url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("admin request sent");
    let status = r.status();
    let body = r.text().await.expect("admin body");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// The dashboard's way of showing a decimal-dollar string: trailing zeros dropped but at
/// least two decimals, thousands separated (`"1234.500000000"` → `"$1,234.50"`).
pub fn shown_dollars(usd: &str) -> String {
    let (sign, s) = match usd.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", usd),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut frac = frac.trim_end_matches('0').to_string();
    while frac.len() < 2 {
        frac.push('0');
    }
    let digits: Vec<char> = whole.chars().collect();
    let mut grouped = String::new();
    for (i, c) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(*c);
    }
    format!("{sign}${grouped}.{frac}")
}
