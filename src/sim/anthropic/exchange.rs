//! From a validated Messages API body to the provider-neutral [`Exchange`]: the last user
//! text (where directives live), tools and `tool_choice`, the conversation seed, and the
//! prompt's token count.
//!
//! Claude's tokenizer is not public, so input tokens are counted with `cl100k_base` (an
//! approximation) plus fixed overheads chosen so that plain recorded prompts come out at the
//! recorded counts: 4 tokens per request, 3 per message, and, when tools are offered, the
//! hidden tool-use system prompt Anthropic documents (346 tokens with `auto` / `none`, 313
//! with `any` / `tool`) plus each tool definition as JSON. Images cost `width × height / 750`
//! tokens (at most 1600) when the size can be read from a base64 PNG or GIF header, else
//! 1600.

use base64::Engine;
use serde_json::{json, Value};

use crate::sim::reply::{Exchange, ToolMode, ToolSpec};
use crate::sim::text::stable_hash;
use crate::tokens::Encoding;

/// The encoding used to count Claude tokens.
pub(super) const ENCODING: Encoding = Encoding::Cl100k;

const PER_REQUEST: u64 = 4;
const PER_MESSAGE: u64 = 3;
const TOOL_PROMPT_AUTO: u64 = 346;
const TOOL_PROMPT_FORCED: u64 = 313;
const IMAGE_MAX_TOKENS: u64 = 1600;

/// The blocks of a message's content (a string is one text block).
fn blocks(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

fn block_type(b: &Value) -> &str {
    b.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Text of the user's last own words: the last `user` message with text of its own (a turn
/// holding only tool results is skipped, as OpenAI's `tool` messages are).
pub(super) fn last_user_text(body: &Value) -> Option<String> {
    let messages = body.get("messages")?.as_array()?;
    messages
        .iter()
        .rev()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| {
            blocks(m.get("content"))
                .iter()
                .filter(|b| block_type(b) == "text")
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .find(|t| !t.is_empty())
}

/// Whether any part of the request asks for prompt caching.
pub(super) fn uses_cache_control(body: &Value) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Object(o) => o.contains_key("cache_control") || o.values().any(walk),
            Value::Array(a) => a.iter().any(walk),
            _ => false,
        }
    }
    body.get("cache_control").is_some_and(|c| !c.is_null())
        || ["system", "messages", "tools"]
            .iter()
            .filter_map(|k| body.get(*k))
            .any(walk)
}

