//! Golden tests of the Cortex adapter: requests to the wire, answers and streams back to
//! OpenAI's format, error classification. Fixtures and their provenance are described in
//! `tests/fixtures/cortex/README.md`.

mod support;

use bytes::BytesMut;
use serde_json::Value;
use support::adapter as stream;
use tollgate::api::ChatRequest;
use tollgate::providers::sse::parse_all;
use tollgate::providers::{
    adapter_for, AdapterError, CortexMode, ProviderAdapter, ProviderKind, ResponseContext,
    StreamOutcome, TargetSpec,
};

fn bytes(name: &str) -> Vec<u8> {
    support::fixture_bytes("cortex", name)
}

fn json(name: &str) -> Value {
    support::fixture_json("cortex", name)
}

fn adapter() -> &'static dyn ProviderAdapter {
    adapter_for(ProviderKind::Cortex)
}

fn ctx(include_usage: bool) -> ResponseContext {
    stream::ctx(
        "chatcmpl-golden",
        1_750_000_000,
        "client-model",
        include_usage,
    )
}

fn target(model: &str, mode: CortexMode) -> TargetSpec<'_> {
    let mut t = TargetSpec::new(model);
    t.cortex_mode = mode;
    t
}

/// Feeds `input` in pieces of `piece` bytes, then ends the stream. Returns the raw output,
/// its frames as JSON (`[DONE]` as a string) and the outcome.
fn translate_stream(
    input: &[u8],
    piece: usize,
    include_usage: bool,
) -> (Vec<u8>, Vec<Value>, StreamOutcome) {
    let run = stream::run(adapter(), &ctx(include_usage), input, piece);
    run.finish.unwrap();
    assert!(run.done);
    let frames = parse_all(&run.out, run.out.len())
        .into_iter()
        .map(|e| serde_json::from_str(&e.data).unwrap_or(Value::String(e.data)))
        .collect();
    (run.out, frames, run.outcome)
}

fn frames(input: &str, include_usage: bool) -> (Vec<Value>, StreamOutcome) {
    let (_, f, o) = translate_stream(&bytes(input), usize::MAX, include_usage);
    (f, o)
}

fn wire(
    request: &str,
    model: &str,
    mode: CortexMode,
) -> (Value, tollgate::providers::UpstreamRequest) {
    let req: ChatRequest = serde_json::from_value(json(request)).unwrap();
    let up = adapter().build_request(&req, &target(model, mode)).unwrap();
    (serde_json::from_slice(&up.body).unwrap(), up)
}

fn header<'a>(up: &'a tollgate::providers::UpstreamRequest, name: &str) -> &'a str {
    up.headers
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .and_then(|(_, v)| v.to_str().ok())
        .unwrap_or_else(|| panic!("missing header {name}"))
}

/// Every number as a float, for comparing JSON whose integers may have become floats.
fn numbers_as_f64(v: Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Number(n), Value::Number),
        Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_f64).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect())
        }
        other => other,
    }
}

// ---- native inference:complete ----

#[test]
fn native_request_with_tool_history_matches_expected_wire() {
    let (body, up) = wire(
        "native_tool_conversation.request.json",
        "claude-3-5-sonnet",
        CortexMode::Complete,
    );
    assert_eq!(body, json("native_tool_conversation.expected_wire.json"));
    assert_eq!(up.path, "/api/v2/cortex/inference:complete");
    assert!(!up.stream);
    assert_eq!(header(&up, "content-type"), "application/json");
    assert_eq!(header(&up, "accept"), "application/json, text/event-stream");
    assert!(up
        .headers
        .iter()
        .all(|(n, _)| n != http::header::AUTHORIZATION));
}

#[test]
fn native_streaming_json_schema_request_matches_expected_wire() {
    let (body, up) = wire(
        "native_json_schema_stream.request.json",
        "llama3.1-70b",
        CortexMode::Complete,
    );
    assert_eq!(body, json("native_json_schema_stream.expected_wire.json"));
    assert!(up.stream);
}

#[test]
fn native_request_ending_with_assistant_is_refused() {
    let req: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure,"}]
    }))
    .unwrap();
    let e = adapter()
        .build_request(&req, &target("mistral-large2", CortexMode::Complete))
        .unwrap_err();
    assert!(matches!(e, AdapterError::InvalidRequest { .. }), "{e:?}");
}

