//! The Mistral adapter: OpenAI chat requests to Mistral's `/v1/chat/completions` and its
//! answers back to OpenAI's format.
//!
//! Mistral looks like OpenAI but is stricter on input and looser on output, so each
//! direction is a typed translation: `request` whitelists and rewrites the request,
//! `response` rebuilds a proper `chat.completion`, `stream` fixes each chunk, and
//! `error` reads Mistral's flat and validation error bodies.

mod error;
mod request;
mod response;
mod stream;

pub use request::mistral_tool_call_id;

use bytes::Bytes;
use http::HeaderMap;

use super::openai::stream::DoneTerminatedStream;
use super::openai::{json_content_type, CHAT_COMPLETIONS_PATH};
use super::sse::SseParser;
use super::{
    AdapterError, ProviderAdapter, ProviderKind, ResponseContext, StreamTranslator, TargetSpec,
    Translated, UpstreamError, UpstreamRequest,
};
use crate::api::ChatRequest;

/// Translator for Mistral's chat completions API.
pub struct MistralAdapter;

impl ProviderAdapter for MistralAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Mistral
    }

    fn build_request(
        &self,
        req: &ChatRequest,
        target: &TargetSpec<'_>,
    ) -> Result<UpstreamRequest, AdapterError> {
        let wire = request::translate(req, target.upstream_model)?;
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
        ctx: &ResponseContext,
    ) -> Result<Translated, AdapterError> {
        let (completion, usage) = response::to_openai(response::parse(body)?, ctx);
        let finish_reason = completion
            .choices
            .iter()
            .find_map(|c| c.finish_reason.clone());
        let body = serde_json::to_vec(&completion).map_err(|e| {
            AdapterError::MalformedResponse(format!("cannot encode translated response: {e}"))
        })?;
        Ok(Translated {
            body: Bytes::from(body),
            usage,
            finish_reason,
        })
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
        error::parse_error(status, headers, body)
    }

    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator> {
        Box::new(DoneTerminatedStream::new(
            stream::MistralPayloads::new(ctx),
            SseParser::new(ctx.max_event_bytes),
        ))
    }
}
