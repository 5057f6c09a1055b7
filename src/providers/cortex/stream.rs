//! Cortex event streams → OpenAI `chat.completion.chunk` frames.
//!
//! Native `inference:complete` streams are data-only SSE with no `[DONE]` and no finish
//! reason. Every object has `choices[0].delta` with a `type`: `text` (`content`) or
//! `tool_use` (`tool_use_id`, `name`, and `input` as a fragment of the arguments' JSON
//! text), plus a `content_list` copy of the same delta that must not be emitted twice.
//! `usage` is `{}` until the last object. One object may span several `data:` lines, which
//! SSE joins with newlines. An object with an `error` key (or Snowflake's `{message, code}`
//! error shape) is an error in the middle of the stream.
//!
//! The OpenAI-compatible endpoint streams OpenAI chunks with `id: ""`, `created: 0`, no
//! finish reason, `role` on every delta, `tool_calls: null` and empty `content` placeholders,
//! a usage-only chunk and `data: [DONE]`.
//!
//! [`CortexStream`] reads both: the first visible delta carries `role: "assistant"`, empty
//! placeholders are skipped, tool calls are numbered in order of appearance, and at the end
//! (`[DONE]`, or the end of the body for native streams) it writes the finish chunk (the
//! reason derived when Cortex gave none), the usage chunk if the client asked for it, and
//! `data: [DONE]`.

use bytes::BytesMut;
use serde_json::Value;

use super::error;
use super::response::{arguments, derived_finish, normalize_finish, usage_from};
use crate::api::response::FunctionDelta;
use crate::api::{ChatChunk, Delta, ToolCallDelta};
use crate::error::GatewayError;
use crate::providers::sse::{write_done, write_json, SseParser};
use crate::providers::{
    AdapterError, ProviderKind, ResponseContext, StreamOutcome, StreamTranslator, UpstreamError,
};
use crate::usage::Usage;

/// Translator for one Cortex stream (either endpoint).
pub struct CortexStream {
    ctx: ResponseContext,
    parser: SseParser,
    /// Id, timestamp and model for every chunk, fixed by the first upstream object.
    meta: Option<(String, u64, String)>,
    role_sent: bool,
    /// Native tool calls by `tool_use_id`, in order of appearance (position = OpenAI index).
    native_tools: Vec<String>,
    current_native_tool: Option<usize>,
    /// OpenAI-shaped tool calls by upstream `index`, in order of appearance.
    compat_tools: Vec<u64>,
    called_tools: bool,
    upstream_finish: Option<String>,
    finish_sent: bool,
    usage: Option<Usage>,
    output_text: String,
    error: Option<UpstreamError>,
    done: bool,
    saw_object: bool,
    /// Seen a trait only native streams have (`delta.type`, `content_list`, `usage: {}`).
    native_traits: bool,
    /// Seen `"object": "chat.completion.chunk"`.
    openai_traits: bool,
}

impl CortexStream {
    pub fn new(ctx: ResponseContext) -> Self {
        let max_event_bytes = ctx.max_event_bytes;
        CortexStream {
            ctx,
            parser: SseParser::new(max_event_bytes),
            meta: None,
            role_sent: false,
            native_tools: Vec::new(),
            current_native_tool: None,
            compat_tools: Vec::new(),
            called_tools: false,
            upstream_finish: None,
            finish_sent: false,
            usage: None,
            output_text: String::new(),
            error: None,
            done: false,
            saw_object: false,
            native_traits: false,
            openai_traits: false,
        }
    }

