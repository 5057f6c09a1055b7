//! Virtual keys: who may call, which budget a key bills to, keys added live, and the
//! Prometheus endpoint on the admin listener.

mod common;

use common::dir::DirGateway;
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
