//! The simulated OpenAI API over real HTTP: response shapes against recorded traffic,
//! authentication, validation, every fault, directives, tool calls, determinism, output caps
//! and stream accounting.

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::sim::{self, booking_schema, chunks, conforms, events, read_until_error, shape};
use tollgate::api::ChatRequest;
use tollgate::providers::ProviderKind;
use tollgate::sim::{Fault, SimFleet, SimOptions, SimServer};
use tollgate::tokens::{count_prompt, Encoding};

const KEY: &str = "sk-test-0123456789abcdef";

fn fixture(name: &str) -> String {
    support::fixture_text("sim/openai", name)
}

fn fixture_json(name: &str) -> Value {
    support::fixture_json("sim/openai", name)
}

async fn server() -> SimServer {
    sim::start(ProviderKind::OpenAi, KEY).await
}

fn url(s: &SimServer) -> String {
    format!("{}/v1/chat/completions", s.base_url())
}

async fn post(s: &SimServer, body: &Value) -> reqwest::Response {
    sim::post_bearer(&url(s), KEY, body).await
}

async fn post_json(s: &SimServer, body: &Value) -> (u16, Value) {
    sim::status_and_json(post(s, body).await).await
}

fn user(text: &str) -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
}

fn streamed(mut body: Value, include_usage: bool) -> Value {
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// Text of a stream's content deltas, concatenated.
fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect()
}

