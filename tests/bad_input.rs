//! Bad requests get OpenAI-shaped JSON errors with the right status; nothing panics.

mod common;

use common::{user, Harness};
use serde_json::{json, Value};

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct, "application/json");
    let body: Value = resp.json().await.unwrap();
    let e = &body["error"];
    for k in ["message", "type", "param", "code"] {
        assert!(e.get(k).is_some(), "error body lacks `{k}`: {body}");
    }
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_400() {
    let h = Harness::start().await;
    let resp = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{\"model\": \"gpt-4o-mini\", \"messages\": [")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(resp).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("parse the JSON"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_messages_and_wrong_types_name_the_field() {
    let h = Harness::start().await;
    let (status, body) = error_of(h.chat(json!({"model": "gpt-4o-mini"})).await).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages"),
        "{body}"
    );

    let (status, body) = error_of(
        h.chat(json!({"model": "gpt-4o-mini", "messages": user("x"), "max_tokens": "ten"}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "max_tokens");

    let (status, body) = error_of(
        h.chat(json!({"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "messages[0].role");

    let (status, _) = error_of(
        h.chat(json!({"model": "gpt-4o-mini", "messages": []}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        h.openai.request_count(),
        0,
        "invalid requests never reach a provider"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_a_413() {
    let h = Harness::with("max_body_bytes = 4096", "").await;
    let resp = h
        .chat(json!({"model": "gpt-4o-mini", "messages": user(&"x".repeat(10_000))}))
        .await;
    let (status, body) = error_of(resp).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "request_too_large");
    // Chunked bodies (no content-length) are cut off at the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let resp = h
        .client
        .post(h.url("/v1/chat/completions"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_is_a_404_model_not_found() {
    let h = Harness::start().await;
    let (status, body) = error_of(
        h.chat(json!({"model": "gpt-7-ultra", "messages": user("x")}))
            .await,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_get_openai_errors() {
    let h = Harness::start().await;
    let (status, body) =
        error_of(h.client.get(h.url("/v1/embeddingz")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "unknown_url");
    let resp = h
        .client
        .get(h.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["allow"], "GET, POST");
    let (status, _) = error_of(resp).await;
    assert_eq!(status, 405);
    let (status, _) = error_of(h.client.delete(h.url("/v1/models")).send().await.unwrap()).await;
    assert_eq!(status, 405);
    h.stop().await;
}
