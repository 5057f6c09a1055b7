//! Cross-provider conformance harness: the four simulated providers (OpenAI, Anthropic,
//! Mistral, Snowflake Cortex) behind the real Pingora gateway, one model per provider, and
//! a runner that plays one scenario against every provider that has the capability it
//! needs, then checks that the OpenAI-side outputs have the same shape.
//!
//! A scenario is an `async fn(Arc<Bench>, Target) -> Vec<Specimen>`: it drives the gateway
//! with OpenAI requests for `target.model`, asserts what must hold for that provider, and
//! returns specimens (labelled OpenAI outputs) whose [`shape`] must then be equal across
//! providers. Each provider runs in its own task, so one provider's failure does not hide
//! another's; the runner reports every failure at once.

#![allow(dead_code)]

#[macro_use]
mod runner;
mod openai;
mod shape;
mod wire;

pub use openai::*;
pub use runner::*;
pub use shape::*;
pub use wire::*;

use std::collections::HashMap;

use serde_json::Value;
use tollgate::config::Config;
use tollgate::providers::auth::{ProviderAuth, Secret};
use tollgate::providers::ProviderKind;
use tollgate::proxy::upstream::Credentials;
use tollgate::proxy::GatewayState;
use tollgate::server::RunningGateway;
use tollgate::sim::{RecordedRequest, SimOptions, SimServer};

pub const OPENAI_KEY: &str = "sk-test-openai-0123456789";
pub const ANTHROPIC_KEY: &str = "sk-ant-test-0123456789";
pub const MISTRAL_KEY: &str = "mistral-test-key-9876543210";
pub const CORTEX_PAT: &str = "snowflake-pat-test-0123456789";

/// What a provider (as simulated, and as the real API behaves) can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Plain text chat, JSON and streamed.
    Text,
    /// Function tools, forced with `tool_choice`, and tool results sent back.
    Tools,
    /// The same tools, streamed.
    StreamingTools,
    /// Token usage in both the JSON answer and the stream.
    Usage,
    /// Fault directives give the provider's own error responses.
    Errors,
    /// The provider's own 529 `overloaded_error` (Anthropic only).
    Status529,
}

/// One model served by one provider: what scenarios run against.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The model name clients send (`routes.toml` name).
    pub model: &'static str,
    /// The provider name in the config (also the `x-tollgate-provider` value).
    pub provider: &'static str,
    pub kind: ProviderKind,
    /// The model id the provider sees.
    pub upstream: &'static str,
    pub caps: &'static [Capability],
}

impl Target {
    pub fn can(&self, cap: Capability) -> bool {
        self.caps.contains(&cap)
    }
}

use Capability::*;

/// The four providers' models and what each can do: the capability list the suite runs.
pub const TARGETS: [Target; 4] = [
    Target {
        model: "gpt-4o-mini",
        provider: "openai",
        kind: ProviderKind::OpenAi,
        upstream: "gpt-4o-mini",
        caps: &[Text, Tools, StreamingTools, Usage, Errors],
    },
    Target {
        model: "claude-haiku",
        provider: "anthropic",
        kind: ProviderKind::Anthropic,
        upstream: "claude-haiku-4-5-20251001",
        caps: &[Text, Tools, StreamingTools, Usage, Errors, Status529],
    },
    Target {
        model: "mistral-small",
        provider: "mistral",
        kind: ProviderKind::Mistral,
        upstream: "mistral-small-latest",
        caps: &[Text, Tools, StreamingTools, Usage, Errors],
    },
    Target {
        model: "cortex-claude",
        provider: "cortex",
        kind: ProviderKind::Cortex,
        upstream: "claude-sonnet-4-5",
        caps: &[Text, Tools, StreamingTools, Usage, Errors],
    },
];

/// The target served by `kind`.
pub fn target(kind: ProviderKind) -> Target {
    TARGETS
        .iter()
        .copied()
        .find(|t| t.kind == kind)
        .expect("every provider kind has a target")
}

