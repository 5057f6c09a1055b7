//! Golden tests of the Anthropic adapter over recorded Messages API traffic.
//!
//! Fixtures live in `tests/fixtures/anthropic/` (see its README for provenance). Every
//! translation is compared as JSON values with a hand-written expectation; every stream is
//! fed in 1-byte, 7-byte and whole pieces and must translate identically.

mod support;

use std::time::Duration;

use http::HeaderMap;
use serde_json::{json, Value};

use support::adapter::{self as stream, frames, Run};
use tollgate::api::ChatRequest;
use tollgate::providers::{
    adapter_for, AdapterError, ProviderAdapter, ProviderKind, ResponseContext, StreamOutcome,
    TargetSpec, UpstreamError, UpstreamErrorKind,
};
use tollgate::usage::Usage;

fn adapter() -> &'static dyn ProviderAdapter {
    adapter_for(ProviderKind::Anthropic)
}

fn bytes(rel: &str) -> Vec<u8> {
    support::fixture_bytes("anthropic", rel)
}

fn json_file(rel: &str) -> Value {
    support::fixture_json("anthropic", rel)
}

fn ctx(include_usage: bool) -> ResponseContext {
    stream::ctx(
        "chatcmpl-tollgate-test",
        1_700_000_000,
        "client-alias",
        include_usage,
    )
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

fn build(openai: &str, target: &TargetSpec<'_>) -> (tollgate::providers::UpstreamRequest, Value) {
    let req: ChatRequest = serde_json::from_value(json_file(openai)).unwrap();
    let up = adapter().build_request(&req, target).unwrap();
    let body = serde_json::from_slice(&up.body).unwrap();
    (up, body)
}

#[test]
fn openai_requests_translate_to_the_recorded_anthropic_requests() {
    let cases = [
        ("text_nonstream_claude3opus", "claude-3-opus-latest", 4096),
        (
            "tool_use_nonstream_parallel_haiku45",
            "claude-haiku-4-5",
            4096,
        ),
        // The client's max_completion_tokens (4096) wins over the target default.
        (
            "tool_use_nonstream_single_sonnet45",
            "claude-sonnet-4-5",
            1024,
        ),
    ];
    for (name, model, default_max_tokens) in cases {
        let mut target = TargetSpec::new(model);
        target.default_max_tokens = default_max_tokens;
        let (up, body) = build(&format!("handwritten/{name}.openai.json"), &target);
        assert_eq!(
            body,
            json_file(&format!("recorded/{name}.request.json")),
            "{name}"
        );
        assert!(!up.stream);
    }
}

#[test]
fn tool_conversation_translates_to_alternating_turns_with_merged_tool_results() {
    let (up, body) = build(
        "handwritten/tool_conversation.openai.json",
        &TargetSpec::new("claude-sonnet-4-6"),
    );
    assert_eq!(body, json_file("expected/tool_conversation.anthropic.json"));
    assert!(up.stream);
}

#[test]
fn request_goes_to_messages_endpoint_with_version_header() {
    let mut target = TargetSpec::new("claude-sonnet-4-5");
    target.anthropic_version = "2023-06-01";
    let (up, _) = build(
        "handwritten/text_nonstream_claude3opus.openai.json",
        &target,
    );
    assert_eq!(up.path, "/v1/messages");
    let header = |name: &str| {
        up.headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v.to_str().unwrap().to_string())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("anthropic-version").as_deref(), Some("2023-06-01"));
    assert_eq!(header("x-api-key"), None, "credentials are the proxy's job");
}

// ---------------------------------------------------------------------------------------
// Non-streaming responses
// ---------------------------------------------------------------------------------------

fn translate(name: &str) -> (Value, tollgate::providers::Translated) {
    let t = adapter()
        .parse_response(
            &bytes(&format!("recorded/{name}.response.json")),
            &ctx(false),
        )
        .unwrap();
    let body: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(body, json_file(&format!("expected/{name}.json")), "{name}");
    (body, t)
}

#[test]
fn text_response_translates_to_chat_completion() {
    let (_, t) = translate("text_nonstream_claude3opus");
    assert_eq!(t.finish_reason.as_deref(), Some("stop"));
    assert_eq!(t.usage, Some(Usage::new(20, 10)));
}

#[test]
fn single_tool_use_response_translates_to_tool_call_with_null_content() {
    let (_, t) = translate("tool_use_nonstream_single_sonnet45");
    assert_eq!(t.finish_reason.as_deref(), Some("tool_calls"));
}

