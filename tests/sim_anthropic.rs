//! The simulated Anthropic Messages API over real HTTP: bodies and streams against recorded
//! traffic, authentication and the version header, validation, every fault, tool use,
//! determinism, output caps, stop sequences, token counting and the model list.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::sim::{self, booking_schema, conforms, read_until_error, shape};
use tollgate::providers::sse::{parse_all, SseEvent};
use tollgate::providers::ProviderKind;
use tollgate::sim::{Fault, SimFleet, SimOptions, SimServer};
use tollgate::tokens::Encoding;

const KEY: &str = "sk-ant-test-0123456789abcdef";
const VERSION: &str = "2023-06-01";

fn fixture(name: &str) -> String {
    support::fixture_text("sim/anthropic", name)
}

fn fixture_json(name: &str) -> Value {
    support::fixture_json("sim/anthropic", name)
}

async fn server() -> SimServer {
    sim::start(ProviderKind::Anthropic, KEY).await
}

fn url(s: &SimServer) -> String {
    format!("{}/v1/messages", s.base_url())
}

fn request(s: &SimServer, body: &Value) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url(s))
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .json(body)
}

async fn post(s: &SimServer, body: &Value) -> reqwest::Response {
    request(s, body).send().await.unwrap()
}

async fn post_json(s: &SimServer, body: &Value) -> (u16, Value) {
    sim::status_and_json(post(s, body).await).await
}

async fn post_stream(s: &SimServer, body: &Value) -> Vec<SseEvent> {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let r = post(s, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let bytes = r.bytes().await.unwrap();
    parse_all(&bytes, bytes.len())
}

fn user(text: &str) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
           "messages": [{"role": "user", "content": text}]})
}

/// `(event name, data)` of every event; every event of the format is named.
fn named(events: &[SseEvent]) -> Vec<(String, Value)> {
    events
        .iter()
        .map(|e| {
            let name = e.event.clone().expect("every Anthropic event is named");
            let data: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(data["type"], name.as_str(), "data.type names the event");
            (name, data)
        })
        .collect()
}

