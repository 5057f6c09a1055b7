//! Cross-provider conformance: the same OpenAI requests through the real gateway to each
//! simulated provider (OpenAI, Anthropic, Mistral, Snowflake Cortex) must give equivalent
//! OpenAI answers — the same keys and types in the same places, whatever the text — and
//! must reach each provider in that provider's own format.
//!
//! Every scenario runs against every provider whose capability list includes what the
//! scenario needs (see `conformance_support::TARGETS`); failures are reported per provider.
//! The last test drives the same four models with the official OpenAI Python SDK.

#[macro_use]
mod conformance_support;
mod support;

use std::sync::Arc;

use conformance_support::*;
use serde_json::{json, Value};
use support::python::{python_or_skip, run_check};
use tollgate::providers::ProviderKind;

conformance_tests! {
    text_completion_has_the_openai_shape: [Text] => text_completion,
    system_prompt_and_history_reach_the_provider_in_its_format: [Text] => conversation,
    forced_tool_call_and_tool_result_round_trip: [Tools] => tool_round_trip,
    tool_history_with_foreign_call_ids_is_accepted: [Tools] => foreign_tool_ids,
    streamed_text_has_the_openai_chunk_sequence: [Text] => streaming_text,
    streamed_tool_call_accumulates_to_valid_arguments: [StreamingTools] => streaming_tool_call,
    streamed_and_json_usage_agree: [Usage] => usage_agrees,
    provider_errors_map_to_openai_errors: [Errors] => error_classes,
    anthropic_overloaded_529_is_a_503: [Status529] => overloaded_529,
    mid_stream_provider_error_ends_the_stream_with_an_error_event: [Errors] => mid_stream_error,
    fallback_crosses_providers_until_one_answers: [Text] => cross_provider_fallback,
}

// ---- the equivalence rule itself ----

#[test]
fn shapes_ignore_values_lengths_and_openai_only_fields_but_not_keys_or_types() {
    let a = json!({"id": "x", "n": 1, "choices": [{"t": "a"}, {"t": "bb"}], "system_fingerprint": "fp"});
    let b = json!({"id": "yy", "n": 22, "choices": [{"t": "c"}]});
    assert_eq!(shape(&a), shape(&b));
    let mut diff = Vec::new();
    shape_diff(
        &shape(&a),
        &shape(&json!({"id": 3, "choices": []})),
        "",
        &mut diff,
    );
    assert_eq!(
        diff,
        [
            r#".choices: [{"t":"string"}] vs []"#,
            r#".id: "string" vs "integer""#,
            r#".n: "integer" vs (absent)"#,
        ]
    );
}

