//! The `[auth]`, `[budgets]`, `[state]` and `[alerts]` sections: who may call, where budget
//! files live, where accounting state is kept (embedded SQLite and in-process counters, or
//! Redis shared by replicas), and how alerts are delivered.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Requests without a known virtual key are served and billed to `anonymous_budget`.
    /// Off in production: unknown or missing keys get 401. `serve --demo` turns it on.
    #[serde(default)]
    pub allow_anonymous: bool,
    #[serde(default = "demo")]
    pub anonymous_budget: String,
    /// Demo mode: any key (SDKs always send one) is accepted and billed like an anonymous
    /// request. Never set from the file.
    #[serde(skip)]
    pub accept_any_key: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            allow_anonymous: false,
            anonymous_budget: demo(),
            accept_any_key: false,
        }
    }
}

fn demo() -> String {
    "demo".into()
}

/// `[budgets]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetsSettings {
    /// Directory of budget files, relative to `routes.toml`.
    #[serde(default = "budgets_dir")]
    pub dir: PathBuf,
}

impl Default for BudgetsSettings {
    fn default() -> Self {
        BudgetsSettings { dir: budgets_dir() }
    }
}

fn budgets_dir() -> PathBuf {
    "budgets".into()
}

/// Where budget counters and alert claims live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// In-process counters (rebuilt from the ledger on start); one replica.
    Embedded,
    /// Counters and alert claims in Redis, shared by all replicas.
    Redis,
}

/// What the gateway does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailure {
    /// Keep serving with local accounting, reconciled into Redis when it returns.
    FailOpen,
    /// Refuse new requests (503) until Redis answers.
    FailClosed,
}

/// `[state]`. Read at start; changing it needs a restart.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    #[serde(default = "embedded")]
    pub backend: Backend,
    /// Directory of the SQLite ledger, relative to `routes.toml`.
    #[serde(default = "data_dir")]
    pub data_dir: PathBuf,
    /// Ledger group-commit interval (at most 1000 ms: what a `kill -9` may lose).
    #[serde(default = "flush_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "redis_url")]
    pub redis_url: String,
    #[serde(default = "fail_open")]
    pub redis_failure: RedisFailure,
    /// Bound on every Redis operation.
    #[serde(default = "redis_timeout")]
    pub redis_timeout_ms: u64,
    /// Prefix of every Redis key (several gateways may share one Redis).
    #[serde(default = "prefix")]
    pub redis_key_prefix: String,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            backend: embedded(),
            data_dir: data_dir(),
            flush_interval_ms: flush_ms(),
            redis_url: redis_url(),
            redis_failure: fail_open(),
            redis_timeout_ms: redis_timeout(),
            redis_key_prefix: prefix(),
        }
    }
}

impl StateSettings {
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// Problems as (dotted path below `state`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !(1..=1000).contains(&self.flush_interval_ms) {
            out.push((
                "flush_interval_ms".into(),
                "must be from 1 to 1000 (records younger than this may be lost on a crash)".into(),
            ));
        }
        if self.backend == Backend::Redis
            && !(self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://"))
        {
            out.push((
                "redis_url".into(),
                "must be a redis:// or rediss:// URL".into(),
            ));
        }
        if self.redis_timeout_ms == 0 {
            out.push(("redis_timeout_ms".into(), "must be above 0".into()));
        }
        out
    }
}

fn embedded() -> Backend {
    Backend::Embedded
}
fn data_dir() -> PathBuf {
    "data".into()
}
fn flush_ms() -> u64 {
    200
}
fn redis_url() -> String {
    "redis://127.0.0.1:6379/".into()
}
fn fail_open() -> RedisFailure {
    RedisFailure::FailOpen
}
fn redis_timeout() -> u64 {
    250
}
fn prefix() -> String {
    "tollgate".into()
}

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// Link to the cost dashboard included in every alert.
    #[serde(default)]
    pub dashboard_url: Option<String>,
    /// Longest wait between two delivery attempts of one alert.
    #[serde(default = "max_backoff")]
    pub max_backoff_secs: u64,
    /// Timeout of one webhook call.
    #[serde(default = "webhook_timeout")]
    pub webhook_timeout_secs: u64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            dashboard_url: None,
            max_backoff_secs: max_backoff(),
            webhook_timeout_secs: webhook_timeout(),
        }
    }
}

fn max_backoff() -> u64 {
    300
}
fn webhook_timeout() -> u64 {
    10
}