/// Offered custom tools (server tools are run by the API itself, never by the client).
fn custom_tools(body: &Value) -> Vec<ToolSpec> {
    body.get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| matches!(t.get("type").and_then(Value::as_str), None | Some("custom")))
        .map(|t| ToolSpec {
            name: t
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            parameters: t
                .get("input_schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        })
        .collect()
}

fn tool_mode(body: &Value, has_tools: bool) -> ToolMode {
    let choice = body.get("tool_choice");
    match choice.and_then(|c| c.get("type")).and_then(Value::as_str) {
        _ if !has_tools => ToolMode::None,
        Some("none") => ToolMode::None,
        Some("any") => ToolMode::Required,
        Some("tool") => ToolMode::Named(
            choice
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
        _ => ToolMode::Auto,
    }
}

/// The exchange for a validated body.
pub(super) fn exchange(body: Value) -> Exchange {
    let tools = custom_tools(&body);
    let tool_choice = tool_mode(&body, !tools.is_empty());
    let parallel = !body
        .pointer("/tool_choice/disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let last_is_tool_result = messages.last().is_some_and(|m| {
        m.get("role").and_then(Value::as_str) == Some("user")
            && blocks(m.get("content"))
                .iter()
                .any(|b| block_type(b) == "tool_result")
    });
    let seed_source = json!([
        body.get("model"),
        body.get("system"),
        messages,
        body.get("tools"),
        body.get("tool_choice"),
    ]);
    Exchange {
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: true,
        n: 1,
        max_tokens: body
            .get("max_tokens")
            .and_then(Value::as_u64)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        // Stop sequences are applied when the answer is rendered, to tell `stop_sequence`
        // from `end_turn`.
        stop: Vec::new(),
        tools,
        tool_choice,
        parallel_tool_calls: parallel,
        last_user_text: last_user_text(&body).unwrap_or_default(),
        last_is_tool_result,
        prompt_tokens: count_input(&body),
        encoding: ENCODING,
        seed: stable_hash(seed_source.to_string().as_bytes()),
        body,
    }
}

/// Input tokens of a request (see the module docs for the approximation).
pub(super) fn count_input(body: &Value) -> u64 {
    let enc = ENCODING;
    let mut n = PER_REQUEST;
    match body.get("system") {
        Some(Value::String(s)) => n += enc.count(s),
        Some(Value::Array(parts)) => {
            for p in parts {
                n += p
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or(0, |t| enc.count(t));
            }
        }
        _ => {}
    }
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        n += PER_MESSAGE;
        for b in blocks(m.get("content")) {
            n += block_tokens(&b);
        }
    }
    let tools = body.get("tools").and_then(Value::as_array);
    if let Some(tools) = tools.filter(|t| !t.is_empty()) {
        let forced = matches!(
            body.pointer("/tool_choice/type").and_then(Value::as_str),
            Some("any" | "tool")
        );
        n += if forced {
            TOOL_PROMPT_FORCED
        } else {
            TOOL_PROMPT_AUTO
        };
        for t in tools {
            let definition = json!({
                "name": t.get("name"),
                "description": t.get("description"),
                "input_schema": t.get("input_schema"),
            });
            n += enc.count(&definition.to_string());
        }
    }
    n
}

fn block_tokens(b: &Value) -> u64 {
    let enc = ENCODING;
    let text = |key: &str| {
        b.get(key)
            .and_then(Value::as_str)
            .map_or(0, |t| enc.count(t))
    };
    match block_type(b) {
        "text" => text("text"),
        "thinking" => text("thinking"),
        "image" => image_tokens(b.get("source")),
        "tool_use" => 3 + text("name") + b.get("input").map_or(0, |i| enc.count(&i.to_string())),
        "tool_result" => {
            3 + match b.get("content") {
                Some(Value::String(s)) => enc.count(s),
                Some(Value::Array(parts)) => parts.iter().map(block_tokens).sum(),
                _ => 0,
            }
        }
        "document" => b
            .pointer("/source/data")
            .and_then(Value::as_str)
            .map_or(IMAGE_MAX_TOKENS, |d| enc.count(d)),
        _ => 0,
    }
}

/// `width × height / 750` for a base64 PNG or GIF whose header can be read, else the maximum.
fn image_tokens(source: Option<&Value>) -> u64 {
    let dims = source
        .filter(|s| s.get("type").and_then(Value::as_str) == Some("base64"))
        .and_then(|s| s.get("data"))
        .and_then(Value::as_str)
        .and_then(|data| {
            // The header is in the first few dozen bytes (whole 4-character base64 groups).
            let bytes = data.as_bytes();
            let head = &bytes[..bytes.len().min(64) / 4 * 4];
            base64::engine::general_purpose::STANDARD.decode(head).ok()
        })
        .and_then(|bytes| image_size(&bytes));
    match dims {
        Some((w, h)) => (w * h / 750).clamp(1, IMAGE_MAX_TOKENS),
        None => IMAGE_MAX_TOKENS,
    }
}

fn image_size(bytes: &[u8]) -> Option<(u64, u64)> {
    let be = |b: &[u8]| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let le16 = |b: &[u8]| u64::from(u16::from_le_bytes([b[0], b[1]]));
    if bytes.len() >= 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some((be(&bytes[16..20]), be(&bytes[20..24])));
    }
    if bytes.len() >= 10 && bytes.starts_with(b"GIF8") {
        return Some((le16(&bytes[6..8]), le16(&bytes[8..10])));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_prompts_count_like_the_recordings() {
        // Recorded: 20 input tokens each.
        let a = json!({"model": "claude-3-opus-latest", "max_tokens": 4096, "system": "You are a helpful assistant.\n\n",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]});
        let b = json!({"model": "claude-sonnet-4-5", "max_tokens": 32000,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "What is 1+1? Answer with just the number."}]}]});
        assert_eq!(count_input(&a), 20);
        assert_eq!(count_input(&b), 20);
    }

    #[test]
    fn tool_results_only_turns_are_not_the_users_words() {
        let body = json!({"messages": [
            {"role": "user", "content": "weather in Paris"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]}
        ]});
        assert_eq!(last_user_text(&body).as_deref(), Some("weather in Paris"));
        let ex = exchange(body);
        assert!(ex.last_is_tool_result);
    }

    #[test]
    fn tool_choice_maps_to_modes() {
        let tools = json!([{"name": "w", "input_schema": {"type": "object"}}]);
        let mode = |choice: Value| {
            let body = json!({"tools": tools, "tool_choice": choice});
            tool_mode(&body, true)
        };
        assert_eq!(mode(json!({"type": "any"})), ToolMode::Required);
        assert_eq!(mode(json!({"type": "none"})), ToolMode::None);
        assert_eq!(
            mode(json!({"type": "tool", "name": "w"})),
            ToolMode::Named("w".into())
        );
        assert_eq!(mode(Value::Null), ToolMode::Auto);
    }

    #[test]
    fn png_size_sets_image_tokens() {
        // A 1500x1000 PNG header.
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&1500u32.to_be_bytes());
        png.extend_from_slice(&1000u32.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0]);
        let data = base64::engine::general_purpose::STANDARD.encode(&png);
        let source = json!({"type": "base64", "media_type": "image/png", "data": data});
        assert_eq!(image_tokens(Some(&source)), 1600);
        let mut small = png.clone();
        small[16..20].copy_from_slice(&300u32.to_be_bytes());
        small[20..24].copy_from_slice(&250u32.to_be_bytes());
        let data = base64::engine::general_purpose::STANDARD.encode(&small);
        let source = json!({"type": "base64", "media_type": "image/png", "data": data});
        assert_eq!(image_tokens(Some(&source)), 100);
        // Not base64 at all, multi-byte characters included: the maximum, no panic.
        let source =
            json!({"type": "base64", "media_type": "image/png", "data": "ééééééééé".repeat(20)});
        assert_eq!(image_tokens(Some(&source)), 1600);
    }
}
