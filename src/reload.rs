//! Live reload of `routes.toml`, the budget files and the TLS files it names: a file watch (content polled every 200 ms, so editors
//! that replace the file by rename and editors that truncate and rewrite it both work, as do
//! Kubernetes ConfigMap symlink swaps), `SIGHUP`, and `POST /admin/reload`.
//!
//! A new file is parsed and fully validated before it is swapped in atomically; requests
//! already running keep the snapshot they started with. An invalid edit is rejected with
//! every problem logged, and the last good config keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigErrors};
use crate::proxy::upstream::Credentials;
use crate::proxy::GatewayState;

const POLL: Duration = Duration::from_millis(200);

/// Reload counters and the last outcome, shown by the admin status endpoint.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    pub last_reload_at: Option<SystemTime>,
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    pub successes: u64,
    pub failures: u64,
}

/// Turns a freshly parsed config into the one to serve (demo mode rewrites provider URLs)
/// and loads its credentials.
pub type Prepare = dyn Fn(&mut Config) -> Credentials + Send + Sync;

/// Reloads one file into a gateway's state.
pub struct Reloader {
    path: PathBuf,
    state: Arc<GatewayState>,
    prepare: Box<Prepare>,
}

/// How a reload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied { version: String },
    Unchanged { version: String },
}

impl Reloader {
    pub fn new(path: PathBuf, state: Arc<GatewayState>, prepare: Box<Prepare>) -> Arc<Self> {
        Arc::new(Reloader {
            path,
            state,
            prepare,
        })
    }

    /// Reads, validates and applies the file now. `trigger` names the cause in the logs.
    pub fn reload_now(&self, trigger: &str) -> Result<ReloadOutcome, ConfigErrors> {
        match Config::load(&self.path) {
            Ok(mut cfg) => {
                let current = self.state.config.load();
                if cfg.version == current.version {
                    return Ok(ReloadOutcome::Unchanged {
                        version: cfg.version,
                    });
                }
                let creds = (self.prepare)(&mut cfg);
                let version = cfg.version.clone();
                self.state.apply(cfg, creds);
                let mut st = self.state.reload_status.lock();
                st.successes += 1;
                self.state
                    .metrics
                    .config_reloads
                    .with_label_values(&["applied"])
                    .inc();
                st.last_reload_at = Some(SystemTime::now());
                tracing::info!(%trigger, %version, file = %self.path.display(), "Configuration reloaded.");
                Ok(ReloadOutcome::Applied { version })
            }
            Err(errs) => {
                let mut st = self.state.reload_status.lock();
                st.failures += 1;
                self.state
                    .metrics
                    .config_reloads
                    .with_label_values(&["rejected"])
                    .inc();
                st.last_error = Some(errs.to_string());
                st.last_error_at = Some(SystemTime::now());
                for p in &errs.0 {
                    tracing::error!(%trigger, problem = %p, "Configuration rejected; the last good one keeps serving.");
                }
                Err(errs)
            }
        }
    }

    /// Content fingerprint of the file, the budget files and the TLS files it names
    /// (listener certificates and keys, CA bundles), or `None` when the file cannot be
    /// read right now.
    fn fingerprint(&self) -> Option<[u8; 32]> {
        let mut h = Sha256::new();
        h.update(std::fs::read(&self.path).ok()?);
        let config = self.state.config.load();
        for f in config.tls_files() {
            h.update([1u8]);
            // An unreadable file is a change too (the reload reports it).
            h.update(std::fs::read(&f).unwrap_or_default());
        }
        let dir = config.budgets_settings.dir.clone();
        for (name, bytes) in crate::budget::read_dir_files(&dir).ok()? {
            h.update([0u8]);
            h.update(name.as_bytes());
            h.update([0u8]);
            h.update(&bytes);
        }
        Some(h.finalize().into())
    }

    /// Polls the file and listens for SIGHUP until `shutdown` fires. A change is applied
    /// once the content has been the same for two polls, so a half-written file is not read.
    pub async fn watch(&self, mut shutdown: ShutdownWatch) {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut applied = self.fingerprint();
        let mut seen = applied;
        let mut tick = tokio::time::interval(POLL);
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hangup => {
                    let _ = self.reload_now("SIGHUP");
                    applied = self.fingerprint();
                    seen = applied;
                    continue;
                }
                _ = tick.tick() => {}
            }
            let now = self.fingerprint();
            if now.is_some() && now != applied && now == seen {
                let _ = self.reload_now("file change");
                applied = now;
            }
            seen = now;
        }
    }
}

/// Runs [`Reloader::watch`] as a Pingora background service.
pub struct ReloadService(pub Arc<Reloader>);

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.watch(shutdown).await;
    }
}
