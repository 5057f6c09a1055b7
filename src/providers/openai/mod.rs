//! The OpenAI adapter: the upstream already speaks the client's format, so translation is
//! a relay with three adjustments.
//!
//! - The request is forwarded field for field (unknown fields included) with `model`
//!   replaced, and streams always ask for `stream_options.include_usage`, because billing
//!   needs the usage even when the client did not ask for it.
//! - Responses are relayed byte for byte; tollgate only reads usage and finish reason.
//! - In streams, the usage chunk is hidden from clients that did not ask for it.
//!
//! `stream` holds the `[DONE]`-terminated stream driver that Mistral reuses, and
//! `error` the OpenAI error classification and helpers shared with Mistral.

pub(crate) mod error;
pub(crate) mod skim;
pub(crate) mod stream;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue};
use serde_json::Value;

use self::error::{in_band_error, openai_error_fields, parse_openai_error};
use self::stream::{DoneTerminatedStream, OpenAiPayloads};
use super::sse::SseParser;
use super::{
    AdapterError, ProviderAdapter, ProviderKind, ResponseContext, StreamTranslator, TargetSpec,
    Translated, UpstreamError, UpstreamRequest,
};
use crate::api::{ChatRequest, StreamOptions};
use crate::usage::Usage;

/// Path of the chat completions endpoint, relative to the provider's base URL.
pub(crate) const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";

/// Translator for OpenAI's Chat Completions API.
pub struct OpenAiAdapter;

impl ProviderAdapter for OpenAiAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::OpenAi
    }

    fn build_request(
        &self,
        req: &ChatRequest,
        target: &TargetSpec<'_>,
    ) -> Result<UpstreamRequest, AdapterError> {
        let mut wire = req.clone();
        wire.model = target.upstream_model.to_string();
        if req.is_stream() {
            let mut options = wire.stream_options.take().unwrap_or(StreamOptions {
                include_usage: None,
                extra: Default::default(),
            });
            options.include_usage = Some(true);
            wire.stream_options = Some(options);
        } else {
            // OpenAI rejects `stream_options` on a non-streaming request; other providers
            // ignore it, so drop it rather than fail only on this one.
            wire.stream_options = None;
        }
        let body = serde_json::to_vec(&wire)
            .map_err(|e| AdapterError::invalid(format!("cannot encode request: {e}"), None))?;
        Ok(UpstreamRequest {
            path: CHAT_COMPLETIONS_PATH.to_string(),
            headers: vec![json_content_type()],
            body: Bytes::from(body),
            stream: req.is_stream(),
        })
    }

    fn parse_response(
        &self,
        body: &[u8],
        _ctx: &ResponseContext,
    ) -> Result<Translated, AdapterError> {
        // The usual answer: read usage and finish reason without building the document.
        if let Some(r) = std::str::from_utf8(body).ok().and_then(skim::skim) {
            if !r.error {
                if let Ok(finish_reason) = r.finish_reason() {
                    return Ok(Translated {
                        body: Bytes::copy_from_slice(body),
                        usage: r.usage(),
                        finish_reason,
                    });
                }
            }
        }
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            AdapterError::MalformedResponse(format!("response body is not JSON: {e}"))
        })?;
        if let Some(fields) = openai_error_fields(&v) {
            return Err(AdapterError::Upstream(in_band_error(
                &fields,
                "The upstream provider answered with an error.",
            )));
        }
        let choices = v.get("choices").and_then(Value::as_array).ok_or_else(|| {
            AdapterError::MalformedResponse("response has no `choices` array".into())
        })?;
        let finish_reason = choices
            .iter()
            .find_map(|c| c.get("finish_reason").and_then(Value::as_str))
            .map(str::to_string);
        Ok(Translated {
            body: Bytes::copy_from_slice(body),
            usage: usage_from_json(v.get("usage")),
            finish_reason,
        })
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
        parse_openai_error(status, headers, body)
    }

    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator> {
        Box::new(DoneTerminatedStream::new(
            OpenAiPayloads {
                include_usage: ctx.include_usage,
            },
            SseParser::new(ctx.max_event_bytes),
        ))
    }
}

