//! End to end through the real Pingora server: OpenAI and Mistral upstreams (simulated),
//! streaming and not, model selection, and the non-chat endpoints.

mod common;

use common::{sse_data, sse_json, streamed_text, user, Harness, MISTRAL_KEY, OPENAI_KEY};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streaming_completion_through_openai_names_what_served_it() {
    let h = Harness::start().await;
    let resp = h
        .chat(json!({"model": "gpt-4o-mini", "messages": user("Say hello")}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-model"], "gpt-4o-mini");
    assert_eq!(resp.headers()["x-tollgate-provider"], "openai");
    let attempts = resp.headers()["x-tollgate-attempts"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(attempts.starts_with("gpt-4o-mini 200 ok"), "{attempts}");
    assert!(resp.headers().contains_key("x-request-id"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(!body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    let usage = &body["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    // The provider got tollgate's key and the upstream model id, never the client's key.
    let sent = h.openai.requests();
    assert_eq!(sent.len(), 1);
    let auth = sent[0].headers["authorization"].to_str().unwrap();
    assert_eq!(auth, format!("Bearer {OPENAI_KEY}"));
    let wire: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(wire["model"], "gpt-4o-mini");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_resolves_to_its_model_and_upstream_id() {
    let h = Harness::start().await;
    let resp = h
        .chat(json!({"model": "gpt-4", "messages": user("hi")}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-model"], "gpt-4-turbo");
    let wire: serde_json::Value = serde_json::from_slice(&h.openai.requests()[0].body).unwrap();
    assert_eq!(wire["model"], "gpt-4-turbo-2024-04-09");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_is_served_by_the_default_model() {
    let h = Harness::start().await;
    let resp = h
        .chat(json!({"model": "auto", "messages": user("hi")}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-tollgate-model"],
        "gpt-4o-mini",
        "attempts: {:?}",
        resp.headers()["x-tollgate-attempts"]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_ends_with_done_and_hides_usage_unless_asked() {
    let h = Harness::start().await;
    let resp = h
        .chat(json!({"model": "gpt-4o-mini", "stream": true, "messages": user("Tell me a story")}))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = resp.text().await.unwrap();
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks = sse_json(&body);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert!(
        chunks
            .iter()
            .all(|c| c.get("usage").is_none_or(|u| u.is_null())),
        "usage chunk must be stripped when the client did not ask: {body}"
    );
    assert!(!streamed_text(&chunks).is_empty());
    assert_eq!(
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect::<Vec<_>>(),
        ["stop"]
    );
    // tollgate asked the provider for usage anyway (it needs it for billing).
    let wire: serde_json::Value = serde_json::from_slice(&h.openai.requests()[0].body).unwrap();
    assert_eq!(wire["stream_options"]["include_usage"], true);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_includes_final_usage_chunk_when_asked() {
    let h = Harness::start().await;
    let body = h
        .chat(json!({
            "model": "gpt-4o-mini", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": user("Tell me a story")
        }))
        .await
        .text()
        .await
        .unwrap();
    let chunks = sse_json(&body);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(sse_data(&body).last().map(String::as_str), Some("[DONE]"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistral_answers_in_openai_format_streaming_and_not() {
    let h = Harness::start().await;
    let resp = h
        .chat(json!({"model": "mistral-small", "messages": user("hi"), "seed": 7}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-provider"], "mistral");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let wire: serde_json::Value = serde_json::from_slice(&h.mistral.requests()[0].body).unwrap();
    assert_eq!(wire["random_seed"], 7);
    assert!(wire.get("seed").is_none());
    assert_eq!(
        h.mistral.requests()[0].headers["authorization"]
            .to_str()
            .unwrap(),
        format!("Bearer {MISTRAL_KEY}")
    );

    let body = h
        .chat(json!({
            "model": "mistral-small", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": user("Tell me a story")
        }))
        .await
        .text()
        .await
        .unwrap();
    let chunks = sse_json(&body);
    assert!(!streamed_text(&chunks).is_empty());
    let last = chunks.last().unwrap();
    assert_eq!(
        last["choices"],
        json!([]),
        "usage split into its own chunk: {body}"
    );
    assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let wire: serde_json::Value = serde_json::from_slice(&h.mistral.requests()[1].body).unwrap();
    assert!(
        wire.get("stream_options").is_none(),
        "Mistral has no stream_options"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_models_aliases_and_auto() {
    let h = Harness::start().await;
    let body: serde_json::Value = h
        .client
        .get(h.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in [
        "auto",
        "gpt-4o-mini",
        "gpt-4-turbo",
        "mistral-small",
        "gpt-4",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let health: serde_json::Value = h
        .client
        .get(h.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_far_beyond_64_kib_is_proxied_whole() {
    let h = Harness::start().await;
    let big = "lorem ipsum ".repeat(40_000); // 480 KB, far past Pingora's 64 KiB replay buffer
    let resp = h
        .chat(json!({"model": "gpt-4o-mini", "messages": user(&big)}))
        .await;
    assert_eq!(resp.status(), 200);
    let wire: serde_json::Value = serde_json::from_slice(&h.openai.requests()[0].body).unwrap();
    assert_eq!(
        wire["messages"][0]["content"].as_str().unwrap().len(),
        big.len()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_serve_many_requests() {
    let h = Harness::start().await;
    for i in 0..20 {
        let stream = i % 2 == 0;
        let resp = h
            .chat(json!({"model": "gpt-4o-mini", "stream": stream, "messages": user("again")}))
            .await;
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await.unwrap();
    }
    assert_eq!(h.openai.request_count(), 20);
    // Upstream connections are pooled and reused, not opened per request.
    assert!(
        h.openai.connection_count() <= 3,
        "{} upstream connections for 20 sequential requests",
        h.openai.connection_count()
    );
    h.stop().await;
}
