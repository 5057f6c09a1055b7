//! Streams in OpenAI's data-only SSE dialect, terminated by `data: [DONE]`.
//!
//! [`DoneTerminatedStream`] owns what every such stream shares: incremental SSE parsing,
//! the `[DONE]` sentinel, in-band error payloads, and the truncation rule (a body that ends
//! before `[DONE]` is an error). A [`PayloadHandler`] supplies the provider-specific part:
//! what to do with each JSON chunk. OpenAI's handler ([`OpenAiPayloads`]) relays chunks
//! untouched, records usage, and hides the usage chunk from clients that did not ask for
//! it; Mistral plugs its own handler into the same driver.

use bytes::BytesMut;
use serde_json::Value;

use super::error::{error_frame, in_band_error, openai_error_fields, ErrorFields};
use super::skim::skim;
use super::usage_from_json;
use crate::providers::sse::{write_done, write_json, write_raw, SseEvent, SseParser};
use crate::providers::{AdapterError, StreamOutcome, StreamTranslator};

/// Message used when an error payload carries none.
const STREAM_ERROR_FALLBACK: &str = "The upstream provider reported an error during the stream.";

/// The provider-specific half of a `[DONE]`-terminated stream translator.
pub(crate) trait PayloadHandler: Send {
    /// The error fields, if `payload` is an in-band error rather than a chunk.
    fn error_fields(&self, payload: &Value) -> Option<ErrorFields>;

    /// Translates one chunk. `raw` is the payload text as received.
    fn chunk(
        &mut self,
        raw: &str,
        payload: Value,
        out: &mut BytesMut,
        outcome: &mut StreamOutcome,
    ) -> Result<(), AdapterError>;

    /// `[DONE]` arrived: writes whatever must precede the sentinel.
    fn before_done(&mut self, out: &mut BytesMut, outcome: &StreamOutcome);

    /// Handles a chunk from its text alone, without the JSON tree, when the handler can:
    /// returns `false` (and does nothing) for a payload it leaves to [`Self::error_fields`]
    /// and [`Self::chunk`], including anything that may be an error.
    fn chunk_text(
        &mut self,
        _raw: &str,
        _out: &mut BytesMut,
        _outcome: &mut StreamOutcome,
    ) -> bool {
        false
    }
}

/// A stream translator for data-only SSE streams ending in `data: [DONE]`.
pub(crate) struct DoneTerminatedStream<H> {
    parser: SseParser,
    state: State<H>,
}

struct State<H> {
    handler: H,
    done: bool,
    outcome: StreamOutcome,
}

impl<H: PayloadHandler> DoneTerminatedStream<H> {
    pub fn new(handler: H, parser: SseParser) -> Self {
        DoneTerminatedStream {
            parser,
            state: State {
                handler,
                done: false,
                outcome: StreamOutcome::default(),
            },
        }
    }
}

/// What one event's data is.
enum Payload {
    Empty,
    Done,
    Json(Value),
    Invalid(String),
}

fn classify(ev: &SseEvent) -> Payload {
    let data = ev.data.trim();
    if data.is_empty() {
        return Payload::Empty;
    }
    if data.starts_with("[DONE]") {
        return Payload::Done;
    }
    match serde_json::from_str::<Value>(data) {
        Ok(v) => Payload::Json(v),
        Err(e) => Payload::Invalid(e.to_string()),
    }
}

impl<H: PayloadHandler> State<H> {
    fn handle(&mut self, ev: SseEvent, out: &mut BytesMut) -> Result<(), AdapterError> {
        if self.done {
            return Ok(());
        }
        if self.handler.chunk_text(&ev.data, out, &mut self.outcome) {
            return Ok(());
        }
        match classify(&ev) {
            Payload::Empty => Ok(()),
            Payload::Done => {
                self.handler.before_done(out, &self.outcome);
                write_done(out);
                self.done = true;
                Ok(())
            }
            Payload::Json(v) => match self.handler.error_fields(&v) {
                Some(fields) => {
                    self.fail(&fields, out);
                    Ok(())
                }
                None => self.handler.chunk(&ev.data, v, out, &mut self.outcome),
            },
            // A named `error` event with plain-text data still is an error report.
            Payload::Invalid(_) if ev.event.as_deref() == Some("error") => {
                let fields = ErrorFields {
                    message: Some(ev.data.trim().to_string()),
                    ..ErrorFields::default()
                };
                self.fail(&fields, out);
                Ok(())
            }
            Payload::Invalid(e) => Err(AdapterError::MalformedResponse(format!(
                "stream event is not JSON: {e}"
            ))),
        }
    }

    fn fail(&mut self, fields: &ErrorFields, out: &mut BytesMut) {
        write_json(out, &error_frame(fields, STREAM_ERROR_FALLBACK));
        self.outcome.error = Some(in_band_error(fields, STREAM_ERROR_FALLBACK));
        self.done = true;
    }

