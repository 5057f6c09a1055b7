//! `routes.toml` → [`Config`]: deserializes section by section and entry by entry, then
//! checks cross-references, collecting every problem (with file, line and dotted path)
//! instead of stopping at the first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::accounting::{AlertSettings, AuthSettings, BudgetsSettings, StateSettings};
use super::locate::Locator;
use super::raw::{
    RawModel, RawPrice, RawProvider, RawRetry, RawRouting, RawServer, RawSnowflakeAuth,
    RawTlsFiles, SECTIONS,
};
use super::{
    BaseUrl, Config, CredentialSource, ModelConfig, Price, ProviderConfig, RetrySettings,
    RoutingSettings, ServerSettings, Tier, Timeouts, AUTO_MODEL,
};
use crate::budget::BudgetSet;
use crate::providers::{CortexMode, ProviderKind};
use crate::routing::breaker::BreakerConfig;
use crate::routing::classifier::{Classifier, ClassifierConfig};
use crate::tls::ListenerTls;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: String,
    pub line: Option<usize>,
    /// Dotted path of the offending setting (empty for whole-file problems).
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Problem>);

impl ConfigErrors {
    pub fn single(p: Problem) -> Self {
        ConfigErrors(vec![p])
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

struct Checker<'a> {
    origin: &'a str,
    /// Relative file paths in the config are read from here (the file's directory).
    base: &'a Path,
    loc: Locator,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, path: &[&str], message: impl Into<String>) {
        self.problems.push(Problem {
            origin: self.origin.to_string(),
            line: self.loc.line(path),
            path: path.join("."),
            message: message.into(),
        });
    }

    /// Deserializes one value, reporting a failure at `path` (or at the offending field
    /// when serde names it).
    fn de<T: DeserializeOwned>(&mut self, path: &[&str], v: toml::Value) -> Option<T> {
        match T::deserialize(v) {
            Ok(t) => Some(t),
            Err(e) => {
                let msg = e.message().to_string();
                let field = msg
                    .split('`')
                    .nth(1)
                    .filter(|_| msg.starts_with("unknown field"))
                    .map(str::to_string);
                match field {
                    Some(f) => {
                        let mut p = path.to_vec();
                        p.push(&f);
                        self.report(&p, msg.clone());
                    }
                    None => self.report(path, msg),
                }
                None
            }
        }
    }
}

