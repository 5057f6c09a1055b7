//! Live reload from Kubernetes ConfigMap volumes. The kubelet never edits a mounted file:
//! it writes a new timestamped directory, points a fresh `..data_tmp` symlink at it, renames
//! that over `..data` and removes the old directory, while `routes.toml` stays a symlink to
//! `..data/routes.toml`. These tests lay out `routes.toml` and `budgets/` exactly that way,
//! perform the kubelet's swaps, and check that a good update is served within seconds and a
//! bad one is rejected while the last good config keeps serving.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{credentials, routes, user, TIMEOUTS};
use serde_json::json;
use tollgate::budget::keys::KeyHash;
use tollgate::config::Config;
use tollgate::providers::auth::Secret;
use tollgate::providers::ProviderKind;
use tollgate::proxy::GatewayState;
use tollgate::reload::Reloader;
use tollgate::server::RunningGateway;
use tollgate::sim::{SimOptions, SimServer};

const ADMIN: &str = "admin-token-for-symlink-tests";
/// How long a ConfigMap update may take to be served (the watch polls every 200 ms).
const APPLY_WITHIN: Duration = Duration::from_secs(3);

/// A directory written the way the kubelet's atomic writer writes a ConfigMap volume.
struct ConfigMapVolume {
    dir: PathBuf,
    generation: u32,
    files: Vec<String>,
}

impl ConfigMapVolume {
    fn create(dir: PathBuf, files: &[(&str, &str)]) -> ConfigMapVolume {
        std::fs::create_dir_all(&dir).unwrap();
        let mut v = ConfigMapVolume {
            dir,
            generation: 0,
            files: Vec::new(),
        };
        v.update(files);
        v
    }

    /// One kubelet sync: new `..<timestamp>` directory with the payload, `..data_tmp`
    /// symlink renamed over `..data`, user-visible symlinks for new keys, removal of keys no
    /// longer in the payload, removal of the previous timestamped directory.
    fn update(&mut self, files: &[(&str, &str)]) {
        self.generation += 1;
        let ts = format!(
            "..2026_11_21_10_00_{:02}.{}",
            self.generation,
            123 + self.generation
        );
        let ts_dir = self.dir.join(&ts);
        std::fs::create_dir(&ts_dir).unwrap();
        for (name, text) in files {
            std::fs::write(ts_dir.join(name), text).unwrap();
        }
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&ts, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for (name, _) in files {
            let visible = self.dir.join(name);
            if std::fs::symlink_metadata(&visible).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &visible).unwrap();
            }
        }
        for gone in self
            .files
            .iter()
            .filter(|f| !files.iter().any(|(n, _)| n == f))
        {
            std::fs::remove_file(self.dir.join(gone)).unwrap();
        }
        self.files = files.iter().map(|(n, _)| n.to_string()).collect();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

struct Setup {
    root: PathBuf,
    file: PathBuf,
    openai: SimServer,
    mistral: SimServer,
    routes_cm: ConfigMapVolume,
    budgets_cm: ConfigMapVolume,
    gw: RunningGateway,
    client: reqwest::Client,
}

/// The test routes with anonymous access off, an `edit-N` alias (so each edit has a new
/// version) and the budgets in a sibling ConfigMap volume, as `deploy/kubernetes` mounts
/// them.
fn routes_text(openai: &SimServer, mistral: &SimServer, n: u32) -> String {
    routes(
        &openai.base_url(),
        &mistral.base_url(),
        "",
        &format!("\"edit-{n}\" = \"gpt-4o-mini\"\n\n[budgets]\ndir = \"../budgets\"\n"),
        TIMEOUTS,
    )
    .replace("allow_anonymous = true", "allow_anonymous = false")
}

fn budget_with_key(key: &str) -> String {
    format!(
        "daily_limit = \"10\"\n[[keys]]\nid = \"svc\"\nsha256 = \"{}\"\n",
        KeyHash::of(key).to_hex()
    )
}