#[test]
fn nullable_fields_accept_null_and_absence_but_not_another_type() {
    let diff = |a: Value, b: Value| {
        let mut d = Vec::new();
        shape_diff(&shape(&a), &shape(&b), "", &mut d);
        d
    };
    assert!(diff(json!({"content": null}), json!({"content": "hi"})).is_empty());
    assert!(diff(json!({"code": "x"}), json!({})).is_empty());
    assert_eq!(
        diff(json!({"content": 1}), json!({"content": "hi"})),
        [r#".content: "integer" vs "string""#]
    );
    // Deltas merge: a key seen in any chunk counts, null gives way to a type.
    assert_eq!(
        shape(&json!([{"role": "assistant", "content": null}, {"content": "x"}])),
        json!([{"content": "string", "role": "string"}])
    );
}

// ---- 1. text ----

async fn text_completion(b: Arc<Bench>, t: Target) -> Vec<Specimen> {
    let resp = b
        .chat(&json!({"model": t.model, "messages": [user("Say hello")]}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-model"], t.model);
    assert_eq!(resp.headers()["x-tollgate-provider"], t.provider);
    let body: Value = resp.json().await.unwrap();
    check_completion(&body, "stop");
    check_upstream_auth(&b, t);
    vec![specimen("completion", body)]
}

// ---- 2. conversation and system prompt ----

const SYSTEM: &str = "You are a terse assistant for the Zephyr project.";

async fn conversation(b: Arc<Bench>, t: Target) -> Vec<Specimen> {
    let body = b
        .chat_ok(&json!({
            "model": t.model,
            "messages": [
                {"role": "system", "content": SYSTEM},
                user("My name is Ada."),
                {"role": "assistant", "content": "Nice to meet you, Ada."},
                user("What is my name?"),
            ]
        }))
        .await;
    check_completion(&body, "stop");

    let wire = b.last_wire_request(t.kind);
    let (system, turns) = wire_conversation(t.kind, &wire);
    assert_eq!(
        system.as_deref(),
        Some(SYSTEM),
        "{}: system prompt in the provider's place: {wire}",
        t.provider
    );
    assert_eq!(
        turns,
        [
            ("user".to_string(), "My name is Ada.".to_string()),
            ("assistant".into(), "Nice to meet you, Ada.".into()),
            ("user".into(), "What is my name?".into()),
        ],
        "{}: {wire}",
        t.provider
    );
    vec![specimen("completion", body)]
}

// ---- 3. tools ----

async fn tool_round_trip(b: Arc<Bench>, t: Target) -> Vec<Specimen> {
    let ask = user("What's the weather in Paris right now?");
    let first = b
        .chat_ok(&json!({
            "model": t.model,
            "messages": [ask],
            "tools": [weather_tool()],
            "tool_choice": force_weather(),
        }))
        .await;
    check_completion(&first, "tool_calls");
    let message = &first["choices"][0]["message"];
    let calls = message["tool_calls"].as_array().expect("tool_calls array");
    assert_eq!(calls.len(), 1, "{first}");
    assert!(
        message["content"].is_null(),
        "no text with a forced call: {first}"
    );
    let call = &calls[0];
    let id = call["id"].as_str().expect("call id").to_string();
    assert!(!id.is_empty());
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args = call["function"]["arguments"]
        .as_str()
        .expect("arguments are a JSON string");
    check_weather_args(args);
    check_forced_choice_on_the_wire(t, &b.last_wire_request(t.kind));

    let second = b
        .chat_ok(&json!({
            "model": t.model,
            "messages": [
                ask,
                {"role": "assistant", "content": message["content"], "tool_calls": [call]},
                {"role": "tool", "tool_call_id": id, "content": TOOL_RESULT},
            ],
            "tools": [weather_tool()],
        }))
        .await;
    check_completion(&second, "stop");
    check_tool_result_on_the_wire(t, &b.last_wire_request(t.kind), &id);
    vec![specimen("tool_call", first), specimen("answer", second)]
}

/// A conversation begun on another provider (after a fallback, say) carries that
/// provider's tool-call ids; each provider must still accept the history.
async fn foreign_tool_ids(b: Arc<Bench>, t: Target) -> Vec<Specimen> {
    let mut specimens = Vec::new();
    for (origin, id) in [
        ("openai", "call_Q9x2LmT7vB1kPz4RaW8eYc3N"),
        ("anthropic", "toolu_01A09q90qw90lq917835lq9"),
        ("mistral", "KikbB849t"),
        ("cortex", "tooluse_XyZ0123456789abcdEFGH"),
    ] {
        let body = b
            .chat_ok(&json!({
                "model": t.model,
                "messages": [
                    user("What's the weather in Oslo?"),
                    {"role": "assistant", "content": null, "tool_calls": [{
                        "id": id, "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\",\"unit\":\"celsius\"}"}
                    }]},
                    {"role": "tool", "tool_call_id": id, "content": TOOL_RESULT},
                ],
                "tools": [weather_tool()],
            }))
            .await;
        check_completion(&body, "stop");
        let wire = b.last_wire_request(t.kind);
        match t.kind {
            // Mistral rewrites ids it would reject; the others take them as they are.
            ProviderKind::Mistral => {
                let wire_id = wire["messages"][2]["tool_call_id"].as_str().unwrap();
                assert_eq!(wire["messages"][1]["tool_calls"][0]["id"], wire_id);
                if origin == "mistral" {
                    assert_eq!(wire_id, id);
                }
                check_tool_result_on_the_wire(t, &wire, wire_id);
            }
            _ => check_tool_result_on_the_wire(t, &wire, id),
        }
        specimens.push(specimen(format!("answer after a {origin} id"), body));
    }
    specimens
}

// ---- 4. streaming text ----

async fn streaming_text(b: Arc<Bench>, t: Target) -> Vec<Specimen> {
    let ask = json!({"model": t.model, "stream": true, "messages": [user("Tell me a story")]});
    let body = b.stream_ok(&ask).await;
    let chunks = check_stream(&body, "stop");
    assert!(!streamed_text(&chunks).trim().is_empty(), "{body}");
    assert!(
        chunks
            .iter()
            .all(|c| c.get("usage").is_none_or(Value::is_null)),
        "{}: no usage unless asked: {body}",
        t.provider
    );

    let mut with_usage = ask.clone();
    with_usage["stream_options"] = json!({"include_usage": true});
    let body_u = b.stream_ok(&with_usage).await;
    let chunks_u = check_stream(&body_u, "stop");
    let last = chunks_u.last().unwrap();
    assert_eq!(last["choices"], json!([]), "usage chunk last: {body_u}");
    check_usage(&last["usage"]);
    for c in &chunks_u[..chunks_u.len() - 1] {
        assert!(
            c.get("usage").is_none_or(Value::is_null),
            "usage only on the last chunk: {body_u}"
        );
    }

    let mut s = stream_specimens(&chunks);
    s.push(specimen("usage chunk", last.clone()));
    s
}

// ---- 5. streaming tool calls ----

async fn streaming_tool_call(b: Arc<Bench>, t: Target) -> Vec<Specimen> {
    let body = b
        .stream_ok(&json!({
            "model": t.model,
            "stream": true,
            "messages": [user("What's the weather in Lisbon?")],
            "tools": [weather_tool()],
            "tool_choice": force_weather(),
        }))
        .await;
    let chunks = check_stream(&body, "tool_calls");
    let calls = streamed_tool_calls(&chunks);
    assert_eq!(calls.keys().copied().collect::<Vec<_>>(), [0], "{body}");
    let call = &calls[&0];
    assert!(call.id.as_deref().is_some_and(|i| !i.is_empty()), "{body}");
    assert_eq!(call.name.as_deref(), Some("get_weather"));
    check_weather_args(&call.arguments);
    // The first tool-call delta introduces the call: id, type and name together.
    let first = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned())
        .unwrap();
    assert_eq!(first["index"], 0, "{first}");
    assert!(first["id"].is_string(), "id on the first delta: {first}");
    assert_eq!(first["type"], "function", "{first}");
    assert_eq!(first["function"]["name"], "get_weather", "{first}");
    assert!(
        streamed_text(&chunks).is_empty(),
        "no text around a forced call: {body}"
    );
    let mut s = stream_specimens(&chunks);
    s.push(specimen("first tool-call delta", first));
    s
}

// ---- 6. usage ----

async fn usage_agrees(b: Arc<Bench>, t: Target) -> Vec<Specimen> {
    let messages = json!([user("Explain why the sky is blue in two sentences.")]);
    let json_answer = b
        .chat_ok(&json!({"model": t.model, "messages": messages}))
        .await;
    check_completion(&json_answer, "stop");
    let body = b
        .stream_ok(&json!({
            "model": t.model, "messages": messages, "stream": true,
            "stream_options": {"include_usage": true}
        }))
        .await;
    let chunks = check_stream(&body, "stop");
    let streamed = &chunks.last().unwrap()["usage"];
    let usage = &json_answer["usage"];
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(
            streamed[k], usage[k],
            "{}: {k} streamed vs JSON: {streamed} vs {usage}",
            t.provider
        );
    }
    assert_eq!(
        streamed_text(&chunks),
        json_answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap(),
        "the stream relays the whole answer"
    );
    vec![
        specimen("usage", usage.clone()),
        specimen("streamed usage", streamed.clone()),
    ]
}

