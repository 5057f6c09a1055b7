//! Anthropic message and error bodies → OpenAI `chat.completion` and error classification.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::super::error::retry_after;
use super::super::{AdapterError, ResponseContext, Translated, UpstreamError, UpstreamErrorKind};
use super::{finish_reason, upstream_error, WireUsage};
use crate::api::{ChatCompletion, Choice, FunctionCall, ResponseMessage, ToolCall, UsageJson};

/// The fields of a Messages API response that the translation reads.
#[derive(Debug, Deserialize)]
struct WireMessage {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// Translates a 2xx `/v1/messages` body.
///
/// Text blocks are concatenated into `message.content`; `tool_use` blocks become
/// `tool_calls`. Thinking blocks and the blocks of Anthropic-run server tools
/// (`server_tool_use`, `*_tool_result`) have no OpenAI equivalent and are dropped.
pub(super) fn parse_response(
    body: &[u8],
    ctx: &ResponseContext,
) -> Result<Translated, AdapterError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| AdapterError::MalformedResponse(format!("body is not JSON: {e}")))?;
    if v.get("type").and_then(Value::as_str) == Some("error") {
        if let Some(err) = upstream_error(200, &v, UpstreamErrorKind::Server) {
            return Err(AdapterError::Upstream(err));
        }
    }
    let msg: WireMessage = serde_json::from_value(v)
        .map_err(|e| AdapterError::MalformedResponse(format!("not a message: {e}")))?;

    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in &msg.content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                text.get_or_insert_with(String::new).push_str(t);
            }
            Some("tool_use") => tool_calls.push(tool_call(block)?),
            _ => {}
        }
    }
    // OpenAI sends `content: null` alongside tool calls when there is no text, and a string
    // otherwise.
    let content = match text {
        Some(t) => Some(t),
        None if tool_calls.is_empty() => Some(String::new()),
        None => None,
    };

    let usage = msg.usage.as_ref().map(WireUsage::to_usage);
    let finish = msg
        .stop_reason
        .as_deref()
        .map(|r| finish_reason(r).to_string());
    let completion = ChatCompletion {
        id: msg.id.unwrap_or_else(|| ctx.id.clone()),
        object: "chat.completion".to_string(),
        created: ctx.created,
        model: msg.model.unwrap_or_else(|| ctx.model.clone()),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_string(),
                content,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                refusal: None,
            },
            finish_reason: finish.clone(),
            logprobs: None,
        }],
        usage: usage.as_ref().map(UsageJson::from),
        system_fingerprint: None,
    };
    let body = serde_json::to_vec(&completion)
        .map_err(|e| AdapterError::MalformedResponse(format!("cannot encode response: {e}")))?;
    Ok(Translated {
        body: body.into(),
        usage,
        finish_reason: finish,
    })
}

/// A `tool_use` block as an OpenAI tool call (`arguments` is the input as a JSON string).
fn tool_call(block: &Value) -> Result<ToolCall, AdapterError> {
    let field = |name: &str| {
        block
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                AdapterError::MalformedResponse(format!("tool_use block without `{name}`"))
            })
    };
    let input = block
        .get("input")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    Ok(ToolCall {
        id: field("id")?,
        kind: "function".to_string(),
        function: FunctionCall {
            name: field("name")?,
            arguments: input.to_string(),
        },
    })
}

/// Classifies a non-2xx response. The body is normally
/// `{"type":"error","error":{"type","message"},"request_id"}`; anything else (a proxy's
/// HTML page, an empty body) is classified by status alone.
pub(super) fn parse_error(status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
    let fallback = UpstreamErrorKind::from_status(status);
    let parsed = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| upstream_error(status, &v, fallback));
    let mut err = parsed.unwrap_or_else(|| UpstreamError {
        status,
        kind: fallback,
        message: plain_message(status, body),
        code: None,
        param: None,
        retry_after: None,
    });
    err.retry_after = retry_after(headers);
    err
}

