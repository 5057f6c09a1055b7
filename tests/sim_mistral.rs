//! The simulated Mistral API over real HTTP: response shapes against recorded traffic,
//! Mistral's strict validation (422 `detail`, tool-call ids, message order), flat error
//! bodies, faults, tool calls and determinism.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::sim::{self, chunks, events, read_until_error, shape};
use tollgate::api::ChatRequest;
use tollgate::providers::ProviderKind;
use tollgate::sim::{Fault, SimServer};
use tollgate::tokens::{count_prompt, Encoding};

const KEY: &str = "mistral-test-key";

fn fixture(name: &str) -> String {
    support::fixture_text("sim/mistral", name)
}

fn fixture_json(name: &str) -> Value {
    support::fixture_json("sim/mistral", name)
}

async fn server() -> SimServer {
    sim::start(ProviderKind::Mistral, KEY).await
}

fn url(s: &SimServer) -> String {
    format!("{}/v1/chat/completions", s.base_url())
}

async fn post(s: &SimServer, body: &Value) -> reqwest::Response {
    sim::post_bearer(&url(s), KEY, body).await
}

async fn post_json(s: &SimServer, body: &Value) -> (u16, Value) {
    sim::status_and_json(post(s, body).await).await
}

fn user(text: &str) -> Value {
    json!({"model": "mistral-large-latest", "messages": [{"role": "user", "content": text}]})
}

