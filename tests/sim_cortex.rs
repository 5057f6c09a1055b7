//! The simulated Snowflake Cortex API over real HTTP: the native COMPLETE endpoint (shapes,
//! default streaming, multi-line events, tool use, JSON output, message rules), Snowflake
//! authentication (PAT, OAuth, key-pair JWT), the OpenAI-compatible endpoint against recorded
//! traffic, the model list, every fault, and determinism.

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::rand_core::OsRng;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use support::sim::{self, booking_schema, chunks, conforms, events, read_until_error, shape};
use tollgate::providers::snowflake_jwt::KeyPairJwt;
use tollgate::providers::ProviderKind;
use tollgate::sim::{Fault, SimFleet, SimOptions, SimServer};
use tollgate::tokens::Encoding;

const PAT: &str = "pat-test-0123456789abcdef";
const COMPLETE: &str = "/api/v2/cortex/inference:complete";
const CHAT: &str = "/api/v2/cortex/v1/chat/completions";
const TOKEN_TYPE: &str = "X-Snowflake-Authorization-Token-Type";

fn fixture(name: &str) -> String {
    support::fixture_text("sim/cortex", name)
}

fn fixture_json(name: &str) -> Value {
    support::fixture_json("sim/cortex", name)
}

async fn server() -> SimServer {
    sim::start(ProviderKind::Cortex, PAT).await
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn with_pat(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    rb.bearer_auth(PAT)
        .header(TOKEN_TYPE, "PROGRAMMATIC_ACCESS_TOKEN")
}

async fn post_to(s: &SimServer, path: &str, body: &Value) -> reqwest::Response {
    with_pat(client().post(format!("{}{path}", s.base_url())))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn post(s: &SimServer, body: &Value) -> reqwest::Response {
    post_to(s, COMPLETE, body).await
}

async fn post_json(s: &SimServer, body: &Value) -> (u16, Value) {
    sim::status_and_json(post(s, body).await).await
}

fn native(text: &str) -> Value {
    json!({"model": "mistral-large2", "messages": [{"role": "user", "content": text}]})
}

fn non_stream(mut body: Value) -> Value {
    body["stream"] = json!(false);
    body
}

/// The concatenated text deltas of a native stream.
fn native_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter(|c| c.pointer("/choices/0/delta/type") == Some(&json!("text")))
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect()
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Checks Snowflake's error body and header.
async fn snowflake_error(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let rid = r.headers()["x-snowflake-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        shape(&body),
        json!({"message": "string", "code": "string", "error_code": "string", "request_id": "string"}),
        "{body}"
    );
    assert_eq!(body["request_id"], rid);
    assert!(is_uuid(&rid), "{rid}");
    assert!(body["code"].as_str().unwrap().starts_with("39"));
    assert_eq!(body["code"], body["error_code"]);
    body
}

fn booking_tools() -> Value {
    json!([{"tool_spec": {"type": "generic", "name": "book_table", "description": "Book a table",
        "input_schema": booking_schema()}}])
}

/// The kind of a native delta: text, a tool call's start, or a tool input fragment.
fn delta_kind(c: &Value) -> &'static str {
    let d = &c["choices"][0]["delta"];
    match (d["type"].as_str(), d.get("tool_use_id").is_some()) {
        (Some("text"), _) => "text",
        (Some("tool_use"), true) => "tool_start",
        (Some("tool_use"), false) => "tool_input",
        _ => "other",
    }
}

/// The shape of a native chunk with its usage left out (usage is `{}` or the totals).
fn chunk_shape_without_usage(c: &Value) -> Value {
    let mut c = c.clone();
    c.as_object_mut().unwrap().remove("usage");
    shape(&c)
}

#[tokio::test]
async fn native_non_stream_has_the_documented_shape_and_counts_usage() {
    let s = server().await;
    let r = post(&s, &non_stream(native("Describe a harbor at dawn."))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(is_uuid(
        r.headers()["x-snowflake-request-id"].to_str().unwrap()
    ));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        shape(&body),
        json!({"id": "string", "created": "number", "model": "string",
               "choices": [{"message": {"content": "string", "content_list": [{"type": "string", "text": "string"}]},
                            "finish_reason": "string"}],
               "finish_reason": "string",
               "usage": {"prompt_tokens": "number", "completion_tokens": "number", "total_tokens": "number"}})
    );
    assert!(is_uuid(body["id"].as_str().unwrap()));
    assert_eq!(body["model"], "mistral-large2");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let message = &body["choices"][0]["message"];
    let content = message["content"].as_str().unwrap();
    assert!(!content.is_empty());
    assert_eq!(message["content_list"][0]["text"], content);
    let usage = &body["usage"];
    assert_eq!(usage["completion_tokens"], Encoding::Cl100k.count(content));
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn native_streams_by_default_with_data_only_events_and_usage_on_the_last_chunk() {
    let s = server().await;
    let r = post(&s, &native("Describe a harbor at dawn.")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = r.bytes().await.unwrap();
    let raw = std::str::from_utf8(&body).unwrap();
    assert!(!raw.contains("event:"), "no event names");
    assert!(!raw.contains("[DONE]"), "no [DONE]");
    let cs = chunks(&body);
    assert!(cs.len() >= 4, "{} chunks", cs.len());
    let (last, rest) = cs.split_last().unwrap();
    assert!(rest.iter().all(|c| c["usage"] == json!({})));
    assert_eq!(
        shape(&last["usage"]),
        json!({"prompt_tokens": "number", "completion_tokens": "number", "total_tokens": "number"})
    );
    assert!(cs.iter().all(|c| c["id"] == cs[0]["id"]));
    assert!(is_uuid(cs[0]["id"].as_str().unwrap()));
    assert!(cs
        .iter()
        .all(|c| c["choices"][0].get("finish_reason").is_none()));
    // Every text chunk has the keys of the captured stream's text chunks.
    let captured = chunks(fixture("native_tool_stream_claude_sonnet4.stream.sse").as_bytes());
    for c in &cs {
        assert_eq!(
            chunk_shape_without_usage(c),
            chunk_shape_without_usage(&captured[0])
        );
        let d = &c["choices"][0]["delta"];
        assert_eq!(
            d["content_list"],
            json!([{"type": "text", "text": d["content"]}])
        );
    }
    let text = native_text(&cs);
    assert_eq!(
        last["usage"]["completion_tokens"],
        Encoding::Cl100k.count(&text)
    );

    // The same conversation without streaming carries the same text.
    let (_, whole) = post_json(&s, &non_stream(native("Describe a harbor at dawn."))).await;
    assert_eq!(whole["choices"][0]["message"]["content"], text);
}

#[tokio::test]
async fn second_event_spans_two_data_lines_that_join_into_valid_json() {
    let s = server().await;
    let body = post(&s, &native("Name three rivers [[sim: words=12]]"))
        .await
        .bytes()
        .await
        .unwrap();
    let raw = std::str::from_utf8(&body).unwrap();
    let raw_events: Vec<&str> = raw.split("\n\n").filter(|e| !e.is_empty()).collect();
    let lines: Vec<usize> = raw_events
        .iter()
        .map(|e| e.lines().filter(|l| l.starts_with("data: ")).count())
        .collect();
    assert_eq!(lines[1], 2, "{raw_events:?}");
    assert!(lines.iter().enumerate().all(|(i, n)| i == 1 || *n == 1));
    let halves: Vec<&str> = raw_events[1]
        .lines()
        .map(|l| l.strip_prefix("data: ").unwrap())
        .collect();
    assert!(serde_json::from_str::<Value>(halves[0]).is_err());
    let joined: Value = serde_json::from_str(&halves.join("\n")).unwrap();
    // The SSE parser yields exactly that object for the event.
    assert_eq!(chunks(&body)[1], joined);
    assert_eq!(joined["choices"][0]["delta"]["type"], "text");
}

#[tokio::test]
async fn tool_use_stream_matches_the_captured_deltas_and_its_input_satisfies_the_schema() {
    let s = server().await;
    let captured = chunks(fixture("native_tool_stream_claude_sonnet4.stream.sse").as_bytes());
    let captured_shape = |kind: &str| {
        let c = captured.iter().find(|c| delta_kind(c) == kind).unwrap();
        chunk_shape_without_usage(c)
    };
    for prompt in ["Dinner for the team", "Somewhere quiet", "A birthday party"] {
        let mut req = native(prompt);
        req["model"] = json!("claude-3-5-sonnet");
        req["tools"] = booking_tools();
        req["tool_choice"] = json!({"type": "required"});
        let body = post(&s, &req).await.bytes().await.unwrap();
        let cs = chunks(&body);
        let kinds: Vec<&str> = cs.iter().map(delta_kind).collect();
        assert_eq!(kinds[0], "tool_start", "{kinds:?}");
        assert!(kinds[1..].iter().all(|k| *k == "tool_input"), "{kinds:?}");
        assert!(kinds.len() >= 3, "input split across chunks: {kinds:?}");
        for c in &cs {
            assert_eq!(
                chunk_shape_without_usage(c),
                captured_shape(delta_kind(c)),
                "{c}"
            );
        }
        let start = &cs[0]["choices"][0]["delta"];
        assert_eq!(start["name"], "book_table");
        assert!(start["tool_use_id"]
            .as_str()
            .unwrap()
            .starts_with("tooluse_"));
        let input: String = cs[1..]
            .iter()
            .map(|c| {
                c["choices"][0]["delta"]["input"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let args: Value = serde_json::from_str(&input).unwrap();
        conforms(&booking_schema(), &args, "input").unwrap();
        assert!(cs.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0));
    }
}

#[tokio::test]
async fn non_stream_tool_use_is_a_content_list_item_and_finishes_with_tool_calls() {
    let s = server().await;
    let mut req = non_stream(native("Book a table for tonight"));
    req["model"] = json!("claude-3-5-sonnet");
    req["tools"] = booking_tools();
    req["tool_choice"] = json!({"type": "tool", "name": ["book_table"]});
    let (status, body) = post_json(&s, &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let item = &body["choices"][0]["message"]["content_list"][0];
    assert_eq!(item["type"], "tool_use");
    assert_eq!(item["tool_use"]["name"], "book_table");
    assert!(item["tool_use"]["tool_use_id"]
        .as_str()
        .unwrap()
        .starts_with("tooluse_"));
    conforms(&booking_schema(), &item["tool_use"]["input"], "input").unwrap();
}

#[tokio::test]
async fn tool_results_follow_up_is_answered_with_text() {
    let s = server().await;
    let req = json!({"model": "claude-3-5-sonnet", "stream": false, "tools": booking_tools(),
        "tool_choice": {"type": "required"},
        "messages": [
            {"role": "user", "content": "Book a table please"},
            {"role": "assistant", "content_list": [
                {"type": "tool_use", "tool_use": {"tool_use_id": "tooluse_abc", "name": "book_table", "input": {"guests": 2}}}]},
            {"role": "user", "content_list": [
                {"type": "tool_results", "tool_results": {"tool_use_id": "tooluse_abc", "name": "book_table",
                    "content": [{"type": "text", "text": "booked for 19:30"}]}}]}]});
    let (status, body) = post_json(&s, &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.is_empty());
    assert_eq!(
        body["choices"][0]["message"]["content_list"][0]["type"],
        "text"
    );

    // A result that answers no tool use of the turn before is rejected.
    let mut wrong = req.clone();
    wrong["messages"][2]["content_list"][0]["tool_results"]["tool_use_id"] = json!("tooluse_zzz");
    let body = snowflake_error(post(&s, &wrong).await, 400).await;
    assert!(body["message"].as_str().unwrap().contains("tooluse_zzz"));
}

#[tokio::test]
async fn last_message_must_be_user_and_roles_must_alternate() {
    let s = server().await;
    let req = json!({"model": "mistral-large2", "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]});
    let body = snowflake_error(post(&s, &req).await, 400).await;
    assert!(body["message"].as_str().unwrap().contains("last message"));

    let req = json!({"model": "mistral-large2", "messages": [
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"}]});
    let body = snowflake_error(post(&s, &req).await, 400).await;
    assert!(body["message"].as_str().unwrap().contains("alternate"));

    let req = json!({"model": "mistral-large2", "messages": [
        {"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "c"}]});
    snowflake_error(post(&s, &req).await, 400).await;

    // A system prompt first, then alternating turns, is fine; so is a message without role.
    let req = json!({"model": "mistral-large2", "stream": false, "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"}, {"content": "c"}]});
    assert_eq!(post_json(&s, &req).await.0, 200);
}

#[tokio::test]
async fn malformed_payloads_and_unknown_models_get_400s() {
    let s = server().await;
    for req in [
        json!({"model": "mistral-large2"}),
        json!({"model": "mistral-large2", "messages": []}),
        json!({"model": "mistral-large2", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}),
        json!({"model": "mistral-large2", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "auto"}}),
        json!({"model": "mistral-large2", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
    ] {
        let body = snowflake_error(post(&s, &req).await, 400).await;
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Incoming request does not contain a valid payload.")
                || req.get("tool_choice").is_some(),
            "{body}"
        );
    }
    let r = with_pat(client().post(format!("{}{COMPLETE}", s.base_url())))
        .body("{not json")
        .send()
        .await
        .unwrap();
    snowflake_error(r, 400).await;

    let mut req = native("hi");
    req["model"] = json!("gpt-9-imaginary");
    let body = snowflake_error(post(&s, &req).await, 400).await;
    assert_eq!(body["message"], "unknown model \"gpt-9-imaginary\"");
}

#[tokio::test]
async fn response_format_json_output_satisfies_the_schema() {
    let s = server().await;
    let mut req = non_stream(native("Plan a dinner in Lisbon"));
    req["response_format"] = json!({"type": "json", "schema": booking_schema()});
    let (status, body) = post_json(&s, &req).await;
    assert_eq!(status, 200, "{body}");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    let doc: Value = serde_json::from_str(content).unwrap();
    conforms(&booking_schema(), &doc, "doc").unwrap();
    assert_eq!(
        body["usage"]["completion_tokens"],
        Encoding::Cl100k.count(content)
    );

    req["stream"] = json!(true);
    let stream = post(&s, &req).await.bytes().await.unwrap();
    let streamed = native_text(&chunks(&stream));
    assert_eq!(streamed, content);
}

#[tokio::test]
async fn max_tokens_cap_ends_with_finish_reason_length() {
    let s = server().await;
    let mut req = non_stream(native("Go on at length [[sim: words=200]]"));
    req["max_tokens"] = json!(7);
    let (_, body) = post_json(&s, &req).await;
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 7);
}

#[tokio::test]
async fn missing_wrong_or_untyped_credentials_get_snowflake_401s() {
    let s = server().await;
    let url = format!("{}{COMPLETE}", s.base_url());
    let req = non_stream(native("hi"));

    let r = client().post(&url).json(&req).send().await.unwrap();
    snowflake_error(r, 401).await;

    let r = client()
        .post(&url)
        .bearer_auth("pat-wrong")
        .header(TOKEN_TYPE, "PROGRAMMATIC_ACCESS_TOKEN")
        .json(&req)
        .send()
        .await
        .unwrap();
    let body = snowflake_error(r, 401).await;
    let message = body["message"].as_str().unwrap();
    let rid = body["request_id"].as_str().unwrap();
    assert!(message.ends_with(&format!("[{rid}]")), "{message}");

    let r = client()
        .post(&url)
        .bearer_auth(PAT)
        .header(TOKEN_TYPE, "PASSWORD")
        .json(&req)
        .send()
        .await
        .unwrap();
    snowflake_error(r, 401).await;

    // The right token as a PAT, as OAuth, and without the type header.
    for kind in [Some("PROGRAMMATIC_ACCESS_TOKEN"), Some("OAUTH"), None] {
        let mut rb = client().post(&url).bearer_auth(PAT).json(&req);
        if let Some(k) = kind {
            rb = rb.header(TOKEN_TYPE, k);
        }
        assert_eq!(rb.send().await.unwrap().status(), 200, "{kind:?}");
    }
    let r = client()
        .post(&url)
        .bearer_auth("other")
        .header(TOKEN_TYPE, "OAUTH")
        .json(&req)
        .send()
        .await
        .unwrap();
    snowflake_error(r, 401).await;
}

/// One 2048-bit key for the whole test binary (generation is slow in debug builds).
fn rsa_key() -> RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut OsRng, 2048).unwrap())
        .clone()
}

fn unsigned_jwt(header: Value, claims: Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([1u8; 32])
    )
}

#[tokio::test]
async fn key_pair_jwts_are_checked_for_snowflake_claims() {
    let s = server().await;
    let url = format!("{}{COMPLETE}", s.base_url());
    let req = non_stream(native("hi"));
    let signer = KeyPairJwt::from_key("myorg-myaccount", "svc_user", rsa_key()).unwrap();
    let send = |token: String, typed: bool| {
        let mut rb = client().post(&url).bearer_auth(token).json(&req);
        if typed {
            rb = rb.header(TOKEN_TYPE, "KEYPAIR_JWT");
        }
        rb.send()
    };

    // A fresh token from the gateway's signer passes, with or without the type header.
    assert_eq!(
        send(signer.token().unwrap(), true).await.unwrap().status(),
        200
    );
    assert_eq!(
        send(signer.token().unwrap(), false).await.unwrap().status(),
        200
    );

    // Expired (signed two hours ago with a 59-minute lifetime).
    let old = KeyPairJwt::from_key("myorg-myaccount", "svc_user", rsa_key()).unwrap();
    let expired = old
        .token_at(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let body = snowflake_error(send(expired, true).await.unwrap(), 401).await;
    assert_eq!(body["code"], "390144");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("JWT token is invalid. ["));

    // Wrong algorithm, wrong subject, lifetime over an hour, not a JWT at all.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let iss = format!("MYORG-MYACCOUNT.SVC_USER.{}", signer.fingerprint());
    for token in [
        unsigned_jwt(
            json!({"alg": "HS256", "typ": "JWT"}),
            json!({"iss": iss, "sub": "MYORG-MYACCOUNT.SVC_USER", "iat": now, "exp": now + 600}),
        ),
        unsigned_jwt(
            json!({"alg": "RS256", "typ": "JWT"}),
            json!({"iss": iss, "sub": "MYORG-MYACCOUNT.OTHER", "iat": now, "exp": now + 600}),
        ),
        unsigned_jwt(
            json!({"alg": "RS256", "typ": "JWT"}),
            json!({"iss": iss, "sub": "MYORG-MYACCOUNT.SVC_USER", "iat": now, "exp": now + 7200}),
        ),
        "opaque-token".to_string(),
    ] {
        let body = snowflake_error(send(token, true).await.unwrap(), 401).await;
        assert_eq!(body["code"], "390144");
    }
    // A well-formed token of the right shape passes without a signature check.
    let token = unsigned_jwt(
        json!({"alg": "RS256", "typ": "JWT"}),
        json!({"iss": iss, "sub": "MYORG-MYACCOUNT.SVC_USER", "iat": now, "exp": now + 600}),
    );
    assert_eq!(send(token, true).await.unwrap().status(), 200);
}

#[tokio::test]
async fn openai_compatible_non_stream_matches_the_recorded_shape() {
    let s = server().await;
    let req = fixture_json("chat_completions_text_nonstream.request.json");
    let r = post_to(&s, CHAT, &req).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    let recorded = fixture_json("chat_completions_text_nonstream.response.json");
    assert_eq!(shape(&body), shape(&recorded));
    assert_eq!(body["id"], "");
    assert_eq!(body["choices"][0]["finish_reason"], "");
    assert_eq!(
        body["choices"][0]["message"]["audio"],
        recorded["choices"][0]["message"]["audio"]
    );
    assert_eq!(body["model"], "claude-sonnet-4-6");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        body["usage"]["completion_tokens"],
        Encoding::Cl100k.count(content)
    );
}

#[tokio::test]
async fn openai_compatible_tool_call_matches_the_recorded_shape() {
    let s = server().await;
    let req = fixture_json("chat_completions_tool_call_nonstream.request.json");
    let (status, body) = {
        let r = post_to(&s, CHAT, &req).await;
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200, "{body}");
    let recorded = fixture_json("chat_completions_tool_call_nonstream.response.json");
    assert_eq!(shape(&body), shape(&recorded));
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("toolu_bdrk_"));
    assert_eq!(
        call["id"].as_str().unwrap().len(),
        recorded["choices"][0]["message"]["tool_calls"][0]["id"]
            .as_str()
            .unwrap()
            .len()
    );
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].as_str().unwrap().contains("Mexico"), "{args}");
    assert_eq!(body["choices"][0]["message"]["content"], "");
    assert_eq!(body["choices"][0]["finish_reason"], "");
}

#[tokio::test]
async fn openai_compatible_stream_has_the_recorded_keys_on_every_chunk() {
    let s = server().await;
    let req = fixture_json("chat_completions_text_stream_include_usage.request.json");
    let r = post_to(&s, CHAT, &req).await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = r.bytes().await.unwrap();
    assert_eq!(events(&body).last().map(String::as_str), Some("[DONE]"));
    let recorded =
        chunks(fixture("chat_completions_text_stream_include_usage.stream.sse").as_bytes());
    let ours = chunks(&body);
    assert!(ours.len() >= 3);
    let (usage, content) = ours.split_last().unwrap();
    for c in content {
        assert_eq!(shape(c), shape(&recorded[0]), "{c}");
        assert_eq!(c["id"], "");
        assert_eq!(c["created"], 0);
    }
    assert_eq!(shape(usage), shape(recorded.last().unwrap()));
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        content.last().unwrap()["choices"][0]["delta"]["content"],
        ""
    );
    let text: String = content
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        usage["usage"]["completion_tokens"],
        Encoding::Cl100k.count(&text)
    );

    // Without include_usage there is no usage chunk.
    let mut req = req;
    req.as_object_mut().unwrap().remove("stream_options");
    let body = post_to(&s, CHAT, &req).await.bytes().await.unwrap();
    let cs = chunks(&body);
    assert!(cs
        .iter()
        .all(|c| c.get("usage").is_none() && !c["choices"].as_array().unwrap().is_empty()));

    // Streamed tool calls: an id and name first, then argument fragments.
    let mut req = fixture_json("chat_completions_tool_call_nonstream.request.json");
    req["stream"] = json!(true);
    let body = post_to(&s, CHAT, &req).await.bytes().await.unwrap();
    let cs = chunks(&body);
    let first = &cs[0]["choices"][0]["delta"]["tool_calls"][0];
    assert!(first["id"].as_str().unwrap().starts_with("toolu_bdrk_"));
    assert_eq!(first["function"]["name"], "get_weather");
    let arguments: String = cs[1..]
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
        })
        .collect();
    let args: Value = serde_json::from_str(&arguments).unwrap();
    assert!(args["city"].is_string());
    assert!(cs.iter().all(|c| shape(c)
        .pointer("/choices/0")
        .is_some_and(|ch| ch.get("finish_reason").is_none())));
}