pub fn parse(src: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let base = Path::new(origin).parent().unwrap_or(Path::new(""));
    let mut c = Checker {
        origin,
        base,
        loc: Locator::new(src),
        problems: Vec::new(),
    };
    let mut table: toml::Table = match src.parse() {
        Ok(t) => t,
        Err(e) => {
            let e: toml::de::Error = e;
            let line = e.span().map(|s| c.loc.line_of_offset(s.start));
            return Err(ConfigErrors::single(Problem {
                origin: origin.to_string(),
                line,
                path: String::new(),
                message: format!("invalid TOML: {}", e.message()),
            }));
        }
    };
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            let msg = format!("unknown section, expected one of {}", SECTIONS.join(", "));
            c.problems.push(Problem {
                origin: origin.to_string(),
                line: c.loc.line(&[key]),
                path: key.clone(),
                message: msg,
            });
        }
    }

    let server: RawServer = match table.remove("server") {
        Some(v) => c.de(&["server"], v).unwrap_or_default(),
        None => RawServer::default(),
    };
    let routing: Option<RawRouting> = match table.remove("routing") {
        Some(v) => c.de(&["routing"], v),
        None => {
            c.report(&[], "missing [routing] section with `default_model`");
            None
        }
    };
    let providers = entries(&mut c, &mut table, "providers");
    let models = entries(&mut c, &mut table, "models");
    let classifier_cfg: ClassifierConfig = match table.remove("classifier") {
        Some(v) => c.de(&["classifier"], v).unwrap_or_default(),
        None => ClassifierConfig::default(),
    };
    let breaker: BreakerConfig = match table.remove("breaker") {
        Some(v) => c.de(&["breaker"], v).unwrap_or_default(),
        None => BreakerConfig::default(),
    };
    let auth: AuthSettings = match table.remove("auth") {
        Some(v) => c.de(&["auth"], v).unwrap_or_default(),
        None => AuthSettings::default(),
    };
    let budgets: BudgetsSettings = match table.remove("budgets") {
        Some(v) => c.de(&["budgets"], v).unwrap_or_default(),
        None => BudgetsSettings::default(),
    };
    let state: StateSettings = match table.remove("state") {
        Some(v) => c.de(&["state"], v).unwrap_or_default(),
        None => StateSettings::default(),
    };
    for (path, msg) in state.validate() {
        c.report(&["state", &path], msg);
    }
    let alerts: AlertSettings = match table.remove("alerts") {
        Some(v) => c.de(&["alerts"], v).unwrap_or_default(),
        None => AlertSettings::default(),
    };
    let aliases: BTreeMap<String, String> = match table.remove("aliases") {
        Some(v) => c.de(&["aliases"], v).unwrap_or_default(),
        None => BTreeMap::new(),
    };

    let server = check_server(&mut c, server);
    let mut prov_out = BTreeMap::new();
    let mut unparsed = Vec::new();
    for (name, v) in providers {
        match c.de::<RawProvider>(&["providers", &name], v) {
            Some(raw) => {
                let p = check_provider(&mut c, &name, raw);
                prov_out.insert(name, Arc::new(p));
            }
            None => unparsed.push(name),
        }
    }
    let mut model_out = BTreeMap::new();
    let mut fallbacks = Vec::new();
    for (name, v) in models {
        if let Some(raw) = c.de::<RawModel>(&["models", &name], v) {
            fallbacks.push((name.clone(), raw.fallback.clone()));
            if unparsed.contains(&raw.provider) {
                continue; // its provider's own problem was reported
            }
            if let Some(m) = check_model(&mut c, &name, raw, &prov_out) {
                model_out.insert(name, Arc::new(m));
            }
        }
    }
    // Cross-references need every model parsed first.
    let known = |n: &str, models: &BTreeMap<String, Arc<ModelConfig>>| {
        models.contains_key(n) || aliases.contains_key(n)
    };
    for (name, fbs) in &fallbacks {
        for fb in fbs {
            if fb == name || aliases.get(fb) == Some(name) {
                c.report(
                    &["models", name, "fallback"],
                    "a model cannot fall back to itself",
                );
            } else if !known(fb, &model_out) && !fallbacks.iter().any(|(n, _)| n == fb) {
                c.report(
                    &["models", name, "fallback"],
                    format!("unknown model or alias `{fb}`"),
                );
            }
        }
    }
    for (alias, target) in &aliases {
        if alias == AUTO_MODEL {
            c.report(
                &["aliases", alias],
                "`auto` is reserved for routed requests",
            );
        } else if model_out.contains_key(alias) {
            c.report(
                &["aliases", alias],
                "an alias cannot have the name of a model",
            );
        } else if target != AUTO_MODEL
            && !model_out.contains_key(target)
            && !fallbacks.iter().any(|(n, _)| n == target)
        {
            c.report(&["aliases", alias], format!("unknown model `{target}`"));
        }
    }
    let model_known = |n: &str| {
        model_out.contains_key(n)
            || aliases.get(n).is_some_and(|t| t != AUTO_MODEL)
            || fallbacks.iter().any(|(m, _)| m == n)
    };
    let routing_settings = match &routing {
        Some(r) => check_routing(&mut c, r, &model_known),
        None => check_routing(&mut c, &empty_routing(), &model_known),
    };
    let tier_names: Vec<String> = routing_settings
        .tiers
        .iter()
        .map(|t| t.name.clone())
        .collect();
    for (path, msg) in classifier_cfg.validate(&tier_names) {
        let mut p = vec!["classifier"];
        p.extend(path.split('.').filter(|s| !s.is_empty()));
        c.report(&p, msg);
    }
    for (path, msg) in breaker.validate() {
        let mut p = vec!["breaker"];
        p.extend(path.split('.').filter(|s| !s.is_empty()));
        c.report(&p, msg);
    }
    let classifier = match Classifier::new(&classifier_cfg, &tier_names) {
        Ok(cl) => Some(cl),
        Err(e) => {
            c.report(&["classifier"], e);
            None
        }
    };
    let default_model = routing.map(|r| r.default_model).unwrap_or_default();
    if !default_model.is_empty()
        && !known(&default_model, &model_out)
        && !fallbacks.iter().any(|(n, _)| *n == default_model)
    {
        c.report(
            &["routing", "default_model"],
            format!("unknown model or alias `{default_model}`"),
        );
    }

    if !c.problems.is_empty() {
        c.problems.sort_by_key(|p| p.line.unwrap_or(0));
        return Err(ConfigErrors(c.problems));
    }
    let Some(classifier) = classifier else {
        return Err(ConfigErrors(c.problems));
    };
    Ok(Config {
        server,
        routing: routing_settings,
        classifier: Arc::new(classifier),
        breaker,
        default_model,
        providers: prov_out,
        models: model_out,
        aliases,
        auth,
        budgets_settings: budgets,
        state,
        alerts,
        budgets: Arc::new(BudgetSet::default()),
        version: String::new(),
    })
    .map(|mut cfg| {
        cfg.version = version_of_all(src, &cfg.tls_material());
        cfg
    })
}

