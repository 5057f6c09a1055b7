//! Reads: recent requests, grouped spend, counter rebuild and the CSV export range.

use super::*;
use crate::ledger::*;

/// Records `(id, budget, model served, status, at_ms, cost)` and flushes.
async fn seed(ledger: &Ledger, rows: &[(&str, &str, &str, u16, i64, u64)]) {
    for &(id, budget, model, status, at_ms, cost) in rows {
        let mut rec = record(id, budget, DAY, cost);
        rec.served_model = Some(model.into());
        rec.status = status;
        rec.at_ms = at_ms;
        ledger.record(rec);
    }
    ledger.flush().await.unwrap();
}

fn ids(recs: &[LedgerRecord]) -> Vec<&str> {
    recs.iter().map(|r| r.id.as_str()).collect()
}

#[tokio::test]
async fn recent_filters_by_budget_model_and_status_newest_first() {
    let dir = TempDir::new("recent");
    let ledger = open(&dir, 200, 512);
    seed(
        &ledger,
        &[
            ("a", "x", "m1", 200, 10, 1),
            ("b", "y", "m1", 200, 20, 1),
            ("c", "x", "m2", 429, 30, 0),
            ("d", "x", "m1", 200, 40, 1),
        ],
    )
    .await;
    let q = |f: RecentFilter| ledger.recent(&f).unwrap();
    assert_eq!(ids(&q(RecentFilter::default())), ["d", "c", "b", "a"]);
    let by_budget = q(RecentFilter {
        budget: Some("x".into()),
        ..Default::default()
    });
    assert_eq!(ids(&by_budget), ["d", "c", "a"]);
    let by_model = q(RecentFilter {
        model: Some("m1".into()),
        ..Default::default()
    });
    assert_eq!(ids(&by_model), ["d", "b", "a"]);
    let requested = q(RecentFilter {
        model: Some("auto".into()),
        status: Some(429),
        ..Default::default()
    });
    assert_eq!(ids(&requested), ["c"], "requested model also matches");
}

#[tokio::test]
async fn recent_pages_by_before_id_and_by_offset() {
    let dir = TempDir::new("paging");
    let ledger = open(&dir, 200, 512);
    // "s1" and "s2" start in the same millisecond: order of writing breaks the tie.
    seed(
        &ledger,
        &[
            ("s1", "x", "m", 200, 50, 1),
            ("s2", "x", "m", 200, 50, 1),
            ("t", "x", "m", 200, 60, 1),
            ("r", "x", "m", 200, 40, 1),
        ],
    )
    .await;
    let page = |before: Option<&str>, offset| {
        let f = RecentFilter {
            before_id: before.map(String::from),
            offset,
            limit: 2,
            ..Default::default()
        };
        ledger.recent(&f).unwrap()
    };
    assert_eq!(ids(&page(None, 0)), ["t", "s2"]);
    assert_eq!(ids(&page(Some("s2"), 0)), ["s1", "r"]);
    assert_eq!(ids(&page(Some("r"), 0)), Vec::<&str>::new());
    assert_eq!(ids(&page(None, 2)), ["s1", "r"]);
    assert!(page(Some("unknown"), 0).is_empty());
    let zero = RecentFilter {
        limit: 0,
        ..Default::default()
    };
    assert_eq!(
        ids(&ledger.recent(&zero).unwrap()),
        ["t"],
        "limit 0 is raised to 1"
    );
}

#[tokio::test]
async fn spend_is_grouped_by_each_key_over_a_day_range() {
    let dir = TempDir::new("grouped");
    let ledger = open(&dir, 200, 512);
    let mk = |id: &str, budget: &str, day: &str, provider: Option<&str>, cost| {
        let mut r = record(id, budget, day, cost);
        r.provider = provider.map(String::from);
        r.tier = provider.map(|_| "small".to_string());
        r.served_model = provider.map(|p| format!("{p}-model"));
        r
    };
    ledger.record(mk("1", "x", "2025-06-14", Some("openai"), 10));
    ledger.record(mk("2", "x", "2025-06-15", Some("openai"), 20));
    ledger.record(mk("3", "y", "2025-06-15", Some("anthropic"), 40));
    ledger.record(mk("4", "x", "2025-06-15", None, 0));
    ledger.record(mk("5", "x", "2025-06-16", Some("openai"), 1000));
    ledger.flush().await.unwrap();
    let g = |by, budget| {
        ledger
            .spend_grouped("2025-06-14", "2025-06-15", budget, by)
            .unwrap()
    };
    let s = |k: &str, c, n| (k.to_string(), c, n);
    assert_eq!(
        g(GroupBy::Day, None),
        [s("2025-06-14", 10, 1), s("2025-06-15", 60, 3)]
    );
    assert_eq!(
        g(GroupBy::Provider, None),
        [s("anthropic", 40, 1), s("openai", 30, 2), s("", 0, 1)]
    );
    assert_eq!(
        g(GroupBy::Model, Some("x")),
        [s("openai-model", 30, 2), s("auto", 0, 1)]
    );
    assert_eq!(g(GroupBy::Tier, Some("y")), [s("small", 40, 1)]);
    assert_eq!(g(GroupBy::Budget, None), [s("y", 40, 1), s("x", 30, 3)]);
}

