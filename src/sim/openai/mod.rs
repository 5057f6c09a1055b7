//! The simulated OpenAI Chat Completions API (`POST /v1/chat/completions`, `GET /v1/models`).
//!
//! Shapes follow the recorded traffic: `chat.completion` bodies with `service_tier`,
//! `system_fingerprint`, `refusal` and `annotations`; streams of `data: {chunk}` where the
//! first chunk carries the role (and the first tool call's id, type and name), content
//! arrives a word or two per chunk, a finish chunk has an empty delta, and — only with
//! `stream_options.include_usage` — every chunk has `"usage": null` and a final
//! `choices: []` chunk carries the usage; chunks carry an `obfuscation` padding field unless
//! `stream_options.include_obfuscation` is false; `data: [DONE]` ends the stream. Aliases
//! resolve to dated snapshots in `model` (`gpt-4o` → `gpt-4o-2024-08-06`).

mod validate;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Method};
use serde_json::{json, Map, Value};

use super::openai_shape::{bearer, last_user_text, redact_key};
use super::reply::{ChoiceReply, Exchange, Reply};
use super::text::stable_hash;
use super::{header_map, random_alnum, ErrorResponse, Meta, Route, SimProvider, StreamFrames};
use crate::api::ChatRequest;
use crate::providers::ProviderKind;
use validate::{validate, ApiError, UNPARSABLE_BODY};

/// The simulated OpenAI API.
pub(crate) struct OpenAiSim;

const RATE_LIMIT_REQUESTS: u64 = 10_000;
const RATE_LIMIT_TOKENS: u64 = 30_000_000;

/// Models listed by `GET /v1/models`: id, created, owner.
const MODELS: &[(&str, u64, &str)] = &[
    ("gpt-4o", 1_715_367_049, "system"),
    ("gpt-4o-2024-08-06", 1_722_814_719, "system"),
    ("gpt-4o-mini", 1_721_172_741, "system"),
    ("gpt-4o-mini-2024-07-18", 1_721_172_717, "system"),
    ("gpt-4-turbo", 1_712_361_441, "system"),
    ("gpt-4-turbo-2024-04-09", 1_712_601_677, "system"),
    ("gpt-4.1", 1_744_316_542, "system"),
    ("gpt-4.1-mini", 1_744_318_173, "system"),
    ("gpt-4", 1_687_882_411, "openai"),
    ("gpt-3.5-turbo", 1_677_610_602, "openai"),
];

/// The dated snapshot an alias resolves to, as reported in responses.
fn resolved_model(model: &str) -> &str {
    match model {
        "gpt-4o" => "gpt-4o-2024-08-06",
        "gpt-4o-mini" => "gpt-4o-mini-2024-07-18",
        "gpt-4-turbo" => "gpt-4-turbo-2024-04-09",
        "gpt-4-turbo-preview" => "gpt-4-0125-preview",
        "gpt-4" => "gpt-4-0613",
        "gpt-4.1" => "gpt-4.1-2025-04-14",
        "gpt-4.1-mini" => "gpt-4.1-mini-2025-04-14",
        "gpt-4.1-nano" => "gpt-4.1-nano-2025-04-14",
        "gpt-3.5-turbo" => "gpt-3.5-turbo-0125",
        other => other,
    }
}

/// A stable `fp_…` per model.
fn fingerprint(model: &str) -> String {
    format!("fp_{:010x}", stable_hash(model.as_bytes()) & 0xff_ffff_ffff)
}

fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

fn request_id(meta: &Meta) -> String {
    format!("req_{}", meta.request_id)
}

fn invalid(meta: &Meta, e: ApiError) -> ErrorResponse {
    ErrorResponse::json(
        400,
        &error_body(
            &e.message,
            "invalid_request_error",
            e.param.as_deref(),
            e.code,
        ),
    )
    .with_header("x-request-id", request_id(meta))
}

