//! Test harness: simulated providers on free ports, the real Pingora gateway in-process on
//! a free port, and helpers to build configs and read SSE.

#![allow(dead_code)]

pub mod dir;
pub mod finance;

use std::collections::HashMap;
use std::sync::Arc;

use tollgate::config::Config;
use tollgate::providers::auth::{ProviderAuth, Secret};
use tollgate::providers::ProviderKind;
use tollgate::proxy::upstream::Credentials;
use tollgate::proxy::GatewayState;
use tollgate::server::RunningGateway;
use tollgate::sim::{SimOptions, SimServer};

pub const OPENAI_KEY: &str = "sk-test-openai-0123456789";
pub const MISTRAL_KEY: &str = "mistral-test-key-9876543210";

/// Simulated OpenAI and Mistral plus a gateway routing to them.
pub struct Harness {
    pub openai: SimServer,
    pub mistral: SimServer,
    pub gw: RunningGateway,
    pub client: reqwest::Client,
}

/// Upstream timeouts of the test config: generous, because the tests share two cores.
pub const TIMEOUTS: &str =
    "{ connect_ms = 2000, first_byte_ms = 15000, idle_ms = 15000, total_ms = 30000 }";

/// The config used by most tests; `extra` is appended (more models, server settings).
pub fn routes(openai: &str, mistral: &str, server: &str, extra: &str, timeouts: &str) -> String {
    format!(
        r#"
[server]
{server}

[routing]
default_model = "gpt-4o-mini"

[auth]
allow_anonymous = true

[providers.openai]
kind = "openai"
base_url = "{openai}"
api_key_env = "UNUSED_IN_TESTS"
timeouts = {timeouts}

[providers.mistral]
kind = "mistral"
base_url = "{mistral}"
api_key_env = "UNUSED_IN_TESTS"
timeouts = {timeouts}

[models.gpt-4o-mini]
provider = "openai"
context_window = 128000
max_output_tokens = 16384
price = {{ input = 0.15, output = 0.60 }}
fallback = ["mistral-small"]

[models.gpt-4-turbo]
provider = "openai"
upstream = "gpt-4-turbo-2024-04-09"
context_window = 128000
max_output_tokens = 4096
price = {{ input = 10, output = 30 }}

[models.mistral-small]
provider = "mistral"
upstream = "mistral-small-latest"
context_window = 131072
max_output_tokens = 32768
price = {{ input = 0.06, output = 0.18 }}

[aliases]
"gpt-4" = "gpt-4-turbo"
{extra}
"#
    )
}

pub fn credentials() -> Credentials {
    let mut m = HashMap::new();
    m.insert(
        "openai".to_string(),
        Ok(ProviderAuth::Bearer(Secret::new(OPENAI_KEY))),
    );
    m.insert(
        "mistral".to_string(),
        Ok(ProviderAuth::Bearer(Secret::new(MISTRAL_KEY))),
    );
    Credentials::from_map(m)
}

/// The simulated OpenAI and Mistral providers every harness starts, each expecting its
/// test key.
pub async fn start_sims() -> (SimServer, SimServer) {
    let start = |kind, key: &str| {
        SimServer::start(
            kind,
            SimOptions {
                api_key: Some(key.into()),
                ..SimOptions::default()
            },
        )
    };
    let openai = start(ProviderKind::OpenAi, OPENAI_KEY)
        .await
        .expect("openai sim");
    let mistral = start(ProviderKind::Mistral, MISTRAL_KEY)
        .await
        .expect("mistral sim");
    (openai, mistral)
}

impl Harness {
    pub async fn start() -> Harness {
        Self::with("", "").await
    }

    /// `server` lines go in `[server]`; `extra` is appended to the file.
    pub async fn with(server: &str, extra: &str) -> Harness {
        Self::with_timeouts(server, extra, TIMEOUTS).await
    }

    /// Like [`Harness::with`], with the providers' `timeouts` table given.
    pub async fn with_timeouts(server: &str, extra: &str, timeouts: &str) -> Harness {
        Self::build(None, server, extra, timeouts).await
    }

    /// A harness whose OpenAI provider is the test's own server at `openai_url` (the
    /// simulator is started but not routed to).
    pub async fn with_openai_at(openai_url: &str) -> Harness {
        Self::build(Some(openai_url), "", "", TIMEOUTS).await
    }

    async fn build(openai_url: Option<&str>, server: &str, extra: &str, timeouts: &str) -> Harness {
        let (openai, mistral) = start_sims().await;
        let src = routes(
            openai_url.unwrap_or(&openai.base_url()),
            &mistral.base_url(),
            server,
            extra,
            timeouts,
        );
        let mut config = Config::parse(&src, "test-routes.toml").expect("test config valid");
        // Like demo mode: SDKs always send some key.
        config.auth.accept_any_key = true;
        let state = GatewayState::new(config, credentials());
        let gw = tokio::task::spawn_blocking(move || RunningGateway::start(state, 2))
            .await
            .unwrap()
            .expect("gateway starts");
        Harness {
            openai,
            mistral,
            gw,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gw.base_url(), path)
    }

    pub async fn chat(&self, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth("client-key-must-not-be-forwarded")
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn stop(self) {
        let gw = self.gw;
        tokio::task::spawn_blocking(move || gw.stop())
            .await
            .unwrap();
    }
}

/// Splits an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(|d| d.trim_start()))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The JSON chunks of an SSE body (everything but `[DONE]`).
pub fn sse_json(body: &str) -> Vec<serde_json::Value> {
    sse_data(body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("chunk is JSON"))
        .collect()
}

/// Concatenated `delta.content` of stream chunks.
pub fn streamed_text(chunks: &[serde_json::Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

pub fn user(text: &str) -> serde_json::Value {
    serde_json::json!([{"role": "user", "content": text}])
}

pub fn shared<T>(t: T) -> Arc<T> {
    Arc::new(t)
}

/// Reads until the server closes the connection (or `limit` passes); returns what came.
pub async fn read_to_close(
    s: &mut tokio::net::TcpStream,
    limit: std::time::Duration,
) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let r = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    r.ok().map(|_| String::from_utf8_lossy(&out).into_owned())
}
