//! Runtime configuration: the validated, immutable form of `routes.toml`.
//!
//! [`Config::parse`] reads the file, checks everything, and reports *every* problem with its
//! line (see [`validate`]). A `Config` is shared as `Arc<Config>`; reloads build a new one and
//! swap it in, so a request always sees one consistent snapshot.

pub mod accounting;
pub(crate) mod locate;
pub mod raw;
mod validate;

pub use validate::parse_base_url;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::budget::BudgetSet;
use crate::money::Decimal9;
use crate::providers::{CortexMode, ProviderKind};
use crate::routing::breaker::BreakerConfig;
use crate::routing::classifier::Classifier;
pub use accounting::{
    AlertSettings, AuthSettings, Backend, BudgetsSettings, RedisFailure, StateSettings,
};

pub use validate::{ConfigErrors, Problem};

/// Reserved model name: let tollgate choose.
pub const AUTO_MODEL: &str = "auto";

/// A validated `routes.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub routing: RoutingSettings,
    pub classifier: Arc<Classifier>,
    pub breaker: BreakerConfig,
    /// The model `auto` resolves to.
    pub default_model: String,
    pub providers: BTreeMap<String, Arc<ProviderConfig>>,
    pub models: BTreeMap<String, Arc<ModelConfig>>,
    /// Alias → model name.
    pub aliases: BTreeMap<String, String>,
    pub auth: AuthSettings,
    pub budgets_settings: BudgetsSettings,
    pub state: StateSettings,
    pub alerts: AlertSettings,
    /// Budgets and the keys that bill to them (from the budgets directory; empty for a
    /// config parsed from text alone).
    pub budgets: Arc<BudgetSet>,
    /// Short content hash of the source text and the budget files; changes with every
    /// edit.
    pub version: String,
}

/// `[routing]`: tiers and the policies that shape a chain.
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    /// Cheapest first. Empty: `auto` is served by `default_model`.
    pub tiers: Vec<Tier>,
    pub allow_tier_header: bool,
    pub max_request_cost: Option<Decimal9>,
    pub expected_output_tokens: u32,
    pub latency_classes: BTreeMap<String, Duration>,
    pub context_length_fallback: bool,
    pub retry: RetrySettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub name: String,
    pub premium: bool,
    pub chain: Vec<String>,
    /// (percent of daily budget spent, chain), ascending by percent.
    pub by_budget: Vec<(u32, Vec<String>)>,
}

impl Tier {
    /// The chain for a budget at `percent_spent` (the highest threshold reached wins).
    pub fn chain_at(&self, percent_spent: u32) -> &[String] {
        self.by_budget
            .iter()
            .rev()
            .find(|(p, _)| percent_spent >= *p)
            .map(|(_, c)| c.as_slice())
            .unwrap_or(&self.chain)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    pub attempts_per_model: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    pub max_retry_after: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: String,
    pub admin_listen: Option<String>,
    pub threads: usize,
    pub max_body_bytes: usize,
    pub max_sse_event_bytes: usize,
    pub shutdown_grace: Duration,
    /// HTTPS on the public listener (whether it is on is read at start; the certificate
    /// reloads).
    pub tls: Option<crate::tls::ListenerTls>,
    /// HTTPS on the admin listener.
    pub admin_tls: Option<crate::tls::ListenerTls>,
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_json_depth: usize,
    pub max_messages: usize,
    pub max_n: u32,
}

/// Where a provider lives, parsed from `base_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without trailing slash (often empty).
    pub path_prefix: String,
}

impl BaseUrl {
    /// `host` or `host:port` as the `Host` header wants it.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Where a provider's credential comes from. Values are read at start-up, never stored in
/// the config itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Env(String),
    File(PathBuf),
    /// Snowflake key-pair JWT.
    SnowflakeKeyPair {
        account: String,
        user: String,
        private_key_file: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
    pub pool_idle: Duration,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub base: BaseUrl,
    /// Trust anchors replacing the system roots for this provider (`ca_file`).
    pub ca: Option<Arc<crate::tls::CaBundle>>,
    pub credential: CredentialSource,
    /// Snowflake token type for PAT / OAuth tokens (`PROGRAMMATIC_ACCESS_TOKEN`, `OAUTH`).
    pub snowflake_token_type: Option<&'static str>,
    pub timeouts: Timeouts,
    pub anthropic_version: String,
    pub cortex_mode: CortexMode,
    /// Cortex: dollars per Snowflake credit.
    pub dollars_per_credit: Option<Decimal9>,
}

/// Prices in nano-dollars per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: Decimal9,
    pub output: Decimal9,
    pub cached_input: Decimal9,
    pub cache_write: Decimal9,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    pub provider: String,
    pub kind: ProviderKind,
    pub upstream: String,
    pub context_window: u64,
    pub max_output_tokens: u32,
    pub default_max_tokens: u32,
    pub price: Price,
    pub fallback: Vec<String>,
    pub owned_by: String,
}