#[test]
fn native_text_stream_becomes_openai_chunks_with_usage() {
    let (f, outcome) = frames("native_text_stream.stream.sse", true);
    assert_eq!(Value::Array(f), json("native_text_stream.expected.json"));
    let usage = outcome.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (21, 4));
    assert_eq!(outcome.finish_reason.as_deref(), Some("stop"));
    assert_eq!(outcome.output_text, "Snowflake Cortex.");
    assert!(outcome.error.is_none());
}

#[test]
fn native_tool_stream_becomes_openai_tool_call_chunks() {
    let (f, outcome) = frames("native_tool_stream.stream.sse", true);
    assert_eq!(Value::Array(f), json("native_tool_stream.expected.json"));
    let usage = outcome.usage.unwrap();
    assert_eq!(usage.input_tokens, 412);
    assert_eq!(usage.cached_input_tokens, 256);
    assert_eq!(usage.output_tokens, 58);
    assert_eq!(outcome.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        outcome.output_text,
        "Let me check.{\"city\": \"Oslo\"}{\"tz\":\"CET\"}"
    );
}

#[test]
fn native_stream_without_include_usage_has_no_usage_chunk() {
    let (f, outcome) = frames("native_text_stream.stream.sse", false);
    let mut expected = json("native_text_stream.expected.json");
    expected
        .as_array_mut()
        .unwrap()
        .retain(|v| v.get("choices") != Some(&Value::Array(vec![])));
    assert_eq!(Value::Array(f), expected);
    assert!(
        outcome.usage.is_some(),
        "usage is still reported to the proxy"
    );
}

#[test]
fn native_mid_stream_error_becomes_an_error_frame() {
    let (f, outcome) = frames("native_error_stream.stream.sse", true);
    assert_eq!(Value::Array(f), json("native_error_stream.expected.json"));
    let err = outcome.error.unwrap();
    assert_eq!(err.code.as_deref(), Some("390400"));
    assert_eq!(outcome.output_text, "Partial");
}

#[test]
fn native_text_reply_becomes_chat_completion() {
    let t = adapter()
        .parse_response(&bytes("native_text_nonstream.response.json"), &ctx(false))
        .unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v, json("native_text_nonstream.expected.json"));
    let usage = t.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (33, 12));
    assert_eq!(t.finish_reason.as_deref(), Some("stop"));
}

#[test]
fn native_tool_reply_becomes_tool_calls() {
    let t = adapter()
        .parse_response(&bytes("native_tool_nonstream.response.json"), &ctx(false))
        .unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v, json("native_tool_nonstream.expected.json"));
    assert_eq!(t.finish_reason.as_deref(), Some("tool_calls"));
}

// ---- OpenAI-compatible endpoint (recorded traffic) ----

#[test]
fn chat_completions_mode_sends_the_recorded_requests() {
    for name in [
        "chat_completions_text_nonstream",
        "chat_completions_tool_call_nonstream",
        "chat_completions_text_stream_include_usage",
        "chat_completions_reasoning_stream",
    ] {
        let recorded = json(&format!("{name}.request.json"));
        let mut client = recorded.clone();
        client["model"] = Value::from("client-model");
        let req: ChatRequest = serde_json::from_value(client).unwrap();
        let up = adapter()
            .build_request(
                &req,
                &target("claude-sonnet-4-6", CortexMode::ChatCompletions),
            )
            .unwrap();
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        // `temperature` is typed f64, so a recorded `1` goes out as `1.0`: same JSON number.
        assert_eq!(numbers_as_f64(body), numbers_as_f64(recorded), "{name}");
        assert_eq!(up.path, "/api/v2/cortex/v1/chat/completions");
        assert_eq!(up.stream, req.is_stream());
    }
}

#[test]
fn chat_completions_streaming_request_always_asks_for_usage() {
    let req: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": "client-model", "messages": [{"role": "user", "content": "hi"}], "stream": true
    }))
    .unwrap();
    let up = adapter()
        .build_request(
            &req,
            &target("claude-sonnet-4-6", CortexMode::ChatCompletions),
        )
        .unwrap();
    let body: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(
        body["stream_options"],
        serde_json::json!({"include_usage": true})
    );
    assert_eq!(header(&up, "accept"), "text/event-stream");
}

