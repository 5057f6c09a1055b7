//! The simulated Anthropic Messages API (`POST /v1/messages`, `POST
//! /v1/messages/count_tokens`, `GET /v1/models`).
//!
//! Requests need a key in `x-api-key` or, as the official SDK 2.x sends it, in
//! `Authorization: Bearer` (a missing or wrong key is a `401 authentication_error`), and an
//! `anthropic-version` header (`400 invalid_request_error` when missing or unknown), and are
//! validated as the real API does (see `validate.rs`). Answers carry a `request-id` header
//! (`req_…`) and `anthropic-ratelimit-*` headers; errors are
//! `{"type":"error","error":{"type","message"},"request_id"}` with the error type of the
//! status (`overloaded_error` / `Overloaded` for 529); a stream fails midway with an
//! `event: error` frame. Input tokens are counted with `cl100k_base`, an approximation of
//! Claude's tokenizer (see `exchange.rs`). Shapes of bodies and streams: `render.rs`.

mod blocks;
mod exchange;
mod models;
mod render;
mod validate;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::{json, Value};

use super::openai_shape::bearer;
use super::reply::{chosen_tools, Exchange, Reply, ToolMode};
use super::{header_map, ErrorResponse, Meta, Route, SimProvider, StreamFrames};
use crate::providers::ProviderKind;
use validate::{validate, Rejection, CONTEXT_WINDOW};

/// The simulated Anthropic API.
pub(crate) struct AnthropicSim;

/// `anthropic-version` values the API is known to accept (the official Python SDK 2.12.0
/// sends the last one).
const VERSIONS: &[&str] = &["2023-01-01", "2023-06-01", "2026-10-21"];

/// Whether the API accepts an `anthropic-version`: a known version, or a well-formed date
/// after the newest known one (a version released after this table). Other dates are
/// rejected, as the API rejects dates that are not versions.
fn valid_version(v: &str) -> bool {
    if VERSIONS.contains(&v) {
        return true;
    }
    let b = v.as_bytes();
    let well_formed = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    well_formed && VERSIONS.last().is_some_and(|newest| v > *newest)
}

const REQUESTS_PER_MINUTE: u64 = 4_000;
const INPUT_TOKENS_PER_MINUTE: u64 = 2_000_000;
const OUTPUT_TOKENS_PER_MINUTE: u64 = 400_000;

/// `req_011C…`: Anthropic's request id, derived from the per-request hex id so that the
/// header and the error body agree.
fn request_id(meta: &Meta) -> String {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut n = u128::from_str_radix(&meta.request_id, 16).unwrap_or(0);
    let mut tail = String::with_capacity(20);
    for _ in 0..20 {
        tail.push(char::from(ALPHABET[(n % ALPHABET.len() as u128) as usize]));
        n /= ALPHABET.len() as u128;
    }
    format!("req_011C{tail}")
}

/// An Anthropic error response with its `request-id` header.
fn error(status: u16, kind: &str, message: &str, meta: &Meta) -> ErrorResponse {
    let rid = request_id(meta);
    ErrorResponse::json(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": rid}),
    )
    .with_header("request-id", rid)
}

fn rejected(r: Rejection, meta: &Meta) -> ErrorResponse {
    error(r.status, r.kind, &r.message, meta)
}

/// The error type Anthropic uses for a status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// An RFC 3339 UTC time for Unix seconds.
fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// The `anthropic-ratelimit-*` headers, with what this request used taken off.
fn rate_limit_headers(
    meta: &Meta,
    requests_left: u64,
    input: u64,
    output: u64,
) -> Vec<(&'static str, String)> {
    let reset = rfc3339(meta.created + 1);
    let input_left = INPUT_TOKENS_PER_MINUTE.saturating_sub(input);
    let output_left = OUTPUT_TOKENS_PER_MINUTE.saturating_sub(output);
    vec![
        (
            "anthropic-ratelimit-requests-limit",
            REQUESTS_PER_MINUTE.to_string(),
        ),
        (
            "anthropic-ratelimit-requests-remaining",
            requests_left.to_string(),
        ),
        ("anthropic-ratelimit-requests-reset", reset.clone()),
        (
            "anthropic-ratelimit-input-tokens-limit",
            INPUT_TOKENS_PER_MINUTE.to_string(),
        ),
        (
            "anthropic-ratelimit-input-tokens-remaining",
            input_left.to_string(),
        ),
        ("anthropic-ratelimit-input-tokens-reset", reset.clone()),
        (
            "anthropic-ratelimit-output-tokens-limit",
            OUTPUT_TOKENS_PER_MINUTE.to_string(),
        ),
        (
            "anthropic-ratelimit-output-tokens-remaining",
            output_left.to_string(),
        ),
        ("anthropic-ratelimit-output-tokens-reset", reset.clone()),
        (
            "anthropic-ratelimit-tokens-limit",
            (INPUT_TOKENS_PER_MINUTE + OUTPUT_TOKENS_PER_MINUTE).to_string(),
        ),
        (
            "anthropic-ratelimit-tokens-remaining",
            (input_left + output_left).to_string(),
        ),
        ("anthropic-ratelimit-tokens-reset", reset),
    ]
}

