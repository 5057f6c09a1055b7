//! Golden tests of the OpenAI adapter against recorded OpenAI traffic
//! (`tests/fixtures/openai/`, sources in its README).

mod support;

use std::time::Duration;

use bytes::BytesMut;
use http::HeaderMap;
use serde_json::Value;
use support::adapter as stream;
use tollgate::providers::{
    adapter_for, AdapterError, ProviderAdapter, ProviderKind, ResponseContext, UpstreamErrorKind,
};
use tollgate::usage::Usage;

fn fixture(name: &str) -> Vec<u8> {
    support::fixture_bytes("openai", name)
}

fn json_fixture(name: &str) -> Value {
    support::fixture_json("openai", name)
}

fn adapter() -> &'static dyn ProviderAdapter {
    adapter_for(ProviderKind::OpenAi)
}

fn ctx(include_usage: bool) -> ResponseContext {
    stream::ctx("chatcmpl-tollgate", 1_700_000_000, "gpt-4o", include_usage)
}

fn wire_body(request: &str, upstream_model: &str) -> Value {
    stream::chat_completions_wire_body(adapter(), &fixture(request), upstream_model)
}

/// Feeds `input` in `piece`-byte chunks; see [`stream::Run::into_parts`].
fn run_stream(input: &[u8], piece: usize, include_usage: bool) -> stream::Parts {
    stream::run(adapter(), &ctx(include_usage), input, piece).into_parts()
}

// ---------------------------------------------------------------------------------------
// Requests

#[test]
fn non_streaming_request_is_forwarded_with_the_upstream_model() {
    assert_eq!(
        wire_body("text_nonstream_gpt4o.request.json", "gpt-4o-2024-08-06"),
        json_fixture("text_nonstream_gpt4o.wire.expected.json")
    );
}

#[test]
fn tool_history_request_is_forwarded_unchanged_apart_from_the_model() {
    assert_eq!(
        wire_body(
            "text_stream_after_tool_gpt4omini.request.json",
            "gpt-4o-mini-2024-07-18"
        ),
        json_fixture("text_stream_after_tool_gpt4omini.wire.expected.json")
    );
}

#[test]
fn streaming_request_without_stream_options_gets_include_usage_and_keeps_unknown_fields() {
    assert_eq!(
        wire_body("stream_without_options.request.json", "gpt-4o-2024-08-06"),
        json_fixture("stream_without_options.wire.expected.json")
    );
}

#[test]
fn newer_content_part_fields_survive_forwarding() {
    // The recorded request carries `prompt_cache_breakpoint` inside content parts, a field
    // tollgate does not know: only the model may change.
    let mut expected = json_fixture("cached_tokens_usage_nonstream.request.json");
    expected["model"] = Value::from("gpt-5.6-sol-2026");
    assert_eq!(
        wire_body(
            "cached_tokens_usage_nonstream.request.json",
            "gpt-5.6-sol-2026"
        ),
        expected
    );
}

// ---------------------------------------------------------------------------------------
// Non-streaming responses

