//! The simulated Mistral chat completions API (`POST /v1/chat/completions`, `GET /v1/models`).
//!
//! Shapes follow the recorded traffic: 32-hex ids; the request's model echoed; non-stream
//! bodies with `tool_calls: null` on text answers and `content: ""` next to tool calls,
//! whose entries have `id`, `function` and `index` but no `type`; streams whose first chunk
//! carries the role and `content: ""`, whose text arrives a word or two per chunk, whose last
//! chunk has `content: ""`, the `finish_reason` **and** the usage (no separate usage chunk,
//! no `usage` key elsewhere), whose tool calls arrive whole in that last chunk, and which end
//! with `data: [DONE]`. Errors are flat (`{"object":"error","message",…}`), validation errors
//! are 422 with pydantic's `detail` list, a rejected credential is `{"detail":"Unauthorized"}`.
//!
//! Validation is strict where Mistral's is: unknown fields are `extra_forbidden` (top level
//! and per message role), tool-call ids must be `[a-zA-Z0-9]{9}`, and the last message must
//! be `user` or `tool` (or an `assistant` with `prefix: true`).

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::{json, Map, Value};

use super::openai_shape::{bearer, last_user_text};
use super::reply::{Exchange, Reply};
use super::{header_map, random_alnum, ErrorResponse, Meta, Route, SimProvider, StreamFrames};
use crate::api::ChatRequest;
use crate::providers::ProviderKind;

/// The simulated Mistral API.
pub(crate) struct MistralSim;

const RATE_LIMIT_REQ_MINUTE: u64 = 720;
const RATE_LIMIT_TOKENS_MINUTE: u64 = 5_000_000;

/// Top-level fields of Mistral's `ChatCompletionRequest` (mistralai client-python). Anything
/// else is rejected with `extra_forbidden`. This includes `stream_options` and
/// `max_completion_tokens`: real traffic shows Mistral rejecting both, and keeping the
/// simulator strict about them is deliberate, so that a gateway which forwards OpenAI-only
/// fields fails here rather than in production.
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "stream",
    "stop",
    "random_seed",
    "metadata",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "prediction",
    "parallel_tool_calls",
    "reasoning_effort",
    "prompt_mode",
    "guardrails",
    "prompt_cache_key",
    "safe_prompt",
];

/// Fields of each message role (`SystemMessage`, `UserMessage`, `AssistantMessage`,
/// `ToolMessage`).
fn message_fields(role: &str) -> &'static [&'static str] {
    match role {
        "assistant" => &["role", "content", "tool_calls", "prefix"],
        "tool" => &["role", "content", "tool_call_id", "name"],
        _ => &["role", "content"],
    }
}

const ROLE_TAGS: &str = "'assistant', 'system', 'tool', 'user'";

fn flat_error(message: &str, kind: &str, code: Option<&str>, status: u16) -> Value {
    json!({"object": "error", "message": message, "type": kind, "param": null, "code": code,
           "raw_status_code": status})
}

fn detail(kind: &str, loc: Vec<Value>, msg: &str, input: &Value) -> Value {
    json!({"type": kind, "loc": loc, "msg": msg, "input": input})
}

fn unprocessable(details: Vec<Value>) -> ErrorResponse {
    ErrorResponse::json(
        422,
        &json!({"object": "error", "message": {"detail": details}, "type": "invalid_request_error",
                "param": null, "code": null}),
    )
}

fn bad_request(message: &str, kind: &str, code: &str) -> ErrorResponse {
    ErrorResponse::json(400, &flat_error(message, kind, Some(code), 400))
}

