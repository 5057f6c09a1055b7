//! Driving an adapter's stream translator the way the proxy does: input fed in pieces,
//! output read back as OpenAI SSE frames, and the 1-byte / 7-byte / whole-piece check.

use bytes::BytesMut;
use serde_json::Value;
use tollgate::api::ChatRequest;
use tollgate::providers::sse::{parse_all, DEFAULT_MAX_EVENT_BYTES};
use tollgate::providers::{
    AdapterError, ProviderAdapter, ResponseContext, StreamOutcome, TargetSpec,
};

/// A run's raw output, its frames, the outcome and what `finish` said.
pub type Parts = (Vec<u8>, Vec<Value>, StreamOutcome, Result<(), AdapterError>);

/// The body an OpenAI-style adapter (OpenAI, Mistral) sends upstream for the client
/// request `request`, asserting the Chat Completions path, the stream flag and the JSON
/// content type on the way.
pub fn chat_completions_wire_body(
    adapter: &dyn ProviderAdapter,
    request: &[u8],
    upstream_model: &str,
) -> Value {
    let req: ChatRequest = serde_json::from_slice(request).unwrap();
    let up = adapter
        .build_request(&req, &TargetSpec::new(upstream_model))
        .unwrap();
    assert_eq!(up.path, "/v1/chat/completions");
    assert_eq!(up.stream, req.is_stream());
    assert!(up
        .headers
        .iter()
        .any(|(k, v)| k == "content-type" && v == "application/json"));
    serde_json::from_slice(&up.body).unwrap()
}

/// The response context of a test: the id, `created` and model the client sees.
pub fn ctx(id: &str, created: u64, model: &str, include_usage: bool) -> ResponseContext {
    ResponseContext {
        id: id.into(),
        created,
        model: model.into(),
        include_usage,
        max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
    }
}

/// What one run of a stream translator produced.
pub struct Run {
    /// The raw bytes written for the client.
    pub out: Vec<u8>,
    /// What `finish` said.
    pub finish: Result<(), AdapterError>,
    /// `is_done` after `finish`.
    pub done: bool,
    pub outcome: StreamOutcome,
}

impl Run {
    /// The output's frames, see [`frames`].
    pub fn frames(&self) -> Vec<Value> {
        frames(&self.out)
    }

    /// The raw output, its frames, the outcome and what `finish` said.
    pub fn into_parts(self) -> Parts {
        let frames = self.frames();
        (self.out, frames, self.outcome, self.finish)
    }
}

/// Feeds `input` to a fresh translator in `piece`-byte pieces, then finishes it.
pub fn run(
    adapter: &dyn ProviderAdapter,
    ctx: &ResponseContext,
    input: &[u8],
    piece: usize,
) -> Run {
    let mut t = adapter.stream_translator(ctx);
    let mut out = BytesMut::new();
    for chunk in input.chunks(piece.max(1)) {
        t.push(chunk, &mut out).unwrap();
    }
    let finish = t.finish(&mut out);
    Run {
        out: out.to_vec(),
        finish,
        done: t.is_done(),
        outcome: t.outcome(),
    }
}

/// Runs `input` in whole, 1-byte and 7-byte pieces, asserts that every run writes the same
/// bytes and ends the same way, and returns the whole-piece run. `label` names the case in
/// failure messages.
pub fn run_all_splits(
    adapter: &dyn ProviderAdapter,
    ctx: &ResponseContext,
    input: &[u8],
    label: &str,
) -> Run {
    let whole = run(adapter, ctx, input, input.len());
    for piece in [1, 7] {
        let r = run(adapter, ctx, input, piece);
        let at = format!("{label}: {piece}-byte pieces");
        assert_eq!(r.out, whole.out, "output differs, {at}");
        assert_eq!(r.finish, whole.finish, "finish differs, {at}");
        assert_eq!(r.done, whole.done, "done differs, {at}");
        assert_eq!(r.outcome.usage, whole.outcome.usage, "usage differs, {at}");
        assert_eq!(
            r.outcome.finish_reason, whole.outcome.finish_reason,
            "finish reason differs, {at}"
        );
        assert_eq!(
            r.outcome.output_text, whole.outcome.output_text,
            "output text differs, {at}"
        );
        assert_eq!(r.outcome.error, whole.outcome.error, "error differs, {at}");
    }
    whole
}

/// The OpenAI SSE frames of `out`: JSON payloads, and `"[DONE]"` as a string. OpenAI
/// streams carry no event names.
pub fn frames(out: &[u8]) -> Vec<Value> {
    parse_all(out, out.len())
        .into_iter()
        .map(|ev| {
            assert_eq!(ev.event, None, "OpenAI streams carry no event names");
            if ev.data == "[DONE]" {
                Value::from("[DONE]")
            } else {
                serde_json::from_str(&ev.data).unwrap()
            }
        })
        .collect()
}
