//! The simulated Snowflake Cortex REST API: the native COMPLETE endpoint
//! (`POST /api/v2/cortex/inference:complete`), the OpenAI-compatible endpoint
//! (`POST /api/v2/cortex/v1/chat/completions`) and the model list
//! (`GET /api/v2/cortex/models` → `{"models":[…]}`).
//!
//! Both chat endpoints authenticate like Snowflake (see [`auth`]) and fail with Snowflake's
//! error body `{"message","code","error_code","request_id"}` plus an `X-Snowflake-Request-ID`
//! header (`common.yaml` ErrorResponse in snowflakedb/snowflake-rest-api-specs). Request ids
//! are UUIDs; a 401 message ends with the request id in brackets, as real ones do
//! (`JWT token is invalid. [7fb87e37-…]`). Codes 390142 (invalid payload) and 390144 (invalid
//! JWT) are the ones seen in real traffic; the other codes are stand-ins in Snowflake's
//! 390xxx range.
//!
//! An unknown model is a 400 `unknown model "<name>"`, the text the Cortex service returns
//! for one (Snowflake-Labs/sfquickstarts issues 2028 and 2030).
//!
//! A mid-stream failure (`stream_error_after`) is one data-only event holding the Snowflake
//! error fields plus an `error` object: snowflake-ml-python raises `MidStreamException` for
//! an event whose `error` is set, and OpenAI clients raise on an `error` object with a
//! `message`; the stream then ends.
//!
//! The endpoint-specific shapes live in [`native`] and [`compat`]. When a request asks for
//! JSON output (`response_format` with a schema), the text answer is a JSON document that
//! satisfies the schema.

mod auth;
mod compat;
mod native;
mod validate;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::{json, Value};

use super::reply::{ChoiceReply, Exchange, Finish, Reply};
use super::{
    header_map, random_hex, schema, text, ErrorResponse, Meta, Route, SimProvider, StreamFrames,
};
use crate::providers::ProviderKind;

/// The simulated Cortex API.
pub(crate) struct CortexSim;

const COMPLETE_PATH: &str = "/api/v2/cortex/inference:complete";
const CHAT_PATH: &str = "/api/v2/cortex/v1/chat/completions";
const MODELS_PATH: &str = "/api/v2/cortex/models";

/// Longest stream piece of a JSON answer, in characters.
const JSON_PIECE_CHARS: usize = 8;

/// Models the simulated account can use (providers.md §4.5 and the newer models the
/// regional-availability page lists).
const MODELS: &[&str] = &[
    "claude-4-opus",
    "claude-4-sonnet",
    "claude-3-7-sonnet",
    "claude-3-5-sonnet",
    "claude-sonnet-4-5",
    "claude-sonnet-4-6",
    "claude-opus-4-7",
    "deepseek-r1",
    "llama3-8b",
    "llama3-70b",
    "llama3.1-8b",
    "llama3.1-70b",
    "llama3.1-405b",
    "llama3.3-70b",
    "llama4-maverick",
    "llama4-scout",
    "mistral-large",
    "mistral-large2",
    "mistral-7b",
    "mixtral-8x7b",
    "openai-gpt-4.1",
    "openai-o4-mini",
    "openai-gpt-5",
    "snowflake-arctic",
    "snowflake-llama-3.1-405b",
    "snowflake-llama-3.3-70b",
];

/// Which chat endpoint a request addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Complete,
    ChatCompletions,
}

