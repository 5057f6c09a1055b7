//! How stream events are relayed: each one goes out as soon as it has arrived (never held
//! back for more), and events that arrive together go out together, in one write.

mod common;

use std::time::{Duration, Instant};

use common::{sse_json, user, Harness};
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_apart_reach_the_client_as_they_are_sent() {
    let h = Harness::start().await;
    let resp = h
        .chat(json!({"model": "gpt-4o-mini", "stream": true,
                     "messages": user("hi [[sim: words=6 chunk_delay_ms=150]]")}))
        .await;
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let mut first_text = None;
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
        if first_text.is_none() && String::from_utf8_lossy(&body).contains("\"content\":\"") {
            first_text = Some(started.elapsed());
        }
    }
    let ended = started.elapsed();
    let first_text = first_text.expect("text arrived");
    // Six words 150 ms apart: the first word is in the client's hands while the provider is
    // still sending the rest.
    assert!(
        ended - first_text >= Duration::from_millis(500),
        "first text after {first_text:?}, end after {ended:?}"
    );
    let text = common::streamed_text(&sse_json(&String::from_utf8_lossy(&body)));
    assert_eq!(text.split_whitespace().count(), 6, "{text}");
    h.stop().await;
}

/// An OpenAI-compatible provider that answers every request with one whole stream in a
/// single write: a role chunk, three words, the finish and usage chunks and `[DONE]`, each
/// event in its own HTTP chunk.
async fn provider_sending_one_burst() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the request head and its content-length bytes of body.
                loop {
                    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let base = json!({"id": "chatcmpl-burst", "object": "chat.completion.chunk",
                                  "created": 1, "model": "gpt-4o-mini-2024-07-18"});
                let with = |choices: serde_json::Value, usage: serde_json::Value| {
                    let mut e = base.clone();
                    e["choices"] = choices;
                    e["usage"] = usage;
                    format!("data: {e}\n\n")
                };
                let mut events = vec![with(
                    json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                            "finish_reason": null}]),
                    json!(null),
                )];
                for w in ["one ", "two ", "three"] {
                    events.push(with(
                        json!([{"index": 0, "delta": {"content": w}, "finish_reason": null}]),
                        json!(null),
                    ));
                }
                events.push(with(
                    json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
                    json!(null),
                ));
                events.push(with(
                    json!([]),
                    json!({"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}),
                ));
                events.push("data: [DONE]\n\n".to_string());
                let mut resp = String::from(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                     transfer-encoding: chunked\r\n\r\n",
                );
                for e in events {
                    resp.push_str(&format!("{:x}\r\n{e}\r\n", e.len()));
                }
                resp.push_str("0\r\n\r\n");
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// The data of each HTTP chunk of a chunked body, in order (the last, empty one left out).
fn http_chunks(mut body: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push(rest[..size].to_string());
        body = &rest[size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_arrive_together_leave_together() {
    let addr = provider_sending_one_burst().await;
    let h = Harness::with_openai_at(&format!("http://{addr}")).await;

    let body =
        json!({"model": "gpt-4o-mini", "stream": true, "messages": user("count")}).to_string();
    let mut s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: tollgate\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let raw = common::read_to_close(&mut s, Duration::from_secs(10))
        .await
        .expect("the gateway answers and closes");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let chunks = http_chunks(body);
    // The whole stream was already there when the gateway read it: one write, not one per
    // event.
    assert_eq!(chunks.len(), 1, "{chunks:#?}");
    let events = sse_json(&chunks[0]);
    assert_eq!(common::streamed_text(&events), "one two three");
    assert!(chunks[0].ends_with("data: [DONE]\n\n"), "{}", chunks[0]);
    h.stop().await;
}