// ---- 7. errors ----

/// (directive, status the client gets, OpenAI error type, Retry-After the client gets)
const ERROR_CLASSES: &[(&str, u16, &str, Option<&str>)] = &[
    ("status=400", 400, "invalid_request_error", None),
    // The provider rejected tollgate's credentials: not the caller's problem.
    ("status=401", 502, "api_error", None),
    ("status=500", 502, "api_error", None),
    ("status=503", 503, "api_error", None),
    // Last: a 429 cools the upstream down, so the streamed request that follows it is
    // answered from the cooldown (429 with the remaining Retry-After) without a new try.
    (
        "status=429 retry_after=30",
        429,
        "rate_limit_error",
        Some("30"),
    ),
];

async fn error_classes(b: Arc<Bench>, t: Target) -> Vec<Specimen> {
    let mut specimens = Vec::new();
    for (directive, status, kind, retry_after) in ERROR_CLASSES {
        let body = expect_error(&b, t, directive, *status, kind, *retry_after).await;
        specimens.push(specimen(*directive, body));
    }
    specimens
}

async fn overloaded_529(b: Arc<Bench>, t: Target) -> Vec<Specimen> {
    let body = expect_error(&b, t, "status=529", 503, "api_error", None).await;
    vec![specimen("529", body)]
}

async fn expect_error(
    b: &Bench,
    t: Target,
    directive: &str,
    status: u16,
    kind: &str,
    retry_after: Option<&str>,
) -> Value {
    for stream in [false, true] {
        let resp = b
            .chat(&json!({
                "model": t.model,
                "stream": stream,
                "messages": [user(&format!("hi [[sim: {directive}]]"))]
            }))
            .await;
        let what = format!("{} {directive} stream={stream}", t.provider);
        assert_eq!(resp.status(), status, "{what}");
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            retry_after,
            "{what}"
        );
        let attempts = resp.headers()["x-tollgate-attempts"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            attempts.starts_with(&format!("{} ", t.model)) && !attempts.contains(", "),
            "{what}: one attempt on {}: {attempts}",
            t.model
        );
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let body: Value = resp.json().await.unwrap();
        check_error_body(&body);
        assert_eq!(body["error"]["type"], kind, "{what}: {body}");
        for secret in [OPENAI_KEY, ANTHROPIC_KEY, MISTRAL_KEY, CORTEX_PAT] {
            assert!(
                !body.to_string().contains(secret),
                "{what}: credential leaked"
            );
        }
        if !stream {
            continue;
        }
        return body;
    }
    unreachable!()
}