/// Event names with consecutive repeats collapsed (`content_block_delta`×N → one).
fn sequence(events: &[(String, Value)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (name, _) in events {
        if out.last() != Some(name) {
            out.push(name.clone());
        }
    }
    out
}

/// The shape of the first event of each kind, keyed by event name and block / delta type.
fn event_shapes(events: &[(String, Value)]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (name, data) in events {
        let sub = data
            .pointer("/content_block/type")
            .or_else(|| data.pointer("/delta/type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        out.entry(format!("{name}/{sub}"))
            .or_insert_with(|| shape(data));
    }
    out
}

fn streamed_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
        .collect()
}

fn message_text(body: &Value) -> String {
    body["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect()
}

fn recorded_events(name: &str) -> Vec<(String, Value)> {
    let text = fixture(name);
    named(&parse_all(text.as_bytes(), text.len()))
}

#[tokio::test]
async fn non_stream_text_matches_the_recorded_shape_and_counts_usage() {
    let s = server().await;
    let req = fixture_json("text_nonstream_claude3opus.request.json");
    let r = post(&s, &req).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers()["request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_011C"));
    for h in [
        "anthropic-ratelimit-requests-limit",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-input-tokens-remaining",
        "anthropic-ratelimit-output-tokens-limit",
        "anthropic-ratelimit-tokens-reset",
    ] {
        assert!(r.headers().contains_key(h), "{h}");
    }
    let body: Value = r.json().await.unwrap();
    // Exactly the newest recorded shape (usage with cache_creation and inference_geo).
    assert_eq!(
        shape(&body),
        shape(&fixture_json(
            "cache_usage_nonstream_sonnet45.response.json"
        ))
    );
    let recorded = fixture_json("text_nonstream_claude3opus.response.json");
    assert_eq!(shape(&body["content"]), shape(&recorded["content"]));
    assert!(body["id"].as_str().unwrap().starts_with("msg_01"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], recorded["model"]);
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(body["stop_sequence"].is_null());
    let usage = &body["usage"];
    // The recorded prompt was 20 tokens.
    assert_eq!(usage["input_tokens"], recorded["usage"]["input_tokens"]);
    assert_eq!(
        usage["output_tokens"],
        Encoding::Cl100k.count(&message_text(&body))
    );
    assert_eq!(usage["cache_creation_input_tokens"], 0);
    assert_eq!(usage["cache_read_input_tokens"], 0);
    assert_eq!(usage["service_tier"], "standard");
}

#[tokio::test]
async fn stream_matches_the_recorded_event_sequence_and_keys() {
    let s = server().await;
    let req = fixture_json("text_stream_sonnet45_single_delta.request.json");
    let ours = named(&post_stream(&s, &req).await);
    let recorded = recorded_events("text_stream_sonnet45_single_delta.stream.sse");
    assert_eq!(sequence(&ours), sequence(&recorded));
    assert_eq!(event_shapes(&ours), event_shapes(&recorded));
    assert!(
        ours.iter()
            .filter(|(n, _)| n == "content_block_delta")
            .count()
            >= 3
    );
    let start = &ours[0].1["message"];
    assert_eq!(start["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(start["usage"]["input_tokens"], 20);
    assert_eq!(start["usage"]["output_tokens"], 1);
    let (_, delta) = &ours[ours.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["input_tokens"], 20);
    assert_eq!(
        delta["usage"]["output_tokens"],
        Encoding::Cl100k.count(&streamed_text(&ours))
    );
    assert_eq!(ours.last().unwrap().0, "message_stop");
}

#[tokio::test]
async fn stream_bytes_are_named_events_padded_like_the_api() {
    let s = server().await;
    let mut req = user("Tell me about harbors.");
    req["stream"] = json!(true);
    let text = post(&s, &req).await.text().await.unwrap();
    assert!(text.starts_with("event: message_start\ndata: {"));
    assert!(text.contains("event: ping\ndata: {\"type\": \"ping\"}\n\n"));
    assert!(text.ends_with("\n\n"));
    assert!(!text.contains("[DONE]"));
    // Runs of spaces before the closing brace, as in recent recordings.
    assert!(text.contains(" }\n"));
    for frame in text.split_terminator("\n\n") {
        let lines: Vec<&str> = frame.lines().collect();
        assert_eq!(lines.len(), 2, "{frame:?}");
        assert!(lines[0].starts_with("event: "));
        assert!(lines[1].starts_with("data: {"));
    }
}

#[tokio::test]
async fn stream_after_a_tool_result_matches_the_recorded_turn() {
    let s = server().await;
    let req = fixture_json("text_stream_sonnet46_after_tool_result.request.json");
    let ours = named(&post_stream(&s, &req).await);
    let recorded = recorded_events("text_stream_sonnet46_after_tool_result.stream.sse");
    assert_eq!(sequence(&ours), sequence(&recorded));
    assert_eq!(ours[0].1["message"]["model"], "claude-sonnet-4-6");
    assert!(!streamed_text(&ours).is_empty());
    assert_eq!(ours[ours.len() - 2].1["delta"]["stop_reason"], "end_turn");
}

fn weather_tool() -> Value {
    json!({"name": "get_weather", "description": "Current weather at a place",
           "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                            "required": ["location"]}})
}

#[tokio::test]
async fn auto_tool_use_stream_matches_the_sdk_fixture() {
    let s = server().await;
    let mut req = user("What's the weather like in Paris today?");
    req["tools"] = json!([weather_tool()]);
    let ours = named(&post_stream(&s, &req).await);
    let recorded = recorded_events("tool_use_stream_sdk_fixture_sonnet4.stream.sse");
    assert_eq!(sequence(&ours), sequence(&recorded));
    let ours_shapes = event_shapes(&ours);
    let recorded_shapes = event_shapes(&recorded);
    for key in [
        "content_block_start/text",
        "content_block_start/tool_use",
        "content_block_delta/text_delta",
        "content_block_delta/input_json_delta",
        "content_block_stop/",
        "message_stop/",
    ] {
        assert_eq!(ours_shapes[key], recorded_shapes[key], "{key}");
    }
    let tool_start = ours
        .iter()
        .find(|(_, d)| d.pointer("/content_block/type") == Some(&json!("tool_use")))
        .unwrap();
    assert_eq!(tool_start.1["index"], 1);
    assert_eq!(tool_start.1["content_block"]["name"], "get_weather");
    assert!(tool_start.1["content_block"]["id"]
        .as_str()
        .unwrap()
        .starts_with("toolu_01"));
    let fragments: Vec<&str> = ours
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Value::as_str))
        .collect();
    assert_eq!(fragments[0], "", "the first fragment is empty");
    assert!(fragments.len() >= 3);
    let input: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(input, json!({"location": "Paris"}));
    assert!(ours
        .iter()
        .filter(|(n, _)| n.starts_with("content_block"))
        .all(|(_, d)| d["index"] == 0 || d["index"] == 1));
    assert_eq!(ours[ours.len() - 2].1["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn forced_any_tool_choice_matches_the_recorded_tool_use_reply() {
    let s = server().await;
    let req = fixture_json("tool_use_nonstream_single_sonnet45.request.json");
    let (status, body) = post_json(&s, &req).await;
    assert_eq!(status, 200);
    let recorded = fixture_json("tool_use_nonstream_single_sonnet45.response.json");
    assert_eq!(shape(&body["content"]), shape(&recorded["content"]));
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let mut ours_keys = keys(&body);
    let mut recorded_keys = keys(&recorded);
    ours_keys.sort();
    recorded_keys.sort();
    assert_eq!(ours_keys, recorded_keys);
    // Like the recording: no text before a forced call, the tool the prompt points at.
    assert_eq!(body["content"].as_array().unwrap().len(), 1);
    assert_eq!(body["content"][0]["name"], "get_user_country");
    assert_eq!(body["content"][0]["input"], json!({}));
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["model"], recorded["model"]);
}

#[tokio::test]
async fn auto_tool_use_puts_text_before_the_call_like_the_recording() {
    let s = server().await;
    let mut req = fixture_json("tool_use_nonstream_parallel_haiku45.request.json");
    req["messages"][0]["content"][0]["text"] = json!("Use the tool to look up Alice.");
    let (status, body) = post_json(&s, &req).await;
    assert_eq!(status, 200);
    let recorded = fixture_json("tool_use_nonstream_parallel_haiku45.response.json");
    assert_eq!(shape(&body["content"][0]), shape(&recorded["content"][0]));
    assert_eq!(shape(&body["content"][1]), shape(&recorded["content"][1]));
    assert_eq!(body["content"][1]["name"], "retrieve_entity_info");
    assert_eq!(body["content"][1]["input"], json!({"name": "Alice"}));
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["model"], "claude-haiku-4-5-20251001");
    let text = body["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        body["usage"]["output_tokens"].as_u64().unwrap(),
        Encoding::Cl100k.count(text)
            + Encoding::Cl100k.count("retrieve_entity_info")
            + Encoding::Cl100k.count(&body["content"][1]["input"].to_string())
            + 3
    );
}

fn booking_tool() -> Value {
    json!({"name": "book_table", "description": "Book a table",
        "input_schema": booking_schema()})
}

#[tokio::test]
async fn forced_tool_input_satisfies_the_schema_streamed_or_not() {
    let s = server().await;
    let tool = booking_tool();
    let schema = tool["input_schema"].clone();
    for prompt in ["Dinner for the team", "Somewhere quiet", "A birthday party"] {
        let mut req = user(prompt);
        req["tools"] = json!([weather_tool(), tool]);
        req["tool_choice"] = json!({"type": "tool", "name": "book_table"});
        let (status, body) = post_json(&s, &req).await;
        assert_eq!(status, 200);
        let content = body["content"].as_array().unwrap();
        assert_eq!(content.len(), 1, "a forced call has no text before it");
        assert_eq!(content[0]["type"], "tool_use");
        assert_eq!(content[0]["name"], "book_table");
        conforms(&schema, &content[0]["input"], "input").unwrap();

        let events = named(&post_stream(&s, &req).await);
        let json: String = events
            .iter()
            .filter_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Value::as_str))
            .collect();
        let streamed: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(streamed, content[0]["input"]);
        assert_eq!(events[1].1["index"], 0);
    }
}

fn tool_conversation() -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
    "tools": [weather_tool()], "tool_choice": {"type": "any"},
    "messages": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01abc", "name": "get_weather", "input": {"location": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01abc", "content": [{"type": "text", "text": "18°C, sunny"}]}]}
    ]})
}

