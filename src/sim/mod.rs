//! Simulated providers: in-process HTTP servers that speak each provider's exact wire
//! format, with fault injection, for the gateway's offline demo mode and end-to-end tests.
//!
//! A [`SimServer`] binds `127.0.0.1:0` and answers like the real API would: the same paths,
//! authentication, JSON shapes, SSE framing, headers and error bodies (checked against
//! recorded traffic). Answers are synthetic but deterministic: the text is seeded from a
//! hash of the conversation, its length follows the prompt (or a directive) and is capped
//! by `max_tokens`; usage is counted with the tiktoken encodings of [`crate::tokens`]. When
//! tools are offered and required, the answer is a tool call whose arguments satisfy the
//! tool's JSON schema. [`SimFleet`] runs one server per simulated provider on a dedicated
//! thread with its own tokio runtime (demo mode).
//!
//! # Faults
//!
//! Every request follows one fault plan, chosen by precedence:
//!
//! 1. a directive in the text of the **last user message**,
//! 2. the `x-sim-fault` request header (for direct calls; the gateway never forwards client
//!    headers),
//! 3. the next fault queued with [`SimServer::push_fault`] (FIFO; taken only by requests that
//!    reached the chat endpoint without a directive or header fault),
//! 4. the default fault set with [`SimServer::set_default_fault`].
//!
//! A directive is `[[sim: key=value key=value …]]` anywhere in the message text; the header
//! value is the same list without the brackets (`x-sim-fault: status=429 retry_after=2`).
//! Keys may be combined (`[[sim: chunk_delay_ms=50 reset_after=3]]`):
//!
//! | key | effect |
//! |---|---|
//! | `status=N` | answer status `N` with the provider's exact error body and headers |
//! | `retry_after=S` | with `status`: send `retry-after: S` |
//! | `delay_ms=M` | wait `M` ms before sending the response headers |
//! | `chunk_delay_ms=M` | stream: wait `M` ms between events |
//! | `reset_after=N` | stream: abort the connection after `N` events (no clean end) |
//! | `truncate_after=N` | stream: end the body cleanly after `N` events, without the terminal event |
//! | `stream_error_after=N` | stream: send the provider's mid-stream error event after `N` events |
//! | `malformed` | `200` with invalid JSON (non-stream) or one invalid JSON data line (stream) |
//! | `hang` | read the request and never answer |
//! | `huge_event=B` | stream: after the first event, one event of `B` bytes |
//! | `endless` | stream: never end (events repeat `chunk_delay_ms` apart, default 10) |
//! | `error_body_200` | `200` whose body is the provider's error JSON |
//! | `html` | `200` with an HTML page as `text/html` |
//! | `words=N` | output length in words (not a fault; combines with any of the above) |
//!
//! For a non-streaming request, `reset_after` sends the headers and half of the body and
//! then resets, `truncate_after` ends the body cleanly after half of it, and
//! `stream_error_after` / `chunk_delay_ms` do nothing. Unknown keys and unparsable values
//! are ignored.
//!
//! # Adding a provider
//!
//! One file implementing [`SimProvider`] (routing, authentication, validation, rendering of
//! a [`reply::Reply`] as a JSON body or SSE events, error bodies) plus one arm in
//! `provider_for`; the transport, recording, fault handling and reply generation are shared.

mod anthropic;
mod body;
mod cortex;
mod faults;
mod fleet;
mod mistral;
mod openai;
mod openai_shape;
pub mod reply;
pub mod schema;
mod server;
pub mod text;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::Value;

use crate::providers::ProviderKind;

pub use faults::Fault;
pub use fleet::SimFleet;
pub use reply::{Exchange, Reply};
pub use server::{RecordedRequest, SimOptions, SimServer};

/// Which endpoint of a provider a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The chat endpoint (`POST /v1/chat/completions` and equivalents).
    Chat,
    /// The model list, or one model when an id is given.
    Models(Option<String>),
    /// Another endpoint the provider answers itself from the request alone (token counting),
    /// after authentication, without faults or reply generation: see
    /// [`SimProvider::auxiliary`].
    Auxiliary(&'static str),
    /// Anything else: answered with [`SimProvider::not_found`].
    NotFound,
}

/// A complete non-2xx (or deliberately odd) response: status, headers, body.
#[derive(Debug, Clone)]
pub struct ErrorResponse {
    pub status: u16,
    /// Response headers, content type included.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl ErrorResponse {
    /// A response with `content_type` and `body`.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        ErrorResponse {
            status,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(content_type),
            )],
            body: body.into(),
        }
    }

    /// A JSON error response.
    pub fn json(status: u16, body: &Value) -> Self {
        Self::new(status, "application/json", body.to_string())
    }

    /// Sets a header (invalid values are skipped).
    pub fn with_header(mut self, name: &'static str, value: impl AsRef<str>) -> Self {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            let name = HeaderName::from_static(name);
            self.headers.retain(|(n, _)| *n != name);
            self.headers.push((name, v));
        }
        self
    }

    /// The value of header `name`, if set.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Facts about one response that are not part of the request.