fn usage_json(prompt: u64, completion: u64, cached: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

fn tool_call_id() -> String {
    format!("call_{}", random_alnum(24))
}

/// Writes chunks of one stream: shared fields, `usage: null` and `obfuscation` as asked.
struct ChunkWriter<'a> {
    id: String,
    created: u64,
    model: &'a str,
    fingerprint: String,
    include_usage: bool,
    obfuscation: bool,
    events: Vec<Bytes>,
}

impl ChunkWriter<'_> {
    fn base(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!("chat.completion.chunk"));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        m.insert("service_tier".into(), json!("default"));
        m.insert("system_fingerprint".into(), json!(self.fingerprint));
        m
    }

    fn push(&mut self, mut chunk: Map<String, Value>, usage: Option<Value>) {
        if self.include_usage {
            chunk.insert("usage".into(), usage.unwrap_or(Value::Null));
        }
        if self.obfuscation {
            chunk.insert(
                "obfuscation".into(),
                json!(random_alnum(fastrand::usize(1..=16))),
            );
        }
        let mut out = BytesMut::new();
        out.put_slice(b"data: ");
        out.put_slice(Value::Object(chunk).to_string().as_bytes());
        out.put_slice(b"\n\n");
        self.events.push(out.freeze());
    }

    fn delta(&mut self, index: usize, delta: Value, finish: Option<&str>) {
        let mut chunk = self.base();
        chunk.insert(
            "choices".into(),
            json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}]),
        );
        self.push(chunk, None);
    }

    fn choice(&mut self, index: usize, c: &ChoiceReply) {
        if c.tool_calls.is_empty() {
            self.delta(
                index,
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            );
            for piece in &c.pieces {
                self.delta(index, json!({"content": piece}), None);
            }
        } else {
            for (k, call) in c.tool_calls.iter().enumerate() {
                let head = json!({"index": k, "id": tool_call_id(), "type": "function",
                    "function": {"name": call.name, "arguments": ""}});
                if k == 0 {
                    let first = json!({"role": "assistant", "content": null, "tool_calls": [head], "refusal": null});
                    self.delta(index, first, None);
                } else {
                    self.delta(index, json!({"tool_calls": [head]}), None);
                }
                for fragment in &call.fragments {
                    let d =
                        json!({"tool_calls": [{"index": k, "function": {"arguments": fragment}}]});
                    self.delta(index, d, None);
                }
            }
        }
        self.delta(index, json!({}), Some(c.finish.as_str()));
    }
}

impl SimProvider for OpenAiSim {
    fn kind(&self) -> ProviderKind {
        ProviderKind::OpenAi
    }