    /// Whether a final event (one that lacked its blank line) ends the stream properly.
    fn is_terminal(&self, ev: &SseEvent) -> bool {
        match classify(ev) {
            Payload::Done => true,
            Payload::Json(v) => self.handler.error_fields(&v).is_some(),
            Payload::Invalid(_) => ev.event.as_deref() == Some("error"),
            Payload::Empty => false,
        }
    }
}

impl<H: PayloadHandler> StreamTranslator for DoneTerminatedStream<H> {
    fn push(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), AdapterError> {
        if self.state.done {
            return Ok(());
        }
        let state = &mut self.state;
        let mut failure = None;
        let parsed = self.parser.push(chunk, |ev| {
            if failure.is_none() {
                if let Err(e) = state.handle(ev, out) {
                    failure = Some(e);
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        parsed.map_err(|e| AdapterError::EventTooLarge { limit: e.limit })
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), AdapterError> {
        if self.state.done {
            return Ok(());
        }
        match self.parser.finish() {
            Some(ev) if self.state.is_terminal(&ev) => self.state.handle(ev, out),
            _ => Err(AdapterError::Truncated),
        }
    }

    fn is_done(&self) -> bool {
        self.state.done
    }

    fn outcome(&self) -> StreamOutcome {
        self.state.outcome.clone()
    }
}

/// OpenAI's chunks: relayed as received, usage recorded, the usage chunk shown only to
/// clients that asked for it.
pub(crate) struct OpenAiPayloads {
    /// The client asked for `stream_options.include_usage`.
    pub include_usage: bool,
}

impl PayloadHandler for OpenAiPayloads {
    fn error_fields(&self, payload: &Value) -> Option<ErrorFields> {
        openai_error_fields(payload)
    }

    fn chunk(
        &mut self,
        raw: &str,
        payload: Value,
        out: &mut BytesMut,
        outcome: &mut StreamOutcome,
    ) -> Result<(), AdapterError> {
        let usage = usage_from_json(payload.get("usage"));
        if usage.is_some() {
            outcome.usage = usage;
        }
        let choices = payload
            .get("choices")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for choice in choices {
            record_choice(choice, outcome);
        }
        // tollgate always asks OpenAI for usage; the client sees it only if it asked too.
        if choices.is_empty() && usage.is_some() && !self.include_usage {
            return Ok(());
        }
        relay(raw, Some(&payload), out);
        Ok(())
    }

    fn before_done(&mut self, _out: &mut BytesMut, _outcome: &StreamOutcome) {}

    /// The same as [`Self::chunk`] for chunks that are plain objects without `error`.
    fn chunk_text(&mut self, raw: &str, out: &mut BytesMut, outcome: &mut StreamOutcome) -> bool {
        let Some(chunk) = skim(raw) else {
            return false;
        };
        if chunk.error {
            return false;
        }
        let usage = chunk.usage();
        if usage.is_some() {
            outcome.usage = usage;
        }
        chunk.record_choices(outcome);
        // tollgate always asks OpenAI for usage; the client sees it only if it asked too.
        let no_choices = chunk.choices_empty().unwrap_or(true);
        if no_choices && usage.is_some() && !self.include_usage {
            return true;
        }
        relay(raw, None, out);
        true
    }
}

/// Writes a chunk as received, or re-encoded compactly if it spans lines (multi-line data
/// would not survive as one `data:` line); `parsed` is its tree when the caller has it.
fn relay(raw: &str, parsed: Option<&Value>, out: &mut BytesMut) {
    if memchr::memchr2(b'\n', b'\r', raw.as_bytes()).is_none() {
        write_raw(out, raw);
        return;
    }
    let read;
    let tree = match parsed {
        Some(v) => Some(v),
        None => {
            read = serde_json::from_str::<Value>(raw).ok();
            read.as_ref()
        }
    };
    match tree {
        Some(v) => write_json(out, v),
        None => write_raw(out, raw.trim()),
    }
}

/// Adds a chunk choice's text and tool-call arguments to the outcome, and its finish reason.
pub(super) fn record_choice(choice: &Value, outcome: &mut StreamOutcome) {
    if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
        outcome.finish_reason = Some(reason.to_string());
    }
    let Some(delta) = choice.get("delta") else {
        return;
    };
    for key in ["content", "refusal"] {
        if let Some(text) = delta.get(key).and_then(Value::as_str) {
            outcome.output_text.push_str(text);
        }
    }
    let calls = delta.get("tool_calls").and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        let function = call.get("function");
        if let Some(args) = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
        {
            outcome.output_text.push_str(args);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Usage;

    fn translator(include_usage: bool) -> DoneTerminatedStream<OpenAiPayloads> {
        DoneTerminatedStream::new(OpenAiPayloads { include_usage }, SseParser::default())
    }

    const CHUNK: &str = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
    const FINISH: &str = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
    const USAGE: &str = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4}}}"#;

    fn stream() -> String {
        format!("data: {CHUNK}\n\ndata: {FINISH}\n\ndata: {USAGE}\n\ndata: [DONE]\n\n")
    }

    #[test]
    fn usage_chunk_is_recorded_and_hidden_from_clients_that_did_not_ask() {
        let mut t = translator(false);
        let mut out = BytesMut::new();
        t.push(stream().as_bytes(), &mut out).unwrap();
        assert!(t.is_done());
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            format!("data: {CHUNK}\n\ndata: {FINISH}\n\ndata: [DONE]\n\n")
        );
        let o = t.outcome();
        assert_eq!(
            o.usage,
            Some(Usage {
                cached_input_tokens: 4,
                ..Usage::new(9, 2)
            })
        );
        assert_eq!(o.finish_reason.as_deref(), Some("stop"));
        assert_eq!(o.output_text, "Hi");
    }

