//! The cost dashboard in a real browser: the gateway serves some traffic, headless
//! Chromium opens the dashboard on the admin listener, signs in with the admin token, and
//! every figure the page shows is checked against the admin API (and the budgets against
//! the ledger). A wrong token is refused on the page, a reload keeps the session, and a
//! screenshot is saved to `target/dashboard.png`.
//!
//! Needs `chromium` and `chromium-driver`; set `TOLLGATE_SKIP_BROWSER=1` to skip.

mod common;
#[path = "support/mod.rs"]
mod support;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use common::dir::{DirGateway, ADMIN};
use common::finance::{
    admin_json, shown_dollars, start_with_traffic, today, wait_recorded, REQUESTS, TEAM_KEY,
};
use futures_util::FutureExt;
use serde_json::Value;
use support::webdriver::{locate, Browser};

/// Everything the page shows that the test compares, read in one script.
const READ_PAGE: &str = r#"
const text = (root, sel) => { const e = root.querySelector(sel); return e ? e.textContent.trim() : null; };
const rows = (table, attr) => Array.from(document.querySelectorAll(`#${table} tbody tr[${attr}]`)).map((tr) => ({
  key: tr.getAttribute(attr),
  requests: text(tr, '[data-field=requests]'),
  cost: text(tr, '[data-field=cost]'),
  share: text(tr, '[data-field=share]'),
  premium: text(tr, '[data-field=premium_cost]'),
  saving: text(tr, '[data-field=saving]'),
  state: text(tr, '[data-field=state]'),
}));
return {
  budgets: Array.from(document.querySelectorAll('[data-budget]')).map((card) => ({
    name: card.dataset.budget,
    spent: text(card, '[data-field=spent]'),
    limit: text(card, '[data-field=limit]'),
    reserved: text(card, '[data-field=reserved]'),
    remaining: text(card, '[data-field=remaining]'),
    percent: text(card, '[data-field=percent]'),
    crossed: Array.from(card.querySelectorAll('[data-threshold]')).map((li) => Number(li.dataset.threshold)),
  })),
  models: rows('models', 'data-key'),
  providers: rows('providers', 'data-key'),
  daily: rows('daily-table', 'data-day'),
  bars: document.querySelectorAll('#daily-chart rect.bar').length,
  routing: rows('routing', 'data-tier'),
  saving: text(document, '#routing-summary [data-field=saving]'),
  alerts: document.querySelectorAll('#alerts tbody tr[data-alert]').length,
  breakers: rows('breakers', 'data-breaker'),
  status: text(document, '#status'),
  live: document.getElementById('status').getAttribute('aria-live'),
  token_kept: sessionStorage.getItem('tollgate-admin-token') !== null,
  login_hidden: document.getElementById('login').hidden,
  h1: text(document, 'h1'),
};
"#;

