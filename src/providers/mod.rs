//! Provider adapters: pure translators between the OpenAI client format and each
//! provider's wire format.
//!
//! An adapter never does I/O. The proxy asks it for the upstream request (path, headers,
//! body), hands it the upstream's bytes, and relays what it returns. Streaming goes through
//! a [`StreamTranslator`], an incremental state machine fed arbitrary byte chunks. Adding a
//! provider means one file implementing [`ProviderAdapter`], one [`ProviderKind`] variant,
//! and one arm in [`adapter_for`].

pub mod anthropic;
pub mod auth;
pub mod cortex;
pub mod error;
pub(crate) mod json_scan;
pub mod mistral;
pub mod openai;
pub mod snowflake_jwt;
pub mod sse;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::api::ChatRequest;
use crate::usage::Usage;

pub use error::{AdapterError, UpstreamError, UpstreamErrorKind};

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
    Mistral,
    Cortex,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Mistral,
        ProviderKind::Cortex,
    ];

    /// Stable lowercase name, used in config, headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Mistral => "mistral",
            ProviderKind::Cortex => "cortex",
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which Cortex endpoint to call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CortexMode {
    /// `POST /api/v2/cortex/inference:complete` (the native COMPLETE endpoint).
    #[default]
    Complete,
    /// `POST /api/v2/cortex/v1/chat/completions` (Snowflake's OpenAI-compatible endpoint).
    ChatCompletions,
}

/// What an adapter needs to know about the model it translates for.
#[derive(Debug, Clone)]
pub struct TargetSpec<'a> {
    /// The model id the provider expects (e.g. `gpt-4-turbo-2024-04-09`).
    pub upstream_model: &'a str,
    /// `max_tokens` to send when the client gave none and the provider requires one.
    pub default_max_tokens: u32,
    /// `anthropic-version` header value.
    pub anthropic_version: &'a str,
    /// Which Cortex endpoint to use.
    pub cortex_mode: CortexMode,
}

impl<'a> TargetSpec<'a> {
    /// A spec with the defaults used when config says nothing else.
    pub fn new(upstream_model: &'a str) -> Self {
        TargetSpec {
            upstream_model,
            default_max_tokens: 4096,
            anthropic_version: "2023-06-01",
            cortex_mode: CortexMode::Complete,
        }
    }
}

/// The translated upstream request. Authentication headers are added by the proxy
/// (see [`auth`]); the adapter sets only format headers (content type, API version).
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Path relative to the provider's base URL, e.g. `/v1/chat/completions`.
    pub path: String,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub body: Bytes,
    /// Whether the upstream will answer with an event stream.
    pub stream: bool,
}

/// Facts about the client request that shape the translated response.
#[derive(Debug, Clone)]
pub struct ResponseContext {
    /// `chatcmpl-…` id to use when the provider supplies none.
    pub id: String,
    /// Unix seconds, for `created` when the provider supplies none.
    pub created: u64,
    /// Model name to report when the provider supplies none.
    pub model: String,
    /// The client asked for `stream_options.include_usage`.
    pub include_usage: bool,
    /// Largest single upstream stream event accepted (`server.max_sse_event_bytes`).
    pub max_event_bytes: usize,
}

/// A translated non-streaming response.
#[derive(Debug, Clone)]
pub struct Translated {
    /// OpenAI `chat.completion` JSON.
    pub body: Bytes,
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
}

/// What a stream produced, read by the proxy once the stream is over.
#[derive(Debug, Clone, Default)]
pub struct StreamOutcome {
    /// Usage as the provider reported it, if it did.
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    /// Text and tool-call arguments relayed to the client (for counting tokens when the
    /// provider reported no usage).
    pub output_text: String,
    /// The provider sent an error event in the middle of the stream.
    pub error: Option<UpstreamError>,
}

/// Translates one provider's wire format to and from OpenAI's.
pub trait ProviderAdapter: Send + Sync + 'static {
    fn kind(&self) -> ProviderKind;

    /// Builds the upstream request for `req`. Fails with [`AdapterError::InvalidRequest`]
    /// when the request cannot be expressed for this provider.
    fn build_request(
        &self,
        req: &ChatRequest,
        target: &TargetSpec<'_>,
    ) -> Result<UpstreamRequest, AdapterError>;

    /// Translates a successful (2xx) non-streaming body. A 2xx whose body is an error
    /// yields [`AdapterError::Upstream`]; an unparseable one [`AdapterError::MalformedResponse`].
    fn parse_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<Translated, AdapterError>;

    /// Classifies a non-2xx upstream response.
    fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamError;

    /// A fresh translator for one streamed response.
    fn stream_translator(&self, ctx: &ResponseContext) -> Box<dyn StreamTranslator>;
}

/// Incremental SSE translator for one response. Fed whatever byte chunks the network
/// delivers: events split across chunks must translate exactly as if whole.
pub trait StreamTranslator: Send {
    /// Appends the OpenAI SSE bytes produced by `chunk` to `out`. Partial events are kept
    /// until the rest arrives. On the provider's terminal event it writes the usage chunk
    /// (when the client asked for it) and `data: [DONE]`, and [`Self::is_done`] turns true.
    /// A provider error event is written as an OpenAI `data: {"error":…}` frame, recorded
    /// in the outcome, and also ends the stream.
    fn push(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), AdapterError>;

    /// Called when the upstream body ended. If the provider's format has no terminal event
    /// (Cortex), this writes the closing frames. If it has one and it never came, returns
    /// [`AdapterError::Truncated`] and writes nothing.
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), AdapterError>;

    /// The stream reached its end (terminal event or error event).
    fn is_done(&self) -> bool;

    /// Usage, finish reason and relayed text so far.
    fn outcome(&self) -> StreamOutcome;
}

/// The adapter for a provider kind.
pub fn adapter_for(kind: ProviderKind) -> &'static dyn ProviderAdapter {
    match kind {
        ProviderKind::OpenAi => &openai::OpenAiAdapter,
        ProviderKind::Mistral => &mistral::MistralAdapter,
        ProviderKind::Anthropic => &anthropic::AnthropicAdapter,
        ProviderKind::Cortex => &cortex::CortexAdapter,
    }
}
