//! OpenAI conversation → Anthropic `system` blocks and alternating `messages` turns.
//!
//! Anthropic wants the system prompt apart from the conversation, turns that alternate
//! strictly between `user` and `assistant` starting with `user`, tool calls as `tool_use`
//! blocks of the assistant turn, and tool results as `tool_result` blocks at the head of
//! the following user turn. OpenAI allows system messages anywhere, consecutive messages
//! of one role, and one `tool` message per result; this module reconciles the two.

use serde_json::{json, Map, Value};

use super::super::AdapterError;
use crate::api::{Content, ContentPart, Message, Role};

/// Text of the user turn inserted when a conversation does not start with one. Anthropic
/// rejects empty and whitespace-only text blocks, so it cannot be blank.
const PLACEHOLDER_USER_TEXT: &str = ".";

/// A conversation split into system text blocks (system and developer messages, in order)
/// and the `messages` array.
pub(super) fn conversation(messages: &[Message]) -> Result<(Vec<Value>, Vec<Value>), AdapterError> {
    let mut system: Vec<Value> = Vec::new();
    let mut turns = Turns::default();
    for (i, m) in messages.iter().enumerate() {
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
    Ok((system, turns.into_messages()))
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

/// A `text` content block.
pub(super) fn text_block(text: String) -> Value {
    json!({ "type": "text", "text": text })
}

/// Copies a client-supplied `cache_control` marker (an Anthropic extension some OpenAI
/// clients put on content parts and tools) onto the translated block.
pub(super) fn copy_cache_control(extra: &Map<String, Value>, block: &mut Value) {
    if let (Some(cc @ Value::Object(_)), Value::Object(b)) = (extra.get("cache_control"), block) {
        b.insert("cache_control".into(), cc.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The conversation of an OpenAI request body, as `{"system": [...], "messages": [...]}`.
    fn convert(req: Value) -> Result<Value, AdapterError> {
        let messages: Vec<Message> = serde_json::from_value(req["messages"].clone()).unwrap();
        let (system, messages) = conversation(&messages)?;
        Ok(json!({ "system": system, "messages": messages }))
    }

    fn ok(req: Value) -> Value {
        convert(req).unwrap()
    }

    fn invalid_param(req: Value) -> Option<String> {
        match convert(req) {
            Err(AdapterError::InvalidRequest { param, .. }) => param,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
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
