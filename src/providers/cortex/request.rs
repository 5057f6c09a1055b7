//! OpenAI chat request → native Cortex `inference:complete` body.
//!
//! Cortex's rules (spec `cortex-inference.yaml`, `CompleteRequest`): roles are `system`,
//! `user` and `assistant`; a system message may only come first; turns alternate; the last
//! message is a user turn. Rich content goes in `content_list` items (`text`, `image`,
//! `tool_use`, `tool_results`), and a tool result must name its tool, which OpenAI's `tool`
//! messages do not: the name is looked up from the assistant turn that made the call.
//! OpenAI parameters Cortex lacks (`stop`, `seed`, penalties, `logit_bias`, `user`, …) are
//! dropped; `n > 1` cannot be honoured and is refused.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

use super::COMPLETE_PATH;
use crate::api::{ChatRequest, Content, ContentPart, Message, Role, Tool, ToolChoice};
use crate::providers::{AdapterError, TargetSpec, UpstreamRequest};

/// Builds the `inference:complete` request.
pub fn build(req: &ChatRequest, target: &TargetSpec<'_>) -> Result<UpstreamRequest, AdapterError> {
    let body = body(req, target)?;
    let body = serde_json::to_vec(&body)
        .map_err(|e| AdapterError::invalid(format!("cannot encode request: {e}"), None))?;
    Ok(UpstreamRequest {
        path: COMPLETE_PATH.to_string(),
        headers: headers(),
        body: Bytes::from(body),
        stream: req.is_stream(),
    })
}

/// Format headers (authentication is added by the proxy).
fn headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (
            http::header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        ),
    ]
}

/// The JSON body of the `inference:complete` request.
pub fn body(req: &ChatRequest, target: &TargetSpec<'_>) -> Result<Value, AdapterError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(AdapterError::invalid(
            "Cortex returns a single choice; `n` greater than 1 is not supported for this model.",
            Some("n"),
        ));
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::from(target.upstream_model));
    out.insert("messages".into(), Value::Array(messages(&req.messages)?));
    if let Some(t) = req.temperature {
        out.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), json!(p));
    }
    let max_tokens = req.max_output_tokens().unwrap_or(target.default_max_tokens);
    out.insert("max_tokens".into(), Value::from(max_tokens));
    if let Some((tools, choice)) = tools(req)? {
        out.insert("tools".into(), tools);
        if let Some(choice) = choice {
            out.insert("tool_choice".into(), choice);
        }
    }
    if let Some(format) = response_format(req.response_format.as_ref())? {
        out.insert("response_format".into(), format);
    }
    // Cortex streams unless told otherwise, so the choice is always explicit.
    out.insert("stream".into(), Value::Bool(req.is_stream()));
    Ok(Value::Object(out))
}

/// One Cortex turn under construction: its role and its content items.
struct Turn {
    role: &'static str,
    items: Vec<Value>,
}

impl Turn {
    /// `content` when the turn is plain text (what every model accepts), else `content_list`.
    fn into_json(self) -> Value {
        let all_text = self.items.iter().all(|i| i["type"] == "text");
        if all_text {
            let text = self
                .items
                .iter()
                .filter_map(|i| i["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n\n");
            json!({"role": self.role, "content": text})
        } else {
            json!({"role": self.role, "content_list": self.items})
        }
    }
}

fn text_item(text: impl Into<String>) -> Value {
    json!({"type": "text", "text": text.into()})
}

/// Translates the conversation: one leading system message, then alternating user and
/// assistant turns ending with a user turn.
pub fn messages(msgs: &[Message]) -> Result<Vec<Value>, AdapterError> {
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    // Tool names by call id, from the assistant turns seen so far.
    let mut tool_names: HashMap<&str, &str> = HashMap::new();

    for (i, m) in msgs.iter().enumerate() {
        let (role, items) = match m.role {
            Role::System | Role::Developer => {
                let text = m.text_content();
                if !text.is_empty() {
                    system.push(text);
                }
                continue;
            }
            Role::User => ("user", user_items(m, i)?),
            Role::Assistant => {
                let mut items = Vec::new();
                let text = m.text_content();
                if !text.is_empty() {
                    items.push(text_item(text));
                }
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    tool_names.insert(call.id.as_str(), call.function.name.as_str());
                    let input = tool_input(&call.function.arguments).ok_or_else(|| {
                        AdapterError::invalid(
                            format!(
                                "messages[{i}].tool_calls[{j}].function.arguments is not a JSON object."
                            ),
                            Some(&format!("messages[{i}].tool_calls[{j}].function.arguments")),
                        )
                    })?;
                    items.push(json!({
                        "type": "tool_use",
                        "tool_use": {
                            "tool_use_id": call.id,
                            "name": call.function.name,
                            "input": input,
                        }
                    }));
                }
                if items.is_empty() {
                    // An empty assistant turn says nothing; Cortex would reject it.
                    continue;
                }
                ("assistant", items)
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().ok_or_else(|| {
                    AdapterError::invalid(
                        format!("messages[{i}] has role `tool` but no `tool_call_id`."),
                        Some(&format!("messages[{i}].tool_call_id")),
                    )
                })?;
                let name = tool_names.get(id).copied().ok_or_else(|| {
                    AdapterError::invalid(
                        format!(
                            "messages[{i}].tool_call_id `{id}` does not match any tool call of an earlier assistant message."
                        ),
                        Some(&format!("messages[{i}].tool_call_id")),
                    )
                })?;
                let item = json!({
                    "type": "tool_results",
                    "tool_results": {
                        "tool_use_id": id,
                        "name": name,
                        "content": [text_item(m.text_content())],
                    }
                });
                ("user", vec![item])
            }
            Role::Function => {
                return Err(AdapterError::invalid(
                    format!("messages[{i}] uses the deprecated `function` role; send tool results with role `tool`."),
                    Some(&format!("messages[{i}].role")),
                ))
            }
        };
        match turns.last_mut() {
            Some(last) if last.role == role => last.items.extend(items),
            _ => turns.push(Turn { role, items }),
        }
    }

