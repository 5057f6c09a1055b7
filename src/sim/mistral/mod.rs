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

mod validate;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::{json, Value};

use super::openai_shape::{bearer, last_user_text};
use super::reply::{Exchange, Reply};
use super::{header_map, random_alnum, ErrorResponse, Meta, Route, SimProvider, StreamFrames};
use crate::api::ChatRequest;
use crate::providers::ProviderKind;
use validate::{
    bad_request, detail, flat_error, normalize_arguments, schema_details, semantic_error,
    unprocessable,
};

/// The simulated Mistral API.
pub(crate) struct MistralSim;

const RATE_LIMIT_REQ_MINUTE: u64 = 720;
const RATE_LIMIT_TOKENS_MINUTE: u64 = 5_000_000;

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