/// First 12 hex digits of SHA-256 over the source and every budget file or TLS file
/// digest (name and bytes).
pub fn version_of_all(src: &str, files: &[(String, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    h.update(src.as_bytes());
    for (name, bytes) in files {
        h.update([0u8]);
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update(bytes);
    }
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn entries(c: &mut Checker, table: &mut toml::Table, section: &str) -> Vec<(String, toml::Value)> {
    match table.remove(section) {
        None => {
            c.report(&[], format!("missing [{section}] section"));
            Vec::new()
        }
        Some(toml::Value::Table(t)) => t.into_iter().collect(),
        Some(_) => {
            c.report(&[section], "must be a table");
            Vec::new()
        }
    }
}

fn empty_routing() -> RawRouting {
    RawRouting {
        default_model: String::new(),
        tiers: Vec::new(),
        allow_tier_header: false,
        max_request_cost: None,
        expected_output_tokens: 512,
        latency_classes: BTreeMap::new(),
        context_length_fallback: false,
        retry: RawRetry::default(),
    }
}

fn check_routing(c: &mut Checker, r: &RawRouting, known: &dyn Fn(&str) -> bool) -> RoutingSettings {
    let mut tiers: Vec<Tier> = Vec::new();
    for (i, t) in r.tiers.iter().enumerate() {
        let idx = i.to_string();
        let at = ["routing", "tiers", idx.as_str()];
        if t.name.is_empty() {
            c.report(&at, "tier name must not be empty");
        } else if tiers.iter().any(|x| x.name == t.name) {
            c.report(&at, format!("duplicate tier `{}`", t.name));
        }
        let check_chain = |c: &mut Checker, chain: &[String], what: &str| {
            if chain.is_empty() {
                c.report(&at, format!("tier `{}`: {what} must not be empty", t.name));
            }
            for m in chain {
                if !known(m) {
                    c.report(
                        &at,
                        format!("tier `{}`: {what} names unknown model `{m}`", t.name),
                    );
                }
            }
        };
        check_chain(c, &t.chain, "chain");
        let mut by_budget = Vec::new();
        for (pct, chain) in &t.budget {
            match pct.parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => by_budget.push((p, chain.clone())),
                _ => c.report(
                    &at,
                    format!(
                        "tier `{}`: budget key `{pct}` must be a percentage from 1 to 100",
                        t.name
                    ),
                ),
            }
            check_chain(c, chain, &format!("budget.{pct}"));
        }
        by_budget.sort_by_key(|(p, _)| *p);
        tiers.push(Tier {
            name: t.name.clone(),
            premium: t.premium,
            chain: t.chain.clone(),
            by_budget,
        });
    }
    let mut latency_classes = BTreeMap::new();
    for (name, ms) in &r.latency_classes {
        if *ms == 0 {
            c.report(
                &["routing", "latency_classes", name],
                "must be greater than 0",
            );
        }
        latency_classes.insert(name.clone(), Duration::from_millis(*ms));
    }
    let rt = &r.retry;
    if !(1..=10).contains(&rt.attempts_per_model) {
        c.report(
            &["routing", "retry", "attempts_per_model"],
            "must be between 1 and 10",
        );
    }
    if rt.base_backoff_ms > rt.max_backoff_ms {
        c.report(
            &["routing", "retry"],
            "base_backoff_ms must not exceed max_backoff_ms",
        );
    }
    if r.expected_output_tokens == 0 {
        c.report(
            &["routing", "expected_output_tokens"],
            "must be greater than 0",
        );
    }
    RoutingSettings {
        tiers,
        allow_tier_header: r.allow_tier_header,
        max_request_cost: r.max_request_cost,
        expected_output_tokens: r.expected_output_tokens,
        latency_classes,
        context_length_fallback: r.context_length_fallback,
        retry: RetrySettings {
            attempts_per_model: rt.attempts_per_model,
            base_backoff: Duration::from_millis(rt.base_backoff_ms),
            max_backoff: Duration::from_millis(rt.max_backoff_ms),
            max_retry_after: Duration::from_millis(rt.max_retry_after_ms),
        },
    }
}

fn check_server(c: &mut Checker, s: RawServer) -> ServerSettings {
    if s.listen.parse::<SocketAddr>().is_err() {
        c.report(
            &["server", "listen"],
            "must be IP:PORT, e.g. 127.0.0.1:8080",
        );
    }
    if let Some(a) = &s.admin_listen {
        if a.parse::<SocketAddr>().is_err() {
            c.report(
                &["server", "admin_listen"],
                "must be IP:PORT, e.g. 127.0.0.1:9090",
            );
        }
    }
    if !(1..=256).contains(&s.threads) {
        c.report(&["server", "threads"], "must be between 1 and 256");
    }
    if s.max_body_bytes < 1024 {
        c.report(&["server", "max_body_bytes"], "must be at least 1024");
    }
    if s.max_sse_event_bytes < 1024 {
        c.report(&["server", "max_sse_event_bytes"], "must be at least 1024");
    }
    let tls = s.tls.as_ref().and_then(|t| check_tls(c, "tls", t));
    let admin_tls = s
        .admin_tls
        .as_ref()
        .and_then(|t| check_tls(c, "admin_tls", t));
    for (key, ms) in [
        ("client_header_timeout_ms", s.client_header_timeout_ms),
        ("client_body_timeout_ms", s.client_body_timeout_ms),
    ] {
        if !(100..=3_600_000).contains(&ms) {
            c.report(&["server", key], "must be between 100 and 3600000");
        }
    }
    if !(1024..=1024 * 1024).contains(&s.max_header_bytes) {
        c.report(
            &["server", "max_header_bytes"],
            "must be between 1024 and 1048576",
        );
    }
    if !(8..=1024).contains(&s.max_json_depth) {
        c.report(&["server", "max_json_depth"], "must be between 8 and 1024");
    }
    if s.max_messages == 0 {
        c.report(&["server", "max_messages"], "must be at least 1");
    }
    if s.max_n == 0 {
        c.report(&["server", "max_n"], "must be at least 1");
    }
    ServerSettings {
        tls,
        admin_tls,
        listen: s.listen,
        admin_listen: s.admin_listen,
        threads: s.threads,
        max_body_bytes: s.max_body_bytes,
        max_sse_event_bytes: s.max_sse_event_bytes,
        shutdown_grace: Duration::from_secs(s.shutdown_grace_seconds),
        client_header_timeout: Duration::from_millis(s.client_header_timeout_ms),
        client_body_timeout: Duration::from_millis(s.client_body_timeout_ms),
        max_header_bytes: s.max_header_bytes,
        max_json_depth: s.max_json_depth,
        max_messages: s.max_messages,
        max_n: s.max_n,
    }
}

/// Loads a listener's certificate and key, reporting an unreadable or mismatched file.
fn check_tls(c: &mut Checker, table: &str, t: &RawTlsFiles) -> Option<ListenerTls> {
    for (field, v) in [("cert", &t.cert), ("key", &t.key)] {
        if v.trim().is_empty() {
            c.report(&["server", table, field], "must name a PEM file");
            return None;
        }
    }
    let cert = c.base.join(&t.cert);
    let key = c.base.join(&t.key);
    match crate::tls::load_listener(&cert, &key) {
        Ok(l) => Some(l),
        Err(e) => {
            let field = if e.contains(&key.display().to_string()) && !e.contains("does not match") {
                "key"
            } else {
                "cert"
            };
            c.report(&["server", table, field], e);
            None
        }
    }
}

/// Parses `scheme://host[:port][/prefix]`.
pub fn parse_base_url(url: &str) -> Result<BaseUrl, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("must start with https:// (or http:// for a loopback upstream)".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.contains('@') || path.contains('?') || path.contains('#') {
        return Err("must not contain credentials, a query or a fragment".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("invalid port `{p}`"))?;
            (h, port)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !tls && !is_loopback(host) {
        return Err(format!(
            "plain http is only allowed to loopback hosts; use https:// for `{host}`"
        ));
    }
    Ok(BaseUrl {
        tls,
        host: host.to_ascii_lowercase(),
        port,
        path_prefix: path.to_string(),
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Checks a provider. Returns a best-effort value even when problems were reported, so that
/// models using it are still checked (the problems keep the config from being used).
fn check_provider(c: &mut Checker, name: &str, p: RawProvider) -> ProviderConfig {
    let at = |f: &'static str| ["providers", name, f];
    let base = match parse_base_url(&p.base_url) {
        Ok(b) => Some(b),
        Err(e) => {
            c.report(&at("base_url"), e);
            None
        }
    };
    let kind = p.kind;
    let ca = match &p.ca_file {
        Some(f) if base.as_ref().is_some_and(|b| !b.tls) => {
            c.report(&at("ca_file"), format!("`{f}` needs an https:// base_url"));
            None
        }
        Some(f) => match crate::tls::load_ca(&c.base.join(f)) {
            Ok(b) => Some(Arc::new(b)),
            Err(e) => {
                c.report(&at("ca_file"), e);
                None
            }
        },
        None => None,
    };
    if p.api_key_env.is_some() && p.api_key_file.is_some() {
        c.report(
            &at("api_key_file"),
            "set api_key_env or api_key_file, not both",
        );
    }
    let key_source = p
        .api_key_env
        .clone()
        .map(CredentialSource::Env)
        .or_else(|| {
            p.api_key_file
                .clone()
                .map(|f| CredentialSource::File(f.into()))
        });
    let mut token_type = None;
    let credential = match (kind, &p.snowflake) {
        (ProviderKind::Cortex, None) => {
            c.report(
                &["providers", name],
                "cortex needs a `snowflake` table: auth = \"keypair_jwt\", \"pat\" or \"oauth\"",
            );
            None
        }
        (
            ProviderKind::Cortex,
            Some(RawSnowflakeAuth::KeypairJwt {
                account,
                user,
                private_key_file,
            }),
        ) => Some(CredentialSource::SnowflakeKeyPair {
            account: account.clone(),
            user: user.clone(),
            private_key_file: PathBuf::from(private_key_file),
        }),
        (ProviderKind::Cortex, Some(auth)) => {
            token_type = Some(match auth {
                RawSnowflakeAuth::Oauth => "OAUTH",
                _ => "PROGRAMMATIC_ACCESS_TOKEN",
            });
            if key_source.is_none() {
                c.report(
                    &["providers", name],
                    "the token needs api_key_env or api_key_file",
                );
            }
            key_source.clone()
        }
        (_, Some(_)) => {
            c.report(
                &at("snowflake"),
                "only cortex providers take a `snowflake` table",
            );
            None
        }
        (_, None) => {
            if key_source.is_none() {
                c.report(&["providers", name], "needs api_key_env or api_key_file");
            }
            key_source.clone()
        }
    };
    if kind != ProviderKind::Anthropic && p.anthropic_version.is_some() {
        c.report(
            &at("anthropic_version"),
            "only anthropic providers take this setting",
        );
    }
    if kind != ProviderKind::Cortex {
        if p.mode.is_some() {
            c.report(&at("mode"), "only cortex providers take this setting");
        }
        if p.dollars_per_credit.is_some() {
            c.report(
                &at("dollars_per_credit"),
                "only cortex providers take this setting",
            );
        }
    } else if p.dollars_per_credit.is_none() {
        c.report(
            &["providers", name],
            "cortex needs `dollars_per_credit` (your contract's price of one credit)",
        );
    }
    let t = &p.timeouts;
    for (f, v) in [
        ("connect_ms", t.connect_ms),
        ("first_byte_ms", t.first_byte_ms),
        ("idle_ms", t.idle_ms),
        ("total_ms", t.total_ms),
    ] {
        if v == 0 {
            c.report(
                &["providers", name, "timeouts", f],
                "must be greater than 0",
            );
        }
    }
    if t.first_byte_ms > t.total_ms || t.idle_ms > t.total_ms {
        c.report(
            &["providers", name, "timeouts"],
            "first_byte_ms and idle_ms must not exceed total_ms",
        );
    }
    ProviderConfig {
        name: name.to_string(),
        kind,
        base: base.unwrap_or(BaseUrl {
            tls: true,
            host: String::new(),
            port: 443,
            path_prefix: String::new(),
        }),
        ca,
        credential: credential.unwrap_or(CredentialSource::Env(String::new())),
        snowflake_token_type: token_type,
        timeouts: Timeouts {
            connect: Duration::from_millis(t.connect_ms),
            first_byte: Duration::from_millis(t.first_byte_ms),
            idle: Duration::from_millis(t.idle_ms),
            total: Duration::from_millis(t.total_ms),
            pool_idle: Duration::from_millis(t.pool_idle_ms),
        },
        anthropic_version: p.anthropic_version.unwrap_or_else(|| "2023-06-01".into()),
        cortex_mode: p.mode.unwrap_or(CortexMode::Complete),
        dollars_per_credit: p.dollars_per_credit,
    }
}

fn check_model(
    c: &mut Checker,
    name: &str,
    m: RawModel,
    providers: &BTreeMap<String, Arc<ProviderConfig>>,
) -> Option<ModelConfig> {
    if name == AUTO_MODEL {
        c.report(&["models", name], "`auto` is reserved for routed requests");
    }
    let Some(provider) = providers.get(&m.provider) else {
        c.report(
            &["models", name, "provider"],
            format!("unknown provider `{}`", m.provider),
        );
        return None;
    };
    if m.context_window == 0 {
        c.report(
            &["models", name, "context_window"],
            "must be greater than 0",
        );
    }
    if m.max_output_tokens == 0 || u64::from(m.max_output_tokens) > m.context_window {
        c.report(
            &["models", name, "max_output_tokens"],
            "must be greater than 0 and at most context_window",
        );
    }
    let price = check_price(c, name, &m.price, provider)?;
    let default_max = m
        .default_max_tokens
        .unwrap_or(m.max_output_tokens.min(4096))
        .min(m.max_output_tokens);
    Some(ModelConfig {
        name: name.to_string(),
        provider: m.provider.clone(),
        kind: provider.kind,
        upstream: m.upstream.unwrap_or_else(|| name.to_string()),
        context_window: m.context_window,
        max_output_tokens: m.max_output_tokens,
        default_max_tokens: default_max,
        price,
        fallback: m.fallback,
        owned_by: m
            .owned_by
            .unwrap_or_else(|| provider.kind.as_str().to_string()),
    })
}

fn check_price(
    c: &mut Checker,
    name: &str,
    p: &RawPrice,
    provider: &ProviderConfig,
) -> Option<Price> {
    let at = |f: &'static str| ["models", name, "price", f];
    if provider.kind == ProviderKind::Cortex {
        if p.input.is_some() || p.output.is_some() {
            c.report(
                &["models", name, "price"],
                "cortex models are priced in credits: use input_credits and output_credits",
            );
        }
        let (Some(i), Some(o)) = (p.input_credits, p.output_credits) else {
            c.report(
                &["models", name, "price"],
                "needs input_credits and output_credits",
            );
            return None;
        };
        // The provider's rate was validated with the provider; a missing one was reported.
        let rate = provider.dollars_per_credit?;
        let input = i.times(rate);
        return Some(Price {
            input,
            output: o.times(rate),
            cached_input: p.cached_input.map(|x| x.times(rate)).unwrap_or(input),
            cache_write: p.cache_write.map(|x| x.times(rate)).unwrap_or(input),
        });
    }
    if p.input_credits.is_some() || p.output_credits.is_some() {
        c.report(&at("input_credits"), "credits are only for cortex models");
    }
    let (Some(input), Some(output)) = (p.input, p.output) else {
        c.report(
            &["models", name, "price"],
            "needs input and output (dollars per 1M tokens)",
        );
        return None;
    };
    Some(Price {
        input,
        output,
        cached_input: p.cached_input.unwrap_or(input),
        cache_write: p.cache_write.unwrap_or(input),
    })
}