#[tokio::test]
async fn models_endpoint_lists_the_account_models() {
    let s = server().await;
    let url = format!("{}/api/v2/cortex/models", s.base_url());
    let r = with_pat(client().get(&url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let models: Vec<&str> = body["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for m in [
        "mistral-large2",
        "llama3.1-70b",
        "claude-3-5-sonnet",
        "claude-sonnet-4-6",
    ] {
        assert!(models.contains(&m), "{m}");
    }
    snowflake_error(client().get(&url).send().await.unwrap(), 401).await;
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_snowflake_errors() {
    let s = server().await;
    let r = with_pat(client().post(format!("{}/api/v2/cortex/nothing", s.base_url())))
        .send()
        .await
        .unwrap();
    snowflake_error(r, 404).await;
    let r = with_pat(client().get(format!("{}{COMPLETE}", s.base_url())))
        .send()
        .await
        .unwrap();
    snowflake_error(r, 405).await;
}

#[tokio::test]
async fn status_faults_use_the_snowflake_error_body() {
    let s = server().await;
    for status in [400u16, 401, 403, 404, 429, 500, 503, 504] {
        let retry = (status == 429).then_some(3);
        s.push_fault(Fault::Status {
            status,
            retry_after_secs: retry,
        });
        let r = post(&s, &native("hi")).await;
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        snowflake_error(r, status).await;
        assert_eq!(retry_after, retry.map(|s| s.to_string()), "{status}");
    }
    // The OpenAI-compatible endpoint fails the same way.
    let r = post_to(
        &s,
        CHAT,
        &json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi [[sim: status=503]]"}]}),
    )
    .await;
    snowflake_error(r, 503).await;
    assert_eq!(post(&s, &non_stream(native("hi"))).await.status(), 200);
}

#[tokio::test]
async fn stream_error_after_sends_an_error_object_then_ends() {
    let s = server().await;
    for path in [COMPLETE, CHAT] {
        let mut req = native("hi [[sim: words=40 stream_error_after=2]]");
        req["stream"] = json!(true);
        let body = post_to(&s, path, &req).await.bytes().await.unwrap();
        let all = events(&body);
        assert_eq!(all.len(), 3, "{path}: {all:?}");
        let err: Value = serde_json::from_str(&all[2]).unwrap();
        assert!(err.get("choices").is_none());
        assert!(err["message"].is_string() && err["code"].is_string());
        assert!(is_uuid(err["request_id"].as_str().unwrap()));
        assert!(err["error"]["message"].is_string(), "{err}");
    }
}

#[tokio::test]
async fn reset_truncate_malformed_and_hang_faults() {
    let s = server().await;
    // Reset: the client sees an error after the first events.
    let r = post(&s, &native("hi [[sim: reset_after=2 words=40]]")).await;
    assert_eq!(r.status(), 200);
    let (received, failed) = read_until_error(r).await;
    assert!(failed, "the client must see the reset");
    assert_eq!(events(&received).len(), 2);

    // Truncate: a clean end without the usage chunk.
    let body = post(&s, &native("hi [[sim: truncate_after=3 words=40]]"))
        .await
        .bytes()
        .await
        .unwrap();
    let cs = chunks(&body);
    assert_eq!(cs.len(), 3);
    assert!(cs.iter().all(|c| c["usage"] == json!({})));

    // Malformed: one event is not JSON; non-stream bodies are cut.
    s.push_fault(Fault::MalformedBody);
    let body = post(&s, &native("hi [[sim: words=10]]"))
        .await
        .bytes()
        .await
        .unwrap();
    let bad = events(&body)
        .iter()
        .filter(|d| serde_json::from_str::<Value>(d).is_err())
        .count();
    assert_eq!(bad, 1);
    let r = post(&s, &non_stream(native("hi [[sim: malformed]]"))).await;
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());

    // Hang: never answers.
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = with_pat(c.post(format!("{}{COMPLETE}", s.base_url())))
        .json(&native("[[sim: hang]]"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());

    // Delays hold the headers and space the events.
    let start = Instant::now();
    let r = post(&s, &non_stream(native("hi [[sim: delay_ms=200]]"))).await;
    assert_eq!(r.status(), 200);
    assert!(start.elapsed() >= Duration::from_millis(200));
    let start = Instant::now();
    let body = post(&s, &native("hi [[sim: words=4 chunk_delay_ms=30]]"))
        .await
        .bytes()
        .await
        .unwrap();
    let n = events(&body).len() as u64;
    assert!(start.elapsed() >= Duration::from_millis(30 * (n - 1)));
}

#[tokio::test]
async fn identical_requests_repeat_and_different_prompts_do_not() {
    let s = server().await;
    let text = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (_, a) = post_json(&s, &non_stream(native("Tell me about routing."))).await;
    let (_, b) = post_json(&s, &non_stream(native("Tell me about routing."))).await;
    let (_, c) = post_json(&s, &non_stream(native("Tell me about caching."))).await;
    assert_eq!(text(&a), text(&b));
    assert_ne!(text(&a), text(&c));
    assert_ne!(a["id"], b["id"]);
    let one = native_text(&chunks(
        &post(&s, &native("Tell me about routing."))
            .await
            .bytes()
            .await
            .unwrap(),
    ));
    let two = native_text(&chunks(
        &post(&s, &native("Tell me about routing."))
            .await
            .bytes()
            .await
            .unwrap(),
    ));
    assert_eq!(one, two);
    assert_eq!(one, text(&a));
}

#[tokio::test]
async fn fleet_serves_cortex_with_a_demo_pat() {
    let fleet = SimFleet::spawn(SimOptions::default()).unwrap();
    let base = fleet.base_url(ProviderKind::Cortex).unwrap();
    let r = client()
        .post(format!("{base}{COMPLETE}"))
        .bearer_auth("demo")
        .header(TOKEN_TYPE, "PROGRAMMATIC_ACCESS_TOKEN")
        .json(&non_stream(native("hello")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let recorded = fleet.server(ProviderKind::Cortex).unwrap().requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].path, COMPLETE);
}