#[test]
fn parallel_tool_use_response_keeps_text_and_every_call_in_order() {
    let (body, _) = translate("tool_use_nonstream_parallel_haiku45");
    for call in body["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
    {
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(args["name"].is_string());
    }
}

#[test]
fn cache_usage_counts_reads_and_writes_in_prompt_tokens() {
    let (_, t) = translate("cache_usage_nonstream_sonnet45");
    assert_eq!(
        t.usage,
        Some(Usage {
            input_tokens: 3 + 418 + 1111,
            output_tokens: 33,
            cached_input_tokens: 1111,
            cache_write_tokens: 418,
            estimated: false,
        })
    );
}

// ---------------------------------------------------------------------------------------
// Error responses
// ---------------------------------------------------------------------------------------

fn error_json(e: &UpstreamError) -> Value {
    json!({
        "status": e.status,
        "kind": e.kind.as_str(),
        "message": e.message,
        "code": e.code,
        "param": e.param,
        "retry_after_ms": e.retry_after.map(|d| d.as_millis() as u64),
    })
}

#[test]
fn recorded_error_bodies_are_classified() {
    for (file, status, expected) in [
        (
            "recorded/error_400_invalid_request_effort.response.json",
            400,
            "expected/error_400_invalid_request_effort.json",
        ),
        (
            "recorded/error_404_not_found_model.response.json",
            404,
            "expected/error_404_not_found_model.json",
        ),
    ] {
        let e = adapter().parse_error(status, &HeaderMap::new(), &bytes(file));
        assert_eq!(error_json(&e), json_file(expected), "{file}");
        assert!(!e.kind.is_retryable());
    }
}

#[test]
fn overloaded_529_is_retryable_and_keeps_retry_after() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "2".parse().unwrap());
    let e = adapter().parse_error(
        529,
        &headers,
        &bytes("handwritten/error_529_overloaded.response.json"),
    );
    assert_eq!(
        error_json(&e),
        json_file("expected/error_529_overloaded.json")
    );
    assert!(e.kind.is_retryable());
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
}