fn correlation_id(meta: &Meta) -> String {
    let h = &meta.request_id;
    if h.len() < 32 || !h.is_ascii() {
        return h.clone();
    }
    format!(
        "{}-{}-7{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

fn with_ids(resp: ErrorResponse, meta: &Meta) -> ErrorResponse {
    let id = correlation_id(meta);
    resp.with_header("mistral-correlation-id", id.clone())
        .with_header("x-kong-request-id", id)
}

/// Pydantic-style checks: everything wrong is listed at once, as Mistral's 422 does.
fn schema_details(body: &Value) -> Vec<Value> {
    let Some(obj) = body.as_object() else {
        return vec![detail(
            "model_attributes_type",
            vec![json!("body")],
            "Input should be a valid dictionary or object to extract fields from",
            body,
        )];
    };
    let mut out = Vec::new();
    for key in ["model", "messages"] {
        if !obj.contains_key(key) {
            out.push(detail(
                "missing",
                vec![json!("body"), json!(key)],
                "Field required",
                body,
            ));
        }
    }
    if let Some(m) = obj.get("model").filter(|m| !m.is_string()) {
        out.push(detail(
            "string_type",
            vec![json!("body"), json!("model")],
            "Input should be a valid string",
            m,
        ));
    }
    for (key, value) in obj {
        if KNOWN_FIELDS.contains(&key.as_str()) {
            continue;
        }
        match value {
            // Recorded: `loc: ["body","stream_options","include_usage"]`.
            Value::Object(inner) if !inner.is_empty() => {
                for (k, v) in inner {
                    out.push(detail(
                        "extra_forbidden",
                        vec![json!("body"), json!(key), json!(k)],
                        "Extra inputs are not permitted",
                        v,
                    ));
                }
            }
            _ => out.push(detail(
                "extra_forbidden",
                vec![json!("body"), json!(key)],
                "Extra inputs are not permitted",
                value,
            )),
        }
    }
    for (key, kind, msg) in [
        ("max_tokens", "int_type", "Input should be a valid integer"),
        ("n", "int_type", "Input should be a valid integer"),
        ("random_seed", "int_type", "Input should be a valid integer"),
        (
            "temperature",
            "float_type",
            "Input should be a valid number",
        ),
        ("top_p", "float_type", "Input should be a valid number"),
        ("stream", "bool_type", "Input should be a valid boolean"),
    ] {
        if let Some(v) = obj.get(key) {
            let ok = match kind {
                "int_type" => v.is_i64() || v.is_u64() || v.is_null(),
                "float_type" => v.is_number() || v.is_null(),
                _ => v.is_boolean(),
            };
            if !ok {
                out.push(detail(kind, vec![json!("body"), json!(key)], msg, v));
            }
        }
    }
    match obj.get("messages") {
        Some(Value::Array(messages)) => {
            for (i, m) in messages.iter().enumerate() {
                message_details(i, m, &mut out);
            }
        }
        Some(other) => out.push(detail(
            "list_type",
            vec![json!("body"), json!("messages")],
            "Input should be a valid list",
            other,
        )),
        None => {}
    }
    tool_details(obj, &mut out);
    out
}

fn message_details(i: usize, m: &Value, out: &mut Vec<Value>) {
    let at = || vec![json!("body"), json!("messages"), json!(i)];
    let Some(obj) = m.as_object() else {
        out.push(detail(
            "model_attributes_type",
            at(),
            "Input should be a valid dictionary or object to extract fields from",
            m,
        ));
        return;
    };
    let role = match obj.get("role").and_then(Value::as_str) {
        Some(r @ ("system" | "user" | "assistant" | "tool")) => r,
        Some(r) => {
            let mut d = detail("union_tag_invalid", at(),
                &format!("Input tag '{r}' found using 'role' does not match any of the expected tags: {ROLE_TAGS}"), m);
            d["ctx"] = json!({"discriminator": "'role'", "tag": r, "expected_tags": ROLE_TAGS});
            out.push(d);
            return;
        }
        None => {
            let mut d = detail(
                "union_tag_not_found",
                at(),
                "Unable to extract tag using discriminator 'role'",
                m,
            );
            d["ctx"] = json!({"discriminator": "'role'"});
            out.push(d);
            return;
        }
    };
    let mut loc = at();
    loc.push(json!(role));
    for (k, v) in obj {
        if !message_fields(role).contains(&k.as_str()) {
            let mut l = loc.clone();
            l.push(json!(k));
            out.push(detail(
                "extra_forbidden",
                l,
                "Extra inputs are not permitted",
                v,
            ));
        }
    }
    match obj.get("content") {
        Some(Value::String(_)) | Some(Value::Array(_)) => {}
        Some(Value::Null) | None if role != "system" => {}
        None => {
            let mut l = loc.clone();
            l.push(json!("content"));
            out.push(detail("missing", l, "Field required", m));
        }
        Some(other) => {
            let mut l = loc.clone();
            l.push(json!("content"));
            out.push(detail(
                "string_type",
                l,
                "Input should be a valid string",
                other,
            ));
        }
    }
    if let Some(calls) = obj.get("tool_calls").and_then(Value::as_array) {
        for (j, c) in calls.iter().enumerate() {
            let name_ok = c.pointer("/function/name").is_some_and(Value::is_string);
            let args_ok = c
                .pointer("/function/arguments")
                .is_some_and(|a| a.is_string() || a.is_object());
            if !name_ok || !args_ok {
                let mut l = loc.clone();
                l.extend([json!("tool_calls"), json!(j), json!("function")]);
                out.push(detail("missing", l, "Field required", c));
            }
        }
    }
}

fn tool_details(obj: &Map<String, Value>, out: &mut Vec<Value>) {
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        for (i, t) in tools.iter().enumerate() {
            for field in ["name", "parameters"] {
                if t.get("function").and_then(|f| f.get(field)).is_none() {
                    out.push(detail(
                        "missing",
                        vec![
                            json!("body"),
                            json!("tools"),
                            json!(i),
                            json!("function"),
                            json!(field),
                        ],
                        "Field required",
                        t,
                    ));
                }
            }
        }
    }
    match obj.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if ["auto", "none", "any", "required"].contains(&s.as_str()) => {}
        Some(Value::Object(o))
            if o.get("function")
                .and_then(|f| f.get("name"))
                .is_some_and(Value::is_string) => {}
        Some(other) => out.push(detail(
            "enum",
            vec![json!("body"), json!("tool_choice")],
            "Input should be 'auto', 'none', 'any' or 'required'",
            other,
        )),
    }
}

