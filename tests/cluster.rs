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
                 redis_timeout_ms = 3000\n"
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
    let redis = RedisServer::start();
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
    let shared = converged(&a, &b, &day).await;
    assert!(
        shared.spent <= 2_000_000,
        "never past the limit: {}",
        shared.spent
    );

    // Every threshold the shared spending reached was alerted exactly once, from whichever
    // replica's settle crossed it, and no other.
    let reached: Vec<u64> = [50u64, 75, 90, 100]
        .into_iter()
        .filter(|t| shared.spent * 100 >= 2_000_000 * t)
        .collect();
    assert!(
        reached.len() >= 2,
        "spent {} crosses 50 and 75",
        shared.spent
    );
    hook.wait_accepted(reached.len(), Duration::from_secs(30))
        .await;
    // Let any duplicate show up before checking there is none.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut thresholds: Vec<u64> = hook
        .accepted()
        .iter()
        .map(|b| b["threshold_percent"].as_u64().unwrap())
        .collect();
    thresholds.sort();
    assert_eq!(thresholds, reached);

    // A restarted replica's sweep finds thresholds crossed that its own ledger has no alert
    // for, claimed by the other replica: it neither queues nor sends them.
    let alerts_of = |g: &DirGateway| {
        let l = g.state.billing.ledger.clone().expect("ledger");
        l.alerts_list(&day, &day, None).unwrap().len()
    };
    let (na, nb) = (alerts_of(&a), alerts_of(&b));
    assert_eq!(na + nb, reached.len(), "each alert queued by one replica");
    let (kept, fewer, n) = if na <= nb { (b, a, na) } else { (a, b, nb) };
    let restarted = fewer
        .restart(clustered(redis.url(), "fail_open"), clock.clone())
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        alerts_of(&restarted),
        n,
        "no alert of the other replica queued"
    );
    assert_eq!(hook.accepted().len(), reached.len());
    kept.stop().await;
    restarted.stop().await;
}

/// The shared budget once every request has been settled and recorded: spent must then
/// equal the sum of both ledgers (requests settle and record just after their response, so
/// the last ones may still be finishing when the client has its answers).
async fn converged(a: &DirGateway, b: &DirGateway, day: &str) -> tollgate::accounting::Snapshot {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = a.state.billing.store.snapshot("shared", day).await.unwrap();
        let ledgers = ledger_sum(a, "shared", day).await + ledger_sum(b, "shared", day).await;
        if s.reserved == 0 && s.spent == ledgers {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Redis {s:?} against the ledgers' {ledgers}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a replica's store answers and has nothing left to write.
async fn wait_reconciled(g: &DirGateway) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let h = g.state.billing.store.health();
        if h.connected && h.pending_reconcile == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not reconciled: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn burst(a: &DirGateway, b: &DirGateway, n: usize) {
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 40,
                      "messages": user("[[sim: words=25]] keep serving")});
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let g = if i % 2 == 0 { a } else { b };
            g.chat(Some(KEY), body.clone())
        })
        .collect();
    for r in futures_util::future::join_all(sends).await {
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_mid_traffic_loses_no_accounting_under_fail_open() {
    let mut redis = RedisServer::start();
    let hook = Webhook::start(0).await;
    let file = budget("100", &hook.url());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let a = DirGateway::start_billed(
        "cluster-kill-a",
        clustered(redis.url(), "fail_open"),
        &[("shared", &file)],
        clock.clone(),
    )
    .await;
    let b = DirGateway::start_billed(
        "cluster-kill-b",
        clustered(redis.url(), "fail_open"),
        &[("shared", &file)],
        clock.clone(),
    )
    .await;
    burst(&a, &b, 60).await;
    // Redis dies (and, without persistence, forgets everything): requests keep succeeding.
    redis.kill();
    burst(&a, &b, 60).await;
    assert!(!a.state.billing.store.health().connected || !b.state.billing.store.health().connected);
    redis.restart();
    wait_reconciled(&a).await;
    wait_reconciled(&b).await;
    burst(&a, &b, 20).await;
    wait_reconciled(&a).await;
    wait_reconciled(&b).await;
    let day = today();
    converged(&a, &b, &day).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fail_closed_refuses_while_redis_is_down_and_says_so_in_metrics() {
    let mut redis = RedisServer::start();
    let hook = Webhook::start(0).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let g = DirGateway::start_billed(
        "cluster-closed",
        clustered(redis.url(), "fail_closed"),
        &[("shared", &budget("100", &hook.url()))],
        clock,
    )
    .await;
    let body = json!({"model": "gpt-4o-mini", "messages": user("hello")});
    assert_eq!(g.chat(Some(KEY), body.clone()).await.status(), 200);
    redis.kill();
    // The first call after the kill finds Redis gone; from then on requests are refused
    // quickly, with an OpenAI-style 503.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let r = g.chat(Some(KEY), body.clone()).await;
        if r.status() == 503 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "never refused");
    };
    let e: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(e["error"]["code"], "accounting_unavailable");
    let metrics = g.admin_get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("tollgate_state_backend_up 0"), "{metrics}");
    redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = g.chat(Some(KEY), body.clone()).await;
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(
            std::time::Instant::now() < deadline,
            "not serving after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = g.admin_get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("tollgate_state_backend_up 1"), "{metrics}");
    g.stop().await;
}
