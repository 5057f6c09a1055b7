//! Mistral error bodies → [`UpstreamError`].
//!
//! Mistral's errors are flat (`{"object":"error","message","type","param","code"}`, no
//! `error` wrapper), and request validation failures come from its FastAPI layer as 422
//! `{"detail":[{"loc":[…],"msg":…}]}`, sometimes nested inside `message` as an object or
//! as a JSON-encoded string. All of them become one readable sentence, with the offending
//! field as `param`.

use http::HeaderMap;
use serde_json::Value;

use crate::providers::error::retry_after;
use crate::providers::openai::error::{
    classify_http, fallback_message, openai_error_fields, ErrorFields,
};
use crate::providers::{UpstreamError, UpstreamErrorKind};

/// Classifies a non-2xx Mistral response.
pub(super) fn parse_error(status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
    let fields = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| error_fields(&v))
        .unwrap_or_default();
    let mut kind = classify_http(status, &fields);
    if matches!(kind, UpstreamErrorKind::InvalidRequest)
        && fields
            .message
            .as_deref()
            .is_some_and(mentions_context_overflow)
    {
        kind = UpstreamErrorKind::ContextLength;
    }
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

/// The error fields of a body that is an error report, in any of Mistral's shapes.
fn error_fields(v: &Value) -> Option<ErrorFields> {
    if let Some(fields) = openai_error_fields(v) {
        return Some(fields);
    }
    let obj = v.as_object()?;
    let (message, detail_param) = ["message", "detail"]
        .into_iter()
        .filter_map(|k| obj.get(k))
        .map(describe)
        .find(|(m, _)| m.is_some())
        .unwrap_or((None, None));
    let mut fields = ErrorFields::from_object(v);
    fields.message = message;
    fields.param = fields.param.or(detail_param);
    Some(fields)
}

/// The error fields if a 2xx body or stream payload is an error report rather than a
/// chunk: an OpenAI-style `error` object, a Mistral `"object": "error"`, or a bare
/// validation `detail`.
pub(super) fn in_band_error_fields(v: &Value) -> Option<ErrorFields> {
    if let Some(fields) = openai_error_fields(v) {
        return Some(fields);
    }
    let obj = v.as_object()?;
    let is_error_object = obj
        .get("object")
        .and_then(Value::as_str)
        .is_some_and(|o| o.eq_ignore_ascii_case("error"));
    let is_bare_detail = !obj.contains_key("choices") && obj.contains_key("detail");
    if is_error_object || is_bare_detail {
        error_fields(v)
    } else {
        None
    }
}

/// A readable message and the offending parameter, from a `message` or `detail` value.
fn describe(v: &Value) -> (Option<String>, Option<String>) {
    match v {
        Value::String(s) => {
            let t = s.trim();
            if t.starts_with('{') || t.starts_with('[') {
                if let Ok(inner) = serde_json::from_str::<Value>(t) {
                    let described = describe(&inner);
                    if described.0.is_some() {
                        return described;
                    }
                }
            }
            (Some(s.clone()).filter(|s| !s.trim().is_empty()), None)
        }
        Value::Object(o) => match o.get("detail").or_else(|| o.get("message")) {
            Some(inner) => describe(inner),
            None => (None, None),
        },
        Value::Array(items) => {
            let issues: Vec<(String, Option<String>)> =
                items.iter().filter_map(validation_issue).collect();
            if issues.is_empty() {
                return (None, None);
            }
            let param = issues.iter().find_map(|(_, p)| p.clone());
            let text = issues
                .into_iter()
                .map(|(m, _)| m)
                .collect::<Vec<_>>()
                .join("; ");
            (Some(format!("Invalid request: {text}")), param)
        }
        _ => (None, None),
    }
}

/// One FastAPI validation issue as `"<field>: <msg>"`, plus the field path.
fn validation_issue(item: &Value) -> Option<(String, Option<String>)> {
    if let Some(s) = item.as_str() {
        return Some((s.to_string(), None));
    }
    let msg = item.get("msg").and_then(Value::as_str)?;
    let path = item.get("loc").and_then(Value::as_array).map(|loc| {
        loc.iter()
            .skip_while(|p| p.as_str() == Some("body"))
            .map(|p| match p {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    });
    let path = path.filter(|p| !p.is_empty());
    Some(match &path {
        Some(p) => (format!("{p}: {msg}"), path.clone()),
        None => (msg.to_string(), None),
    })
}

/// Mistral reports an oversized prompt as a plain 400, recognisable only by its wording
/// ("… too large for model with 32768 maximum context length").
fn mentions_context_overflow(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("too large for model") || m.contains("maximum context length")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(status: u16, v: Value) -> UpstreamError {
        parse_error(status, &HeaderMap::new(), &serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn context_overflow_is_recognised_by_its_wording() {
        let e = parse(
            400,
            json!({"object": "error", "message": "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length", "type": "invalid_request_error", "param": null, "code": null}),
        );
        assert_eq!(e.kind, UpstreamErrorKind::ContextLength);
    }

    #[test]
    fn validation_detail_inside_a_message_object_is_readable() {
        let e = parse(
            422,
            json!({"object": "error", "message": {"detail": [
                {"type": "extra_forbidden", "loc": ["body", "messages", 0, "user", "name"], "msg": "Extra inputs are not permitted", "input": ""}
            ]}, "type": "invalid_request_error", "param": null, "code": null}),
        );
        assert_eq!(
            e.message,
            "Invalid request: messages.0.user.name: Extra inputs are not permitted"
        );
        assert_eq!(e.param.as_deref(), Some("messages.0.user.name"));
        assert_eq!(e.kind, UpstreamErrorKind::InvalidRequest);
    }

    #[test]
    fn chunks_are_not_mistaken_for_errors() {
        let chunk = json!({"id": "x", "object": "chat.completion.chunk", "choices": []});
        assert!(in_band_error_fields(&chunk).is_none());
        let err = json!({"object": "error", "message": "Service unavailable", "type": "internal_server_error"});
        assert_eq!(
            in_band_error_fields(&err).unwrap().message.as_deref(),
            Some("Service unavailable")
        );
    }
}
