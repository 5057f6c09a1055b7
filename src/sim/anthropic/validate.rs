//! Request validation of the simulated Anthropic Messages API, in the order the real API
//! reports problems: the body's schema (pydantic-style `path: message` wording, one error at
//! a time, unknown fields rejected with `Extra inputs are not permitted`), then the
//! conversation rules (roles, non-empty content, `tool_use` / `tool_result` pairing), then the
//! model (`404 not_found_error`) and its output-token limit.
//!
//! Wordings come from real API answers where they are known (`max_tokens: Field required`,
//! `messages: first message must use the "user" role`, the `tool_use_id` pairing messages,
//! `temperature: Input should be less than or equal to 1`, the `system` role message, the
//! output limit message). The few marked *unconfirmed* follow the same style but have not
//! been seen in recorded traffic.

use serde_json::{Map, Value};

use super::blocks::{block, no_extra, text_block};
use super::models;

/// Why a request is refused: status, Anthropic error type and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rejection {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl Rejection {
    /// A `400 invalid_request_error`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Rejection {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
        }
    }
}

pub(super) type Check = Result<(), Rejection>;

pub(super) fn fail<T>(message: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::invalid(message))
}

/// Top-level fields of `POST /v1/messages`.
const TOP_LEVEL: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "output_config",
    "output_format",
    "cache_control",
    "inference_geo",
    "diagnostics",
    "speed",
];

/// The largest prompt, in tokens.
pub(super) const CONTEXT_WINDOW: u64 = 200_000;

/// Validates a messages request body.
pub(super) fn validate(body: &Value) -> Check {
    let Some(obj) = body.as_object() else {
        return fail("Input should be a valid dictionary or object to extract fields from");
    };
    for key in ["model", "messages", "max_tokens"] {
        if !obj.contains_key(key) {
            return fail(format!("{key}: Field required"));
        }
    }
    let model = obj.get("model").and_then(Value::as_str);
    let Some(model) = model else {
        return fail("model: Input should be a valid string");
    };
    let max_tokens = match obj.get("max_tokens").and_then(Value::as_i64) {
        Some(n) if n >= 1 => n as u64,
        Some(_) => return fail("max_tokens: Input should be greater than or equal to 1"),
        None => return fail("max_tokens: Input should be a valid integer"),
    };
    if let Some(key) = obj.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return fail(format!("{key}: Extra inputs are not permitted"));
    }
    scalars(obj)?;
    if let Some(system) = obj.get("system") {
        system_prompt(system)?;
    }
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) => m,
        _ => return fail("messages: Input should be a valid list"),
    };
    conversation(messages)?;
    let tool_names = tools(obj.get("tools"))?;
    tool_choice(obj.get("tool_choice"), &tool_names)?;
    thinking(obj.get("thinking"), max_tokens)?;

    if !models::accepted(model) {
        return Err(Rejection {
            status: 404,
            kind: "not_found_error",
            message: format!("model: {model}"),
        });
    }
    if let Some(limit) = models::max_output(model) {
        if max_tokens > limit {
            return fail(format!(
                "max_tokens: {max_tokens} > {limit}, which is the maximum allowed number of output tokens for {}",
                models::resolved(model)
            ));
        }
    }
    Ok(())
}

/// `stream`, sampling parameters, `stop_sequences` and `metadata` (null means unset).
fn scalars(obj: &Map<String, Value>) -> Check {
    let set = |key: &str| obj.get(key).filter(|v| !v.is_null());
    if set("stream").is_some_and(|v| !v.is_boolean()) {
        return fail("stream: Input should be a valid boolean");
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = set(key) {
            let Some(x) = v.as_f64() else {
                return fail(format!("{key}: Input should be a valid number"));
            };
            if x < 0.0 {
                return fail(format!("{key}: Input should be greater than or equal to 0"));
            }
            if x > 1.0 {
                return fail(format!("{key}: Input should be less than or equal to 1"));
            }
        }
    }
    if let Some(v) = set("top_k") {
        match v.as_i64() {
            Some(k) if k >= 0 => {}
            Some(_) => return fail("top_k: Input should be greater than or equal to 0"),
            None => return fail("top_k: Input should be a valid integer"),
        }
    }
    if let Some(v) = set("stop_sequences") {
        let Some(list) = v.as_array() else {
            return fail("stop_sequences: Input should be a valid list");
        };
        if let Some(i) = list.iter().position(|s| !s.is_string()) {
            return fail(format!(
                "stop_sequences.{i}: Input should be a valid string"
            ));
        }
    }
    if let Some(v) = set("metadata") {
        let Some(meta) = v.as_object() else {
            return fail(
                "metadata: Input should be a valid dictionary or object to extract fields from",
            );
        };
        if let Some(k) = meta.keys().find(|k| *k != "user_id") {
            return fail(format!("metadata.{k}: Extra inputs are not permitted"));
        }
        if meta
            .get("user_id")
            .is_some_and(|u| !u.is_string() && !u.is_null())
        {
            return fail("metadata.user_id: Input should be a valid string");
        }
    }
    Ok(())
}