fn valid_tool_call_id(id: &str) -> bool {
    id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Mistral's checks after schema validation (400s).
fn semantic_error(body: &Value) -> Option<ErrorResponse> {
    if body.get("model").and_then(Value::as_str) == Some("") {
        return Some(bad_request("Invalid model: ", "invalid_model", "1500"));
    }
    let messages = body.get("messages").and_then(Value::as_array)?;
    for m in messages {
        let ids: Vec<Option<&str>> = match m.get("role").and_then(Value::as_str) {
            Some("assistant") => m
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| c.get("id").and_then(Value::as_str))
                .collect(),
            Some("tool") => vec![m.get("tool_call_id").and_then(Value::as_str)],
            _ => Vec::new(),
        };
        for id in ids {
            if !id.is_some_and(valid_tool_call_id) {
                let shown = id.unwrap_or("null");
                return Some(bad_request(
                    &format!(
                        "Tool call id was {shown} but must be a-z, A-Z, 0-9, with a length of 9."
                    ),
                    "invalid_function_call",
                    "3280",
                ));
            }
        }
    }
    let last = messages.last()?;
    let role = last.get("role").and_then(Value::as_str).unwrap_or("");
    let prefix = last.get("prefix").and_then(Value::as_bool).unwrap_or(false);
    if !(role == "user" || role == "tool" || (role == "assistant" && prefix)) {
        // The wording is Mistral's; the code is not confirmed by a recording.
        return Some(bad_request(
            &format!("Expected last role User or Tool (or Assistant with prefix True) for serving but got {role}"),
            "invalid_request_message_order",
            "3230",
        ));
    }
    None
}

/// Mistral accepts tool-call `arguments` as an object too; the shared request type wants text.
fn normalize_arguments(body: &mut Value) {
    let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) else {
        return;
    };
    for m in messages {
        let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) else {
            continue;
        };
        for c in calls {
            if let Some(args) = c.pointer_mut("/function/arguments") {
                if args.is_object() {
                    *args = Value::String(args.to_string());
                }
            }
        }
    }
}

