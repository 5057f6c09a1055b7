//! Request validation of the simulated OpenAI Chat Completions endpoint: the checks the
//! real API makes before generating, with its messages, `param` paths and `code`s
//! (`missing_required_parameter`, `invalid_type`, `invalid_value`, `empty_array`, …), and its
//! rejection of unrecognized top-level arguments.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::sim::openai_shape::type_name;

/// One validation failure, rendered as `{"error":{message,type,param,code}}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    fn new(message: impl Into<String>, param: Option<String>, code: Option<&'static str>) -> Self {
        ApiError {
            message: message.into(),
            param,
            code,
        }
    }

    fn missing(param: &str) -> Self {
        Self::new(
            format!("Missing required parameter: '{param}'."),
            Some(param.into()),
            Some("missing_required_parameter"),
        )
    }

    fn wrong_type(param: &str, expected: &str, got: &Value) -> Self {
        Self::new(
            format!(
                "Invalid type for '{param}': expected {expected}, but got {} instead.",
                type_name(got)
            ),
            Some(param.into()),
            Some("invalid_type"),
        )
    }

    fn bad_value(param: &str, got: &str, supported: &[&str]) -> Self {
        let list = match supported {
            [] => String::new(),
            [one] => format!("'{one}'"),
            [init @ .., last] => {
                let quoted: Vec<String> = init.iter().map(|s| format!("'{s}'")).collect();
                format!("{}, and '{last}'", quoted.join(", "))
            }
        };
        Self::new(
            format!("Invalid value: '{got}'. Supported values are: {list}."),
            Some(param.into()),
            Some("invalid_value"),
        )
    }
}

/// Top-level arguments of `POST /v1/chat/completions` (openai-python's
/// `completion_create_params`, plus `prompt_cache_options` seen in recorded traffic).
const KNOWN_ARGS: &[&str] = &[
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "messages",
    "metadata",
    "modalities",
    "model",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

const ROLES: &[&str] = &[
    "system",
    "assistant",
    "user",
    "function",
    "tool",
    "developer",
];

/// The message shown for a body that is not a JSON object.
pub(crate) const UNPARSABLE_BODY: &str = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)";

/// Validates a chat completion body.
pub(crate) fn validate(body: &Value) -> Result<(), ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::new(UNPARSABLE_BODY, None, None));
    };
    match obj.get("model") {
        None | Some(Value::Null) => {
            return Err(ApiError::new(
                "you must provide a model parameter",
                None,
                None,
            ))
        }
        Some(Value::String(m)) if m.is_empty() => {
            return Err(ApiError::new(
                "you must provide a model parameter",
                None,
                None,
            ))
        }
        Some(Value::String(_)) => {}
        Some(other) => return Err(ApiError::wrong_type("model", "a string", other)),
    }
    let unknown: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !KNOWN_ARGS.contains(k))
        .collect();
    match unknown.as_slice() {
        [] => {}
        [one] => {
            return Err(ApiError::new(
                format!("Unrecognized request argument supplied: {one}"),
                None,
                None,
            ))
        }
        many => {
            return Err(ApiError::new(
                format!(
                    "Unrecognized request arguments supplied: {}",
                    many.join(", ")
                ),
                None,
                None,
            ))
        }
    }
    validate_messages(obj)?;
    validate_numbers(obj)?;
    validate_stream(obj)?;
    validate_tools(obj)
}

