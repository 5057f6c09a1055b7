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

// ---- Misbehaving upstreams: each ends in a clean client error (or a fallback before the
// first byte), a ledger row with its status and error code, and metrics; never a panic or
// a leaked upstream stream. ----

/// Upstream timeouts short enough for the endless-stream test.
const SHORT: &str = "{ connect_ms = 2000, first_byte_ms = 4000, idle_ms = 4000, total_ms = 4000 }";

async fn billed(name: &str) -> common::dir::DirGateway {
    common::dir::DirGateway::start_billed(
        name,
        |s| {
            s.replace(common::TIMEOUTS, SHORT).replacen(
                "[server]\n",
                "[server]\nmax_sse_event_bytes = 16384\n",
                1,
            )
        },
        &[],
        std::sync::Arc::new(tollgate::clock::SystemClock),
    )
    .await
}

/// The ledger row of request `id` (written just after the response ends).
async fn ledger_row(g: &common::dir::DirGateway, id: &str) -> tollgate::ledger::LedgerRecord {
    let ledger = g.state.billing.ledger.clone().expect("ledger open");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        ledger.flush().await.expect("flush");
        let rows = ledger
            .recent(&tollgate::ledger::RecentFilter {
                limit: 500,
                ..Default::default()
            })
            .expect("read ledger");
        if let Some(r) = rows.into_iter().find(|r| r.id == id) {
            return r;
        }
        assert!(Instant::now() < deadline, "no ledger row {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_string()
}

/// The metrics text has a sample of `family` with every one of `labels`.
fn has_metric(g: &common::dir::DirGateway, family: &str, labels: &[&str]) -> bool {
    g.state
        .metrics
        .render()
        .lines()
        .any(|l| l.starts_with(&format!("{family}{{")) && labels.iter().all(|x| l.contains(x)))
}

/// Asks `model` with `fault` queued on the simulated OpenAI; returns the response.
async fn ask(
    g: &common::dir::DirGateway,
    model: &str,
    stream: bool,
    fault: Fault,
) -> reqwest::Response {
    g.openai.push_fault(fault);
    g.chat(
        None,
        json!({"model": model, "stream": stream, "messages": user("Tell me a story")}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_html_and_error_bodies_with_200_are_clean_502s_recorded_and_counted() {
    let g = billed("faults-garbage").await;
    for (fault, stream) in [
        (Fault::MalformedBody, false),
        (Fault::TruncateAfterEvents(1), false),
        (Fault::Html, false),
        (Fault::Html, true),
        (Fault::ErrorBodyOk, false),
        (Fault::ErrorBodyOk, true),
    ] {
        // gpt-4-turbo has no fallback; attempts_per_model = 2 would retry, so the fault
        // is set as the default for this round.
        g.openai.set_default_fault(Some(fault.clone()));
        let resp = ask(&g, "gpt-4-turbo", stream, fault.clone()).await;
        let what = format!("{fault:?} stream={stream}");
        let status = resp.status().as_u16();
        assert!(
            status == 502 || status == 500 || status == 503,
            "{what}: {status}"
        );
        let id = request_id(&resp);
        let body: serde_json::Value = resp.json().await.expect(&what);
        let code = body["error"]["code"].as_str().unwrap_or("").to_string();
        assert!(!code.is_empty(), "{what}: {body}");
        let row = ledger_row(&g, &id).await;
        assert_eq!(row.status, status, "{what}");
        assert_eq!(row.error_code.as_deref(), Some(code.as_str()), "{what}");
        assert!(
            has_metric(
                &g,
                "tollgate_requests_total",
                &[&format!("status=\"{status}\"")]
            ),
            "{what}"
        );
    }
    g.openai.set_default_fault(None);
    assert!(has_metric(
        &g,
        "tollgate_upstream_attempts_total",
        &["outcome=\"upstream_malformed\"", "model=\"gpt-4-turbo\""]
    ));
    assert_eq!(g.openai.open_streams(), 0, "no upstream stream left open");
    // Still serving (gpt-4-turbo's breaker may now be open; gpt-4o-mini falls back).
    let ok = g
        .chat(
            None,
            json!({"model": "gpt-4o-mini", "messages": user("hi")}),
        )
        .await;
    assert_eq!(ok.status(), 200);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_answer_before_the_first_byte_falls_back_to_the_next_model() {
    let g = billed("faults-fallback").await;
    g.openai.set_default_fault(Some(Fault::Html));
    let resp = g
        .chat(
            None,
            json!({"model": "gpt-4o-mini", "stream": true, "messages": user("hi")}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-model"], "mistral-small");
    let id = request_id(&resp);
    let body = resp.text().await.unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let row = ledger_row(&g, &id).await;
    assert_eq!(row.status, 200);
    assert_eq!(row.served_model.as_deref(), Some("mistral-small"));
    assert!(
        row.attempts.contains("upstream_malformed"),
        "{}",
        row.attempts
    );
    assert!(has_metric(
        &g,
        "tollgate_upstream_attempts_total",
        &["outcome=\"upstream_malformed\"", "model=\"gpt-4o-mini\""]
    ));
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_streams_end_with_an_error_event_a_ledger_row_and_no_open_upstream() {
    let g = billed("faults-streams").await;
    let cases = [
        (Fault::TruncateAfterEvents(3), "upstream_stream_interrupted"),
        (Fault::MalformedBody, "upstream_invalid_response"),
        (
            Fault::OversizedEvent(64 * 1024),
            "upstream_stream_interrupted",
        ),
        (
            Fault::OversizedEvent(1 << 20),
            "upstream_stream_interrupted",
        ),
        (Fault::Endless, "upstream_stream_interrupted"),
    ];
    let t0 = Instant::now();
    for (fault, code) in cases {
        let what = format!("{fault:?}");
        let resp = ask(&g, "gpt-4-turbo", true, fault).await;
        assert_eq!(resp.status(), 200, "{what}: the stream had begun");
        let id = request_id(&resp);
        let body = resp.text().await.unwrap();
        assert!(!body.contains("[DONE]"), "{what}");
        let last = sse_json(&body).pop().expect(&what);
        assert_eq!(last["error"]["code"], code, "{what}: {last}");
        let row = ledger_row(&g, &id).await;
        assert_eq!(row.error_code.as_deref(), Some(code), "{what}");
    }
    // The endless stream was cut at the 4 s total timeout, not left running.
    assert!(t0.elapsed() < Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(5);
    while g.openai.open_streams() != 0 {
        assert!(Instant::now() < deadline, "an upstream stream leaked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(has_metric(
        &g,
        "tollgate_upstream_attempts_total",
        &["outcome=\"stream_interrupted\""]
    ));
    assert!(has_metric(
        &g,
        "tollgate_requests_total",
        &["status=\"200\"", "model=\"gpt-4-turbo\""]
    ));
    g.stop().await;
}

/// A provider that answers the first request on each connection and, like a server whose
/// keep-alive timer fired just as the connection was reused, closes the connection without
/// an answer when a second request arrives on it. Returns its address and a count of the
/// connections it accepted.
async fn closes_reused_connections() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                for served in 0.. {
                    // Read one request: the head, then content-length bytes of body.
                    let (head_end, len) = loop {
                        let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len = text[..end]
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse().unwrap());
                            if buf.len() >= end + 4 + len {
                                break (end + 4, len);
                            }
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    buf.drain(..head_end + len);
                    if served > 0 {
                        return; // closes without answering
                    }
                    let body = json!({
                        "id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                        "model": "gpt-4o-mini-2024-07-18",
                        "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "pong"}}],
                        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
                    })
                    .to_string();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_provider_closed_is_retried_on_a_new_one() {
    let (addr, accepted) = closes_reused_connections().await;
    let h = Harness::with_openai_at(&format!("http://{addr}")).await;
    for i in 1..=3 {
        let resp = h
            .chat(json!({"model": "gpt-4o-mini", "messages": user("ping")}))
            .await;
        assert_eq!(resp.status(), 200, "request {i}");
        // The dead connection is not an attempt of its own: no fallback, no retry delay.
        let attempts = resp.headers()["x-tollgate-attempts"].to_str().unwrap();
        assert!(attempts.starts_with("gpt-4o-mini 200 ok"), "{attempts}");
        assert!(!attempts.contains(','), "{attempts}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "pong");
        // Request 1 opened a connection; each later one found the pooled connection
        // closed and opened a new one.
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), i);
    }
    h.stop().await;
}
