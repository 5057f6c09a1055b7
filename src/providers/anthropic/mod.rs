//! Anthropic Messages API adapter (`POST /v1/messages`).
//!
//! Requests are rewritten from OpenAI Chat Completions into the Messages format (system
//! prompt lifted to the top level, strictly alternating user/assistant turns, tools as
//! `tool_use` / `tool_result` blocks); responses, errors and event streams are translated
//! back. The pieces live in `messages` (the conversation), `request` (the other
//! parameters), `response` (bodies and errors) and `stream`; this module holds the
//! adapter itself and the wire facts they share: Anthropic's usage object, its
//! `stop_reason` values and its error types.

mod messages;
mod request;
mod response;
mod skim;
mod stream;

use http::{HeaderMap, HeaderValue};
use serde::Deserialize;

use super::{
    AdapterError, ProviderAdapter, ProviderKind, ResponseContext, StreamTranslator, TargetSpec,
    Translated, UpstreamError, UpstreamErrorKind, UpstreamRequest,
};
use crate::api::ChatRequest;
use crate::usage::Usage;

/// Translator between OpenAI chat completions and the Anthropic Messages API.
pub struct AnthropicAdapter;

impl ProviderAdapter for AnthropicAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    fn build_request(
        &self,
        req: &ChatRequest,
        target: &TargetSpec<'_>,
    ) -> Result<UpstreamRequest, AdapterError> {
        let body = request::build_body(req, target)?;
        let version = HeaderValue::from_str(target.anthropic_version).map_err(|_| {
            AdapterError::invalid(
                "The configured anthropic-version is not a valid header value.",
                None,
            )
        })?;
        let body = serde_json::to_vec(&body)
            .map_err(|e| AdapterError::invalid(format!("cannot encode request: {e}"), None))?;
        Ok(UpstreamRequest {
            path: "/v1/messages".to_string(),
            headers: vec![
                (
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (http::HeaderName::from_static("anthropic-version"), version),
            ],
            body: body.into(),
            stream: req.is_stream(),
        })
    }

    fn parse_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<Translated, AdapterError> {
        response::parse_response(body, ctx)
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
        response::parse_error(status, headers, body)
    }

    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator> {
        Box::new(stream::AnthropicStream::new(ctx.clone()))
    }
}

/// Anthropic's `usage` object. Every field is optional because `message_delta` usage
/// carries only what changed (older API versions send just `output_tokens`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    /// Per-sampling-step usage, present when the server ran more than one step for the
    /// request (context compaction). The top-level counts then describe only the final
    /// step, so the billed total is the sum over `iterations`.
    #[serde(default)]
    iterations: Option<Vec<WireUsage>>,
}

impl WireUsage {
    /// `later`'s fields where it has them, `self`'s otherwise. Used for streams, where
    /// `message_delta` usage is cumulative and supersedes `message_start`'s.
    fn overlaid_with(&self, later: &WireUsage) -> WireUsage {
        WireUsage {
            input_tokens: later.input_tokens.or(self.input_tokens),
            output_tokens: later.output_tokens.or(self.output_tokens),
            cache_creation_input_tokens: later
                .cache_creation_input_tokens
                .or(self.cache_creation_input_tokens),
            cache_read_input_tokens: later
                .cache_read_input_tokens
                .or(self.cache_read_input_tokens),
            iterations: later.iterations.clone().or_else(|| self.iterations.clone()),
        }
    }

    /// Normalised usage. Anthropic's `input_tokens` excludes cache reads and writes, so the
    /// whole prompt is the sum of the three; reads and writes are kept as its subsets.
    fn to_usage(&self) -> Usage {
        let (input, output, write, read) = match self.iterations.as_deref() {
            Some(steps) if !steps.is_empty() => steps.iter().fold((0, 0, 0, 0), |acc, s| {
                (
                    acc.0 + s.input_tokens.unwrap_or(0),
                    acc.1 + s.output_tokens.unwrap_or(0),
                    acc.2 + s.cache_creation_input_tokens.unwrap_or(0),
                    acc.3 + s.cache_read_input_tokens.unwrap_or(0),
                )
            }),
            _ => (
                self.input_tokens.unwrap_or(0),
                self.output_tokens.unwrap_or(0),
                self.cache_creation_input_tokens.unwrap_or(0),
                self.cache_read_input_tokens.unwrap_or(0),
            ),
        };
        Usage {
            input_tokens: input + write + read,
            output_tokens: output,
            cached_input_tokens: read,
            cache_write_tokens: write,
            estimated: false,
        }
    }
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn, and any value added later.
        _ => "stop",
    }
}