/// A listed JSON body (`200`) with the request id.
fn ok_json(body: &Value, meta: &Meta) -> ErrorResponse {
    ErrorResponse::json(200, body).with_header("request-id", request_id(meta))
}

/// Parses and validates a body; `count_only` is the token-counting endpoint, which takes
/// no `max_tokens` or `stream`.
fn checked_body(
    json: Option<Value>,
    raw: &[u8],
    count_only: bool,
    meta: &Meta,
) -> Result<Value, ErrorResponse> {
    let mut body = match json {
        Some(v) => v,
        None => {
            let why = match serde_json::from_slice::<Value>(raw) {
                Err(e) => {
                    let offset = raw
                        .split(|b| *b == b'\n')
                        .take(e.line().saturating_sub(1))
                        .map(|l| l.len() + 1)
                        .sum::<usize>()
                        + e.column().saturating_sub(1);
                    format!(
                        "Expecting value: line {} column {} (char {offset})",
                        e.line(),
                        e.column()
                    )
                }
                Ok(_) => "Expecting value: line 1 column 1 (char 0)".to_string(),
            };
            return Err(error(
                400,
                "invalid_request_error",
                &format!("The request body is not valid JSON: {why}"),
                meta,
            ));
        }
    };
    if count_only {
        if let Some(obj) = body.as_object_mut() {
            for key in ["max_tokens", "stream"] {
                if obj.contains_key(key) {
                    return Err(error(
                        400,
                        "invalid_request_error",
                        &format!("{key}: Extra inputs are not permitted"),
                        meta,
                    ));
                }
            }
            obj.insert("max_tokens".into(), json!(1));
        }
    }
    validate(&body).map_err(|r| rejected(r, meta))?;
    Ok(body)
}

fn prompt_too_long(tokens: u64, meta: &Meta) -> Option<ErrorResponse> {
    (tokens > CONTEXT_WINDOW).then(|| {
        error(
            400,
            "invalid_request_error",
            &format!("prompt is too long: {tokens} tokens > {CONTEXT_WINDOW} maximum"),
            meta,
        )
    })
}

