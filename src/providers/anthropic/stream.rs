//! Anthropic Messages event stream → OpenAI `chat.completion.chunk` stream.
//!
//! Anthropic names every event (`message_start`, `content_block_start`,
//! `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`, `ping`,
//! `error`) and ends with `message_stop` instead of `[DONE]`. Text deltas become content
//! deltas; each client `tool_use` block becomes one OpenAI tool call whose `index` counts
//! tool calls only (Anthropic's block index also counts text, thinking and server-tool
//! blocks, which are not relayed). Usage in `message_delta` is cumulative and supersedes
//! what `message_start` reported.

use std::collections::HashMap;

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::Value;

use super::super::sse::{self, SseEvent, SseParser};
use super::super::{
    AdapterError, ProviderKind, ResponseContext, StreamOutcome, StreamTranslator, UpstreamError,
    UpstreamErrorKind,
};
use super::skim::text_delta;
use super::{finish_reason, upstream_error, WireUsage};
use crate::api::response::FunctionDelta;
use crate::api::{ChatChunk, Delta, ToolCallDelta};
use crate::error::GatewayError;
use crate::tokens::Encoding;
use crate::usage::Usage;

/// Translator state for one streamed response.
pub(super) struct AnthropicStream {
    ctx: ResponseContext,
    parser: SseParser,
    /// Anthropic's `msg_…` id once `message_start` arrived, `ctx.id` before.
    id: String,
    model: String,
    /// Content-block index → OpenAI tool-call index, for client `tool_use` blocks.
    tool_index: HashMap<u64, u32>,
    next_tool: u32,
    start_usage: Option<WireUsage>,
    delta_usage: Option<WireUsage>,
    finish_reason: Option<String>,
    output_text: String,
    error: Option<UpstreamError>,
    done: bool,
}

impl AnthropicStream {
    pub(super) fn new(ctx: ResponseContext) -> Self {
        let max_event_bytes = ctx.max_event_bytes;
        AnthropicStream {
            id: ctx.id.clone(),
            model: ctx.model.clone(),
            ctx,
            parser: SseParser::new(max_event_bytes),
            tool_index: HashMap::new(),
            next_tool: 0,
            start_usage: None,
            delta_usage: None,
            finish_reason: None,
            output_text: String::new(),
            error: None,
            done: false,
        }
    }

    /// Usage so far. `message_delta` carries the final counts. Before it arrives (a stream
    /// cut short, an `error` event) only `message_start`'s are known: its input counts are
    /// real, but its `output_tokens` is a placeholder (usually 1), so the output is counted
    /// from the relayed text instead (never below the placeholder) and the usage is marked
    /// estimated.
    fn usage(&self) -> Option<Usage> {
        match (&self.start_usage, &self.delta_usage) {
            (None, None) => None,
            (Some(s), None) => {
                let mut u = s.to_usage();
                let counted = Encoding::for_model(&self.model).count(&self.output_text);
                u.output_tokens = u.output_tokens.max(counted);
                u.estimated = true;
                Some(u)
            }
            (None, Some(d)) => Some(d.to_usage()),
            (Some(s), Some(d)) => Some(s.overlaid_with(d).to_usage()),
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&str>, out: &mut BytesMut) {
        let chunk = ChatChunk::with_delta(&self.id, self.ctx.created, &self.model, delta, finish);
        sse::write_json(out, &chunk);
    }

    fn content(&mut self, text: &str, out: &mut BytesMut) {
        if text.is_empty() {
            return;
        }
        self.output_text.push_str(text);
        let delta = Delta {
            content: Some(text.to_string()),
            ..Delta::default()
        };
        self.chunk(delta, None, out);
    }

    fn tool_delta(&self, call: ToolCallDelta, out: &mut BytesMut) {
        let delta = Delta {
            tool_calls: Some(vec![call]),
            ..Delta::default()
        };
        self.chunk(delta, None, out);
    }

    fn handle(&mut self, ev: SseEvent, out: &mut BytesMut) -> Result<(), AdapterError> {
        // The usual event, read in one pass; any other goes through the JSON tree.
        if let Some(text) = text_delta(&ev.data) {
            self.content(&text, out);
            return Ok(());
        }
        let v: Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(e) => {
                return match ev.event.as_deref() {
                    // Events nothing depends on (ping, types added later) may be anything.
                    None | Some("ping") => Ok(()),
                    Some(name) if !is_known(name) => Ok(()),
                    Some(name) => Err(AdapterError::MalformedResponse(format!(
                        "`{name}` event is not JSON: {e}"
                    ))),
                };
            }
        };
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(ev.event.as_deref())
            .unwrap_or_default();
        match kind {
            "message_start" => self.message_start(&v, out),
            "content_block_start" => self.block_start(&v, out),
            "content_block_delta" => self.block_delta(&v, out),
            "message_delta" => self.message_delta(&v, out),
            "message_stop" => {
                if self.ctx.include_usage {
                    if let Some(usage) = self.usage() {
                        let chunk =
                            ChatChunk::usage_only(&self.id, self.ctx.created, &self.model, &usage);
                        sse::write_json(out, &chunk);
                    }
                }
                sse::write_done(out);
                self.done = true;
                Ok(())
            }
            "error" => {
                let err = upstream_error(200, &v, UpstreamErrorKind::Server).unwrap_or_else(|| {
                    UpstreamError {
                        status: 200,
                        kind: UpstreamErrorKind::Server,
                        message: "Anthropic reported an error in the stream".to_string(),
                        code: None,
                        param: None,
                        retry_after: None,
                    }
                });
                let frame = GatewayError::Upstream {
                    provider: ProviderKind::Anthropic,
                    error: err.clone(),
                }
                .to_json();
                sse::write_json(out, &frame);
                self.error = Some(err);
                self.done = true;
                Ok(())
            }
            // ping, content_block_stop, and event types added later carry nothing to relay.
            _ => Ok(()),
        }
    }