#[tokio::test]
async fn tool_result_follow_up_is_answered_with_text() {
    let s = server().await;
    let req = tool_conversation();
    let (status, body) = post_json(&s, &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"].as_array().unwrap().len(), 1);
    assert_eq!(body["content"][0]["type"], "text");
    assert!(!message_text(&body).is_empty());
    assert_eq!(body["stop_reason"], "end_turn");
    let events = named(&post_stream(&s, &req).await);
    assert_eq!(streamed_text(&events), message_text(&body));
}

#[tokio::test]
async fn streamed_and_non_streamed_answers_carry_the_same_text_and_tokens() {
    let s = server().await;
    let req = user("Describe a harbor at dawn.");
    let (_, whole) = post_json(&s, &req).await;
    let events = named(&post_stream(&s, &req).await);
    assert_eq!(message_text(&whole), streamed_text(&events));
    assert_eq!(
        whole["usage"]["output_tokens"],
        events[events.len() - 2].1["usage"]["output_tokens"]
    );
    assert_eq!(
        whole["usage"]["input_tokens"],
        events[0].1["message"]["usage"]["input_tokens"]
    );
}

#[tokio::test]
async fn identical_requests_get_identical_text_and_different_prompts_do_not() {
    let s = server().await;
    let (_, a) = post_json(&s, &user("Tell me about routing.")).await;
    let (_, b) = post_json(&s, &user("Tell me about routing.")).await;
    let (_, c) = post_json(&s, &user("Tell me about caching.")).await;
    assert_eq!(message_text(&a), message_text(&b));
    assert_ne!(message_text(&a), message_text(&c));
    assert_ne!(a["id"], b["id"]);
}

#[tokio::test]
async fn max_tokens_cap_ends_with_stop_reason_max_tokens() {
    let s = server().await;
    let mut req = user("Go on at length [[sim: words=200]]");
    req["max_tokens"] = json!(7);
    let (_, body) = post_json(&s, &req).await;
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["usage"]["output_tokens"], 7);
    let events = named(&post_stream(&s, &req).await);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 7);

    // A forced call cut short by the cap.
    let mut req = user("Book it");
    req["tools"] = json!([booking_tool()]);
    req["tool_choice"] = json!({"type": "any"});
    req["max_tokens"] = json!(5);
    let (_, body) = post_json(&s, &req).await;
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["usage"]["output_tokens"], 5);
}

