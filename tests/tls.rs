//! TLS end to end with certificates made in the test: HTTPS on the public and admin
//! listeners (and a renewed certificate picked up without a restart), and upstream TLS
//! verified against a provider's `ca_file`, the system roots, and the host name.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dir::{temp_dir, DirGateway, ADMIN};
use common::{credentials, routes, user, OPENAI_KEY, TIMEOUTS};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SerialNumber};
use serde_json::json;
use tollgate::config::Config;
use tollgate::providers::ProviderKind;
use tollgate::proxy::GatewayState;
use tollgate::server::RunningGateway;
use tollgate::sim::{SimOptions, SimServer};

/// A test certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate and its key, PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `host` with the given serial.
    fn issue(&self, host: &str, serial: u64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![host.to_string()]).unwrap();
        p.serial_number = Some(SerialNumber::from(serial));
        p.distinguished_name
            .push(DnType::CommonName, format!("{host} #{serial}"));
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

fn write_leaf(dir: &Path, leaf: &Leaf) {
    std::fs::write(dir.join("server.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &leaf.key_pem).unwrap();
}

/// A client that trusts only `ca` and reaches `localhost` at `addr`.
fn https_client(ca: &Ca, addrs: &[SocketAddr]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap());
    for a in addrs {
        b = b.resolve("localhost", *a);
    }
    b.build().unwrap()
}

/// The leaf certificate `addr` presents, checked against `ca` (DER).
fn served_certificate(ca: &Ca, addr: SocketAddr) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).expect("handshake");
    }
    conn.peer_certificates().unwrap()[0].as_ref().to_vec()
}

