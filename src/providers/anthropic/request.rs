//! OpenAI chat request → Anthropic Messages request body.
//!
//! The Messages API differs from Chat Completions in ways that need more than renaming:
//! the system prompt is a top-level field, turns must alternate strictly between `user`
//! and `assistant` starting with `user`, tool calls and tool results are content blocks
//! (results in a user turn, ahead of any text), `max_tokens` is mandatory, `temperature`
//! tops out at 1, and there is neither `n` nor `response_format`.

use serde_json::{json, Map, Value};

use super::super::{AdapterError, TargetSpec};
use crate::api::{ChatRequest, Content, ContentPart, Message, Role, ToolChoice};

/// Text of the user turn inserted when a conversation does not start with one. Anthropic
/// rejects empty and whitespace-only text blocks, so it cannot be blank.
const PLACEHOLDER_USER_TEXT: &str = ".";

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

    let mut system: Vec<Value> = Vec::new();
    let mut turns = Turns::default();
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => system.extend(system_blocks(m, i)?),
            Role::User => turns.push(Side::User, content_blocks(m.content.as_ref(), i)?),
            Role::Assistant => turns.push(Side::Assistant, assistant_blocks(m, i)?),
            Role::Tool => turns.push(Side::User, vec![tool_result_block(m, i)?]),
            Role::Function => {
                return Err(AdapterError::invalid(
                    "Messages with role `function` are not supported; use `tool` messages.",
                    Some(&format!("messages[{i}].role")),
                ))
            }
        }
    }
    if let Some(instruction) = response_format_instruction(req.response_format.as_ref())? {
        system.push(text_block(instruction));
    }

    let mut body = Map::new();
    body.insert("model".into(), Value::from(target.upstream_model));
    if let Some(system) = system_value(system) {
        body.insert("system".into(), system);
    }
    body.insert("messages".into(), Value::Array(turns.into_messages()));
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

/// Which side of the conversation a turn belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    User,
    Assistant,
}

/// Conversation turns under construction, kept alternating.
#[derive(Default)]
struct Turns {
    turns: Vec<(Side, Vec<Value>)>,
}

impl Turns {
    /// Appends `blocks` as a turn of `side`, merged into the previous turn when that turn is
    /// on the same side. `tool_result` blocks go ahead of any other block of their turn, as
    /// Anthropic requires.
    fn push(&mut self, side: Side, blocks: Vec<Value>) {
        if blocks.is_empty() {
            return;
        }
        match self.turns.last_mut() {
            Some((last, existing)) if *last == side => {
                for block in blocks {
                    if is_tool_result(&block) {
                        let pos = existing.iter().take_while(|b| is_tool_result(b)).count();
                        existing.insert(pos, block);
                    } else {
                        existing.push(block);
                    }
                }
            }
            _ => self.turns.push((side, blocks)),
        }
    }

    /// The `messages` array. A conversation must open with a user turn, so a minimal one is
    /// inserted when it opens with the assistant (or has no turns at all).
    fn into_messages(mut self) -> Vec<Value> {
        if self
            .turns
            .first()
            .is_none_or(|(side, _)| *side != Side::User)
        {
            self.turns.insert(
                0,
                (
                    Side::User,
                    vec![text_block(PLACEHOLDER_USER_TEXT.to_string())],
                ),
            );
        }
        self.turns
            .into_iter()
            .map(|(side, content)| {
                let role = match side {
                    Side::User => "user",
                    Side::Assistant => "assistant",
                };
                json!({ "role": role, "content": content })
            })
            .collect()
    }
}

fn is_tool_result(block: &Value) -> bool {
    block.get("type").and_then(Value::as_str) == Some("tool_result")
}

fn text_block(text: String) -> Value {
    json!({ "type": "text", "text": text })
}

/// Copies a client-supplied `cache_control` marker (an Anthropic extension some OpenAI
/// clients put on content parts and tools) onto the translated block.
fn copy_cache_control(extra: &Map<String, Value>, block: &mut Value) {
    if let (Some(cc @ Value::Object(_)), Value::Object(b)) = (extra.get("cache_control"), block) {
        b.insert("cache_control".into(), cc.clone());
    }
}

/// `system` as a plain string when it is one unannotated text, else as text blocks.
fn system_value(mut blocks: Vec<Value>) -> Option<Value> {
    match blocks.len() {
        0 => None,
        1 if blocks[0].get("cache_control").is_none() => blocks[0].get_mut("text").map(Value::take),
        _ => Some(Value::Array(blocks)),
    }
}