#[test]
fn error_body_with_200_status_is_an_upstream_error() {
    let body = bytes("recorded/error_404_not_found_model.response.json");
    match adapter().parse_response(&body, &ctx(false)) {
        Err(AdapterError::Upstream(e)) => assert_eq!(e.kind, UpstreamErrorKind::NotFound),
        other => panic!("expected an upstream error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------

/// Runs `input` split in 1-byte, 7-byte and whole pieces, asserts the runs agree, and
/// returns the whole-piece run.
fn run_all_splits(input: &[u8], include_usage: bool) -> Run {
    stream::run_all_splits(adapter(), &ctx(include_usage), input, "stream")
}

fn is_usage_chunk(frame: &Value) -> bool {
    frame["choices"].as_array().is_some_and(Vec::is_empty)
}

/// Checks a complete recorded stream against its expectation, with and without
/// `include_usage`, and returns the outcome.
fn check_stream(input: &str, expected: &str) -> StreamOutcome {
    let input = bytes(input);
    let expected = json_file(expected);
    let expected = expected.as_array().unwrap();

    let with_usage = run_all_splits(&input, true);
    assert_eq!(with_usage.finish, Ok(()));
    assert!(with_usage.done);
    assert_eq!(frames(&with_usage.out), *expected);

    let without: Vec<Value> = expected
        .iter()
        .filter(|f| !is_usage_chunk(f))
        .cloned()
        .collect();
    assert_eq!(
        without.len(),
        expected.len() - 1,
        "one usage chunk expected"
    );
    let no_usage = run_all_splits(&input, false);
    assert_eq!(frames(&no_usage.out), without);
    // Usage is still recorded for accounting when the client did not ask for it.
    assert_eq!(no_usage.outcome.usage, with_usage.outcome.usage);
    with_usage.outcome
}

#[test]
fn text_stream_translates_to_chunks_and_done() {
    let o = check_stream(
        "recorded/text_stream_sonnet45_single_delta.stream.sse",
        "expected/text_stream_sonnet45_single_delta.json",
    );
    assert_eq!(o.output_text, "2");
    assert_eq!(o.finish_reason.as_deref(), Some("stop"));
    assert_eq!(o.usage, Some(Usage::new(20, 5)));
    assert!(o.error.is_none());
}

#[test]
fn multi_delta_text_stream_translates() {
    let o = check_stream(
        "recorded/text_stream_sonnet46_after_tool_result.stream.sse",
        "expected/text_stream_sonnet46_after_tool_result.json",
    );
    assert_eq!(o.usage, Some(Usage::new(1007, 59)));
}

#[test]
fn tool_use_stream_emits_tool_call_deltas_and_ends_without_trailing_newline() {
    // The recorded bytes end right after the message_stop data line, with no blank line:
    // the event is dispatched by finish().
    let input = bytes("recorded/tool_use_stream_sdk_fixture_sonnet4.stream.sse");
    assert!(!input.ends_with(b"\n"));
    let o = check_stream(
        "recorded/tool_use_stream_sdk_fixture_sonnet4.stream.sse",
        "expected/tool_use_stream_sdk_fixture_sonnet4.json",
    );
    assert_eq!(o.finish_reason.as_deref(), Some("tool_calls"));
    // message_delta reports only output_tokens here: input comes from message_start.
    assert_eq!(o.usage, Some(Usage::new(377, 65)));
    assert_eq!(
        o.output_text,
        "I'll check the current weather in Paris for you.{\"location\": \"Paris\"}"
    );
}

#[test]
fn server_tool_blocks_are_not_relayed_and_tool_index_counts_client_tools_only() {
    let o = check_stream(
        "recorded/tool_use_stream_client_and_server_tools_sonnet46.stream.sse",
        "expected/tool_use_stream_client_and_server_tools_sonnet46.json",
    );
    // The client tool is Anthropic content block 4 but the first OpenAI tool call.
    let out = stream::run(
        adapter(),
        &ctx(false),
        &bytes("recorded/tool_use_stream_client_and_server_tools_sonnet46.stream.sse"),
        usize::MAX,
    )
    .out;
    let indexes: Vec<u64> = frames(&out)
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["tool_calls"][0]["index"].as_u64())
        .collect();
    assert_eq!(indexes.len(), 9);
    assert!(indexes.iter().all(|&i| i == 0));
    // message_delta's cumulative input (after the server tool ran) wins over message_start's.
    assert_eq!(o.usage, Some(Usage::new(1591, 175)));
    assert!(
        !o.output_text.contains("query"),
        "server tool input is not relayed"
    );
}

#[test]
fn thinking_stream_drops_thinking_and_signature_deltas() {
    let input = bytes("recorded/thinking_stream_sonnet4.stream.sse");
    let expected = json_file("expected/thinking_stream_sonnet4.json");
    let r = run_all_splits(&input, true);
    assert_eq!(r.finish, Ok(()));
    let f = frames(&r.out);
    let n = expected["content_chunks"].as_u64().unwrap() as usize;
    assert_eq!(f.len(), 1 + n + 3);
    assert_eq!(f[0], expected["first"]);
    let mut content = String::new();
    for chunk in &f[1..=n] {
        let delta = chunk["choices"][0]["delta"].as_object().unwrap();
        assert_eq!(delta.len(), 1, "content-only delta: {chunk}");
        content.push_str(delta["content"].as_str().unwrap());
    }
    assert_eq!(content, expected["content"].as_str().unwrap());
    assert_eq!(Value::from(f[n + 1..].to_vec()), expected["tail"]);
    assert_eq!(r.outcome.output_text, content);
    let out = String::from_utf8(r.out).unwrap();
    assert!(!out.contains("pedestrian safety") && !out.contains("signature"));
}

#[test]
fn compaction_stream_bills_every_iteration_including_cache_reads() {
    let o = check_stream(
        "recorded/cache_usage_stream_compaction_sonnet46.stream.sse",
        "expected/cache_usage_stream_compaction_sonnet46.json",
    );
    assert_eq!(
        o.usage,
        Some(Usage {
            input_tokens: (100 + 55096) + 181,
            output_tokens: 83 + 8,
            cached_input_tokens: 55096,
            cache_write_tokens: 0,
            estimated: false,
        })
    );
    assert_eq!(o.output_text, "Hello! \u{1F44B}");
}

#[test]
fn stream_cache_reads_and_writes_fall_back_to_message_start() {
    let o = check_stream(
        "handwritten/cache_write_stream.stream.sse",
        "expected/cache_write_stream.json",
    );
    assert_eq!(o.finish_reason.as_deref(), Some("length"));
    assert_eq!(
        o.usage,
        Some(Usage {
            input_tokens: 5 + 200 + 1000,
            output_tokens: 12,
            cached_input_tokens: 1000,
            cache_write_tokens: 200,
            estimated: false,
        })
    );
}

#[test]
fn error_event_mid_stream_becomes_error_frame_and_ends_the_stream() {
    let input = bytes("handwritten/error_mid_stream.stream.sse");
    for include_usage in [true, false] {
        let r = run_all_splits(&input, include_usage);
        assert!(r.done);
        assert_eq!(r.finish, Ok(()));
        assert_eq!(
            Value::from(frames(&r.out)),
            json_file("expected/error_mid_stream.json")
        );
        let err = r.outcome.error.expect("error recorded");
        assert_eq!(err.kind, UpstreamErrorKind::Overloaded);
        assert_eq!(err.code.as_deref(), Some("overloaded_error"));
        assert_eq!(err.message, "Overloaded");
        assert_eq!(r.outcome.output_text, "Partial");
        // No message_delta came: message_start's input stands and the output is counted
        // from the relayed "Partial" (one cl100k token).
        let counted = Usage {
            estimated: true,
            ..Usage::new(12, 1)
        };
        assert_eq!(r.outcome.usage, Some(counted));
    }
}

#[test]
fn stream_cut_before_message_stop_is_truncated() {
    let input = bytes("recorded/text_stream_sonnet46_after_tool_result.stream.sse");
    let stop = input
        .windows(b"event: message_stop".len())
        .position(|w| w == b"event: message_stop")
        .unwrap();
    let delta = input
        .windows(b"event: message_delta".len())
        .position(|w| w == b"event: message_delta")
        .unwrap();
    // Cut cleanly between events, and in the middle of the message_delta event.
    for cut in [&input[..stop], &input[..delta + 40]] {
        let r = run_all_splits(cut, true);
        assert_eq!(r.finish, Err(AdapterError::Truncated));
        assert!(!r.done);
        let f = frames(&r.out);
        assert!(!f.contains(&Value::from("[DONE]")));
        assert!(!f.iter().any(is_usage_chunk));
    }
}
