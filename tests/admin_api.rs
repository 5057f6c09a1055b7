//! The admin API end to end: real traffic through the gateway to the simulated providers,
//! then every finance route checked against the ledger to the nano-dollar — budgets,
//! spend by each key, spend per day, the routing mix and its saving, alerts, requests
//! paged and filtered, the CSV export streamed in chunks — plus the token, the public
//! listener's refusal of admin paths, parameter errors, and fleet-wide budget figures in
//! cluster mode.

mod common;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use common::dir::{DirGateway, ADMIN};
use common::finance::{
    admin_json, start_with_traffic, tiered, today, wait_recorded, REQUESTS, TEAM_KEY,
};
use common::user;
use serde_json::{json, Value};
use tollgate::clock::SystemClock;
use tollgate::ledger::{format_dollars, LedgerRecord};

/// Sums cost and counts rows per `key(row)`, independently of the ledger's SQL.
fn group(
    rows: &[LedgerRecord],
    key: impl Fn(&LedgerRecord) -> String,
) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for r in rows {
        let e = m.entry(key(r)).or_insert((0, 0));
        e.0 += r.cost_nanos;
        e.1 += 1;
    }
    m
}

/// The `groups` of a spend answer as key → (cost, requests), checking each dollar string.
fn groups(v: &Value) -> BTreeMap<String, (u64, u64)> {
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let cost = g["cost_nanos"].as_u64().unwrap();
            assert_eq!(g["cost_usd"], format_dollars(cost));
            let k = g["key"].as_str().unwrap().to_string();
            (k, (cost, g["requests"].as_u64().unwrap()))
        })
        .collect()
}