    fn on_data(&mut self, data: &str, out: &mut BytesMut) -> Result<(), AdapterError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            self.close(out);
            return Ok(());
        }
        for value in parse_values(data)? {
            if self.done {
                break;
            }
            self.on_value(&value, out);
        }
        Ok(())
    }

    fn on_value(&mut self, v: &Value, out: &mut BytesMut) {
        if let Some(err) = error::from_value(200, v) {
            self.fail(err, out);
            return;
        }
        let Some(obj) = v.as_object() else {
            return;
        };
        self.saw_object = true;
        if obj.get("object").and_then(Value::as_str) == Some("chat.completion.chunk") {
            self.openai_traits = true;
        }
        if self.meta.is_none() {
            let id = obj
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            let created = obj
                .get("created")
                .and_then(Value::as_u64)
                .filter(|c| *c > 0);
            let model = obj
                .get("model")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            self.meta = Some((
                id.unwrap_or(&self.ctx.id).to_string(),
                created.unwrap_or(self.ctx.created),
                model.unwrap_or(&self.ctx.model).to_string(),
            ));
        }
        match obj.get("usage") {
            Some(Value::Object(u)) if u.is_empty() => self.native_traits = true,
            Some(u) => {
                if let Some(usage) = usage_from(u) {
                    self.usage = Some(usage);
                }
            }
            None => {}
        }
        let Some(choice) = obj.get("choices").and_then(Value::as_array).and_then(|c| {
            c.iter()
                .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        }) else {
            return;
        };
        let finish = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .and_then(normalize_finish);
        let (text, tools) = match choice.get("delta") {
            Some(delta) => self.read_delta(delta),
            None => (String::new(), Vec::new()),
        };
        self.emit(text, tools, finish, out);
    }

    /// Text and tool-call deltas of one upstream delta, whichever endpoint sent it.
    fn read_delta(&mut self, delta: &Value) -> (String, Vec<ToolCallDelta>) {
        let mut text = String::new();
        let mut tools = Vec::new();
        if delta.get("type").is_some() || delta.get("content_list").is_some() {
            self.native_traits = true;
        }
        match delta.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(str_of(delta.get("content")).unwrap_or("")),
            Some("tool_use") => tools.extend(self.native_tool(delta)),
            // `anthropic` thinking and `openai` reasoning have no place in OpenAI chunks.
            Some(_) => {}
            None => {
                text.push_str(str_of(delta.get("content")).unwrap_or(""));
                for tc in delta
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    tools.extend(self.compat_tool(tc));
                }
                if text.is_empty() && tools.is_empty() {
                    // Only the `content_list` copy: read the items themselves.
                    for item in delta
                        .get("content_list")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        match item.get("type").and_then(Value::as_str) {
                            Some("text") => text.push_str(
                                str_of(item.get("text").or_else(|| item.get("content")))
                                    .unwrap_or(""),
                            ),
                            Some("tool_use") => {
                                tools.extend(self.native_tool(item.get("tool_use").unwrap_or(item)))
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        (text, tools)
    }

    /// A native `tool_use` delta: a new call when its `tool_use_id` is new, else more of the
    /// arguments of the call it names (or of the current call when it names none).
    fn native_tool(&mut self, d: &Value) -> Option<ToolCallDelta> {
        let id = str_of(d.get("tool_use_id")).filter(|s| !s.is_empty());
        let args = match d.get("input") {
            None | Some(Value::Null) => String::new(),
            input => arguments(input),
        };
        let existing = match id {
            Some(id) => self.native_tools.iter().position(|t| t == id),
            None => self.current_native_tool,
        };
        if let Some(index) = existing {
            self.current_native_tool = Some(index);
            return more_arguments(index, args);
        }
        let index = self.native_tools.len();
        let id = id.map_or_else(|| format!("call_{index}"), str::to_string);
        self.native_tools.push(id.clone());
        self.current_native_tool = Some(index);
        self.called_tools = true;
        Some(ToolCallDelta {
            index: index as u32,
            id: Some(id),
            kind: Some("function".into()),
            function: FunctionDelta {
                name: Some(str_of(d.get("name")).unwrap_or("").to_string()),
                arguments: Some(args),
            },
        })
    }

    /// An OpenAI-shaped tool-call delta; id and name are passed on once per call (clients
    /// concatenate repeated strings).
    fn compat_tool(&mut self, tc: &Value) -> Option<ToolCallDelta> {
        let upstream = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
        let function = tc.get("function").unwrap_or(&Value::Null);
        let args = match function.get("arguments") {
            None | Some(Value::Null) => String::new(),
            a => arguments(a),
        };
        if let Some(index) = self.compat_tools.iter().position(|i| *i == upstream) {
            return more_arguments(index, args);
        }
        let index = self.compat_tools.len();
        self.compat_tools.push(upstream);
        self.called_tools = true;
        let id = str_of(tc.get("id")).filter(|s| !s.is_empty());
        Some(ToolCallDelta {
            index: index as u32,
            id: Some(id.map_or_else(|| format!("call_{index}"), str::to_string)),
            kind: Some("function".into()),
            function: FunctionDelta {
                name: Some(str_of(function.get("name")).unwrap_or("").to_string()),
                arguments: Some(args),
            },
        })
    }

    fn emit(
        &mut self,
        text: String,
        tools: Vec<ToolCallDelta>,
        finish: Option<String>,
        out: &mut BytesMut,
    ) {
        self.output_text.push_str(&text);
        for t in &tools {
            self.output_text
                .push_str(t.function.arguments.as_deref().unwrap_or(""));
        }
        if text.is_empty() && tools.is_empty() && finish.is_none() {
            return;
        }
        if finish.is_some() {
            self.upstream_finish = finish.clone();
            self.finish_sent = true;
        }
        let delta = Delta {
            role: (!self.role_sent).then(|| "assistant".to_string()),
            content: (!text.is_empty()).then_some(text),
            tool_calls: (!tools.is_empty()).then_some(tools),
        };
        self.role_sent = true;
        self.write_chunk(delta, finish.as_deref(), out);
    }

    fn write_chunk(&mut self, delta: Delta, finish: Option<&str>, out: &mut BytesMut) {
        let (id, created, model) = self.meta();
        write_json(
            out,
            &ChatChunk::with_delta(&id, created, &model, delta, finish),
        );
    }

    fn meta(&self) -> (String, u64, String) {
        self.meta.clone().unwrap_or_else(|| {
            (
                self.ctx.id.clone(),
                self.ctx.created,
                self.ctx.model.clone(),
            )
        })
    }

    /// Writes the closing frames: finish chunk (unless Cortex sent one), usage chunk when
    /// asked for, `[DONE]`.
    fn close(&mut self, out: &mut BytesMut) {
        if self.done {
            return;
        }
        if !self.finish_sent {
            let reason = self
                .upstream_finish
                .clone()
                .unwrap_or_else(|| derived_finish(self.called_tools).to_string());
            let delta = Delta {
                role: (!self.role_sent).then(|| "assistant".to_string()),
                ..Delta::default()
            };
            self.role_sent = true;
            self.write_chunk(delta, Some(&reason), out);
            self.upstream_finish = Some(reason);
            self.finish_sent = true;
        }
        if self.ctx.include_usage {
            if let Some(u) = &self.usage {
                let (id, created, model) = self.meta();
                write_json(out, &ChatChunk::usage_only(&id, created, &model, u));
            }
        }
        write_done(out);
        self.done = true;
    }

    fn fail(&mut self, err: UpstreamError, out: &mut BytesMut) {
        let frame = GatewayError::Upstream {
            provider: ProviderKind::Cortex,
            error: err.clone(),
        }
        .to_json();
        write_json(out, &frame);
        self.error = Some(err);
        self.done = true;
    }
}

impl StreamTranslator for CortexStream {
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
            self.on_data(&ev.data, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), AdapterError> {
        if self.done {
            return Ok(());
        }
        if let Some(ev) = self.parser.finish() {
            self.on_data(&ev.data, out)?;
            if self.done {
                return Ok(());
            }
        }
        // Native streams simply end; an OpenAI-shaped stream without `[DONE]` was cut off.
        if !self.saw_object || (self.openai_traits && !self.native_traits) {
            return Err(AdapterError::Truncated);
        }
        self.close(out);
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn outcome(&self) -> StreamOutcome {
        StreamOutcome {
            usage: self.usage,
            finish_reason: self.upstream_finish.clone(),
            output_text: self.output_text.clone(),
            error: self.error.clone(),
        }
    }
}

/// The delta continuing tool call `index` with `args` (nothing when `args` is empty).
fn more_arguments(index: usize, args: String) -> Option<ToolCallDelta> {
    if args.is_empty() {
        return None;
    }
    Some(ToolCallDelta {
        index: index as u32,
        id: None,
        kind: None,
        function: FunctionDelta {
            name: None,
            arguments: Some(args),
        },
    })
}

fn str_of(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

/// The JSON values of one event's data. Normally one object; tolerated besides: several
/// objects in one event (consecutive `data:` lines without a blank line between them), and
/// one object broken across `data:` lines in the middle of a token (the joining newline
/// removed).
fn parse_values(data: &str) -> Result<Vec<Value>, AdapterError> {
    if let Ok(v) = serde_json::from_str::<Value>(data) {
        return Ok(vec![v]);
    }
    if let Some(vs) = parse_sequence(data) {
        return Ok(vs);
    }
    if data.contains('\n') {
        let joined: String = data.split('\n').collect();
        if let Some(vs) = parse_sequence(&joined) {
            return Ok(vs);
        }
    }
    let mut end = data.len().min(200);
    while !data.is_char_boundary(end) {
        end -= 1;
    }
    Err(AdapterError::MalformedResponse(format!(
        "stream event is not JSON: {}",
        &data[..end]
    )))
}

fn parse_sequence(data: &str) -> Option<Vec<Value>> {
    let values = serde_json::Deserializer::from_str(data)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    (!values.is_empty()).then_some(values)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::providers::sse::parse_all;

    fn ctx(include_usage: bool) -> ResponseContext {
        ResponseContext {
            id: "chatcmpl-ctx".into(),
            created: 1_700_000_000,
            model: "ctx-model".into(),
            include_usage,
            max_event_bytes: crate::providers::sse::DEFAULT_MAX_EVENT_BYTES,
        }
    }

    /// Runs a whole stream and returns the data of every frame as JSON (`[DONE]` as a string).
    fn run(
        input: &str,
        include_usage: bool,
    ) -> (Vec<Value>, CortexStream, Result<(), AdapterError>) {
        let mut s = CortexStream::new(ctx(include_usage));
        let mut out = BytesMut::new();
        s.push(input.as_bytes(), &mut out).unwrap();
        let r = s.finish(&mut out);
        let frames = parse_all(&out, out.len())
            .into_iter()
            .map(|e| serde_json::from_str(&e.data).unwrap_or(Value::String(e.data)))
            .collect();
        (frames, s, r)
    }

    #[test]
    fn object_split_across_data_lines_is_joined() {
        let input = "data: {\"id\":\"a\",\"model\":\"m\",\n\
                     data: \"choices\":[{\"delta\":{\"type\":\"text\",\"content\":\"Hi\"}}],\n\
                     data: \"usage\":{}}\n\n";
        let (frames, s, r) = run(input, false);
        r.unwrap();
        assert_eq!(
            frames[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": "Hi"})
        );
        assert_eq!(frames[0]["id"], "a");
        assert_eq!(frames[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(frames[2], "[DONE]");
        assert_eq!(s.outcome().output_text, "Hi");
    }

    #[test]
    fn object_split_inside_a_token_and_objects_sharing_an_event_are_read() {
        let input = "data: {\"choices\":[{\"delta\":{\"type\":\"text\",\"content\":\"Hel\n\
                     data: lo\"}}]}\n\n\
                     data: {\"choices\":[{\"delta\":{\"type\":\"text\",\"content\":\" a\"}}]}\n\
                     data: {\"choices\":[{\"delta\":{\"type\":\"text\",\"content\":\"b\"}}]}\n\n";
        let (_, s, r) = run(input, false);
        r.unwrap();
        assert_eq!(s.outcome().output_text, "Hello ab");
    }

    #[test]
    fn content_list_copy_is_not_emitted_twice() {
        let input = "data: {\"choices\":[{\"delta\":{\"type\":\"text\",\"content\":\"x\",\"content_list\":[{\"type\":\"text\",\"text\":\"x\"}]}}],\"usage\":{}}\n\n";
        let (frames, s, _) = run(input, false);
        assert_eq!(frames[0]["choices"][0]["delta"]["content"], "x");
        assert_eq!(frames.len(), 3);
        assert_eq!(s.outcome().output_text, "x");
    }

    #[test]
    fn tool_use_fragments_become_one_call_and_finish_with_tool_calls() {
        let input = "data: {\"choices\":[{\"delta\":{\"type\":\"tool_use\",\"tool_use_id\":\"t1\",\"name\":\"f\",\"input\":\"\"}}]}\n\n\
                     data: {\"choices\":[{\"delta\":{\"type\":\"tool_use\",\"tool_use_id\":\"t1\",\"name\":\"f\",\"input\":\"{\\\"a\\\":\"}}]}\n\n\
                     data: {\"choices\":[{\"delta\":{\"type\":\"tool_use\",\"input\":\"1}\"}}]}\n\n";
        let (frames, s, _) = run(input, false);
        assert_eq!(
            frames[0]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}])
        );
        assert_eq!(
            frames[1]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "function": {"arguments": "{\"a\":"}}])
        );
        assert_eq!(
            frames[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "1}"
        );
        assert_eq!(frames[3]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(s.outcome().finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn mid_stream_error_writes_an_error_frame_and_ends() {
        let input = "data: {\"choices\":[{\"delta\":{\"type\":\"text\",\"content\":\"x\"}}]}\n\n\
                     data: {\"message\":\"Request failed\",\"code\":\"390000\",\"request_id\":\"r1\"}\n\n\
                     data: {\"choices\":[{\"delta\":{\"type\":\"text\",\"content\":\"y\"}}]}\n\n";
        let (frames, s, r) = run(input, true);
        r.unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(
            frames[1]["error"]["message"],
            "Request failed (request id r1)"
        );
        assert_eq!(frames[1]["error"]["code"], "390000");
        assert!(s.is_done());
        assert_eq!(s.outcome().error.unwrap().code.as_deref(), Some("390000"));
    }

    #[test]
    fn openai_shaped_stream_without_done_is_truncated_and_empty_body_too() {
        let input = "data: {\"object\":\"chat.completion.chunk\",\"id\":\"\",\"created\":0,\"choices\":[{\"delta\":{\"content\":\"4\",\"role\":\"assistant\"},\"index\":0}]}\n\n";
        let (_, _, r) = run(input, false);
        assert_eq!(r, Err(AdapterError::Truncated));
        let (_, _, r) = run("", false);
        assert_eq!(r, Err(AdapterError::Truncated));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        const PIECES: [&str; 24] = [
            "data: ",
            "data:",
            "\n",
            "\r\n",
            "\n\n",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "\"choices\"",
            "\"delta\"",
            "\"type\"",
            "\"tool_use\"",
            "\"text\"",
            "\"input\"",
            "\"usage\"",
            "\"error\"",
            "\"tool_calls\"",
            "0",
            "null",
            "[DONE]",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..3000 {
            let input: String = (0..rng.usize(1..60))
                .map(|_| PIECES[rng.usize(..PIECES.len())])
                .collect();
            let mut s = CortexStream::new(ctx(rng.bool()));
            let mut out = BytesMut::new();
            for c in input.as_bytes().chunks(rng.usize(1..9)) {
                let _ = s.push(c, &mut out);
            }
            let _ = s.finish(&mut out);
            let _ = s.outcome();
            let _ = super::super::response::parse(input.as_bytes(), &ctx(false));
        }
    }

    #[test]
    fn values_of_unexpected_types_and_sizes_never_panic() {
        let max = u64::MAX;
        let events = [
            json!({"choices": [{"delta": {"type": "tool_use", "tool_use_id": 5, "name": null, "input": {"a": 1}}}],
                "usage": {"prompt_tokens": max, "completion_tokens": max, "guard_tokens": max,
                    "cache_read_input_tokens": max, "cache_write_input_tokens": max, "total_tokens": 1}}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": max, "function": {"arguments": {"x": 1}}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": -1, "id": 3}, "x"]}}]}),
            json!({"choices": [{"delta": {"content_list": [{"type": "tool_use", "tool_use": 1}, 7]}}]}),
            json!({"choices": [{"delta": "text", "finish_reason": 3}]}),
            json!({"choices": [1, null]}),
            json!({"choices": "x", "usage": [1], "id": 1, "created": -5, "model": {}}),
            json!({"error": 5}),
            json!([1, 2]),
            json!("str"),
        ];
        for ev in &events {
            let input = format!("data: {ev}\n\n");
            let (_, s, _) = run(&input, true);
            let _ = s.outcome();
            let _ = super::super::response::parse(ev.to_string().as_bytes(), &ctx(true));
        }
    }

    #[test]
    fn garbage_event_is_malformed() {
        let mut s = CortexStream::new(ctx(false));
        let mut out = BytesMut::new();
        let r = s.push(b"data: {nope\n\n", &mut out);
        assert!(matches!(r, Err(AdapterError::MalformedResponse(_))));
    }
}