fn validate_messages(obj: &Map<String, Value>) -> Result<(), ApiError> {
    let messages = match obj.get("messages") {
        None => return Err(ApiError::missing("messages")),
        Some(Value::Array(m)) => m,
        Some(other) => return Err(ApiError::wrong_type("messages", "an array", other)),
    };
    if messages.is_empty() {
        return Err(ApiError::new(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages".into()),
            Some("empty_array"),
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        validate_message(i, m)?;
    }
    validate_tool_sequence(messages)
}

fn validate_message(i: usize, m: &Value) -> Result<(), ApiError> {
    let at = format!("messages[{i}]");
    let Some(m) = m.as_object() else {
        return Err(ApiError::wrong_type(&at, "an object", m));
    };
    let role = match m.get("role") {
        None => return Err(ApiError::missing(&format!("{at}.role"))),
        Some(Value::String(r)) => r.as_str(),
        Some(other) => {
            return Err(ApiError::wrong_type(
                &format!("{at}.role"),
                "a string",
                other,
            ))
        }
    };
    if !ROLES.contains(&role) {
        return Err(ApiError::bad_value(&format!("{at}.role"), role, ROLES));
    }
    let has_calls = m.get("tool_calls").is_some_and(|v| !v.is_null())
        || m.get("function_call").is_some_and(|v| !v.is_null());
    match m.get("content") {
        None | Some(Value::Null) if role == "assistant" && has_calls => {}
        None => return Err(ApiError::missing(&format!("{at}.content"))),
        Some(Value::String(_)) => {}
        Some(Value::Array(parts)) => validate_parts(&at, role, parts)?,
        Some(other) => {
            return Err(ApiError::wrong_type(
                &format!("{at}.content"),
                "one of a string or array of objects",
                other,
            ))
        }
    }
    if let Some(name) = m.get("name") {
        if !name.is_string() {
            return Err(ApiError::wrong_type(
                &format!("{at}.name"),
                "a string",
                name,
            ));
        }
    }
    if role == "tool" {
        match m.get("tool_call_id") {
            None => return Err(ApiError::missing(&format!("{at}.tool_call_id"))),
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(ApiError::wrong_type(
                    &format!("{at}.tool_call_id"),
                    "a string",
                    other,
                ))
            }
        }
    }
    if role == "assistant" {
        match m.get("tool_calls") {
            None | Some(Value::Null) => {}
            Some(Value::Array(calls)) => {
                for (j, c) in calls.iter().enumerate() {
                    validate_tool_call(&format!("{at}.tool_calls[{j}]"), c)?;
                }
            }
            Some(other) => {
                return Err(ApiError::wrong_type(
                    &format!("{at}.tool_calls"),
                    "an array",
                    other,
                ))
            }
        }
    }
    Ok(())
}

fn validate_parts(at: &str, role: &str, parts: &[Value]) -> Result<(), ApiError> {
    let allowed: &[&str] = match role {
        "user" => &["text", "image_url", "input_audio", "file"],
        "assistant" => &["text", "refusal"],
        _ => &["text"],
    };
    for (j, p) in parts.iter().enumerate() {
        let pat = format!("{at}.content[{j}]");
        let Some(p) = p.as_object() else {
            return Err(ApiError::wrong_type(&pat, "an object", p));
        };
        let kind = match p.get("type") {
            None => return Err(ApiError::missing(&format!("{pat}.type"))),
            Some(Value::String(t)) => t.as_str(),
            Some(other) => {
                return Err(ApiError::wrong_type(
                    &format!("{pat}.type"),
                    "a string",
                    other,
                ))
            }
        };
        if !allowed.contains(&kind) {
            return Err(ApiError::bad_value(&format!("{pat}.type"), kind, allowed));
        }
        let field = match kind {
            "text" => "text",
            "image_url" => "image_url",
            "input_audio" => "input_audio",
            "file" => "file",
            _ => "refusal",
        };
        match p.get(field) {
            None => return Err(ApiError::missing(&format!("{pat}.{field}"))),
            Some(Value::String(_)) if field == "text" || field == "refusal" => {}
            Some(Value::Object(o)) if field == "image_url" => {
                if !o.get("url").is_some_and(Value::is_string) {
                    return Err(ApiError::missing(&format!("{pat}.image_url.url")));
                }
            }
            Some(Value::Object(_)) if field == "input_audio" || field == "file" => {}
            Some(other) => {
                let expected = if field == "text" || field == "refusal" {
                    "a string"
                } else {
                    "an object"
                };
                return Err(ApiError::wrong_type(
                    &format!("{pat}.{field}"),
                    expected,
                    other,
                ));
            }
        }
    }
    Ok(())
}

fn validate_tool_call(at: &str, c: &Value) -> Result<(), ApiError> {
    let Some(c) = c.as_object() else {
        return Err(ApiError::wrong_type(at, "an object", c));
    };
    for key in ["id", "type"] {
        match c.get(key) {
            None => return Err(ApiError::missing(&format!("{at}.{key}"))),
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(ApiError::wrong_type(
                    &format!("{at}.{key}"),
                    "a string",
                    other,
                ))
            }
        }
    }
    if let Some(Value::String(t)) = c.get("type") {
        if t != "function" {
            return Err(ApiError::bad_value(&format!("{at}.type"), t, &["function"]));
        }
    }
    let f = match c.get("function") {
        None => return Err(ApiError::missing(&format!("{at}.function"))),
        Some(Value::Object(f)) => f,
        Some(other) => {
            return Err(ApiError::wrong_type(
                &format!("{at}.function"),
                "an object",
                other,
            ))
        }
    };
    for key in ["name", "arguments"] {
        match f.get(key) {
            None => return Err(ApiError::missing(&format!("{at}.function.{key}"))),
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(ApiError::wrong_type(
                    &format!("{at}.function.{key}"),
                    "a string",
                    other,
                ))
            }
        }
    }
    Ok(())
}