    fn message_start(&mut self, v: &Value, out: &mut BytesMut) -> Result<(), AdapterError> {
        let msg = v.get("message").ok_or_else(|| {
            AdapterError::MalformedResponse("`message_start` without `message`".into())
        })?;
        if let Some(id) = msg.get("id").and_then(Value::as_str) {
            self.id = id.to_string();
        }
        if let Some(model) = msg.get("model").and_then(Value::as_str) {
            self.model = model.to_string();
        }
        if let Some(usage) = msg.get("usage") {
            self.start_usage = Some(parse_usage(usage)?);
        }
        let delta = Delta {
            role: Some("assistant".to_string()),
            content: Some(String::new()),
            tool_calls: None,
        };
        self.chunk(delta, None, out);
        Ok(())
    }

    fn block_start(&mut self, v: &Value, out: &mut BytesMut) -> Result<(), AdapterError> {
        let block = v.get("content_block").unwrap_or(&Value::Null);
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.content(text, out);
            }
            Some("tool_use") => {
                let index = block_index(v)?;
                let k = self.next_tool;
                self.next_tool += 1;
                self.tool_index.insert(index, k);
                let field =
                    |name: &str| block.get(name).and_then(Value::as_str).map(str::to_string);
                let call = ToolCallDelta {
                    index: k,
                    id: field("id"),
                    kind: Some("function".to_string()),
                    function: FunctionDelta {
                        name: field("name"),
                        arguments: Some(String::new()),
                    },
                };
                self.tool_delta(call, out);
            }
            // thinking, redacted_thinking, server_tool_use, *_tool_result, compaction, …
            _ => {}
        }
        Ok(())
    }

    fn block_delta(&mut self, v: &Value, out: &mut BytesMut) -> Result<(), AdapterError> {
        let delta = v.get("delta").unwrap_or(&Value::Null);
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => {
                let text = delta
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.content(text, out);
            }
            Some("input_json_delta") => {
                // Input of a server tool (no entry in tool_index) is not relayed.
                let Some(&k) = self.tool_index.get(&block_index(v)?) else {
                    return Ok(());
                };
                let partial = delta
                    .get("partial_json")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if partial.is_empty() {
                    return Ok(());
                }
                self.output_text.push_str(partial);
                let call = ToolCallDelta {
                    index: k,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: Some(partial.to_string()),
                    },
                };
                self.tool_delta(call, out);
            }
            // thinking_delta, signature_delta, citations_delta, compaction_delta, …
            _ => {}
        }
        Ok(())
    }

    fn message_delta(&mut self, v: &Value, out: &mut BytesMut) -> Result<(), AdapterError> {
        if let Some(usage) = v.get("usage").filter(|u| !u.is_null()) {
            self.delta_usage = Some(parse_usage(usage)?);
        }
        let stop = v
            .get("delta")
            .and_then(|d| d.get("stop_reason"))
            .and_then(Value::as_str);
        if let Some(stop) = stop {
            let finish = finish_reason(stop);
            self.finish_reason = Some(finish.to_string());
            self.chunk(Delta::default(), Some(finish), out);
        }
        Ok(())
    }
}

/// Event names whose data this translator depends on.
fn is_known(name: &str) -> bool {
    matches!(
        name,
        "message_start"
            | "content_block_start"
            | "content_block_delta"
            | "message_delta"
            | "message_stop"
            | "error"
    )
}

fn block_index(v: &Value) -> Result<u64, AdapterError> {
    v.get("index").and_then(Value::as_u64).ok_or_else(|| {
        AdapterError::MalformedResponse("content block event without `index`".into())
    })
}

fn parse_usage(v: &Value) -> Result<WireUsage, AdapterError> {
    WireUsage::deserialize(v)
        .map_err(|e| AdapterError::MalformedResponse(format!("unreadable usage: {e}")))
}