    match turns.last() {
        None => {
            return Err(AdapterError::invalid(
                "Cortex needs at least one user message.",
                Some("messages"),
            ))
        }
        Some(last) if last.role != "user" => {
            return Err(AdapterError::invalid(
                "Cortex requires the conversation to end with a user or tool message; a final assistant message (prefill) is not supported.",
                Some("messages"),
            ))
        }
        Some(_) => {}
    }

    let mut out = Vec::with_capacity(turns.len() + 1);
    if !system.is_empty() {
        out.push(json!({"role": "system", "content": system.join("\n\n")}));
    }
    out.extend(turns.into_iter().map(Turn::into_json));
    Ok(out)
}

/// A user message's content items: text, and images given as base64 `data:` URLs.
fn user_items(m: &Message, i: usize) -> Result<Vec<Value>, AdapterError> {
    match &m.content {
        None => Ok(vec![text_item("")]),
        Some(Content::Text(t)) => Ok(vec![text_item(t.clone())]),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| user_part(p, i, j))
            .collect(),
    }
}

fn user_part(p: &ContentPart, i: usize, j: usize) -> Result<Value, AdapterError> {
    let param = format!("messages[{i}].content[{j}]");
    match p.kind.as_str() {
        "text" => Ok(text_item(p.text.clone().unwrap_or_default())),
        "image_url" => {
            let url = p.image_url.as_ref().map(|u| u.url.as_str()).unwrap_or("");
            let (content_type, data) = parse_data_url(url).ok_or_else(|| {
                AdapterError::invalid(
                    "Cortex accepts images only as base64 `data:` URLs (image/jpeg, image/png, image/gif or image/webp).",
                    Some(&param),
                )
            })?;
            let mut details = json!({
                "type": "base64",
                "content": data,
                "content_type": content_type,
            });
            if let Some(detail) = p.image_url.as_ref().and_then(|u| u.detail.as_deref()) {
                details["detail"] = Value::from(detail);
            }
            Ok(json!({"type": "image", "details": details}))
        }
        other => Err(AdapterError::invalid(
            format!("Content parts of type `{other}` are not supported by Cortex."),
            Some(&param),
        )),
    }
}

/// `data:image/png;base64,AAAA` → (`image/png`, `AAAA`).
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let content_type = meta.strip_suffix(";base64")?;
    const ALLOWED: [&str; 5] = [
        "image/jpeg",
        "image/jpg",
        "image/png",
        "image/gif",
        "image/webp",
    ];
    ALLOWED
        .contains(&content_type)
        .then_some((content_type, data))
}

