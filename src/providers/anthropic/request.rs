//! OpenAI chat request → Anthropic Messages request body.
//!
//! Besides the conversation itself (see `messages`), the Messages API differs
//! from Chat Completions in its parameters: `max_tokens` is mandatory, `temperature` tops
//! out at 1, `stop` is `stop_sequences`, `user` is `metadata.user_id`, tools carry an
//! `input_schema`, `tool_choice` has its own shapes, and there is neither `n` nor
//! `response_format`.

use serde_json::{json, Map, Value};

use super::super::{AdapterError, TargetSpec};
use super::messages::{conversation, copy_cache_control, text_block};
use crate::api::{ChatRequest, ToolChoice};

/// Builds the `POST /v1/messages` body for `req`.
pub(super) fn build_body(
    req: &ChatRequest,
    target: &TargetSpec<'_>,
) -> Result<Value, AdapterError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(AdapterError::invalid(
            "Anthropic models return a single choice per request; `n` greater than 1 is not supported.",
            Some("n"),
        ));
    }

    let (mut system, messages) = conversation(&req.messages)?;
    if let Some(instruction) = response_format_instruction(req.response_format.as_ref())? {
        system.push(text_block(instruction));
    }

    let mut body = Map::new();
    body.insert("model".into(), Value::from(target.upstream_model));
    if let Some(system) = system_value(system) {
        body.insert("system".into(), system);
    }
    body.insert("messages".into(), Value::Array(messages));
    body.insert(
        "max_tokens".into(),
        Value::from(req.max_output_tokens().unwrap_or(target.default_max_tokens)),
    );
    if let Some(t) = req.temperature {
        // OpenAI accepts 0–2, Anthropic 0–1.
        body.insert("temperature".into(), Value::from(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), Value::from(p));
    }
    let stop = req.stop_sequences();
    if !stop.is_empty() {
        body.insert("stop_sequences".into(), Value::from(stop));
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    let tools = tools(req)?;
    let has_tools = !tools.is_empty();
    if has_tools {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = tool_choice(req, has_tools)? {
        body.insert("tool_choice".into(), choice);
    }
    if let Some(stream) = req.stream {
        body.insert("stream".into(), Value::Bool(stream));
    }
    Ok(Value::Object(body))
}

/// `system` as a plain string when it is one unannotated text, else as text blocks.
fn system_value(mut blocks: Vec<Value>) -> Option<Value> {
    match blocks.len() {
        0 => None,
        1 if blocks[0].get("cache_control").is_none() => blocks[0].get_mut("text").map(Value::take),
        _ => Some(Value::Array(blocks)),
    }
}

/// The Messages API has no `response_format`. JSON output is requested instead by an
/// instruction appended to the system prompt, which works on every model (the native
/// structured-output option exists only on some). The schema, when given, is included.
fn response_format_instruction(format: Option<&Value>) -> Result<Option<String>, AdapterError> {
    let Some(format) = format else {
        return Ok(None);
    };
    const JSON_ONLY: &str =
        "Respond with a single valid JSON object and nothing else: no prose, no code fences.";
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(JSON_ONLY.to_string())),
        Some("json_schema") => {
            let spec = format.get("json_schema");
            let schema = spec.and_then(|s| s.get("schema"));
            let name = spec.and_then(|s| s.get("name")).and_then(Value::as_str);
            Ok(Some(match (schema, name) {
                (Some(schema), Some(name)) => {
                    format!("{JSON_ONLY} The object must conform to this JSON Schema named `{name}`:\n{schema}")
                }
                (Some(schema), None) => {
                    format!("{JSON_ONLY} The object must conform to this JSON Schema:\n{schema}")
                }
                (None, _) => JSON_ONLY.to_string(),
            }))
        }
        _ => Err(AdapterError::invalid(
            "`response_format.type` must be `text`, `json_object` or `json_schema`.",
            Some("response_format"),
        )),
    }
}

