//! Rate limits end to end, through the real gateway to the simulated providers: requests
//! and tokens per minute of a budget and of its keys, the 429 body and `x-ratelimit-*`
//! headers (on successes and streams too), the token correction once real usage is known,
//! counts kept across a reload that leaves a limit unchanged, one exact limit shared by two
//! replicas through Redis, and both Redis failure policies.
//!
//! Limits here refill slowly (one request every 6 to 12 s), so a burst sent within a
//! second or two meets a limit that does not move while the test looks at it.

mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::dir::DirGateway;
use common::{sse_json, user};
use serde_json::{json, Value};
use support::redis::RedisServer;
use tollgate::budget::keys::KeyHash;

const KEY_A: &str = "tg-ratelimit-key-a";
const KEY_B: &str = "tg-ratelimit-key-b";

/// A budget with `limits` (the body of its `[limits]` table) and keys `a` and `b`, with
/// `a_limits` on key `a`.
fn budget(limits: &str, a_limits: &str) -> String {
    format!(
        "daily_limit = \"100\"\n[limits]\n{limits}\n\
         [[keys]]\nid = \"a\"\nsha256 = \"{}\"\n{a_limits}\n\
         [[keys]]\nid = \"b\"\nsha256 = \"{}\"\n",
        KeyHash::of(KEY_A).to_hex(),
        KeyHash::of(KEY_B).to_hex()
    )
}

fn closed(routes: String) -> String {
    routes.replace("allow_anonymous = true", "allow_anonymous = false")
}

/// Closed routes whose shared state is the Redis at `url`.
fn clustered(url: String, failure: &'static str) -> impl Fn(String) -> String {
    move |routes: String| {
        closed(routes)
            + &format!(
                "\n[state]\nbackend = \"redis\"\nredis_url = \"{url}\"\nredis_failure = \"{failure}\"\n\
                 redis_timeout_ms = 500\nredis_key_prefix = \"rl-test\"\n"
            )
    }
}

fn small(max_tokens: u32) -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": max_tokens,
           "messages": user("[[sim: words=5]] a short answer please")})
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