/// Tool results must answer a preceding assistant `tool_calls`, and every call must be
/// answered before the next non-tool message.
fn validate_tool_sequence(messages: &[Value]) -> Result<(), ApiError> {
    fn role(m: &Value) -> &str {
        m.get("role").and_then(Value::as_str).unwrap_or("")
    }
    let mut i = 0;
    while i < messages.len() {
        let m = &messages[i];
        if role(m) == "tool" {
            return Err(ApiError::new(
                "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                Some(format!("messages.[{i}].role")),
                None,
            ));
        }
        let calls = m.get("tool_calls").and_then(Value::as_array);
        if role(m) == "assistant" && calls.is_some_and(|c| !c.is_empty()) {
            let mut pending: Vec<&str> = calls
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("id").and_then(Value::as_str))
                .collect();
            let mut answered = HashSet::new();
            let mut j = i + 1;
            while j < messages.len() && role(&messages[j]) == "tool" {
                if let Some(id) = messages[j].get("tool_call_id").and_then(Value::as_str) {
                    answered.insert(id);
                }
                j += 1;
            }
            pending.retain(|id| !answered.contains(id));
            if !pending.is_empty() {
                return Err(ApiError::new(
                    format!(
                        "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                        pending.join(", ")
                    ),
                    Some(format!("messages.[{i}].role")),
                    None,
                ));
            }
            i = j;
            continue;
        }
        i += 1;
    }
    Ok(())
}

fn validate_numbers(obj: &Map<String, Value>) -> Result<(), ApiError> {
    for (key, min) in [("n", 1), ("max_tokens", 1), ("max_completion_tokens", 1)] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_i64() {
                Some(x) if x < min => {
                    return Err(ApiError::new(
                        format!("Invalid '{key}': integer below minimum value. Expected a value >= {min}, but got {x} instead."),
                        Some(key.into()),
                        Some("integer_below_min_value"),
                    ))
                }
                Some(x) if key == "n" && x > 128 => {
                    return Err(ApiError::new(
                        format!("Invalid 'n': integer above maximum value. Expected a value <= 128, but got {x} instead."),
                        Some("n".into()),
                        Some("integer_above_max_value"),
                    ))
                }
                Some(_) => {}
                None => return Err(ApiError::wrong_type(key, "an integer", v)),
            },
        }
    }
    let ranges = [
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
    ];
    for (key, lo, hi) in ranges {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_f64() {
                Some(x) if x < lo => {
                    return Err(ApiError::new(
                        format!("Invalid '{key}': decimal below minimum value. Expected a value >= {lo}, but got {x} instead."),
                        Some(key.into()),
                        Some("decimal_below_min_value"),
                    ))
                }
                Some(x) if x > hi => {
                    return Err(ApiError::new(
                        format!("Invalid '{key}': decimal above maximum value. Expected a value <= {hi}, but got {x} instead."),
                        Some(key.into()),
                        Some("decimal_above_max_value"),
                    ))
                }
                Some(_) => {}
                None => return Err(ApiError::wrong_type(key, "a number", v)),
            },
        }
    }
    match obj.get("stop") {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(a)) if a.len() > 4 => Err(ApiError::new(
            format!("Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length {} instead.", a.len()),
            Some("stop".into()),
            Some("array_above_max_length"),
        )),
        Some(Value::Array(a)) => match a.iter().position(|s| !s.is_string()) {
            Some(k) => Err(ApiError::wrong_type(&format!("stop[{k}]"), "a string", &a[k])),
            None => Ok(()),
        },
        Some(other) => Err(ApiError::wrong_type("stop", "one of a string or array of strings", other)),
    }
}

fn validate_stream(obj: &Map<String, Value>) -> Result<(), ApiError> {
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(ApiError::wrong_type("stream", "a boolean", other)),
    };
    match obj.get("stream_options") {
        None | Some(Value::Null) => Ok(()),
        Some(_) if !stream => Err(ApiError::new(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            Some("stream_options".into()),
            None,
        )),
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) | Some(Value::Bool(_)) => Ok(()),
            Some(other) => Err(ApiError::wrong_type(
                "stream_options.include_usage",
                "a boolean",
                other,
            )),
        },
        Some(other) => Err(ApiError::wrong_type("stream_options", "an object", other)),
    }
}