    #[test]
    fn usage_chunk_is_relayed_to_clients_that_asked() {
        let mut t = translator(true);
        let mut out = BytesMut::new();
        t.push(stream().as_bytes(), &mut out).unwrap();
        assert_eq!(String::from_utf8(out.to_vec()).unwrap(), stream());
    }

    #[test]
    fn multi_line_data_is_re_encoded_on_one_line() {
        let mut t = translator(false);
        let mut out = BytesMut::new();
        t.push(b"data: {\"choices\":\ndata: []}\n\n", &mut out)
            .unwrap();
        assert_eq!(&out[..], b"data: {\"choices\":[]}\n\n");
    }

    #[test]
    fn error_payload_ends_the_stream_with_an_error_frame() {
        let mut t = translator(false);
        let mut out = BytesMut::new();
        let input = format!(
            "data: {CHUNK}\n\ndata: {{\"error\":{{\"message\":\"The server had an error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}}}\n\ndata: {CHUNK}\n\n"
        );
        t.push(input.as_bytes(), &mut out).unwrap();
        assert!(t.is_done());
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert_eq!(
            text,
            format!("data: {CHUNK}\n\ndata: {{\"error\":{{\"message\":\"The server had an error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}}}\n\n")
        );
        let err = t.outcome().error.unwrap();
        assert_eq!(err.status, 200);
        assert_eq!(err.kind, crate::providers::UpstreamErrorKind::Server);
        assert_eq!(err.message, "The server had an error");
        assert!(t.finish(&mut BytesMut::new()).is_ok());
    }

    #[test]
    fn body_ending_before_done_is_truncated_and_writes_nothing_more() {
        let mut t = translator(false);
        let mut out = BytesMut::new();
        t.push(
            format!("data: {CHUNK}\n\ndata: {FINISH}").as_bytes(),
            &mut out,
        )
        .unwrap();
        let before = out.len();
        assert_eq!(t.finish(&mut out), Err(AdapterError::Truncated));
        assert_eq!(out.len(), before);
        assert!(!t.is_done());
    }

    #[test]
    fn done_without_trailing_newline_still_ends_the_stream() {
        let mut t = translator(false);
        let mut out = BytesMut::new();
        t.push(
            format!("data: {CHUNK}\n\ndata: [DONE]").as_bytes(),
            &mut out,
        )
        .unwrap();
        assert!(!t.is_done());
        assert_eq!(t.finish(&mut out), Ok(()));
        assert!(t.is_done());
        assert!(out.ends_with(b"data: [DONE]\n\n"));
    }

    #[test]
    fn oversized_event_is_reported() {
        let mut t = DoneTerminatedStream::new(
            OpenAiPayloads {
                include_usage: false,
            },
            SseParser::new(64),
        );
        let mut out = BytesMut::new();
        let big = format!("data: {}\n\n", "x".repeat(100));
        assert_eq!(
            t.push(big.as_bytes(), &mut out),
            Err(AdapterError::EventTooLarge { limit: 64 })
        );
    }

    #[test]
    fn non_json_data_is_malformed() {
        let mut t = translator(false);
        let r = t.push(b"data: hello\n\n", &mut BytesMut::new());
        assert!(matches!(r, Err(AdapterError::MalformedResponse(_))));
    }

    #[test]
    fn tool_call_arguments_count_as_output_text() {
        let mut t = translator(false);
        let mut out = BytesMut::new();
        let input = r#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}]}

data: [DONE]

"#;
        t.push(input.as_bytes(), &mut out).unwrap();
        let o = t.outcome();
        assert_eq!(o.output_text, "{\"a\":1}");
        assert_eq!(o.finish_reason.as_deref(), Some("tool_calls"));
    }
}
