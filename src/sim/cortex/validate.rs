//! Request validation of the simulated `inference:complete` endpoint, following the
//! `CompleteRequest` schema of `cortex-inference.yaml` (snowflakedb/snowflake-rest-api-specs)
//! and its message rules: `model` and a non-empty `messages` are required; a message has a
//! `role` (`system`, `user` or `assistant`; `user` when absent) and a string `content` or a
//! `content_list` of `text`, `tool_use` and `tool_results` items (plus the reserved `image`,
//! `anthropic` and `openai` ones); a `system` message may only come first; `user` and
//! `assistant` must alternate; the last message must be `user`. Tools are
//! `{"tool_spec":{"type","name","description","input_schema"}}`, `tool_choice` is
//! `{"type":"auto"|"required"|"tool","name":[…]}`, `response_format` is
//! `{"type":"json","schema":{…}}`. Unknown top-level fields are ignored.
//!
//! Tool turns follow the rules of the models behind Cortex (Claude on Bedrock): a request
//! whose history holds `tool_use` or `tool_results` items must define the tools, and every
//! tool result must answer a `tool_use` of the assistant message right before it.
//!
//! A malformed body gets Snowflake's `Incoming request does not contain a valid payload.`
//! (code 390142, as LiteLLM's Snowflake provider quotes it for a non-string `content`)
//! followed by what is wrong; rule violations get a message naming the rule.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// The start of every payload error message.
pub(super) const INVALID_PAYLOAD: &str = "Incoming request does not contain a valid payload.";

/// Content item types of a request message.
const ITEM_TYPES: &[&str] = &[
    "text",
    "tool_use",
    "tool_results",
    "image",
    "anthropic",
    "openai",
];

/// A rejected request: the message of the 400 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Invalid(pub String);

fn payload(detail: impl std::fmt::Display) -> Invalid {
    Invalid(format!("{INVALID_PAYLOAD} {detail}"))
}

/// The role of a message (`user` when absent, as the schema's default says).
pub(super) fn role(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("user")
}

/// The `content_list` items of a message (empty when it has none).
pub(super) fn items(m: &Value) -> &[Value] {
    m.get("content_list")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Validates a request body.
pub(super) fn validate(body: &Value) -> Result<(), Invalid> {
    let obj = body
        .as_object()
        .ok_or_else(|| payload("The body must be a JSON object."))?;
    match obj.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => {}
        Some(Value::String(_)) | None => return Err(payload("Field 'model' is required.")),
        Some(_) => return Err(payload("Field 'model' must be a string.")),
    }
    let messages = match obj.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => {
            return Err(payload("Field 'messages' must contain at least 1 item."))
        }
        None => return Err(payload("Field 'messages' is required.")),
        Some(_) => return Err(payload("Field 'messages' must be an array.")),
    };
    scalars(obj)?;
    let tools = tools(obj)?;
    tool_choice(obj, &tools)?;
    response_format(obj)?;
    for (i, m) in messages.iter().enumerate() {
        message(m, i)?;
    }
    roles(messages)?;
    tool_turns(messages, &tools)
}

fn number_field(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, Invalid> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| payload(format!("Field '{key}' must be a number."))),
    }
}

fn scalars(obj: &Map<String, Value>) -> Result<(), Invalid> {
    if let Some(t) = number_field(obj, "temperature")? {
        if t < 0.0 {
            return Err(payload("Field 'temperature' must be at least 0."));
        }
    }
    if let Some(p) = number_field(obj, "top_p")? {
        if !(0.0..=1.0).contains(&p) {
            return Err(payload("Field 'top_p' must be between 0 and 1."));
        }
    }
    for key in ["max_tokens", "max_output_tokens"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)) => {}
            Some(_) => {
                return Err(payload(format!(
                    "Field '{key}' must be a non-negative integer."
                )))
            }
        }
    }
    match obj.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(_) => return Err(payload("Field 'stream' must be a boolean.")),
    }
    match obj.get("guardrails") {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(payload("Field 'guardrails' must be an object.")),
    }
}

