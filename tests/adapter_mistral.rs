//! Golden tests of the Mistral adapter against recorded Mistral traffic
//! (`tests/fixtures/mistral/`, sources in its README).

mod support;

use std::time::Duration;

use bytes::BytesMut;
use http::HeaderMap;
use serde_json::Value;
use support::adapter as stream;
use tollgate::providers::sse::parse_all;
use tollgate::providers::{
    adapter_for, AdapterError, ProviderAdapter, ProviderKind, ResponseContext, UpstreamErrorKind,
};
use tollgate::usage::Usage;

fn fixture_in(dir: &str, name: &str) -> Vec<u8> {
    support::fixture_bytes(dir, name)
}

fn fixture(name: &str) -> Vec<u8> {
    fixture_in("mistral", name)
}

fn json_fixture(name: &str) -> Value {
    support::fixture_json("mistral", name)
}

fn adapter() -> &'static dyn ProviderAdapter {
    adapter_for(ProviderKind::Mistral)
}

fn ctx(include_usage: bool) -> ResponseContext {
    stream::ctx(
        "chatcmpl-tollgate",
        1_700_000_000,
        "mistral-large",
        include_usage,
    )
}

fn wire_body(request: &[u8]) -> Value {
    stream::chat_completions_wire_body(adapter(), request, "mistral-large-latest")
}

/// Feeds `input` in `piece`-byte chunks; see [`stream::Run::into_parts`].
fn run_stream(input: &[u8], piece: usize, include_usage: bool) -> stream::Parts {
    stream::run(adapter(), &ctx(include_usage), input, piece).into_parts()
}

// ---------------------------------------------------------------------------------------
// Requests

#[test]
fn tool_request_matches_mistral_request_model() {
    assert_eq!(
        wire_body(&fixture("tool_call_nonstream_mistral_large.client.json")),
        json_fixture("tool_call_nonstream_mistral_large.wire.expected.json")
    );
}

#[test]
fn tool_result_turn_gets_empty_content_and_keeps_valid_ids() {
    assert_eq!(
        wire_body(&fixture(
            "text_after_tool_nonstream_mistral_large.client.json"
        )),
        json_fixture("text_after_tool_nonstream_mistral_large.wire.expected.json")
    );
}

#[test]
fn openai_tool_call_ids_are_rewritten_in_both_turns_and_stream_options_dropped() {
    // A real OpenAI client request (tool history with `call_…` ids, include_usage).
    let request = fixture_in("openai", "text_stream_after_tool_gpt4omini.request.json");
    assert_eq!(
        wire_body(&request),
        json_fixture("openai_tool_history.wire.expected.json")
    );
}

#[test]
fn every_openai_field_is_renamed_rewritten_or_dropped_as_mistral_requires() {
    assert_eq!(
        wire_body(&fixture("kitchen_sink.client.json")),
        json_fixture("kitchen_sink.wire.expected.json")
    );
}

// ---------------------------------------------------------------------------------------
// Non-streaming responses

#[test]
fn responses_become_openai_chat_completions() {
    let cases = [
        ("text_nonstream_mistral_large", Usage::new(4, 36), "stop"),
        (
            "text_after_tool_nonstream_mistral_large",
            Usage {
                cached_input_tokens: 99,
                ..Usage::new(100, 29)
            },
            "stop",
        ),
        (
            "tool_call_nonstream_mistral_large",
            Usage {
                cached_input_tokens: 76,
                ..Usage::new(77, 12)
            },
            "tool_calls",
        ),
        (
            "text_nonstream_magistral_small_raw",
            Usage::new(28, 4),
            "stop",
        ),
        ("thinking_nonstream", Usage::new(12, 48), "length"),
    ];
    for (name, usage, finish) in cases {
        let body = fixture(&format!("{name}.response.json"));
        let t = adapter().parse_response(&body, &ctx(false)).unwrap();
        let got: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(
            got,
            json_fixture(&format!("{name}.expected.json")),
            "{name}"
        );
        assert_eq!(t.usage, Some(usage), "{name}");
        assert_eq!(t.finish_reason.as_deref(), Some(finish), "{name}");
    }
}