impl Config {
    /// Parses and validates `src`; `origin` names the file in problem reports.
    pub fn parse(src: &str, origin: &str) -> Result<Config, ConfigErrors> {
        validate::parse(src, origin)
    }

    /// Reads and validates a file and the budget files it points at. Relative paths in
    /// it (`budgets.dir`, `state.data_dir`) are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single(Problem {
                origin: origin.clone(),
                line: None,
                path: String::new(),
                message: format!("cannot read file: {e}"),
            })
        })?;
        let mut cfg = Config::parse(&src, &origin);
        let base = path.parent().unwrap_or(Path::new("."));
        let dir = match &cfg {
            Ok(c) => base.join(&c.budgets_settings.dir),
            Err(_) => base.join(BudgetsSettings::default().dir),
        };
        let budgets = BudgetSet::load_dir(&dir);
        // Report the problems of both, so one edit session sees everything.
        match (&mut cfg, budgets) {
            (Ok(c), Ok((set, files))) => {
                c.budgets_settings.dir = dir;
                c.state.data_dir = base.join(&c.state.data_dir);
                c.budgets = Arc::new(set);
                let mut files = files;
                files.extend(c.tls_material());
                c.version = validate::version_of_all(&src, &files);
            }
            (Ok(_), Err(e)) => return Err(e),
            (Err(errs), Err(e)) => errs.0.extend(e.0),
            (Err(_), Ok(_)) => {}
        }
        cfg
    }

    /// Digests of the TLS files in use, for the config version: a renewed certificate or
    /// CA bundle is a new version.
    pub(crate) fn tls_material(&self) -> Vec<(String, Vec<u8>)> {
        let listeners = [
            ("tls", &self.server.tls),
            ("admin_tls", &self.server.admin_tls),
        ];
        let mut out: Vec<(String, Vec<u8>)> = listeners
            .into_iter()
            .filter_map(|(n, t)| {
                t.as_ref()
                    .map(|t| (format!("server.{n}"), t.digest.to_vec()))
            })
            .collect();
        for p in self.providers.values() {
            if let Some(ca) = &p.ca {
                out.push((format!("providers.{}.ca_file", p.name), ca.digest.to_vec()));
            }
        }
        out
    }

    /// Every TLS file the config reads (watched by the reloader).
    pub fn tls_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for t in [&self.server.tls, &self.server.admin_tls]
            .into_iter()
            .flatten()
        {
            out.push(t.cert_file.clone());
            out.push(t.key_file.clone());
        }
        for p in self.providers.values() {
            if let Some(ca) = &p.ca {
                out.push(ca.file.clone());
            }
        }
        out
    }

    /// Resolves an alias to its model name (a model name resolves to itself).
    pub fn canonical_model<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        if self.models.contains_key(name) {
            Some(name)
        } else {
            self.aliases.get(name).map(String::as_str)
        }
    }

    /// Whether `requested` is routed by the classifier: `auto`, or an alias of `auto`,
    /// when tiers are configured.
    pub fn is_routed(&self, requested: &str) -> bool {
        !self.routing.tiers.is_empty()
            && (requested == AUTO_MODEL
                || self.aliases.get(requested).map(String::as_str) == Some(AUTO_MODEL))
    }

    /// The ordered chain of models serving a requested model name: the model itself, then
    /// its fallbacks (aliases resolved, duplicates dropped). `None` for an unknown name.
    /// `auto` (without tiers) is served by `default_model`.
    pub fn chain(&self, requested: &str) -> Option<Vec<Arc<ModelConfig>>> {
        let name = if requested == AUTO_MODEL
            || self.aliases.get(requested).map(String::as_str) == Some(AUTO_MODEL)
        {
            self.canonical_model(&self.default_model)?
        } else {
            self.canonical_model(requested)?
        };
        let first = self.models.get(name)?;
        let mut chain = vec![first.clone()];
        for fb in &first.fallback {
            if let Some(m) = self.canonical_model(fb).and_then(|n| self.models.get(n)) {
                if !chain.iter().any(|c| c.name == m.name) {
                    chain.push(m.clone());
                }
            }
        }
        Some(chain)
    }

    /// Models of a list of names (aliases resolved, unknown and duplicate names dropped).
    pub fn models_named(&self, names: &[String]) -> Vec<Arc<ModelConfig>> {
        let mut out: Vec<Arc<ModelConfig>> = Vec::new();
        for n in names {
            if let Some(m) = self.canonical_model(n).and_then(|c| self.models.get(c)) {
                if !out.iter().any(|o| o.name == m.name) {
                    out.push(m.clone());
                }
            }
        }
        out
    }

    /// Index of a tier by name.
    pub fn tier_index(&self, name: &str) -> Option<usize> {
        self.routing.tiers.iter().position(|t| t.name == name)
    }
}