async fn mid_stream_error(b: Arc<Bench>, t: Target) -> Vec<Specimen> {
    let body = b
        .stream_ok(&json!({
            "model": t.model,
            "stream": true,
            "messages": [user("Tell me a long story [[sim: stream_error_after=2 words=60]]")]
        }))
        .await;
    let data = sse_data(&body);
    assert!(
        !data.iter().any(|d| d == "[DONE]"),
        "{}: a failed stream does not end with [DONE]: {body}",
        t.provider
    );
    let events = sse_json(&body);
    let (last, before) = events.split_last().expect("events");
    check_error_body(last);
    assert_eq!(last.as_object().unwrap().len(), 1, "only `error`: {last}");
    for c in before {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        assert!(c.get("error").is_none(), "one error event, last: {body}");
    }
    assert!(
        finish_reasons(before).is_empty(),
        "no finish reason before the error: {body}"
    );
    vec![specimen("error event", last.clone())]
}

// ---- 8. fallback across providers ----

/// Order of the `chain-*` models in `chain-openai`'s chain.
const CHAIN: [ProviderKind; 4] = [
    ProviderKind::OpenAi,
    ProviderKind::Anthropic,
    ProviderKind::Cortex,
    ProviderKind::Mistral,
];

async fn cross_provider_fallback(b: Arc<Bench>, t: Target) -> Vec<Specimen> {
    let pos = CHAIN.iter().position(|k| *k == t.kind).unwrap();
    let failing = &CHAIN[..pos];
    for k in failing {
        b.sim(*k)
            .set_default_fault(Some(tollgate::sim::Fault::Status {
                status: 503,
                retry_after_secs: None,
            }));
    }
    let served = format!("chain-{}", t.provider);
    let mut specimens = Vec::new();
    for stream in [false, true] {
        let before: Vec<usize> = CHAIN.iter().map(|k| b.sim(*k).request_count()).collect();
        let resp = b
            .chat(&json!({
                "model": "chain-openai",
                "stream": stream,
                "messages": [user("Say hello")]
            }))
            .await;
        assert_eq!(resp.status(), 200, "stream={stream}");
        assert_eq!(resp.headers()["x-tollgate-model"], served.as_str());
        assert_eq!(resp.headers()["x-tollgate-provider"], t.provider);
        let attempts: Vec<String> = resp.headers()["x-tollgate-attempts"]
            .to_str()
            .unwrap()
            .split(", ")
            .map(str::to_string)
            .collect();
        assert_eq!(attempts.len(), pos + 1, "{attempts:?}");
        for (a, k) in attempts.iter().zip(CHAIN) {
            let model = format!("chain-{}", target(k).provider);
            let expect = if k == t.kind {
                format!("{model} 200 ok ")
            } else {
                format!("{model} 503 overloaded ")
            };
            assert!(a.starts_with(&expect), "{a:?} should start with {expect:?}");
        }
        for (i, k) in CHAIN.iter().enumerate() {
            let n = b.sim(*k).request_count() - before[i];
            assert_eq!(n, usize::from(i <= pos), "{k} was called {n} times");
        }
        if stream {
            let chunks = check_stream(&resp.text().await.unwrap(), "stop");
            specimens.extend(stream_specimens(&chunks));
        } else {
            let body: Value = resp.json().await.unwrap();
            check_completion(&body, "stop");
            specimens.push(specimen("completion", body));
        }
    }
    for k in failing {
        b.sim(*k).set_default_fault(None);
    }
    specimens
}

// ---- the official OpenAI Python SDK against all four providers ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_sdk_sees_the_same_api_on_every_provider() {
    let Some(py) = python_or_skip() else {
        return;
    };
    let b = Bench::start().await;
    let base = format!("{}/v1", b.gw.base_url());
    let args = std::iter::once(base.as_str()).chain(TARGETS.iter().map(|t| t.model));
    run_check(&py, "conformance_check.py", args, "SDK conformance check").await;
    for t in TARGETS {
        assert!(
            b.sim(t.kind).request_count() >= 8,
            "{} served the SDK's requests",
            t.provider
        );
    }
    b.stop().await;
}