fn number(r: &reqwest::Response, name: &str) -> u64 {
    header(r, name)
        .unwrap_or_else(|| panic!("no {name}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// Asserts `r` is the OpenAI-style 429 of a rate limit of `kind`, and returns its message.
async fn assert_limited(r: reqwest::Response, kind: &str) -> String {
    assert_eq!(r.status(), 429);
    let kind_header = format!("x-ratelimit-limit-{kind}");
    assert!(
        header(&r, &kind_header).is_some(),
        "429 without {kind_header}"
    );
    let body: Value = r.json().await.expect("JSON error body");
    let e = &body["error"];
    assert_eq!(e["type"], kind, "{body}");
    assert_eq!(e["code"], "rate_limit_exceeded");
    assert!(e["param"].is_null());
    e["message"].as_str().expect("message").to_string()
}

/// Retry-After in whole seconds, checked to lie in `range`.
fn retry_after(r: &reqwest::Response, range: std::ops::RangeInclusive<u64>) -> u64 {
    let secs = number(r, "retry-after");
    assert!(
        range.contains(&secs),
        "Retry-After {secs} outside {range:?}"
    );
    secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_budget_rpm_gets_exactly_the_limit_then_429s() {
    let free = format!(
        "daily_limit = \"100\"\n[[keys]]\nid = \"free\"\nsha256 = \"{}\"\n",
        KeyHash::of("tg-ratelimit-free").to_hex()
    );
    let g = DirGateway::start(
        "rl-burst",
        closed,
        &[
            ("team", &budget("requests_per_minute = 5", "")),
            ("free", &free),
        ],
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..8u64 {
        let r = g.chat(Some(KEY_A), small(20)).await;
        statuses.push(r.status().as_u16());
        assert_eq!(number(&r, "x-ratelimit-limit-requests"), 5);
        if i < 5 {
            assert_eq!(r.status(), 200, "request {i}");
            assert_eq!(number(&r, "x-ratelimit-remaining-requests"), 4 - i);
            let reset = header(&r, "x-ratelimit-reset-requests").unwrap();
            assert!(reset.ends_with('s'), "{reset}");
            // No token limit: no token headers.
            assert!(header(&r, "x-ratelimit-limit-tokens").is_none());
            r.json::<Value>().await.unwrap();
        } else {
            assert_eq!(number(&r, "x-ratelimit-remaining-requests"), 0);
            // One request comes back every 12 s.
            retry_after(&r, 1..=12);
            let reset = header(&r, "x-ratelimit-reset-requests").unwrap();
            assert!(reset.contains('m') || reset.ends_with('s'), "{reset}");
            let message = assert_limited(r, "requests").await;
            assert!(message.contains("budget `team`"), "{message}");
            assert!(message.contains("limit 5"), "{message}");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let refused = g
        .state
        .metrics
        .rate_limited
        .with_label_values(&["team", "budget", "requests"])
        .get();
    assert_eq!(refused, 3);
    // A budget without limits sends no rate-limit headers.
    let r = g.chat(Some("tg-ratelimit-free"), small(20)).await;
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .keys()
        .all(|k| !k.as_str().starts_with("x-ratelimit")));
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limit_leaves_the_other_key_alone_and_the_budget_limit_spans_keys() {
    let g = DirGateway::start(
        "rl-keys",
        closed,
        &[(
            "team",
            &budget("requests_per_minute = 5", "requests_per_minute = 2"),
        )],
    )
    .await;
    for _ in 0..2 {
        let r = g.chat(Some(KEY_A), small(20)).await;
        assert_eq!(r.status(), 200);
        // Key a's own limit is the tighter one.
        assert_eq!(number(&r, "x-ratelimit-limit-requests"), 2);
    }
    let r = g.chat(Some(KEY_A), small(20)).await;
    retry_after(&r, 1..=30);
    let message = assert_limited(r, "requests").await;
    assert!(message.contains("key `a` of budget `team`"), "{message}");
    assert!(message.contains("limit 2"), "{message}");
    // Key b has no limit of its own: it gets what is left of the budget's 5.
    for left in [2, 1, 0] {
        let r = g.chat(Some(KEY_B), small(20)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(number(&r, "x-ratelimit-limit-requests"), 5);
        assert_eq!(number(&r, "x-ratelimit-remaining-requests"), left);
    }
    let r = g.chat(Some(KEY_B), small(20)).await;
    let message = assert_limited(r, "requests").await;
    assert!(message.contains("on budget `team`"), "{message}");
    let m = &g.state.metrics.rate_limited;
    assert_eq!(m.with_label_values(&["team", "key", "requests"]).get(), 1);
    assert_eq!(
        m.with_label_values(&["team", "budget", "requests"]).get(),
        1
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_estimates_are_refused_when_they_do_not_fit_and_refunded_after_use() {
    let g = DirGateway::start(
        "rl-tokens",
        closed,
        &[("team", &budget("tokens_per_minute = 1000", ""))],
    )
    .await;
    // More than the whole limit: refused for good, and SDKs are told not to retry.
    let r = g.chat(Some(KEY_A), small(2000)).await;
    assert_eq!(header(&r, "x-should-retry").as_deref(), Some("false"));
    assert!(header(&r, "retry-after").is_none());
    let message = assert_limited(r, "tokens").await;
    assert!(
        message.starts_with("Request too large for tokens per minute"),
        "{message}"
    );

    // 600 tokens of output asked for, a handful used; the answer takes 3 s to start.
    let slow = json!({"model": "gpt-4o-mini", "max_tokens": 600,
                      "messages": user("[[sim: words=5 delay_ms=3000]] a slow short answer")});
    let first = g.chat(Some(KEY_A), slow);
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // While it runs, its whole estimate is held: a second one does not fit.
        let r = g.chat(Some(KEY_A), small(600)).await;
        let left = number(&r, "x-ratelimit-remaining-tokens");
        assert!(
            (300..400).contains(&left),
            "{left} left beside the running request"
        );
        retry_after(&r, 1..=60);
        let message = assert_limited(r, "tokens").await;
        assert!(
            message.contains("tokens per minute on budget `team`"),
            "{message}"
        );
        assert!(message.contains("limit 1000"), "{message}");
    };
    let (r, ()) = tokio::join!(first, meanwhile);
    assert_eq!(r.status(), 200);
    assert_eq!(number(&r, "x-ratelimit-limit-tokens"), 1000);
    let left = number(&r, "x-ratelimit-remaining-tokens");
    assert!((300..400).contains(&left), "estimate taken: {left} left");
    let usage = r.json::<Value>().await.unwrap()["usage"]["total_tokens"]
        .as_u64()
        .unwrap();
    assert!(usage < 100, "{usage}");

    // Once that request is billed, the unused estimate comes back, so another one of the
    // same size fits at once. Without the refund it would take 14 s of refill.
    let deadline = Instant::now() + Duration::from_secs(5);
    let second = loop {
        let r = g.chat(Some(KEY_A), small(600)).await;
        if r.status() == 200 {
            break r;
        }
        assert_eq!(r.status(), 429);
        assert!(Instant::now() < deadline, "no refund within 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let left = number(&second, "x-ratelimit-remaining-tokens");
    assert!((300..=400).contains(&left), "after the refund: {left} left");
    let refused = g
        .state
        .metrics
        .rate_limited
        .with_label_values(&["team", "budget", "tokens"])
        .get();
    assert!(refused >= 2, "{refused}");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_carry_the_headers_and_are_corrected_by_their_usage() {
    let g = DirGateway::start(
        "rl-stream",
        closed,
        &[(
            "team",
            &budget("requests_per_minute = 10\ntokens_per_minute = 100000", ""),
        )],
    )
    .await;
    let body = json!({"model": "gpt-4o-mini", "stream": true, "max_tokens": 5000,
                      "messages": user("[[sim: words=10]] stream a little")});
    let r = g.chat(Some(KEY_A), body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(number(&r, "x-ratelimit-limit-requests"), 10);
    assert_eq!(number(&r, "x-ratelimit-remaining-requests"), 9);
    assert_eq!(number(&r, "x-ratelimit-limit-tokens"), 100_000);
    let left = number(&r, "x-ratelimit-remaining-tokens");
    assert!(
        (94_900..95_000).contains(&left),
        "5000 and the prompt taken: {left}"
    );
    assert!(header(&r, "x-ratelimit-reset-tokens").is_some());
    let chunks = sse_json(&r.text().await.unwrap());
    assert!(!chunks.is_empty());

    // After the stream is billed, the next request sees the estimate refunded.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = g.chat(Some(KEY_A), small(10)).await;
        assert_eq!(r.status(), 200);
        if number(&r, "x-ratelimit-remaining-tokens") > 99_000 {
            break;
        }
        assert!(Instant::now() < deadline, "stream estimate not refunded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_redis_enforce_one_combined_limit() {
    let redis = RedisServer::start();
    let file = budget("requests_per_minute = 10", "");
    let a = DirGateway::start(
        "rl-cluster-a",
        clustered(redis.url(), "fail_open"),
        &[("team", &file)],
    )
    .await;
    let b = DirGateway::start(
        "rl-cluster-b",
        clustered(redis.url(), "fail_open"),
        &[("team", &file)],
    )
    .await;
    let sends: Vec<_> = (0..30)
        .map(|i| {
            let (g, key) = if i % 2 == 0 { (&a, KEY_A) } else { (&b, KEY_B) };
            g.chat(Some(key), small(20))
        })
        .collect();
    let mut ok = 0;
    for r in futures_util::future::join_all(sends).await {
        assert_eq!(number(&r, "x-ratelimit-limit-requests"), 10);
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                retry_after(&r, 1..=6);
                assert_limited(r, "requests").await;
            }
            s => panic!("unexpected status {s}: {}", r.text().await.unwrap()),
        }
    }
    assert_eq!(ok, 10, "one limit of 10 across both replicas");
    // The cells are in Redis, under the configured prefix, with the budget as hash tag.
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("rl-test:ratelimit:*")
        .query(&mut redis.client())
        .unwrap();
    assert_eq!(keys, ["rl-test:ratelimit:{team}:budget:requests:10"]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_redis_fail_open_serves_and_fail_closed_refuses_until_it_returns() {
    let mut redis = RedisServer::start();
    let file = budget("requests_per_minute = 100", "");
    let open = DirGateway::start(
        "rl-open",
        clustered(redis.url(), "fail_open"),
        &[("team", &file)],
    )
    .await;
    let shut = DirGateway::start(
        "rl-closed",
        clustered(redis.url(), "fail_closed"),
        &[("team", &file)],
    )
    .await;
    for g in [&open, &shut] {
        let r = g.chat(Some(KEY_A), small(20)).await;
        assert_eq!(r.status(), 200);
    }
    redis.kill();
    for _ in 0..3 {
        let r = open.chat(Some(KEY_A), small(20)).await;
        assert_eq!(r.status(), 200, "fail_open serves without Redis");
        // Counted by this replica alone now, and still reported.
        assert_eq!(number(&r, "x-ratelimit-limit-requests"), 100);

        let r = shut.chat(Some(KEY_A), small(20)).await;
        assert_eq!(r.status(), 503, "fail_closed refuses without Redis");
        let body: Value = r.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("rate-limit state"), "{message}");
    }
    // Redis is back (empty): fail_closed serves again once it reconnects.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = shut.chat(Some(KEY_A), small(20)).await;
        if r.status() == 200 {
            assert_eq!(number(&r, "x-ratelimit-remaining-requests"), 99);
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "no reconnect within 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    open.stop().await;
    shut.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_refunds_are_written_to_redis() {
    let redis = RedisServer::start();
    // fail_closed: any answer below came through Redis, none from a local fallback.
    let g = DirGateway::start(
        "rl-redis-tokens",
        clustered(redis.url(), "fail_closed"),
        &[("team", &budget("tokens_per_minute = 1000", ""))],
    )
    .await;
    let r = g.chat(Some(KEY_A), small(600)).await;
    assert_eq!(r.status(), 200);
    let left = number(&r, "x-ratelimit-remaining-tokens");
    assert!((300..400).contains(&left), "{left}");
    r.json::<Value>().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = g.chat(Some(KEY_A), small(600)).await;
        if r.status() == 200 {
            break;
        }
        assert_limited(r, "tokens").await;
        assert!(Instant::now() < deadline, "no refund in Redis within 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_unchanged_limits_counting_and_restarts_changed_ones() {
    let g = DirGateway::start(
        "rl-reload",
        closed,
        &[("team", &budget("requests_per_minute = 2", ""))],
    )
    .await;
    for _ in 0..2 {
        assert_eq!(g.chat(Some(KEY_A), small(20)).await.status(), 200);
    }
    assert_eq!(g.chat(Some(KEY_A), small(20)).await.status(), 429);
    let path = g.dir.join("budgets/team.toml");

    // Another setting changes: the limit keeps its count.
    let v = g.state.config.load().version.clone();
    let edited = budget("requests_per_minute = 2", "").replace("\"100\"", "\"200\"");
    std::fs::write(&path, edited).unwrap();
    let v = g.wait_for_reload(&v).await;
    assert_eq!(g.chat(Some(KEY_A), small(20)).await.status(), 429);

    // The limit itself changes: it starts afresh.
    std::fs::write(&path, budget("requests_per_minute = 3", "")).unwrap();
    g.wait_for_reload(&v).await;
    let r = g.chat(Some(KEY_A), small(20)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(number(&r, "x-ratelimit-limit-requests"), 3);
    assert_eq!(number(&r, "x-ratelimit-remaining-requests"), 2);
    g.stop().await;
}
