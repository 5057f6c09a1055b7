//! The OpenAI side: reading SSE bodies, building requests, and the checks every OpenAI
//! answer, stream and error must pass whichever provider served it.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{specimen, Specimen};

// ---- SSE helpers ----

/// Splits an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(|d| d.trim_start()))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The JSON events of an SSE body (everything but `[DONE]`).
pub fn sse_json(body: &str) -> Vec<Value> {
    sse_data(body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("event is JSON ({e}): {d}")))
        .collect()
}

/// Concatenated `delta.content` of stream chunks.
pub fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// Every non-null `finish_reason` of a stream, in order.
pub fn finish_reasons(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["finish_reason"].as_str().map(str::to_string))
        .collect()
}

/// A tool call accumulated from stream deltas, as the OpenAI SDKs do.
#[derive(Debug, Default, Clone)]
pub struct StreamedCall {
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
    /// How many deltas contributed to it.
    pub deltas: usize,
}

/// Accumulates `delta.tool_calls` by `index`.
pub fn streamed_tool_calls(chunks: &[Value]) -> BTreeMap<u64, StreamedCall> {
    let mut calls: BTreeMap<u64, StreamedCall> = BTreeMap::new();
    for c in chunks {
        let Some(deltas) = c["choices"][0]["delta"]["tool_calls"].as_array() else {
            continue;
        };
        for d in deltas {
            let index = d["index"]
                .as_u64()
                .expect("tool_call delta has an integer index");
            let call = calls.entry(index).or_default();
            call.deltas += 1;
            if let Some(id) = d["id"].as_str() {
                assert!(call.id.is_none(), "tool call {index} got a second id: {d}");
                call.id = Some(id.to_string());
            }
            if let Some(name) = d["function"]["name"].as_str() {
                assert!(
                    call.name.is_none(),
                    "tool call {index} got a second name: {d}"
                );
                call.name = Some(name.to_string());
            }
            if let Some(args) = d["function"]["arguments"].as_str() {
                call.arguments.push_str(args);
            }
        }
    }
    calls
}

// ---- request builders ----

pub fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

/// The function tool every tool scenario offers.
pub fn weather_tool() -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7}
                },
                "required": ["city", "unit"],
                "additionalProperties": false
            }
        }
    })
}

/// `tool_choice` forcing `get_weather`.
pub fn force_weather() -> Value {
    json!({"type": "function", "function": {"name": "get_weather"}})
}