    fn route(&self, method: &Method, path: &str) -> Route {
        let path = path.trim_end_matches('/');
        match (method, path) {
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
        let rid = request_id(meta);
        match (bearer(headers), expected) {
            (None, _) => Err(ErrorResponse::json(
                401,
                &error_body(
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    None,
                    None,
                ),
            )
            .with_header("x-request-id", rid)),
            (Some(key), Some(want)) if key != want => Err(ErrorResponse::json(
                401,
                &error_body(
                    &format!(
                        "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                        redact_key(key)
                    ),
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                ),
            )
            .with_header("x-request-id", rid)),
            _ => Ok(()),
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
        let Some(body) = json else {
            return Err(invalid(
                meta,
                ApiError {
                    message: UNPARSABLE_BODY.into(),
                    param: None,
                    code: None,
                },
            ));
        };
        validate(&body).map_err(|e| invalid(meta, e))?;
        let req: ChatRequest = serde_json::from_value(body.clone()).map_err(|e| {
            invalid(
                meta,
                ApiError {
                    message: format!("Invalid request: {e}"),
                    param: None,
                    code: None,
                },
            )
        })?;
        Ok(Exchange::from_chat(&req, body))
    }

    fn success_headers(&self, ex: &Exchange, meta: &Meta) -> HeaderMap {
        let planned = ex.prompt_tokens + u64::from(ex.max_tokens.unwrap_or(4096));
        let values = [
            ("x-request-id", request_id(meta)),
            ("openai-organization", "user-sim".to_string()),
            ("openai-processing-ms", (40 + ex.seed % 400).to_string()),
            ("openai-version", "2020-10-01".to_string()),
            (
                "x-ratelimit-limit-requests",
                RATE_LIMIT_REQUESTS.to_string(),
            ),
            ("x-ratelimit-limit-tokens", RATE_LIMIT_TOKENS.to_string()),
            (
                "x-ratelimit-remaining-requests",
                (RATE_LIMIT_REQUESTS - 1).to_string(),
            ),
            (
                "x-ratelimit-remaining-tokens",
                RATE_LIMIT_TOKENS.saturating_sub(planned).to_string(),
            ),
            ("x-ratelimit-reset-requests", "6ms".to_string()),
            ("x-ratelimit-reset-tokens", "0s".to_string()),
        ];
        header_map(&values)
    }

    fn render_json(&self, ex: &Exchange, reply: &Reply, meta: &Meta) -> Bytes {
        let choices: Vec<Value> = reply
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let message = if c.tool_calls.is_empty() {
                    json!({"role": "assistant", "content": c.text, "refusal": null, "annotations": []})
                } else {
                    let calls: Vec<Value> = c
                        .tool_calls
                        .iter()
                        .map(|t| json!({"id": tool_call_id(), "type": "function",
                            "function": {"name": t.name, "arguments": t.arguments}}))
                        .collect();
                    json!({"role": "assistant", "content": null, "tool_calls": calls, "refusal": null, "annotations": []})
                };
                json!({"index": i, "message": message, "logprobs": null, "finish_reason": c.finish.as_str()})
            })
            .collect();
        let model = resolved_model(&ex.model);
        let body = json!({
            "id": format!("chatcmpl-{}", random_alnum(29)),
            "object": "chat.completion",
            "created": meta.created,
            "model": model,
            "choices": choices,
            "usage": usage_json(ex.prompt_tokens, reply.completion_tokens(), meta.cached_tokens),
            "service_tier": "default",
            "system_fingerprint": fingerprint(model),
        });
        Bytes::from(body.to_string())
    }

    fn render_events(&self, ex: &Exchange, reply: &Reply, meta: &Meta) -> StreamFrames {
        let model = resolved_model(&ex.model);
        let obfuscation = ex
            .body
            .pointer("/stream_options/include_obfuscation")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let mut w = ChunkWriter {
            id: format!("chatcmpl-{}", random_alnum(29)),
            created: meta.created,
            model,
            fingerprint: fingerprint(model),
            include_usage: ex.include_usage,
            obfuscation,
            events: Vec::new(),
        };
        for (i, c) in reply.choices.iter().enumerate() {
            w.choice(i, c);
        }
        if ex.include_usage {
            let mut chunk = w.base();
            chunk.insert("choices".into(), json!([]));
            let usage = usage_json(
                ex.prompt_tokens,
                reply.completion_tokens(),
                meta.cached_tokens,
            );
            w.push(chunk, Some(usage));
        }
        StreamFrames {
            events: w.events,
            terminal: vec![Bytes::from_static(b"data: [DONE]\n\n")],
        }
    }

    fn stream_error_event(&self, _meta: &Meta) -> Bytes {
        let e = error_body(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        );
        Bytes::from(format!("data: {e}\n\n"))
    }

