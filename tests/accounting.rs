//! Cost accounting end to end on the embedded state (SQLite ledger, in-process budget
//! counters): prices from reported and estimated usage, the ledger record of every
//! request, budget policies (block, downgrade, allow), alerts delivered exactly once with
//! retries, day rollover in a budget's time zone, and recovery after a restart.

mod common;
#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use common::dir::DirGateway;
use common::{sse_json, user};
use serde_json::{json, Value};
use support::webhook::Webhook;
use tollgate::budget::keys::KeyHash;
use tollgate::clock::{Clock, ManualClock, SystemClock};
use tollgate::ledger::{LedgerRecord, RecentFilter};

const KEY: &str = "tg-accounting-test-key";

fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A budget billing `KEY`, with extra settings.
fn budget(limit: &str, extra: &str) -> String {
    format!(
        "daily_limit = \"{limit}\"\n{extra}\n[[keys]]\nid = \"svc\"\nsha256 = \"{}\"\n",
        KeyHash::of(KEY).to_hex()
    )
}

fn closed(routes: String) -> String {
    routes.replace("allow_anonymous = true", "allow_anonymous = false")
}

/// Routes with a cheap `simple` tier and a premium `complex` tier.
fn tiered(routes: String) -> String {
    closed(routes).replace(
        "default_model = \"gpt-4o-mini\"",
        "default_model = \"gpt-4o-mini\"\nallow_tier_header = true",
    ) + "\n[[routing.tiers]]\nname = \"simple\"\nchain = [\"gpt-4o-mini\"]\n\
         \n[[routing.tiers]]\nname = \"complex\"\npremium = true\nchain = [\"gpt-4-turbo\"]\n"
}

/// The ledger row of request `id`. A request is recorded just after its response ends,
/// so the row may take a moment to appear.
/// The thresholds of delivered alert payloads, in order.
fn thresholds(payloads: &[Value]) -> Vec<u64> {
    let mut t: Vec<u64> = payloads
        .iter()
        .map(|b| b["threshold_percent"].as_u64().unwrap())
        .collect();
    t.sort();
    t
}

/// Budget lines for a policy that never refuses and alerts to `hook`.
fn alerting(hook: &Webhook) -> String {
    format!(
        "policy = \"allow\"\n[alerts]\nwebhooks = [\"{}\"]",
        hook.url()
    )
}

