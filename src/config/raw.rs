//! Serde mirror of `routes.toml`. Every table denies unknown fields, so a typo is an error
//! rather than a silently ignored setting. [`super::validate`] turns these into the runtime
//! [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::money::Decimal9;
use crate::providers::{CortexMode, ProviderKind};

/// The whole file, section by section (each section deserialized separately so that one
/// bad section does not hide problems in the others).
pub const SECTIONS: &[&str] = &[
    "server",
    "routing",
    "classifier",
    "breaker",
    "providers",
    "models",
    "aliases",
    "auth",
    "budgets",
    "state",
    "alerts",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Public listener, `HOST:PORT`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Admin listener (dashboard, metrics), `HOST:PORT`.
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// Worker threads for the proxy service.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Largest accepted request body.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Largest accepted single event in an upstream stream.
    #[serde(default = "default_max_event")]
    pub max_sse_event_bytes: usize,
    /// Grace period for in-flight requests on shutdown, in seconds.
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: u64,
    /// HTTPS on `listen`.
    #[serde(default)]
    pub tls: Option<RawTlsFiles>,
    /// HTTPS on `admin_listen`.
    #[serde(default)]
    pub admin_tls: Option<RawTlsFiles>,
    /// A request's header must arrive within this long (from the connection's start, or
    /// from the first byte of a request on a kept-alive connection).
    #[serde(default = "default_header_timeout")]
    pub client_header_timeout_ms: u64,
    /// A request's whole body must arrive within this long after its header.
    #[serde(default = "default_body_timeout")]
    pub client_body_timeout_ms: u64,
    /// Largest accepted request header block (431 above it).
    #[serde(default = "default_max_header")]
    pub max_header_bytes: usize,
    /// Deepest nesting of JSON arrays and objects accepted in a request body.
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    /// Most `messages` one request may carry.
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    /// Largest `n` (choices per request) accepted.
    #[serde(default = "default_max_n")]
    pub max_n: u32,
}

/// A listener's certificate chain and private key, PEM files (relative paths are read
/// from the directory of `routes.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsFiles {
    /// Certificate chain, leaf first.
    pub cert: String,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            admin_listen: None,
            threads: default_threads(),
            max_body_bytes: default_max_body(),
            max_sse_event_bytes: default_max_event(),
            shutdown_grace_seconds: default_grace(),
            tls: None,
            admin_tls: None,
            client_header_timeout_ms: default_header_timeout(),
            client_body_timeout_ms: default_body_timeout(),
            max_header_bytes: default_max_header(),
            max_json_depth: default_max_json_depth(),
            max_messages: default_max_messages(),
            max_n: default_max_n(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_threads() -> usize {
    2
}
fn default_max_body() -> usize {
    10 * 1024 * 1024
}
fn default_max_event() -> usize {
    4 * 1024 * 1024
}
fn default_grace() -> u64 {
    30
}
fn default_header_timeout() -> u64 {
    10_000
}
fn default_body_timeout() -> u64 {
    30_000
}
fn default_max_header() -> usize {
    64 * 1024
}
fn default_max_json_depth() -> usize {
    64
}
fn default_max_messages() -> usize {
    2048
}
fn default_max_n() -> u32 {
    8
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// The model (or alias) that `model: "auto"` is served by when no tiers are configured.
    pub default_model: String,
    /// Tiers from cheapest to most capable; `auto` requests are classified into one.
    #[serde(default)]
    pub tiers: Vec<RawTier>,
    /// Callers may pick the tier with the `x-tollgate-tier` header.
    #[serde(default)]
    pub allow_tier_header: bool,
    /// Largest estimated cost of one request, in dollars (callers may lower it with
    /// `x-tollgate-max-cost`).
    #[serde(default)]
    pub max_request_cost: Option<Decimal9>,
    /// Output tokens assumed for the cost estimate when the request sets no `max_tokens`.
    #[serde(default = "default_expected_output")]
    pub expected_output_tokens: u32,
    /// Latency classes callers may ask for with `x-tollgate-latency`: target time to first
    /// token in milliseconds.
    #[serde(default)]
    pub latency_classes: BTreeMap<String, u64>,
    /// A context-length error from one model may fall back to a larger-context model.
    #[serde(default)]
    pub context_length_fallback: bool,
    #[serde(default)]
    pub retry: RawRetry,
}

fn default_expected_output() -> u32 {
    512
}

/// One tier: its chain, and the chains used once the caller's daily budget is spent past
/// a percentage (`[routing.tiers.budget]`, keys are percentages).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub name: String,
    pub chain: Vec<String>,
    /// Counted as premium by `tollgate eval-router`.
    #[serde(default)]
    pub premium: bool,
    #[serde(default)]
    pub budget: BTreeMap<String, Vec<String>>,
}