#[tokio::test]
async fn budgets_and_spend_equal_the_ledger_sums_to_the_nano_dollar() {
    let g = start_with_traffic("admin-sums").await;
    let rows = wait_recorded(&g, REQUESTS).await;
    assert_eq!(rows.len(), REQUESTS);
    let day = today();
    let ledger = g.state.billing.ledger.clone().unwrap();

    let v = admin_json(&g, "/admin/api/budgets").await;
    assert_eq!(v["scope"], "replica");
    assert_eq!(v["backend"], "embedded");
    let budgets = v["budgets"].as_array().unwrap();
    assert_eq!(budgets.len(), 2);
    for b in budgets {
        let name = b["name"].as_str().unwrap();
        let spent = ledger.sum_cost(name, &day).unwrap();
        assert!(spent > 0, "{name}");
        assert_eq!(b["day"], day);
        assert_eq!(b["spent_nanos"], spent, "{name}");
        assert_eq!(b["spent_usd"], format_dollars(spent));
        assert_eq!(b["reserved_nanos"], 0);
        let limit = b["limit_nanos"].as_u64().unwrap();
        assert_eq!(b["remaining_nanos"], limit.saturating_sub(spent));
        assert_eq!(
            b["percent"],
            (u128::from(spent) * 100 / u128::from(limit)) as u64
        );
        let crossed: Vec<u64> = b["thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["crossed"] == true)
            .map(|t| t["percent"].as_u64().unwrap())
            .collect();
        match name {
            "team" => {
                assert_eq!(limit, 5_000_000_000);
                assert!(crossed.is_empty());
            }
            "ops" => {
                assert_eq!(limit, 100_000);
                assert!(spent >= limit, "ops is pushed past its limit: {spent}");
                assert_eq!(crossed, [50, 75, 90, 100]);
            }
            other => panic!("unexpected budget {other}"),
        }
    }

    // Spend by each key, today and for one budget, against sums of the rows themselves.
    let by_budget = admin_json(&g, "/admin/api/spend").await;
    assert_eq!(by_budget["scope"], "replica");
    assert_eq!(by_budget["by"], "budget");
    assert_eq!(groups(&by_budget), group(&rows, |r| r.budget.clone()));
    let total: u64 = rows.iter().map(|r| r.cost_nanos).sum();
    assert_eq!(by_budget["total_nanos"], total);
    assert_eq!(by_budget["requests"], REQUESTS as u64);
    let model = |r: &LedgerRecord| r.served_model.clone().unwrap_or(r.requested_model.clone());
    let v = admin_json(&g, &format!("/admin/api/spend?by=model&day={day}")).await;
    assert_eq!(groups(&v), group(&rows, model));
    assert!(groups(&v).contains_key("gpt-4-turbo") && groups(&v).contains_key("mistral-small"));
    let v = admin_json(&g, "/admin/api/spend?by=provider").await;
    assert_eq!(
        groups(&v),
        group(&rows, |r| r.provider.clone().unwrap_or_default())
    );
    let v = admin_json(&g, "/admin/api/spend?by=tier&budget=team").await;
    let team: Vec<LedgerRecord> = rows
        .iter()
        .filter(|r| r.budget == "team")
        .cloned()
        .collect();
    assert_eq!(
        groups(&v),
        group(&team, |r| r.tier.clone().unwrap_or_default())
    );
    assert_eq!(groups(&v)["simple"].1, 3);
    assert_eq!(groups(&v)["complex"].1, 2);
    let v = admin_json(&g, "/admin/api/spend?day=2001-01-01").await;
    assert_eq!(v["total_nanos"], 0);
    assert!(v["groups"].as_array().unwrap().is_empty());

    // Thirty days for the chart, every day present, today's total last.
    let v = admin_json(&g, "/admin/api/spend/daily?days=30").await;
    let days = v["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days[29]["day"], day);
    assert_eq!(days[29]["cost_nanos"], total);
    assert_eq!(days[29]["requests"], REQUESTS as u64);
    assert!(days[..29].iter().all(|d| d["cost_nanos"] == 0));
    assert_eq!(v["total_nanos"], total);
    let v = admin_json(&g, "/admin/api/spend/daily?days=7&budget=ops").await;
    assert_eq!(v["days"].as_array().unwrap().len(), 7);
    assert_eq!(v["total_nanos"], ledger.sum_cost("ops", &day).unwrap());
    g.stop().await;
}

#[tokio::test]
async fn routing_mix_prices_each_tier_at_the_premium_model_for_the_saving() {
    let g = start_with_traffic("admin-routing").await;
    let rows = wait_recorded(&g, REQUESTS).await;
    let v = admin_json(&g, "/admin/api/routing").await;
    assert_eq!(v["premium_model"], "gpt-4-turbo");
    assert_eq!(v["requests"], REQUESTS as u64);
    let mut premium_total = 0u64;
    let mut actual_total = 0u64;
    for t in v["tiers"].as_array().unwrap() {
        let tier = t["tier"].as_str().unwrap();
        let mine: Vec<&LedgerRecord> = rows
            .iter()
            .filter(|r| r.tier.as_deref().unwrap_or("") == tier)
            .collect();
        let cost: u64 = mine.iter().map(|r| r.cost_nanos).sum();
        let input: u64 = mine.iter().map(|r| r.input_tokens).sum();
        let output: u64 = mine.iter().map(|r| r.output_tokens).sum();
        assert!(mine.iter().all(|r| r.cached_input_tokens == 0));
        // gpt-4-turbo: $10 / $30 per million tokens = 10 000 / 30 000 nano-dollars each.
        let premium = 10_000 * input + 30_000 * output;
        assert_eq!(t["requests"], mine.len() as u64, "{tier}");
        assert_eq!(t["cost_nanos"], cost, "{tier}");
        assert_eq!(t["premium_cost_nanos"], premium, "{tier}");
        assert_eq!(t["saving_nanos"], premium as i64 - cost as i64, "{tier}");
        assert_eq!(
            t["percent_of_requests"],
            mine.len() as u64 * 100 / REQUESTS as u64
        );
        premium_total += premium;
        actual_total += cost;
        if tier == "complex" {
            assert_eq!(t["saving_nanos"], 0, "the premium tier saves nothing");
        }
    }
    assert_eq!(v["cost_nanos"], actual_total);
    assert_eq!(v["premium_cost_nanos"], premium_total);
    assert!(premium_total > actual_total);
    assert_eq!(
        v["saving_usd"],
        format_dollars(premium_total - actual_total)
    );
    let v = admin_json(&g, "/admin/api/routing?premium=mistral-small&budget=ops").await;
    assert_eq!(v["premium_model"], "mistral-small");
    assert!(
        v["saving_nanos"].as_i64().unwrap() < 0,
        "cheaper than what was used: {v}"
    );
    assert!(v["saving_usd"].as_str().unwrap().starts_with('-'));
    g.stop().await;
}

#[tokio::test]
async fn requests_are_paged_and_filtered_by_budget_model_and_status() {
    let g = start_with_traffic("admin-requests").await;
    let rows = wait_recorded(&g, REQUESTS).await;
    let v = admin_json(&g, "/admin/api/requests?limit=5").await;
    assert_eq!(v["scope"], "replica");
    let page = |v: &Value| -> Vec<String> {
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    assert_eq!(page(&v), ids[..5]);
    let first = &v["requests"][0];
    assert_eq!(first["cost_usd"], format_dollars(rows[0].cost_nanos));
    assert_eq!(first["cost_nanos"], rows[0].cost_nanos);
    assert!(first["key_id"] == "svc" && first.get("key").is_none());
    // Keyset paging follows `next_before`; offset paging agrees with it.
    let before = v["next_before"].as_str().unwrap().to_string();
    let v2 = admin_json(&g, &format!("/admin/api/requests?limit=5&before={before}")).await;
    assert_eq!(page(&v2), ids[5..10]);
    let v3 = admin_json(&g, "/admin/api/requests?limit=5&offset=10").await;
    assert_eq!(page(&v3), ids[10..]);
    assert_eq!(v3["next_before"], Value::Null);

    let v = admin_json(&g, "/admin/api/requests?budget=ops&limit=100").await;
    assert_eq!(v["count"], 4);
    assert!(v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["budget"] == "ops"));
    let v = admin_json(&g, "/admin/api/requests?model=gpt-4-turbo").await;
    assert_eq!(v["count"], 2);
    let v = admin_json(&g, "/admin/api/requests?status=400").await;
    assert_eq!(v["count"], 1);
    assert_eq!(v["requests"][0]["status"], 400);
    assert_eq!(v["requests"][0]["cost_nanos"], 0);
    let v = admin_json(
        &g,
        "/admin/api/requests?budget=team&model=mistral-small&status=200",
    )
    .await;
    assert_eq!(v["count"], 2);
    g.stop().await;
}

#[tokio::test]
async fn alerts_list_the_thresholds_crossed_with_the_times_the_budgets_show() {
    let g = start_with_traffic("admin-alerts").await;
    let day = today();
    let ledger = g.state.billing.ledger.clone().unwrap();
    // Alerts are claimed as each settle crosses a threshold; wait for the four of `ops`.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let claimed = loop {
        let a = ledger.alerts_list(&day, &day, Some("ops")).unwrap();
        if a.len() == 4 || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(claimed.len(), 4);
    let v = admin_json(&g, "/admin/api/alerts?days=30").await;
    assert_eq!(v["scope"], "replica");
    let alerts = v["alerts"].as_array().unwrap();
    let mut thresholds: Vec<u64> = alerts
        .iter()
        .map(|a| {
            assert_eq!(a["budget"], "ops");
            assert_eq!(a["day"], day);
            assert!(a["message"].as_str().unwrap().contains("ops"), "{a}");
            assert_eq!(a["limit_nanos"], 100_000);
            a["threshold"].as_u64().unwrap()
        })
        .collect();
    thresholds.sort();
    assert_eq!(thresholds, [50, 75, 90, 100]);
    let budgets = admin_json(&g, "/admin/api/budgets").await;
    let ops = budgets["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "ops")
        .unwrap()
        .clone();
    for t in ops["thresholds"].as_array().unwrap() {
        let c = claimed
            .iter()
            .find(|a| u64::from(a.threshold) == t["percent"].as_u64().unwrap())
            .unwrap();
        assert_eq!(t["crossed_at_ms"], c.claimed_at_ms);
        assert!(t["crossed_at"].as_str().unwrap().ends_with('Z'));
    }
    let none = admin_json(&g, "/admin/api/alerts?budget=team").await;
    assert!(none["alerts"].as_array().unwrap().is_empty());
    g.stop().await;
}

/// A ledger row for the export test: `n` seconds into `day` (UTC).
fn synthetic(n: u64, budget: &str, day: &str) -> LedgerRecord {
    let midnight: jiff::Timestamp = format!("{day}T00:00:00Z").parse().unwrap();
    LedgerRecord {
        id: format!("syn-{day}-{budget}-{n}"),
        at_ms: midnight.as_millisecond() + n as i64 * 1000,
        day: day.into(),
        budget: budget.into(),
        key_id: Some("svc".into()),
        requested_model: "auto".into(),
        tier: Some("simple".into()),
        route_reason: "tier=simple;score=0.10".into(),
        served_model: Some("gpt-4o-mini".into()),
        provider: Some("openai".into()),
        attempts: "gpt-4o-mini 200 ok 12ms".into(),
        attempt_count: 1,
        input_tokens: 100 + n,
        output_tokens: 40,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
        estimated: false,
        cost_nanos: 150 * (100 + n) + 600 * 40,
        price_version: "test".into(),
        latency_ms: 12,
        ttft_ms: None,
        status: 200,
        error_code: None,
        streamed: false,
    }
}

#[tokio::test]
async fn csv_export_streams_exactly_the_rows_of_a_date_range_and_budget_in_chunks() {
    let g = start_with_traffic("admin-export").await;
    let ledger = g.state.billing.ledger.clone().unwrap();
    // 24 000 rows over four days and two budgets, beside today's real traffic.
    let days = ["2025-03-01", "2025-03-02", "2025-03-03", "2025-03-04"];
    for day in days {
        for n in 0..3000 {
            ledger.record(synthetic(n, "team", day));
            ledger.record(synthetic(n, "ops", day));
        }
    }
    wait_recorded(&g, 0).await;

    let started = Instant::now();
    let mut r = g
        .admin_get("/admin/api/export.csv?from=2025-03-02&to=2025-03-03&budget=team")
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    assert!(r.headers().get("content-length").is_none());
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"tollgate-team-2025-03-02-2025-03-03.csv\""
    );
    assert_eq!(r.headers()["x-tollgate-scope"], "replica");
    let mut body = Vec::new();
    let mut chunks = 0;
    while let Some(c) = r.chunk().await.unwrap() {
        chunks += 1;
        body.extend_from_slice(&c);
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("id,at_ms,at,day,budget,"));
    let expected: Vec<String> = ["2025-03-02", "2025-03-03"]
        .iter()
        .flat_map(|d| (0..3000).map(move |n| format!("syn-{d}-team-{n}")))
        .collect();
    let got: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        got, expected,
        "oldest first, only team, only those two days"
    );
    assert!(chunks > 1, "arrived in {chunks} chunk(s)");
    let cost_col = lines[0].split(',').position(|h| h == "cost_usd").unwrap();
    let row = synthetic(7, "team", "2025-03-02");
    let line = lines
        .iter()
        .find(|l| l.starts_with(&format!("{},", row.id)))
        .unwrap();
    assert_eq!(
        line.split(',').nth(cost_col).unwrap(),
        format_dollars(row.cost_nanos)
    );
    eprintln!(
        "export: {} rows, {} bytes in {chunks} chunks, {:?} ({:.0} rows/s)",
        got.len(),
        text.len(),
        elapsed,
        got.len() as f64 / elapsed.as_secs_f64()
    );

    // Today's export (the default range) holds the real traffic; RFC 3339 bounds work too.
    let r = g.admin_get("/admin/api/export.csv").await;
    assert_eq!(r.status(), 200);
    let today_csv = r.text().await.unwrap();
    assert_eq!(
        today_csv.split("\r\n").filter(|l| !l.is_empty()).count(),
        REQUESTS + 1
    );
    let r = g
        .admin_get(
            "/admin/api/export.csv?from=2025-03-01T00:00:10Z&to=2025-03-01T00:00:13Z&budget=ops",
        )
        .await;
    let ids: Vec<String> = r
        .text()
        .await
        .unwrap()
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        [
            "syn-2025-03-01-ops-10",
            "syn-2025-03-01-ops-11",
            "syn-2025-03-01-ops-12"
        ]
    );

    // A client that leaves after the first chunk stops the export; the listener and the
    // ledger's readers keep serving.
    let mut r = g
        .admin_get("/admin/api/export.csv?from=2025-03-01&to=2025-03-04")
        .await;
    assert!(r.chunk().await.unwrap().is_some());
    drop(r);
    for _ in 0..3 {
        let v = admin_json(
            &g,
            "/admin/api/spend?from=2025-03-01&to=2025-03-04&by=budget",
        )
        .await;
        assert_eq!(v["requests"], 24_000);
    }
    g.stop().await;
}