/// Asserts that `args` (the JSON-string arguments of a `get_weather` call) satisfy its
/// schema, and returns them parsed.
pub fn check_weather_args(args: &str) -> Value {
    let v: Value = serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("arguments are a JSON document ({e}): {args}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("arguments are an object: {args}"));
    assert!(
        obj["city"].as_str().is_some_and(|c| !c.is_empty()),
        "city is a non-empty string: {args}"
    );
    assert!(
        matches!(obj["unit"].as_str(), Some("celsius" | "fahrenheit")),
        "unit is one of the enum: {args}"
    );
    if let Some(days) = obj.get("days") {
        let d = days
            .as_i64()
            .unwrap_or_else(|| panic!("days is an integer: {args}"));
        assert!((1..=7).contains(&d), "days within 1..=7: {args}");
    }
    for k in obj.keys() {
        assert!(
            ["city", "unit", "days"].contains(&k.as_str()),
            "no property outside the schema: {args}"
        );
    }
    v
}

/// Asserts the OpenAI error body shape `{"error":{"message","type","param","code"}}`.
pub fn check_error_body(body: &Value) {
    let e = &body["error"];
    assert!(e.is_object(), "error object: {body}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error.message is a non-empty string: {body}"
    );
    assert!(e["type"].is_string(), "error.type is a string: {body}");
    for k in ["param", "code"] {
        assert!(
            e.get(k).is_some_and(|v| v.is_null() || v.is_string()),
            "error.{k} is present, a string or null: {body}"
        );
    }
}

/// The parts of a `chat.completion` every provider must fill the same way.
pub fn check_completion(body: &Value, finish: &str) {
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert!(body["id"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
    assert!(body["created"].as_u64().is_some_and(|c| c > 0), "{body}");
    assert!(
        body["model"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    let choices = body["choices"].as_array().expect("choices array");
    assert_eq!(choices.len(), 1, "{body}");
    assert_eq!(choices[0]["index"], 0, "{body}");
    assert_eq!(choices[0]["message"]["role"], "assistant", "{body}");
    assert_eq!(choices[0]["finish_reason"], finish, "{body}");
    if finish == "stop" {
        assert!(
            choices[0]["message"]["content"]
                .as_str()
                .is_some_and(|c| !c.trim().is_empty()),
            "non-empty content: {body}"
        );
    }
    check_usage(&body["usage"]);
}

pub fn check_usage(usage: &Value) {
    let n = |k: &str| {
        usage[k]
            .as_u64()
            .unwrap_or_else(|| panic!("usage.{k} is an integer: {usage}"))
    };
    assert!(n("prompt_tokens") > 0, "{usage}");
    assert!(n("completion_tokens") > 0, "{usage}");
    assert_eq!(
        n("total_tokens"),
        n("prompt_tokens") + n("completion_tokens"),
        "{usage}"
    );
}

/// Checks what every OpenAI stream must be and returns its JSON chunks: data-only events,
/// all `chat.completion.chunk` with one id, the role first, exactly one finish reason
/// (`finish`), and `data: [DONE]` last.
pub fn check_stream(body: &str, finish: &str) -> Vec<Value> {
    let data = sse_data(body);
    assert_eq!(
        data.last().map(String::as_str),
        Some("[DONE]"),
        "[DONE] last: {body}"
    );
    assert_eq!(
        data.iter().filter(|d| *d == "[DONE]").count(),
        1,
        "one [DONE]: {body}"
    );
    for line in body.lines() {
        assert!(
            line.is_empty() || line.starts_with("data: "),
            "data-only events: {line:?}"
        );
    }
    let chunks = sse_json(body);
    assert!(!chunks.is_empty(), "{body}");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        assert_eq!(c["id"], chunks[0]["id"], "one id per stream: {body}");
        assert!(c["created"].as_u64().is_some_and(|v| v > 0), "{c}");
        assert!(c["model"].as_str().is_some_and(|m| !m.is_empty()), "{c}");
        assert!(c["choices"].is_array(), "{c}");
        for ch in c["choices"].as_array().unwrap() {
            assert_eq!(ch["index"], 0, "{c}");
            assert!(ch["delta"].is_object(), "{c}");
        }
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["role"], "assistant",
        "role on the first delta: {body}"
    );
    assert_eq!(finish_reasons(&chunks), [finish], "{body}");
    // As OpenAI sends it: the finish reason never shares a chunk with tool-call deltas
    // (the OpenAI SDK's stream helper would not close the call).
    let last_choice = chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .find(|ch| ch["finish_reason"].is_string())
        .unwrap();
    assert!(
        last_choice["delta"].get("tool_calls").is_none(),
        "finish reason in a chunk of its own: {last_choice}"
    );
    chunks
}

/// What a stream must share with every other provider's: the chunk envelope (every key
/// but the delta's contents, over all chunks) and the merged delta (every key any delta
/// carried, with its type). Where the chunk boundaries fall is the provider's business.
pub fn stream_specimens(chunks: &[Value]) -> Vec<Specimen> {
    let envelopes: Vec<Value> = chunks
        .iter()
        .map(|c| {
            let mut c = c.clone();
            for ch in c["choices"].as_array_mut().into_iter().flatten() {
                ch["delta"] = json!({});
            }
            c
        })
        .collect();
    let deltas: Vec<Value> = chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .map(|ch| ch["delta"].clone())
        .collect();
    vec![
        specimen("chunk envelopes", Value::Array(envelopes)),
        specimen("merged deltas", Value::Array(deltas)),
    ]
}