/// `content-type: application/json`.
pub(crate) fn json_content_type() -> (http::HeaderName, HeaderValue) {
    (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )
}

/// Reads an OpenAI `usage` object. `None` when absent, `null`, or without token counts.
///
/// `prompt_tokens` already includes cached tokens (OpenAI semantics), so it maps straight
/// to [`Usage::input_tokens`]; `prompt_tokens_details.cached_tokens` and
/// `cache_write_tokens` are the subsets priced differently.
pub(crate) fn usage_from_json(usage: Option<&Value>) -> Option<Usage> {
    let u = usage?.as_object()?;
    let count = |v: Option<&Value>| v.and_then(Value::as_u64);
    let input = count(u.get("prompt_tokens"));
    let output = count(u.get("completion_tokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    let input = input.unwrap_or(0);
    let details = u.get("prompt_tokens_details");
    let detail = |key: &str| count(details.and_then(|d| d.get(key))).unwrap_or(0);
    Some(Usage {
        input_tokens: input,
        output_tokens: output.unwrap_or(0),
        cached_input_tokens: detail("cached_tokens").min(input),
        cache_write_tokens: detail("cache_write_tokens").min(input),
        estimated: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn wire(req: &ChatRequest) -> Value {
        let up = OpenAiAdapter
            .build_request(req, &TargetSpec::new("gpt-4o-2024-08-06"))
            .unwrap();
        serde_json::from_slice(&up.body).unwrap()
    }

    #[test]
    fn streaming_request_always_asks_for_usage_and_keeps_other_stream_options() {
        let req = request(json!({
            "model": "fast", "messages": [{"role": "user", "content": "hi"}],
            "stream": true, "stream_options": {"include_obfuscation": false}
        }));
        assert_eq!(
            wire(&req)["stream_options"],
            json!({"include_usage": true, "include_obfuscation": false})
        );
        let up = OpenAiAdapter
            .build_request(&req, &TargetSpec::new("gpt-4o"))
            .unwrap();
        assert!(up.stream);
        assert_eq!(up.path, "/v1/chat/completions");
    }

    #[test]
    fn non_streaming_request_drops_stream_options() {
        let req = request(json!({
            "model": "fast", "messages": [{"role": "user", "content": "hi"}],
            "stream_options": {"include_usage": true}
        }));
        assert!(wire(&req).get("stream_options").is_none());
    }

    #[test]
    fn usage_maps_cached_and_cache_write_tokens() {
        let u = usage_from_json(Some(&json!({
            "prompt_tokens": 4020, "completion_tokens": 4, "total_tokens": 4024,
            "prompt_tokens_details": {"audio_tokens": 0, "cache_write_tokens": 0, "cached_tokens": 4012}
        })))
        .unwrap();
        assert_eq!(
            u,
            Usage {
                input_tokens: 4020,
                output_tokens: 4,
                cached_input_tokens: 4012,
                cache_write_tokens: 0,
                estimated: false
            }
        );
        assert_eq!(usage_from_json(Some(&Value::Null)), None);
        assert_eq!(usage_from_json(Some(&json!({}))), None);
        assert_eq!(usage_from_json(None), None);
    }

    #[test]
    fn error_body_with_2xx_status_is_an_upstream_error() {
        let ctx = ResponseContext {
            id: "chatcmpl-x".into(),
            created: 0,
            model: "m".into(),
            include_usage: false,
            max_event_bytes: crate::providers::sse::DEFAULT_MAX_EVENT_BYTES,
        };
        let r = OpenAiAdapter.parse_response(
            br#"{"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#,
            &ctx,
        );
        match r {
            Err(AdapterError::Upstream(e)) => {
                assert_eq!(e.message, "boom");
                assert_eq!(e.kind, crate::providers::UpstreamErrorKind::Server);
            }
            other => panic!("expected upstream error, got {other:?}"),
        }
        assert!(matches!(
            OpenAiAdapter.parse_response(b"<html>", &ctx),
            Err(AdapterError::MalformedResponse(_))
        ));
        assert!(matches!(
            OpenAiAdapter.parse_response(br#"{"id":"x"}"#, &ctx),
            Err(AdapterError::MalformedResponse(_))
        ));
    }
}