/// Upstream timeouts: generous, because the tests share two cores.
const TIMEOUTS: &str =
    "{ connect_ms = 2000, first_byte_ms = 15000, idle_ms = 15000, total_ms = 30000 }";

/// The config: one model per provider (none with a fallback, so errors reach the client
/// unchanged), plus `chain-*` models whose fallback crosses providers.
pub fn routes(base: &HashMap<ProviderKind, String>) -> String {
    let url = |k: ProviderKind| base[&k].clone();
    format!(
        r#"
[routing]
default_model = "gpt-4o-mini"
retry = {{ attempts_per_model = 1, max_retry_after_ms = 1000 }}

[providers.openai]
kind = "openai"
base_url = "{openai}"
api_key_env = "UNUSED_IN_TESTS"
timeouts = {TIMEOUTS}

[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic}"
api_key_env = "UNUSED_IN_TESTS"
anthropic_version = "2023-06-01"
timeouts = {TIMEOUTS}

[providers.mistral]
kind = "mistral"
base_url = "{mistral}"
api_key_env = "UNUSED_IN_TESTS"
timeouts = {TIMEOUTS}

[providers.cortex]
kind = "cortex"
base_url = "{cortex}"
mode = "complete"
dollars_per_credit = "2.00"
api_key_env = "UNUSED_IN_TESTS"
snowflake = {{ auth = "pat" }}
timeouts = {TIMEOUTS}

[models.gpt-4o-mini]
provider = "openai"
context_window = 128000
max_output_tokens = 16384
price = {{ input = 0.15, output = 0.60 }}

[models.claude-haiku]
provider = "anthropic"
upstream = "claude-haiku-4-5-20251001"
context_window = 200000
max_output_tokens = 64000
default_max_tokens = 4096
price = {{ input = 1.00, output = 5.00, cached_input = 0.10, cache_write = 1.25 }}

[models.mistral-small]
provider = "mistral"
upstream = "mistral-small-latest"
context_window = 131072
max_output_tokens = 32768
price = {{ input = 0.06, output = 0.18 }}

# A Claude model: Cortex offers tool calling on its Claude models. Prices are test values.
[models.cortex-claude]
provider = "cortex"
upstream = "claude-sonnet-4-5"
context_window = 200000
max_output_tokens = 64000
price = {{ input_credits = 1.65, output_credits = 8.25 }}

[models.chain-openai]
provider = "openai"
upstream = "gpt-4o-mini"
context_window = 128000
max_output_tokens = 16384
price = {{ input = 0.15, output = 0.60 }}
fallback = ["chain-anthropic", "chain-cortex", "chain-mistral"]

[models.chain-anthropic]
provider = "anthropic"
upstream = "claude-haiku-4-5-20251001"
context_window = 200000
max_output_tokens = 64000
price = {{ input = 1.00, output = 5.00 }}

[models.chain-cortex]
provider = "cortex"
upstream = "claude-sonnet-4-5"
context_window = 200000
max_output_tokens = 64000
price = {{ input_credits = 1.65, output_credits = 8.25 }}

[models.chain-mistral]
provider = "mistral"
upstream = "mistral-small-latest"
context_window = 131072
max_output_tokens = 32768
price = {{ input = 0.06, output = 0.18 }}
"#,
        openai = url(ProviderKind::OpenAi),
        anthropic = url(ProviderKind::Anthropic),
        mistral = url(ProviderKind::Mistral),
        cortex = url(ProviderKind::Cortex),
    )
}

