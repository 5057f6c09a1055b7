//! The native COMPLETE endpoint (`POST /api/v2/cortex/inference:complete`): request
//! validation and the two answer shapes.
//!
//! - `stream` defaults to **true** (`CompleteRequest.stream`, default true).
//! - Stream: `text/event-stream` of data-only events, no event names and no `[DONE]`. Each
//!   chunk is `{"id","model","choices":[{"delta":{…}}],"usage":{}}`; the last one carries the
//!   usage (`prompt_tokens`, `completion_tokens`, `total_tokens`, and `guard_tokens` when
//!   Cortex Guard is on). A text delta is
//!   `{"type":"text","content":…,"content_list":[{"type":"text","text":…}],"text":…}`. A tool
//!   call starts with `{"type":"tool_use","tool_use_id":"tooluse_…","name":…}` and its input
//!   follows as JSON fragments in `{"type":"tool_use","input":…}` deltas, each with a
//!   `content_list` copy. No delta carries a finish reason. (Shapes from a captured
//!   claude-sonnet-4 stream in block/goose's Snowflake tests, which LiteLLM's Snowflake
//!   stream parser also assumes.)
//! - The second event of every stream puts its JSON object on two consecutive `data:` lines,
//!   as an older documented example did; SSE joins them with `\n`, which leaves valid JSON.
//!   Real clients must cope with it, so the simulator always does it.
//! - Non-stream (`"stream": false`): `{"id","created","model","choices":[{"message":
//!   {"content","content_list"},"finish_reason"}],"finish_reason","usage"}`; tool calls are
//!   `{"type":"tool_use","tool_use":{"tool_use_id","name","input":{…}}}` items. The spec puts
//!   `finish_reason` at the top level and clients read it from the choice, so both are sent.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::validate::{items, role, validate};
use super::{bad_request, known_model, message_text, new_uuid, ErrorResponse, Meta};
use crate::sim::reply::{ChoiceReply, Exchange, Finish, Reply, ToolMode, ToolSpec};
use crate::sim::text::stable_hash;
use crate::sim::{random_alnum, StreamFrames};
use crate::tokens::Encoding;

/// `max_tokens` when the request gives none (`CompleteRequest.max_tokens` default).
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Validates a native request and extracts what the answer depends on.
pub(super) fn parse(body: Value, meta: &Meta) -> Result<Exchange, ErrorResponse> {
    validate(&body).map_err(|e| bad_request(&e.0, meta))?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    known_model(&model, meta)?;
    Ok(exchange(model, body))
}