/// OpenAI's arguments string as the JSON object Cortex wants (`""` counts as `{}`).
fn tool_input(arguments: &str) -> Option<Value> {
    if arguments.trim().is_empty() {
        return Some(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// `tools` and `tool_choice`, or `None` when no tools are to be sent.
fn tools(req: &ChatRequest) -> Result<Option<(Value, Option<Value>)>, AdapterError> {
    let Some(tools) = req.tools.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Mode(m)) => match m.as_str() {
            // Cortex has no "none"; not offering the tools has the same effect.
            "none" => return Ok(None),
            "auto" => Some(json!({"type": "auto"})),
            "required" => Some(json!({"type": "required"})),
            other => {
                return Err(AdapterError::invalid(
                    format!("Unknown tool_choice `{other}`; expected none, auto, required or a named function."),
                    Some("tool_choice"),
                ))
            }
        },
        Some(ToolChoice::Named(n)) => {
            let name = n.function.name.as_str();
            if !tools.iter().any(|t| t.function.name == name) {
                return Err(AdapterError::invalid(
                    format!("tool_choice names function `{name}`, which is not among `tools`."),
                    Some("tool_choice"),
                ));
            }
            Some(json!({"type": "tool", "name": [name]}))
        }
    };
    let specs = tools
        .iter()
        .enumerate()
        .map(|(i, t)| tool_spec(t, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((Value::Array(specs), choice)))
}

fn tool_spec(t: &Tool, i: usize) -> Result<Value, AdapterError> {
    if t.kind != "function" {
        return Err(AdapterError::invalid(
            format!("Tools of type `{}` are not supported by Cortex.", t.kind),
            Some(&format!("tools[{i}].type")),
        ));
    }
    let mut spec = Map::new();
    spec.insert("type".into(), Value::from("generic"));
    spec.insert("name".into(), Value::from(t.function.name.clone()));
    if let Some(d) = &t.function.description {
        spec.insert("description".into(), Value::from(d.clone()));
    }
    let schema = t
        .function
        .parameters
        .clone()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    spec.insert("input_schema".into(), schema);
    Ok(json!({"tool_spec": spec}))
}

/// OpenAI `response_format` → Cortex `{"type":"json","schema":…}`.
fn response_format(format: Option<&Value>) -> Result<Option<Value>, AdapterError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json", "schema": {"type": "object"}}))),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    AdapterError::invalid(
                        "response_format.json_schema.schema must be a JSON Schema object.",
                        Some("response_format.json_schema.schema"),
                    )
                })?;
            Ok(Some(json!({"type": "json", "schema": schema})))
        }
        _ => Err(AdapterError::invalid(
            "response_format.type must be text, json_object or json_schema.",
            Some("response_format.type"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::CortexMode;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn target() -> TargetSpec<'static> {
        let mut t = TargetSpec::new("claude-3-5-sonnet");
        t.cortex_mode = CortexMode::Complete;
        t
    }

    fn wire(v: Value) -> Result<Value, AdapterError> {
        body(&req(v), &target())
    }

    #[test]
    fn tool_result_carries_the_name_of_the_call_it_answers() {
        let b = wire(json!({"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "t2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "t2", "content": "noon"},
            {"role": "tool", "tool_call_id": "t1", "content": "rain"}
        ]}))
        .unwrap();
        let msgs = b["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3, "both tool results merge into one user turn");
        assert_eq!(msgs[1]["content_list"][1]["tool_use"]["input"], json!({}));
        let results = msgs[2]["content_list"].as_array().unwrap();
        assert_eq!(results[0]["tool_results"]["name"], "get_time");
        assert_eq!(results[1]["tool_results"]["name"], "get_weather");
        assert_eq!(results[1]["tool_results"]["tool_use_id"], "t1");
        assert_eq!(
            results[1]["tool_results"]["content"],
            json!([{"type": "text", "text": "rain"}])
        );
    }

    #[test]
    fn unknown_tool_call_id_is_an_invalid_request() {
        let e = wire(json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "nope", "content": "x"}
        ]}))
        .unwrap_err();
        match e {
            AdapterError::InvalidRequest { message, param } => {
                assert!(message.contains("nope"));
                assert_eq!(param.as_deref(), Some("messages[1].tool_call_id"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn system_and_developer_messages_merge_into_one_leading_system_message() {
        let b = wire(json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "No emoji."}
        ]}))
        .unwrap();
        assert_eq!(
            b["messages"],
            json!([
                {"role": "system", "content": "Be brief.\n\nAnswer in French.\n\nNo emoji."},
                {"role": "user", "content": "hi"}
            ])
        );
    }

    #[test]
    fn consecutive_user_messages_merge_and_turns_alternate() {
        let b = wire(json!({"model": "m", "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": "d"},
            {"role": "user", "content": "e"}
        ]}))
        .unwrap();
        assert_eq!(
            b["messages"],
            json!([
                {"role": "user", "content": "a\n\nb"},
                {"role": "assistant", "content": "c\n\nd"},
                {"role": "user", "content": "e"}
            ])
        );
    }

    #[test]
    fn conversation_ending_with_assistant_is_refused() {
        let e = wire(json!({"model": "m", "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "The answer is"}
        ]}))
        .unwrap_err();
        assert!(
            e.to_string().contains("end with a user or tool message"),
            "{e}"
        );
        let e = wire(json!({"model": "m", "messages": [{"role": "system", "content": "s"}]}))
            .unwrap_err();
        assert!(matches!(e, AdapterError::InvalidRequest { .. }));
    }

    #[test]
    fn tool_choice_maps_to_cortex_shapes_with_name_array() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]});
        let with = |choice: Value| {
            let mut v = base.clone();
            v["tool_choice"] = choice;
            wire(v)
        };
        let b = with(json!({"type": "function", "function": {"name": "f"}})).unwrap();
        assert_eq!(b["tool_choice"], json!({"type": "tool", "name": ["f"]}));
        assert_eq!(
            b["tools"],
            json!([{"tool_spec": {"type": "generic", "name": "f", "input_schema": {"type": "object"}}}])
        );
        assert_eq!(
            with(json!("auto")).unwrap()["tool_choice"],
            json!({"type": "auto"})
        );
        assert_eq!(
            with(json!("required")).unwrap()["tool_choice"],
            json!({"type": "required"})
        );
        let none = with(json!("none")).unwrap();
        assert!(none.get("tools").is_none() && none.get("tool_choice").is_none());
        assert!(with(json!({"type": "function", "function": {"name": "g"}})).is_err());
        assert!(wire(base.clone()).unwrap().get("tool_choice").is_none());
    }

    #[test]
    fn response_format_maps_json_schema_and_json_object() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        let with = |rf: Value| {
            let mut v = base.clone();
            v["response_format"] = rf;
            wire(v)
        };
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let b = with(json!({"type": "json_schema", "json_schema": {"name": "r", "strict": true, "schema": schema}}))
            .unwrap();
        assert_eq!(
            b["response_format"],
            json!({"type": "json", "schema": schema})
        );
        let b = with(json!({"type": "json_object"})).unwrap();
        assert_eq!(
            b["response_format"],
            json!({"type": "json", "schema": {"type": "object"}})
        );
        assert!(with(json!({"type": "text"}))
            .unwrap()
            .get("response_format")
            .is_none());
        assert!(with(json!({"type": "json_schema", "json_schema": {"name": "r"}})).is_err());
    }

    #[test]
    fn unsupported_parameters_are_dropped_but_n_above_one_is_refused() {
        let b = wire(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "stop": ["\n"], "seed": 1, "presence_penalty": 0.5, "frequency_penalty": 0.5,
            "logit_bias": {"1": 2}, "user": "u", "n": 1, "temperature": 0.2, "top_p": 0.9}),
        )
        .unwrap();
        assert_eq!(
            b,
            json!({"model": "claude-3-5-sonnet", "messages": [{"role": "user", "content": "x"}],
                "temperature": 0.2, "top_p": 0.9, "max_tokens": 4096, "stream": false})
        );
        let e = wire(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}))
            .unwrap_err();
        assert_eq!(e, AdapterError::invalid(e.to_string(), Some("n")));
    }

    #[test]
    fn stream_flag_is_always_explicit_and_max_tokens_prefers_the_client() {
        let b = wire(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "stream": true, "max_completion_tokens": 50, "max_tokens": 10}),
        )
        .unwrap();
        assert_eq!(b["stream"], true);
        assert_eq!(b["max_tokens"], 50);
    }

    #[test]
    fn images_must_be_base64_data_urls() {
        let b = wire(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}
            ]}]}),
        )
        .unwrap();
        assert_eq!(
            b["messages"][0]["content_list"],
            json!([
                {"type": "text", "text": "what is this"},
                {"type": "image", "details": {"type": "base64", "content": "AAA", "content_type": "image/png"}}
            ])
        );
        assert!(wire(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
            ]}]})
        )
        .is_err());
    }

    #[test]
    fn malformed_tool_arguments_in_history_are_refused() {
        let e = wire(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
            {"role": "tool", "tool_call_id": "a", "content": "r"}
        ]}))
        .unwrap_err();
        assert!(matches!(e, AdapterError::InvalidRequest { .. }));
    }
}