/// `system`: a string or a list of text blocks.
fn system_prompt(system: &Value) -> Check {
    match system {
        Value::String(_) | Value::Null => Ok(()),
        Value::Array(blocks) => {
            for (i, b) in blocks.iter().enumerate() {
                let Some(o) = b.as_object() else {
                    return fail(format!("system.{i}: Input should be a valid dictionary or object to extract fields from"));
                };
                if o.get("type").and_then(Value::as_str) != Some("text") {
                    return fail(format!("system.{i}.type: Input should be 'text'"));
                }
                text_block(o, &format!("system.{i}"))?;
            }
            Ok(())
        }
        _ => fail("system: Input should be a valid string"),
    }
}

/// Whether a message's content is empty (`""` or `[]`).
fn is_empty_content(content: &Value) -> bool {
    match content {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Ids of the blocks of `kind` in a message, with their block index.
fn ids<'a>(m: &'a Value, kind: &str, field: &str) -> Vec<(usize, &'a str)> {
    m.get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, b)| b.get("type").and_then(Value::as_str) == Some(kind))
        .filter_map(|(j, b)| b.get(field).and_then(Value::as_str).map(|id| (j, id)))
        .collect()
}

/// Roles, message shapes, content blocks, then `tool_use` / `tool_result` pairing.
fn conversation(messages: &[Value]) -> Check {
    // Unconfirmed wording.
    if messages.is_empty() {
        return fail("messages: at least one message is required");
    }
    let last = messages.len() - 1;
    for (i, m) in messages.iter().enumerate() {
        let Some(o) = m.as_object() else {
            return fail(format!(
                "messages.{i}: Input should be a valid dictionary or object to extract fields from"
            ));
        };
        let role = match o.get("role").and_then(Value::as_str) {
            Some(r @ ("user" | "assistant")) => r,
            Some("system") => return fail("messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role."),
            Some(_) => return fail(format!("messages.{i}.role: Input should be 'user' or 'assistant'")),
            None => return fail(format!("messages.{i}.role: Field required")),
        };
        no_extra(o, &format!("messages.{i}"), &["role", "content"])?;
        let content = match o.get("content") {
            Some(c @ (Value::String(_) | Value::Array(_))) => c,
            Some(_) => {
                return fail(format!(
                    "messages.{i}.content: Input should be a valid list"
                ))
            }
            None => return fail(format!("messages.{i}.content: Field required")),
        };
        if is_empty_content(content) && !(i == last && role == "assistant") {
            return fail(format!("messages.{i}: all messages must have non-empty content except for the optional final assistant message"));
        }
        if let Value::Array(blocks) = content {
            for (j, b) in blocks.iter().enumerate() {
                block(i, j, role, b)?;
            }
        }
    }
    if messages[0].get("role").and_then(Value::as_str) != Some("user") {
        return fail("messages: first message must use the \"user\" role");
    }
    if let Some(m) = messages.last() {
        if m.get("role").and_then(Value::as_str) == Some("assistant")
            && final_text(m).is_some_and(|t| t.ends_with(char::is_whitespace))
        {
            return fail("messages: final assistant content cannot end with trailing whitespace");
        }
    }
    pairing(messages)
}

/// The text an assistant message ends with (its string, or its last text block).
fn final_text(m: &Value) -> Option<&str> {
    match m.get("content")? {
        Value::String(s) => Some(s),
        Value::Array(blocks) => blocks.last()?.get("text")?.as_str(),
        _ => None,
    }
}

