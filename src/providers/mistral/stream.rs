//! Mistral stream chunks → OpenAI stream chunks.
//!
//! Mistral streams OpenAI-shaped chunks ending in `data: [DONE]`, so the shared
//! [`DoneTerminatedStream`](crate::providers::openai::stream::DoneTerminatedStream) driver does the framing and this handler rewrites each chunk:
//!
//! - usage rides on the last content chunk; it is removed there and, if the client asked
//!   for `include_usage`, sent as a separate `choices: []` chunk just before `[DONE]`;
//! - the first delta of each tool call gets `"type": "function"` (Mistral sends whole
//!   tool calls in one delta, without `type`), and object arguments become a JSON string;
//! - content given as a list (reasoning models) becomes its text; thinking is dropped, and
//!   a chunk left with nothing to say is not sent;
//! - finish reasons are mapped to OpenAI's, and a finish reason that arrives with a tool
//!   call (Mistral sends whole calls in the finish chunk) goes in a chunk of its own with an
//!   empty delta, as OpenAI sends it.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::error::in_band_error_fields;
use super::response::{finish_reason, MistralContent, MistralToolCall, MistralUsage};
use crate::api::response::FunctionDelta;
use crate::api::{ChatChunk, ChunkChoice, Delta, ToolCallDelta};
use crate::providers::openai::error::ErrorFields;
use crate::providers::openai::skim::Obj;
use crate::providers::openai::stream::PayloadHandler;
use crate::providers::sse::write_json;
use crate::providers::{AdapterError, ResponseContext, StreamOutcome};

#[derive(Debug, Deserialize)]
struct MistralChunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<MistralChunkChoice>,
    #[serde(default)]
    usage: Option<MistralUsage>,
}

#[derive(Debug, Deserialize)]
struct MistralChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: MistralDelta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct MistralDelta {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<MistralContent>,
    #[serde(default)]
    tool_calls: Option<Vec<MistralToolCall>>,
}

/// The fields that tell an error payload from a chunk, read without the JSON tree:
/// `error` (not null), `object` (its text), and whether `detail` is there at all.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Envelope<'a> {
    #[serde(borrow)]
    error: Option<&'a RawValue>,
    #[serde(borrow)]
    object: Option<Cow<'a, str>>,
    #[serde(deserialize_with = "present")]
    detail: bool,
}

/// `true` for a field that is there, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// The Mistral half of a `[DONE]`-terminated stream translator.
pub(super) struct MistralPayloads {
    include_usage: bool,
    /// id / created / model of the latest chunk (the context's values until one arrives),
    /// reused for the synthetic usage chunk.
    id: String,
    created: u64,
    model: String,
    /// Per choice, the tool calls announced so far, in order.
    tool_calls: HashMap<u32, ToolCallSlots>,
}

impl MistralPayloads {
    pub fn new(ctx: &ResponseContext) -> Self {
        MistralPayloads {
            include_usage: ctx.include_usage,
            id: ctx.id.clone(),
            created: ctx.created,
            model: ctx.model.clone(),
            tool_calls: HashMap::new(),
        }
    }

    /// Records a chunk's usage and text and writes its OpenAI form.
    fn relay(&mut self, chunk: MistralChunk, out: &mut BytesMut, outcome: &mut StreamOutcome) {
        if let Some(id) = chunk.id.filter(|s| !s.is_empty()) {
            self.id = id;
        }
        if let Some(created) = chunk.created {
            self.created = created;
        }
        if let Some(model) = chunk.model.filter(|s| !s.is_empty()) {
            self.model = model;
        }
        if let Some(usage) = chunk.usage.as_ref().and_then(MistralUsage::to_usage) {
            outcome.usage = Some(usage);
        }
        let mut choices: Vec<ChunkChoice> = chunk
            .choices
            .into_iter()
            .filter_map(|c| self.translate_choice(c, outcome))
            .collect();
        let finishes = split_finish_from_tool_calls(&mut choices);
        for choices in [choices, finishes] {
            if !choices.is_empty() {
                write_json(
                    out,
                    &ChatChunk {
                        id: self.id.clone(),
                        object: "chat.completion.chunk".to_string(),
                        created: self.created,
                        model: self.model.clone(),
                        choices,
                        usage: None,
                    },
                );
            }
        }
    }