/// Function tools as Anthropic tool definitions.
fn tools(req: &ChatRequest) -> Result<Vec<Value>, AdapterError> {
    let mut out = Vec::new();
    for (i, tool) in req.tools.iter().flatten().enumerate() {
        if tool.kind != "function" {
            return Err(AdapterError::invalid(
                format!("Tools of type `{}` are not supported.", tool.kind),
                Some(&format!("tools[{i}].type")),
            ));
        }
        let f = &tool.function;
        let mut def = Map::new();
        def.insert("name".into(), Value::from(f.name.as_str()));
        if let Some(d) = &f.description {
            def.insert("description".into(), Value::from(d.as_str()));
        }
        def.insert(
            "input_schema".into(),
            f.parameters
                .clone()
                .unwrap_or_else(|| json!({ "type": "object", "properties": {} })),
        );
        let mut def = Value::Object(def);
        copy_cache_control(&tool.extra, &mut def);
        out.push(def);
    }
    Ok(out)
}

/// `tool_choice`, with `parallel_tool_calls: false` folded in as
/// `disable_parallel_tool_use` (on `{"type":"auto"}` when the client chose nothing).
fn tool_choice(req: &ChatRequest, has_tools: bool) -> Result<Option<Value>, AdapterError> {
    let mut choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => Some(json!({ "type": "auto" })),
            "required" => Some(json!({ "type": "any" })),
            "none" => Some(json!({ "type": "none" })),
            other => {
                return Err(AdapterError::invalid(
                    format!("`tool_choice` must be `auto`, `required`, `none` or a named function, not `{other}`."),
                    Some("tool_choice"),
                ))
            }
        },
        Some(ToolChoice::Named(named)) => {
            Some(json!({ "type": "tool", "name": named.function.name }))
        }
    };
    if !has_tools {
        // Anthropic rejects tool_choice without tools; "auto" and "none" mean nothing then.
        return match &req.tool_choice {
            Some(c) if c.requires_tool() => Err(AdapterError::invalid(
                "`tool_choice` requires a tool but no `tools` were given.",
                Some("tool_choice"),
            )),
            _ => Ok(None),
        };
    }
    if req.parallel_tool_calls == Some(false) {
        let c = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        // `{"type":"none"}` takes no options: no call at all cannot be parallel.
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }
    Ok(choice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(req: Value) -> Result<Value, AdapterError> {
        let req: ChatRequest = serde_json::from_value(req).unwrap();
        build_body(&req, &TargetSpec::new("claude-sonnet-4-5"))
    }

    fn ok(req: Value) -> Value {
        build(req).unwrap()
    }

    fn invalid_param(req: Value) -> Option<String> {
        match build(req) {
            Err(AdapterError::InvalidRequest { param, .. }) => param,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn lifts_single_system_message_to_a_string() {
        let body = ok(json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"}
        ]}));
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
        );
    }

    #[test]
    fn joins_several_system_and_developer_messages_as_text_blocks() {
        let body = ok(json!({"model": "m", "messages": [
            {"role": "system", "content": "One."},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Two."}, {"type": "text", "text": "Three."}]}
        ]}));
        assert_eq!(
            body["system"],
            json!([
                {"type": "text", "text": "One."},
                {"type": "text", "text": "Two."},
                {"type": "text", "text": "Three."}
            ])
        );
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn sends_default_max_tokens_and_prefers_max_completion_tokens() {
        let body = ok(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
        assert_eq!(body["max_tokens"], 4096);
        let body = ok(
            json!({"model": "m", "max_tokens": 10, "max_completion_tokens": 20,
            "messages": [{"role": "user", "content": "x"}]}),
        );
        assert_eq!(body["max_tokens"], 20);
        let body = ok(json!({"model": "m", "max_tokens": 10,
            "messages": [{"role": "user", "content": "x"}]}));
        assert_eq!(body["max_tokens"], 10);
    }

    #[test]
    fn clamps_temperature_to_anthropic_range_and_keeps_top_p() {
        let body = ok(json!({"model": "m", "temperature": 1.7, "top_p": 0.9,
            "messages": [{"role": "user", "content": "x"}]}));
        assert_eq!(body["temperature"], 1.0);
        assert_eq!(body["top_p"], 0.9);
        let body = ok(json!({"model": "m", "temperature": 0.3,
            "messages": [{"role": "user", "content": "x"}]}));
        assert_eq!(body["temperature"], 0.3);
    }

    #[test]
    fn maps_stop_user_and_stream() {
        let body = ok(
            json!({"model": "m", "stop": "END", "user": "u-42", "stream": true,
            "seed": 7, "logit_bias": {"1": 2},
            "messages": [{"role": "user", "content": "x"}]}),
        );
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["metadata"], json!({"user_id": "u-42"}));
        assert_eq!(body["stream"], true);
        assert!(body.get("seed").is_none() && body.get("logit_bias").is_none());
        assert_eq!(body["model"], "claude-sonnet-4-5");
    }

    #[test]
    fn rejects_more_than_one_choice() {
        let p = invalid_param(
            json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}),
        );
        assert_eq!(p.as_deref(), Some("n"));
        assert!(build(
            json!({"model": "m", "n": 1, "messages": [{"role": "user", "content": "x"}]})
        )
        .is_ok());
    }

    #[test]
    fn translates_tools_with_default_schema() {
        let body = ok(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [
                {"type": "function", "function": {"name": "a", "description": "A tool",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "b"}}
            ]}),
        );
        assert_eq!(
            body["tools"],
            json!([
                {"name": "a", "description": "A tool",
                 "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}},
                {"name": "b", "input_schema": {"type": "object", "properties": {}}}
            ])
        );
        assert!(body.get("tool_choice").is_none());
    }

    #[test]
    fn maps_every_tool_choice() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        for (choice, expected) in [
            (json!("auto"), json!({"type": "auto"})),
            (json!("required"), json!({"type": "any"})),
            (json!("none"), json!({"type": "none"})),
            (
                json!({"type": "function", "function": {"name": "f"}}),
                json!({"type": "tool", "name": "f"}),
            ),
        ] {
            let body = ok(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "tools": tools, "tool_choice": choice}),
            );
            assert_eq!(body["tool_choice"], expected);
        }
    }

    #[test]
    fn parallel_tool_calls_false_disables_parallel_tool_use() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let body = ok(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": tools, "parallel_tool_calls": false}),
        );
        assert_eq!(
            body["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let body = ok(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": tools, "tool_choice": "required", "parallel_tool_calls": false}),
        );
        assert_eq!(
            body["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        let body = ok(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": tools, "parallel_tool_calls": true}),
        );
        assert!(body.get("tool_choice").is_none());
    }

    #[test]
    fn tool_choice_without_tools() {
        let body = ok(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tool_choice": "auto", "parallel_tool_calls": false}),
        );
        assert!(body.get("tool_choice").is_none() && body.get("tools").is_none());
        let p = invalid_param(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tool_choice": "required"}),
        );
        assert_eq!(p.as_deref(), Some("tool_choice"));
    }

    #[test]
    fn response_format_becomes_a_system_instruction() {
        let body = ok(json!({"model": "m", "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "x"}
            ],
            "response_format": {"type": "json_schema", "json_schema": {"name": "city",
                "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}}));
        let system = body["system"].as_array().unwrap();
        assert_eq!(system.len(), 2);
        assert_eq!(system[0], json!({"type": "text", "text": "Be brief."}));
        let instruction = system[1]["text"].as_str().unwrap();
        assert!(instruction.contains("JSON object"));
        assert!(instruction.contains("`city`"));
        assert!(
            instruction.contains(r#"{"type":"object","properties":{"name":{"type":"string"}}}"#)
        );

        let body = ok(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"}}),
        );
        assert!(body["system"].as_str().unwrap().contains("JSON object"));
        let body = ok(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "text"}}),
        );
        assert!(body.get("system").is_none());
        let p = invalid_param(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "yaml"}}),
        );
        assert_eq!(p.as_deref(), Some("response_format"));
    }

    #[test]
    fn keeps_cache_control_markers_on_parts_and_tools() {
        let body = ok(json!({"model": "m", "messages": [
                {"role": "system", "content": [{"type": "text", "text": "long prompt", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": [{"type": "text", "text": "q", "cache_control": {"type": "ephemeral"}}]}
            ],
            "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}]}));
        assert_eq!(
            body["system"],
            json!([{"type": "text", "text": "long prompt", "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(
            body["messages"][0]["content"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(
            body["tools"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
    }
}
