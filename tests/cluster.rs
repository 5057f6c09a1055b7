//! Cluster mode: two gateways sharing one budget through one `redis-server` (started by
//! the test on a free port). Under heavy concurrency the shared spent figure equals the
//! sum of both ledgers to the nano-dollar, the budget is never exceeded, every threshold
//! alert is delivered exactly once, and a Redis restart loses no accounting.

mod common;
#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use common::dir::DirGateway;
use common::user;
use serde_json::json;
use support::redis::RedisServer;
use support::webhook::Webhook;
use tollgate::budget::keys::KeyHash;
use tollgate::clock::{Clock, SystemClock};

const KEY: &str = "tg-cluster-test-key";

fn budget(limit: &str, hook: &str) -> String {
    format!(
        "daily_limit = \"{limit}\"\npolicy = \"block\"\n[alerts]\nwebhooks = [\"{hook}\"]\n\
         [[keys]]\nid = \"svc\"\nsha256 = \"{}\"\n",
        KeyHash::of(KEY).to_hex()
    )
}

fn clustered(url: String, failure: &'static str) -> impl Fn(String) -> String {
    move |routes: String| {
        routes.replace("allow_anonymous = true", "allow_anonymous = false")
            + &format!(
                "\n[state]\nbackend = \"redis\"\nredis_url = \"{url}\"\nredis_failure = \"{failure}\"\n\
                 redis_timeout_ms = 500\n"
            )
    }
}

fn today() -> String {
    SystemClock.now().to_string()[..10].to_string()
}

async fn ledger_sum(g: &DirGateway, budget: &str, day: &str) -> u64 {
    let l = g.state.billing.ledger.clone().expect("ledger");
    l.flush().await.unwrap();
    l.sum_cost(budget, day).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_one_budget_exactly_and_alert_once() {
    let redis = RedisServer::start().await;
    let hook = Webhook::start(0).await;
    // About a hundred of the requests below fit in $0.002.
    let file = budget("0.002", &hook.url());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let a = DirGateway::start_billed(
        "cluster-a",
        clustered(redis.url(), "fail_open"),
        &[("shared", &file)],
        clock.clone(),
    )
    .await;
    let b = DirGateway::start_billed(
        "cluster-b",
        clustered(redis.url(), "fail_open"),
        &[("shared", &file)],
        clock.clone(),
    )
    .await;
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 40,
                      "messages": user("[[sim: words=25]] share this budget")});
    let sends: Vec<_> = (0..240)
        .map(|i| {
            let g = if i % 2 == 0 { &a } else { &b };
            g.chat(Some(KEY), body.clone())
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for r in futures_util::future::join_all(sends).await {
        match r.status().as_u16() {
            200 => ok += 1,
            429 => refused += 1,
            s => panic!("unexpected status {s}: {}", r.text().await.unwrap()),
        }
        }
    assert!(ok > 20 && refused > 20, "ok {ok}, refused {refused}");

    let day = today();
    let shared = a.state.billing.store.snapshot("shared", &day).await.unwrap();
    let ledgers = ledger_sum(&a, "shared", &day).await + ledger_sum(&b, "shared", &day).await;
    assert_eq!(shared.spent, ledgers, "Redis spent equals the sum of both ledgers");
    assert_eq!(shared.reserved, 0, "every reservation was settled");
    assert!(shared.spent <= 2_000_000, "never past the limit: {}", shared.spent);

    // 50, 75 and 90 were crossed; each alert arrived once, from whichever replica crossed it.
    let got = hook.wait_accepted(3, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut thresholds: Vec<u64> = hook
        .accepted()
        .iter()
        .map(|b| b["threshold_percent"].as_u64().unwrap())
        .collect();
    thresholds.sort();
    let mut unique = thresholds.clone();
    unique.dedup();
    assert_eq!(thresholds, unique, "no alert twice: {got:?}");
    assert!(thresholds.starts_with(&[50, 75, 90]), "{thresholds:?}");
    a.stop().await;
    b.stop().await;
}