#[tokio::test]
async fn stop_sequence_cuts_the_text_and_is_reported() {
    let s = server().await;
    let req = user("Tell me a long story [[sim: words=60]]");
    let (_, whole) = post_json(&s, &req).await;
    let text = message_text(&whole);
    let word = text.split(' ').nth(20).unwrap().trim_matches(['.', ',']);
    let stop = format!(" {word}");
    let mut req = req.clone();
    req["stop_sequences"] = json!(["NEVER-THERE", stop]);
    let (_, body) = post_json(&s, &req).await;
    assert_eq!(body["stop_reason"], "stop_sequence");
    assert_eq!(body["stop_sequence"], stop.as_str());
    let cut = message_text(&body);
    assert_eq!(cut, &text[..text.find(&stop).unwrap()]);
    assert_eq!(body["usage"]["output_tokens"], Encoding::Cl100k.count(&cut));
    let events = named(&post_stream(&s, &req).await);
    assert_eq!(streamed_text(&events), cut);
    assert_eq!(
        events[events.len() - 2].1["delta"]["stop_sequence"],
        stop.as_str()
    );
}

#[tokio::test]
async fn words_directive_in_a_text_block_sets_the_output_length() {
    let s = server().await;
    let req = json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "[[sim: words=13]]"}]}]});
    let (_, body) = post_json(&s, &req).await;
    assert_eq!(message_text(&body).split_whitespace().count(), 13);
}

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/json");
    let rid = r.headers()["request-id"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], rid.as_str(), "body and header agree");
    assert_eq!(body["type"], "error");
    (status, body)
}

