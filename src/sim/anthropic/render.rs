//! Rendering a simulated answer in the Messages API's shapes: the content blocks and stop
//! reason of an answer, the non-streaming `message` body, and the named SSE events of a
//! stream.
//!
//! Shapes follow the recorded traffic. A tool-calling answer under `tool_choice: auto` starts
//! with a short text block, as Claude does; under `any` / `tool` it holds tool_use blocks
//! only (the API prefills the assistant turn). Streams are `message_start` (input tokens,
//! `output_tokens: 1`), per block `content_block_start` / `content_block_delta`… /
//! `content_block_stop`, one `ping` after the first block starts, `message_delta` (stop reason
//! and cumulative usage) and `message_stop`; tool input arrives as `input_json_delta`
//! fragments, the first one empty; tool_use starts carry `caller: {type: direct}`. Data lines
//! are padded with a few spaces before the closing brace, as the API does lately.

use bytes::Bytes;
use serde_json::{json, Value};

use super::exchange::ENCODING;
use crate::sim::reply::{ChoiceReply, Exchange, Finish, Reply, ToolMode};
use crate::sim::{random_alnum, text, Meta};

/// One content block of an answer.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Block {
    Text {
        text: String,
        /// How a stream delivers `text`.
        pieces: Vec<String>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
        /// `partial_json` fragments, the first one empty.
        fragments: Vec<String>,
    },
}

/// An answer in Anthropic's terms.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Answer {
    pub blocks: Vec<Block>,
    pub stop_reason: &'static str,
    pub stop_sequence: Option<String>,
    pub output_tokens: u64,
}

/// The short text Claude writes before calling tools on its own.
pub(super) fn preamble(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => format!("I'll use the {one} tool to help with this."),
        [init @ .., last] => format!(
            "I'll use the {} and {last} tools to help with this.",
            init.join(", ")
        ),
    }
}

fn tool_use_id() -> String {
    format!("toolu_01{}", random_alnum(22))
}

/// The message id of a response.
pub(super) fn message_id() -> String {
    format!("msg_01{}", random_alnum(22))
}

fn text_block(text: String, seed: u64) -> Block {
    Block::Text {
        pieces: text::pieces(&text, seed),
        text,
    }
}

/// The answer for `reply`: stop sequences applied, the preamble added under `auto`.
pub(super) fn answer(ex: &Exchange, reply: &Reply) -> Answer {
    let Some(choice) = reply.choices.first() else {
        return Answer {
            blocks: vec![text_block(String::new(), ex.seed)],
            stop_reason: "end_turn",
            stop_sequence: None,
            output_tokens: 0,
        };
    };
    if choice.tool_calls.is_empty() {
        text_answer(ex, choice)
    } else {
        tool_answer(ex, choice)
    }
}