/// A message for a body that is not an Anthropic error object: a short plain-text body is
/// quoted, markup and binary are not.
fn plain_message(status: u16, body: &[u8]) -> String {
    let generic = format!("Anthropic returned HTTP {status}");
    let Ok(text) = std::str::from_utf8(body) else {
        return generic;
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() || text.starts_with('<') {
        return generic;
    }
    let mut snippet: String = text.chars().take(200).collect();
    if snippet.len() < text.len() {
        snippet.push('…');
    }
    format!("{generic}: {snippet}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> ResponseContext {
        ResponseContext {
            id: "chatcmpl-local".into(),
            created: 1_700_000_000,
            model: "alias".into(),
            include_usage: false,
            max_event_bytes: crate::providers::sse::DEFAULT_MAX_EVENT_BYTES,
        }
    }

    fn translate(v: Value) -> Value {
        let t = parse_response(v.to_string().as_bytes(), &ctx()).unwrap();
        serde_json::from_slice(&t.body).unwrap()
    }

    #[test]
    fn drops_thinking_and_server_tool_blocks_and_joins_text() {
        let out = translate(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me look. "},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                {"type": "text", "text": "Found it."}
            ],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 2}
        }));
        assert_eq!(
            out["choices"][0]["message"]["content"],
            "Let me look. Found it."
        );
        assert!(out["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn refusal_maps_to_content_filter() {
        let out = translate(json!({
            "id": "msg_1", "model": "claude-x", "content": [], "stop_reason": "refusal",
            "usage": {"input_tokens": 1, "output_tokens": 0}
        }));
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(out["choices"][0]["message"]["content"], "");
    }

    #[test]
    fn error_body_with_2xx_status_is_an_upstream_error() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        match parse_response(body, &ctx()) {
            Err(AdapterError::Upstream(e)) => {
                assert_eq!(e.kind, UpstreamErrorKind::Overloaded);
                assert_eq!(e.code.as_deref(), Some("overloaded_error"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_message_bodies_are_malformed() {
        for body in [&b"<html>"[..], br#"{"id":"msg_1"}"#, br#"[1]"#] {
            assert!(matches!(
                parse_response(body, &ctx()),
                Err(AdapterError::MalformedResponse(_))
            ));
        }
    }

    #[test]
    fn classifies_overloaded_529_and_reads_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        let e = parse_error(
            529,
            &h,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(e.kind, UpstreamErrorKind::Overloaded);
        assert!(e.kind.is_retryable());
        assert_eq!(e.status, 529);
        assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(7)));
    }

    #[test]
    fn classifies_every_documented_error_type() {
        for (status, ty, kind) in [
            (
                400,
                "invalid_request_error",
                UpstreamErrorKind::InvalidRequest,
            ),
            (
                401,
                "authentication_error",
                UpstreamErrorKind::Authentication,
            ),
            (402, "billing_error", UpstreamErrorKind::QuotaExceeded),
            (403, "permission_error", UpstreamErrorKind::PermissionDenied),
            (404, "not_found_error", UpstreamErrorKind::NotFound),
            (413, "request_too_large", UpstreamErrorKind::InvalidRequest),
            (429, "rate_limit_error", UpstreamErrorKind::RateLimited),
            (500, "api_error", UpstreamErrorKind::Server),
            (504, "timeout_error", UpstreamErrorKind::Timeout),
            (529, "overloaded_error", UpstreamErrorKind::Overloaded),
        ] {
            let body = json!({"type": "error", "error": {"type": ty, "message": "m"}}).to_string();
            let e = parse_error(status, &HeaderMap::new(), body.as_bytes());
            assert_eq!(e.kind, kind, "{ty}");
            assert_eq!(e.code.as_deref(), Some(ty));
        }
    }

    #[test]
    fn generic_api_error_takes_its_kind_from_a_5xx_status() {
        let body =
            br#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#;
        for (status, kind) in [
            (500, UpstreamErrorKind::Server),
            (502, UpstreamErrorKind::Server),
            (503, UpstreamErrorKind::Overloaded),
            (504, UpstreamErrorKind::Timeout),
        ] {
            let e = parse_error(status, &HeaderMap::new(), body);
            assert_eq!(e.kind, kind, "{status}");
            assert_eq!(e.code.as_deref(), Some("api_error"));
        }
        // An error inside a 200 stream stays a server error.
        let v: Value = serde_json::from_slice(body).unwrap();
        let e = upstream_error(200, &v, UpstreamErrorKind::Server).unwrap();
        assert_eq!(e.kind, UpstreamErrorKind::Server);
    }

    #[test]
    fn context_overflow_is_context_length() {
        let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"},"request_id":"req_1"}"#;
        let e = parse_error(400, &HeaderMap::new(), body);
        assert_eq!(e.kind, UpstreamErrorKind::ContextLength);
    }

    #[test]
    fn non_json_error_bodies_are_classified_by_status() {
        let e = parse_error(
            502,
            &HeaderMap::new(),
            b"<html><body>Bad gateway</body></html>",
        );
        assert_eq!(e.kind, UpstreamErrorKind::Server);
        assert_eq!(e.message, "Anthropic returned HTTP 502");
        assert_eq!(e.code, None);
        let e = parse_error(529, &HeaderMap::new(), b"upstream overloaded\n");
        assert_eq!(e.kind, UpstreamErrorKind::Overloaded);
        assert_eq!(
            e.message,
            "Anthropic returned HTTP 529: upstream overloaded"
        );
        let e = parse_error(429, &HeaderMap::new(), b"");
        assert_eq!(e.kind, UpstreamErrorKind::RateLimited);
        let e = parse_error(418, &HeaderMap::new(), &[0xff, 0xfe]);
        assert_eq!(e.message, "Anthropic returned HTTP 418");
    }

    #[test]
    fn unknown_error_type_falls_back_to_status() {
        let body = br#"{"type":"error","error":{"type":"shiny_new_error","message":"?"}}"#;
        let e = parse_error(503, &HeaderMap::new(), body);
        assert_eq!(e.kind, UpstreamErrorKind::Overloaded);
        assert_eq!(e.code.as_deref(), Some("shiny_new_error"));
    }
}