#[tokio::test]
async fn validation_errors_use_the_recorded_error_body() {
    let s = server().await;
    let recorded = fixture_json("error_400_invalid_request_effort.response.json");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}),
            "max_tokens: Field required",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "temperature": 1.5,
                   "messages": [{"role": "user", "content": "hi"}]}),
            "temperature: Input should be less than or equal to 1",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "n": 2,
                   "messages": [{"role": "user", "content": "hi"}]}),
            "n: Extra inputs are not permitted",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10,
                   "messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}),
            "messages: first message must use the \"user\" role",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10,
                   "messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "x"}]}),
            "messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role.",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10,
                   "messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]}),
            "messages.1.role: Input should be 'user' or 'assistant'",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "system": 5,
                   "messages": [{"role": "user", "content": "x"}]}),
            "system: Input should be a valid string",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10,
                   "tools": [{"name": "f", "parameters": {"type": "object"}}],
                   "messages": [{"role": "user", "content": "x"}]}),
            "tools.0.custom.parameters: Extra inputs are not permitted",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}),
            "messages.0.content.0: Input tag 'image_url' found using 'type' does not match",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [
                {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AAAA"}}]}]}),
            "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
                {"role": "user", "content": "never mind"}]}),
            "messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1.",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}]}),
            "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_9.",
        ),
        (
            json!({"model": "claude-haiku-4-5", "max_tokens": 999999,
                   "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens: 999999 > 64000, which is the maximum allowed number of output tokens for claude-haiku-4-5-20251001",
        ),
    ];
    for (body, message) in cases {
        let (status, err) = error_of(post(&s, &body).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(shape(&err), shape(&recorded));
        assert_eq!(err["error"]["type"], "invalid_request_error");
        let got = err["error"]["message"].as_str().unwrap();
        assert!(got.starts_with(message), "{got}");
    }

    let r = reqwest::Client::new()
        .post(url(&s))
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    let (status, err) = error_of(r).await;
    assert_eq!(status, 400);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("The request body is not valid JSON: "));
}

