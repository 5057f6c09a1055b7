//! A gateway served from files: `routes.toml` and `budgets/` in a temporary directory,
//! loaded with `Config::load`, with the file watch and an admin listener — as `tollgate
//! serve` runs it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::billing::Billing;
use tollgate::clock::Clock;
use tollgate::config::Config;
use tollgate::providers::auth::Secret;
use tollgate::proxy::GatewayState;
use tollgate::reload::Reloader;
use tollgate::server::RunningGateway;
use tollgate::sim::SimServer;

use super::{credentials, routes, start_sims, TIMEOUTS};

pub const ADMIN: &str = "admin-token-for-tests";

pub struct DirGateway {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub openai: SimServer,
    pub mistral: SimServer,
    pub gw: RunningGateway,
    pub state: Arc<GatewayState>,
    pub client: reqwest::Client,
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tollgate-{name}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(dir.join("budgets")).unwrap();
    dir
}

impl DirGateway {
    /// `edit` rewrites the standard test routes (e.g. to turn anonymous access off);
    /// `budgets` are (name, file text).
    pub async fn start(
        name: &str,
        edit: impl Fn(String) -> String,
        budgets: &[(&str, &str)],
    ) -> DirGateway {
        Self::start_with(name, edit, budgets, None).await
    }

    /// Like [`DirGateway::start`], with the ledger and budget store of `[state]` opened
    /// as `tollgate serve` opens them (data directory inside the test directory), on
    /// `clock`.
    pub async fn start_billed(
        name: &str,
        edit: impl Fn(String) -> String,
        budgets: &[(&str, &str)],
        clock: Arc<dyn Clock>,
    ) -> DirGateway {
        Self::start_with(name, edit, budgets, Some(clock)).await
    }

    /// Stops this gateway and starts a new one on the same directory (same budgets, same
    /// ledger), as a restart of `tollgate serve` would.
    pub async fn restart(
        self,
        edit: impl Fn(String) -> String,
        clock: Arc<dyn Clock>,
    ) -> DirGateway {
        let dir = self.dir.clone();
        let gw = self.gw;
        tokio::task::spawn_blocking(move || gw.stop())
            .await
            .unwrap();
        Self::start_in(dir, edit, &[], Some(clock)).await
    }

    async fn start_with(
        name: &str,
        edit: impl Fn(String) -> String,
        budgets: &[(&str, &str)],
        billed: Option<Arc<dyn Clock>>,
    ) -> DirGateway {
        Self::start_in(temp_dir(name), edit, budgets, billed).await
    }

    async fn start_in(
        dir: PathBuf,
        edit: impl Fn(String) -> String,
        budgets: &[(&str, &str)],
        billed: Option<Arc<dyn Clock>>,
    ) -> DirGateway {
        let (openai, mistral) = start_sims().await;
        for (b, text) in budgets {
            std::fs::write(dir.join("budgets").join(format!("{b}.toml")), text).unwrap();
        }
        let file = dir.join("routes.toml");
        let src = edit(routes(
            &openai.base_url(),
            &mistral.base_url(),
            "",
            "",
            TIMEOUTS,
        ));
        std::fs::write(&file, &src).unwrap();
        let config = Config::load(&file).expect("test config valid");
        let state = match billed {
            Some(clock) => {
                let billing = Billing::open(&config, clock).await.expect("billing opens");
                GatewayState::with_billing(config, credentials(), billing)
            }
            None => GatewayState::new(config, credentials()),
        };
        let reloader = Reloader::new(file.clone(), state.clone(), Box::new(|_| credentials()));
        let st = state.clone();
        let gw = tokio::task::spawn_blocking(move || {
            RunningGateway::start_with(st, 2, Some(Secret::new(ADMIN)), Some(reloader))
        })
        .await
        .unwrap()
        .expect("gateway starts");
        DirGateway {
            dir,
            file,
            openai,
            mistral,
            gw,
            state,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gw.base_url(), path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.gw.admin_addr.expect("admin listener"),
            path
        )
    }

    /// A chat request with `key` (none when `None`).
    pub async fn chat(&self, key: Option<&str>, body: serde_json::Value) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/v1/chat/completions"))
            .json(&body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send().await.expect("request sent")
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.admin_url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("admin request sent")
    }

    /// Waits until the gateway serves config `version` (after an edit).
    pub async fn wait_for_reload(&self, old_version: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.state.config.load().version.clone();
            if v != old_version {
                return v;
            }
            assert!(Instant::now() < deadline, "no reload within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        let gw = self.gw;
        tokio::task::spawn_blocking(move || gw.stop())
            .await
            .unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