fn with_listener_tls(src: String, dir: &Path, admin: bool) -> String {
    let files = format!(
        "{{ cert = \"{}\", key = \"{}\" }}",
        dir.join("server.crt").display(),
        dir.join("server.key").display()
    );
    let mut lines = format!("[server]\ntls = {files}\n");
    if admin {
        lines.push_str(&format!("admin_tls = {files}\n"));
    }
    src.replacen("[server]\n", &lines, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_serve_https_and_pick_up_a_renewed_certificate() {
    let ca = Ca::new("tollgate test CA");
    let certs = temp_dir("tls-listener");
    write_leaf(&certs, &ca.issue("localhost", 1001));
    let c2 = certs.clone();
    let dg = DirGateway::start("tls", move |s| with_listener_tls(s, &c2, true), &[]).await;
    let addr = dg.gw.addr;
    let admin = dg.gw.admin_addr.unwrap();
    let client = https_client(&ca, &[addr, admin]);

    // HTTPS chat completion, JSON and streamed.
    let url = format!("https://localhost:{}/v1/chat/completions", addr.port());
    let r = client
        .post(&url)
        .json(&json!({"model": "gpt-4o-mini", "messages": user("hello")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    let r = client
        .post(&url)
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "messages": user("hello")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));

    // The admin listener speaks HTTPS too.
    let r = client
        .get(format!(
            "https://localhost:{}/admin/api/status",
            admin.port()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // Nor does a client that does not trust the CA.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let r = untrusting
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await;
    assert!(r.is_err());

    assert_eq!(serial_of(&served_certificate(&ca, addr)), 1001);

    // Renew: new key and certificate files, same paths. The reloader swaps them in.
    let version = dg.state.config.load().version.clone();
    let renewed = ca.issue("localhost", 2002);
    write_leaf(&certs, &renewed);
    dg.wait_for_reload(&version).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = served_certificate(&ca, addr);
        if now == renewed.der {
            break;
        }
        assert!(Instant::now() < deadline, "renewed certificate not served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(serial_of(&served_certificate(&ca, admin)), 2002);
    let r = client
        .post(&url)
        .json(&json!({"model": "gpt-4o-mini", "messages": user("again")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A key that does not match the certificate is rejected; the last good pair serves.
    let version = dg.state.config.load().version.clone();
    let other = ca.issue("localhost", 3003);
    std::fs::write(certs.join("server.crt"), &other.cert_pem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dg.state.reload_status.lock().last_error.is_none() {
        assert!(Instant::now() < deadline, "mismatched key not reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = dg.state.reload_status.lock().last_error.clone().unwrap();
    assert!(err.contains("does not match"), "{err}");
    assert_eq!(dg.state.config.load().version, version);
    assert_eq!(served_certificate(&ca, addr), renewed.der);

    dg.stop().await;
    let _ = std::fs::remove_dir_all(&certs);
}

/// The serial number of a DER certificate.
fn serial_of(der: &[u8]) -> u64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.raw_serial()
        .iter()
        .fold(0u64, |n, b| (n << 8) | u64::from(*b))
}

#[test]
fn bad_tls_files_are_reported_with_their_line() {
    let ca = Ca::new("tollgate test CA");
    let dir = temp_dir("tls-check");
    let leaf = ca.issue("localhost", 7);
    std::fs::write(dir.join("ok.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("ok.key"), &leaf.key_pem).unwrap();
    std::fs::write(dir.join("garbage.pem"), "not a certificate\n").unwrap();
    let src = routes(
        "https://localhost:1",
        "http://127.0.0.1:2",
        "tls = { cert = \"missing.crt\", key = \"ok.key\" }\nadmin_listen = \"127.0.0.1:0\"\nadmin_tls = { cert = \"ok.crt\", key = \"garbage.pem\" }",
        "",
        TIMEOUTS,
    )
    .replacen(
        "kind = \"openai\"\n",
        "kind = \"openai\"\nca_file = \"garbage.pem\"\n",
        1,
    )
    .replacen(
        "kind = \"mistral\"\n",
        "kind = \"mistral\"\nca_file = \"ok.crt\"\n",
        1,
    );
    let file = dir.join("routes.toml");
    std::fs::write(&file, &src).unwrap();
    let errs = Config::load(&file).unwrap_err().to_string();
    let line_of = |needle: &str| src.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        errs.contains(&format!(":{}: server.tls.cert", line_of("missing.crt"))),
        "{errs}"
    );
    assert!(errs.contains("missing.crt"), "{errs}");
    assert!(
        errs.contains(&format!(
            ":{}: server.admin_tls.key",
            line_of("garbage.pem\" }")
        )),
        "{errs}"
    );
    assert!(errs.contains("no PEM private key"), "{errs}");
    assert!(
        errs.contains(&format!(
            ":{}: providers.openai.ca_file",
            line_of("ca_file = \"garbage.pem\"")
        )),
        "{errs}"
    );
    assert!(errs.contains("no PEM certificate"), "{errs}");
    assert!(errs.contains("providers.mistral.ca_file"), "{errs}");
    assert!(errs.contains("needs an https:// base_url"), "{errs}");

    // Fixed, the same file loads, relative paths read next to it.
    let fixed = src
        .replace("missing.crt", "ok.crt")
        .replace("key = \"garbage.pem\"", "key = \"ok.key\"")
        .replace("ca_file = \"garbage.pem\"", "ca_file = \"ok.crt\"")
        .replacen("ca_file = \"ok.crt\"\n", "", 2)
        .replacen(
            "kind = \"openai\"\n",
            "kind = \"openai\"\nca_file = \"ok.crt\"\n",
            1,
        );
    std::fs::write(&file, &fixed).unwrap();
    let cfg = Config::load(&file).expect("valid");
    assert!(cfg.server.tls.is_some() && cfg.server.admin_tls.is_some());
    assert!(cfg.providers["openai"].ca.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TLS OpenAI simulator serving `leaf`, and a plain Mistral one.
async fn tls_sims(leaf: &Leaf) -> (SimServer, SimServer) {
    let tls = tollgate::tls::server_config_from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap();
    let openai = SimServer::start(
        ProviderKind::OpenAi,
        SimOptions {
            api_key: Some(OPENAI_KEY.into()),
            tls: Some(tls),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let mistral = SimServer::start(
        ProviderKind::Mistral,
        SimOptions {
            api_key: Some(common::MISTRAL_KEY.into()),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    (openai, mistral)
}

/// A gateway whose OpenAI provider is `openai_url` with `provider_extra` lines.
async fn gateway(openai_url: &str, mistral: &SimServer, provider_extra: &str) -> RunningGateway {
    let src = routes(openai_url, &mistral.base_url(), "", "", TIMEOUTS).replacen(
        "kind = \"openai\"\n",
        &format!("kind = \"openai\"\n{provider_extra}\n"),
        1,
    );
    let mut config = Config::parse(&src, "test-routes.toml").expect("valid");
    config.auth.accept_any_key = true;
    let state = GatewayState::new(config, credentials());
    tokio::task::spawn_blocking(move || RunningGateway::start(state, 2))
        .await
        .unwrap()
        .unwrap()
}

async fn chat(gw: &RunningGateway, model: &str, stream: bool) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.base_url()))
        .json(&json!({"model": model, "stream": stream, "messages": user("hello")}))
        .send()
        .await
        .unwrap()
}

async fn stop(gw: RunningGateway) {
    tokio::task::spawn_blocking(move || gw.stop())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_verified_against_the_configured_ca() {
    let ca = Ca::new("tollgate upstream CA");
    let dir = temp_dir("tls-upstream");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let (openai, mistral) = tls_sims(&ca.issue("localhost", 11)).await;
    assert!(openai.base_url().starts_with("https://localhost:"));
    let ca_line = format!("ca_file = \"{}\"", dir.join("ca.pem").display());

    // Trusting the test CA: served over TLS, non-streamed and streamed.
    let gw = gateway(&openai.base_url(), &mistral, &ca_line).await;
    let r = chat(&gw, "gpt-4-turbo", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-provider"], "openai");
    let r = chat(&gw, "gpt-4-turbo", true).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(openai.request_count(), 2);
    assert_eq!(
        openai.requests()[0].headers["authorization"],
        format!("Bearer {OPENAI_KEY}")
    );
    assert_eq!(openai.tls_failures(), 0);
    stop(gw).await;

    // System roots only: the handshake fails, the client gets a clean OpenAI error and
    // nothing reaches the provider.
    let gw = gateway(&openai.base_url(), &mistral, "").await;
    let r = chat(&gw, "gpt-4-turbo", false).await;
    assert_eq!(r.status(), 502);
    let attempts = r.headers()["x-tollgate-attempts"]
        .to_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unreachable", "{body}");
    assert!(attempts.contains("gpt-4-turbo"), "{attempts}");
    // With a fallback, the next model serves.
    let r = chat(&gw, "gpt-4o-mini", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-model"], "mistral-small");
    let r = chat(&gw, "gpt-4o-mini", true).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-model"], "mistral-small");
    assert_eq!(
        openai.request_count(),
        2,
        "no request over an unverified link"
    );
    assert!(openai.tls_failures() > 0);
    stop(gw).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_certificate_for_another_host_is_refused() {
    let ca = Ca::new("tollgate upstream CA");
    let dir = temp_dir("tls-hostname");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    // Signed by the trusted CA, but for another name.
    let (openai, mistral) = tls_sims(&ca.issue("api.openai.example", 12)).await;
    let ca_line = format!("ca_file = \"{}\"", dir.join("ca.pem").display());
    let gw = gateway(&openai.base_url(), &mistral, &ca_line).await;
    let r = chat(&gw, "gpt-4-turbo", false).await;
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unreachable", "{body}");
    let r = chat(&gw, "gpt-4o-mini", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-model"], "mistral-small");
    assert_eq!(openai.request_count(), 0);
    stop(gw).await;

    // A CA that did not sign it is refused the same way.
    let other = Ca::new("some other CA");
    std::fs::write(dir.join("other.pem"), other.pem()).unwrap();
    let (openai, mistral) = tls_sims(&ca.issue("localhost", 13)).await;
    let line = format!("ca_file = \"{}\"", dir.join("other.pem").display());
    let gw = gateway(&openai.base_url(), &mistral, &line).await;
    let r = chat(&gw, "gpt-4-turbo", false).await;
    assert_eq!(r.status(), 502);
    assert_eq!(openai.request_count(), 0);
    stop(gw).await;
    let _ = std::fs::remove_dir_all(&dir);
}