fn validate_tools(obj: &Map<String, Value>) -> Result<(), ApiError> {
    let tools = match obj.get("tools") {
        None | Some(Value::Null) => None,
        Some(Value::Array(t)) if t.is_empty() => {
            return Err(ApiError::new(
                "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                Some("tools".into()),
                Some("empty_array"),
            ))
        }
        Some(Value::Array(t)) => Some(t),
        Some(other) => return Err(ApiError::wrong_type("tools", "an array", other)),
    };
    let mut names = Vec::new();
    for (i, t) in tools.into_iter().flatten().enumerate() {
        let at = format!("tools[{i}]");
        let Some(t) = t.as_object() else {
            return Err(ApiError::wrong_type(&at, "an object", t));
        };
        match t.get("type") {
            None => return Err(ApiError::missing(&format!("{at}.type"))),
            Some(Value::String(s)) if s == "function" || s == "custom" => {}
            Some(Value::String(s)) => {
                return Err(ApiError::bad_value(
                    &format!("{at}.type"),
                    s,
                    &["function", "custom"],
                ))
            }
            Some(other) => {
                return Err(ApiError::wrong_type(
                    &format!("{at}.type"),
                    "a string",
                    other,
                ))
            }
        }
        let Some(f) = t.get("function").and_then(Value::as_object) else {
            return Err(ApiError::missing(&format!("{at}.function")));
        };
        let name = match f.get("name") {
            None => return Err(ApiError::missing(&format!("{at}.function.name"))),
            Some(Value::String(n)) => n,
            Some(other) => {
                return Err(ApiError::wrong_type(
                    &format!("{at}.function.name"),
                    "a string",
                    other,
                ))
            }
        };
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(ApiError::new(
                format!("Invalid '{at}.function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."),
                Some(format!("{at}.function.name")),
                Some("invalid_value"),
            ));
        }
        if let Some(p) = f.get("parameters") {
            if !p.is_object() && !p.is_null() {
                return Err(ApiError::wrong_type(
                    &format!("{at}.function.parameters"),
                    "an object",
                    p,
                ));
            }
        }
        names.push(name.as_str());
    }
    for key in ["tool_choice", "parallel_tool_calls"] {
        if obj.get(key).is_some_and(|v| !v.is_null()) && names.is_empty() {
            return Err(ApiError::new(
                format!("Invalid value for '{key}': '{key}' is only allowed when 'tools' are specified."),
                Some(key.into()),
                None,
            ));
        }
    }
    match obj.get("tool_choice") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if ["none", "auto", "required"].contains(&s.as_str()) => Ok(()),
        Some(Value::String(s)) => Err(ApiError::bad_value(
            "tool_choice",
            s,
            &["none", "auto", "required"],
        )),
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            match name {
                None => Err(ApiError::missing("tool_choice.function.name")),
                Some(n) if !names.contains(&n) => Err(ApiError::new(
                    format!(
                        "Invalid value for 'tool_choice': function '{n}' not found in 'tools'."
                    ),
                    Some("tool_choice".into()),
                    Some("invalid_value"),
                )),
                Some(_) => Ok(()),
            }
        }
        Some(other) => Err(ApiError::wrong_type(
            "tool_choice",
            "one of a string or object",
            other,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(body: Value) -> ApiError {
        validate(&body).unwrap_err()
    }

    #[test]
    fn accepts_the_recorded_requests_shapes() {
        let ok = json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
            "tool_choice": "auto", "messages": [
                {"role": "user", "content": "What is the capital of the UK? Use the tool, then answer."},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_capital", "arguments": "{\"country\":\"UK\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "London"}],
            "tools": [{"type": "function", "function": {"name": "get_capital", "description": "", "parameters": {"type": "object"}, "strict": true}}]});
        assert_eq!(validate(&ok), Ok(()));
    }

    #[test]
    fn missing_messages_and_bad_types_name_the_param() {
        let e = err(json!({"model": "gpt-4o"}));
        assert_eq!(
            (e.param.as_deref(), e.code),
            (Some("messages"), Some("missing_required_parameter"))
        );
        let e = err(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        assert_eq!(e.code, Some("invalid_type"));
        assert!(e.message.contains("but got an integer instead"));
        let e = err(json!({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}));
        assert_eq!(e.code, Some("invalid_value"));
    }

    #[test]
    fn rejects_unknown_arguments_and_orphan_tool_results() {
        let e = err(
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "random_seed": 1}),
        );
        assert_eq!(
            e.message,
            "Unrecognized request argument supplied: random_seed"
        );
        let e = err(
            json!({"model": "gpt-4o", "messages": [{"role": "tool", "tool_call_id": "a", "content": "x"}]}),
        );
        assert_eq!(e.param.as_deref(), Some("messages.[0].role"));
        let e = err(json!({"model": "gpt-4o", "messages": [
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "x"}]}));
        assert!(e.message.ends_with("c1"));
    }

    #[test]
    fn stream_options_need_stream_and_tool_choice_needs_tools() {
        let e = err(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}),
        );
        assert_eq!(e.param.as_deref(), Some("stream_options"));
        let e = err(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
        );
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        let e = err(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
        );
        assert_eq!(e.code, Some("integer_below_min_value"));
    }
}