#[tokio::test]
async fn admin_routes_need_the_token_and_the_public_listener_serves_none_of_them() {
    let g =
        DirGateway::start_billed("admin-auth", tiered, &[], std::sync::Arc::new(SystemClock)).await;
    let paths = [
        "/admin/api/status",
        "/admin/api/breakers",
        "/admin/api/budgets",
        "/admin/api/requests",
        "/admin/api/spend",
        "/admin/api/spend/daily",
        "/admin/api/routing",
        "/admin/api/alerts",
        "/admin/api/export.csv",
        "/metrics",
    ];
    for path in paths {
        for token in [None, Some("wrong-token")] {
            let mut req = g.client.get(g.admin_url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} with {token:?}");
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["error"]["code"], "invalid_admin_token");
            assert_eq!(e["error"]["type"], "admin_error");
            assert!(e["error"].get("param").is_some() && e["error"]["message"].is_string());
        }
        let r = g.admin_get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        // The public listener knows none of them, token or not.
        let r = g
            .client
            .get(g.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "public {path}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"]["message"].is_string(), "{e}");
    }
    let r = g
        .client
        .post(g.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for path in ["/", "/assets/dashboard.js"] {
        let r = g.client.get(g.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "public {path}");
    }
    // The dashboard page itself holds no data and needs no token.
    let r = g.client.get(g.admin_url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(r.text().await.unwrap().contains("Cost dashboard"));
    g.stop().await;
}

#[tokio::test]
async fn bad_parameters_unknown_routes_and_wrong_methods_get_json_errors() {
    let g = DirGateway::start_billed(
        "admin-params",
        tiered,
        &[],
        std::sync::Arc::new(SystemClock),
    )
    .await;
    let cases = [
        ("/admin/api/spend?by=colour", "by"),
        ("/admin/api/spend?day=15-06-2025", "day"),
        ("/admin/api/spend?from=2025-06-02&to=2025-06-01", "from"),
        ("/admin/api/spend?from=2020-01-01&to=2025-01-01", "from"),
        ("/admin/api/spend/daily?days=0", "days"),
        ("/admin/api/requests?limit=0", "limit"),
        ("/admin/api/requests?limit=5000", "limit"),
        ("/admin/api/requests?status=abc", "status"),
        ("/admin/api/routing?premium=no-such-model", "premium"),
        ("/admin/api/export.csv?from=last-week", "from"),
        (
            "/admin/api/export.csv?from=2025-06-02&to=2025-06-01",
            "from",
        ),
    ];
    for (path, param) in cases {
        let r = g.admin_get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["param"], param, "{path}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["code"], "invalid_parameter");
    }
    let r = g.admin_get("/admin/api").await;
    assert_eq!(r.status(), 404);
    let r = g.admin_get("/admin/api/nope").await;
    assert_eq!(r.status(), 404);
    let r = g
        .client
        .post(g.admin_url("/admin/api/budgets"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );
    g.stop().await;
}

#[tokio::test]
async fn without_a_ledger_history_routes_say_so_and_budgets_still_answer() {
    let g = DirGateway::start("admin-noledger", |r| r, &[]).await;
    for path in [
        "/admin/api/requests",
        "/admin/api/spend",
        "/admin/api/export.csv",
    ] {
        let r = g.admin_get(path).await;
        assert_eq!(r.status(), 409, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "ledger_disabled"
        );
    }
    let v = admin_json(&g, "/admin/api/budgets").await;
    assert!(v["budgets"].is_array());
    let v = admin_json(&g, "/admin/api/status").await;
    assert!(v["config_version"].is_string() && v["breakers"].is_array());
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_cluster_mode_budgets_are_fleet_wide_and_request_detail_is_per_replica() {
    let redis = support::redis::RedisServer::start();
    let url = redis.url();
    let clustered = move |routes: String| {
        tiered(routes) + &format!("\n[state]\nbackend = \"redis\"\nredis_url = \"{url}\"\n")
    };
    let file = format!(
        "daily_limit = \"5\"\n[[keys]]\nid = \"svc\"\nsha256 = \"{}\"\n",
        tollgate::budget::keys::KeyHash::of(TEAM_KEY).to_hex()
    );
    let clock = std::sync::Arc::new(SystemClock);
    let a = DirGateway::start_billed(
        "admin-fleet-a",
        &clustered,
        &[("team", &file)],
        clock.clone(),
    )
    .await;
    let b = DirGateway::start_billed("admin-fleet-b", &clustered, &[("team", &file)], clock).await;
    for (g, n) in [(&a, 3), (&b, 2)] {
        for i in 0..n {
            let r = g
                .chat(
                    Some(TEAM_KEY),
                    json!({"model": "gpt-4o-mini", "messages": user(&format!("r{i}"))}),
                )
                .await;
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
        }
    }
    wait_recorded(&a, 3).await;
    wait_recorded(&b, 2).await;
    let day = today();
    let sum = |g: &DirGateway| {
        g.state
            .billing
            .ledger
            .clone()
            .unwrap()
            .sum_cost("team", &day)
            .unwrap()
    };
    let (on_a, on_b) = (sum(&a), sum(&b));
    let v = admin_json(&a, "/admin/api/budgets").await;
    assert_eq!(v["scope"], "fleet");
    assert_eq!(v["backend"], "redis");
    assert_eq!(v["budgets"][0]["spent_nanos"], on_a + on_b);
    let v = admin_json(&a, "/admin/api/spend?by=budget").await;
    assert_eq!(v["scope"], "replica");
    assert_eq!(v["total_nanos"], on_a);
    assert_eq!(admin_json(&b, "/admin/api/requests").await["count"], 2);
    a.stop().await;
    b.stop().await;
}