#[test]
fn error_object_in_a_2xx_body_is_an_upstream_error() {
    let r = adapter().parse_response(
        &fixture("error_429_rate_limited.response.json"),
        &ctx(false),
    );
    match r {
        Err(AdapterError::Upstream(e)) => {
            assert_eq!(e.kind, UpstreamErrorKind::RateLimited);
            assert_eq!(e.message, "Rate limit exceeded");
        }
        other => panic!("expected an upstream error, got {other:?}"),
    }
    assert!(matches!(
        adapter().parse_response(b"not json", &ctx(false)),
        Err(AdapterError::MalformedResponse(_))
    ));
    assert!(matches!(
        adapter().parse_response(br#"{"id":"x","object":"chat.completion"}"#, &ctx(false)),
        Err(AdapterError::MalformedResponse(_))
    ));
}

// ---------------------------------------------------------------------------------------
// Errors

#[test]
fn flat_error_body_is_read() {
    let e = adapter().parse_error(
        400,
        &HeaderMap::new(),
        &fixture("error_400_tool_call_id.response.json"),
    );
    assert_eq!(e.kind, UpstreamErrorKind::InvalidRequest);
    assert_eq!(
        e.message,
        "Tool call id was call_0fypS1hVX but must be a-z, A-Z, 0-9, with a length of 9."
    );
    assert_eq!(e.code.as_deref(), Some("3280"));
    assert_eq!(e.param, None);
}

#[test]
fn validation_errors_in_every_recorded_shape_become_one_readable_message() {
    let cases = [
        (
            "error_422_message_detail.response.json",
            "Invalid request: messages.0.user.name: Extra inputs are not permitted; messages.0.user.tool_calls: Extra inputs are not permitted",
            "messages.0.user.name",
        ),
        (
            "error_422_message_json_string.response.json",
            "Invalid request: frequency_penalty: Extra inputs are not permitted",
            "frequency_penalty",
        ),
        (
            "error_422_bare_detail.response.json",
            "Invalid request: store: Extra inputs are not permitted; max_completion_tokens: Extra inputs are not permitted",
            "store",
        ),
        (
            "error_422_detail_and_message_list.response.json",
            "Invalid request: tools: Extra inputs are not permitted",
            "tools",
        ),
    ];
    for (name, message, param) in cases {
        let e = adapter().parse_error(422, &HeaderMap::new(), &fixture(name));
        assert_eq!(e.status, 422);
        assert_eq!(e.kind, UpstreamErrorKind::InvalidRequest, "{name}");
        assert_eq!(e.message, message, "{name}");
        assert_eq!(e.param.as_deref(), Some(param), "{name}");
        assert!(!e.kind.is_retryable());
    }
}

#[test]
fn rate_limit_429s_are_retryable_with_their_delay() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "2".parse().unwrap());
    for (name, message, code) in [
        (
            "error_429_rate_limited.response.json",
            "Rate limit exceeded",
            Some("1300"),
        ),
        (
            "error_429_requests_rate_limit.response.json",
            "Requests rate limit exceeded",
            None,
        ),
    ] {
        let e = adapter().parse_error(429, &headers, &fixture(name));
        assert_eq!(e.kind, UpstreamErrorKind::RateLimited, "{name}");
        assert_eq!(e.message, message);
        assert_eq!(e.code.as_deref(), code);
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    }
}

#[test]
fn non_json_error_body_gives_a_short_message() {
    let e = adapter().parse_error(
        503,
        &HeaderMap::new(),
        b"upstream connect error or disconnect/reset before headers. reset reason: overflow",
    );
    assert_eq!(e.kind, UpstreamErrorKind::Overloaded);
    assert_eq!(
        e.message,
        "upstream returned HTTP 503 Service Unavailable: upstream connect error or disconnect/reset before headers. reset reason: overflow"
    );
}

// ---------------------------------------------------------------------------------------
// Streams

struct StreamCase {
    name: &'static str,
    usage: Usage,
    finish: &'static str,
    text: &'static str,
    /// Whether a `no_usage` expectation exists besides the `include_usage` one.
    both_variants: bool,
}

const STREAMS: [StreamCase; 3] = [
    StreamCase {
        name: "text_stream_after_tool_mistral_large",
        usage: Usage {
            input_tokens: 105,
            output_tokens: 14,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            estimated: false,
        },
        finish: "stop",
        text: "The installed version of LLM is 0.26.",
        both_variants: true,
    },
    StreamCase {
        name: "tool_call_stream_mistral_large",
        usage: Usage {
            input_tokens: 55,
            output_tokens: 18,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            estimated: false,
        },
        finish: "tool_calls",
        text: "{}",
        both_variants: true,
    },
    StreamCase {
        name: "thinking_stream_excerpt",
        usage: Usage {
            input_tokens: 10,
            output_tokens: 6,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            estimated: false,
        },
        finish: "length",
        text: "Look both ways.",
        both_variants: false,
    },
];