#[tokio::test]
async fn a_rejected_streaming_request_gets_a_json_body_not_sse() {
    let s = server().await;
    let body = json!({"model": "claude-sonnet-4-5", "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let (status, err) = error_of(post(&s, &body).await).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["message"], "max_tokens: Field required");

    let mut req = user("hi [[sim: status=529]]");
    req["stream"] = json!(true);
    let (status, err) = error_of(post(&s, &req).await).await;
    assert_eq!(status, 529);
    assert_eq!(err["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn unknown_model_is_the_recorded_not_found_error() {
    let s = server().await;
    let (status, err) =
        error_of(post(&s, &fixture_json("error_404_not_found_model.request.json")).await).await;
    let recorded = fixture_json("error_404_not_found_model.response.json");
    assert_eq!(status, 404);
    assert_eq!(shape(&err), shape(&recorded));
    assert_eq!(err["error"], recorded["error"]);
    // Newer Claude models not in the simulator's table are still served.
    let mut req = user("hi");
    req["model"] = json!("claude-sonnet-5-0");
    let (status, body) = post_json(&s, &req).await;
    assert_eq!(status, 200);
    assert_eq!(body["model"], "claude-sonnet-5-0");
}

#[tokio::test]
async fn credentials_and_the_version_header_are_required() {
    let s = server().await;
    let client = reqwest::Client::new();
    let body = user("hi");
    let r = client
        .post(url(&s))
        .header("anthropic-version", VERSION)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, err) = error_of(r).await;
    assert_eq!(status, 401);
    assert_eq!(
        err["error"],
        json!({"type": "authentication_error", "message": "x-api-key header is required"})
    );

    // The official SDK 2.x sends the key as a bearer token, with its newer API version.
    let r = client
        .post(url(&s))
        .bearer_auth(KEY)
        .header("anthropic-version", "2026-10-21")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(url(&s))
        .bearer_auth("sk-ant-wrong")
        .header("anthropic-version", VERSION)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = client
        .post(url(&s))
        .header("x-api-key", "sk-ant-wrong")
        .header("anthropic-version", VERSION)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, err) = error_of(r).await;
    assert_eq!(status, 401);
    assert_eq!(
        err["error"],
        json!({"type": "authentication_error", "message": "invalid x-api-key"})
    );

    let r = client
        .post(url(&s))
        .header("x-api-key", KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, err) = error_of(r).await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"],
        json!({"type": "invalid_request_error", "message": "anthropic-version: header is required"})
    );

    let r = client
        .post(url(&s))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2024-10-22")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Without a configured key, any non-empty key is accepted.
    let open = SimServer::start(ProviderKind::Anthropic, SimOptions::default())
        .await
        .unwrap();
    let r = client
        .post(url(&open))
        .header("x-api-key", "anything")
        .header("anthropic-version", VERSION)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn status_faults_use_the_anthropic_error_type_of_each_status() {
    let s = server().await;
    let recorded = fixture_json("error_404_not_found_model.response.json");
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ] {
        s.push_fault(Fault::Status {
            status,
            retry_after_secs: None,
        });
        let r = post(&s, &user("hi")).await;
        let retry_after = r.headers().get("retry-after").cloned();
        let remaining = r
            .headers()
            .get("anthropic-ratelimit-requests-remaining")
            .cloned();
        let (got, err) = error_of(r).await;
        assert_eq!(got, status);
        assert_eq!(shape(&err), shape(&recorded), "{status}");
        assert_eq!(err["error"]["type"], kind, "{status}");
        if status == 429 {
            assert!(retry_after.is_some(), "429 always says when to retry");
            assert_eq!(remaining.unwrap(), "0");
        } else {
            assert!(retry_after.is_none(), "{status}");
        }
    }
    s.push_fault(Fault::Status {
        status: 529,
        retry_after_secs: Some(7),
    });
    let r = post(&s, &user("hi")).await;
    assert_eq!(r.headers()["retry-after"], "7");
    let (_, err) = error_of(r).await;
    assert_eq!(
        err["error"],
        json!({"type": "overloaded_error", "message": "Overloaded"})
    );
    s.push_fault(Fault::Status {
        status: 404,
        retry_after_secs: None,
    });
    let (_, err) = error_of(post(&s, &user("hi")).await).await;
    assert_eq!(err["error"]["message"], "model: claude-sonnet-4-5");
    assert_eq!(post(&s, &user("hi")).await.status(), 200);
}

#[tokio::test]
async fn stream_error_after_sends_an_overloaded_error_event_and_closes() {
    let s = server().await;
    let mut req = user("hi [[sim: words=30 stream_error_after=3]]");
    req["stream"] = json!(true);
    let r = post(&s, &req).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events = parse_all(text.as_bytes(), text.len());
    assert_eq!(events.len(), 4);
    let last = events.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("error"));
    let data: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(
        data,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    assert!(!text.contains("message_stop"));
}

#[tokio::test]
async fn truncate_and_reset_end_the_stream_without_message_stop() {
    let s = server().await;
    let mut req = user("hi [[sim: words=40 truncate_after=4]]");
    req["stream"] = json!(true);
    let text = post(&s, &req).await.text().await.unwrap();
    let events = named(&parse_all(text.as_bytes(), text.len()));
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|(n, _)| n != "message_stop"));

    let mut req = user("hi [[sim: words=40 reset_after=3]]");
    req["stream"] = json!(true);
    let (received, failed) = read_until_error(post(&s, &req).await).await;
    assert!(failed, "the client must see the reset");
    assert_eq!(parse_all(&received, received.len()).len(), 3);
}

