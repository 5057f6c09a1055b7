//! Classification of OpenAI error responses, plus helpers shared by every adapter whose
//! provider speaks an OpenAI-like error format (Mistral reuses them).
//!
//! OpenAI wraps errors as `{"error":{"message","type","param","code"}}`. Both 429 flavours
//! (rate limit and exhausted quota) share the status, so the code tells them apart. Bodies
//! that are not JSON at all (a load balancer's HTML 502 page) still yield a short, readable
//! message.

use http::HeaderMap;
use serde_json::{json, Value};

use crate::providers::error::retry_after;
use crate::providers::{UpstreamError, UpstreamErrorKind};

/// Longest excerpt of a non-JSON error body quoted in a message.
const SNIPPET_CHARS: usize = 200;

/// The fields of an OpenAI-style error object, as loosely as providers fill them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ErrorFields {
    pub message: Option<String>,
    pub kind: Option<String>,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ErrorFields {
    /// Reads `message`, `type`, `param` and `code` from an error object. Numbers are
    /// accepted where strings are documented (some providers send numeric codes).
    pub fn from_object(obj: &Value) -> Self {
        ErrorFields {
            message: obj.get("message").and_then(value_text),
            kind: obj.get("type").and_then(value_text),
            param: obj.get("param").and_then(value_text),
            code: obj.get("code").and_then(value_text),
        }
    }

    /// The provider's code, or its type when it gave no code.
    pub fn code_or_type(&self) -> Option<String> {
        self.code.clone().or_else(|| self.kind.clone())
    }

    /// Whether `code` or `type` equals `name`.
    pub fn is(&self, name: &str) -> bool {
        self.code.as_deref() == Some(name) || self.kind.as_deref() == Some(name)
    }
}

/// Extracts the error object of an OpenAI error body, if `v` is one: `{"error":{…}}`, or
/// `{"error":"text"}` as some compatible servers send.
pub(crate) fn openai_error_fields(v: &Value) -> Option<ErrorFields> {
    match v.get("error")? {
        obj @ Value::Object(_) => Some(ErrorFields::from_object(obj)),
        Value::String(s) => Some(ErrorFields {
            message: Some(s.clone()),
            ..ErrorFields::default()
        }),
        _ => None,
    }
}

/// Classifies an OpenAI (or OpenAI-compatible) non-2xx response.
pub(crate) fn parse_openai_error(status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
    let fields = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        openai_error_fields(&v).or_else(|| {
            // A bare `{"message": …}` object without the `error` wrapper.
            v.get("message")
                .is_some()
                .then(|| ErrorFields::from_object(&v))
        })
    });
    let fields = fields.unwrap_or_default();
    let kind = classify_http(status, &fields);
    UpstreamError {
        status,
        kind,
        message: fields
            .message
            .clone()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| fallback_message(status, body)),
        code: fields.code_or_type(),
        param: fields.param.clone(),
        retry_after: retry_after(headers),
    }
}

/// Classification of an HTTP error: the status decides, except that a 429 for an exhausted
/// quota is not retryable, and a context overflow is its own kind whatever the status.
pub(crate) fn classify_http(status: u16, fields: &ErrorFields) -> UpstreamErrorKind {
    if fields.is("context_length_exceeded") {
        return UpstreamErrorKind::ContextLength;
    }
    if status == 429 {
        return if fields.is("insufficient_quota") {
            UpstreamErrorKind::QuotaExceeded
        } else {
            UpstreamErrorKind::RateLimited
        };
    }
    UpstreamErrorKind::from_status(status)
}

/// Classification of an error that arrived without a meaningful HTTP status (inside a
/// stream, or as a 2xx body): by code, then type; unknown ones count as server errors.
pub(crate) fn classify_without_status(fields: &ErrorFields) -> UpstreamErrorKind {
    [fields.code.as_deref(), fields.kind.as_deref()]
        .into_iter()
        .flatten()
        .find_map(kind_from_name)
        .unwrap_or(UpstreamErrorKind::Server)
}

/// Known error codes and types of OpenAI and OpenAI-like providers.
fn kind_from_name(name: &str) -> Option<UpstreamErrorKind> {
    use UpstreamErrorKind as K;
    Some(match name {
        "context_length_exceeded" => K::ContextLength,
        "insufficient_quota" => K::QuotaExceeded,
        "rate_limit_exceeded" | "rate_limit_error" | "rate_limited" | "tokens" | "requests" => {
            K::RateLimited
        }
        "invalid_request_error" | "invalid_request" | "invalid_request_message_error" => {
            K::InvalidRequest
        }
        "authentication_error" | "invalid_api_key" => K::Authentication,
        "permission_error" | "permission_denied" => K::PermissionDenied,
        "not_found_error" | "model_not_found" => K::NotFound,
        "overloaded_error" | "overloaded" | "service_unavailable" | "server_overloaded" => {
            K::Overloaded
        }
        "timeout" | "timeout_error" => K::Timeout,
        "server_error" | "api_error" | "internal_error" => K::Server,
        _ => return None,
    })
}