#[test]
fn responses_are_relayed_byte_for_byte_with_usage_and_finish_reason() {
    let cases = [
        (
            "text_nonstream_gpt4o.response.json",
            Usage::new(24, 8),
            "stop",
        ),
        (
            "tool_calls_nonstream_gpt4o.response.json",
            Usage::new(68, 12),
            "tool_calls",
        ),
        (
            "cached_tokens_usage_nonstream.response.json",
            Usage {
                cached_input_tokens: 4012,
                ..Usage::new(4020, 4)
            },
            "stop",
        ),
    ];
    for (name, usage, finish) in cases {
        let body = fixture(name);
        let t = adapter().parse_response(&body, &ctx(false)).unwrap();
        assert_eq!(&t.body[..], &body[..], "{name}");
        assert_eq!(t.usage, Some(usage), "{name}");
        assert_eq!(t.finish_reason.as_deref(), Some(finish), "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// Errors

#[test]
fn recorded_400_and_404_errors_are_classified() {
    let e = adapter().parse_error(
        400,
        &HeaderMap::new(),
        &fixture("error_400_unsupported_value_o1mini.response.json"),
    );
    assert_eq!(e.status, 400);
    assert_eq!(e.kind, UpstreamErrorKind::InvalidRequest);
    assert_eq!(
        e.message,
        "Unsupported value: 'messages[0].role' does not support 'system' with this model."
    );
    assert_eq!(e.code.as_deref(), Some("unsupported_value"));
    assert_eq!(e.param.as_deref(), Some("messages[0].role"));

    let e = adapter().parse_error(
        404,
        &HeaderMap::new(),
        &fixture("error_404_model_not_found.response.json"),
    );
    assert_eq!(e.kind, UpstreamErrorKind::NotFound);
    assert_eq!(e.code.as_deref(), Some("model_not_found"));
    assert_eq!(e.param, None);
    assert!(!e.kind.is_retryable());
}

#[test]
fn insufficient_quota_429_is_quota_exceeded_and_not_retryable() {
    let e = adapter().parse_error(
        429,
        &HeaderMap::new(),
        &fixture("error_429_insufficient_quota.response.json"),
    );
    assert_eq!(e.kind, UpstreamErrorKind::QuotaExceeded);
    assert!(!e.kind.is_retryable());
    assert_eq!(e.code.as_deref(), Some("insufficient_quota"));
}

#[test]
fn rate_limit_429_is_retryable_after_the_advertised_delay() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after-ms", "120".parse().unwrap());
    headers.insert("retry-after", "1".parse().unwrap());
    let e = adapter().parse_error(
        429,
        &headers,
        &fixture("error_429_rate_limit.response.json"),
    );
    assert_eq!(e.kind, UpstreamErrorKind::RateLimited);
    assert!(e.kind.is_retryable());
    assert_eq!(e.retry_after, Some(Duration::from_millis(120)));
    assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
}

#[test]
fn context_length_400_is_its_own_kind() {
    let e = adapter().parse_error(
        400,
        &HeaderMap::new(),
        &fixture("error_400_context_length.response.json"),
    );
    assert_eq!(e.kind, UpstreamErrorKind::ContextLength);
    assert_eq!(e.param.as_deref(), Some("messages"));
}

#[test]
fn html_502_from_a_load_balancer_gives_a_short_server_error() {
    let e = adapter().parse_error(
        502,
        &HeaderMap::new(),
        &fixture("error_502_bad_gateway.response.html"),
    );
    assert_eq!(e.kind, UpstreamErrorKind::Server);
    assert!(e.kind.is_retryable());
    assert_eq!(e.message, "upstream returned HTTP 502 Bad Gateway");
}

// ---------------------------------------------------------------------------------------
// Streams

struct StreamCase {
    name: &'static str,
    usage: Usage,
    finish: &'static str,
    text: &'static str,
}

const STREAMS: [StreamCase; 4] = [
    StreamCase {
        name: "text_stream_include_usage_gpt4o",
        usage: Usage {
            input_tokens: 14,
            output_tokens: 8,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            estimated: false,
        },
        finish: "stop",
        text: "The capital of Mexico is Mexico City.",
    },
    StreamCase {
        name: "text_stream_after_tool_gpt4omini",
        usage: Usage {
            input_tokens: 78,
            output_tokens: 9,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            estimated: false,
        },
        finish: "stop",
        text: "The capital of the UK is London.",
    },
    StreamCase {
        name: "tool_calls_stream_include_usage_gpt4omini",
        usage: Usage {
            input_tokens: 53,
            output_tokens: 15,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            estimated: false,
        },
        finish: "tool_calls",
        text: "{\"country\":\"UK\"}",
    },
    StreamCase {
        name: "parallel_tool_calls_stream_gpt4o",
        usage: Usage {
            input_tokens: 364,
            output_tokens: 40,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            estimated: false,
        },
        finish: "tool_calls",
        text: "{}{}",
    },
];

#[test]
fn streams_relay_the_usage_chunk_only_to_clients_that_asked() {
    for case in &STREAMS {
        let input = fixture(&format!("{}.stream.sse", case.name));
        for include_usage in [true, false] {
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
    for case in &STREAMS {
        let input = fixture(&format!("{}.stream.sse", case.name));
        for include_usage in [true, false] {
            // Every piece size must end like the whole run, which must end cleanly.
            let whole = stream::run_all_splits(adapter(), &ctx(include_usage), &input, case.name);
            assert_eq!(whole.finish, Ok(()));
        }
    }
}

#[test]
fn stream_without_done_is_truncated() {
    let input = fixture("text_stream_include_usage_gpt4o.stream.sse");
    let text = String::from_utf8(input).unwrap();
    let cut = text.find("data: [DONE]").unwrap();
    for piece in [1, 7, cut] {
        let (_, events, outcome, finished) = run_stream(&text.as_bytes()[..cut], piece, true);
        assert_eq!(finished, Err(AdapterError::Truncated));
        assert!(!events.contains(&Value::from("[DONE]")));
        // Usage arrived before the cut, so it is still known for billing.
        assert_eq!(outcome.usage, Some(Usage::new(14, 8)));
    }
}

#[test]
fn stream_cut_inside_an_event_is_truncated_without_relaying_the_fragment() {
    let input = fixture("text_stream_include_usage_gpt4o.stream.sse");
    let cut = input.len() / 2;
    let mut t = adapter().stream_translator(&ctx(false));
    let mut out = BytesMut::new();
    t.push(&input[..cut], &mut out).unwrap();
    let relayed = out.len();
    assert_eq!(t.finish(&mut out), Err(AdapterError::Truncated));
    assert_eq!(out.len(), relayed);
    assert!(!t.is_done());
}

#[test]
fn mid_stream_error_is_relayed_as_an_error_frame_and_ends_the_stream() {
    let input = fixture("error_mid_stream.stream.sse");
    let expected = json_fixture("error_mid_stream.expected.json");
    for piece in [1, 7, input.len()] {
        let (_, events, outcome, finished) = run_stream(&input, piece, false);
        assert_eq!(finished, Ok(()));
        assert_eq!(Value::Array(events), expected);
        let err = outcome.error.unwrap();
        assert_eq!(err.status, 200);
        assert_eq!(err.kind, UpstreamErrorKind::Server);
        assert_eq!(outcome.output_text, "Par");
        assert_eq!(outcome.usage, None);
    }
}