fn stop_sequences(ex: &Exchange) -> Vec<&str> {
    ex.body
        .get("stop_sequences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .collect()
}

fn text_answer(ex: &Exchange, choice: &ChoiceReply) -> Answer {
    let first_stop = stop_sequences(ex)
        .into_iter()
        .filter_map(|s| choice.text.find(s).map(|pos| (pos, s)))
        .min_by_key(|(pos, _)| *pos);
    if let Some((pos, seq)) = first_stop {
        let cut = choice.text[..pos].to_string();
        return Answer {
            output_tokens: ENCODING.count(&cut),
            blocks: vec![text_block(cut, ex.seed)],
            stop_reason: "stop_sequence",
            stop_sequence: Some(seq.to_string()),
        };
    }
    Answer {
        blocks: vec![Block::Text {
            text: choice.text.clone(),
            pieces: choice.pieces.clone(),
        }],
        stop_reason: if choice.finish == Finish::Length {
            "max_tokens"
        } else {
            "end_turn"
        },
        stop_sequence: None,
        output_tokens: choice.completion_tokens,
    }
}

fn tool_answer(ex: &Exchange, choice: &ChoiceReply) -> Answer {
    let cap = ex.body.get("max_tokens").and_then(Value::as_u64);
    let mut blocks = Vec::new();
    let mut output_tokens = 0;
    if ex.tool_choice == ToolMode::Auto {
        let names: Vec<&str> = choice.tool_calls.iter().map(|c| c.name.as_str()).collect();
        let intro = preamble(&names);
        let cost = ENCODING.count(&intro);
        if let Some(cap) = cap.filter(|cap| cost >= *cap) {
            // No room left for a call.
            let (cut, _) = text::truncate_to_tokens(ENCODING, &intro, cap);
            return Answer {
                output_tokens: ENCODING.count(&cut),
                blocks: vec![text_block(cut, ex.seed)],
                stop_reason: "max_tokens",
                stop_sequence: None,
            };
        }
        output_tokens += cost;
        blocks.push(text_block(intro, ex.seed));
    }
    for call in &choice.tool_calls {
        // A call cut short by the output cap has no complete input.
        let input = serde_json::from_str::<Value>(&call.arguments)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        let mut fragments = vec![String::new()];
        fragments.extend(call.fragments.iter().cloned());
        blocks.push(Block::ToolUse {
            id: tool_use_id(),
            name: call.name.clone(),
            input,
            fragments,
        });
    }
    Answer {
        blocks,
        stop_reason: if choice.finish == Finish::Length {
            "max_tokens"
        } else {
            "tool_use"
        },
        stop_sequence: None,
        output_tokens: output_tokens + choice.completion_tokens,
    }
}

/// Input token counts as Anthropic splits them: `(input_tokens, cache_read_input_tokens)`.
/// Cache reads are reported only when the request asks for caching with `cache_control`.
pub(super) fn input_split(ex: &Exchange, meta: &Meta) -> (u64, u64) {
    let cached = if super::exchange::uses_cache_control(&ex.body) {
        meta.cached_tokens.min(ex.prompt_tokens)
    } else {
        0
    };
    (ex.prompt_tokens - cached, cached)
}

fn usage(ex: &Exchange, meta: &Meta, output_tokens: u64) -> Value {
    let (input, cached) = input_split(ex, meta);
    json!({
        "input_tokens": input,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
        "inference_geo": "not_available",
    })
}

/// The non-streaming `message` body.
pub(super) fn message_json(ex: &Exchange, answer: &Answer, meta: &Meta) -> Value {
    let content: Vec<Value> = answer
        .blocks
        .iter()
        .map(|b| match b {
            Block::Text { text, .. } => json!({"type": "text", "text": text}),
            Block::ToolUse {
                id, name, input, ..
            } => json!({"type": "tool_use", "id": id, "name": name, "input": input}),
        })
        .collect();
    json!({
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": super::models::resolved(&ex.model),
        "content": content,
        "stop_reason": answer.stop_reason,
        "stop_sequence": answer.stop_sequence,
        "usage": usage(ex, meta, answer.output_tokens),
    })
}

/// One named SSE event, its JSON padded before the closing brace.
pub(super) fn event(name: &str, data: &Value) -> Bytes {
    let json = data.to_string();
    let pad = " ".repeat(fastrand::usize(0..16));
    let padded = match json.strip_suffix('}') {
        Some(head) => format!("{head}{pad}}}"),
        None => json,
    };
    Bytes::from(format!("event: {name}\ndata: {padded}\n\n"))
}

/// The `ping` event, byte for byte as recorded.
const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

/// Every event of the stream but the terminal `message_stop`.
pub(super) fn stream_events(ex: &Exchange, answer: &Answer, meta: &Meta) -> Vec<Bytes> {
    let (input, cached) = input_split(ex, meta);
    let start_usage = usage(ex, meta, 1);
    let mut events = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "model": super::models::resolved(&ex.model),
            "id": message_id(),
            "type": "message",
            "role": "assistant",
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": start_usage,
        }}),
    )];
    for (index, block) in answer.blocks.iter().enumerate() {
        let (start, deltas): (Value, Vec<Value>) = match block {
            Block::Text { pieces, .. } => (
                json!({"type": "text", "text": ""}),
                pieces
                    .iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect(),
            ),
            Block::ToolUse {
                id,
                name,
                fragments,
                ..
            } => (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}, "caller": {"type": "direct"}}),
                fragments
                    .iter()
                    .map(|f| json!({"type": "input_json_delta", "partial_json": f}))
                    .collect(),
            ),
        };
        events.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        if index == 0 {
            events.push(Bytes::from_static(PING));
        }
        for delta in deltas {
            events.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(event(
        "message_delta",
        &json!({"type": "message_delta",
        "delta": {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence},
        "usage": {
            "input_tokens": input,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
            "output_tokens": answer.output_tokens,
        }}),
    ));
    events
}

/// The terminal event.
pub(super) fn message_stop() -> Bytes {
    event("message_stop", &json!({"type": "message_stop"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_events_stay_valid_json() {
        for _ in 0..20 {
            let e = event("message_stop", &json!({"type": "message_stop"}));
            let s = std::str::from_utf8(&e).unwrap();
            assert!(s.starts_with("event: message_stop\ndata: {\"type\":\"message_stop\""));
            let data = s
                .trim_end()
                .strip_prefix("event: message_stop\ndata: ")
                .unwrap();
            let v: Value = serde_json::from_str(data).unwrap();
            assert_eq!(v, json!({"type": "message_stop"}));
        }
    }

    #[test]
    fn preamble_names_every_tool() {
        assert_eq!(
            preamble(&["get_weather"]),
            "I'll use the get_weather tool to help with this."
        );
        assert_eq!(
            preamble(&["a", "b", "c"]),
            "I'll use the a, b and c tools to help with this."
        );
    }
}
