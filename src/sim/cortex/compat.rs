//! The OpenAI-compatible endpoint (`POST /api/v2/cortex/v1/chat/completions`): OpenAI's
//! request and answer shapes with the quirks of the recorded traffic (pydantic-ai cassettes
//! of claude-sonnet-4-6, copied under `tests/fixtures/sim/cortex/`):
//!
//! - non-stream: `id: ""`, `finish_reason: ""` whatever the reason, `refusal: ""`,
//!   `annotations: null`, zero-valued `audio` and `function_call` objects, `logprobs:
//!   {"content":null,"refusal":null}`, empty `service_tier` and `system_fingerprint`, tool
//!   calls with `toolu_bdrk_…` ids, a zero-valued `custom` object and `content: ""`;
//! - stream: `id: ""` and `created: 0` on every chunk, the role repeated on every delta next
//!   to `refusal: ""` and `tool_calls: null`, no `finish_reason` key at all, a last content
//!   chunk with `content: ""`, a usage-only chunk (`choices: []`) only with
//!   `stream_options.include_usage`, then `data: [DONE]`.
//!
//! Streamed tool calls were not recorded; they follow OpenAI's delta shape (id, type and
//! name first, then argument fragments). The body is otherwise free-form: anything OpenAI's
//! request type accepts is accepted, and only one choice is ever produced.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::validate::INVALID_PAYLOAD;
use super::{bad_request, known_model, Meta};
use crate::api::ChatRequest;
use crate::sim::reply::{ChoiceReply, Exchange, Reply};
use crate::sim::{random_alnum, ErrorResponse, StreamFrames};

/// Validates an OpenAI-shaped request and extracts what the answer depends on.
pub(super) fn parse(body: Value, meta: &Meta) -> Result<Exchange, ErrorResponse> {
    let req: ChatRequest = serde_json::from_value(body.clone())
        .map_err(|e| bad_request(&format!("{INVALID_PAYLOAD} {e}"), meta))?;
    if req.messages.is_empty() {
        return Err(bad_request(
            &format!("{INVALID_PAYLOAD} Field 'messages' must contain at least 1 item."),
            meta,
        ));
    }
    known_model(&req.model, meta)?;
    let mut ex = Exchange::from_chat(&req, body);
    ex.n = 1;
    Ok(ex)
}

/// `toolu_bdrk_` and 24 alphanumerics: Bedrock's Claude tool ids, as recorded.
fn tool_call_id() -> String {
    format!("toolu_bdrk_{}", random_alnum(24))
}

fn logprobs() -> Value {
    json!({"content": null, "refusal": null})
}

fn usage(ex: &Exchange, reply: &Reply, meta: &Meta) -> Value {
    let completion = reply.completion_tokens();
    json!({
        "completion_tokens": completion,
        "completion_tokens_details": {"accepted_prediction_tokens": 0, "audio_tokens": 0,
                                      "reasoning_tokens": 0, "rejected_prediction_tokens": 0},
        "prompt_tokens": ex.prompt_tokens,
        "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": meta.cached_tokens},
        "total_tokens": ex.prompt_tokens + completion,
    })
}

fn message(c: &ChoiceReply) -> Value {
    let tool_calls = if c.tool_calls.is_empty() {
        Value::Null
    } else {
        c.tool_calls
            .iter()
            .map(|t| {
                json!({"custom": {"input": "", "name": ""},
                       "function": {"arguments": t.arguments, "name": t.name},
                       "id": tool_call_id(), "type": "function"})
            })
            .collect()
    };
    json!({
        "annotations": null,
        "audio": {"data": "", "expires_at": 0, "id": "", "transcript": ""},
        "content": c.text,
        "function_call": {"arguments": "", "name": ""},
        "refusal": "",
        "role": "assistant",
        "tool_calls": tool_calls,
    })
}

/// The non-streaming JSON body.
pub(super) fn render_json(ex: &Exchange, reply: &Reply, meta: &Meta) -> Bytes {
    let choices: Vec<Value> = reply
        .choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"finish_reason": "", "index": i, "logprobs": logprobs(), "message": message(c)})
        })
        .collect();
    let body = json!({
        "choices": choices,
        "created": meta.created,
        "id": "",
        "model": ex.model,
        "object": "chat.completion",
        "service_tier": "",
        "system_fingerprint": "",
        "usage": usage(ex, reply, meta),
    });
    Bytes::from(body.to_string())
}

fn chunk(model: &str, choices: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("choices".into(), choices);
    m.insert("created".into(), json!(0));
    m.insert("id".into(), json!(""));
    m.insert("model".into(), json!(model));
    m.insert("object".into(), json!("chat.completion.chunk"));
    m.insert("service_tier".into(), json!(""));
    m.insert("system_fingerprint".into(), json!(""));
    m
}

fn event(chunk: Map<String, Value>) -> Bytes {
    Bytes::from(format!("data: {}\n\n", Value::Object(chunk)))
}

fn delta_event(model: &str, index: usize, content: &str, tool_calls: Value) -> Bytes {
    let delta =
        json!({"content": content, "refusal": "", "role": "assistant", "tool_calls": tool_calls});
    event(chunk(
        model,
        json!([{"delta": delta, "index": index, "logprobs": logprobs()}]),
    ))
}

/// The streamed answer, ending with `data: [DONE]`.
pub(super) fn render_events(ex: &Exchange, reply: &Reply, meta: &Meta) -> StreamFrames {
    let model = ex.model.as_str();
    let mut events = Vec::new();
    for (i, c) in reply.choices.iter().enumerate() {
        for piece in &c.pieces {
            events.push(delta_event(model, i, piece, Value::Null));
        }
        for (k, call) in c.tool_calls.iter().enumerate() {
            let head = json!([{"index": k, "id": tool_call_id(), "type": "function",
                               "function": {"name": call.name, "arguments": ""}}]);
            events.push(delta_event(model, i, "", head));
            for fragment in &call.fragments {
                let d = json!([{"index": k, "function": {"arguments": fragment}}]);
                events.push(delta_event(model, i, "", d));
            }
        }
        events.push(delta_event(model, i, "", Value::Null));
    }
    if ex.include_usage {
        let mut last = chunk(model, json!([]));
        last.insert("usage".into(), usage(ex, reply, meta));
        events.push(event(last));
    }
    StreamFrames {
        events,
        terminal: vec![Bytes::from_static(b"data: [DONE]\n\n")],
    }
}
