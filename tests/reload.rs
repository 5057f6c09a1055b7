//! Live reload of routes.toml under load: no request fails while the file is rewritten
//! many times (by rename and by truncate-then-write), an invalid edit is rejected while the
//! last good config keeps serving, and the admin API reports and triggers reloads.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{credentials, routes, user, TIMEOUTS};
use serde_json::json;
use tollgate::config::Config;
use tollgate::providers::auth::Secret;
use tollgate::providers::ProviderKind;
use tollgate::proxy::GatewayState;
use tollgate::reload::Reloader;
use tollgate::server::RunningGateway;
use tollgate::sim::{SimOptions, SimServer};

const ADMIN: &str = "admin-secret-for-tests";

struct Setup {
    dir: PathBuf,
    file: PathBuf,
    openai: SimServer,
    mistral: SimServer,
    gw: RunningGateway,
}

fn text(s: &Setup, n: usize) -> String {
    // The alias list changes with n, so every edit has a new version.
    routes(
        &s.openai.base_url(),
        &s.mistral.base_url(),
        "",
        &format!("\"edit-{n}\" = \"gpt-4o-mini\"\n"),
        TIMEOUTS,
    )
}

fn version_of(src: &str) -> String {
    Config::parse(src, "t").unwrap().version
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
    let dir = std::env::temp_dir().join(format!("tollgate-reload-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("routes.toml");
    let src = routes(
        &openai.base_url(),
        &mistral.base_url(),
        "",
        "\"edit-0\" = \"gpt-4o-mini\"\n",
        TIMEOUTS,
    );
    std::fs::write(&file, &src).unwrap();
    let state = GatewayState::new(Config::load(&file).unwrap(), credentials());
    let reloader = Reloader::new(file.clone(), state.clone(), Box::new(|_| credentials()));
    let gw = tokio::task::spawn_blocking(move || {
        RunningGateway::start_with(state, 2, Some(Secret::new(ADMIN)), Some(reloader))
    })
    .await
    .unwrap()
    .unwrap();
    Setup {
        dir,
        file,
        openai,
        mistral,
        gw,
    }
}

fn write_by_rename(file: &Path, src: &str) {
    let tmp = file.with_extension("toml.tmp");
    std::fs::write(&tmp, src).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn write_in_place(file: &Path, src: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(file)
        .unwrap();
    // Two writes with a pause: a reader may see the half-written file.
    let (a, b) = src.split_at(src.len() / 2);
    f.write_all(a.as_bytes()).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    f.write_all(b.as_bytes()).unwrap();
}

async fn wait_for_version(client: &reqwest::Client, url: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = client.get(url).send().await.unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        if v["config_version"] == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "version {want} never applied (have {v})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_the_file_is_rewritten_under_load() {
    let s = setup("load").await;
    let base = s.gw.base_url();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..6 {
        let (base, stop) = (base.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .post(format!("{base}/v1/chat/completions"))
                    .json(&json!({"model": "gpt-4o-mini", "stream": i % 2 == 0, "messages": user("hi")}))
                    .send()
                    .await
                    .expect("request completes");
                let status = r.status().as_u16();
                let version = r.headers()["x-tollgate-config-version"].to_str().unwrap().to_string();
                let body = r.text().await.expect("body completes");
                assert_eq!(status, 200, "{body}");
                seen.push(version);
            }
            seen
        }));
    }
    let client = reqwest::Client::new();
    let health = format!("{base}/healthz");
    let mut valid = vec![version_of(&text(&s, 0))];
    for n in 1..=12 {
        let src = text(&s, n);
        if n % 2 == 0 {
            write_by_rename(&s.file, &src);
        } else {
            write_in_place(&s.file, &src);
        }
        valid.push(version_of(&src));
        wait_for_version(&client, &health, valid.last().unwrap()).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let seen = c.await.unwrap();
        total += seen.len();
        for v in seen {
            assert!(valid.contains(&v), "a response carried unknown version {v}");
        }
    }
    assert!(total > 20, "only {total} requests ran during the reloads");
    s.gw.stop();
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_edit_is_rejected_and_the_last_good_config_keeps_serving() {
    let s = setup("invalid").await;
    let client = reqwest::Client::new();
    let admin = format!("http://{}", s.gw.admin_addr.unwrap());
    let good = version_of(&text(&s, 0));

    let bad = text(&s, 1).replace("provider = \"mistral\"", "provider = \"mistrall\"");
    write_by_rename(&s.file, &bad);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let st: serde_json::Value = client
            .get(format!("{admin}/admin/api/status"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if st["reloads"]["failures"].as_u64().unwrap() > 0 {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "invalid edit never noticed: {st}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let err = status["reloads"]["last_error"].as_str().unwrap();
    assert!(err.contains("unknown provider `mistrall`"), "{err}");
    assert!(
        err.contains("routes.toml:"),
        "the problem names file and line: {err}"
    );
    assert_eq!(status["config_version"], good);

    let r = client
        .post(format!("{}/v1/chat/completions", s.gw.base_url()))
        .json(&json!({"model": "mistral-small", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-tollgate-config-version"].to_str().unwrap(),
        good
    );

    // The admin reload endpoint reports every problem too.
    let r = client
        .post(format!("{admin}/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    let problems = body["error"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].as_str().unwrap().contains("mistrall"));

    // Fixing the file applies it.
    let fixed = text(&s, 2);
    write_in_place(&s.file, &fixed);
    wait_for_version(
        &client,
        &format!("{}/healthz", s.gw.base_url()),
        &version_of(&fixed),
    )
    .await;
    s.gw.stop();
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_token_and_reloads_on_request() {
    let s = setup("admin").await;
    let client = reqwest::Client::new();
    let admin = format!("http://{}", s.gw.admin_addr.unwrap());
    let r = client
        .get(format!("{admin}/admin/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{admin}/admin/api/status"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The public listener never serves admin routes.
    let r = client
        .post(format!("{}/admin/reload", s.gw.base_url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let r = client
        .post(format!("{admin}/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["result"], "unchanged");

    // Breaker states are listed once an upstream has been used.
    let r = client
        .post(format!("{}/v1/chat/completions", s.gw.base_url()))
        .json(&json!({"model": "gpt-4o-mini", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let st: serde_json::Value = client
        .get(format!("{admin}/admin/api/status"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b = &st["breakers"][0];
    assert_eq!(
        (b["model"].as_str(), b["state"].as_str()),
        (Some("gpt-4o-mini"), Some("closed"))
    );
    s.gw.stop();
    let _ = std::fs::remove_dir_all(&s.dir);
}
