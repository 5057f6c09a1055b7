//! Upstream faults: fallback before the first byte, unreachable and slow upstreams, broken
//! streams, and clients that leave mid-stream.

mod common;

use std::time::{Duration, Instant};

use common::{sse_json, user, Harness};
use serde_json::json;
use tollgate::sim::Fault;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_the_next_model_on_503_before_the_first_byte() {
    let h = Harness::start().await;
    // Every attempt on the first model fails (it is retried once before the fallback).
    h.openai.set_default_fault(Some(Fault::Status {
        status: 503,
        retry_after_secs: None,
    }));
    let resp = h
        .chat(json!({"model": "gpt-4o-mini", "stream": true, "messages": user("hi")}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-model"], "mistral-small");
    let attempts = resp.headers()["x-tollgate-attempts"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        attempts.starts_with("gpt-4o-mini 503 overloaded")
            && attempts.matches("gpt-4o-mini 503").count() == 2
            && attempts.contains("mistral-small 200 ok"),
        "{attempts}"
    );
    let body = resp.text().await.unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"));
    assert_eq!(h.openai.request_count(), 2, "one retry, then the fallback");
    assert_eq!(h.mistral.request_count(), 1, "{attempts}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_on_the_last_model_reaches_the_client_with_retry_after() {
    let h = Harness::start().await;
    h.openai.set_default_fault(Some(Fault::Status {
        status: 429,
        retry_after_secs: Some(7),
    }));
    // gpt-4-turbo has no fallback.
    let resp = h
        .chat(json!({"model": "gpt-4-turbo", "messages": user("hi")}))
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_from_the_provider_are_not_retried_elsewhere() {
    let h = Harness::start().await;
    h.openai.push_fault(Fault::Status {
        status: 400,
        retry_after_secs: None,
    });
    let resp = h
        .chat(json!({"model": "gpt-4o-mini", "messages": user("hi")}))
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(h.mistral.request_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_a_502_with_a_clear_message() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = format!(
        r#"
[providers.dead]
kind = "openai"
base_url = "http://{closed}"
api_key_env = "UNUSED"

[models.dead-model]
provider = "dead"
context_window = 1000
max_output_tokens = 100
price = {{ input = 1, output = 1 }}
"#
    );
    let h = Harness::with("", &extra).await;
    let mut creds = std::collections::HashMap::new();
    creds.insert(
        "dead".to_string(),
        Ok(tollgate::providers::auth::ProviderAuth::Bearer(
            tollgate::providers::auth::Secret::new("k"),
        )),
    );
    creds.insert(
        "openai".to_string(),
        Ok(tollgate::providers::auth::ProviderAuth::None),
    );
    h.gw.state.credentials.store(std::sync::Arc::new(
        tollgate::proxy::upstream::Credentials::from_map(creds),
    ));
    let resp = h
        .chat(json!({"model": "dead-model", "messages": user("hi")}))
        .await;
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unreachable");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unreachable"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_never_answers_is_a_504_after_the_first_byte_timeout() {
    let timeouts = "{ connect_ms = 1000, first_byte_ms = 1500, idle_ms = 1500, total_ms = 10000 }";
    let h = Harness::with_timeouts("", "", timeouts).await;
    h.openai.set_default_fault(Some(Fault::Hang));
    let t0 = Instant::now();
    let resp = h
        .chat(json!({"model": "gpt-4-turbo", "messages": user("hi")}))
        .await;
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert!(t0.elapsed() >= Duration::from_millis(1500));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_mid_way_ends_with_an_error_event() {
    let h = Harness::start().await;
    h.openai.push_fault(Fault::ResetAfterEvents(3));
    let resp = h
        .chat(json!({"model": "gpt-4-turbo", "stream": true, "messages": user("Tell me a long story")}))
        .await;
    assert_eq!(resp.status(), 200, "the stream had already started");
    let body = resp.text().await.unwrap();
    let chunks = sse_json(&body);
    let last = chunks.last().unwrap();
    assert!(
        last.get("error").is_some(),
        "stream should end with an error event: {body}"
    );
    assert!(!body.contains("[DONE]"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_mid_stream_aborts_the_upstream() {
    let h = Harness::start().await;
    h.openai
        .push_fault(Fault::ChunkDelay(Duration::from_millis(200)));
    let mut resp = h
        .chat(json!({"model": "gpt-4-turbo", "stream": true, "messages": user("Tell me a long story [[sim: words=200]]")}))
        .await;
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap();
    assert!(first.is_some());
    drop(resp);
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.openai.aborted_streams() == 0 {
        assert!(Instant::now() < deadline, "upstream stream was not aborted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.openai.open_streams(), 0);
    // The gateway keeps serving.
    let resp = h
        .chat(json!({"model": "gpt-4o-mini", "messages": user("still there?")}))
        .await;
    assert_eq!(resp.status(), 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_stalling_past_the_idle_timeout_ends_with_an_error_event() {
    let timeouts = "{ connect_ms = 1000, first_byte_ms = 5000, idle_ms = 300, total_ms = 10000 }";
    let h = Harness::with_timeouts("", "", timeouts).await;
    h.openai
        .push_fault(Fault::ChunkDelay(Duration::from_millis(1000)));
    let t0 = Instant::now();
    let body = h
        .chat(json!({"model": "gpt-4-turbo", "stream": true, "messages": user("Tell me a story")}))
        .await
        .text()
        .await
        .unwrap();
    let last = sse_json(&body).pop().unwrap();
    assert_eq!(
        last["error"]["code"], "upstream_stream_interrupted",
        "{body}"
    );
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("idle timeout"));
    assert!(t0.elapsed() < Duration::from_secs(5));
    h.stop().await;
}
