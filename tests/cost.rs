//! Cost golden tests: recorded provider traffic read by each provider's adapter and priced
//! at the shipped `routes.toml` prices.
//!
//! Every expected cost is worked out by hand in a comment. A price of $P per 1M tokens is
//! P × 1,000 nano-dollars (n$) per token, so n tokens cost n × P × 1,000 n$. Cortex prices
//! are credits × `dollars_per_credit` ($2.00). Fixtures and their provenance are described
//! in the README of each `tests/fixtures/<provider>/` directory.

mod support;

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;
use support::adapter as stream;
use tiktoken_rs::CoreBPE;
use tollgate::api::ChatRequest;
use tollgate::billing::{billable_usage, Finished};
use tollgate::config::{Config, ModelConfig};
use tollgate::pricing::cost_nanos;
use tollgate::providers::{adapter_for, ResponseContext, StreamOutcome};
use tollgate::tokens::{count_prompt, Encoding};
use tollgate::usage::Usage;

/// The shipped `routes.toml`, loaded once.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("routes.toml"))
            .expect("the shipped routes.toml is valid")
    })
}

fn model(name: &str) -> &'static ModelConfig {
    &config().models[name]
}

/// What `usage` costs at the shipped price of `model_name`.
fn cost(model_name: &str, usage: &Usage) -> u64 {
    cost_nanos(&model(model_name).price, usage)
}

/// `tests/fixtures/<provider of m>/<name>`.
fn fixture(m: &ModelConfig, name: &str) -> Vec<u8> {
    support::fixture_bytes(m.kind.as_str(), name)
}

fn ctx(include_usage: bool) -> ResponseContext {
    stream::ctx(
        "chatcmpl-cost",
        1_700_000_000,
        "client-model",
        include_usage,
    )
}

/// The usage `model_name`'s adapter reads from a recorded non-stream response body.
fn reply_usage(model_name: &str, name: &str) -> Usage {
    let m = model(model_name);
    let t = adapter_for(m.kind)
        .parse_response(&fixture(m, name), &ctx(false))
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    t.usage.unwrap_or_else(|| panic!("{name}: no usage"))
}

/// A recorded stream fed whole through `model_name`'s stream translator, which must end
/// cleanly: the client-visible frames and the outcome.
fn streamed(model_name: &str, name: &str, include_usage: bool) -> (Vec<Value>, StreamOutcome) {
    let m = model(model_name);
    let input = fixture(m, name);
    let run = stream::run(
        adapter_for(m.kind),
        &ctx(include_usage),
        &input,
        input.len(),
    );
    assert_eq!(run.finish, Ok(()), "{name}");
    (run.frames(), run.outcome)
}

/// The usage reported at the end of a recorded stream (the client did not ask for it).
fn stream_usage(model_name: &str, name: &str) -> Usage {
    let (_, outcome) = streamed(model_name, name, false);
    outcome.usage.unwrap_or_else(|| panic!("{name}: no usage"))
}

/// Only the first `events` events of a recorded stream, then the end of the body. Returns
/// the text the client was sent and the outcome.
fn cut(model_name: &str, name: &str, events: usize) -> (String, StreamOutcome) {
    let m = model(model_name);
    let input = fixture(m, name);
    let end = input
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == b"\n\n")
        .nth(events - 1)
        .map(|(i, _)| i + 2)
        .unwrap_or_else(|| panic!("{name} has fewer than {events} events"));
    let run = stream::run(adapter_for(m.kind), &ctx(true), &input[..end], end);
    (emitted_text(&run.frames()), run.outcome)
}

