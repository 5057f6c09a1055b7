//! Virtual keys: who may call, which budget a key bills to, keys added live, and the
//! Prometheus endpoint on the admin listener.

mod common;

use common::dir::DirGateway;
use common::read_to_close;
use common::user;
use serde_json::{json, Value};
use tollgate::budget::keys::{self, KeyHash};

fn closed(routes: String) -> String {
    routes.replace("allow_anonymous = true", "allow_anonymous = false")
}

fn team_budget(key: &str) -> String {
    format!(
        "daily_limit = \"10\"\n[[keys]]\nid = \"svc-a\"\nsha256 = \"{}\"\n",
        KeyHash::of(key).to_hex()
    )
}

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON error body"))
}

#[tokio::test]
async fn missing_and_unknown_keys_get_401_invalid_api_key() {
    let g = DirGateway::start("auth-401", closed, &[("team", &team_budget("tg-known"))]).await;
    let body = json!({"model": "gpt-4o-mini", "messages": user("hi")});
    let (status, e) = error_of(g.chat(None, body.clone()).await).await;
    assert_eq!(status, 401);
    assert_eq!(e["error"]["code"], "invalid_api_key");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("didn't provide"));
    let (status, e) = error_of(g.chat(Some("tg-unknown"), body.clone()).await).await;
    assert_eq!(status, 401);
    assert_eq!(e["error"]["code"], "invalid_api_key");
    assert!(
        !e.to_string().contains("tg-unknown"),
        "the key is not echoed"
    );
    // /v1/models needs a key too.
    let r = g.client.get(g.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Health checks do not.
    let r = g.client.get(g.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    g.stop().await;
}

#[tokio::test]
async fn a_known_key_is_served_through_every_header_clients_use() {
    let g = DirGateway::start("auth-ok", closed, &[("team", &team_budget("tg-known"))]).await;
    let body = json!({"model": "gpt-4o-mini", "messages": user("hi")});
    assert_eq!(g.chat(Some("tg-known"), body.clone()).await.status(), 200);
    for header in ["api-key", "x-api-key"] {
        let r = g
            .client
            .post(g.url("/v1/chat/completions"))
            .header(header, "tg-known")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{header}");
    }
    g.stop().await;
}

#[tokio::test]
async fn a_key_added_to_a_budget_file_works_without_a_restart() {
    let g = DirGateway::start("auth-live", closed, &[("team", "daily_limit = \"10\"\n")]).await;
    let body = json!({"model": "gpt-4o-mini", "messages": user("hi")});
    let key = keys::generate().unwrap();
    assert_eq!(g.chat(Some(&key), body.clone()).await.status(), 401);
    let before = g.state.config.load().version.clone();
    keys::add_to_file(&g.dir.join("budgets/team.toml"), "new", &key, "2026-11-21").unwrap();
    g.wait_for_reload(&before).await;
    assert_eq!(g.chat(Some(&key), body.clone()).await.status(), 200);
    // A broken budget file is rejected and the last good set keeps serving.
    let before = g.state.config.load().version.clone();
    std::fs::write(g.dir.join("budgets/broken.toml"), "daily_limit = \"ten\"\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while g.state.reload_status.lock().failures == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "rejection not noticed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(g.state.config.load().version, before);
    let err = g.state.reload_status.lock().last_error.clone().unwrap();
    assert!(err.contains("broken.toml:1"), "{err}");
    assert_eq!(g.chat(Some(&key), body).await.status(), 200);
    g.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_tokens_reloads_and_need_the_admin_token() {
    let g = DirGateway::start("metrics", |r| r, &[]).await;
    for _ in 0..3 {
        let r = g
            .chat(
                None,
                json!({"model": "gpt-4o-mini", "messages": user("count me")}),
            )
            .await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let r = g
        .chat(
            None,
            json!({"model": "no-such-model", "messages": user("x")}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let unauth = g.client.get(g.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(unauth.status(), 401);
    // A request is counted when its logging phase has run, just after its response.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = g.admin_get("/metrics").await.text().await.unwrap();
        if text.contains("status=\"404\"") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value("tollgate_requests_total{model=\"gpt-4o-mini\",provider=\"openai\",route=\"chat_completions\",status=\"200\""),
        3.0
    );
    assert_eq!(
        value("tollgate_requests_total{model=\"\",provider=\"\",route=\"chat_completions\",status=\"404\""),
        1.0
    );
    assert!(value("tollgate_tokens_total{kind=\"output\",model=\"gpt-4o-mini\"}") > 0.0);
    assert_eq!(
        value("tollgate_upstream_attempts_total{model=\"gpt-4o-mini\",outcome=\"ok\",provider=\"openai\"}"),
        3.0
    );
    assert_eq!(
        value("tollgate_circuit_state{model=\"gpt-4o-mini\",provider=\"openai\"}"),
        0.0
    );
    assert_eq!(value("tollgate_request_duration_seconds_count{route=\"chat_completions\",streamed=\"false\"}"), 4.0);
    let version = g.state.config.load().version.clone();
    assert_eq!(
        value(&format!("tollgate_config_info{{version=\"{version}\"}}")),
        1.0
    );
    // A rejected edit is counted.
    std::fs::write(&g.file, "[routing\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = g.admin_get("/metrics").await.text().await.unwrap();
        if text.contains("tollgate_config_reloads_total{result=\"rejected\"} 1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    g.stop().await;
}

// ---- Keep-alive after a refusal ----

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A closed gateway that knows `tg-known` and takes bodies of up to 4 KiB.
async fn small_bodies() -> DirGateway {
    let routes = |r: String| closed(r).replace("[server]\n", "[server]\nmax_body_bytes = 4096\n");
    DirGateway::start(
        "auth-keepalive",
        routes,
        &[("team", &team_budget("tg-known"))],
    )
    .await
}

/// Reads one response with a `content-length` body; returns its head and body.
async fn read_response(s: &mut TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("a response head within 10 s")
            .unwrap();
        assert_eq!(n, 1, "closed mid-head: {}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("content-length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (head, String::from_utf8(body).unwrap())
}

fn post(path: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_the_body_is_read_keep_the_connection_open() {
    let g = small_bodies().await;
    let mut s = TcpStream::connect(g.gw.addr).await.unwrap();
    let body = json!({"model": "gpt-4o-mini", "messages": user("hi")}).to_string();
    // A wrong key is refused before the body is read; the body is drained, not left to be
    // read as the next request, and the connection stays open.
    let bad_key = post(
        "/v1/chat/completions",
        "authorization: Bearer tg-unknown\r\n",
        &body,
    );
    s.write_all(bad_key.as_bytes()).await.unwrap();
    let (head, err) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("connection: keep-alive"), "{head}");
    assert!(err.contains("invalid_api_key"), "{err}");
    // So is an unknown path with a body.
    s.write_all(post("/v1/nothing-here", "", &body).as_bytes())
        .await
        .unwrap();
    let (head, _) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(head.contains("connection: keep-alive"), "{head}");
    // The same connection then serves a real request.
    s.write_all(
        post(
            "/v1/chat/completions",
            "authorization: Bearer tg-known\r\n",
            &body,
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (head, reply) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(reply.contains("chat.completion"), "{reply}");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_an_oversized_or_unsized_body_close_the_connection() {
    let g = small_bodies().await;
    let big = format!("{{\"model\":\"{}\"}}", "x".repeat(5000));
    let chunked = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n\
                   authorization: Bearer tg-unknown\r\ntransfer-encoding: chunked\r\n\r\n\
                   2\r\n{}\r\n0\r\n\r\n";
    let cases = [
        (
            post(
                "/v1/chat/completions",
                "authorization: Bearer tg-known\r\n",
                &big,
            ),
            "413",
        ),
        (
            post(
                "/v1/chat/completions",
                "authorization: Bearer tg-unknown\r\n",
                &big,
            ),
            "401",
        ),
        (chunked.to_string(), "401"),
    ];
    for (request, status) in cases {
        let mut s = TcpStream::connect(g.gw.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let text = read_to_close(&mut s, Duration::from_secs(10))
            .await
            .expect("the connection is closed");
        assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
    }
    g.stop().await;
}
