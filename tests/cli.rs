//! The `tollgate` binary as operators use it: `check` exit codes and messages, and
//! `serve --demo` answering requests, reloading on SIGHUP, and stopping on SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const ROUTES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/routes.toml");

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tollgate-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn check_accepts_the_shipped_file_and_lists_every_problem_of_a_bad_one() {
    let out = Command::new(BIN).args(["check", ROUTES]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));

    let bad = tmp("check").join("routes.toml");
    let src = std::fs::read_to_string(ROUTES)
        .unwrap()
        .replace("provider = \"mistral\"", "provider = \"mistrel\"")
        .replace("threads = 2", "threads = 0");
    std::fs::write(&bad, src).unwrap();
    let out = Command::new(BIN).arg("check").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.threads: must be between 1 and 256"),
        "{err}"
    );
    assert_eq!(
        err.matches("unknown provider `mistrel`").count(),
        2,
        "{err}"
    );
    assert!(err.contains("3 problem(s)"), "{err}");
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The most recent rows of the ledger a gateway in `dir` wrote.
fn ledger_rows(dir: &std::path::Path) -> Vec<tollgate::ledger::LedgerRecord> {
    tollgate::ledger::Ledger::open(
        &dir.join("data").join(tollgate::ledger::FILE_NAME),
        tollgate::ledger::LedgerOptions::default(),
    )
    .unwrap()
    .recent(&tollgate::ledger::RecentFilter::default())
    .unwrap()
}