fn endpoint(meta: &Meta) -> Endpoint {
    if meta.path.trim_end_matches('/') == CHAT_PATH {
        Endpoint::ChatCompletions
    } else {
        Endpoint::Complete
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` from 32 hex digits.
fn uuid(hex: &str) -> String {
    if hex.len() < 32 || !hex.is_ascii() {
        return hex.to_string();
    }
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The request id of a response, as Snowflake formats it.
fn request_id(meta: &Meta) -> String {
    uuid(&meta.request_id)
}

/// A fresh UUID (response ids of the native endpoint).
fn new_uuid() -> String {
    uuid(&random_hex(32))
}

/// Snowflake's error response.
fn snowflake_error(status: u16, message: &str, code: &str, meta: &Meta) -> ErrorResponse {
    let rid = request_id(meta);
    ErrorResponse::json(
        status,
        &json!({"message": message, "code": code, "error_code": code, "request_id": rid}),
    )
    .with_header("x-snowflake-request-id", rid)
}

/// A 400 for a rejected request body.
fn bad_request(message: &str, meta: &Meta) -> ErrorResponse {
    snowflake_error(400, message, "390142", meta)
}

/// Checks the model against the account's list: `Err` is the 400 Cortex answers.
fn known_model(model: &str, meta: &Meta) -> Result<(), ErrorResponse> {
    if MODELS.contains(&model) {
        Ok(())
    } else {
        Err(bad_request(&format!("unknown model \"{model}\""), meta))
    }
}

/// Text of a message in either shape: `content` (a string, or OpenAI content parts) or the
/// `text` items of a native `content_list`.
fn message_text(m: &Value) -> String {
    match m.get("content") {
        Some(Value::String(s)) => return s.clone(),
        Some(Value::Array(parts)) => {
            return parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => {}
    }
    validate::items(m)
        .iter()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|i| i.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The JSON schema the answer must satisfy, if the request asks for one: the native
/// `{"type":"json","schema":…}` or OpenAI's `{"type":"json_schema","json_schema":{"schema":…}}`
/// (`json_object` asks for any object).
fn output_schema(body: &Value) -> Option<Value> {
    let rf = body.get("response_format")?;
    match rf.get("type").and_then(Value::as_str)? {
        "json" => rf.get("schema").cloned(),
        "json_schema" => rf.pointer("/json_schema/schema").cloned(),
        "json_object" => Some(json!({"type": "object"})),
        _ => None,
    }
}

/// The answer as the endpoint delivers it: a text answer to a request with an output schema
/// becomes a JSON document satisfying the schema (cut at the output cap like any text).
fn shaped_reply(ex: &Exchange, reply: &Reply) -> Reply {
    let Some(schema_value) = output_schema(&ex.body) else {
        return reply.clone();
    };
    let choices = reply
        .choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if !c.tool_calls.is_empty() {
                return c.clone();
            }
            let seed = ex.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut body =
                schema::generate_for_prompt(&schema_value, seed, &ex.last_user_text).to_string();
            let mut finish = Finish::Stop;
            if let Some(cap) = ex.max_tokens {
                let (cut, was_cut) = text::truncate_to_tokens(ex.encoding, &body, u64::from(cap));
                if was_cut {
                    body = cut;
                    finish = Finish::Length;
                }
            }
            ChoiceReply {
                pieces: text::fragments(&body, JSON_PIECE_CHARS, seed),
                completion_tokens: ex.encoding.count(&body),
                text: body,
                tool_calls: Vec::new(),
                finish,
            }
        })
        .collect();
    Reply { choices }
}

impl SimProvider for CortexSim {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Cortex
    }

    fn route(&self, method: &Method, path: &str) -> Route {
        let path = path.trim_end_matches('/');
        let complete = path == COMPLETE_PATH
            || path.eq_ignore_ascii_case("/api/v2/cortex/inference%3Acomplete");
        match *method {
            Method::POST if complete || path == CHAT_PATH => Route::Chat,
            Method::GET if path == MODELS_PATH => Route::Models(None),
            _ => Route::NotFound,
        }
    }

    fn check_auth(
        &self,
        headers: &HeaderMap,
        expected: Option<&str>,
        meta: &Meta,
    ) -> Result<(), ErrorResponse> {
        auth::check(headers, expected).map(|_| ()).map_err(|e| {
            let message = format!("{} [{}]", e.message(), request_id(meta));
            snowflake_error(401, &message, e.code(), meta)
        })
    }

    fn last_user_text(&self, body: &Value) -> Option<String> {
        let messages = body.get("messages")?.as_array()?;
        let m = messages
            .iter()
            .rev()
            .find(|m| validate::role(m) == "user")?;
        Some(message_text(m))
    }

    fn parse(
        &self,
        _raw: &[u8],
        json: Option<Value>,
        meta: &Meta,
    ) -> Result<Exchange, ErrorResponse> {
        let Some(body) = json else {
            return Err(bad_request(
                &format!("{} The body is not valid JSON.", validate::INVALID_PAYLOAD),
                meta,
            ));
        };
        match endpoint(meta) {
            Endpoint::Complete => native::parse(body, meta),
            Endpoint::ChatCompletions => compat::parse(body, meta),
        }
    }

    fn success_headers(&self, _ex: &Exchange, meta: &Meta) -> HeaderMap {
        header_map(&[("x-snowflake-request-id", request_id(meta))])
    }

    fn render_json(&self, ex: &Exchange, reply: &Reply, meta: &Meta) -> Bytes {
        let reply = shaped_reply(ex, reply);
        match endpoint(meta) {
            Endpoint::Complete => native::render_json(ex, &reply, meta),
            Endpoint::ChatCompletions => compat::render_json(ex, &reply, meta),
        }
    }

    fn render_events(&self, ex: &Exchange, reply: &Reply, meta: &Meta) -> StreamFrames {
        let reply = shaped_reply(ex, reply);
        match endpoint(meta) {
            Endpoint::Complete => native::render_events(ex, &reply, meta),
            Endpoint::ChatCompletions => compat::render_events(ex, &reply, meta),
        }
    }

    fn stream_error_event(&self, meta: &Meta) -> Bytes {
        let message = "Internal error while generating the response. Please retry.";
        let code = "390500";
        let rid = request_id(meta);
        let e = json!({"message": message, "code": code, "request_id": rid,
                       "error": {"message": message, "code": code}});
        Bytes::from(format!("data: {e}\n\n"))
    }

    fn error_response(
        &self,
        status: u16,
        retry_after: Option<u64>,
        model: &str,
        meta: &Meta,
    ) -> ErrorResponse {
        let rid = request_id(meta);
        let (message, code) = match status {
            400 => (
                format!("{} The request was rejected.", validate::INVALID_PAYLOAD),
                "390142".to_string(),
            ),
            401 => (format!("JWT token is invalid. [{rid}]"), "390144".into()),
            403 => (
                "This account is not allowed to access this endpoint. Please contact Snowflake support."
                    .into(),
                "390403".into(),
            ),
            404 => (
                format!("Model {model:?} is not available in this region or the API is not enabled."),
                "390404".into(),
            ),
            429 => (
                "Too many requests. The request rate exceeded the account's quota for this model; retry later."
                    .into(),
                "390429".into(),
            ),
            500 => ("Internal server error.".into(), "390500".into()),
            503 => (
                "Service is temporarily unavailable. Retry with backoff.".into(),
                "390503".into(),
            ),
            504 => (
                "The request timed out on the server. Retry with backoff.".into(),
                "390504".into(),
            ),
            s => (format!("Request failed with status {s}."), format!("390{s}")),
        };
        let resp = snowflake_error(status, &message, &code, meta);
        match retry_after {
            Some(secs) => resp.with_header("retry-after", secs.to_string()),
            None => resp,
        }
    }

    fn not_found(&self, method: &Method, path: &str, meta: &Meta) -> ErrorResponse {
        let known = [COMPLETE_PATH, CHAT_PATH, MODELS_PATH].contains(&path.trim_end_matches('/'));
        if known {
            snowflake_error(
                405,
                &format!("Method {method} is not allowed for {path}."),
                "390405",
                meta,
            )
        } else {
            snowflake_error(
                404,
                &format!("Requested path {path} is not found."),
                "390404",
                meta,
            )
        }
    }

    fn models(&self, _id: Option<&str>) -> Result<Bytes, ErrorResponse> {
        Ok(Bytes::from(json!({"models": MODELS}).to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_request_ids_as_uuids() {
        assert_eq!(
            uuid("0123456789abcdef0123456789abcdef"),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
        assert_eq!(uuid("short"), "short");
    }

    #[test]
    fn routes_both_chat_endpoints_and_the_model_list() {
        let s = CortexSim;
        assert_eq!(s.route(&Method::POST, COMPLETE_PATH), Route::Chat);
        assert_eq!(
            s.route(&Method::POST, "/api/v2/cortex/inference%3Acomplete"),
            Route::Chat
        );
        assert_eq!(s.route(&Method::POST, CHAT_PATH), Route::Chat);
        assert_eq!(s.route(&Method::GET, MODELS_PATH), Route::Models(None));
        assert_eq!(s.route(&Method::GET, COMPLETE_PATH), Route::NotFound);
        assert_eq!(
            s.route(&Method::POST, "/v1/chat/completions"),
            Route::NotFound
        );
    }

    #[test]
    fn reads_the_last_user_text_of_both_shapes() {
        let s = CortexSim;
        let native = json!({"messages": [
            {"content": "first"},
            {"role": "assistant", "content": "x"},
            {"content_list": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]});
        assert_eq!(s.last_user_text(&native).as_deref(), Some("a\nb"));
        let openai =
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "c"}]}]});
        assert_eq!(s.last_user_text(&openai).as_deref(), Some("c"));
    }
}