async fn setup(name: &str) -> Setup {
    let key = |k: &str| SimOptions {
        api_key: Some(k.into()),
        ..SimOptions::default()
    };
    let openai = SimServer::start(ProviderKind::OpenAi, key(common::OPENAI_KEY))
        .await
        .unwrap();
    let mistral = SimServer::start(ProviderKind::Mistral, key(common::MISTRAL_KEY))
        .await
        .unwrap();
    let root = std::env::temp_dir().join(format!(
        "tollgate-cm-{name}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let routes_cm = ConfigMapVolume::create(
        root.join("config"),
        &[("routes.toml", &routes_text(&openai, &mistral, 0))],
    );
    let budgets_cm = ConfigMapVolume::create(
        root.join("budgets"),
        &[("team.toml", &budget_with_key("tg-team-key"))],
    );
    let file = root.join("config/routes.toml");
    assert!(std::fs::symlink_metadata(&file)
        .unwrap()
        .file_type()
        .is_symlink());
    let state = GatewayState::new(Config::load(&file).unwrap(), credentials());
    let reloader = Reloader::new(file.clone(), state.clone(), Box::new(|_| credentials()));
    let gw = tokio::task::spawn_blocking(move || {
        RunningGateway::start_with(state, 2, Some(Secret::new(ADMIN)), Some(reloader))
    })
    .await
    .unwrap()
    .unwrap();
    Setup {
        root,
        file,
        openai,
        mistral,
        routes_cm,
        budgets_cm,
        gw,
        client: reqwest::Client::new(),
    }
}

impl Setup {
    /// The `x-tollgate-config-version` the gateway answers with now.
    async fn served_version(&self) -> String {
        let r = self
            .client
            .get(format!("{}/healthz", self.gw.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["x-tollgate-config-version"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// Status of a chat request for `model` with `key`.
    async fn chat(&self, key: &str, model: &str) -> u16 {
        self.client
            .post(format!("{}/v1/chat/completions", self.gw.base_url()))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": user("hi")}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Waits until `want` is served; returns how long that took.
    async fn wait_served(&self, want: &str) -> Duration {
        let start = Instant::now();
        loop {
            if self.served_version().await == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < APPLY_WITHIN,
                "version {want} not served within {APPLY_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `tollgate_config_reloads_total{result=...}` as scraped from the admin listener.
    async fn reloads(&self, result: &str) -> u64 {
        let admin = self.gw.admin_addr.unwrap();
        let text = self
            .client
            .get(format!("http://{admin}/metrics"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let prefix = format!("tollgate_config_reloads_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// Waits until a rejected reload has been counted.
    async fn wait_rejected(&self, count: u64) {
        let start = Instant::now();
        while self.reloads("rejected").await < count {
            assert!(
                start.elapsed() < APPLY_WITHIN,
                "the bad update was not rejected within {APPLY_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The version `Config::load` computes from the volume as it is now.
    fn expected_version(&self) -> String {
        Config::load(&self.file).unwrap().version
    }

    async fn stop(self) {
        let gw = self.gw;
        tokio::task::spawn_blocking(move || gw.stop())
            .await
            .unwrap();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[tokio::test]
async fn a_routes_configmap_swap_is_served_and_a_bad_one_rejected() {
    let mut s = setup("routes").await;
    let v0 = s.served_version().await;
    assert_eq!(v0, s.expected_version());
    assert_eq!(s.chat("tg-team-key", "edit-0").await, 200);
    assert_eq!(s.chat("tg-team-key", "edit-1").await, 404);

    let text = routes_text(&s.openai, &s.mistral, 1);
    s.routes_cm.update(&[("routes.toml", &text)]);
    let v1 = s.expected_version();
    assert_ne!(v1, v0);
    s.wait_served(&v1).await;
    assert_eq!(s.chat("tg-team-key", "edit-1").await, 200);
    assert_eq!(s.reloads("applied").await, 1);
    // The swap left only the new generation behind, as the kubelet does.
    assert!(!s.root.join("config/..2026_11_21_10_00_01.124").exists());

    // An invalid file arrives the same way: rejected, the last good config keeps serving.
    let bad = text.replace("provider = \"mistral\"", "provider = \"nowhere\"");
    s.routes_cm.update(&[("routes.toml", &bad)]);
    assert!(Config::load(&s.file).is_err());
    s.wait_rejected(1).await;
    assert_eq!(s.served_version().await, v1);
    assert_eq!(s.chat("tg-team-key", "edit-1").await, 200);

    // The next good update is applied again.
    s.routes_cm
        .update(&[("routes.toml", &routes_text(&s.openai, &s.mistral, 2))]);
    let v2 = s.expected_version();
    s.wait_served(&v2).await;
    assert_eq!(s.chat("tg-team-key", "edit-2").await, 200);
    assert_eq!(s.chat("tg-team-key", "edit-1").await, 404);
    assert_eq!(s.reloads("applied").await, 2);
    s.stop().await;
}

#[tokio::test]
async fn a_budgets_configmap_swap_is_served_and_a_bad_one_rejected() {
    let mut s = setup("budgets").await;
    let v0 = s.served_version().await;
    assert_eq!(s.chat("tg-team-key", "gpt-4o-mini").await, 200);
    assert_eq!(s.chat("tg-ops-key", "gpt-4o-mini").await, 401);

    // A new budget file (a new ConfigMap key) brings its key in.
    let team = budget_with_key("tg-team-key");
    let ops = budget_with_key("tg-ops-key");
    s.budgets_cm
        .update(&[("team.toml", &team), ("ops.toml", &ops)]);
    let v1 = s.expected_version();
    assert_ne!(v1, v0);
    s.wait_served(&v1).await;
    assert_eq!(s.chat("tg-ops-key", "gpt-4o-mini").await, 200);

    // A broken budget file is rejected as a whole; both keys keep working.
    s.budgets_cm.update(&[
        ("team.toml", &team),
        (
            "ops.toml",
            &ops.replace("daily_limit = \"10\"", "daily_limit = \"lots\""),
        ),
    ]);
    s.wait_rejected(1).await;
    assert_eq!(s.served_version().await, v1);
    assert_eq!(s.chat("tg-ops-key", "gpt-4o-mini").await, 200);
    assert_eq!(s.chat("tg-team-key", "gpt-4o-mini").await, 200);

    // A key removed from the ConfigMap is gone: its symlink is removed, its budget too.
    s.budgets_cm.update(&[("team.toml", &team)]);
    assert!(!s.root.join("budgets/ops.toml").exists());
    let v2 = s.expected_version();
    s.wait_served(&v2).await;
    assert_eq!(s.chat("tg-ops-key", "gpt-4o-mini").await, 401);
    assert_eq!(s.chat("tg-team-key", "gpt-4o-mini").await, 200);
    s.stop().await;
}