fn exchange(model: String, body: Value) -> Exchange {
    let encoding = Encoding::for_model(&model);
    let empty = Vec::new();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let last_user_text = messages
        .iter()
        .rev()
        .find(|m| role(m) == "user")
        .map(message_text)
        .unwrap_or_default();
    let last_is_tool_result = messages.last().is_some_and(|m| {
        items(m)
            .iter()
            .any(|i| i.get("type").and_then(Value::as_str) == Some("tool_results"))
    });
    let mut tools: Vec<ToolSpec> = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("tool_spec"))
        .map(|spec| ToolSpec {
            name: spec
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            parameters: spec
                .get("input_schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        })
        .collect();
    let choice = body.get("tool_choice");
    let tool_choice = match choice.and_then(|c| c.get("type")).and_then(Value::as_str) {
        _ if tools.is_empty() => ToolMode::None,
        Some("required") => ToolMode::Required,
        Some("tool") => {
            let names: Vec<&str> = choice
                .and_then(|c| c.get("name"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match names.as_slice() {
                [one] => ToolMode::Named((*one).to_string()),
                _ => {
                    tools.retain(|t| names.contains(&t.name.as_str()));
                    ToolMode::Required
                }
            }
        }
        _ => ToolMode::Auto,
    };
    let max_tokens = ["max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let seed_source = json!([
        model,
        messages,
        body.get("tools"),
        body.get("response_format")
    ]);
    Exchange {
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(true),
        include_usage: false,
        n: 1,
        max_tokens: Some(max_tokens),
        stop: Vec::new(),
        tools,
        tool_choice,
        parallel_tool_calls: true,
        last_user_text,
        last_is_tool_result,
        prompt_tokens: count_prompt(encoding, &body),
        encoding,
        seed: stable_hash(seed_source.to_string().as_bytes()),
        model,
        body,
    }
}

/// Prompt tokens, following the cookbook rule the other simulators use: 3 per message plus
/// its role and text, tool uses and results as name plus JSON, each tool's name, description
/// and schema, and 3 to prime the reply.
fn count_prompt(enc: Encoding, body: &Value) -> u64 {
    let mut n = 3u64;
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        n += 3 + enc.count(role(m));
        if let Some(c) = m.get("content").and_then(Value::as_str) {
            n += enc.count(c);
        }
        for item in items(m) {
            match item.get("type").and_then(Value::as_str) {
                Some("text") => n += enc.count(item["text"].as_str().unwrap_or_default()),
                Some(kind @ ("tool_use" | "tool_results")) => {
                    let inner = &item[kind];
                    n += 1 + enc.count(inner["name"].as_str().unwrap_or_default());
                    let payload = if kind == "tool_use" {
                        &inner["input"]
                    } else {
                        &inner["content"]
                    };
                    n += enc.count(&payload.to_string());
                }
                _ => {}
            }
        }
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        for t in tools {
            let spec = &t["tool_spec"];
            n += 10 + enc.count(spec["name"].as_str().unwrap_or_default());
            n += enc.count(spec["description"].as_str().unwrap_or_default());
            if spec["input_schema"].is_object() {
                n += enc.count(&spec["input_schema"].to_string());
            }
        }
        n += 12;
    }
    n
}

fn finish_str(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
    }
}

/// `tooluse_` and 22 URL-safe characters, like the Bedrock-issued ids Cortex passes on.
fn tool_use_id() -> String {
    format!("tooluse_{}", random_alnum(22))
}

fn usage(ex: &Exchange, reply: &Reply, meta: &Meta) -> Value {
    let completion = reply.completion_tokens();
    let mut u = Map::new();
    u.insert("prompt_tokens".into(), json!(ex.prompt_tokens));
    u.insert("completion_tokens".into(), json!(completion));
    let guard = ex
        .body
        .pointer("/guardrails/enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if guard {
        // Cortex Guard reads the answer it filters.
        u.insert("guard_tokens".into(), json!(completion));
    }
    u.insert(
        "total_tokens".into(),
        json!(ex.prompt_tokens + completion + if guard { completion } else { 0 }),
    );
    if meta.cached_tokens > 0 {
        u.insert("cache_read_input_tokens".into(), json!(meta.cached_tokens));
    }
    Value::Object(u)
}

/// The `content_list` of a non-streamed answer.
fn content_list(c: &ChoiceReply) -> Vec<Value> {
    if c.tool_calls.is_empty() {
        return vec![json!({"type": "text", "text": c.text})];
    }
    c.tool_calls
        .iter()
        .map(|t| {
            let input = serde_json::from_str::<Value>(&t.arguments)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            json!({"type": "tool_use", "tool_use": {"tool_use_id": tool_use_id(), "name": t.name, "input": input}})
        })
        .collect()
}

/// The non-streaming JSON body.
pub(super) fn render_json(ex: &Exchange, reply: &Reply, meta: &Meta) -> Bytes {
    let choices: Vec<Value> = reply
        .choices
        .iter()
        .map(|c| {
            json!({"message": {"content": c.text, "content_list": content_list(c)},
                   "finish_reason": finish_str(c.finish)})
        })
        .collect();
    let finish = reply
        .choices
        .first()
        .map(|c| finish_str(c.finish))
        .unwrap_or("stop");
    let body = json!({
        "id": new_uuid(),
        "created": meta.created,
        "model": ex.model,
        "choices": choices,
        "finish_reason": finish,
        "usage": usage(ex, reply, meta),
    });
    Bytes::from(body.to_string())
}

/// The deltas of one answer, in stream order.
fn deltas(c: &ChoiceReply) -> Vec<Value> {
    let mut out = Vec::new();
    for piece in &c.pieces {
        out.push(json!({"type": "text", "content": piece,
                        "content_list": [{"type": "text", "text": piece}], "text": piece}));
    }
    for call in &c.tool_calls {
        let id = tool_use_id();
        out.push(
            json!({"type": "tool_use", "tool_use_id": id, "name": call.name,
                        "content_list": [{"tool_use_id": id, "name": call.name}], "text": ""}),
        );
        for fragment in &call.fragments {
            out.push(json!({"type": "tool_use", "input": fragment,
                            "content_list": [{"input": fragment}], "text": ""}));
        }
    }
    if out.is_empty() {
        out.push(json!({"type": "text", "content": "", "content_list": [{"type": "text", "text": ""}], "text": ""}));
    }
    out
}

/// One SSE event; with `split`, the object's members are spread over two `data:` lines
/// (the break falls between two members, so the joined text is still valid JSON).
fn event(chunk: &Map<String, Value>, split: bool) -> Bytes {
    let members: Vec<String> = chunk
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
        .collect();
    let mut out = BytesMut::new();
    if split && members.len() >= 2 {
        let half = members.len() / 2;
        out.put_slice(format!("data: {{{},\n", members[..half].join(",")).as_bytes());
        out.put_slice(format!("data: {}}}\n\n", members[half..].join(",")).as_bytes());
    } else {
        out.put_slice(format!("data: {}\n\n", Value::Object(chunk.clone())).as_bytes());
    }
    out.freeze()
}

/// The streamed answer: data-only events, no terminal event.
pub(super) fn render_events(ex: &Exchange, reply: &Reply, meta: &Meta) -> StreamFrames {
    let id = new_uuid();
    let all: Vec<Value> = reply.choices.iter().flat_map(deltas).collect();
    let split_at = 1.min(all.len().saturating_sub(1));
    let last = all.len().saturating_sub(1);
    let events = all
        .into_iter()
        .enumerate()
        .map(|(i, delta)| {
            let mut chunk = Map::new();
            chunk.insert("id".into(), json!(id));
            chunk.insert("model".into(), json!(ex.model));
            chunk.insert("choices".into(), json!([{"delta": delta}]));
            let u = if i == last {
                usage(ex, reply, meta)
            } else {
                json!({})
            };
            chunk.insert("usage".into(), u);
            event(&chunk, i == split_at)
        })
        .collect();
    StreamFrames {
        events,
        terminal: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::sse::parse_all;

    fn ex(body: Value) -> Exchange {
        let model = body["model"].as_str().unwrap().to_string();
        exchange(model, body)
    }

    #[test]
    fn stream_defaults_to_true_and_max_tokens_to_4096() {
        let e = ex(json!({"model": "mistral-large2", "messages": [{"content": "hi"}]}));
        assert!(e.stream);
        assert_eq!(e.max_tokens, Some(4096));
        let e = ex(
            json!({"model": "mistral-large2", "messages": [{"content": "hi"}], "stream": false, "max_output_tokens": 9}),
        );
        assert!(!e.stream);
        assert_eq!(e.max_tokens, Some(9));
    }

    #[test]
    fn tool_choice_maps_to_the_simulated_modes() {
        let tools = json!([
            {"tool_spec": {"type": "generic", "name": "a", "input_schema": {"type": "object"}}},
            {"tool_spec": {"type": "generic", "name": "b", "input_schema": {"type": "object"}}},
            {"tool_spec": {"type": "generic", "name": "c", "input_schema": {"type": "object"}}}]);
        let body = |choice: Value| json!({"model": "claude-3-5-sonnet", "messages": [{"content": "x"}], "tools": tools, "tool_choice": choice});
        assert_eq!(
            ex(body(json!({"type": "auto"}))).tool_choice,
            ToolMode::Auto
        );
        assert_eq!(
            ex(body(json!({"type": "required"}))).tool_choice,
            ToolMode::Required
        );
        assert_eq!(
            ex(body(json!({"type": "tool", "name": ["b"]}))).tool_choice,
            ToolMode::Named("b".into())
        );
        let two = ex(body(json!({"type": "tool", "name": ["b", "c"]})));
        assert_eq!(two.tool_choice, ToolMode::Required);
        assert_eq!(two.tools.len(), 2);
    }

    #[test]
    fn split_event_joins_into_the_same_json() {
        let mut chunk = Map::new();
        chunk.insert("id".into(), json!("x"));
        chunk.insert("model".into(), json!("m"));
        chunk.insert("choices".into(), json!([{"delta": {"content": "a,b"}}]));
        chunk.insert("usage".into(), json!({}));
        let e = event(&chunk, true);
        let text = std::str::from_utf8(&e).unwrap();
        assert_eq!(text.matches("data: ").count(), 2);
        let parsed = parse_all(&e, e.len());
        assert_eq!(parsed.len(), 1);
        let v: Value = serde_json::from_str(&parsed[0].data).unwrap();
        assert_eq!(v, Value::Object(chunk));
    }
}