/// Text blocks of a system or developer message (only text is allowed there).
fn system_blocks(m: &Message, i: usize) -> Result<Vec<Value>, AdapterError> {
    match &m.content {
        None => Ok(Vec::new()),
        Some(Content::Text(s)) => Ok(non_empty_text(s).into_iter().collect()),
        Some(Content::Parts(parts)) => {
            let mut blocks = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                match (part.kind.as_str(), part.text.as_deref()) {
                    ("text", Some(text)) => {
                        if let Some(mut block) = non_empty_text(text) {
                            copy_cache_control(&part.extra, &mut block);
                            blocks.push(block);
                        }
                    }
                    _ => {
                        return Err(AdapterError::invalid(
                            format!(
                                "Content parts of type `{}` are not allowed in {} messages.",
                                part.kind,
                                m.role.as_str()
                            ),
                            Some(&format!("messages[{i}].content[{j}]")),
                        ))
                    }
                }
            }
            Ok(blocks)
        }
    }
}

fn non_empty_text(s: &str) -> Option<Value> {
    (!s.is_empty()).then(|| text_block(s.to_string()))
}

/// Blocks of user content (also used for tool results): text and images.
fn content_blocks(content: Option<&Content>, i: usize) -> Result<Vec<Value>, AdapterError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(s)) => Ok(non_empty_text(s).into_iter().collect()),
        Some(Content::Parts(parts)) => {
            let mut blocks = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                if let Some(mut block) = part_block(part, i, j)? {
                    copy_cache_control(&part.extra, &mut block);
                    blocks.push(block);
                }
            }
            Ok(blocks)
        }
    }
}

fn part_block(part: &ContentPart, i: usize, j: usize) -> Result<Option<Value>, AdapterError> {
    let param = || format!("messages[{i}].content[{j}]");
    match part.kind.as_str() {
        "text" => Ok(part.text.as_deref().and_then(non_empty_text)),
        "image_url" => {
            let url = part
                .image_url
                .as_ref()
                .map(|u| u.url.as_str())
                .ok_or_else(|| {
                    AdapterError::invalid(
                        "An `image_url` part needs an `image_url.url`.",
                        Some(&param()),
                    )
                })?;
            image_block(url).map(Some).ok_or_else(|| {
                AdapterError::invalid(
                    "Images must be http(s) URLs or base64 `data:` URLs.",
                    Some(&format!("{}.image_url.url", param())),
                )
            })
        }
        other => Err(AdapterError::invalid(
            format!("Content parts of type `{other}` are not supported by this model."),
            Some(&param()),
        )),
    }
}

/// An Anthropic image block for an OpenAI image URL: `data:<media>;base64,<data>` becomes a
/// base64 source, an http(s) URL a url source.
fn image_block(url: &str) -> Option<Value> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (header, data) = rest.split_once(',')?;
        let mut params = header.split(';');
        let media_type = params.next().filter(|m| !m.is_empty())?;
        if !params.any(|p| p.eq_ignore_ascii_case("base64")) {
            return None;
        }
        return Some(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data }
        }));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Some(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    None
}

/// An assistant turn: its text first, then one `tool_use` block per tool call.
fn assistant_blocks(m: &Message, i: usize) -> Result<Vec<Value>, AdapterError> {
    let mut blocks = Vec::new();
    match &m.content {
        None => {}
        Some(Content::Text(s)) => blocks.extend(non_empty_text(s)),
        Some(Content::Parts(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                match part.kind.as_str() {
                    "text" => blocks.extend(part.text.as_deref().and_then(non_empty_text)),
                    "refusal" => blocks.extend(
                        part.extra
                            .get("refusal")
                            .and_then(Value::as_str)
                            .and_then(non_empty_text),
                    ),
                    other => {
                        return Err(AdapterError::invalid(
                            format!("Content parts of type `{other}` are not allowed in assistant messages."),
                            Some(&format!("messages[{i}].content[{j}]")),
                        ))
                    }
                }
            }
        }
    }
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        let param = format!("messages[{i}].tool_calls[{j}]");
        if call.kind != "function" {
            return Err(AdapterError::invalid(
                format!("Tool calls of type `{}` are not supported.", call.kind),
                Some(&format!("{param}.type")),
            ));
        }
        let args = call.function.arguments.trim();
        let input = if args.is_empty() {
            Value::Object(Map::new())
        } else {
            match serde_json::from_str::<Value>(args) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(AdapterError::invalid(
                        format!(
                            "The arguments of tool call `{}` must be a JSON object.",
                            call.id
                        ),
                        Some(&format!("{param}.function.arguments")),
                    ))
                }
            }
        };
        blocks.push(json!({
            "type": "tool_use",
            "id": call.id,
            "name": call.function.name,
            "input": input,
        }));
    }
    Ok(blocks)
}