/// An error that arrived inside a 200 response (stream event or 2xx body).
pub(crate) fn in_band_error(fields: &ErrorFields, fallback: &str) -> UpstreamError {
    UpstreamError {
        status: 200,
        kind: classify_without_status(fields),
        message: fields
            .message
            .clone()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| fallback.to_string()),
        code: fields.code_or_type(),
        param: fields.param.clone(),
        retry_after: None,
    }
}

/// The OpenAI error object `{"error":{"message","type","param","code"}}` for `fields`.
pub(crate) fn error_frame(fields: &ErrorFields, fallback_message: &str) -> Value {
    json!({
        "error": {
            "message": fields.message.clone().unwrap_or_else(|| fallback_message.to_string()),
            "type": fields.kind.clone().unwrap_or_else(|| "server_error".to_string()),
            "param": fields.param,
            "code": fields.code,
        }
    })
}

/// A short message for an error body that carries none: the status line, plus the page
/// title of an HTML body or the start of a plain-text one.
pub(crate) fn fallback_message(status: u16, body: &[u8]) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    let mut msg = format!("upstream returned HTTP {status}");
    if let Some(r) = reason {
        msg.push(' ');
        msg.push_str(r);
    }
    if let Some(snippet) = body_snippet(body) {
        // nginx-style pages only repeat the status line; say it once.
        let repeats_status = reason.is_some_and(|r| {
            snippet.eq_ignore_ascii_case(r)
                || snippet.eq_ignore_ascii_case(&format!("{status} {r}"))
        });
        if !repeats_status {
            msg.push_str(": ");
            msg.push_str(&snippet);
        }
    }
    msg
}

/// The `<title>` of an HTML body, or the first characters of a text body, whitespace
/// collapsed. `None` for empty or binary bodies.
fn body_snippet(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.contains('\u{FFFD}') {
        return None;
    }
    let raw = if text.starts_with('<') {
        let lower = text.to_ascii_lowercase();
        let start = lower.find("<title>")? + "<title>".len();
        let end = start + lower[start..].find("</title>")?;
        &text[start..end]
    } else {
        text
    };
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return None;
    }
    let mut snippet: String = collapsed.chars().take(SNIPPET_CHARS).collect();
    if collapsed.chars().count() > SNIPPET_CHARS {
        snippet.push('…');
    }
    Some(snippet)
}

/// A JSON string or number as text; anything else is absent.
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn quota_429_is_not_retryable_but_rate_limit_429_is() {
        let quota = parse_openai_error(
            429,
            &HeaderMap::new(),
            &body(
                json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
            ),
        );
        assert_eq!(quota.kind, UpstreamErrorKind::QuotaExceeded);
        assert!(!quota.kind.is_retryable());

        let limited = parse_openai_error(
            429,
            &HeaderMap::new(),
            &body(
                json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
            ),
        );
        assert_eq!(limited.kind, UpstreamErrorKind::RateLimited);
        assert_eq!(limited.code.as_deref(), Some("rate_limit_exceeded"));
    }

    #[test]
    fn html_bad_gateway_page_gives_status_line_and_title() {
        let page = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        let e = parse_openai_error(502, &HeaderMap::new(), page);
        assert_eq!(e.kind, UpstreamErrorKind::Server);
        assert_eq!(e.message, "upstream returned HTTP 502 Bad Gateway");
        assert_eq!(e.code, None);
    }

    #[test]
    fn long_plain_text_body_is_cut_short() {
        let text = "x ".repeat(1000);
        let e = parse_openai_error(500, &HeaderMap::new(), text.as_bytes());
        assert!(e
            .message
            .starts_with("upstream returned HTTP 500 Internal Server Error: x x"));
        assert!(e.message.chars().count() < 260, "{}", e.message);
    }

    #[test]
    fn empty_body_gives_status_line() {
        let e = parse_openai_error(503, &HeaderMap::new(), b"");
        assert_eq!(e.message, "upstream returned HTTP 503 Service Unavailable");
        assert_eq!(e.kind, UpstreamErrorKind::Overloaded);
    }

    #[test]
    fn in_band_errors_are_classified_by_code_then_type() {
        let f = ErrorFields {
            kind: Some("server_error".into()),
            ..ErrorFields::default()
        };
        assert_eq!(classify_without_status(&f), UpstreamErrorKind::Server);
        let f = ErrorFields {
            kind: Some("invalid_request_error".into()),
            code: Some("context_length_exceeded".into()),
            ..ErrorFields::default()
        };
        assert_eq!(
            classify_without_status(&f),
            UpstreamErrorKind::ContextLength
        );
        assert_eq!(
            classify_without_status(&ErrorFields::default()),
            UpstreamErrorKind::Server
        );
    }

    #[test]
    fn numeric_codes_are_kept_as_text() {
        let f = ErrorFields::from_object(&json!({"message": "m", "code": 3001}));
        assert_eq!(f.code.as_deref(), Some("3001"));
    }
}