/// `tollgate serve --demo` on `listen`, with `file` and an admin listener on a free port.
fn demo_serve(listen: &str, file: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--demo", "--listen", listen])
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--config")
        .arg(file);
    cmd
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

async fn version(client: &reqwest::Client, port: u16) -> Option<String> {
    let r = client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["config_version"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = tmp("serve");
    let file = dir.join("routes.toml");
    let shipped = std::fs::read_to_string(ROUTES).unwrap();
    std::fs::write(
        &file,
        shipped.replace("shutdown_grace_seconds = 30", "shutdown_grace_seconds = 1"),
    )
    .unwrap();
    copy_budgets(&dir);
    let port = free_port();
    let mut child = demo_serve(&format!("127.0.0.1:{port}"), &file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let serve = Serve(child);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(v) = version(&client, port).await {
            break v;
        }
        assert!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let r = client
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .json(
            &serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // An edit plus SIGHUP: the process survives and serves the new version.
    let src = std::fs::read_to_string(&file).unwrap() + "\n# edited\n";
    std::fs::write(&file, src).unwrap();
    signal(&serve.0, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match version(&client, port).await {
            Some(v) if v != first => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "edit not applied after SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A burst just before SIGTERM: the ledger must hold every request after shutdown.
    for i in 0..5 {
        let r = client
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .bearer_auth("tg-any-key-in-demo")
            .json(&serde_json::json!({"model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": format!("burst {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }

    let mut serve = serve;
    signal(&serve.0, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = serve.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    let logs = logs.join().unwrap().join("\n");
    assert!(logs.contains("DEMO MODE"), "{logs}");
    assert!(logs.contains("Configuration reloaded"), "{logs}");
    let rows = ledger_rows(&dir);
    assert_eq!(
        rows.len(),
        6,
        "every request is in the ledger after SIGTERM"
    );
    assert!(rows.iter().all(|r| r.budget == "demo" && r.cost_nanos > 0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Copies the shipped budget files next to a test's routes file.
fn copy_budgets(dir: &std::path::Path) {
    let to = dir.join("budgets");
    std::fs::create_dir_all(&to).unwrap();
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("budgets");
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn key_new_prints_a_key_once_and_stores_only_its_hash() {
    let dir = tmp("key");
    std::fs::copy(ROUTES, dir.join("routes.toml")).unwrap();
    copy_budgets(&dir);
    let out = Command::new(BIN)
        .args([
            "key",
            "new",
            "--budget",
            "example-team",
            "--id",
            "ci-runner",
            "--config",
        ])
        .arg(dir.join("routes.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("tg-") && key.len() == 43, "{key}");
    let file = std::fs::read_to_string(dir.join("budgets/example-team.toml")).unwrap();
    assert!(!file.contains(&key));
    assert!(file.contains(&tollgate::budget::keys::KeyHash::of(&key).to_hex()));
    assert!(file.contains("id = \"ci-runner\""));
    // The edited budgets still validate, and the same id cannot be added twice.
    let check = Command::new(BIN)
        .arg("check")
        .arg(dir.join("routes.toml"))
        .output()
        .unwrap();
    assert!(check.status.success());
    let again = Command::new(BIN)
        .args([
            "key",
            "new",
            "--budget",
            "example-team",
            "--id",
            "ci-runner",
            "--config",
        ])
        .arg(dir.join("routes.toml"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has a key"));
    let unknown = Command::new(BIN)
        .args(["key", "new", "--budget", "nope", "--config"])
        .arg(dir.join("routes.toml"))
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_exits_with_an_error_when_its_address_is_taken() {
    let dir = tmp("taken");
    let file = dir.join("routes.toml");
    std::fs::write(&file, std::fs::read_to_string(ROUTES).unwrap()).unwrap();
    copy_budgets(&dir);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let t0 = Instant::now();
    let out = demo_serve(&addr, &file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(t0.elapsed() < Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Cannot listen") && stderr.contains(&addr),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `serve --demo` with the shipped file (30 s grace) in a fresh directory.
async fn serve_shipped(name: &str) -> (Serve, u16, std::path::PathBuf) {
    let dir = tmp(name);
    let file = dir.join("routes.toml");
    std::fs::write(&file, std::fs::read_to_string(ROUTES).unwrap()).unwrap();
    copy_budgets(&dir);
    let port = free_port();
    let child = demo_serve(&format!("127.0.0.1:{port}"), &file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let serve = Serve(child);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while version(&client, port).await.is_none() {
        assert!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (serve, port, dir)
}

/// Waits for the process to exit; returns its status and how long it took.
async fn exit_of(serve: &mut Serve, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let t0 = Instant::now();
    loop {
        if let Some(s) = serve.0.try_wait().unwrap() {
            return (s, t0.elapsed());
        }
        assert!(t0.elapsed() < limit, "did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_at_once_when_idle_and_after_the_last_stream_when_busy() {
    // Idle: well before the 30 s grace period.
    let (mut serve, _, dir) = serve_shipped("sigterm-idle").await;
    signal(&serve.0, "-TERM");
    let (status, took) = exit_of(&mut serve, Duration::from_secs(25)).await;
    println!("idle gateway exited {took:?} after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let _ = std::fs::remove_dir_all(&dir);

    // A slow stream in flight: it completes, is in the ledger, and the process exits.
    let (mut serve, port, dir) = serve_shipped("sigterm-stream").await;
    let client = reqwest::Client::new();
    let mut resp = client
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .json(
            &serde_json::json!({"model": "gpt-4o-mini", "stream": true, "messages": [
            {"role": "user", "content": "Tell me a story [[sim: chunk_delay_ms=150 words=20]]"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let mut body = String::from_utf8(resp.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    let t0 = Instant::now();
    signal(&serve.0, "-TERM");
    while let Some(c) = resp.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&c));
    }
    assert!(body.ends_with("data: [DONE]\n\n"), "stream cut: {body}");
    let (status, _) = exit_of(&mut serve, Duration::from_secs(25)).await;
    let took = t0.elapsed();
    println!("gateway with a stream in flight exited {took:?} after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let rows = ledger_rows(&dir);
    let row = rows
        .iter()
        .find(|r| r.id == id)
        .expect("stream in the ledger");
    assert_eq!(row.status, 200);
    assert!(row.output_tokens > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