/// Classification of an Anthropic `error.type`; `None` for a type this adapter does not
/// know (the caller falls back to the HTTP status).
fn error_kind(error_type: &str, message: &str) -> Option<UpstreamErrorKind> {
    Some(match error_type {
        "invalid_request_error" if is_context_length_message(message) => {
            UpstreamErrorKind::ContextLength
        }
        "invalid_request_error" | "request_too_large" => UpstreamErrorKind::InvalidRequest,
        "authentication_error" => UpstreamErrorKind::Authentication,
        "permission_error" => UpstreamErrorKind::PermissionDenied,
        "not_found_error" => UpstreamErrorKind::NotFound,
        "rate_limit_error" => UpstreamErrorKind::RateLimited,
        "billing_error" => UpstreamErrorKind::QuotaExceeded,
        "api_error" => UpstreamErrorKind::Server,
        "timeout_error" => UpstreamErrorKind::Timeout,
        "overloaded_error" => UpstreamErrorKind::Overloaded,
        _ => return None,
    })
}

/// Anthropic reports an oversized prompt as a plain `invalid_request_error`
/// ("prompt is too long: 208310 tokens > 200000 maximum", "input length and `max_tokens`
/// exceed context limit: …"); only the message tells it apart.
fn is_context_length_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "prompt is too long",
        "context limit",
        "context window",
        "context length",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// An [`UpstreamError`] from an Anthropic error object
/// (`{"type":"error","error":{"type","message"}}`), or `None` if `v` is not one.
/// `fallback` classifies an unknown `error.type`.
fn upstream_error(
    status: u16,
    v: &serde_json::Value,
    fallback: UpstreamErrorKind,
) -> Option<UpstreamError> {
    let err = v.get("error")?.as_object()?;
    let error_type = err.get("type").and_then(|t| t.as_str());
    let message = err
        .get("message")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("upstream error ({})", error_type.unwrap_or("unknown")));
    let kind = match error_type.and_then(|t| error_kind(t, &message)) {
        // `api_error` is Anthropic's generic server error; an HTTP status of 503 or 504
        // says more (unavailable, timed out) than the body does.
        Some(UpstreamErrorKind::Server) if status >= 500 => UpstreamErrorKind::from_status(status),
        Some(kind) => kind,
        None => fallback,
    };
    Some(UpstreamError {
        status,
        kind,
        message,
        code: error_type.map(str::to_string),
        param: None,
        retry_after: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_includes_cache_reads_and_writes() {
        let u = WireUsage {
            input_tokens: Some(3),
            output_tokens: Some(33),
            cache_creation_input_tokens: Some(418),
            cache_read_input_tokens: Some(1111),
            iterations: None,
        }
        .to_usage();
        assert_eq!(u.input_tokens, 1532);
        assert_eq!(u.cached_input_tokens, 1111);
        assert_eq!(u.cache_write_tokens, 418);
        assert_eq!(u.output_tokens, 33);
    }

    #[test]
    fn later_usage_fields_win_and_missing_ones_fall_back() {
        let start = WireUsage {
            input_tokens: Some(377),
            output_tokens: Some(1),
            cache_read_input_tokens: Some(10),
            ..WireUsage::default()
        };
        let delta = WireUsage {
            output_tokens: Some(65),
            ..WireUsage::default()
        };
        let u = start.overlaid_with(&delta).to_usage();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cached_input_tokens),
            (387, 65, 10)
        );
    }

    #[test]
    fn every_stop_reason_has_an_openai_finish_reason() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason(stop), finish, "{stop}");
        }
    }

    #[test]
    fn prompt_too_long_is_a_context_length_error() {
        assert_eq!(
            error_kind(
                "invalid_request_error",
                "prompt is too long: 208310 tokens > 200000 maximum"
            ),
            Some(UpstreamErrorKind::ContextLength)
        );
        assert_eq!(
            error_kind("invalid_request_error", "max_tokens: field required"),
            Some(UpstreamErrorKind::InvalidRequest)
        );
        assert_eq!(error_kind("brand_new_error", "x"), None);
    }
}