impl StreamTranslator for AnthropicStream {
    fn push(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), AdapterError> {
        if self.done {
            return Ok(());
        }
        let mut events = Vec::new();
        self.parser
            .push(chunk, |e| events.push(e))
            .map_err(|e| AdapterError::EventTooLarge { limit: e.limit })?;
        for ev in events {
            if self.done {
                break;
            }
            self.handle(ev, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), AdapterError> {
        if self.done {
            return Ok(());
        }
        // A final `message_stop` that lacks its blank line still ends the stream.
        let mut tail = BytesMut::new();
        if let Some(ev) = self.parser.finish() {
            // An event the body cut off half-way reads as truncation, not as bad JSON.
            if self.handle(ev, &mut tail).is_err() {
                return Err(AdapterError::Truncated);
            }
        }
        if self.done {
            out.extend_from_slice(&tail);
            Ok(())
        } else {
            Err(AdapterError::Truncated)
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn outcome(&self) -> StreamOutcome {
        StreamOutcome {
            usage: self.usage(),
            finish_reason: self.finish_reason.clone(),
            output_text: self.output_text.clone(),
            error: self.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(include_usage: bool) -> ResponseContext {
        ResponseContext {
            id: "chatcmpl-local".into(),
            created: 1_700_000_000,
            model: "alias".into(),
            include_usage,
            max_event_bytes: crate::providers::sse::DEFAULT_MAX_EVENT_BYTES,
        }
    }

    fn frames(out: &[u8]) -> Vec<String> {
        sse::parse_all(out, out.len())
            .into_iter()
            .map(|e| e.data)
            .collect()
    }

    const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n";

    #[test]
    fn first_chunk_carries_the_role_and_the_message_id() {
        let mut t = AnthropicStream::new(ctx(false));
        let mut out = BytesMut::new();
        t.push(START.as_bytes(), &mut out).unwrap();
        let f = frames(&out);
        let v: Value = serde_json::from_str(&f[0]).unwrap();
        assert_eq!(v["id"], "msg_1");
        assert_eq!(v["model"], "claude-x");
        assert_eq!(v["choices"][0]["delta"]["role"], "assistant");
        assert!(!t.is_done());
    }

    #[test]
    fn unknown_events_and_unparseable_pings_are_ignored() {
        let mut t = AnthropicStream::new(ctx(false));
        let mut out = BytesMut::new();
        t.push(START.as_bytes(), &mut out).unwrap();
        let before = out.len();
        t.push(b"event: ping\ndata: \n\nevent: future_thing\ndata: {\"type\":\"future_thing\",\"x\":1}\n\nevent: other\ndata: not json\n\n", &mut out)
            .unwrap();
        assert_eq!(out.len(), before);
    }

    #[test]
    fn malformed_known_event_is_an_error() {
        let mut t = AnthropicStream::new(ctx(false));
        let r = t.push(
            b"event: message_start\ndata: {oops\n\n",
            &mut BytesMut::new(),
        );
        assert!(matches!(r, Err(AdapterError::MalformedResponse(_))));
    }

    #[test]
    fn oversized_event_is_reported() {
        let mut t = AnthropicStream::new(ctx(false));
        let big = vec![b'a'; sse::DEFAULT_MAX_EVENT_BYTES + 10];
        let r = t.push(&big, &mut BytesMut::new());
        assert!(matches!(r, Err(AdapterError::EventTooLarge { .. })));
    }

    #[test]
    fn bytes_after_message_stop_are_ignored() {
        let mut t = AnthropicStream::new(ctx(false));
        let mut out = BytesMut::new();
        t.push(START.as_bytes(), &mut out).unwrap();
        t.push(
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            &mut out,
        )
        .unwrap();
        assert!(t.is_done());
        let len = out.len();
        t.push(START.as_bytes(), &mut out).unwrap();
        t.finish(&mut out).unwrap();
        assert_eq!(out.len(), len);
    }

    #[test]
    fn before_message_delta_output_is_counted_from_the_relayed_text() {
        let mut t = AnthropicStream::new(ctx(false));
        let mut out = BytesMut::new();
        t.push(START.as_bytes(), &mut out).unwrap();
        // Nothing relayed yet: message_start's placeholder output count is the floor.
        let placeholder = Usage {
            estimated: true,
            ..Usage::new(5, 1)
        };
        assert_eq!(t.outcome().usage, Some(placeholder));
        t.push(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"one two three\"}}\n\n", &mut out)
            .unwrap();
        assert_eq!(t.finish(&mut out), Err(AdapterError::Truncated));
        // "one", " two", " three": three cl100k tokens.
        let counted = Usage {
            estimated: true,
            ..Usage::new(5, 3)
        };
        assert_eq!(t.outcome().usage, Some(counted));
    }

    #[test]
    fn truncated_stream_writes_nothing_at_finish() {
        let mut t = AnthropicStream::new(ctx(true));
        let mut out = BytesMut::new();
        t.push(START.as_bytes(), &mut out).unwrap();
        t.push(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}", &mut out)
            .unwrap();
        let mut tail = BytesMut::new();
        assert_eq!(t.finish(&mut tail), Err(AdapterError::Truncated));
        assert!(tail.is_empty());
    }
}