const LOADED: &str = "return Number(document.body.dataset.loads || 0) >= 1;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_api_figures_in_a_real_browser() {
    if std::env::var("TOLLGATE_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("TOLLGATE_SKIP_BROWSER=1: browser test skipped.");
        return;
    }
    if let Err(why) = locate() {
        panic!("{why}");
    }
    let g = start_with_traffic("dashboard").await;
    let browser = Browser::start(1280, 3000).await.expect("browser starts");
    let outcome = AssertUnwindSafe(check_dashboard(&g, &browser))
        .catch_unwind()
        .await;
    browser.quit().await;
    g.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn check_dashboard(g: &DirGateway, b: &Browser) {
    let wait = Duration::from_secs(20);
    b.goto(&g.admin_url("/")).await.unwrap();
    // A wrong token is refused on the page, which asks again.
    b.type_into("#token", "not-the-token").await.unwrap();
    b.click("#login-form button[type=submit]").await.unwrap();
    b.wait_for(
        "return document.getElementById('login-error').textContent.length > 0 \
         && !document.getElementById('login').hidden;",
        wait,
    )
    .await
    .unwrap();
    b.type_into("#token", ADMIN).await.unwrap();
    b.click("#login-form button[type=submit]").await.unwrap();
    b.wait_for(LOADED, wait).await.unwrap();
    // The token is kept for the tab: a reload does not ask again.
    b.goto(&g.admin_url("/")).await.unwrap();
    b.wait_for(LOADED, wait).await.unwrap();
    let page = b.eval(READ_PAGE).await.unwrap();
    let png = b.screenshot().await.unwrap();
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {}", shot.display());

    assert_eq!(page["h1"], "Cost dashboard");
    assert_eq!(page["token_kept"], true);
    assert_eq!(page["login_hidden"], true);
    assert_eq!(page["live"], "polite");
    assert!(
        page["status"].as_str().unwrap().starts_with("Updated"),
        "{page}"
    );

    // Budgets: the page's figures are the API's, and the API's are the ledger's.
    let api = admin_json(g, "/admin/api/budgets").await;
    let ledger = g.state.billing.ledger.clone().unwrap();
    let shown = page["budgets"].as_array().unwrap();
    assert_eq!(shown.len(), 2);
    for b in api["budgets"].as_array().unwrap() {
        let name = b["name"].as_str().unwrap();
        let card = shown.iter().find(|c| c["name"] == name).unwrap();
        for field in ["spent", "limit", "reserved", "remaining"] {
            let usd = b[format!("{field}_usd")].as_str().unwrap();
            assert_eq!(card[field], shown_dollars(usd), "{name} {field}");
        }
        assert_eq!(card["percent"], format!("{}%", b["percent"]));
        let crossed: Vec<Value> = b["thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["crossed"] == true)
            .map(|t| t["percent"].clone())
            .collect();
        assert_eq!(card["crossed"].as_array().unwrap(), &crossed, "{name}");
        let spent = ledger.sum_cost(name, &today()).unwrap();
        assert_eq!(b["spent_nanos"], spent);
    }
    assert_eq!(shown_dollars("5.000000000"), "$5.00");

    // Spend by model and provider.
    for (table, by) in [("models", "model"), ("providers", "provider")] {
        let api = admin_json(g, &format!("/admin/api/spend?by={by}")).await;
        let rows = page[table].as_array().unwrap();
        let groups = api["groups"].as_array().unwrap();
        assert_eq!(rows.len(), groups.len(), "{table}");
        for grp in groups {
            let row = rows.iter().find(|r| r["key"] == grp["key"]).unwrap();
            assert_eq!(
                row["cost"],
                shown_dollars(grp["cost_usd"].as_str().unwrap())
            );
            assert_eq!(row["requests"], grp["requests"].to_string());
        }
    }

    // Thirty days, as bars and as a table.
    let api = admin_json(g, "/admin/api/spend/daily?days=30").await;
    assert_eq!(page["bars"], 30);
    let daily = page["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 30);
    for d in api["days"].as_array().unwrap() {
        let row = daily.iter().find(|r| r["key"] == d["day"]).unwrap();
        assert_eq!(row["cost"], shown_dollars(d["cost_usd"].as_str().unwrap()));
        assert_eq!(row["requests"], d["requests"].to_string());
    }

    // Routing mix and the saving against the premium model.
    let api = admin_json(g, "/admin/api/routing").await;
    assert_eq!(api["requests"], REQUESTS as u64);
    assert_eq!(
        page["saving"],
        shown_dollars(api["saving_usd"].as_str().unwrap())
    );
    let rows = page["routing"].as_array().unwrap();
    assert_eq!(rows.len(), api["tiers"].as_array().unwrap().len());
    for t in api["tiers"].as_array().unwrap() {
        let row = rows.iter().find(|r| r["key"] == t["tier"]).unwrap();
        assert_eq!(row["cost"], shown_dollars(t["cost_usd"].as_str().unwrap()));
        let premium = t["premium_cost_usd"].as_str().unwrap();
        assert_eq!(row["premium"], shown_dollars(premium));
        assert_eq!(
            row["saving"],
            shown_dollars(t["saving_usd"].as_str().unwrap())
        );
        assert_eq!(row["share"], format!("{}%", t["percent_of_requests"]));
    }

    // The page refreshes itself: new spending shows up without a reload.
    let before = page["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "team")
        .unwrap()["spent"]
        .clone();
    let r = g
        .chat(
            Some(TEAM_KEY),
            serde_json::json!({"model": "gpt-4-turbo", "messages": common::user("one more")}),
        )
        .await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    wait_recorded(g, REQUESTS + 1).await;
    let api = admin_json(g, "/admin/api/budgets").await;
    let team = api["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "team")
        .unwrap()
        .clone();
    let now_shown = shown_dollars(team["spent_usd"].as_str().unwrap());
    assert_ne!(Value::from(now_shown.clone()), before);
    b.wait_for(
        &format!(
            "return document.querySelector('[data-budget=team] [data-field=spent]')\
             .textContent === '{now_shown}';"
        ),
        Duration::from_secs(15),
    )
    .await
    .unwrap();

    // Alerts and breakers.
    let api = admin_json(g, "/admin/api/alerts?days=30").await;
    let alerts = api["alerts"].as_array().unwrap().len();
    assert!(alerts >= 1);
    assert_eq!(page["alerts"], alerts.min(20));
    let api = admin_json(g, "/admin/api/breakers").await;
    let rows = page["breakers"].as_array().unwrap();
    let breakers = api["breakers"].as_array().unwrap();
    assert!(!breakers.is_empty());
    assert_eq!(rows.len(), breakers.len());
    for br in breakers {
        let key = format!(
            "{}/{}",
            br["provider"].as_str().unwrap(),
            br["model"].as_str().unwrap()
        );
        let row = rows.iter().find(|r| r["key"] == key.as_str()).unwrap();
        let plain = match br["state"].as_str().unwrap() {
            "closed" => "Working",
            "half_open" => "Testing recovery",
            _ => "Paused after failures",
        };
        assert_eq!(row["state"], plain, "{key}");
    }
}
