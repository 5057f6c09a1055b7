//! Classification of Cortex error responses.
//!
//! Snowflake's REST error body is `{"message","code","error_code","request_id"}` (spec
//! `common.yaml`, `ErrorResponse`); the OpenAI-compatible endpoint may answer OpenAI's
//! `{"error":{…}}` instead. The status decides the kind: 429, 503 and 504 are retryable (the
//! official Python client retries exactly these), 401/403 are tollgate's credentials or
//! grants, 400 an invalid request (or a prompt too long for the model), 404 an unknown model
//! or a disabled API.

use http::HeaderMap;
use serde_json::Value;

use crate::providers::error::retry_after;
use crate::providers::{UpstreamError, UpstreamErrorKind};

/// Classifies a non-2xx Cortex response.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let mut err = parsed
        .as_ref()
        .and_then(|v| from_value(status, v))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("Cortex returned HTTP {status}")
            } else {
                format!("Cortex returned HTTP {status}: {}", truncate(text, 300))
            };
            UpstreamError {
                status,
                kind: kind_for(status, &message),
                message,
                code: None,
                param: None,
                retry_after: None,
            }
        });
    err.retry_after = retry_after(headers);
    err
}

/// Reads an error out of a JSON value, if it is one of Cortex's error shapes. Used for
/// error bodies, for 2xx bodies that carry an error, and for errors inside a stream
/// (`status` 200, classified as a server error).
pub fn from_value(status: u16, v: &Value) -> Option<UpstreamError> {
    let obj = v.as_object()?;
    let (message, code, param) = if let Some(e) = obj.get("error") {
        match e {
            Value::String(s) => (s.clone(), code_of(obj.get("code")), None),
            Value::Object(inner) => (
                inner
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("Cortex reported an error")
                    .to_string(),
                code_of(inner.get("code")).or_else(|| code_of(inner.get("type"))),
                inner
                    .get("param")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ),
            Value::Null => return None,
            other => (other.to_string(), None, None),
        }
    } else if obj.contains_key("message")
        && (obj.contains_key("code") || obj.contains_key("error_code"))
        && !obj.contains_key("choices")
    {
        (
            obj.get("message")
                .and_then(Value::as_str)
                .unwrap_or("Cortex reported an error")
                .to_string(),
            code_of(obj.get("code")).or_else(|| code_of(obj.get("error_code"))),
            None,
        )
    } else {
        return None;
    };
    let message = match obj.get("request_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("{message} (request id {id})"),
        _ => message,
    };
    let kind = if (200..300).contains(&status) {
        UpstreamErrorKind::Server
    } else {
        kind_for(status, &message)
    };
    Some(UpstreamError {
        status,
        kind,
        message,
        code,
        param,
        retry_after: None,
    })
}

fn kind_for(status: u16, message: &str) -> UpstreamErrorKind {
    let kind = UpstreamErrorKind::from_status(status);
    if kind == UpstreamErrorKind::InvalidRequest && is_context_length(message) {
        UpstreamErrorKind::ContextLength
    } else {
        kind
    }
}

fn is_context_length(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "context window",
        "context length",
        "prompt is too long",
        "input is too long",
        "exceeds the maximum",
        "too many input tokens",
    ]
    .iter()
    .any(|p| m.contains(p))
}

fn code_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn snowflake_error_body_keeps_message_code_and_request_id() {
        let e = classify(
            401,
            &HeaderMap::new(),
            &body(json!({"message": "JWT token is invalid.", "code": "390144",
                "error_code": "390144", "request_id": "01af-42"})),
        );
        assert_eq!(e.kind, UpstreamErrorKind::Authentication);
        assert_eq!(e.code.as_deref(), Some("390144"));
        assert_eq!(e.message, "JWT token is invalid. (request id 01af-42)");
        assert!(!e.kind.is_retryable());
    }

    #[test]
    fn rate_limit_overload_and_timeout_are_retryable_with_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        let e = classify(
            429,
            &h,
            &body(json!({"message": "Too many requests", "code": "429"})),
        );
        assert_eq!(e.kind, UpstreamErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        for (status, kind) in [
            (503, UpstreamErrorKind::Overloaded),
            (504, UpstreamErrorKind::Timeout),
        ] {
            let e = classify(status, &HeaderMap::new(), b"");
            assert_eq!(e.kind, kind);
            assert!(e.kind.is_retryable());
        }
    }

    #[test]
    fn client_side_statuses_are_not_retryable() {
        let e = classify(
            403,
            &HeaderMap::new(),
            &body(json!({"message": "no CORTEX_USER role", "code": "3001"})),
        );
        assert_eq!(e.kind, UpstreamErrorKind::PermissionDenied);
        let e = classify(
            404,
            &HeaderMap::new(),
            &body(json!({"message": "unknown model \"x\"", "code": "1"})),
        );
        assert_eq!(e.kind, UpstreamErrorKind::NotFound);
        let e = classify(
            400,
            &HeaderMap::new(),
            &body(json!({"message": "bad", "code": "2"})),
        );
        assert_eq!(e.kind, UpstreamErrorKind::InvalidRequest);
        let e = classify(
            400,
            &HeaderMap::new(),
            &body(
                json!({"message": "max tokens of 128000 exceeded: prompt is too long", "code": "2"}),
            ),
        );
        assert_eq!(e.kind, UpstreamErrorKind::ContextLength);
    }

    #[test]
    fn openai_shaped_and_plain_text_bodies_are_understood() {
        let e = classify(
            400,
            &HeaderMap::new(),
            &body(
                json!({"error": {"message": "bad param", "type": "invalid_request_error", "param": "top_p"}}),
            ),
        );
        assert_eq!(e.message, "bad param");
        assert_eq!(e.code.as_deref(), Some("invalid_request_error"));
        assert_eq!(e.param.as_deref(), Some("top_p"));
        let e = classify(502, &HeaderMap::new(), b"<html>Bad Gateway</html>");
        assert_eq!(e.kind, UpstreamErrorKind::Server);
        assert!(e.message.contains("Bad Gateway"));
    }

    #[test]
    fn success_bodies_are_not_errors() {
        assert!(from_value(200, &json!({"choices": [], "usage": {}})).is_none());
        assert!(from_value(200, &json!({"error": null, "choices": []})).is_none());
        let e = from_value(200, &json!({"error": {"message": "boom", "code": "500"}})).unwrap();
        assert_eq!(e.kind, UpstreamErrorKind::Server);
        assert_eq!(e.status, 200);
    }
}