#[test]
fn chat_completions_text_reply_gets_an_id_and_a_finish_reason() {
    let t = adapter()
        .parse_response(
            &bytes("chat_completions_text_nonstream.response.json"),
            &ctx(false),
        )
        .unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v, json("chat_completions_text_nonstream.expected.json"));
    assert_eq!(t.usage.unwrap().input_tokens, 22);
}

#[test]
fn chat_completions_tool_reply_finishes_with_tool_calls() {
    let t = adapter()
        .parse_response(
            &bytes("chat_completions_tool_call_nonstream.response.json"),
            &ctx(false),
        )
        .unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        v,
        json("chat_completions_tool_call_nonstream.expected.json")
    );
    assert_eq!(t.finish_reason.as_deref(), Some("tool_calls"));
}

#[test]
fn chat_completions_stream_with_usage_is_repaired() {
    let (f, outcome) = frames(
        "chat_completions_text_stream_include_usage.stream.sse",
        true,
    );
    assert_eq!(
        Value::Array(f),
        json("chat_completions_text_stream_include_usage.expected.json")
    );
    assert_eq!(outcome.usage.unwrap().output_tokens, 5);
    assert_eq!(outcome.output_text, "4");
}

#[test]
fn chat_completions_reasoning_stream_relays_only_the_answer() {
    let (f, outcome) = frames("chat_completions_reasoning_stream.stream.sse", true);
    assert_eq!(
        Value::Array(f),
        json("chat_completions_reasoning_stream.expected.json")
    );
    assert_eq!(outcome.finish_reason.as_deref(), Some("stop"));
    assert_eq!(outcome.usage.unwrap().input_tokens, 45);
}

#[test]
fn chat_completions_stream_cut_before_done_is_truncated() {
    let whole = bytes("chat_completions_text_stream_include_usage.stream.sse");
    let cut = &whole[..whole.len() - "data: [DONE]\n\n".len()];
    let mut t = adapter().stream_translator(&ctx(false));
    let mut out = BytesMut::new();
    t.push(cut, &mut out).unwrap();
    assert_eq!(t.finish(&mut out), Err(AdapterError::Truncated));
}

// ---- properties over every stream ----

#[test]
fn every_stream_translates_identically_in_1_7_and_whole_pieces() {
    for name in [
        "native_text_stream.stream.sse",
        "native_tool_stream.stream.sse",
        "native_error_stream.stream.sse",
        "chat_completions_text_stream_include_usage.stream.sse",
        "chat_completions_reasoning_stream.stream.sse",
    ] {
        let input = bytes(name);
        for include_usage in [true, false] {
            // Every piece size ends like the whole run, which finishes cleanly.
            let whole = stream::run_all_splits(adapter(), &ctx(include_usage), &input, name);
            assert_eq!(whole.finish, Ok(()), "{name}");
            assert!(whole.done, "{name}");
        }
    }
}

// ---- errors ----

#[test]
fn error_bodies_are_classified() {
    for case in json("errors.json").as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let status = case["status"].as_u64().unwrap() as u16;
        let mut headers = http::HeaderMap::new();
        for (k, v) in case["headers"].as_object().unwrap() {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.as_str().unwrap().parse().unwrap(),
            );
        }
        let body = match &case["body"] {
            Value::Null => Vec::new(),
            b => serde_json::to_vec(b).unwrap(),
        };
        let e = adapter().parse_error(status, &headers, &body);
        let expect = &case["expect"];
        assert_eq!(e.status, status, "{name}");
        assert_eq!(e.kind.as_str(), expect["kind"], "{name}");
        assert_eq!(e.kind.is_retryable(), expect["retryable"], "{name}");
        assert_eq!(e.code.as_deref(), expect["code"].as_str(), "{name}");
        assert_eq!(e.message, expect["message"], "{name}");
        assert_eq!(
            e.retry_after.map(|d| d.as_millis() as u64),
            expect["retry_after_ms"].as_u64(),
            "{name}"
        );
    }
}

#[test]
fn error_in_a_200_body_is_an_upstream_error() {
    let body =
        br#"{"message":"Cortex is not enabled in this region.","code":"399100","request_id":"r9"}"#;
    let e = adapter().parse_response(body, &ctx(false)).unwrap_err();
    match e {
        AdapterError::Upstream(u) => assert_eq!(u.code.as_deref(), Some("399100")),
        other => panic!("{other:?}"),
    }
}