fn chunk(
    id: &str,
    created: u64,
    model: &str,
    index: usize,
    delta: Value,
    finish: Option<&str>,
) -> Value {
    json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
           "choices": [{"index": index, "delta": delta, "finish_reason": finish}]})
}

fn event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

impl SimProvider for MistralSim {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Mistral
    }

    fn route(&self, method: &Method, path: &str) -> Route {
        match (method, path.trim_end_matches('/')) {
            (&Method::POST, "/v1/chat/completions") => Route::Chat,
            (&Method::GET, "/v1/models") => Route::Models(None),
            (&Method::GET, p) => match p.strip_prefix("/v1/models/") {
                Some(id) if !id.is_empty() => Route::Models(Some(id.to_string())),
                _ => Route::NotFound,
            },
            _ => Route::NotFound,
        }
    }

    fn check_auth(
        &self,
        headers: &HeaderMap,
        expected: Option<&str>,
        meta: &Meta,
    ) -> Result<(), ErrorResponse> {
        match (bearer(headers), expected) {
            (Some(key), Some(want)) if key == want => Ok(()),
            (Some(_), None) => Ok(()),
            _ => Err(with_ids(
                ErrorResponse::json(401, &json!({"detail": "Unauthorized"})),
                meta,
            )),
        }
    }

    fn last_user_text(&self, body: &Value) -> Option<String> {
        last_user_text(body)
    }

    fn parse(
        &self,
        _raw: &[u8],
        json: Option<Value>,
        meta: &Meta,
    ) -> Result<Exchange, ErrorResponse> {
        let Some(mut body) = json else {
            let d = json!({"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error",
                           "input": {}, "ctx": {"error": "Expecting value"}});
            return Err(with_ids(unprocessable(vec![d]), meta));
        };
        let details = schema_details(&body);
        if !details.is_empty() {
            return Err(with_ids(unprocessable(details), meta));
        }
        if let Some(e) = semantic_error(&body) {
            return Err(with_ids(e, meta));
        }
        normalize_arguments(&mut body);
        let req: ChatRequest = serde_json::from_value(body.clone()).map_err(|e| {
            let d = detail(
                "value_error",
                vec![json!("body")],
                &e.to_string(),
                &json!({}),
            );
            with_ids(unprocessable(vec![d]), meta)
        })?;
        Ok(Exchange::from_chat(&req, body))
    }

    fn success_headers(&self, ex: &Exchange, meta: &Meta) -> HeaderMap {
        let id = correlation_id(meta);
        header_map(&[
            ("mistral-correlation-id", id.clone()),
            ("x-kong-request-id", id),
            (
                "x-envoy-upstream-service-time",
                (60 + ex.seed % 500).to_string(),
            ),
            (
                "x-ratelimit-limit-req-minute",
                RATE_LIMIT_REQ_MINUTE.to_string(),
            ),
            (
                "x-ratelimit-remaining-req-minute",
                (RATE_LIMIT_REQ_MINUTE - 1).to_string(),
            ),
            (
                "x-ratelimit-limit-tokens-minute",
                RATE_LIMIT_TOKENS_MINUTE.to_string(),
            ),
            (
                "x-ratelimit-remaining-tokens-minute",
                RATE_LIMIT_TOKENS_MINUTE
                    .saturating_sub(ex.prompt_tokens)
                    .to_string(),
            ),
            (
                "x-ratelimit-tokens-query-cost",
                ex.prompt_tokens.to_string(),
            ),
        ])
    }

    fn render_json(&self, ex: &Exchange, reply: &Reply, meta: &Meta) -> Bytes {
        let choices: Vec<Value> = reply
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let message = if c.tool_calls.is_empty() {
                    json!({"role": "assistant", "tool_calls": null, "content": c.text})
                } else {
                    let calls: Vec<Value> = c
                        .tool_calls
                        .iter()
                        .enumerate()
                        .map(|(k, t)| {
                            json!({"id": random_alnum(9),
                            "function": {"name": t.name, "arguments": t.arguments}, "index": k})
                        })
                        .collect();
                    json!({"role": "assistant", "tool_calls": calls, "content": ""})
                };
                json!({"index": i, "finish_reason": c.finish.as_str(), "message": message})
            })
            .collect();
        let completion = reply.completion_tokens();
        let body = json!({
            "id": super::random_hex(32),
            "created": meta.created,
            "model": ex.model,
            "usage": {
                "prompt_tokens": ex.prompt_tokens,
                "total_tokens": ex.prompt_tokens + completion,
                "completion_tokens": completion,
                "prompt_tokens_details": {"cached_tokens": meta.cached_tokens},
                "service_tier": "standard"
            },
            "object": "chat.completion",
            "choices": choices,
        });
        Bytes::from(body.to_string())
    }

    fn render_events(&self, ex: &Exchange, reply: &Reply, meta: &Meta) -> StreamFrames {
        let id = super::random_hex(32);
        let model = ex.model.as_str();
        let created = meta.created;
        let completion = reply.completion_tokens();
        let usage = json!({"prompt_tokens": ex.prompt_tokens, "total_tokens": ex.prompt_tokens + completion,
                           "completion_tokens": completion});
        let mut events = Vec::new();
        let last = reply.choices.len().saturating_sub(1);
        for (i, c) in reply.choices.iter().enumerate() {
            events.push(event(&chunk(
                &id,
                created,
                model,
                i,
                json!({"role": "assistant", "content": ""}),
                None,
            )));
            let final_delta = if c.tool_calls.is_empty() {
                for piece in &c.pieces {
                    events.push(event(&chunk(
                        &id,
                        created,
                        model,
                        i,
                        json!({"content": piece}),
                        None,
                    )));
                }
                json!({"content": ""})
            } else {
                let calls: Vec<Value> = c
                    .tool_calls
                    .iter()
                    .enumerate()
                    .map(|(k, t)| {
                        json!({"id": random_alnum(9),
                        "function": {"name": t.name, "arguments": t.arguments}, "index": k})
                    })
                    .collect();
                json!({"tool_calls": calls})
            };
            let mut end = chunk(&id, created, model, i, final_delta, Some(c.finish.as_str()));
            if i == last {
                end["usage"] = usage.clone();
            }
            events.push(event(&end));
        }
        StreamFrames {
            events,
            terminal: vec![Bytes::from_static(b"data: [DONE]\n\n")],
        }
    }

    fn stream_error_event(&self, _meta: &Meta) -> Bytes {
        // Mistral's flat error object, sent as a data line (its streams have no error event
        // type of their own).
        event(&flat_error(
            "Internal server error",
            "internal_server_error",
            Some("1000"),
            500,
        ))
    }

    fn error_response(
        &self,
        status: u16,
        retry_after: Option<u64>,
        model: &str,
        meta: &Meta,
    ) -> ErrorResponse {
        let resp = match status {
            400 => bad_request(&format!("Invalid model: {model}"), "invalid_model", "1500"),
            401 => ErrorResponse::json(401, &json!({"detail": "Unauthorized"})),
            404 => ErrorResponse::json(404, &json!({"detail": "Not Found"})),
            422 => unprocessable(vec![detail(
                "value_error",
                vec![json!("body")],
                "Value error, request rejected",
                &json!({}),
            )]),
            429 => ErrorResponse::json(
                429,
                &flat_error("Rate limit exceeded", "rate_limited", Some("1300"), 429),
            )
            .with_header(
                "x-ratelimit-limit-req-minute",
                RATE_LIMIT_REQ_MINUTE.to_string(),
            )
            .with_header("x-ratelimit-remaining-req-minute", "0")
            .with_header(
                "x-ratelimit-limit-tokens-minute",
                RATE_LIMIT_TOKENS_MINUTE.to_string(),
            )
            .with_header("x-ratelimit-remaining-tokens-minute", "0"),
            500 => ErrorResponse::json(
                500,
                &flat_error(
                    "Internal server error",
                    "internal_server_error",
                    Some("1000"),
                    500,
                ),
            ),
            s if s >= 500 => ErrorResponse::json(
                s,
                &flat_error(
                    "Service unavailable, please retry later",
                    "service_unavailable",
                    Some("1000"),
                    s,
                ),
            ),
            s => ErrorResponse::json(
                s,
                &flat_error("Request rejected", "invalid_request_error", None, s),
            ),
        };
        let resp = with_ids(resp, meta);
        match retry_after {
            Some(secs) => resp.with_header("retry-after", secs.to_string()),
            None => resp,
        }
    }

    fn not_found(&self, method: &Method, path: &str, meta: &Meta) -> ErrorResponse {
        let known = ["/v1/chat/completions", "/v1/models"].contains(&path.trim_end_matches('/'));
        let _ = method;
        let resp = if known {
            // The path exists, so the method was wrong.
            ErrorResponse::json(405, &json!({"detail": "Method Not Allowed"}))
        } else {
            ErrorResponse::json(404, &json!({"detail": "Not Found"}))
        };
        with_ids(resp, meta)
    }

    fn models(&self, id: Option<&str>) -> Result<Bytes, ErrorResponse> {
        const MODELS: &[(&str, &str, u64)] = &[
            ("mistral-large-latest", "mistral-large-2512", 262_144),
            ("mistral-large-2411", "mistral-large-2411", 131_072),
            ("mistral-small-latest", "mistral-small-2506", 131_072),
            ("codestral-latest", "codestral-2508", 256_000),
            ("magistral-medium-latest", "magistral-medium-2509", 131_072),
        ];
        let card = |(alias, name, ctx): &(&str, &str, u64)| {
            json!({"id": alias, "object": "model", "created": 1_767_225_600u64, "owned_by": "mistralai",
                   "capabilities": {"completion_chat": true, "function_calling": true, "completion_fim": false,
                                    "fine_tuning": false, "vision": false, "classification": false},
                   "name": name, "description": "", "max_context_length": ctx, "aliases": [name],
                   "deprecation": null, "default_model_temperature": 0.3, "type": "base"})
        };
        match id {
            None => {
                let data: Vec<Value> = MODELS.iter().map(card).collect();
                Ok(Bytes::from(
                    json!({"object": "list", "data": data}).to_string(),
                ))
            }
            Some(id) => MODELS
                .iter()
                .find(|m| m.0 == id || m.1 == id)
                .map(|m| Bytes::from(card(m).to_string()))
                .ok_or_else(|| ErrorResponse::json(404, &json!({"detail": "Not Found"}))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_options_are_extra_forbidden_with_the_recorded_loc() {
        let body = json!({"model": "mistral-large-latest", "stream": true, "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "x"}]});
        let d = schema_details(&body);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["type"], "extra_forbidden");
        assert_eq!(
            d[0]["loc"],
            json!(["body", "stream_options", "include_usage"])
        );
    }

    #[test]
    fn message_extras_are_located_by_role() {
        let body =
            json!({"model": "m", "messages": [{"role": "user", "content": "x", "name": "bob"}]});
        assert_eq!(
            schema_details(&body)[0]["loc"],
            json!(["body", "messages", 0, "user", "name"])
        );
    }

    #[test]
    fn tool_call_ids_must_be_nine_alphanumerics() {
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "call_0fypS1hVX", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_0fypS1hVX", "content": "r"}]});
        let e = semantic_error(&body).unwrap();
        assert_eq!(e.status, 400);
        let v: Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(
            v["message"],
            "Tool call id was call_0fypS1hVX but must be a-z, A-Z, 0-9, with a length of 9."
        );
        assert!(valid_tool_call_id("KikbB849t"));
    }

    #[test]
    fn last_message_must_be_user_or_tool() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]});
        assert!(semantic_error(&body).is_some());
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "prefix": true}]});
        assert!(semantic_error(&body).is_none());
    }
}
