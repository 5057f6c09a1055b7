//! Reaching providers: credentials loaded from the environment or files, DNS resolved
//! asynchronously and cached, and Pingora peers (rustls with certificate and hostname
//! verification) whose connections Pingora's `Connector` pools.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pingora::connectors::http::Connector;
use pingora::upstreams::peer::HttpPeer;

use crate::config::{Config, CredentialSource, ProviderConfig};
use crate::error::GatewayError;
use crate::providers::auth::{ProviderAuth, Secret};
use crate::providers::snowflake_jwt::KeyPairJwt;
use crate::providers::ProviderKind;

const DNS_TTL: Duration = Duration::from_secs(30);

/// Resolved addresses per (host, port), with the time they were resolved.
type DnsCache = HashMap<(String, u16), (Vec<SocketAddr>, Instant)>;

/// Resolved credentials per provider name. A provider whose credential could not be loaded
/// keeps the reason, and requests skip it.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_provider: HashMap<String, Result<ProviderAuth, String>>,
}

impl Credentials {
    /// Loads every provider's credential. Values are never logged.
    pub fn load(config: &Config) -> Self {
        let by_provider = config
            .providers
            .values()
            .map(|p| (p.name.clone(), load_one(p)))
            .collect();
        Credentials { by_provider }
    }

    /// Placeholder credentials for the simulated providers of demo mode.
    pub fn demo(config: &Config) -> Self {
        let by_provider = config
            .providers
            .values()
            .map(|p| {
                let s = Secret::new("demo-key");
                let auth = match p.kind {
                    ProviderKind::OpenAi | ProviderKind::Mistral => ProviderAuth::Bearer(s),
                    ProviderKind::Anthropic => ProviderAuth::ApiKey(s),
                    ProviderKind::Cortex => ProviderAuth::SnowflakeToken {
                        token: s,
                        token_type: "PROGRAMMATIC_ACCESS_TOKEN",
                    },
                };
                (p.name.clone(), Ok(auth))
            })
            .collect();
        Credentials { by_provider }
    }

    /// Fixed credentials (tests, embedding).
    pub fn from_map(by_provider: HashMap<String, Result<ProviderAuth, String>>) -> Self {
        Credentials { by_provider }
    }

    pub fn get(&self, provider: &str) -> Result<&ProviderAuth, String> {
        match self.by_provider.get(provider) {
            Some(Ok(a)) => Ok(a),
            Some(Err(e)) => Err(e.clone()),
            None => Err("no credential configured".into()),
        }
    }

    /// Providers whose credential is missing, with the reason (for a start-up warning).
    pub fn missing(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .by_provider
            .iter()
            .filter_map(|(k, r)| r.as_ref().err().map(|e| (k.clone(), e.clone())))
            .collect();
        v.sort();
        v
    }
}

fn read_secret(source: &CredentialSource) -> Result<Secret, String> {
    match source {
        CredentialSource::Env(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
            _ => Err(format!("environment variable {var} is not set")),
        },
        CredentialSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|v| {
                let v = v.trim();
                if v.is_empty() {
                    Err(format!("{} is empty", path.display()))
                } else {
                    Ok(Secret::new(v))
                }
            }),
        CredentialSource::SnowflakeKeyPair { .. } => Err("not a plain secret".into()),
    }
}

fn load_one(p: &ProviderConfig) -> Result<ProviderAuth, String> {
    if let CredentialSource::SnowflakeKeyPair { .. } = &p.credential {
        return load_keypair(p);
    }
    let secret = read_secret(&p.credential)?;
    Ok(match p.kind {
        ProviderKind::OpenAi | ProviderKind::Mistral => ProviderAuth::Bearer(secret),
        ProviderKind::Anthropic => ProviderAuth::ApiKey(secret),
        ProviderKind::Cortex => ProviderAuth::SnowflakeToken {
            token: secret,
            token_type: p
                .snowflake_token_type
                .unwrap_or("PROGRAMMATIC_ACCESS_TOKEN"),
        },
    })
}

fn load_keypair(p: &ProviderConfig) -> Result<ProviderAuth, String> {
    let CredentialSource::SnowflakeKeyPair {
        account,
        user,
        private_key_file,
    } = &p.credential
    else {
        return Err("not a key-pair credential".into());
    };
    let jwt = KeyPairJwt::from_pem_file(account, user, private_key_file)
        .map_err(|e| format!("Snowflake key pair: {e}"))?;
    // Sign once now so that a key Snowflake cannot use is reported at start-up.
    jwt.token()
        .map_err(|e| format!("Snowflake key pair: {e}"))?;
    Ok(ProviderAuth::SnowflakeKeyPair(Arc::new(jwt)))
}

/// Connection management shared by all requests.
pub struct Upstreams {
    pub connector: Connector,
    dns: Mutex<DnsCache>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Upstreams {
            connector: Connector::new(None),
            dns: Mutex::new(HashMap::new()),
        }
    }
}

impl Upstreams {
    /// A peer for `provider`: address resolved without blocking a worker, TLS verified
    /// (certificate chain and host name, the configured host as SNI) against the
    /// provider's `ca_file` when it has one, else the system roots.
    pub async fn peer(&self, provider: &ProviderConfig) -> Result<HttpPeer, GatewayError> {
        let base = &provider.base;
        let addr = self.resolve(&base.host, base.port, provider.kind).await?;
        let mut peer = HttpPeer::new(addr, base.tls, base.host.clone());
        let t = &provider.timeouts;
        peer.options.connection_timeout = Some(t.connect);
        peer.options.total_connection_timeout = Some(t.connect * 2);
        peer.options.idle_timeout = Some(t.pool_idle);
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        if let Some(ca) = &provider.ca {
            peer.options.ca = Some(ca.certs.clone());
            // Pooled connections are keyed by trust setting too.
            peer.group_key = ca.group_key();
        }
        Ok(peer)
    }

    async fn resolve(
        &self,
        host: &str,
        port: u16,
        kind: ProviderKind,
    ) -> Result<SocketAddr, GatewayError> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        if let Some((addrs, at)) = self.dns.lock().get(&key) {
            if at.elapsed() < DNS_TTL {
                if let Some(a) = pick(addrs) {
                    return Ok(a);
                }
            }
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| GatewayError::UpstreamUnreachable {
                provider: kind,
                detail: format!("cannot resolve {host}: {e}"),
            })?
            .collect();
        let chosen = pick(&addrs).ok_or_else(|| GatewayError::UpstreamUnreachable {
            provider: kind,
            detail: format!("{host} has no address"),
        })?;
        self.dns.lock().insert(key, (addrs, Instant::now()));
        Ok(chosen)
    }
}

/// Spreads connections over the resolved addresses.
fn pick(addrs: &[SocketAddr]) -> Option<SocketAddr> {
    if addrs.is_empty() {
        None
    } else {
        Some(addrs[fastrand::usize(..addrs.len())])
    }
}

/// Shared handle.
pub type SharedUpstreams = Arc<Upstreams>;
