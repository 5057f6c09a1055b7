//! Routing end to end: tiers for `auto`, caller headers, retries with backoff before
//! falling back, and the cost ceiling.

mod common;

use common::{user, Harness};
use serde_json::json;
use tollgate::sim::Fault;

const TIERS: &str = r#"
[[routing.tiers]]
name = "simple"
chain = ["gpt-4o-mini", "mistral-small"]

[[routing.tiers]]
name = "complex"
premium = true
chain = ["gpt-4-turbo", "mistral-small"]
budget = { 75 = ["mistral-small"] }
"#;

async fn routed(retry: &str) -> Harness {
    let extra = format!(
        "\"router\" = \"auto\"\n{TIERS}\n[routing.retry]\n{retry}\n[routing.latency_classes]\ninteractive = 1000\n"
    );
    Harness::with("", &extra).await
}

async fn allow_header(h: &Harness) {
    let mut cfg = (*h.gw.state.config.load_full()).clone();
    cfg.routing.allow_tier_header = true;
    h.gw.state.config.store(std::sync::Arc::new(cfg));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_requests_are_classified_into_a_tier_and_say_so() {
    let h = routed("").await;
    for model in ["auto", "router"] {
        let r = h
            .chat(json!({"model": model, "messages": user("Hi there")}))
            .await;
        assert_eq!(r.status(), 200);
        let tier = r.headers()["x-tollgate-tier"].to_str().unwrap().to_string();
        let reason = r.headers()["x-tollgate-route-reason"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(tier, "simple");
        assert!(reason.starts_with("tier=simple"), "{reason}");
        assert_eq!(r.headers()["x-tollgate-model"], "gpt-4o-mini");
    }
    // A plain model name is not routed.
    let r = h
        .chat(json!({"model": "gpt-4-turbo", "messages": user("Hi")}))
        .await;
    assert!(r.headers().get("x-tollgate-tier").is_none());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coding_request_is_routed_to_the_premium_tier_with_its_reason() {
    let h = routed("").await;
    let r = h
        .chat(json!({"model": "auto", "messages": user(
            "Write a Rust function that parses ISO 8601 durations, with unit tests."
        )}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-tier"], "complex");
    assert_eq!(r.headers()["x-tollgate-model"], "gpt-4-turbo");
    let reason = r.headers()["x-tollgate-route-reason"].to_str().unwrap();
    assert!(reason.starts_with("tier=complex;score=0."), "{reason}");
    assert!(reason.contains(";code"), "{reason}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_header_is_honoured_only_when_config_allows_it() {
    let h = routed("").await;
    let send = |tier: &'static str| {
        h.client
            .post(h.url("/v1/chat/completions"))
            .header("x-tollgate-tier", tier)
            .json(&json!({"model": "auto", "messages": user("Hi")}))
            .send()
    };
    let r = send("complex").await.unwrap();
    assert_eq!(
        r.headers()["x-tollgate-tier"],
        "simple",
        "header ignored when not allowed"
    );
    allow_header(&h).await;
    let r = send("complex").await.unwrap();
    assert_eq!(r.headers()["x-tollgate-tier"], "complex");
    assert_eq!(r.headers()["x-tollgate-model"], "gpt-4-turbo");
    assert!(r.headers()["x-tollgate-route-reason"]
        .to_str()
        .unwrap()
        .contains("header"));
    let r = send("galactic").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["param"], "x-tollgate-tier");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_is_retried_on_the_same_model_before_falling_back() {
    let h = routed("attempts_per_model = 2\nbase_backoff_ms = 10\nmax_backoff_ms = 50").await;
    h.openai.push_fault(Fault::Status {
        status: 500,
        retry_after_secs: None,
    });
    let r = h
        .chat(json!({"model": "gpt-4o-mini", "messages": user("Hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-model"], "gpt-4o-mini");
    let attempts = r.headers()["x-tollgate-attempts"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        attempts.starts_with("gpt-4o-mini 500 server_error"),
        "{attempts}"
    );
    assert!(attempts.contains(", gpt-4o-mini 200 ok"), "{attempts}");
    assert_eq!(h.mistral.request_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_beyond_the_cap_moves_on_to_the_next_model_at_once() {
    let h = routed("attempts_per_model = 3\nmax_retry_after_ms = 1000").await;
    h.openai.push_fault(Fault::Status {
        status: 429,
        retry_after_secs: Some(30),
    });
    let t0 = std::time::Instant::now();
    let r = h
        .chat(json!({"model": "gpt-4o-mini", "messages": user("Hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-model"], "mistral-small");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        h.openai.request_count(),
        1,
        "no retry against a 30 s Retry-After"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_lowered_cost_ceiling_skips_expensive_models() {
    let h = routed("").await;
    allow_header(&h).await;
    let big = "lorem ipsum dolor ".repeat(3000); // ~9k tokens: ~$0.1 on gpt-4-turbo
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-tollgate-tier", "complex")
        .header("x-tollgate-max-cost", "0.01")
        .json(&json!({"model": "auto", "messages": user(&big)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-model"], "mistral-small");
    let reason = r.headers()["x-tollgate-route-reason"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("skip=gpt-4-turbo:cost"), "{reason}");

    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-tollgate-max-cost", "lots")
        .json(&json!({"model": "auto", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-tollgate-latency", "warp-speed")
        .json(&json!({"model": "auto", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failing_repeatedly_is_skipped_while_its_circuit_is_open() {
    let extra = "[routing.retry]\nattempts_per_model = 1\n[breaker]\nmin_requests = 3\nfailure_ratio = 0.5\ncooldown_secs = 60\n";
    let h = Harness::with("", extra).await;
    h.openai.set_default_fault(Some(Fault::Status {
        status: 500,
        retry_after_secs: None,
    }));
    for _ in 0..3 {
        let r = h
            .chat(json!({"model": "gpt-4o-mini", "messages": user("Hi")}))
            .await;
        assert_eq!(r.headers()["x-tollgate-model"], "mistral-small");
    }
    assert_eq!(h.openai.request_count(), 3);
    let r = h
        .chat(json!({"model": "gpt-4o-mini", "messages": user("Hi")}))
        .await;
    assert_eq!(r.status(), 200);
    let attempts = r.headers()["x-tollgate-attempts"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        attempts.starts_with("gpt-4o-mini 0 breaker_open"),
        "{attempts}"
    );
    assert_eq!(
        h.openai.request_count(),
        3,
        "an open circuit sends nothing upstream"
    );
    h.stop().await;
}