    fn translate_choice(
        &mut self,
        c: MistralChunkChoice,
        outcome: &mut StreamOutcome,
    ) -> Option<ChunkChoice> {
        let finish = c.finish_reason.as_deref().map(finish_reason);
        if let Some(f) = &finish {
            outcome.finish_reason = Some(f.clone());
        }
        let from_list = matches!(c.delta.content, Some(MistralContent::Chunks(_)));
        let content = c.delta.content.as_ref().map(MistralContent::text);
        // A list that held only thinking says nothing to an OpenAI client.
        let content = content.filter(|t| !(from_list && t.is_empty()));
        if let Some(t) = &content {
            outcome.output_text.push_str(t);
        }
        let tool_calls = c.delta.tool_calls.map(|calls| {
            calls
                .into_iter()
                .enumerate()
                .map(|(pos, call)| self.tool_call_delta(c.index, pos, call, outcome))
                .collect::<Vec<_>>()
        });
        let tool_calls = tool_calls.filter(|t| !t.is_empty());
        if finish.is_none() && c.delta.role.is_none() && content.is_none() && tool_calls.is_none() {
            return None;
        }
        Some(ChunkChoice {
            index: c.index,
            delta: Delta {
                role: c.delta.role,
                content,
                tool_calls,
            },
            finish_reason: finish,
            logprobs: None,
        })
    }

    fn tool_call_delta(
        &mut self,
        choice: u32,
        position: usize,
        call: MistralToolCall,
        outcome: &mut StreamOutcome,
    ) -> ToolCallDelta {
        let slots = self.tool_calls.entry(choice).or_default();
        let (index, first) =
            slots.assign(call.index.unwrap_or(position as u32), call.id.as_deref());
        let arguments = call.function.arguments_text();
        if let Some(a) = &arguments {
            outcome.output_text.push_str(a);
        }
        ToolCallDelta {
            index,
            id: call.id,
            kind: first.then(|| "function".to_string()),
            function: FunctionDelta {
                name: call.function.name,
                arguments,
            },
        }
    }
}

/// Takes the finish reason off every choice whose delta also carries tool calls and returns
/// it as a choice of its own with an empty delta, to be sent as the next chunk. Mistral
/// sends a whole tool call in its finish chunk; OpenAI always ends a choice with a chunk of
/// its own, and clients rely on it (the OpenAI SDK's stream helper closes a call when the
/// finish reason arrives, so a call arriving with it never gets its `arguments.done`).
fn split_finish_from_tool_calls(choices: &mut [ChunkChoice]) -> Vec<ChunkChoice> {
    choices
        .iter_mut()
        .filter(|c| c.delta.tool_calls.is_some())
        .filter_map(|c| {
            c.finish_reason.take().map(|finish| ChunkChoice {
                index: c.index,
                delta: Delta::default(),
                finish_reason: Some(finish),
                logprobs: None,
            })
        })
        .collect()
}

/// Maps Mistral's tool-call indices to OpenAI's, which count the calls of one choice from
/// 0 in order. Mistral's `index` defaults to 0, so a delta carrying a new id under an index
/// already used starts a new call rather than extending the previous one.
#[derive(Debug, Default)]
struct ToolCallSlots {
    /// Mistral index → (OpenAI index, id of the call currently under that index).
    by_upstream: HashMap<u32, (u32, Option<String>)>,
    count: u32,
}

impl ToolCallSlots {
    /// The OpenAI index for a delta, and whether it is the call's first delta.
    fn assign(&mut self, upstream: u32, id: Option<&str>) -> (u32, bool) {
        match self.by_upstream.get(&upstream) {
            Some((index, known)) if id.is_none() || id == known.as_deref() => (*index, false),
            _ => {
                let index = self.count;
                self.count = self.count.saturating_add(1);
                self.by_upstream
                    .insert(upstream, (index, id.map(str::to_string)));
                (index, true)
            }
        }
    }
}

impl PayloadHandler for MistralPayloads {
    fn error_fields(&self, payload: &Value) -> Option<ErrorFields> {
        in_band_error_fields(payload)
    }

    fn chunk(
        &mut self,
        _raw: &str,
        payload: Value,
        out: &mut BytesMut,
        outcome: &mut StreamOutcome,
    ) -> Result<(), AdapterError> {
        let chunk: MistralChunk = serde_json::from_value(payload).map_err(|e| {
            AdapterError::MalformedResponse(format!("unexpected stream chunk shape: {e}"))
        })?;
        self.relay(chunk, out, outcome);
        Ok(())
    }

