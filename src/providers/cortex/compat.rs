//! Requests for Cortex's OpenAI-compatible endpoint (`/api/v2/cortex/v1/chat/completions`).
//!
//! The body is the client's OpenAI request with the model replaced. When streaming, usage
//! is always requested (`stream_options.include_usage`) so that cost accounting has real
//! numbers; the stream translator passes the usage chunk on only if the client asked.

use bytes::Bytes;
use http::HeaderValue;
use serde_json::{Map, Value};

use super::CHAT_COMPLETIONS_PATH;
use crate::api::{ChatRequest, StreamOptions};
use crate::providers::{AdapterError, TargetSpec, UpstreamRequest};

/// Builds the `v1/chat/completions` request.
pub fn build(req: &ChatRequest, target: &TargetSpec<'_>) -> Result<UpstreamRequest, AdapterError> {
    let body = body(req, target);
    let body = serde_json::to_vec(&body)
        .map_err(|e| AdapterError::invalid(format!("cannot encode request: {e}"), None))?;
    let accept = if req.is_stream() {
        "text/event-stream"
    } else {
        "application/json"
    };
    Ok(UpstreamRequest {
        path: CHAT_COMPLETIONS_PATH.to_string(),
        headers: vec![
            (
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (http::header::ACCEPT, HeaderValue::from_static(accept)),
        ],
        body: Bytes::from(body),
        stream: req.is_stream(),
    })
}

/// The OpenAI request as sent upstream.
pub fn body(req: &ChatRequest, target: &TargetSpec<'_>) -> ChatRequest {
    let mut out = req.clone();
    out.model = target.upstream_model.to_string();
    if req.is_stream() {
        let mut opts = out.stream_options.take().unwrap_or(StreamOptions {
            include_usage: None,
            extra: Map::new(),
        });
        opts.include_usage = Some(true);
        out.stream_options = Some(opts);
    } else {
        // `stream_options` is only valid together with `stream: true`.
        out.stream_options = None;
    }
    out
}

/// [`body`] as JSON (tests and golden files).
pub fn body_json(req: &ChatRequest, target: &TargetSpec<'_>) -> Value {
    serde_json::to_value(body(req, target)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::providers::CortexMode;

    #[test]
    fn streaming_requests_always_ask_for_usage_and_keep_other_fields() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "alias", "messages": [{"role": "user", "content": "hi"}],
            "stream": true, "reasoning": {"effort": "low"}
        }))
        .unwrap();
        let mut t = TargetSpec::new("claude-sonnet-4-6");
        t.cortex_mode = CortexMode::ChatCompletions;
        assert_eq!(
            body_json(&req, &t),
            json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}],
                "stream": true, "stream_options": {"include_usage": true}, "reasoning": {"effort": "low"}})
        );
        let up = build(&req, &t).unwrap();
        assert_eq!(up.path, "/api/v2/cortex/v1/chat/completions");
        assert!(up.stream);
    }

    #[test]
    fn non_streaming_requests_drop_stream_options() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "alias", "messages": [{"role": "user", "content": "hi"}],
            "stream_options": {"include_usage": true}
        }))
        .unwrap();
        let v = body_json(&req, &TargetSpec::new("llama3.1-8b"));
        assert!(v.get("stream_options").is_none());
        assert_eq!(v["model"], "llama3.1-8b");
    }
}
