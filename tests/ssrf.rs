//! Nothing in a request changes where tollgate connects, and only tollgate's own headers
//! reach a provider: model names, paths and headers carrying URLs get clean 4xx (or are
//! served by the configured provider), a canary listener sees no connection, and the
//! simulated providers' recorded headers hold no hop-by-hop, client-identifying or client
//! credential header.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{user, Harness, MISTRAL_KEY, OPENAI_KEY};
use serde_json::json;

/// A TCP listener that counts every connection it accepts.
struct Canary {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Canary {
    fn start() -> Canary {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                h.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        Canary { addr, hits }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Sends `head` (request line and headers, CRLF-separated, without the blank line) and
/// `body` over a fresh connection; returns the status code and the whole response.
fn raw(addr: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let req = format!(
        "{head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cannot_steer_upstream_connections() {
    let canary = Canary::start();
    let h = Harness::start().await;
    let c = canary.url();

    // Model names that look like URLs or paths are unknown models.
    for model in [
        "http://evil.example/x".to_string(),
        format!("{c}/v1/chat/completions"),
        "//evil.example/x".to_string(),
        "../".to_string(),
        "openai/../../x".to_string(),
        "gpt-4o-mini/../../admin".to_string(),
        "gpt-4o-mini?x=1".to_string(),
        "gpt-4o-mini\r\nHost: evil.example".to_string(),
        format!("gpt-4o-mini@{}", canary.addr),
    ] {
        let r = h
            .chat(json!({"model": model, "messages": user("hi")}))
            .await;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 404, "{model}: {body}");
        assert_eq!(body["error"]["code"], "model_not_found", "{model}");
    }

    // Headers naming other hosts are ignored (or refused); the configured provider serves.
    let steering: Vec<(&str, String)> = vec![
        ("host", canary.addr.to_string()),
        ("x-forwarded-host", canary.addr.to_string()),
        ("x-forwarded-proto", "http".into()),
        ("forwarded", format!("host={}", canary.addr)),
        ("x-original-url", format!("{c}/v1/chat/completions")),
        ("x-rewrite-url", format!("{c}/v1/chat/completions")),
        ("x-tollgate-upstream", c.clone()),
        ("x-tollgate-base-url", c.clone()),
        ("x-tollgate-provider", c.clone()),
        ("x-tollgate-model", c.clone()),
    ];
    for (name, value) in &steering {
        let r = h
            .client
            .post(h.url("/v1/chat/completions"))
            .header(*name, value)
            .json(&json!({"model": "gpt-4o-mini", "messages": user("hi")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.headers()["x-tollgate-provider"], "openai", "{name}");
    }
    for (name, value) in [
        ("x-tollgate-tier", c.clone()),
        ("x-tollgate-max-cost", c.clone()),
        ("x-tollgate-latency", c.clone()),
    ] {
        let r = h
            .client
            .post(h.url("/v1/chat/completions"))
            .header(name, value)
            .json(&json!({"model": "gpt-4o-mini", "messages": user("hi")}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(
            status == 200 || (400..500).contains(&status),
            "{name}: {status}"
        );
    }
    // Every request that reached a provider went to the configured one, with its own Host.
    for r in h.openai.requests() {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(
            r.headers["host"].to_str().unwrap(),
            h.openai.addr().to_string()
        );
    }

    // Paths that climb out of the API, raw on the wire (clients would normalise them).
    let body = json!({"model": "gpt-4o-mini", "messages": user("hi")}).to_string();
    let head = |line: &str| format!("{line}\r\nhost: 127.0.0.1\r\ncontent-type: application/json");
    for line in [
        "POST /v1/chat/completions/../../admin HTTP/1.1",
        "POST /v1/chat/completions/../../admin/reload HTTP/1.1",
        "GET /v1/../admin/api/status HTTP/1.1",
        "POST /v1/chat/completions/%2e%2e/%2e%2e/metrics HTTP/1.1",
        "POST //evil.example/v1/chat/completions HTTP/1.1",
        "GET /metrics HTTP/1.1",
    ] {
        let (status, text) = raw(h.gw.addr, &head(line), &body);
        assert!((400..500).contains(&status), "{line}: {text}");
    }
    // A proxy-style absolute target naming the canary is served like its path, by the
    // configured provider, or refused; it is never followed.
    let before = h.openai.request_count();
    let (status, text) = raw(
        h.gw.addr,
        &format!(
            "POST {c}/v1/chat/completions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json",
            canary.addr
        ),
        &body,
    );
    assert!(
        status == 200 || (400..500).contains(&status),
        "absolute-form: {text}"
    );
    if status == 200 {
        assert_eq!(h.openai.request_count(), before + 1);
    }
    let (status, _) = raw(
        h.gw.addr,
        &format!("CONNECT {} HTTP/1.1\r\nhost: {}", canary.addr, canary.addr),
        "",
    );
    assert!(
        status == 0 || (400..500).contains(&status),
        "CONNECT: {status}"
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        canary.hits.load(Ordering::SeqCst),
        0,
        "the canary was contacted"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tollgate_headers_reach_the_provider() {
    let h = Harness::start().await;
    let client_headers = [
        ("authorization", "Bearer sk-client-own-key-123"),
        ("api-key", "client-api-key-456"),
        ("x-api-key", "client-x-api-key-789"),
        ("cookie", "session=client-cookie"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-real-ip", "203.0.113.7"),
        ("forwarded", "for=203.0.113.7"),
        ("true-client-ip", "203.0.113.7"),
        ("cf-connecting-ip", "203.0.113.7"),
        ("x-client-ip", "203.0.113.7"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic Y2xpZW50OnNlY3JldA=="),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("x-custom-hop", "nominated"),
        ("connection", "keep-alive, x-custom-hop"),
        ("openai-organization", "org-client"),
        ("anthropic-beta", "client-beta"),
        ("x-tollgate-max-cost", "1.00"),
        ("user-agent", "client-agent/1.0"),
        ("accept-encoding", "gzip, br"),
        ("x-request-id", "client-request-id"),
    ];
    for (model, stream) in [
        ("gpt-4o-mini", false),
        ("gpt-4o-mini", true),
        ("mistral-small", false),
        ("mistral-small", true),
    ] {
        let mut req = h
            .client
            .post(h.url("/v1/chat/completions"))
            .json(&json!({"model": model, "stream": stream, "messages": user("hi")}));
        for (k, v) in client_headers {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{model}");
        r.bytes().await.unwrap();
    }
    // Upgrade and chunked framing from the client do not pass through either.
    let body = json!({"model": "gpt-4o-mini", "messages": user("hi")}).to_string();
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let mut s = TcpStream::connect(h.gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\nupgrade: websocket\r\nconnection: close\r\n\r\n{chunked}"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 "), "{out}");

    let mut recorded = h.openai.requests();
    recorded.extend(h.mistral.requests());
    assert!(recorded.len() >= 4);
    let forbidden = [
        "api-key",
        "cookie",
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "true-client-ip",
        "cf-connecting-ip",
        "x-client-ip",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-custom-hop",
        "openai-organization",
        "anthropic-beta",
        "x-tollgate-max-cost",
        "accept-encoding",
        "x-request-id",
    ];
    for r in &recorded {
        for name in forbidden {
            assert!(
                !r.headers.contains_key(name),
                "{name} forwarded: {:?}",
                r.headers
            );
        }
        let auth = r.headers["authorization"].to_str().unwrap();
        assert!(
            auth == format!("Bearer {OPENAI_KEY}") || auth == format!("Bearer {MISTRAL_KEY}"),
            "{auth}"
        );
        assert!(!r.headers.contains_key("x-api-key"));
        if let Some(c) = r.headers.get("connection") {
            assert!(!c.to_str().unwrap().contains("x-custom-hop"));
        }
        assert!(r.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("tollgate/"));
        let text = format!("{:?}", r.headers);
        for leaked in [
            "sk-client-own-key",
            "client-api-key",
            "203.0.113.7",
            "client-cookie",
        ] {
            assert!(!text.contains(leaked), "{leaked} forwarded: {text}");
        }
    }
    h.stop().await;
}