/// A `tool` message as a `tool_result` block.
fn tool_result_block(m: &Message, i: usize) -> Result<Value, AdapterError> {
    let id = m.tool_call_id.as_deref().ok_or_else(|| {
        AdapterError::invalid(
            "A `tool` message needs a `tool_call_id`.",
            Some(&format!("messages[{i}].tool_call_id")),
        )
    })?;
    let mut block = Map::new();
    block.insert("type".into(), Value::from("tool_result"));
    block.insert("tool_use_id".into(), Value::from(id));
    match &m.content {
        Some(Content::Text(s)) if !s.is_empty() => {
            block.insert("content".into(), Value::from(s.as_str()));
        }
        Some(parts @ Content::Parts(_)) => {
            let blocks = content_blocks(Some(parts), i)?;
            if !blocks.is_empty() {
                block.insert("content".into(), Value::Array(blocks));
            }
        }
        _ => {}
    }
    Ok(Value::Object(block))
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
    fn translates_data_url_and_http_images() {
        let body = ok(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]}]}),
        );
        assert_eq!(
            body["messages"][0]["content"],
            json!([
                {"type": "text", "text": "what is this"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ])
        );
    }

    #[test]
    fn rejects_images_that_are_neither_http_nor_base64() {
        for url in [
            "ftp://x/y.png",
            "data:image/png,rawbytes",
            "data:;base64,AAA",
        ] {
            let p = invalid_param(
                json!({"model": "m", "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": url}}
                ]}]}),
            );
            assert_eq!(
                p.as_deref(),
                Some("messages[0].content[0].image_url.url"),
                "{url}"
            );
        }
    }

    #[test]
    fn rejects_unsupported_content_parts() {
        let p = invalid_param(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}
            ]}]}),
        );
        assert_eq!(p.as_deref(), Some("messages[0].content[0]"));
    }

    #[test]
    fn assistant_tool_calls_become_tool_use_blocks_after_text() {
        let body = ok(json!({"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]}
        ]}));
        assert_eq!(
            body["messages"][1],
            json!({"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
            ]})
        );
    }

    #[test]
    fn rejects_tool_call_arguments_that_are_not_a_json_object() {
        for args in ["{not json", "[1,2]"] {
            let p = invalid_param(json!({"model": "m", "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": args}}
                ]}
            ]}));
            assert_eq!(
                p.as_deref(),
                Some("messages[1].tool_calls[0].function.arguments")
            );
        }
    }

    #[test]
    fn merges_consecutive_tool_results_into_one_user_turn() {
        let body = ok(json!({"model": "m", "messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"c\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "w", "arguments": "{\"c\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
            {"role": "user", "content": "Which is warmer?"}
        ]}));
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(
            messages[2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
                {"type": "text", "text": "Which is warmer?"}
            ]})
        );
    }

    #[test]
    fn tool_results_go_ahead_of_user_text_already_in_the_turn() {
        let body = ok(json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ]},
            {"role": "user", "content": "by the way"},
            {"role": "tool", "tool_call_id": "call_1", "content": ""}
        ]}));
        assert_eq!(
            body["messages"][2]["content"],
            json!([
                {"type": "tool_result", "tool_use_id": "call_1"},
                {"type": "text", "text": "by the way"}
            ])
        );
    }

    #[test]
    fn merges_consecutive_same_role_messages_and_starts_with_a_user_turn() {
        let body = ok(json!({"model": "m", "messages": [
            {"role": "system", "content": "s"},
            {"role": "assistant", "content": "Hello, how can I help?"},
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": "a"},
            {"role": "assistant", "content": "b"}
        ]}));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "."}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Hello, how can I help?"}]},
                {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ])
        );
    }

    #[test]
    fn system_only_conversation_gets_a_user_turn() {
        let body =
            ok(json!({"model": "m", "messages": [{"role": "system", "content": "Say hi."}]}));
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "."}]}])
        );
    }

    #[test]
    fn tool_message_without_id_is_rejected() {
        let p = invalid_param(json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "tool", "content": "r"}
        ]}));
        assert_eq!(p.as_deref(), Some("messages[1].tool_call_id"));
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

    #[test]
    fn rejects_function_role_and_images_in_system() {
        let p = invalid_param(json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "function", "name": "f", "content": "r"}
        ]}));
        assert_eq!(p.as_deref(), Some("messages[1].role"));
        let p = invalid_param(json!({"model": "m", "messages": [
            {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            {"role": "user", "content": "q"}
        ]}));
        assert_eq!(p.as_deref(), Some("messages[0].content[0]"));
    }
}