/// Every `tool_use` is answered in the next message, every `tool_result` answers the
/// previous one.
fn pairing(messages: &[Value]) -> Check {
    for (i, m) in messages.iter().enumerate() {
        let results = ids(m, "tool_result", "tool_use_id");
        if !results.is_empty() {
            let asked = match i.checked_sub(1).map(|p| &messages[p]) {
                Some(prev) => ids(prev, "tool_use", "id"),
                None => Vec::new(),
            };
            if let Some((j, id)) = results
                .iter()
                .find(|(_, id)| !asked.iter().any(|(_, a)| a == id))
            {
                return fail(format!("messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."));
            }
        }
        let uses = ids(m, "tool_use", "id");
        if uses.is_empty() || i + 1 == messages.len() {
            continue;
        }
        let answered = ids(&messages[i + 1], "tool_result", "tool_use_id");
        let missing: Vec<&str> = uses
            .iter()
            .map(|(_, id)| *id)
            .filter(|id| !answered.iter().any(|(_, a)| a == id))
            .collect();
        if !missing.is_empty() {
            return fail(format!("messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.", i + 1, missing.join(", ")));
        }
    }
    Ok(())
}

fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `tools`: custom tools need a valid name and an object `input_schema`; server tools (with
/// a versioned `type`) are accepted as given. Returns every tool name.
fn tools(tools: Option<&Value>) -> Result<Vec<String>, Rejection> {
    let list = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return fail("tools: Input should be a valid list"),
    };
    let mut names: Vec<String> = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let Some(o) = t.as_object() else {
            return fail(format!(
                "tools.{i}: Input should be a valid dictionary or object to extract fields from"
            ));
        };
        let custom = matches!(o.get("type").and_then(Value::as_str), None | Some("custom"));
        let name = o.get("name").and_then(Value::as_str).unwrap_or("");
        if custom {
            let at = format!("tools.{i}.custom");
            no_extra(
                o,
                &at,
                &[
                    "type",
                    "name",
                    "description",
                    "input_schema",
                    "cache_control",
                    "strict",
                    "input_examples",
                    "defer_loading",
                    "allowed_callers",
                ],
            )?;
            if !o.contains_key("name") {
                return fail(format!("{at}.name: Field required"));
            }
            if !valid_tool_name(name) {
                return fail(format!(
                    "{at}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
                ));
            }
            if o.get("description").is_some_and(|d| !d.is_string()) {
                return fail(format!("{at}.description: Input should be a valid string"));
            }
            let Some(schema) = o.get("input_schema") else {
                return fail(format!("{at}.input_schema: Field required"));
            };
            let Some(schema) = schema.as_object() else {
                return fail(format!("{at}.input_schema: Input should be a valid dictionary or object to extract fields from"));
            };
            if schema.get("type").and_then(Value::as_str) != Some("object") {
                return fail(format!("{at}.input_schema.type: Input should be 'object'"));
            }
        } else if name.is_empty() {
            return fail(format!("tools.{i}.name: Field required"));
        }
        if names.iter().any(|n| n == name) {
            return fail("tools: Tool names must be unique.");
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// `tool_choice`: `{type: auto|any|tool|none}`, `tool` with a `name` of an offered tool.
fn tool_choice(choice: Option<&Value>, tool_names: &[String]) -> Check {
    let o =
        match choice {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Object(o)) => o,
            Some(_) => return fail(
                "tool_choice: Input should be a valid dictionary or object to extract fields from",
            ),
        };
    let kind = match o.get("type").and_then(Value::as_str) {
        Some(k @ ("auto" | "any" | "tool" | "none")) => k,
        Some(t) => return fail(format!("tool_choice: Input tag '{t}' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'")),
        None => return fail("tool_choice: Unable to extract tag using discriminator 'type'"),
    };
    let allowed: &[&str] = match kind {
        "tool" => &["type", "name", "disable_parallel_tool_use"],
        "none" => &["type"],
        _ => &["type", "disable_parallel_tool_use"],
    };
    no_extra(o, &format!("tool_choice.{kind}"), allowed)?;
    if o.get("disable_parallel_tool_use")
        .is_some_and(|v| !v.is_boolean())
    {
        return fail(format!(
            "tool_choice.{kind}.disable_parallel_tool_use: Input should be a valid boolean"
        ));
    }
    if kind == "tool" {
        let Some(name) = o.get("name").and_then(Value::as_str) else {
            return fail("tool_choice.tool.name: Field required");
        };
        // Unconfirmed wording.
        if !tool_names.iter().any(|n| n == name) {
            return fail(format!(
                "tool_choice.name: Tool '{name}' not found in provided tools"
            ));
        }
    }
    // Unconfirmed wording.
    if matches!(kind, "any" | "tool") && tool_names.is_empty() {
        return fail("tool_choice: tool_choice may only be specified while providing tools.");
    }
    Ok(())
}

/// Extended thinking: a budget of at least 1024 tokens, below `max_tokens`.
fn thinking(thinking: Option<&Value>, max_tokens: u64) -> Check {
    let Some(o) = thinking.and_then(Value::as_object) else {
        return Ok(());
    };
    if o.get("type").and_then(Value::as_str) != Some("enabled") {
        return Ok(());
    }
    let Some(budget) = o.get("budget_tokens").and_then(Value::as_u64) else {
        return fail("thinking.enabled.budget_tokens: Field required");
    };
    if budget < 1024 {
        return fail(
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        );
    }
    if budget >= max_tokens {
        return fail("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(body: Value) -> String {
        validate(&body).unwrap_err().message
    }

    fn base() -> Value {
        json!({"model": "claude-sonnet-4-5", "max_tokens": 100,
               "messages": [{"role": "user", "content": "hi"}]})
    }

    #[test]
    fn required_fields_come_first() {
        let mut b = base();
        b.as_object_mut().unwrap().remove("max_tokens");
        assert_eq!(message(b), "max_tokens: Field required");
        assert!(validate(&base()).is_ok());
    }

    #[test]
    fn unknown_fields_and_out_of_range_temperature_are_rejected() {
        let mut b = base();
        b["n"] = json!(2);
        assert_eq!(message(b), "n: Extra inputs are not permitted");
        let mut b = base();
        b["temperature"] = json!(1.5);
        assert_eq!(
            message(b),
            "temperature: Input should be less than or equal to 1"
        );
    }

    #[test]
    fn system_role_and_assistant_first_are_rejected() {
        let mut b = base();
        b["messages"] =
            json!([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}]);
        assert!(message(b).starts_with("messages: Unexpected role \"system\""));
        let mut b = base();
        b["messages"] =
            json!([{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]);
        assert_eq!(
            message(b),
            "messages: first message must use the \"user\" role"
        );
    }

    #[test]
    fn tool_results_must_answer_the_previous_turn() {
        let mut b = base();
        b["messages"] = json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rainy"}]}
        ]);
        let m = message(b.clone());
        assert!(
            m.starts_with("messages.2.content.1: unexpected `tool_use_id` found in `tool_result` blocks: toolu_2."),
            "{m}"
        );
        b["messages"][2]["content"] = json!("no result");
        assert!(message(b).starts_with(
            "messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1."
        ));
    }

    #[test]
    fn openai_style_tool_ids_do_not_match_the_pattern() {
        let mut b = base();
        b["messages"] = json!([
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call:1", "name": "w", "input": {}}]}
        ]);
        assert_eq!(
            message(b),
            "messages.1.content.0.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
        );
    }

    #[test]
    fn unknown_model_is_not_found_and_output_limit_is_enforced() {
        let mut b = base();
        b["model"] = json!("claude-sonet-4-5");
        let r = validate(&b).unwrap_err();
        assert_eq!((r.status, r.kind), (404, "not_found_error"));
        assert_eq!(r.message, "model: claude-sonet-4-5");
        let mut b = base();
        b["model"] = json!("claude-haiku-4-5");
        b["max_tokens"] = json!(999_999);
        assert_eq!(message(b), "max_tokens: 999999 > 64000, which is the maximum allowed number of output tokens for claude-haiku-4-5-20251001");
    }

    #[test]
    fn tools_need_an_object_schema_and_choice_a_known_name() {
        let mut b = base();
        b["tools"] = json!([{"name": "w", "input_schema": {"type": "array"}}]);
        assert_eq!(
            message(b),
            "tools.0.custom.input_schema.type: Input should be 'object'"
        );
        let mut b = base();
        b["tools"] = json!([{"name": "w", "input_schema": {"type": "object"}}]);
        b["tool_choice"] = json!({"type": "required"});
        assert!(message(b).starts_with("tool_choice: Input tag 'required'"));
    }

    #[test]
    fn empty_text_and_trailing_whitespace_prefill_are_rejected() {
        let mut b = base();
        b["messages"] = json!([{"role": "user", "content": [{"type": "text", "text": ""}]}]);
        assert_eq!(
            message(b),
            "messages: text content blocks must be non-empty"
        );
        let mut b = base();
        b["messages"] =
            json!([{"role": "user", "content": "x"}, {"role": "assistant", "content": "Sure "}]);
        assert_eq!(
            message(b),
            "messages: final assistant content cannot end with trailing whitespace"
        );
    }
}
