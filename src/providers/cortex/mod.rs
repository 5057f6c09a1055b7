//! Snowflake Cortex adapter: OpenAI chat requests to Cortex and Cortex answers back.
//!
//! Two endpoints, chosen per target by [`CortexMode`]:
//!
//! - `Complete` (default): the native `POST /api/v2/cortex/inference:complete`, whose body
//!   differs from OpenAI's in messages (`content_list` items, tool results that carry the
//!   tool name), tools (`tool_spec`), `tool_choice` and `response_format`; see [`request`].
//! - `ChatCompletions`: Snowflake's OpenAI-compatible `POST /api/v2/cortex/v1/chat/completions`,
//!   which needs almost no request translation; see [`compat`].
//!
//! The response side has no mode to go by (the proxy hands the adapter only the bytes), so
//! [`response`] and [`stream`] read both shapes: native `content_list` / `tool_use` deltas and
//! OpenAI `tool_calls`, with the quirks of both (empty ids, zero timestamps, empty finish
//! reasons, `usage: {}` placeholders, no `[DONE]` on native streams). Errors are classified
//! in [`error`].

pub mod compat;
pub mod error;
pub mod request;
pub mod response;
pub mod stream;

use http::HeaderMap;

use super::{
    AdapterError, CortexMode, ProviderAdapter, ProviderKind, ResponseContext, StreamTranslator,
    TargetSpec, Translated, UpstreamError, UpstreamRequest,
};
use crate::api::ChatRequest;

/// Path of the native COMPLETE endpoint.
pub const COMPLETE_PATH: &str = "/api/v2/cortex/inference:complete";
/// Path of the OpenAI-compatible endpoint.
pub const CHAT_COMPLETIONS_PATH: &str = "/api/v2/cortex/v1/chat/completions";

/// The Cortex adapter. Stateless; the endpoint comes from [`TargetSpec::cortex_mode`].
pub struct CortexAdapter;

impl ProviderAdapter for CortexAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Cortex
    }

    fn build_request(
        &self,
        req: &ChatRequest,
        target: &TargetSpec<'_>,
    ) -> Result<UpstreamRequest, AdapterError> {
        match target.cortex_mode {
            CortexMode::Complete => request::build(req, target),
            CortexMode::ChatCompletions => compat::build(req, target),
        }
    }

    fn parse_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<Translated, AdapterError> {
        response::parse(body, ctx)
    }

    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
        error::classify(status, headers, body)
    }

    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator> {
        Box::new(stream::CortexStream::new(ctx.clone()))
    }
}