#[tokio::test]
async fn tier_usage_sums_tokens_and_cost_per_tier_over_a_day_range() {
    let dir = TempDir::new("tiers");
    let ledger = open(&dir, 200, 512);
    let mk = |id: &str, budget: &str, day: &str, tier: Option<&str>, tokens: u64, cost| {
        let mut r = record(id, budget, day, cost);
        r.tier = tier.map(String::from);
        r.input_tokens = tokens;
        r.output_tokens = 2 * tokens;
        r.cached_input_tokens = tokens / 10;
        r.cache_write_tokens = tokens / 20;
        r
    };
    ledger.record(mk("1", "x", "2025-06-15", Some("simple"), 100, 10));
    ledger.record(mk("2", "x", "2025-06-15", Some("simple"), 200, 20));
    ledger.record(mk("3", "y", "2025-06-15", Some("complex"), 40, 400));
    ledger.record(mk("4", "x", "2025-06-15", None, 60, 5));
    ledger.record(mk("5", "x", "2025-06-16", Some("simple"), 1000, 1000));
    ledger.flush().await.unwrap();
    let all = ledger.tier_usage("2025-06-14", "2025-06-15", None).unwrap();
    let t = |tier: &str, requests, input: u64, cost| TierUsage {
        tier: tier.into(),
        requests,
        input_tokens: input,
        output_tokens: 2 * input,
        cached_input_tokens: if tier == "simple" { 30 } else { input / 10 },
        cache_write_tokens: if tier == "simple" { 15 } else { input / 20 },
        cost_nanos: cost,
    };
    assert_eq!(
        all,
        [
            t("complex", 1, 40, 400),
            t("simple", 2, 300, 30),
            t("", 1, 60, 5)
        ]
    );
    let x = ledger
        .tier_usage("2025-06-15", "2025-06-16", Some("x"))
        .unwrap();
    assert_eq!(x[0].tier, "simple");
    assert_eq!((x[0].requests, x[0].cost_nanos), (3, 1030));
    assert_eq!(x.len(), 2);
}

#[tokio::test]
async fn spent_by_budget_day_totals_each_pair_from_a_day_on() {
    let dir = TempDir::new("rebuild");
    let ledger = open(&dir, 200, 512);
    for (id, budget, day, cost) in [
        ("1", "x", "2025-06-14", 5),
        ("2", "x", "2025-06-15", 7),
        ("3", "x", "2025-06-15", 11),
        ("4", "y", "2025-06-15", 13),
    ] {
        ledger.record(record(id, budget, day, cost));
    }
    ledger.flush().await.unwrap();
    let t = |b: &str, d: &str, c| (b.to_string(), d.to_string(), c);
    assert_eq!(
        ledger.spent_by_budget_day(None).unwrap(),
        [
            t("x", "2025-06-14", 5),
            t("x", "2025-06-15", 18),
            t("y", "2025-06-15", 13)
        ]
    );
    assert_eq!(
        ledger.spent_by_budget_day(Some("2025-06-15")).unwrap(),
        [t("x", "2025-06-15", 18), t("y", "2025-06-15", 13)]
    );
    assert_eq!(ledger.sum_cost("x", "2025-06-15").unwrap(), 18);
    assert_eq!(ledger.sum_cost("z", "2025-06-15").unwrap(), 0);
}

#[tokio::test]
async fn export_csv_keeps_the_time_range_and_budget() {
    let dir = TempDir::new("csvrange");
    let ledger = open(&dir, 200, 512);
    seed(
        &ledger,
        &[
            ("early", "x", "m", 200, 99, 1),
            ("first", "x", "m", 200, 100, 1),
            ("other", "y", "m", 200, 150, 1),
            ("last", "x", "m", 200, 199, 1),
            ("end", "x", "m", 200, 200, 1),
        ],
    )
    .await;
    let mut out = Vec::new();
    let n = ledger.export_csv(100, 200, Some("x"), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(n, 2);
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("id,at_ms,at,day,budget,"));
    assert!(lines[1].starts_with("first,100,"));
    assert!(lines[2].starts_with("last,199,"));
    let mut all_budgets = Vec::new();
    assert_eq!(
        ledger.export_csv(0, 1000, None, &mut all_budgets).unwrap(),
        5
    );
}
