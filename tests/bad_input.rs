//! Bad requests get OpenAI-shaped JSON errors with the right status; nothing panics.

mod common;

use common::{read_to_close, user, Harness};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_nesting_messages_n_and_max_tokens_name_the_field() {
    let h = Harness::with("max_json_depth = 32\nmax_messages = 50\nmax_n = 4", "").await;
    // Nesting: counted before parsing, so even 100,000 levels cost one scan.
    for depth in [40, 100_000] {
        let body = format!(
            r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"x"}}],"metadata":{}1{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let resp = h
            .client
            .post(h.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(resp).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["param"], "metadata", "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("32 levels"));
    }
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    let (status, body) = error_of(
        h.chat(json!({"model": "gpt-4o-mini", "messages": many}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "messages");
    let (status, body) = error_of(
        h.chat(json!({"model": "gpt-4o-mini", "messages": user("x"), "n": 5}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "n");
    // gpt-4-turbo writes at most 4096 tokens and has no fallback.
    let (status, body) = error_of(
        h.chat(json!({"model": "gpt-4-turbo", "messages": user("x"), "max_tokens": 100_000}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "max_tokens", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("4096"));
    let (_, body) = error_of(
        h.chat(json!({"model": "gpt-4-turbo", "messages": user("x"),
                      "max_completion_tokens": 100_000}))
            .await,
    )
    .await;
    assert_eq!(body["error"]["param"], "max_completion_tokens", "{body}");
    assert_eq!(h.openai.request_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_a_431() {
    let h = Harness::with("max_header_bytes = 8192", "").await;
    let resp = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-padding", "p".repeat(10_000))
        .json(&json!({"model": "gpt-4o-mini", "messages": user("x")}))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(resp).await;
    assert_eq!(status, 431);
    assert_eq!(body["error"]["code"], "request_header_too_large");
    // Headers past Pingora's own 1 MiB cap are refused before any handler runs; the
    // connection is answered or closed, and the gateway keeps serving.
    let _ = h
        .client
        .get(h.url("/healthz"))
        .header("x-padding", "p".repeat(1_100_000))
        .send()
        .await;
    let ok = h.client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    h.stop().await;
}

// ---- Slow and idle clients ----

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_header_is_cut_off_and_other_clients_are_served() {
    let h = Harness::with("client_header_timeout_ms = 1000", "").await;
    let mut slow = TcpStream::connect(h.gw.addr).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t0 = Instant::now();
    // One header line every 200 ms: each read is quick, the header never ends.
    let trickle = async {
        for i in 0..100 {
            if slow
                .write_all(format!("x-slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let served = async {
        let resp = h
            .chat(json!({"model": "gpt-4o-mini", "messages": user("meanwhile")}))
            .await;
        assert_eq!(resp.status(), 200);
    };
    tokio::join!(trickle, served);
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "the trickling client was not cut off: {:?}",
        t0.elapsed()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_a_408_and_the_connection_is_closed() {
    let h = Harness::with("client_body_timeout_ms = 1000", "").await;
    let mut slow = TcpStream::connect(h.gw.addr).await.unwrap();
    slow.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
          content-length: 1000\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = slow.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if wr.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), rd.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the connection was not closed");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");
    trickle.abort();
    h.stop().await;
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_neither_exhaust_memory_nor_block_others() {
    let h = Harness::with("client_header_timeout_ms = 60000", "").await;
    // Warm up allocator and pools.
    assert_eq!(
        h.chat(json!({"model": "gpt-4o-mini", "messages": user("warm")}))
            .await
            .status(),
        200
    );
    let before = rss_kib();
    let mut idle = Vec::with_capacity(2000);
    for i in 0..2000 {
        let mut s = TcpStream::connect(h.gw.addr).await.unwrap();
        if i % 2 == 0 {
            // Half send a partial header, half nothing at all.
            s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    for i in 0..5 {
        let resp = h
            .chat(json!({"model": "gpt-4o-mini", "messages": user(&format!("still there {i}"))}))
            .await;
        assert_eq!(resp.status(), 200);
    }
    let busy = t0.elapsed();
    let after = rss_kib();
    let growth_mib = after.saturating_sub(before) / 1024;
    println!(
        "RSS with 2,000 idle connections: {} MiB before, {} MiB after (+{growth_mib} MiB); \
         5 requests meanwhile took {busy:?}",
        before / 1024,
        after / 1024
    );
    assert!(growth_mib < 200, "RSS grew by {growth_mib} MiB");
    assert!(busy < Duration::from_secs(30));
    drop(idle);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_header_timeout() {
    let h = Harness::with("client_header_timeout_ms = 500", "").await;
    let mut silent = TcpStream::connect(h.gw.addr).await.unwrap();
    let mut partial = TcpStream::connect(h.gw.addr).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    for s in [&mut silent, &mut partial] {
        assert!(
            read_to_close(s, Duration::from_secs(15)).await.is_some(),
            "connection still open"
        );
    }
    h.stop().await;
}