#[tokio::test]
async fn malformed_delay_and_hang_faults() {
    let s = server().await;
    let r = post(&s, &user("hi [[sim: malformed]]")).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err());

    let mut req = user("hi [[sim: malformed words=10]]");
    req["stream"] = json!(true);
    let text = post(&s, &req).await.text().await.unwrap();
    let events = parse_all(text.as_bytes(), text.len());
    let bad = events
        .iter()
        .filter(|e| serde_json::from_str::<Value>(&e.data).is_err())
        .count();
    assert_eq!(bad, 1);
    assert_eq!(
        events.last().unwrap().event.as_deref(),
        Some("message_stop")
    );

    let start = Instant::now();
    assert_eq!(
        post(&s, &user("hi [[sim: delay_ms=250]]")).await.status(),
        200
    );
    assert!(start.elapsed() >= Duration::from_millis(250));

    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .post(url(&s))
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .json(&user("[[sim: hang]]"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
}

#[tokio::test]
async fn header_fault_and_chunk_delay_apply_to_streams() {
    let s = server().await;
    let mut req = user("hi [[sim: words=4]]");
    req["stream"] = json!(true);
    let start = Instant::now();
    let r = request(&s, &req)
        .header("x-sim-fault", "chunk_delay_ms=30")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let n = parse_all(text.as_bytes(), text.len()).len() as u64;
    assert!(n >= 8);
    assert!(start.elapsed() >= Duration::from_millis(30 * (n - 1)));
}

#[tokio::test]
async fn count_tokens_matches_the_messages_usage() {
    let s = server().await;
    let client = reqwest::Client::new();
    let count = |body: Value| {
        let client = client.clone();
        let url = format!("{}/v1/messages/count_tokens", s.base_url());
        async move {
            let r = client
                .post(url)
                .header("x-api-key", KEY)
                .header("anthropic-version", VERSION)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let mut req = fixture_json("text_nonstream_claude3opus.request.json");
    let (_, answer) = post_json(&s, &req).await;
    let obj = req.as_object_mut().unwrap();
    obj.remove("max_tokens");
    obj.remove("stream");
    let (status, counted) = count(req.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        counted,
        json!({"input_tokens": answer["usage"]["input_tokens"]})
    );
    assert_eq!(counted["input_tokens"], 20, "the recorded count");

    // Prompts with tools come within 15% of the recorded counts.
    for name in [
        "tool_use_nonstream_single_sonnet45",
        "tool_use_nonstream_parallel_haiku45",
    ] {
        let mut req = fixture_json(&format!("{name}.request.json"));
        let recorded = fixture_json(&format!("{name}.response.json"))["usage"]["input_tokens"]
            .as_f64()
            .unwrap();
        let obj = req.as_object_mut().unwrap();
        obj.remove("max_tokens");
        obj.remove("stream");
        let (_, counted) = count(req).await;
        let ours = counted["input_tokens"].as_f64().unwrap();
        assert!(
            (ours / recorded - 1.0).abs() < 0.15,
            "{name}: {ours} vs {recorded}"
        );
    }

    let mut with_max = req.clone();
    with_max["max_tokens"] = json!(10);
    let (status, err) = count(with_max).await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["message"],
        "max_tokens: Extra inputs are not permitted"
    );
}

#[tokio::test]
async fn models_are_listed_in_anthropic_shape() {
    let s = server().await;
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(format!("{}{path}", s.base_url()))
            .header("x-api-key", KEY)
            .header("anthropic-version", VERSION)
            .send()
    };
    let body: Value = get("/v1/models").await.unwrap().json().await.unwrap();
    assert_eq!(
        shape(&body["data"][0]),
        json!({"type": "string", "id": "string", "display_name": "string", "created_at": "string"})
    );
    assert_eq!(body["has_more"], false);
    assert_eq!(body["first_id"], body["data"][0]["id"]);
    let one: Value = get("/v1/models/claude-sonnet-4-5")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], "claude-sonnet-4-5-20250929");
    let r = get("/v1/models/gpt-4o").await.unwrap();
    assert_eq!(r.status(), 404);
    let r = get("/v1/nothing").await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn prompt_cache_reports_cache_reads_for_cache_control_requests() {
    let opts = SimOptions {
        prompt_cache: true,
        ..Default::default()
    };
    let s = SimServer::start(ProviderKind::Anthropic, opts)
        .await
        .unwrap();
    let long = "Entry: shelf, aisle, volume, subject heading. ".repeat(150);
    let mut req = user(&long);
    req["cache_control"] = json!({"type": "ephemeral"});
    let (_, first) = post_json(&s, &req).await;
    let (_, second) = post_json(&s, &req).await;
    let total = first["usage"]["input_tokens"].as_u64().unwrap();
    assert_eq!(first["usage"]["cache_read_input_tokens"], 0);
    let read = second["usage"]["cache_read_input_tokens"].as_u64().unwrap();
    assert!(read > 0);
    assert_eq!(
        second["usage"]["input_tokens"].as_u64().unwrap() + read,
        total
    );

    // Without cache_control nothing is cached.
    let plain = user(&long);
    post_json(&s, &plain).await;
    let (_, again) = post_json(&s, &plain).await;
    assert_eq!(again["usage"]["cache_read_input_tokens"], 0);
}

#[tokio::test]
async fn fleet_serves_the_simulated_anthropic() {
    let fleet = SimFleet::spawn(SimOptions::default()).unwrap();
    let base = fleet.base_url(ProviderKind::Anthropic).unwrap();
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", "demo")
        .header("anthropic-version", VERSION)
        .json(&user("hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        fleet
            .server(ProviderKind::Anthropic)
            .unwrap()
            .request_count(),
        1
    );
}