/// A billed gateway whose `team` budget has `limit` and alerts to `hook`, after one answered
/// request with `prompt`; returns it with that request's ledger record.
async fn after_one_request(
    name: &str,
    limit: &str,
    hook: &Webhook,
    prompt: &str,
) -> (DirGateway, LedgerRecord) {
    let g = DirGateway::start_billed(
        name,
        closed,
        &[("team", &budget(limit, &alerting(hook)))],
        system(),
    )
    .await;
    let r = g
        .chat(
            Some(KEY),
            json!({"model": "gpt-4o-mini", "messages": user(prompt)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let row = ledger_row(&g, &request_id(&r)).await;
    (g, row)
}

async fn ledger_row(g: &DirGateway, id: &str) -> LedgerRecord {
    let ledger = g.state.billing.ledger.clone().expect("ledger open");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        ledger.flush().await.expect("flush");
        let rows = ledger
            .recent(&RecentFilter {
                limit: 500,
                ..RecentFilter::default()
            })
            .expect("read ledger");
        if let Some(r) = rows.into_iter().find(|r| r.id == id) {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "no ledger row {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_string()
}

/// gpt-4o-mini: $0.15 / $0.60 per 1M tokens = 150 / 600 nano-dollars per token.
fn mini_cost(prompt: u64, completion: u64) -> u64 {
    150 * prompt + 600 * completion
}

#[tokio::test]
async fn plain_and_streamed_requests_are_priced_from_reported_usage_and_recorded() {
    let g = DirGateway::start_billed(
        "acct-priced",
        closed,
        &[("team", &budget("10", ""))],
        system(),
    )
    .await;
    let r = g
        .chat(
            Some(KEY),
            json!({"model": "gpt-4o-mini", "messages": user("price me")}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    let (p, c) = (
        body["usage"]["prompt_tokens"].as_u64().unwrap(),
        body["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    let row = ledger_row(&g, &id).await;
    assert_eq!(row.cost_nanos, mini_cost(p, c));
    assert_eq!((row.input_tokens, row.output_tokens), (p, c));
    assert!(!row.estimated && !row.streamed);
    assert_eq!(row.budget, "team");
    assert_eq!(row.key_id.as_deref(), Some("svc"));
    assert_eq!(row.served_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(row.status, 200);
    assert_eq!(row.price_version, g.state.config.load().version);

    // A stream whose client did not ask for usage: tollgate asked for it, billed it, and
    // kept the usage chunk from the client.
    let r = g
        .chat(
            Some(KEY),
            json!({"model": "gpt-4o-mini", "stream": true, "messages": user("stream me")}),
        )
        .await;
    let id = request_id(&r);
    let chunks = sse_json(&r.text().await.unwrap());
    assert!(chunks
        .iter()
        .all(|c| c.get("usage").is_none_or(Value::is_null)));
    let row = ledger_row(&g, &id).await;
    assert!(row.streamed && !row.estimated);
    assert!(row.output_tokens > 0);
    assert_eq!(
        row.cost_nanos,
        mini_cost(row.input_tokens, row.output_tokens)
    );

    // The budget's spent figure is the ledger's sum, to the nano-dollar.
    let day = row.day.clone();
    let snap = g.state.billing.store.snapshot("team", &day).await.unwrap();
    let ledger = g.state.billing.ledger.clone().unwrap();
    assert_eq!(snap.spent, ledger.sum_cost("team", &day).unwrap());
    assert_eq!(snap.reserved, 0);
    g.stop().await;
}

#[tokio::test]
async fn a_stream_cut_midway_is_billed_on_counted_tokens_and_marked_estimated() {
    let g = DirGateway::start_billed("acct-cut", closed, &[("team", &budget("10", ""))], system())
        .await;
    let r = g
        .chat(
            Some(KEY),
            json!({"model": "gpt-4o-mini", "stream": true,
                   "messages": user("[[sim: words=300 reset_after=6]] tell me a long story")}),
        )
        .await;
    let id = request_id(&r);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("error"),
        "the client sees the stream fail: {text}"
    );
    let row = ledger_row(&g, &id).await;
    assert!(row.estimated, "{row:?}");
    assert!(row.input_tokens > 0 && row.output_tokens > 0, "{row:?}");
    assert_eq!(
        row.cost_nanos,
        mini_cost(row.input_tokens, row.output_tokens)
    );
    g.stop().await;
}

#[tokio::test]
async fn block_policy_refuses_with_budget_exceeded_and_never_overspends() {
    // 100 µ$: a few small requests fit, then the budget refuses.
    let g = DirGateway::start_billed(
        "acct-block",
        closed,
        &[("team", &budget("0.0001", "policy = \"block\""))],
        system(),
    )
    .await;
    let body =
        json!({"model": "gpt-4o-mini", "max_tokens": 40, "messages": user("[[sim: words=20]] hi")});
    let mut refused = None;
    for _ in 0..50 {
        let r = g.chat(Some(KEY), body.clone()).await;
        if r.status() == 429 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let r = refused.expect("the budget refuses eventually");
    assert_eq!(r.headers()["x-should-retry"], "false");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "budget_exceeded");
    assert_eq!(e["error"]["type"], "insufficient_quota");
    assert!(e["error"]["message"].as_str().unwrap().contains("`team`"));
    let ledger = g.state.billing.ledger.clone().unwrap();
    ledger.flush().await.unwrap();
    let day = tollgate::clock::Clock::now(&SystemClock).to_string()[..10].to_string();
    let spent = ledger.sum_cost("team", &day).unwrap();
    assert!(
        spent > 0 && spent <= 100_000,
        "spent {spent} nano-dollars of 100,000"
    );
    g.stop().await;
}

#[tokio::test]
async fn downgrade_policy_serves_from_the_cheapest_tier_when_premium_does_not_fit() {
    // $0.01 left: 1,000 output tokens of gpt-4-turbo ($30/M) do not fit, of gpt-4o-mini do.
    let g = DirGateway::start_billed(
        "acct-downgrade",
        tiered,
        &[("team", &budget("0.01", "policy = \"downgrade\""))],
        system(),
    )
    .await;
    let r = g
        .client
        .post(g.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-tollgate-tier", "complex")
        .json(&json!({"model": "auto", "max_tokens": 1000, "messages": user("hard question")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-model"], "gpt-4o-mini");
    assert_eq!(r.headers()["x-tollgate-tier"], "simple");
    let reason = r.headers()["x-tollgate-route-reason"].to_str().unwrap();
    assert!(reason.contains("budget_downgrade"), "{reason}");
    g.stop().await;
}

#[tokio::test]
async fn each_threshold_alert_is_delivered_once_after_retries() {
    let hook = Webhook::start(2).await;
    let g = DirGateway::start_billed("acct-alerts", closed, &[], system()).await;
    let body = json!({"model": "gpt-4o-mini", "messages": user("[[sim: words=30]] spend")});
    // Measure one request's cost on the anonymous-free path: a first budget with no limit.
    std::fs::write(g.dir.join("budgets/team.toml"), budget("1000", "")).unwrap();
    let v = g.state.config.load().version.clone();
    g.wait_for_reload(&v).await;
    let r = g.chat(Some(KEY), body.clone()).await;
    let one = ledger_row(&g, &request_id(&r)).await.cost_nanos;
    assert!(one > 0);
    // A fresh budget whose limit is 20 such requests, that never refuses, alerting the hook.
    let limit = tollgate::money::Decimal9(20 * one).to_string();
    let extra = alerting(&hook);
    std::fs::remove_file(g.dir.join("budgets/team.toml")).unwrap();
    std::fs::write(g.dir.join("budgets/ops.toml"), budget(&limit, &extra)).unwrap();
    let v = g.state.config.load().version.clone();
    g.wait_for_reload(&v).await;
    let sends: Vec<_> = (0..24).map(|_| g.chat(Some(KEY), body.clone())).collect();
    for r in futures_util::future::join_all(sends).await {
        assert_eq!(r.status(), 200);
    }
    let got = hook.wait_accepted(4, Duration::from_secs(30)).await;
    // Let any duplicate show up before checking there is none.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_again = hook.accepted();
    assert_eq!(got_again.len(), 4, "{got_again:?}");
    assert_eq!(thresholds(&got), vec![50, 75, 90, 100]);
    for b in &got {
        assert_eq!(b["budget"], "ops");
        assert!(b["text"].as_str().unwrap().contains("budget `ops`"));
        assert!(b["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("tollgate-alert:ops:"));
        assert_eq!(b["top_models"][0]["model"], "gpt-4o-mini");
    }
    // The two refused deliveries were retried; every attempt carried the idempotency key.
    let all = hook.deliveries();
    assert_eq!(all.len(), 6);
    assert!(all
        .iter()
        .all(|d| d.idempotency_header.as_deref() == d.body["idempotency_key"].as_str()));
    let alerts = g
        .state
        .billing
        .ledger
        .clone()
        .unwrap()
        .alerts_list("2000-01-01", "2999-12-31", Some("ops"))
        .unwrap();
    assert_eq!(alerts.len(), 4);
    let metrics = g.admin_get("/metrics").await.text().await.unwrap();
    for t in [50, 75, 90, 100] {
        let line = format!("tollgate_alerts_total{{budget=\"ops\",threshold=\"{t}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    assert!(metrics.contains("tollgate_alert_deliveries_total{result=\"delivered\"} 4"));
    assert!(metrics.contains("tollgate_alert_deliveries_total{result=\"failed\"} 2"));
    g.stop().await;
}

#[tokio::test]
async fn a_new_day_in_the_budget_time_zone_starts_from_zero() {
    let clock = Arc::new(ManualClock::default());
    // 22:50 UTC on the 21st is 23:50 in Berlin.
    clock.set("2026-11-21T22:50:00Z".parse().unwrap());
    let g = DirGateway::start_billed(
        "acct-day",
        closed,
        &[("team", &budget("0.0001", "timezone = \"Europe/Berlin\""))],
        clock.clone(),
    )
    .await;
    let body =
        json!({"model": "gpt-4o-mini", "max_tokens": 40, "messages": user("[[sim: words=20]] hi")});
    let mut status = 200;
    for _ in 0..50 {
        let r = g.chat(Some(KEY), body.clone()).await;
        status = r.status().as_u16();
        if status == 429 {
            break;
        }
        r.bytes().await.unwrap();
    }
    assert_eq!(status, 429, "spent out on the 21st");
    // 23:05 UTC is 00:05 on the 22nd in Berlin: a new day, a new budget.
    clock.advance(Duration::from_secs(15 * 60));
    let r = g.chat(Some(KEY), body.clone()).await;
    assert_eq!(r.status(), 200);
    let row = ledger_row(&g, &request_id(&r)).await;
    assert_eq!(row.day, "2026-11-22");
    let ledger = g.state.billing.ledger.clone().unwrap();
    assert!(ledger.sum_cost("team", "2026-11-21").unwrap() > 0);
    assert_eq!(
        ledger.sum_cost("team", "2026-11-22").unwrap(),
        row.cost_nanos
    );
    g.stop().await;
}

#[tokio::test]
async fn a_restart_rebuilds_spending_from_the_ledger_and_delivers_queued_alerts() {
    let hook = Webhook::start(usize::MAX).await;
    let (g, row) = after_one_request("acct-restart", "0.000001", &hook, "over the limit").await;
    // The webhook refuses: the alerts stay queued.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hook.deliveries().is_empty() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(hook.accepted().is_empty());
    let g = g.restart(closed, system()).await;
    let snap = g
        .state
        .billing
        .store
        .snapshot("team", &row.day)
        .await
        .unwrap();
    assert_eq!(snap.spent, row.cost_nanos, "spent rebuilt from the ledger");
    hook.accept_all();
    let got = hook.wait_accepted(4, Duration::from_secs(60)).await;
    assert_eq!(thresholds(&got), vec![50, 75, 90, 100]);
    g.stop().await;
}

/// A gateway stopped between a request's settle and its alert claims leaves spending past
/// thresholds that no later settle crosses again; so does a limit lowered below what was
/// spent. The sweep on start claims them.
#[tokio::test]
async fn thresholds_passed_without_an_alert_are_claimed_on_start() {
    let hook = Webhook::start(0).await;
    let (g, row) = after_one_request("acct-sweep", "100", &hook, "well under the limit").await;
    assert!(row.cost_nanos > 1_000, "cost {}", row.cost_nanos);
    // The day's spending is now past every threshold of a $0.000001 limit, and no settle
    // will cross them again.
    std::fs::write(
        g.dir.join("budgets").join("team.toml"),
        budget("0.000001", &alerting(&hook)),
    )
    .unwrap();
    let g = g.restart(closed, system()).await;
    let got = hook.wait_accepted(4, Duration::from_secs(30)).await;
    assert_eq!(thresholds(&got), vec![50, 75, 90, 100]);
    assert_eq!(got[0]["spent_nanodollars"], row.cost_nanos, "{}", got[0]);
    // A second start finds them claimed and sends nothing again.
    let g = g.restart(closed, system()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.accepted().len(), 4);
    g.stop().await;
}

#[tokio::test]
async fn the_global_budget_caps_every_caller() {
    let g = DirGateway::start_billed(
        "acct-global",
        closed,
        &[
            ("team", &budget("100", "")),
            ("all", "global = true\ndaily_limit = \"0.00001\"\n"),
        ],
        system(),
    )
    .await;
    let r = g
        .chat(
            Some(KEY),
            json!({"model": "gpt-4o-mini", "max_tokens": 100, "messages": user("hi")}),
        )
        .await;
    assert_eq!(r.status(), 429);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "budget_exceeded");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("`all`"),
        "{e}"
    );
    // Nothing stays reserved on the caller's budget after the refusal.
    let day = SystemClock.now().to_string()[..10].to_string();
    let team = g.state.billing.store.snapshot("team", &day).await.unwrap();
    assert_eq!(team.reserved, 0);
    g.stop().await;
}

#[tokio::test]
async fn a_budget_cost_ceiling_skips_models_above_it() {
    let g = DirGateway::start_billed(
        "acct-ceiling",
        |r| {
            closed(r).replace(
                "[models.gpt-4-turbo]",
                "[models.gpt-4-turbo]\nfallback = [\"gpt-4o-mini\"]",
            )
        },
        &[("team", &budget("100", "max_request_cost = \"0.001\""))],
        system(),
    )
    .await;
    // 500 output tokens of gpt-4-turbo are about $0.015: above the budget's $0.001 ceiling.
    let r = g
        .chat(
            Some(KEY),
            json!({"model": "gpt-4-turbo", "max_tokens": 500, "messages": user("hi")}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-model"], "gpt-4o-mini");
    let reason = r.headers()["x-tollgate-route-reason"].to_str().unwrap();
    assert!(reason.contains("gpt-4-turbo:cost"), "{reason}");
    g.stop().await;
}