/// The tool names, after checking every tool definition.
fn tools(obj: &Map<String, Value>) -> Result<Vec<String>, Invalid> {
    let list = match obj.get("tools") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(payload("Field 'tools' must be an array.")),
    };
    let mut names = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let spec = t
            .get("tool_spec")
            .and_then(Value::as_object)
            .ok_or_else(|| payload(format!("tools[{i}].tool_spec is required.")))?;
        let kind = spec
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| payload(format!("tools[{i}].tool_spec.type is required.")))?;
        let name = match spec.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n,
            _ => return Err(payload(format!("tools[{i}].tool_spec.name is required."))),
        };
        if kind == "generic" && !spec.get("input_schema").is_some_and(Value::is_object) {
            return Err(payload(format!(
                "tools[{i}].tool_spec.input_schema is required for generic tools."
            )));
        }
        if let Some(d) = spec.get("description") {
            if !d.is_string() && !d.is_null() {
                return Err(payload(format!(
                    "tools[{i}].tool_spec.description must be a string."
                )));
            }
        }
        if names.iter().any(|n| n == name) {
            return Err(Invalid(format!("Tool names must be unique: '{name}'.")));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

fn tool_choice(obj: &Map<String, Value>, tools: &[String]) -> Result<(), Invalid> {
    let choice = match obj.get("tool_choice") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(c)) => c,
        Some(_) => return Err(payload("Field 'tool_choice' must be an object.")),
    };
    let kind = choice
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| payload("tool_choice.type is required."))?;
    if tools.is_empty() {
        return Err(Invalid("tool_choice requires tools.".into()));
    }
    match kind {
        "auto" | "required" => Ok(()),
        "tool" => {
            let names = choice
                .get("name")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    payload("tool_choice.name must be a non-empty array of tool names.")
                })?;
            for n in names {
                let n = n
                    .as_str()
                    .ok_or_else(|| payload("tool_choice.name must contain strings."))?;
                if !tools.iter().any(|t| t == n) {
                    return Err(Invalid(format!(
                        "tool_choice names a tool that is not defined: '{n}'."
                    )));
                }
            }
            Ok(())
        }
        other => Err(payload(format!(
            "tool_choice.type must be one of 'auto', 'required', 'tool', got '{other}'."
        ))),
    }
}

fn response_format(obj: &Map<String, Value>) -> Result<(), Invalid> {
    let rf = match obj.get("response_format") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(rf)) => rf,
        Some(_) => return Err(payload("Field 'response_format' must be an object.")),
    };
    if rf.get("type").and_then(Value::as_str) != Some("json") {
        return Err(payload("response_format.type must be 'json'."));
    }
    if !rf.get("schema").is_some_and(Value::is_object) {
        return Err(payload(
            "response_format.schema must be a JSON schema object.",
        ));
    }
    Ok(())
}

fn message(m: &Value, i: usize) -> Result<(), Invalid> {
    let obj = m
        .as_object()
        .ok_or_else(|| payload(format!("messages[{i}] must be an object.")))?;
    match obj.get("role") {
        None => {}
        Some(Value::String(r)) if ["system", "user", "assistant"].contains(&r.as_str()) => {}
        Some(r) => {
            return Err(payload(format!(
                "messages[{i}].role must be one of 'system', 'user', 'assistant', got {r}."
            )))
        }
    }
    let content = match obj.get("content") {
        None | Some(Value::Null) => false,
        Some(Value::String(_)) => true,
        Some(_) => return Err(payload(format!("messages[{i}].content must be a string."))),
    };
    let list = match obj.get("content_list") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a),
        Some(_) => {
            return Err(payload(format!(
                "messages[{i}].content_list must be an array."
            )))
        }
    };
    if !content && list.is_none() {
        return Err(payload(format!(
            "messages[{i}] needs 'content' or 'content_list'."
        )));
    }
    for (k, item) in list.into_iter().flatten().enumerate() {
        content_item(item, &format!("messages[{i}].content_list[{k}]"))?;
    }
    Ok(())
}

