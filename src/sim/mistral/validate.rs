//! Request validation of the simulated Mistral API, as strict as Mistral's own: pydantic
//! schema errors (422 with a `detail` list, `extra_forbidden` for unknown fields at the top
//! level and per message role), then Mistral's semantic checks (400 with a flat error body:
//! invalid model, tool-call ids that are not `[a-zA-Z0-9]{9}`, a last message that is not
//! `user` or `tool`).

use serde_json::{json, Map, Value};

use crate::sim::ErrorResponse;

/// Top-level fields of Mistral's `ChatCompletionRequest` (mistralai client-python). Anything
/// else is rejected with `extra_forbidden`. This includes `stream_options` and
/// `max_completion_tokens`: real traffic shows Mistral rejecting both, and keeping the
/// simulator strict about them is deliberate, so that a gateway which forwards OpenAI-only
/// fields fails here rather than in production.
pub(super) const KNOWN_FIELDS: &[&str] = &[
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
pub(super) fn message_fields(role: &str) -> &'static [&'static str] {
    match role {
        "assistant" => &["role", "content", "tool_calls", "prefix"],
        "tool" => &["role", "content", "tool_call_id", "name"],
        _ => &["role", "content"],
    }
}

pub(super) const ROLE_TAGS: &str = "'assistant', 'system', 'tool', 'user'";

pub(super) fn flat_error(message: &str, kind: &str, code: Option<&str>, status: u16) -> Value {
    json!({"object": "error", "message": message, "type": kind, "param": null, "code": code,
           "raw_status_code": status})
}

pub(super) fn detail(kind: &str, loc: Vec<Value>, msg: &str, input: &Value) -> Value {
    json!({"type": kind, "loc": loc, "msg": msg, "input": input})
}

pub(super) fn unprocessable(details: Vec<Value>) -> ErrorResponse {
    ErrorResponse::json(
        422,
        &json!({"object": "error", "message": {"detail": details}, "type": "invalid_request_error",
                "param": null, "code": null}),
    )
}

pub(super) fn bad_request(message: &str, kind: &str, code: &str) -> ErrorResponse {
    ErrorResponse::json(400, &flat_error(message, kind, Some(code), 400))
}

/// Pydantic-style checks: everything wrong is listed at once, as Mistral's 422 does.
pub(super) fn schema_details(body: &Value) -> Vec<Value> {
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

pub(super) fn message_details(i: usize, m: &Value, out: &mut Vec<Value>) {
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

pub(super) fn tool_details(obj: &Map<String, Value>, out: &mut Vec<Value>) {
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

pub(super) fn valid_tool_call_id(id: &str) -> bool {
    id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Mistral's checks after schema validation (400s).
pub(super) fn semantic_error(body: &Value) -> Option<ErrorResponse> {
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
pub(super) fn normalize_arguments(body: &mut Value) {
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