impl SimProvider for AnthropicSim {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    fn route(&self, method: &Method, path: &str) -> Route {
        match (method, path.trim_end_matches('/')) {
            (&Method::POST, "/v1/messages") => Route::Chat,
            (&Method::POST, "/v1/messages/count_tokens") => Route::Auxiliary("count_tokens"),
            (&Method::GET, "/v1/models") => Route::Models(None),
            (&Method::GET, p) => match p.strip_prefix("/v1/models/") {
                Some(id) if !id.is_empty() && !id.contains('/') => {
                    Route::Models(Some(id.to_string()))
                }
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
        // `x-api-key`, or `Authorization: Bearer`, which the official SDK uses since 2.x.
        let key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .or_else(|| bearer(headers));
        match (key, expected) {
            (None, _) => {
                return Err(error(
                    401,
                    "authentication_error",
                    "x-api-key header is required",
                    meta,
                ))
            }
            (Some(k), Some(want)) if k != want => {
                return Err(error(
                    401,
                    "authentication_error",
                    "invalid x-api-key",
                    meta,
                ))
            }
            _ => {}
        }
        match headers
            .get("anthropic-version")
            .map(|v| v.to_str().unwrap_or(""))
        {
            None => Err(error(
                400,
                "invalid_request_error",
                "anthropic-version: header is required",
                meta,
            )),
            Some(v) if !valid_version(v) => Err(error(
                400,
                "invalid_request_error",
                &format!("anthropic-version: \"{v}\" is not a valid version"),
                meta,
            )),
            Some(_) => Ok(()),
        }
    }

    fn last_user_text(&self, body: &Value) -> Option<String> {
        exchange::last_user_text(body)
    }

    fn parse(
        &self,
        raw: &[u8],
        json: Option<Value>,
        meta: &Meta,
    ) -> Result<Exchange, ErrorResponse> {
        let body = checked_body(json, raw, false, meta)?;
        let mut ex = exchange::exchange(body);
        if let Some(e) = prompt_too_long(ex.prompt_tokens, meta) {
            return Err(e);
        }
        // Under `auto`, the text before the calls takes part of the output budget.
        if ex.tool_choice == ToolMode::Auto {
            let names: Vec<&str> = chosen_tools(&ex).iter().map(|t| t.name.as_str()).collect();
            if !names.is_empty() {
                let cost = exchange::ENCODING.count(&render::preamble(&names));
                let cost = u32::try_from(cost).unwrap_or(u32::MAX);
                ex.max_tokens = ex.max_tokens.map(|m| m.saturating_sub(cost).max(1));
            }
        }
        Ok(ex)
    }

    fn success_headers(&self, ex: &Exchange, meta: &Meta) -> HeaderMap {
        let (input, _) = render::input_split(ex, meta);
        let mut values = vec![
            ("request-id", request_id(meta)),
            (
                "anthropic-organization-id",
                "5e1f0c8a-93b2-4d7e-a6c1-0f2d9b8e7a11".to_string(),
            ),
        ];
        values.extend(rate_limit_headers(
            meta,
            REQUESTS_PER_MINUTE - 1,
            input,
            u64::from(ex.max_tokens.unwrap_or(0)),
        ));
        header_map(&values)
    }

    fn render_json(&self, ex: &Exchange, reply: &Reply, meta: &Meta) -> Bytes {
        let answer = render::answer(ex, reply);
        Bytes::from(render::message_json(ex, &answer, meta).to_string())
    }

    fn render_events(&self, ex: &Exchange, reply: &Reply, meta: &Meta) -> StreamFrames {
        let answer = render::answer(ex, reply);
        StreamFrames {
            events: render::stream_events(ex, &answer, meta),
            terminal: vec![render::message_stop()],
        }
    }

    fn stream_error_event(&self, _meta: &Meta) -> Bytes {
        render::event(
            "error",
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        )
    }

    fn error_response(
        &self,
        status: u16,
        retry_after: Option<u64>,
        model: &str,
        meta: &Meta,
    ) -> ErrorResponse {
        let model = if model.is_empty() {
            "claude-sonnet-4-5"
        } else {
            model
        };
        let kind = error_type(status);
        let message = match status {
            401 => "invalid x-api-key".to_string(),
            402 => "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.".to_string(),
            403 => "Your API key does not have permission to use the specified resource.".to_string(),
            404 => format!("model: {model}"),
            413 => "Request exceeds the maximum allowed number of bytes.".to_string(),
            429 => format!("This request would exceed the rate limit for your organization of {REQUESTS_PER_MINUTE} requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase."),
            504 => "Request timed out".to_string(),
            529 => "Overloaded".to_string(),
            s if s >= 500 => "Internal server error".to_string(),
            _ => "Your request was rejected (simulated).".to_string(),
        };
        let mut resp = error(status, kind, &message, meta);
        if status == 429 {
            for (name, value) in rate_limit_headers(meta, 0, 0, 0) {
                resp = resp.with_header(name, value);
            }
            // The real API always says when to come back.
            resp = resp.with_header("retry-after", retry_after.unwrap_or(1).to_string());
        } else if let Some(secs) = retry_after {
            resp = resp.with_header("retry-after", secs.to_string());
        }
        resp
    }

    fn not_found(&self, _method: &Method, _path: &str, meta: &Meta) -> ErrorResponse {
        error(404, "not_found_error", "Not Found", meta)
    }

    fn models(&self, id: Option<&str>) -> Result<Bytes, ErrorResponse> {
        match id {
            None => Ok(Bytes::from(models::list().to_string())),
            Some(id) => match models::find(id) {
                Some(m) => Ok(Bytes::from(models::card(m).to_string())),
                None => {
                    let meta = Meta {
                        request_id: super::random_hex(32),
                        created: 0,
                        cached_tokens: 0,
                        path: String::new(),
                    };
                    Err(error(
                        404,
                        "not_found_error",
                        &format!("model: {id}"),
                        &meta,
                    ))
                }
            },
        }
    }

    fn auxiliary(&self, name: &str, raw: &[u8], json: Option<Value>, meta: &Meta) -> ErrorResponse {
        if name != "count_tokens" {
            return self.not_found(&Method::POST, name, meta);
        }
        let body = match checked_body(json, raw, true, meta) {
            Ok(body) => body,
            Err(e) => return e,
        };
        let tokens = exchange::count_input(&body);
        if let Some(e) = prompt_too_long(tokens, meta) {
            return e;
        }
        ok_json(&json!({"input_tokens": tokens}), meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn request_ids_look_like_anthropics_and_are_stable_per_request() {
        let meta = Meta {
            request_id: "0123456789abcdef0123456789abcdef".into(),
            created: 0,
            cached_tokens: 0,
            path: String::new(),
        };
        let id = request_id(&meta);
        assert_eq!(id, request_id(&meta));
        assert!(id.starts_with("req_011C"));
        assert_eq!(id.len(), "req_011CSSm1Hk3tCb5cK7SNcQpT".len());
    }

    #[test]
    fn known_and_newer_versions_are_accepted() {
        assert!(valid_version("2023-06-01"));
        assert!(valid_version("2026-10-21"));
        assert!(valid_version("2027-03-01"));
        assert!(!valid_version("2024-10-22"));
        assert!(!valid_version("2027-3-1"));
        assert!(!valid_version("latest"));
    }

    #[test]
    fn statuses_map_to_anthropic_error_types() {
        assert_eq!(error_type(529), "overloaded_error");
        assert_eq!(error_type(413), "request_too_large");
        assert_eq!(error_type(503), "api_error");
        assert_eq!(error_type(422), "invalid_request_error");
    }
}