    /// The same as [`Self::chunk`] straight from the text, without the JSON tree, for a
    /// payload that cannot be an error (see [`in_band_error_fields`]) and has the chunk's
    /// shape; anything else is left to the tree.
    fn chunk_text(&mut self, raw: &str, out: &mut BytesMut, outcome: &mut StreamOutcome) -> bool {
        let Some(envelope) = Obj::<Envelope>::read(raw) else {
            return false;
        };
        let error_like = envelope.error.is_some()
            || envelope.detail
            || envelope
                .object
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case("error"));
        if error_like {
            return false;
        }
        match serde_json::from_str::<MistralChunk>(raw) {
            Ok(chunk) => {
                self.relay(chunk, out, outcome);
                true
            }
            Err(_) => false,
        }
    }

    fn before_done(&mut self, out: &mut BytesMut, outcome: &StreamOutcome) {
        if let (true, Some(usage)) = (self.include_usage, &outcome.usage) {
            write_json(
                out,
                &ChatChunk::usage_only(&self.id, self.created, &self.model, usage),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_indices_count_calls_in_order() {
        let mut slots = ToolCallSlots::default();
        assert_eq!(slots.assign(0, Some("aaaaaaaaa")), (0, true));
        assert_eq!(slots.assign(0, None), (0, false));
        assert_eq!(slots.assign(0, Some("aaaaaaaaa")), (0, false));
        // A new call reusing index 0, as Mistral's default index would produce.
        assert_eq!(slots.assign(0, Some("bbbbbbbbb")), (1, true));
        assert_eq!(slots.assign(5, Some("ccccccccc")), (2, true));
        assert_eq!(slots.assign(5, None), (2, false));
    }

    fn chunks_of(h: &mut MistralPayloads, payload: Value) -> Vec<Value> {
        let mut out = BytesMut::new();
        let mut outcome = StreamOutcome::default();
        h.chunk("", payload, &mut out, &mut outcome).unwrap();
        crate::providers::sse::parse_all(&out, out.len())
            .iter()
            .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["choices"].clone())
            .collect()
    }

    #[test]
    fn finish_reason_arriving_with_a_tool_call_gets_a_chunk_of_its_own() {
        let ctx = ResponseContext {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "m".into(),
            include_usage: false,
            max_event_bytes: crate::providers::sse::DEFAULT_MAX_EVENT_BYTES,
        };
        let mut h = MistralPayloads::new(&ctx);
        let chunks = chunks_of(
            &mut h,
            serde_json::json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "delta": {
                "tool_calls": [{"id": "aaaaaaaaa", "function": {"name": "f", "arguments": "{}"}}]
            }}]}),
        );
        assert_eq!(
            chunks,
            vec![
                serde_json::json!([{"index": 0, "finish_reason": null, "logprobs": null, "delta": {
                    "tool_calls": [{"index": 0, "id": "aaaaaaaaa", "type": "function",
                                    "function": {"name": "f", "arguments": "{}"}}]}}]),
                serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls", "logprobs": null}]),
            ]
        );
        // Text keeps its finish reason on the same chunk.
        let chunks = chunks_of(
            &mut h,
            serde_json::json!({"choices": [{"index": 0, "finish_reason": "stop", "delta": {"content": "."}}]}),
        );
        assert_eq!(
            chunks,
            vec![
                serde_json::json!([{"index": 0, "delta": {"content": "."}, "finish_reason": "stop", "logprobs": null}])
            ]
        );
    }

    #[test]
    fn whole_tool_calls_in_separate_chunks_get_distinct_indices_and_a_type() {
        let ctx = ResponseContext {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "m".into(),
            include_usage: false,
            max_event_bytes: crate::providers::sse::DEFAULT_MAX_EVENT_BYTES,
        };
        let mut h = MistralPayloads::new(&ctx);
        let mut out = BytesMut::new();
        let mut outcome = StreamOutcome::default();
        for id in ["aaaaaaaaa", "bbbbbbbbb"] {
            let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"id": id, "function": {"name": "f", "arguments": {"x": 1}}}
            ]}}]});
            h.chunk("", chunk, &mut out, &mut outcome).unwrap();
        }
        let events = crate::providers::sse::parse_all(&out, out.len());
        let calls: Vec<Value> = events
            .iter()
            .map(|e| {
                serde_json::from_str::<Value>(&e.data).unwrap()["choices"][0]["delta"]["tool_calls"]
                    [0]
                .clone()
            })
            .collect();
        assert_eq!(
            calls,
            vec![
                serde_json::json!({"index": 0, "id": "aaaaaaaaa", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}),
                serde_json::json!({"index": 1, "id": "bbbbbbbbb", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}),
            ]
        );
        assert_eq!(outcome.output_text, "{\"x\":1}{\"x\":1}");
    }

    /// The Mistral handler with its text path turned off: every chunk goes through the tree.
    struct TreeOnly(MistralPayloads);

    impl PayloadHandler for TreeOnly {
        fn error_fields(&self, payload: &Value) -> Option<ErrorFields> {
            self.0.error_fields(payload)
        }
        fn chunk(
            &mut self,
            raw: &str,
            payload: Value,
            out: &mut BytesMut,
            outcome: &mut StreamOutcome,
        ) -> Result<(), AdapterError> {
            self.0.chunk(raw, payload, out, outcome)
        }
        fn before_done(&mut self, out: &mut BytesMut, outcome: &StreamOutcome) {
            self.0.before_done(out, outcome)
        }
    }

    fn run<H: PayloadHandler>(
        h: H,
        input: &[u8],
    ) -> (String, Option<crate::usage::Usage>, String, bool) {
        use crate::providers::openai::stream::DoneTerminatedStream;
        use crate::providers::sse::SseParser;
        use crate::providers::StreamTranslator;
        let mut t = DoneTerminatedStream::new(h, SseParser::default());
        let mut out = BytesMut::new();
        let ok = t.push(input, &mut out).is_ok() && t.finish(&mut out).is_ok();
        let o = t.outcome();
        (
            String::from_utf8_lossy(&out).into_owned(),
            o.usage,
            o.output_text,
            ok && o.error.is_none(),
        )
    }

    #[test]
    fn chunks_read_from_text_translate_as_through_the_json_tree() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mistral");
        let mut streams: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".stream.sse"))
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        assert!(streams.len() >= 3, "recorded streams: {}", streams.len());
        for odd in [
            r#"{"object":"error","message":"boom","type":"x"}"#,
            r#"{"detail":null}"#,
            r#"{"error":{"message":"m"}}"#,
            r#"{"id":"a","choices":[{"index":0,"delta":{"content":"x"}}],"choices":[]}"#,
            r#"{"id":"a","object":7,"choices":[]}"#,
            r#"{"id":"a","choices":[{"index":0,"delta":{"content":[{"type":"text","text":"hi"}]},"finish_reason":"stop"}]}"#,
            r#"{"id":"a","choices":[{"index":0,"delta":{"tool_calls":[{"id":"c1","function":{"name":"f","arguments":{"a":1}}}]},"finish_reason":"tool_calls"}]}"#,
        ] {
            streams.push(format!("data: {odd}\n\ndata: [DONE]\n\n").into_bytes());
        }
        let ctx = ResponseContext {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "m".into(),
            include_usage: true,
            max_event_bytes: crate::providers::sse::DEFAULT_MAX_EVENT_BYTES,
        };
        // The recorded chunks do take the text path; error-like payloads do not.
        let text = String::from_utf8_lossy(&streams[0]).into_owned();
        let mut read_as_text = 0;
        for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            let mut h = MistralPayloads::new(&ctx);
            let (mut out, mut outcome) = (BytesMut::new(), StreamOutcome::default());
            if data.starts_with('{') && h.chunk_text(data, &mut out, &mut outcome) {
                read_as_text += 1;
            }
        }
        assert!(read_as_text > 0);
        for error in [r#"{"object":"Error","message":"m"}"#, r#"{"detail":null}"#] {
            let mut h = MistralPayloads::new(&ctx);
            let (mut out, mut outcome) = (BytesMut::new(), StreamOutcome::default());
            assert!(!h.chunk_text(error, &mut out, &mut outcome), "{error}");
        }
        for input in &streams {
            assert_eq!(
                run(MistralPayloads::new(&ctx), input),
                run(TreeOnly(MistralPayloads::new(&ctx)), input),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