#[test]
fn streams_become_openai_chunks_with_a_separate_usage_chunk_on_request() {
    for case in &STREAMS {
        let input = fixture(&format!("{}.stream.sse", case.name));
        let variants: &[bool] = if case.both_variants {
            &[true, false]
        } else {
            &[true]
        };
        for &include_usage in variants {
            let variant = if include_usage {
                "include_usage"
            } else {
                "no_usage"
            };
            let expected = json_fixture(&format!("{}.{variant}.expected.json", case.name));
            let (_, events, outcome, finished) = run_stream(&input, input.len(), include_usage);
            assert_eq!(finished, Ok(()), "{} {variant}", case.name);
            assert_eq!(Value::Array(events), expected, "{} {variant}", case.name);
            assert_eq!(outcome.usage, Some(case.usage), "{}", case.name);
            assert_eq!(outcome.finish_reason.as_deref(), Some(case.finish));
            assert_eq!(outcome.output_text, case.text, "{}", case.name);
            assert_eq!(outcome.error, None);
        }
    }
}

#[test]
fn streams_translate_identically_in_any_piece_size() {
    let names = STREAMS
        .iter()
        .map(|c| c.name)
        .chain(["thinking_stream_magistral_medium", "error_mid_stream"]);
    for name in names {
        let input = fixture(&format!("{name}.stream.sse"));
        for include_usage in [true, false] {
            stream::run_all_splits(adapter(), &ctx(include_usage), &input, name);
        }
    }
}

#[test]
fn recorded_reasoning_stream_relays_only_answer_text_as_strings() {
    let input = fixture("thinking_stream_magistral_medium.stream.sse");
    // The answer, read straight from the recording: string contents and `text` chunks.
    let mut answer = String::new();
    for ev in parse_all(&input, input.len()) {
        if ev.data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        match &v["choices"][0]["delta"]["content"] {
            Value::String(s) => answer.push_str(s),
            Value::Array(parts) => parts
                .iter()
                .filter(|p| p["type"] == "text")
                .for_each(|p| answer.push_str(p["text"].as_str().unwrap())),
            _ => {}
        }
    }
    assert!(answer.starts_with("To cross the street safely"));

    let (_, events, outcome, finished) = run_stream(&input, input.len(), true);
    assert_eq!(finished, Ok(()));
    let mut relayed = String::new();
    for ev in &events[..events.len() - 2] {
        assert_eq!(ev["object"], "chat.completion.chunk");
        let content = &ev["choices"][0]["delta"]["content"];
        assert!(content.is_string(), "non-string content relayed: {ev}");
        relayed.push_str(content.as_str().unwrap());
    }
    assert_eq!(relayed, answer);
    assert_eq!(outcome.output_text, answer);
    assert_eq!(events[events.len() - 2]["choices"], Value::Array(vec![]));
    assert_eq!(events[events.len() - 2]["usage"]["completion_tokens"], 232);
    assert_eq!(events[events.len() - 1], "[DONE]");
    assert_eq!(outcome.usage, Some(Usage::new(10, 232)));
    assert_eq!(outcome.finish_reason.as_deref(), Some("stop"));
}

#[test]
fn done_without_a_trailing_newline_ends_the_stream() {
    // The recorded tool-call stream ends in `data: [DONE]` with no newline at all.
    let input = fixture("tool_call_stream_mistral_large.stream.sse");
    assert!(input.ends_with(b"data: [DONE]"));
    let mut t = adapter().stream_translator(&ctx(false));
    let mut out = BytesMut::new();
    t.push(&input, &mut out).unwrap();
    assert!(!t.is_done());
    assert_eq!(t.finish(&mut out), Ok(()));
    assert!(t.is_done());
    assert!(out.ends_with(b"data: [DONE]\n\n"));
}

#[test]
fn stream_without_done_is_truncated_and_emits_no_usage_chunk() {
    let input = fixture("text_stream_after_tool_mistral_large.stream.sse");
    let text = String::from_utf8(input).unwrap();
    let cut = text.find("data: [DONE]").unwrap();
    for piece in [1, 7, cut] {
        let (_, events, outcome, finished) = run_stream(&text.as_bytes()[..cut], piece, true);
        assert_eq!(finished, Err(AdapterError::Truncated));
        assert!(!events.contains(&Value::from("[DONE]")));
        assert!(events.iter().all(|e| e["choices"] != Value::Array(vec![])));
        // The usage rode on the last content chunk, so billing still has it.
        assert_eq!(outcome.usage, Some(Usage::new(105, 14)));
    }
}

#[test]
fn mid_stream_error_is_relayed_as_an_openai_error_frame() {
    let input = fixture("error_mid_stream.stream.sse");
    let (_, events, outcome, finished) = run_stream(&input, input.len(), true);
    assert_eq!(finished, Ok(()));
    assert_eq!(
        Value::Array(events),
        json_fixture("error_mid_stream.expected.json")
    );
    let err = outcome.error.unwrap();
    assert_eq!(err.status, 200);
    assert_eq!(err.kind, UpstreamErrorKind::Server);
    assert_eq!(err.message, "Service unavailable.");
    assert_eq!(outcome.output_text, "Bon");
}