#[derive(Debug, Clone)]
pub struct Meta {
    /// 32 lowercase hex digits, unique per request; providers format it as they do.
    pub request_id: String,
    /// Unix seconds.
    pub created: u64,
    /// Prompt tokens served from the simulated prompt cache (see [`SimOptions::prompt_cache`]).
    pub cached_tokens: u64,
    /// The request path, without the query (for providers with several chat endpoints).
    pub path: String,
}

/// The SSE events of one streamed answer, one event per body frame.
#[derive(Debug, Clone, Default)]
pub struct StreamFrames {
    /// Every event before the provider's terminal event (including a usage-only chunk).
    pub events: Vec<Bytes>,
    /// The terminal event(s) (`data: [DONE]`, `message_stop`); empty when the format has none.
    pub terminal: Vec<Bytes>,
}

/// One simulated provider: everything that depends on its wire format.
///
/// Implementations are pure and synchronous; the server in `server.rs` handles transport,
/// recording, faults, delays and reply generation.
pub trait SimProvider: Send + Sync + 'static {
    fn kind(&self) -> ProviderKind;

    /// Which endpoint `method path` addresses.
    fn route(&self, method: &Method, path: &str) -> Route;

    /// Checks credentials. `expected` is `Some(key)` when the key must match exactly, and
    /// `None` when any non-empty key is accepted. `Err` is the provider's 401 response.
    fn check_auth(
        &self,
        headers: &HeaderMap,
        expected: Option<&str>,
        meta: &Meta,
    ) -> Result<(), ErrorResponse>;

    /// The text of the last user message of a (possibly invalid) request body, where fault
    /// directives are looked for.
    fn last_user_text(&self, body: &Value) -> Option<String>;

    /// Validates a chat request exactly as the provider would and extracts what the reply
    /// depends on. `json` is the body parsed as JSON, when it is valid JSON.
    fn parse(
        &self,
        raw: &[u8],
        json: Option<Value>,
        meta: &Meta,
    ) -> Result<Exchange, ErrorResponse>;

    /// Headers of a successful answer (request id, rate limits), without content type.
    fn success_headers(&self, ex: &Exchange, meta: &Meta) -> HeaderMap;

    /// The non-streaming JSON body.
    fn render_json(&self, ex: &Exchange, reply: &Reply, meta: &Meta) -> Bytes;

    /// The streamed answer as SSE events.
    fn render_events(&self, ex: &Exchange, reply: &Reply, meta: &Meta) -> StreamFrames;

    /// The provider's error event in the middle of a stream (a complete SSE event).
    fn stream_error_event(&self, meta: &Meta) -> Bytes;

    /// The provider's error response for `status` (a simulated failure), with its headers
    /// (`retry-after` when given, rate-limit headers on 429).
    fn error_response(
        &self,
        status: u16,
        retry_after: Option<u64>,
        model: &str,
        meta: &Meta,
    ) -> ErrorResponse;

    /// The provider's answer to an unknown path or method.
    fn not_found(&self, method: &Method, path: &str, meta: &Meta) -> ErrorResponse;

    /// The model list (`id: None`) or one model; `Err` when the model is unknown.
    fn models(&self, id: Option<&str>) -> Result<Bytes, ErrorResponse>;

    /// The complete response (any status) of the endpoint routed as
    /// [`Route::Auxiliary`]`(name)`. `json` is the body parsed as JSON, when it is valid JSON.
    fn auxiliary(&self, name: &str, raw: &[u8], json: Option<Value>, meta: &Meta) -> ErrorResponse {
        let _ = (raw, json);
        self.not_found(&Method::POST, name, meta)
    }
}

/// The simulator for a provider kind, when one exists.
pub(crate) fn provider_for(kind: ProviderKind) -> Option<&'static dyn SimProvider> {
    match kind {
        ProviderKind::OpenAi => Some(&openai::OpenAiSim),
        ProviderKind::Mistral => Some(&mistral::MistralSim),
        ProviderKind::Cortex => Some(&cortex::CortexSim),
        ProviderKind::Anthropic => Some(&anthropic::AnthropicSim),
    }
}

/// A header map from static names and string values (invalid values are skipped).
pub(crate) fn header_map(values: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in values {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    h
}

/// Lowercase hex digits from the shared (non-seeded) generator, for ids.
pub(crate) fn random_hex(len: usize) -> String {
    (0..len)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
        .collect()
}

/// `[a-zA-Z0-9]` characters from the shared generator, for ids.
pub(crate) fn random_alnum(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| char::from(ALPHABET[fastrand::usize(0..ALPHABET.len())]))
        .collect()
}