/// tollgate's credentials for the four simulators (the client's key is never forwarded).
pub fn credentials() -> Credentials {
    let mut m = HashMap::new();
    m.insert(
        "openai".to_string(),
        Ok(ProviderAuth::Bearer(Secret::new(OPENAI_KEY))),
    );
    m.insert(
        "anthropic".to_string(),
        Ok(ProviderAuth::ApiKey(Secret::new(ANTHROPIC_KEY))),
    );
    m.insert(
        "mistral".to_string(),
        Ok(ProviderAuth::Bearer(Secret::new(MISTRAL_KEY))),
    );
    m.insert(
        "cortex".to_string(),
        Ok(ProviderAuth::SnowflakeToken {
            token: Secret::new(CORTEX_PAT),
            token_type: "PROGRAMMATIC_ACCESS_TOKEN",
        }),
    );
    Credentials::from_map(m)
}

fn key_of(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => OPENAI_KEY,
        ProviderKind::Anthropic => ANTHROPIC_KEY,
        ProviderKind::Mistral => MISTRAL_KEY,
        ProviderKind::Cortex => CORTEX_PAT,
    }
}

/// The four simulators and the gateway in front of them.
pub struct Bench {
    sims: HashMap<ProviderKind, SimServer>,
    pub gw: RunningGateway,
    pub client: reqwest::Client,
}

impl Bench {
    /// Starts the simulators (each demanding tollgate's exact credential) and the gateway.
    pub async fn start() -> Bench {
        let mut sims = HashMap::new();
        let mut base = HashMap::new();
        for t in TARGETS {
            let sim = SimServer::start(
                t.kind,
                SimOptions {
                    api_key: Some(key_of(t.kind).into()),
                    ..SimOptions::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{} simulator starts: {e}", t.provider));
            base.insert(t.kind, sim.base_url());
            sims.insert(t.kind, sim);
        }
        let mut config =
            Config::parse(&routes(&base), "conformance-routes.toml").expect("test config valid");
        // Like demo mode: SDKs always send some key.
        config.auth.accept_any_key = true;
        let state = GatewayState::new(config, credentials());
        let gw = tokio::task::spawn_blocking(move || RunningGateway::start(state, 2))
            .await
            .expect("gateway thread")
            .expect("gateway starts");
        Bench {
            sims,
            gw,
            client: reqwest::Client::new(),
        }
    }

    /// The simulator of `kind`.
    pub fn sim(&self, kind: ProviderKind) -> &SimServer {
        &self.sims[&kind]
    }

    /// Removes every simulator's default fault (a failed scenario may have left one).
    pub fn clear_faults(&self) {
        for sim in self.sims.values() {
            sim.set_default_fault(None);
        }
    }

    /// Every chat request `kind`'s simulator received, as JSON, in order.
    pub fn wire_requests(&self, kind: ProviderKind) -> Vec<Value> {
        self.sim(kind)
            .requests()
            .iter()
            .filter(|r| r.method == http::Method::POST)
            .map(|r: &RecordedRequest| {
                serde_json::from_slice(&r.body).expect("the gateway sends JSON upstream")
            })
            .collect()
    }

    /// The last chat request `kind`'s simulator received.
    pub fn last_wire_request(&self, kind: ProviderKind) -> Value {
        self.wire_requests(kind)
            .pop()
            .unwrap_or_else(|| panic!("{kind} received no request"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gw.base_url(), path)
    }

    /// `POST /v1/chat/completions` with a client key that must never be forwarded.
    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth("client-key-must-not-be-forwarded")
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// A non-streaming request that must succeed: the JSON answer.
    pub async fn chat_ok(&self, body: &Value) -> Value {
        let resp = self.chat(body).await;
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        assert_eq!(status, 200, "expected 200, got {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("answer is JSON ({e}): {text}"))
    }

    /// A streaming request that must start: the raw SSE body.
    pub async fn stream_ok(&self, body: &Value) -> String {
        let resp = self.chat(body).await;
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.expect("body read");
        assert_eq!(status, 200, "expected 200, got {status}: {text}");
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        text
    }

    pub async fn stop(self) {
        let gw = self.gw;
        tokio::task::spawn_blocking(move || gw.stop())
            .await
            .expect("gateway stops");
    }
}