/// The content deltas of the client-visible frames, joined.
fn emitted_text(frames: &[Value]) -> String {
    frames
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// The usage billing settles for a stream served by `model_name` that ended with
/// `outcome`. `prompt_tokens`, counted before sending, matters only when the provider
/// reported no usage.
fn billed(model_name: &str, outcome: &StreamOutcome, prompt_tokens: u64) -> Usage {
    let config = config();
    let m = model(model_name);
    billable_usage(&Finished {
        request_id: "req-cost",
        started_ms: 0,
        budget: config.budgets.get("demo").expect("shipped demo budget"),
        key_id: None,
        requested_model: model_name,
        tier: None,
        route_reason: "requested",
        served: Some(m),
        provider: Some(&m.provider),
        attempts: "",
        attempt_count: 1,
        usage: outcome.usage,
        prompt_tokens,
        output_text: &outcome.output_text,
        latency_ms: 0,
        ttft_ms: None,
        status: 200,
        error_code: None,
        streamed: true,
        price_version: &config.version,
    })
}

/// `u` marked as counted by tollgate rather than reported.
fn estimated(u: Usage) -> Usage {
    Usage {
        estimated: true,
        ..u
    }
}

/// Tokens of `text`, counted with tiktoken directly.
fn tiktoken(bpe: CoreBPE, text: &str) -> u64 {
    bpe.encode_ordinary(text).len() as u64
}

fn cl100k() -> CoreBPE {
    tiktoken_rs::cl100k_base().unwrap()
}

fn o200k() -> CoreBPE {
    tiktoken_rs::o200k_base().unwrap()
}

// ---------------------------------------------------------------------------------------
// OpenAI. gpt-4o: $2.50 in, $10.00 out, $1.25 cached in = 2,500 / 10,000 / 1,250 n$ per
// token. gpt-4o-mini: $0.15 / $0.60 = 150 / 600 n$ per token.

#[test]
fn openai_reply_is_billed_from_its_reported_usage() {
    let u = reply_usage("gpt-4o", "text_nonstream_gpt4o.response.json");
    assert_eq!(u, Usage::new(24, 8));
    // 24 × 2,500 + 8 × 10,000 = 60,000 + 80,000
    assert_eq!(cost("gpt-4o", &u), 140_000);
}

#[test]
fn openai_cached_prompt_tokens_are_billed_at_the_cached_rate() {
    // Recorded from gpt-5.6-sol, which the shipped routes do not price; gpt-4o's rates
    // stand in. prompt_tokens 4020, of which prompt_tokens_details.cached_tokens 4012.
    let u = reply_usage("gpt-4o", "cached_tokens_usage_nonstream.response.json");
    assert_eq!(
        u,
        Usage {
            cached_input_tokens: 4012,
            ..Usage::new(4020, 4)
        }
    );
    // (4020 − 4012) × 2,500 + 4012 × 1,250 + 4 × 10,000 = 20,000 + 5,015,000 + 40,000
    assert_eq!(cost("gpt-4o", &u), 5_075_000);
}

#[test]
fn openai_stream_is_billed_from_its_usage_chunk() {
    let u = stream_usage("gpt-4o", "text_stream_include_usage_gpt4o.stream.sse");
    assert_eq!(u, Usage::new(14, 8));
    // 14 × 2,500 + 8 × 10,000 = 35,000 + 80,000
    assert_eq!(cost("gpt-4o", &u), 115_000);

    let name = "tool_calls_stream_include_usage_gpt4omini.stream.sse";
    let u = stream_usage("gpt-4o-mini", name);
    assert_eq!(u, Usage::new(53, 15));
    // 53 × 150 + 15 × 600 = 7,950 + 9,000
    assert_eq!(cost("gpt-4o-mini", &u), 16_950);
}

#[test]
fn openai_stream_is_billed_even_when_the_client_did_not_ask_for_usage() {
    // OpenAI sends the usage chunk only with `stream_options.include_usage`. A client
    // request without it still goes upstream asking for it...
    let m = model("gpt-4o");
    let mut request: Value =
        serde_json::from_slice(&fixture(m, "text_stream_include_usage_gpt4o.request.json"))
            .unwrap();
    request.as_object_mut().unwrap().remove("stream_options");
    let wire = stream::chat_completions_wire_body(
        adapter_for(m.kind),
        &serde_json::to_vec(&request).unwrap(),
        &m.upstream,
    );
    assert_eq!(wire["stream_options"]["include_usage"], true);
    // ...so the recorded answer carries usage, which is billed but not relayed.
    let (frames, outcome) = streamed(
        "gpt-4o",
        "text_stream_include_usage_gpt4o.stream.sse",
        false,
    );
    assert!(frames
        .iter()
        .all(|f| f.get("usage").is_none_or(Value::is_null)));
    let u = billed("gpt-4o", &outcome, 0);
    assert_eq!(u, Usage::new(14, 8));
    // 14 × 2,500 + 8 × 10,000 = 35,000 + 80,000
    assert_eq!(cost("gpt-4o", &u), 115_000);
}

#[test]
fn openai_stream_cut_before_its_usage_chunk_is_billed_on_counted_tokens() {
    let m = model("gpt-4o");
    // Role chunk, "The", " capital", " of", " Mexico".
    let (text, outcome) = cut("gpt-4o", "text_stream_include_usage_gpt4o.stream.sse", 5);
    assert_eq!(text, "The capital of Mexico");
    assert_eq!(outcome.usage, None);
    // The prompt as counted before sending matches the 14 OpenAI reported for it.
    let request: ChatRequest =
        serde_json::from_slice(&fixture(m, "text_stream_include_usage_gpt4o.request.json"))
            .unwrap();
    let prompt = count_prompt(Encoding::for_model(&m.upstream), &request);
    assert_eq!(prompt, 14);

    let u = billed("gpt-4o", &outcome, prompt);
    assert_eq!(u.output_tokens, tiktoken(o200k(), &text));
    assert_eq!(u, estimated(Usage::new(14, 4)));
    // 14 × 2,500 + 4 × 10,000 = 35,000 + 40,000
    assert_eq!(cost("gpt-4o", &u), 75_000);
}

// ---------------------------------------------------------------------------------------
// Anthropic. claude-sonnet: $3.00 in, $15.00 out, $0.30 cache read, $3.75 cache write =
// 3,000 / 15,000 / 300 / 3,750 n$ per token. claude-haiku: $1.00 / $5.00 = 1,000 / 5,000.
// Sonnet 4.6 recordings are priced at claude-sonnet (4.5): the list prices are the same.

#[test]
fn anthropic_reply_is_billed_from_its_reported_usage() {
    let name = "recorded/tool_use_nonstream_single_sonnet45.response.json";
    let u = reply_usage("claude-sonnet", name);
    assert_eq!(u, Usage::new(445, 23));
    // 445 × 3,000 + 23 × 15,000 = 1,335,000 + 345,000
    assert_eq!(cost("claude-sonnet", &u), 1_680_000);

    let name = "recorded/tool_use_nonstream_parallel_haiku45.response.json";
    let u = reply_usage("claude-haiku", name);
    assert_eq!(u, Usage::new(423, 202));
    // 423 × 1,000 + 202 × 5,000 = 423,000 + 1,010,000
    assert_eq!(cost("claude-haiku", &u), 1_433_000);
}

#[test]
fn anthropic_cache_reads_and_writes_are_billed_at_their_own_rates() {
    // input_tokens 3 (uncached), cache_creation_input_tokens 418, cache_read_input_tokens
    // 1111, output_tokens 33.
    let name = "recorded/cache_usage_nonstream_sonnet45.response.json";
    let u = reply_usage("claude-sonnet", name);
    assert_eq!(
        u,
        Usage {
            cached_input_tokens: 1111,
            cache_write_tokens: 418,
            ..Usage::new(3 + 418 + 1111, 33)
        }
    );
    // 3 × 3,000 + 418 × 3,750 + 1111 × 300 + 33 × 15,000
    //   = 9,000 + 1,567,500 + 333,300 + 495,000
    assert_eq!(cost("claude-sonnet", &u), 2_404_800);

    // A stream whose cache counts are only in message_start: input 5, write 200, read
    // 1000; message_delta's output_tokens 12.
    let u = stream_usage("claude-sonnet", "handwritten/cache_write_stream.stream.sse");
    assert_eq!(
        u,
        Usage {
            cached_input_tokens: 1000,
            cache_write_tokens: 200,
            ..Usage::new(5 + 200 + 1000, 12)
        }
    );
    // 5 × 3,000 + 200 × 3,750 + 1000 × 300 + 12 × 15,000
    //   = 15,000 + 750,000 + 300,000 + 180,000
    assert_eq!(cost("claude-sonnet", &u), 1_245_000);
}

#[test]
fn anthropic_stream_is_billed_from_the_cumulative_usage_of_message_delta() {
    // message_start: input 20, output 1 (placeholder); message_delta: input 20, output 5.
    // The delta's counts are totals, not increments: 5 output tokens, not 6.
    let name = "recorded/text_stream_sonnet45_single_delta.stream.sse";
    let u = stream_usage("claude-sonnet", name);
    assert_eq!(u, Usage::new(20, 5));
    // 20 × 3,000 + 5 × 15,000 = 60,000 + 75,000
    assert_eq!(cost("claude-sonnet", &u), 135_000);

    // A server tool ran mid-answer: message_start says input 702, message_delta's total
    // is input 1591, output 175.
    let name = "recorded/tool_use_stream_client_and_server_tools_sonnet46.stream.sse";
    let u = stream_usage("claude-sonnet", name);
    assert_eq!(u, Usage::new(1591, 175));
    // 1591 × 3,000 + 175 × 15,000 = 4,773,000 + 2,625,000
    assert_eq!(cost("claude-sonnet", &u), 7_398_000);
}

#[test]
fn anthropic_compaction_stream_is_billed_for_every_iteration() {
    // message_delta's top level describes only the last step (input 181, output 8); its
    // `iterations` list both: compaction (input 100, cache read 55096, output 83) and
    // message (input 181, output 8).
    let name = "recorded/cache_usage_stream_compaction_sonnet46.stream.sse";
    let u = stream_usage("claude-sonnet", name);
    assert_eq!(
        u,
        Usage {
            cached_input_tokens: 55_096,
            ..Usage::new(100 + 55_096 + 181, 83 + 8)
        }
    );
    // (100 + 181) × 3,000 + 55,096 × 300 + 91 × 15,000 = 843,000 + 16,528,800 + 1,365,000
    assert_eq!(cost("claude-sonnet", &u), 18_736_800);
}

#[test]
fn anthropic_stream_cut_before_message_delta_is_billed_on_counted_output() {
    // message_start (input 377, output 1), text block start, ping, "I", "'ll check the
    // current weather in Paris for you.". Sonnet 4 has Sonnet 4.5's list prices.
    let name = "recorded/tool_use_stream_sdk_fixture_sonnet4.stream.sse";
    let (text, outcome) = cut("claude-sonnet", name, 5);
    assert_eq!(text, "I'll check the current weather in Paris for you.");
    // message_start's input count is real; its output count is a placeholder, so the
    // relayed text is counted: "I", "'ll", " check", " the", " current", " weather", " in",
    // " Paris", " for", " you", "." is 11 cl100k tokens.
    let u = billed("claude-sonnet", &outcome, 0);
    assert_eq!(u.output_tokens, tiktoken(cl100k(), &text));
    assert_eq!(u, estimated(Usage::new(377, 11)));
    // 377 × 3,000 + 11 × 15,000 = 1,131,000 + 165,000
    assert_eq!(cost("claude-sonnet", &u), 1_296_000);
}

#[test]
fn anthropic_stream_cut_before_message_delta_keeps_cache_reads_at_the_cached_rate() {
    // message_start (input 100, cache read 55096, output 7), compaction block (start, ping,
    // delta, stop), text block start, "Hello!".
    let name = "recorded/cache_usage_stream_compaction_sonnet46.stream.sse";
    let (text, outcome) = cut("claude-sonnet", name, 7);
    assert_eq!(text, "Hello!");
    // "Hello", "!" is 2 cl100k tokens, below message_start's 7, which is the floor.
    assert_eq!(tiktoken(cl100k(), &text), 2);
    let u = billed("claude-sonnet", &outcome, 0);
    assert_eq!(
        u,
        estimated(Usage {
            cached_input_tokens: 55_096,
            ..Usage::new(100 + 55_096, 7)
        })
    );
    // 100 × 3,000 + 55,096 × 300 + 7 × 15,000 = 300,000 + 16,528,800 + 105,000
    assert_eq!(cost("claude-sonnet", &u), 16_933_800);
}

// ---------------------------------------------------------------------------------------
// Mistral. mistral-large: $0.50 in, $1.50 out = 500 / 1,500 n$ per token.

#[test]
fn mistral_reply_is_billed_from_its_reported_usage() {
    let u = reply_usage(
        "mistral-large",
        "text_nonstream_mistral_large.response.json",
    );
    assert_eq!(u, Usage::new(4, 36));
    // 4 × 500 + 36 × 1,500 = 2,000 + 54,000
    assert_eq!(cost("mistral-large", &u), 56_000);
}

#[test]
fn mistral_stream_is_billed_from_the_usage_on_its_last_chunk() {
    // Mistral puts usage on the last content chunk, not on a chunk of its own.
    let u = stream_usage(
        "mistral-large",
        "text_stream_after_tool_mistral_large.stream.sse",
    );
    assert_eq!(u, Usage::new(105, 14));
    // 105 × 500 + 14 × 1,500 = 52,500 + 21,000
    assert_eq!(cost("mistral-large", &u), 73_500);
}

#[test]
fn mistral_stream_cut_mid_way_is_billed_on_counted_tokens() {
    // Role chunk, "The", " installed version of LL".
    let name = "text_stream_after_tool_mistral_large.stream.sse";
    let (text, outcome) = cut("mistral-large", name, 3);
    assert_eq!(text, "The installed version of LL");
    assert_eq!(outcome.usage, None);
    // The prompt as counted before sending: the 105 Mistral reported for this request.
    let u = billed("mistral-large", &outcome, 105);
    assert_eq!(u.output_tokens, tiktoken(cl100k(), &text));
    // "The", " installed", " version", " of", " LL": 5 cl100k tokens.
    assert_eq!(u, estimated(Usage::new(105, 5)));
    // 105 × 500 + 5 × 1,500 = 52,500 + 7,500
    assert_eq!(cost("mistral-large", &u), 60_000);
}

// ---------------------------------------------------------------------------------------
// Cortex. cortex-llama3.1-70b: 1.21 credits × $2.00 = $2.42 in and out = 2,420 n$ per
// token. cortex-mistral-large2: 1.95 credits × $2.00 = $3.90 = 3,900 n$ per token; it
// stands in for the recordings' claude-sonnet-4-6, which the shipped routes do not price.

#[test]
fn cortex_reply_is_billed_with_guard_tokens_as_input() {
    // Native reply: prompt_tokens 30, guard_tokens 3, completion_tokens 12 (total 45).
    // Cortex Guard tokens are billed as input.
    let u = reply_usage("cortex-llama3.1-70b", "native_text_nonstream.response.json");
    assert_eq!(u, Usage::new(30 + 3, 12));
    // (33 + 12) × 2,420
    assert_eq!(cost("cortex-llama3.1-70b", &u), 108_900);

    // Recorded OpenAI-compatible reply: prompt_tokens 22, completion_tokens 5.
    let name = "chat_completions_text_nonstream.response.json";
    let u = reply_usage("cortex-mistral-large2", name);
    assert_eq!(u, Usage::new(22, 5));
    // (22 + 5) × 3,900
    assert_eq!(cost("cortex-mistral-large2", &u), 105_300);
}

#[test]
fn cortex_stream_is_billed_from_the_usage_on_its_last_event() {
    // Native: `usage: {}` on every event but the last (prompt 21, completion 4, guard 0).
    let u = stream_usage("cortex-llama3.1-70b", "native_text_stream.stream.sse");
    assert_eq!(u, Usage::new(21, 4));
    // (21 + 4) × 2,420
    assert_eq!(cost("cortex-llama3.1-70b", &u), 60_500);

    // Recorded OpenAI-compatible stream: a usage chunk before [DONE] (22 + 5).
    let name = "chat_completions_text_stream_include_usage.stream.sse";
    let u = stream_usage("cortex-mistral-large2", name);
    assert_eq!(u, Usage::new(22, 5));
    // (22 + 5) × 3,900
    assert_eq!(cost("cortex-mistral-large2", &u), 105_300);
}

#[test]
fn cortex_stream_cut_mid_way_is_billed_on_counted_tokens() {
    // "Snow", "flake", " Cortex" (the third event spread over five `data:` lines). A native
    // stream has no terminator, so nothing but the missing usage tells the cut.
    let (text, outcome) = cut("cortex-llama3.1-70b", "native_text_stream.stream.sse", 3);
    assert_eq!(text, "Snowflake Cortex");
    assert_eq!(outcome.usage, None);
    // The prompt as counted before sending: the 21 Cortex reported for this request.
    let u = billed("cortex-llama3.1-70b", &outcome, 21);
    assert_eq!(u.output_tokens, tiktoken(cl100k(), &text));
    // "Snow", "flake", " Cortex": 3 cl100k tokens.
    assert_eq!(u, estimated(Usage::new(21, 3)));
    // (21 + 3) × 2,420
    assert_eq!(cost("cortex-llama3.1-70b", &u), 58_080);
}