    fn error_response(
        &self,
        status: u16,
        retry_after: Option<u64>,
        model: &str,
        meta: &Meta,
    ) -> ErrorResponse {
        let model = if model.is_empty() { "gpt-4o" } else { model };
        let resp = match status {
            401 => ErrorResponse::json(status, &error_body(
                "Incorrect API key provided: sk-sim***fail. You can find your API key at https://platform.openai.com/account/api-keys.",
                "invalid_request_error", None, Some("invalid_api_key"))),
            403 => ErrorResponse::json(status, &error_body(
                "Country, region, or territory not supported", "request_forbidden", None,
                Some("unsupported_country_region_territory"))),
            404 => ErrorResponse::json(status, &error_body(
                &format!("The model `{model}` does not exist or you do not have access to it."),
                "invalid_request_error", None, Some("model_not_found"))),
            429 => {
                let wait = retry_after.map(|s| format!("{s}s")).unwrap_or_else(|| "120ms".into());
                ErrorResponse::json(status, &error_body(
                    &format!("Rate limit reached for {model} in organization org-sim on requests per min (RPM): Limit {RATE_LIMIT_REQUESTS}, Used {RATE_LIMIT_REQUESTS}, Requested 1. Please try again in {wait}. Visit https://platform.openai.com/account/rate-limits to learn more."),
                    "requests", None, Some("rate_limit_exceeded")))
                .with_header("x-ratelimit-limit-requests", RATE_LIMIT_REQUESTS.to_string())
                .with_header("x-ratelimit-limit-tokens", RATE_LIMIT_TOKENS.to_string())
                .with_header("x-ratelimit-remaining-requests", "0")
                .with_header("x-ratelimit-remaining-tokens", RATE_LIMIT_TOKENS.to_string())
                .with_header("x-ratelimit-reset-requests", wait.clone())
                .with_header("x-ratelimit-reset-tokens", "0s")
            }
            500 => ErrorResponse::json(status, &error_body(
                "The server had an error while processing your request. Sorry about that!",
                "server_error", None, None)),
            502 | 504 => cloudflare_page(status),
            503 => ErrorResponse::json(status, &error_body(
                "The server is overloaded or not ready yet.", "server_error", None, None)),
            s if s >= 500 => ErrorResponse::json(s, &error_body(
                "The server had an error while processing your request. Sorry about that!",
                "server_error", None, None)),
            s => ErrorResponse::json(s, &error_body(
                "Your request was rejected (simulated).", "invalid_request_error", None, None)),
        };
        let resp = resp.with_header("x-request-id", request_id(meta));
        match retry_after {
            Some(secs) => resp.with_header("retry-after", secs.to_string()),
            None => resp,
        }
    }

    fn not_found(&self, method: &Method, path: &str, meta: &Meta) -> ErrorResponse {
        ErrorResponse::json(
            404,
            &error_body(
                &format!("Invalid URL ({method} {path})"),
                "invalid_request_error",
                None,
                None,
            ),
        )
        .with_header("x-request-id", request_id(meta))
    }

    fn models(&self, id: Option<&str>) -> Result<Bytes, ErrorResponse> {
        let model = |(id, created, owner): &(&str, u64, &str)| json!({"id": id, "object": "model", "created": created, "owned_by": owner});
        match id {
            None => {
                let data: Vec<Value> = MODELS.iter().map(model).collect();
                Ok(Bytes::from(
                    json!({"object": "list", "data": data}).to_string(),
                ))
            }
            Some(id) => match MODELS.iter().find(|m| m.0 == id) {
                Some(m) => Ok(Bytes::from(model(m).to_string())),
                None => Err(ErrorResponse::json(
                    404,
                    &error_body(
                        &format!("The model '{id}' does not exist"),
                        "invalid_request_error",
                        Some("model"),
                        Some("model_not_found"),
                    ),
                )),
            },
        }
    }
}

/// The HTML page Cloudflare serves in front of the API for gateway errors.
fn cloudflare_page(status: u16) -> ErrorResponse {
    let title = if status == 502 {
        "502 Bad Gateway"
    } else {
        "504 Gateway Time-out"
    };
    let html = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
    );
    ErrorResponse::new(status, "text/html", html)
}