fn streamed(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Get the current weather for a city.",
        "parameters": {"additionalProperties": false, "properties": {"city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1, "maximum": 5}}, "required": ["city", "days"], "type": "object"}}})
}

#[tokio::test]
async fn non_stream_text_matches_the_recorded_shape() {
    let s = server().await;
    let req = json!({"model": "magistral-small-latest", "messages": [{"role": "user", "content": "What is 17 times 19? Answer briefly."}],
                     "max_tokens": 512, "stream": false});
    let r = post(&s, &req).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("mistral-correlation-id"));
    assert!(r
        .headers()
        .contains_key("x-ratelimit-remaining-tokens-minute"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        shape(&body),
        shape(&fixture_json(
            "text_nonstream_magistral_small_raw.response.json"
        ))
    );
    // The other recording (older, without `service_tier`) has a subset of the keys.
    let older = fixture_json("text_nonstream_mistral_large.response.json");
    for key in older["usage"].as_object().unwrap().keys() {
        assert!(body["usage"].get(key).is_some(), "{key}");
    }
    let id = body["id"].as_str().unwrap();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(body["model"], "magistral-small-latest");
    assert!(body["choices"][0]["message"]["tool_calls"].is_null());
    let chat: ChatRequest = serde_json::from_value(req).unwrap();
    assert_eq!(
        body["usage"]["prompt_tokens"],
        count_prompt(Encoding::Cl100k, &chat)
    );
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        body["usage"]["completion_tokens"],
        Encoding::Cl100k.count(text)
    );
}

#[tokio::test]
async fn stream_puts_usage_on_the_last_content_chunk_like_the_recording() {
    let s = server().await;
    let r = post(&s, &streamed(user("Which version is installed?"))).await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = r.bytes().await.unwrap();
    assert_eq!(events(&body).last().map(String::as_str), Some("[DONE]"));
    let ours = chunks(&body);
    let recorded = chunks(fixture("text_stream_after_tool_mistral_large.stream.sse").as_bytes());
    assert_eq!(shape(&ours[0]), shape(&recorded[0]));
    assert_eq!(shape(&ours[1]), shape(&recorded[1]));
    assert_eq!(shape(ours.last().unwrap()), shape(recorded.last().unwrap()));
    assert_eq!(
        ours[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    // Usage and finish_reason only on the last chunk, no usage-only chunk.
    let (last, rest) = ours.split_last().unwrap();
    assert!(rest
        .iter()
        .all(|c| c.get("usage").is_none() && c["choices"][0]["finish_reason"].is_null()));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({"content": ""}));
    let text: String = ours
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        last["usage"]["completion_tokens"],
        Encoding::Cl100k.count(&text)
    );
    assert!(ours.len() >= 5);
}

#[tokio::test]
async fn tool_call_matches_the_recorded_non_stream_and_stream_shapes() {
    let s = server().await;
    let req = fixture_json("tool_call_nonstream_mistral_large.request.json");
    let (status, body) = post_json(&s, &req).await;
    assert_eq!(status, 200);
    let recorded = fixture_json("tool_call_nonstream_mistral_large.response.json");
    assert_eq!(shape(&body["choices"]), shape(&recorded["choices"]));
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert!(call.get("type").is_none());
    let id = call["id"].as_str().unwrap();
    assert!(id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(body["choices"][0]["message"]["content"], "");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");

    let stream = post(&s, &streamed(req)).await.bytes().await.unwrap();
    let ours = chunks(&stream);
    let recorded = chunks(fixture("tool_call_stream_mistral_large.stream.sse").as_bytes());
    assert_eq!(ours.len(), 2, "the call arrives whole in one chunk");
    assert_eq!(shape(&ours[0]), shape(&recorded[0]));
    assert_eq!(shape(&ours[1]), shape(&recorded[1]));
}

#[tokio::test]
async fn recorded_follow_up_after_a_tool_result_gets_text() {
    let s = server().await;
    let (status, body) = post_json(
        &s,
        &fixture_json("text_after_tool_nonstream_mistral_large.request.json"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(!body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn any_tool_choice_calls_a_tool_with_schema_valid_arguments() {
    let s = server().await;
    for choice in [
        json!("any"),
        json!("required"),
        json!({"type": "function", "function": {"name": "get_weather"}}),
    ] {
        let mut req = user("Plan my week");
        req["tools"] = json!([weather_tool()]);
        req["tool_choice"] = choice;
        let (status, body) = post_json(&s, &req).await;
        assert_eq!(status, 200);
        let args: Value = serde_json::from_str(
            body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert!(args["city"].is_string());
        let days = args["days"].as_i64().unwrap();
        assert!((1..=5).contains(&days));
        assert_eq!(args.as_object().unwrap().len(), 2);
    }
}

#[tokio::test]
async fn stream_options_and_max_completion_tokens_are_rejected_with_422() {
    let s = server().await;
    let mut req = streamed(user("hi"));
    req["stream_options"] = json!({"include_usage": true});
    let (status, body) = post_json(&s, &req).await;
    assert_eq!(status, 422);
    // As recorded from the real API for this very mistake.
    assert_eq!(body["object"], "error");
    assert_eq!(body["type"], "invalid_request_error");
    let d = &body["message"]["detail"][0];
    assert_eq!(d["type"], "extra_forbidden");
    assert_eq!(d["loc"], json!(["body", "stream_options", "include_usage"]));
    assert_eq!(d["msg"], "Extra inputs are not permitted");

    let mut req = user("hi");
    req["max_completion_tokens"] = json!(100);
    req["seed"] = json!(1);
    let (status, body) = post_json(&s, &req).await;
    assert_eq!(status, 422);
    assert_eq!(body["message"]["detail"].as_array().unwrap().len(), 2);

    let (status, body) = post_json(&s, &json!({"model": "mistral-large-latest"})).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["message"]["detail"][0]["loc"],
        json!(["body", "messages"])
    );
}

#[tokio::test]
async fn tool_call_ids_that_are_not_nine_alphanumerics_get_mistral_400() {
    let s = server().await;
    let req = json!({"model": "mistral-large-latest", "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_0fypS1hVX", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0fypS1hVX", "content": "sunny"}]});
    let (status, body) = post_json(&s, &req).await;
    assert_eq!(status, 400);
    assert_eq!(body["object"], "error");
    assert_eq!(
        body["message"],
        "Tool call id was call_0fypS1hVX but must be a-z, A-Z, 0-9, with a length of 9."
    );
    assert!(body.get("error").is_none(), "Mistral errors are flat");

    let mut ok = req.clone();
    ok["messages"][1]["tool_calls"][0]["id"] = json!("KikbB849t");
    ok["messages"][2]["tool_call_id"] = json!("KikbB849t");
    assert_eq!(post_json(&s, &ok).await.0, 200);
}

#[tokio::test]
async fn missing_credential_gets_401_and_unknown_path_404() {
    let s = server().await;
    let r = reqwest::Client::new()
        .post(url(&s))
        .json(&user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Unauthorized"})
    );
    let r = reqwest::Client::new()
        .post(url(&s))
        .bearer_auth("wrong")
        .json(&user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/nope", s.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Not Found"})
    );
}

#[tokio::test]
async fn rate_limit_fault_has_the_flat_body_and_retry_after() {
    let s = server().await;
    s.push_fault(Fault::Status {
        status: 429,
        retry_after_secs: Some(4),
    });
    let r = post(&s, &user("hi")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "4");
    assert_eq!(r.headers()["x-ratelimit-remaining-req-minute"], "0");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"object": "error", "message": "Rate limit exceeded", "type": "rate_limited",
                            "param": null, "code": "1300", "raw_status_code": 429})
    );
    let (status, body) = post_json(&s, &user("hi [[sim: status=503]]")).await;
    assert_eq!(status, 503);
    assert_eq!(body["object"], "error");
}

#[tokio::test]
async fn stream_faults_truncate_reset_error_and_malformed() {
    let s = server().await;
    let body = post(&s, &streamed(user("hi [[sim: truncate_after=2 words=20]]")))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(events(&body).len(), 2);

    let r = post(&s, &streamed(user("hi [[sim: reset_after=2 words=20]]"))).await;
    let (_, failed) = read_until_error(r).await;
    assert!(failed);

    let body = post(
        &s,
        &streamed(user("hi [[sim: stream_error_after=3 words=20]]")),
    )
    .await
    .bytes()
    .await
    .unwrap();
    let all = events(&body);
    assert_eq!(all.len(), 4);
    let err: Value = serde_json::from_str(&all[3]).unwrap();
    assert_eq!(err["object"], "error");

    let body = post(&s, &streamed(user("hi [[sim: malformed words=8]]")))
        .await
        .bytes()
        .await
        .unwrap();
    let bad = events(&body)
        .iter()
        .filter(|d| *d != "[DONE]" && serde_json::from_str::<Value>(d).is_err())
        .count();
    assert_eq!(bad, 1);

    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let hang = client
        .post(url(&s))
        .bearer_auth(KEY)
        .header("x-sim-fault", "hang")
        .json(&user("hi"))
        .send()
        .await;
    assert!(hang.unwrap_err().is_timeout());
}

#[tokio::test]
async fn max_tokens_cap_sets_finish_reason_length_and_output_is_deterministic() {
    let s = server().await;
    let mut req = user("Tell me everything [[sim: words=100]]");
    req["max_tokens"] = json!(6);
    let (_, a) = post_json(&s, &req).await;
    let (_, b) = post_json(&s, &req).await;
    assert_eq!(a["choices"][0]["finish_reason"], "length");
    assert_eq!(a["usage"]["completion_tokens"], 6);
    assert_eq!(
        a["choices"][0]["message"]["content"],
        b["choices"][0]["message"]["content"]
    );

    let body = post(&s, &streamed(req)).await.bytes().await.unwrap();
    let last = chunks(&body).pop().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["usage"]["completion_tokens"], 6);
}