fn str_field<'a>(obj: &'a Value, key: &str, at: &str) -> Result<&'a str, Invalid> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| payload(format!("{at}.{key} must be a string.")))
}

fn content_item(item: &Value, at: &str) -> Result<(), Invalid> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| payload(format!("{at}.type is required.")))?;
    if !ITEM_TYPES.contains(&kind) {
        return Err(payload(format!(
            "{at}.type must be one of {}, got '{kind}'.",
            ITEM_TYPES.join(", ")
        )));
    }
    match kind {
        "text" => str_field(item, "text", at).map(|_| ()),
        "tool_use" => {
            let tu = item
                .get("tool_use")
                .filter(|v| v.is_object())
                .ok_or_else(|| payload(format!("{at}.tool_use is required.")))?;
            let at = format!("{at}.tool_use");
            str_field(tu, "tool_use_id", &at)?;
            str_field(tu, "name", &at)?;
            if !tu.get("input").is_some_and(Value::is_object) {
                return Err(payload(format!("{at}.input must be an object.")));
            }
            Ok(())
        }
        "tool_results" => {
            let tr = item
                .get("tool_results")
                .filter(|v| v.is_object())
                .ok_or_else(|| payload(format!("{at}.tool_results is required.")))?;
            let at = format!("{at}.tool_results");
            str_field(tr, "tool_use_id", &at)?;
            str_field(tr, "name", &at)?;
            let content = tr
                .get("content")
                .and_then(Value::as_array)
                .ok_or_else(|| payload(format!("{at}.content must be an array.")))?;
            for (k, c) in content.iter().enumerate() {
                let cat = format!("{at}.content[{k}]");
                match c.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        str_field(c, "text", &cat)?;
                    }
                    Some("json") if c.get("json").is_some_and(Value::is_object) => {}
                    Some("json") => return Err(payload(format!("{cat}.json must be an object."))),
                    _ => return Err(payload(format!("{cat}.type must be 'text' or 'json'."))),
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// System first only, alternation, last message from the user.
fn roles(messages: &[Value]) -> Result<(), Invalid> {
    let mut previous: Option<&str> = None;
    for (i, m) in messages.iter().enumerate() {
        let r = role(m);
        if r == "system" {
            if i > 0 {
                return Err(Invalid(format!(
                    "messages[{i}]: a 'system' message must be the first message."
                )));
            }
            continue;
        }
        if previous == Some(r) {
            return Err(Invalid(format!(
                "messages[{i}]: 'user' and 'assistant' messages must alternate."
            )));
        }
        previous = Some(r);
    }
    match messages.last().map(role) {
        Some("user") => Ok(()),
        _ => Err(Invalid(
            "The last message must have the role 'user'.".into(),
        )),
    }
}

/// Tool uses need defined tools; each tool result answers a tool use of the turn before.
fn tool_turns(messages: &[Value], tools: &[String]) -> Result<(), Invalid> {
    let mut open: HashSet<&str> = HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let mut uses = HashSet::new();
        for item in items(m) {
            let (key, is_use) = match item.get("type").and_then(Value::as_str) {
                Some("tool_use") => ("tool_use", true),
                Some("tool_results") => ("tool_results", false),
                _ => continue,
            };
            let inner = &item[key];
            let name = inner["name"].as_str().unwrap_or("");
            let id = inner["tool_use_id"].as_str().unwrap_or("");
            if tools.is_empty() {
                return Err(Invalid(format!(
                    "messages[{i}] holds a {key} item but the request defines no tools."
                )));
            }
            if !tools.iter().any(|t| t == name) {
                return Err(Invalid(format!(
                    "messages[{i}]: tool '{name}' is not defined in 'tools'."
                )));
            }
            if is_use {
                if role(m) != "assistant" {
                    return Err(Invalid(format!(
                        "messages[{i}]: tool_use items belong to 'assistant' messages."
                    )));
                }
                uses.insert(id);
            } else {
                if role(m) != "user" {
                    return Err(Invalid(format!(
                        "messages[{i}]: tool_results items belong to 'user' messages."
                    )));
                }
                if !open.contains(id) {
                    return Err(Invalid(format!(
                        "messages[{i}]: tool_results for unknown tool_use_id '{id}'; it must answer a tool_use of the previous assistant message."
                    )));
                }
            }
        }
        open = uses;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(messages: Value) -> Value {
        json!({"model": "mistral-large2", "messages": messages})
    }

    fn tool() -> Value {
        json!([{"tool_spec": {"type": "generic", "name": "get_weather", "description": "d",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    }

    #[test]
    fn accepts_a_plain_prompt_and_a_full_tool_round_trip() {
        assert_eq!(validate(&req(json!([{"content": "hi"}]))), Ok(()));
        let mut body = req(json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content_list": [
                {"type": "text", "text": "checking"},
                {"type": "tool_use", "tool_use": {"tool_use_id": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]},
            {"role": "user", "content_list": [
                {"type": "tool_results", "tool_results": {"tool_use_id": "tooluse_1", "name": "get_weather",
                    "content": [{"type": "text", "text": "sunny"}, {"type": "json", "json": {"c": 21}}]}}]}
        ]));
        body["tools"] = tool();
        body["tool_choice"] = json!({"type": "tool", "name": ["get_weather"]});
        body["response_format"] = json!({"type": "json", "schema": {"type": "object"}});
        assert_eq!(validate(&body), Ok(()));
    }

    #[test]
    fn rejects_role_order_violations() {
        for messages in [
            json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]),
            json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
            json!([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "c"}]),
        ] {
            assert!(validate(&req(messages.clone())).is_err(), "{messages}");
        }
        let e = validate(&req(
            json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]),
        ))
        .unwrap_err();
        assert!(e.0.contains("last message"), "{e:?}");
    }

    #[test]
    fn rejects_malformed_payloads_with_the_snowflake_message() {
        for body in [
            json!([]),
            json!({"messages": [{"content": "x"}]}),
            json!({"model": "m", "messages": []}),
            req(json!([{"role": "user", "content": [{"type": "text", "text": "x"}]}])),
            req(json!([{"role": "tool", "content": "x"}])),
            req(json!([{"role": "user"}])),
            req(json!([{"content_list": [{"type": "image_url"}]}])),
            json!({"model": "m", "messages": [{"content": "x"}], "top_p": 2}),
            json!({"model": "m", "messages": [{"content": "x"}], "max_tokens": -1}),
            json!({"model": "m", "messages": [{"content": "x"}], "response_format": {"type": "json_schema", "schema": {}}}),
            json!({"model": "m", "messages": [{"content": "x"}], "tools": [{"type": "function"}]}),
        ] {
            let e = validate(&body).unwrap_err();
            assert!(e.0.starts_with(INVALID_PAYLOAD), "{body}: {e:?}");
        }
    }

    #[test]
    fn tool_results_must_answer_the_previous_tool_use_and_tools_must_exist() {
        let history = json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content_list": [{"type": "tool_use", "tool_use": {"tool_use_id": "t1", "name": "get_weather", "input": {}}}]},
            {"role": "user", "content_list": [{"type": "tool_results", "tool_results": {"tool_use_id": "t2", "name": "get_weather", "content": []}}]}
        ]);
        let mut body = req(history);
        body["tools"] = tool();
        assert!(validate(&body)
            .unwrap_err()
            .0
            .contains("unknown tool_use_id"));
        body.as_object_mut().unwrap().remove("tools");
        assert!(validate(&body).unwrap_err().0.contains("defines no tools"));
        let mut body = req(json!([{"content": "x"}]));
        body["tool_choice"] = json!({"type": "auto"});
        assert!(validate(&body).is_err());
        body["tools"] = tool();
        body["tool_choice"] = json!({"type": "tool", "name": ["nope"]});
        assert!(validate(&body).is_err());
        body["tool_choice"] = json!({"type": "any"});
        assert!(validate(&body).is_err());
    }
}
