//! Provider credentials never leak: `tollgate serve` runs as a process with distinctive
//! keys (one from the environment, one from a secret file), debug logging in JSON, and
//! traffic that includes upstream auth failures, fallback, streaming, the admin API,
//! metrics and the dashboard; `tollgate check` runs on the same file. No log line,
//! response body or response header may contain either key.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{routes, user, TIMEOUTS};
use serde_json::json;
use tollgate::providers::ProviderKind;
use tollgate::sim::{SimOptions, SimServer};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const OPENAI_SECRET: &str = "sk-test-SECRET-openai-5c1e0b9f7a2d";
const MISTRAL_SECRET: &str = "sk-test-SECRET-mistral-83d4e6a1c0ff";
const ADMIN_TOKEN: &str = "admin-token-for-the-secrets-test";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the server if a test assertion fails first.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Everything the gateway said: response statuses, headers and bodies.
#[derive(Default)]
struct Transcript(String);

impl Transcript {
    async fn record(&mut self, what: &str, r: reqwest::Response) -> u16 {
        let status = r.status().as_u16();
        self.0.push_str(&format!("== {what}: {status}\n"));
        for (k, v) in r.headers() {
            self.0
                .push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        self.0.push_str(&r.text().await.unwrap_or_default());
        self.0.push('\n');
        status
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tollgate-secrets-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(dir.join("budgets")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_keys_never_appear_in_logs_responses_or_admin_pages() {
    // OpenAI accepts the configured key; Mistral expects another one, so every Mistral
    // call is an upstream 401.
    let openai = SimServer::start(
        ProviderKind::OpenAi,
        SimOptions {
            api_key: Some(OPENAI_SECRET.into()),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let mistral = SimServer::start(
        ProviderKind::Mistral,
        SimOptions {
            api_key: Some("a-different-key".into()),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let dir = temp_dir();
    std::fs::write(dir.join("mistral.key"), format!("{MISTRAL_SECRET}\n")).unwrap();
    std::fs::write(
        dir.join("budgets/demo.toml"),
        "daily_limit = \"25.00\"\npolicy = \"allow\"\n",
    )
    .unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let src = routes(
        &openai.base_url(),
        &mistral.base_url(),
        &format!(
            "listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\nshutdown_grace_seconds = 1"
        ),
        "[state]\ndata_dir = \"data\"\nflush_interval_ms = 20\n",
        TIMEOUTS,
    )
    .replacen(
        "api_key_env = \"UNUSED_IN_TESTS\"",
        "api_key_env = \"TOLLGATE_TEST_OPENAI_KEY\"",
        1,
    )
    .replacen(
        "api_key_env = \"UNUSED_IN_TESTS\"",
        "api_key_file = \"MISTRAL_KEY_FILE\"",
        1,
    )
    .replace(
        "MISTRAL_KEY_FILE",
        &dir.join("mistral.key").display().to_string(),
    );
    let file = dir.join("routes.toml");
    std::fs::write(&file, &src).unwrap();

    let env = [
        ("TOLLGATE_TEST_OPENAI_KEY", OPENAI_SECRET),
        ("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN),
        ("RUST_LOG", "debug"),
    ];
    let mut child = Command::new(BIN)
        .args(["--log-json", "serve", "--config"])
        .arg(&file)
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let logs = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let serve = Serve(child);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut t = Transcript::default();
    let chat = |body: serde_json::Value| {
        client
            .post(format!("{base}/v1/chat/completions"))
            .json(&body)
            .send()
    };
    let ok = chat(json!({"model": "gpt-4o-mini", "messages": user("hello")}))
        .await
        .unwrap();
    assert_eq!(t.record("openai ok", ok).await, 200);
    let ok = chat(json!({"model": "gpt-4o-mini", "stream": true, "messages": user("count")}))
        .await
        .unwrap();
    assert_eq!(t.record("openai stream", ok).await, 200);
    // Upstream 401 directly, streamed and not.
    let denied = chat(json!({"model": "mistral-small", "messages": user("hi")}))
        .await
        .unwrap();
    assert!(t.record("mistral 401", denied).await >= 400);
    let denied = chat(json!({"model": "mistral-small", "stream": true, "messages": user("hi")}))
        .await
        .unwrap();
    assert!(t.record("mistral 401 stream", denied).await >= 400);
    // Fallback: OpenAI fails, Mistral refuses the key.
    let fb = chat(json!({"model": "gpt-4o-mini", "messages": user("x [[sim: status=503]]")}))
        .await
        .unwrap();
    assert!(t.record("fallback", fb).await >= 400);
    // OpenAI's own 401 (a fault), then the fallback.
    let fb = chat(json!({"model": "gpt-4o-mini", "stream": true,
        "messages": user("x [[sim: status=401]]")}))
    .await
    .unwrap();
    t.record("openai 401 fallback", fb).await;
    // A client that sends a provider-looking key of its own is refused without echoing it.
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-client-own-key")
        .json(&json!({"model": "gpt-4o-mini", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    t.record("client key", r).await;
    for path in ["/v1/models", "/healthz", "/nope"] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        t.record(path, r).await;
    }
    // Give the ledger a moment, then read every admin page.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for path in [
        "/admin/api/status",
        "/admin/api/budgets",
        "/admin/api/requests",
        "/metrics",
        "/",
    ] {
        let r = client
            .get(format!("{admin}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(t.record(path, r).await, 200, "{path}");
    }
    let r = client
        .post(format!("{admin}/admin/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    t.record("reload", r).await;

    // The keys were really in use.
    let sent = openai.requests();
    assert!(sent
        .iter()
        .any(|r| r.headers["authorization"] == format!("Bearer {OPENAI_SECRET}").as_str()));
    let sent = mistral.requests();
    assert!(!sent.is_empty());
    assert!(sent
        .iter()
        .all(|r| r.headers["authorization"] == format!("Bearer {MISTRAL_SECRET}").as_str()));

    let check = Command::new(BIN)
        .arg("check")
        .arg(&file)
        .envs(env)
        .output()
        .unwrap();
    assert!(check.status.success());

    let mut serve = serve;
    let _ = Command::new("kill")
        .args(["-TERM", &serve.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while serve.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = logs.join().unwrap().join("\n");
    let everything = format!(
        "{}\n{logs}\n{}\n{}{}",
        t.0,
        out.join().unwrap(),
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // The capture is real: debug logging ran, requests and upstream failures were logged.
    assert!(logs.contains("\"level\":\"DEBUG\""), "{logs}");
    assert!(logs.contains("Request finished"), "{logs}");
    assert!(logs.contains("mistral-small 401"), "{logs}");
    assert!(t.0.contains("tollgate_requests_total"));
    for secret in [
        OPENAI_SECRET,
        MISTRAL_SECRET,
        "SECRET-openai",
        "SECRET-mistral",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