/// Retries of one model before falling to the next.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts per model, the first included.
    #[serde(default = "d_attempts")]
    pub attempts_per_model: u32,
    #[serde(default = "d_base")]
    pub base_backoff_ms: u64,
    #[serde(default = "d_max_backoff")]
    pub max_backoff_ms: u64,
    /// A provider's `Retry-After` is honoured up to this long; longer means: next model.
    #[serde(default = "d_max_retry_after")]
    pub max_retry_after_ms: u64,
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            attempts_per_model: d_attempts(),
            base_backoff_ms: d_base(),
            max_backoff_ms: d_max_backoff(),
            max_retry_after_ms: d_max_retry_after(),
        }
    }
}

fn d_attempts() -> u32 {
    2
}
fn d_base() -> u64 {
    100
}
fn d_max_backoff() -> u64 {
    2_000
}
fn d_max_retry_after() -> u64 {
    5_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: ProviderKind,
    /// `https://api.openai.com`; may carry a path prefix. `http://` only for local upstreams.
    pub base_url: String,
    /// Environment variable holding the API key / token.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the API key / token (e.g. a mounted Kubernetes secret).
    #[serde(default)]
    pub api_key_file: Option<String>,
    /// PEM bundle of the CAs that may sign this provider's certificate, instead of the
    /// system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Anthropic: `anthropic-version` header.
    #[serde(default)]
    pub anthropic_version: Option<String>,
    /// Cortex: which endpoint to call.
    #[serde(default)]
    pub mode: Option<CortexMode>,
    /// Cortex: what one Snowflake credit costs under your contract, in dollars.
    #[serde(default)]
    pub dollars_per_credit: Option<Decimal9>,
    /// Cortex: how to authenticate.
    #[serde(default)]
    pub snowflake: Option<RawSnowflakeAuth>,
}

/// Timeouts in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(default = "d_connect")]
    pub connect_ms: u64,
    #[serde(default = "d_first_byte")]
    pub first_byte_ms: u64,
    #[serde(default = "d_idle")]
    pub idle_ms: u64,
    #[serde(default = "d_total")]
    pub total_ms: u64,
    #[serde(default = "d_pool")]
    pub pool_idle_ms: u64,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        RawTimeouts {
            connect_ms: d_connect(),
            first_byte_ms: d_first_byte(),
            idle_ms: d_idle(),
            total_ms: d_total(),
            pool_idle_ms: d_pool(),
        }
    }
}

fn d_connect() -> u64 {
    5_000
}
fn d_first_byte() -> u64 {
    120_000
}
fn d_idle() -> u64 {
    60_000
}
fn d_total() -> u64 {
    600_000
}
fn d_pool() -> u64 {
    90_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "auth")]
pub enum RawSnowflakeAuth {
    /// Key-pair JWT signed by tollgate.
    KeypairJwt {
        account: String,
        user: String,
        private_key_file: String,
    },
    /// Programmatic access token (from `api_key_env` / `api_key_file`).
    Pat,
    /// OAuth access token (from `api_key_env` / `api_key_file`).
    Oauth,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub provider: String,
    /// Model id sent to the provider; defaults to the model's name.
    #[serde(default)]
    pub upstream: Option<String>,
    pub context_window: u64,
    pub max_output_tokens: u32,
    /// `max_tokens` sent when the client gives none and the provider requires one.
    #[serde(default)]
    pub default_max_tokens: Option<u32>,
    pub price: RawPrice,
    /// Models tried, in order, when this one fails before answering.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Shown in `GET /v1/models` as `owned_by`.
    #[serde(default)]
    pub owned_by: Option<String>,
}

/// Prices per 1M tokens: dollars, or Snowflake credits for Cortex.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    #[serde(default)]
    pub input: Option<Decimal9>,
    #[serde(default)]
    pub output: Option<Decimal9>,
    #[serde(default)]
    pub cached_input: Option<Decimal9>,
    #[serde(default)]
    pub cache_write: Option<Decimal9>,
    #[serde(default)]
    pub input_credits: Option<Decimal9>,
    #[serde(default)]
    pub output_credits: Option<Decimal9>,
}

pub type RawProviders = BTreeMap<String, toml::Value>;
pub type RawModels = BTreeMap<String, toml::Value>;
pub type RawAliases = BTreeMap<String, String>;