/// The first chunk of each kind: role, content, tool-call fragment, finish, usage-only.
fn chunk_kinds(chunks: &[Value]) -> Vec<(&'static str, Value)> {
    let mut seen: Vec<(&'static str, Value)> = Vec::new();
    for c in chunks {
        let delta = c.pointer("/choices/0/delta");
        let kind = if c["choices"].as_array().is_some_and(|a| a.is_empty()) {
            "usage"
        } else if c
            .pointer("/choices/0/finish_reason")
            .is_some_and(|f| !f.is_null())
        {
            "finish"
        } else if delta.and_then(|d| d.get("role")).is_some() {
            "role"
        } else if delta.and_then(|d| d.get("tool_calls")).is_some() {
            "tool_fragment"
        } else {
            "content"
        };
        if !seen.iter().any(|(k, _)| *k == kind) {
            seen.push((kind, shape(c)));
        }
    }
    seen
}

#[tokio::test]
async fn non_stream_text_matches_the_recorded_shape_and_counts_usage() {
    let s = server().await;
    let req = fixture_json("text_nonstream_gpt4o.request.json");
    let r = post(&s, &req).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    for h in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
    ] {
        assert!(r.headers().contains_key(h), "{h}");
    }
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        shape(&body),
        shape(&fixture_json("text_nonstream_gpt4o.response.json"))
    );
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "gpt-4o-2024-08-06");
    assert!(body["system_fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("fp_"));
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let chat: ChatRequest = serde_json::from_value(req).unwrap();
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], count_prompt(Encoding::O200k, &chat));
    assert_eq!(usage["completion_tokens"], Encoding::O200k.count(content));
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn stream_with_include_usage_matches_the_recorded_chunks() {
    let s = server().await;
    let r = post(
        &s,
        &fixture_json("text_stream_include_usage_gpt4o.request.json"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = r.bytes().await.unwrap();
    assert_eq!(events(&body).last().map(String::as_str), Some("[DONE]"));
    let ours = chunks(&body);
    let recorded = chunks(fixture("text_stream_include_usage_gpt4o.stream.sse").as_bytes());
    assert_eq!(chunk_kinds(&ours), chunk_kinds(&recorded));
    // Several small content chunks, every chunk but the last with `usage: null`.
    assert!(ours.len() >= 6, "{} chunks", ours.len());
    assert!(ours[..ours.len() - 1].iter().all(|c| c["usage"].is_null()));
    let last = ours.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"]["completion_tokens"],
        Encoding::O200k.count(&streamed_text(&ours))
    );
    assert!(ours
        .iter()
        .all(|c| c["id"] == ours[0]["id"] && c["created"] == ours[0]["created"]));
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_anywhere() {
    let s = server().await;
    let body = post(&s, &streamed(user("Name three rivers."), false))
        .await
        .bytes()
        .await
        .unwrap();
    let all = events(&body);
    assert_eq!(all.last().map(String::as_str), Some("[DONE]"));
    let cs = chunks(&body);
    assert!(cs.iter().all(|c| c.get("usage").is_none()));
    assert!(cs
        .iter()
        .all(|c| !c["choices"].as_array().unwrap().is_empty()));
    assert_eq!(
        cs[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    assert_eq!(cs.last().unwrap()["choices"][0]["finish_reason"], "stop");
    // Each content chunk holds a word or two.
    for c in &cs[1..cs.len() - 1] {
        let piece = c["choices"][0]["delta"]["content"].as_str().unwrap();
        assert!(piece.split_whitespace().count() <= 2, "{piece:?}");
    }
}

#[tokio::test]
async fn streamed_and_non_streamed_answers_carry_the_same_text() {
    let s = server().await;
    let (_, whole) = post_json(&s, &user("Describe a harbor at dawn.")).await;
    let body = post(&s, &streamed(user("Describe a harbor at dawn."), true))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        whole["choices"][0]["message"]["content"].as_str().unwrap(),
        streamed_text(&chunks(&body))
    );
}

#[tokio::test]
async fn identical_requests_get_identical_text_and_different_prompts_do_not() {
    let s = server().await;
    let (_, a) = post_json(&s, &user("Tell me about routing.")).await;
    let (_, b) = post_json(&s, &user("Tell me about routing.")).await;
    let (_, c) = post_json(&s, &user("Tell me about caching.")).await;
    let text = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(text(&a), text(&b));
    assert_ne!(text(&a), text(&c));
    assert_ne!(a["id"], b["id"]);
}

#[tokio::test]
async fn tool_call_stream_matches_the_recorded_chunks() {
    let s = server().await;
    let req = fixture_json("tool_calls_stream_include_usage_gpt4omini.request.json");
    let body = post(&s, &req).await.bytes().await.unwrap();
    let ours = chunks(&body);
    let recorded =
        chunks(fixture("tool_calls_stream_include_usage_gpt4omini.stream.sse").as_bytes());
    assert_eq!(chunk_kinds(&ours), chunk_kinds(&recorded));
    let first = &ours[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["function"]["name"], "get_capital");
    assert_eq!(first["function"]["arguments"], "");
    assert!(first["id"].as_str().unwrap().starts_with("call_"));
    let arguments: String = ours
        .iter()
        .skip(1)
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
        })
        .collect();
    let args: Value = serde_json::from_str(&arguments).unwrap();
    // The recorded call had {"country":"UK"}; the simulator takes the proper noun too.
    assert_eq!(args, json!({"country": "UK"}));
    let finish = ours.iter().find_map(|c| {
        c.pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
    });
    assert_eq!(finish, Some("tool_calls"));
}

#[tokio::test]
async fn required_tool_choice_matches_the_recorded_non_stream_tool_call() {
    let s = server().await;
    let (status, body) =
        post_json(&s, &fixture_json("tool_calls_nonstream_gpt4o.request.json")).await;
    assert_eq!(status, 200);
    assert_eq!(
        shape(&body),
        shape(&fixture_json("tool_calls_nonstream_gpt4o.response.json"))
    );
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_user_country");
    assert_eq!(call["function"]["arguments"], "{}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
}

fn booking_tool() -> Value {
    json!({"type": "function", "function": {"name": "book_table", "description": "Book a table",
        "parameters": booking_schema()}})
}

#[tokio::test]
async fn required_tool_call_arguments_satisfy_the_schema() {
    let s = server().await;
    let tool = booking_tool();
    let schema = tool["function"]["parameters"].clone();
    for prompt in ["Dinner for the team", "Somewhere quiet", "A birthday party"] {
        let mut req = user(prompt);
        req["tools"] = json!([tool]);
        req["tool_choice"] = json!("required");
        let (status, body) = post_json(&s, &req).await;
        assert_eq!(status, 200);
        let call = &body["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "book_table");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        conforms(&schema, &args, "args").unwrap();
    }
}

#[tokio::test]
async fn auto_tool_choice_answers_text_unless_asked_and_text_after_a_tool_result() {
    let s = server().await;
    let mut req = user("Write a haiku about autumn.");
    req["tools"] = json!([booking_tool()]);
    let (_, body) = post_json(&s, &req).await;
    assert!(body["choices"][0]["message"]["tool_calls"].is_null());
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let req = json!({"model": "gpt-4o", "tools": [booking_tool()], "tool_choice": "required", "messages": [
        {"role": "user", "content": "Book a table please"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc", "type": "function",
            "function": {"name": "book_table", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "booked"}]});
    let (_, body) = post_json(&s, &req).await;
    assert!(body["choices"][0]["message"]["content"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
}

#[tokio::test]
async fn max_tokens_cap_ends_with_finish_reason_length() {
    let s = server().await;
    let mut req = user("Go on at length [[sim: words=200]]");
    req["max_tokens"] = json!(7);
    let (_, body) = post_json(&s, &req).await;
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 7);

    req["max_completion_tokens"] = json!(4);
    let body = post(&s, &streamed(req, true)).await.bytes().await.unwrap();
    let cs = chunks(&body);
    let finish = cs.iter().find_map(|c| {
        c.pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
    });
    assert_eq!(finish, Some("length"));
    assert_eq!(cs.last().unwrap()["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn words_directive_sets_the_output_length() {
    let s = server().await;
    let (_, body) = post_json(&s, &user("hi [[sim: words=13]]")).await;
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(text.split_whitespace().count(), 13);
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_openai_401_bodies() {
    let s = server().await;
    let r = reqwest::Client::new()
        .post(url(&s))
        .json(&user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("You didn't provide an API key."));
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["code"].is_null());
    assert_eq!(shape(&body["error"]).as_object().unwrap().len(), 4);

    let r = reqwest::Client::new()
        .post(url(&s))
        .bearer_auth("sk-wrong-key-0000")
        .json(&user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sk-***0000"));

    // Without a configured key, any non-empty key is accepted.
    let open = SimServer::start(ProviderKind::OpenAi, SimOptions::default())
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .post(url(&open))
        .bearer_auth("anything")
        .json(&user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn validation_errors_and_unknown_paths_use_openai_error_bodies() {
    let s = server().await;
    let recorded = fixture_json("error_400_unsupported_value_o1mini.response.json");
    let (status, body) = post_json(&s, &json!({"model": "gpt-4o"})).await;
    assert_eq!(status, 400);
    assert_eq!(shape(&body), shape(&recorded));
    assert_eq!(body["error"]["param"], "messages");
    assert_eq!(body["error"]["code"], "missing_required_parameter");

    let (status, body) = post_json(
        &s,
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": 42}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_type");
    assert_eq!(body["error"]["param"], "messages[0].content");

    let (status, body) = post_json(&s, &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "random_seed": 3})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Unrecognized request argument supplied: random_seed"
    );

    let r = reqwest::Client::new()
        .post(url(&s))
        .bearer_auth(KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Unknown model names are accepted, as many gateways rely on new models working.
    let mut req = user("hi");
    req["model"] = json!("gpt-9-imaginary");
    assert_eq!(post_json(&s, &req).await.0, 200);

    let r = reqwest::Client::new()
        .post(format!("{}/v1/nothing", s.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Invalid URL (POST /v1/nothing)");
}

#[tokio::test]
async fn models_endpoint_lists_models() {
    let s = server().await;
    let r = reqwest::Client::new()
        .get(format!("{}/v1/models", s.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(
        shape(&body["data"][0]),
        json!({"id": "string", "object": "string", "created": "number", "owned_by": "string"})
    );
}

#[tokio::test]
async fn queued_status_fault_sends_retry_after_and_rate_limit_headers_once() {
    let s = server().await;
    s.push_fault(Fault::Status {
        status: 429,
        retry_after_secs: Some(2),
    });
    let r = post(&s, &user("hi")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        shape(&body),
        shape(&fixture_json("error_404_model_not_found.response.json"))
    );
    assert_eq!(post(&s, &user("hi")).await.status(), 200);

    for status in [500u16, 503] {
        s.push_fault(Fault::Status {
            status,
            retry_after_secs: None,
        });
        let r = post(&s, &user("hi")).await;
        assert_eq!(r.status().as_u16(), status);
        assert!(r.headers().get("retry-after").is_none());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error");
    }
}

#[tokio::test]
async fn directive_beats_header_beats_queue_and_default_applies_when_idle() {
    let s = server().await;
    s.push_fault(Fault::Status {
        status: 500,
        retry_after_secs: None,
    });
    let client = reqwest::Client::new();
    let r = client
        .post(url(&s))
        .bearer_auth(KEY)
        .header("x-sim-fault", "status=502")
        .json(&user("hi [[sim: status=429 retry_after=3]]"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let r = client
        .post(url(&s))
        .bearer_auth(KEY)
        .header("x-sim-fault", "status=503")
        .json(&user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // The queued fault was left for the first request without its own.
    assert_eq!(post(&s, &user("hi")).await.status(), 500);
    assert_eq!(post(&s, &user("hi")).await.status(), 200);

    s.set_default_fault(Some(Fault::Status {
        status: 503,
        retry_after_secs: None,
    }));
    assert_eq!(post(&s, &user("hi")).await.status(), 503);
    assert_eq!(post(&s, &user("hi")).await.status(), 503);
    s.set_default_fault(None);
    assert_eq!(post(&s, &user("hi")).await.status(), 200);
}

#[tokio::test]
async fn only_the_last_user_message_carries_directives() {
    let s = server().await;
    let req = json!({"model": "gpt-4o", "messages": [
        {"role": "user", "content": "[[sim: status=500]]"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "and now?"}]});
    assert_eq!(post(&s, &req).await.status(), 200);
}

#[tokio::test]
async fn delay_first_byte_holds_the_headers() {
    let s = server().await;
    let start = Instant::now();
    let r = post(&s, &user("hi [[sim: delay_ms=300]]")).await;
    assert_eq!(r.status(), 200);
    assert!(start.elapsed() >= Duration::from_millis(300));

    s.push_fault(Fault::DelayFirstByte(Duration::from_millis(200)));
    let start = Instant::now();
    post(&s, &user("hi")).await;
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn chunk_delay_spaces_the_events() {
    let s = server().await;
    s.push_fault(Fault::ChunkDelay(Duration::from_millis(40)));
    let start = Instant::now();
    let body = post(&s, &streamed(user("hi [[sim: words=4]]"), false))
        .await
        .bytes()
        .await
        .unwrap();
    let n = events(&body).len();
    assert!(n >= 4);
    assert!(start.elapsed() >= Duration::from_millis(40 * (n as u64 - 1)));
}

#[tokio::test]
async fn reset_mid_stream_makes_the_client_see_an_error_after_some_events() {
    let s = server().await;
    let r = post(
        &s,
        &streamed(user("hi [[sim: reset_after=3 words=40]]"), true),
    )
    .await;
    assert_eq!(r.status(), 200);
    let (received, failed) = read_until_error(r).await;
    assert!(failed, "the client must see the reset");
    assert_eq!(events(&received).len(), 3);

    s.push_fault(Fault::ResetAfterEvents(1));
    assert!(post(&s, &streamed(user("hi"), false))
        .await
        .bytes()
        .await
        .is_err());
}

#[tokio::test]
async fn truncate_ends_the_body_cleanly_without_done() {
    let s = server().await;
    let body = post(
        &s,
        &streamed(user("hi [[sim: truncate_after=3 words=40]]"), true),
    )
    .await
    .bytes()
    .await
    .unwrap();
    let all = events(&body);
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|e| e != "[DONE]"));
    assert_eq!(chunks(&body).len(), 3);
}

#[tokio::test]
async fn stream_error_after_sends_the_openai_error_frame() {
    let s = server().await;
    s.push_fault(Fault::StreamErrorAfterEvents(2));
    let body = post(&s, &streamed(user("hi [[sim: words=30]]"), true))
        .await
        .bytes()
        .await
        .unwrap();
    let all = events(&body);
    assert_eq!(all.len(), 3);
    let err: Value = serde_json::from_str(&all[2]).unwrap();
    assert_eq!(err["error"]["type"], "server_error");
    assert!(err["error"]["message"].is_string());
}

#[tokio::test]
async fn malformed_body_is_invalid_json_with_status_200() {
    let s = server().await;
    let r = post(&s, &user("hi [[sim: malformed]]")).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.is_empty());
    assert!(serde_json::from_str::<Value>(&text).is_err());

    s.push_fault(Fault::MalformedBody);
    let body = post(&s, &streamed(user("hi [[sim: words=10]]"), false))
        .await
        .bytes()
        .await
        .unwrap();
    let all = events(&body);
    assert_eq!(all.last().map(String::as_str), Some("[DONE]"));
    let bad = all
        .iter()
        .filter(|d| *d != "[DONE]" && serde_json::from_str::<Value>(d).is_err())
        .count();
    assert_eq!(bad, 1);
}

#[tokio::test]
async fn hang_reads_the_request_and_never_answers() {
    let s = server().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .post(url(&s))
        .bearer_auth(KEY)
        .json(&user("[[sim: hang]]"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(s.request_count(), 1);
}

#[tokio::test]
async fn aborted_streams_counts_a_client_that_drops_mid_stream() {
    let s = server().await;
    let r = post(
        &s,
        &streamed(user("hi [[sim: chunk_delay_ms=30 words=300]]"), false),
    )
    .await;
    let mut stream = r.bytes_stream();
    let _ = stream.next().await.unwrap().unwrap();
    let _ = stream.next().await.unwrap().unwrap();
    assert_eq!(s.open_streams(), 1);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.aborted_streams() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.aborted_streams(), 1);
    assert_eq!(s.open_streams(), 0);

    // A stream read to its end is not aborted.
    post(&s, &streamed(user("hi [[sim: words=5]]"), false))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(s.aborted_streams(), 1);
}

#[tokio::test]
async fn requests_are_recorded_and_connections_are_reused() {
    let s = server().await;
    let client = reqwest::Client::new();
    for i in 0..3 {
        let r = client
            .post(url(&s))
            .bearer_auth(KEY)
            .json(&user(&format!("hi {i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let recorded = s.requests();
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[0].method, reqwest::Method::POST);
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    assert_eq!(
        recorded[2].headers["authorization"],
        format!("Bearer {KEY}")
    );
    let sent: Value = serde_json::from_slice(&recorded[1].body).unwrap();
    assert_eq!(sent, user("hi 1"));
    assert_eq!(s.connection_count(), 1, "keep-alive reuses the connection");
    s.shutdown().await;
}

#[tokio::test]
async fn fleet_serves_openai_and_mistral_from_its_own_thread() {
    let fleet = SimFleet::spawn(SimOptions::default()).unwrap();
    for kind in ProviderKind::ALL {
        assert!(fleet.base_url(kind).is_some(), "{kind} has a simulator");
    }
    for kind in [ProviderKind::OpenAi, ProviderKind::Mistral] {
        let base = fleet.base_url(kind).unwrap();
        let r = reqwest::Client::new()
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth("demo")
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{kind}");
    }
    assert_eq!(
        fleet.server(ProviderKind::OpenAi).unwrap().request_count(),
        1
    );
    drop(fleet);
}

#[tokio::test]
async fn prompt_cache_option_reports_cached_tokens_for_a_repeated_long_prompt() {
    let opts = SimOptions {
        prompt_cache: true,
        ..Default::default()
    };
    let s = SimServer::start(ProviderKind::OpenAi, opts).await.unwrap();
    let long = "Entry: shelf, aisle, volume, subject heading. ".repeat(150);
    let (_, first) = post_json(&s, &user(&long)).await;
    let (_, second) = post_json(&s, &user(&long)).await;
    let prompt = first["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt >= 1024);
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(cached > 0 && cached <= prompt && cached % 128 == 0);
    // Short prompts are never cached.
    post_json(&s, &user("short")).await;
    let (_, again) = post_json(&s, &user("short")).await;
    assert_eq!(again["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}
