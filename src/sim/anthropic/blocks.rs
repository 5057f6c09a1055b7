//! Content blocks of the simulated Anthropic API's messages: which block types exist, and
//! the in-depth checks of `text`, `image`, `tool_use` and `tool_result` blocks (required
//! fields, unknown keys, media types, the tool-id pattern, which role may hold which block).

use serde_json::{Map, Value};

use super::validate::{fail, Check};

/// Content block types the API knows; the simulator checks the first four in depth.
const BLOCK_TYPES: &[&str] = &[
    "text",
    "image",
    "tool_use",
    "tool_result",
    "document",
    "search_result",
    "thinking",
    "redacted_thinking",
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "mcp_tool_use",
    "mcp_tool_result",
    "container_upload",
];

const IMAGE_MEDIA_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Keys of a block other than `allowed` are rejected.
pub(super) fn no_extra(o: &Map<String, Value>, at: &str, allowed: &[&str]) -> Check {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => fail(format!("{at}.{k}: Extra inputs are not permitted")),
        None => Ok(()),
    }
}

pub(super) fn text_block(o: &Map<String, Value>, at: &str) -> Check {
    no_extra(
        o,
        &format!("{at}.text"),
        &["type", "text", "cache_control", "citations"],
    )?;
    let text = match o.get("text") {
        Some(Value::String(t)) => t,
        Some(_) => return fail(format!("{at}.text.text: Input should be a valid string")),
        None => return fail(format!("{at}.text.text: Field required")),
    };
    if text.is_empty() {
        return fail("messages: text content blocks must be non-empty");
    }
    if text.trim().is_empty() {
        return fail("messages: text content blocks must contain non-whitespace text");
    }
    Ok(())
}

fn image_block(o: &Map<String, Value>, at: &str) -> Check {
    no_extra(
        o,
        &format!("{at}.image"),
        &["type", "source", "cache_control"],
    )?;
    let Some(source) = o.get("source").and_then(Value::as_object) else {
        return fail(format!("{at}.image.source: Field required"));
    };
    let at = format!("{at}.image.source");
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source.get("media_type").and_then(Value::as_str);
            if !media.is_some_and(|m| IMAGE_MEDIA_TYPES.contains(&m)) {
                return fail(format!("{at}.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"));
            }
            if !source.get("data").is_some_and(Value::is_string) {
                return fail(format!("{at}.base64.data: Field required"));
            }
            Ok(())
        }
        Some("url") => match source.get("url") {
            Some(Value::String(_)) => Ok(()),
            _ => fail(format!("{at}.url.url: Field required")),
        },
        Some("file") => Ok(()),
        Some(t) => fail(format!("{at}: Input tag '{t}' found using 'type' does not match any of the expected tags: 'base64', 'url', 'file'")),
        None => fail(format!("{at}: Unable to extract tag using discriminator 'type'")),
    }
}

/// Tool-use ids must match this pattern (the API rejects OpenAI-style ids with other
/// characters).
fn valid_tool_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

const TOOL_ID_PATTERN: &str = "^[a-zA-Z0-9_-]+$";

fn tool_use_block(o: &Map<String, Value>, at: &str) -> Check {
    let at = format!("{at}.tool_use");
    no_extra(
        o,
        &at,
        &["type", "id", "name", "input", "cache_control", "caller"],
    )?;
    match o.get("id") {
        Some(Value::String(id)) if valid_tool_id(id) => {}
        Some(Value::String(_)) => {
            return fail(format!(
                "{at}.id: String should match pattern '{TOOL_ID_PATTERN}'"
            ))
        }
        Some(_) => return fail(format!("{at}.id: Input should be a valid string")),
        None => return fail(format!("{at}.id: Field required")),
    }
    if !o.get("name").is_some_and(Value::is_string) {
        return fail(format!("{at}.name: Field required"));
    }
    match o.get("input") {
        Some(Value::Object(_)) => Ok(()),
        Some(_) => fail(format!("{at}.input: Input should be a valid dictionary")),
        None => fail(format!("{at}.input: Field required")),
    }
}

fn tool_result_block(o: &Map<String, Value>, at: &str) -> Check {
    let at_block = format!("{at}.tool_result");
    no_extra(
        o,
        &at_block,
        &[
            "type",
            "tool_use_id",
            "content",
            "is_error",
            "cache_control",
        ],
    )?;
    match o.get("tool_use_id") {
        Some(Value::String(id)) if valid_tool_id(id) => {}
        Some(Value::String(_)) => {
            return fail(format!(
                "{at_block}.tool_use_id: String should match pattern '{TOOL_ID_PATTERN}'"
            ))
        }
        _ => return fail(format!("{at_block}.tool_use_id: Field required")),
    }
    if o.get("is_error").is_some_and(|v| !v.is_boolean()) {
        return fail(format!(
            "{at_block}.is_error: Input should be a valid boolean"
        ));
    }
    match o.get("content") {
        None | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(parts)) => {
            for (k, p) in parts.iter().enumerate() {
                let at_part = format!("{at_block}.content.{k}");
                let Some(po) = p.as_object() else {
                    return fail(format!("{at_part}: Input should be a valid dictionary or object to extract fields from"));
                };
                match po.get("type").and_then(Value::as_str) {
                    Some("text") => text_block(po, &at_part)?,
                    Some("image") => image_block(po, &at_part)?,
                    Some("document" | "search_result") => {}
                    Some(t) => return fail(format!("{at_part}: Input tag '{t}' found using 'type' does not match any of the expected tags: 'text', 'image', 'search_result', 'document'")),
                    None => return fail(format!("{at_part}: Unable to extract tag using discriminator 'type'")),
                }
            }
            Ok(())
        }
        Some(_) => fail(format!("{at_block}.content: Input should be a valid list")),
    }
}

/// One content block of message `i`.
pub(super) fn block(i: usize, j: usize, role: &str, b: &Value) -> Check {
    let at = format!("messages.{i}.content.{j}");
    let Some(o) = b.as_object() else {
        return fail(format!(
            "{at}: Input should be a valid dictionary or object to extract fields from"
        ));
    };
    let kind = match o.get("type").and_then(Value::as_str) {
        Some(t) if BLOCK_TYPES.contains(&t) => t,
        Some(t) => {
            let expected = BLOCK_TYPES
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ");
            return fail(format!("{at}: Input tag '{t}' found using 'type' does not match any of the expected tags: {expected}"));
        }
        None => {
            return fail(format!(
                "{at}: Unable to extract tag using discriminator 'type'"
            ))
        }
    };
    match kind {
        "text" => text_block(o, &at),
        "image" => image_block(o, &at),
        // Unconfirmed wording for the two role checks.
        "tool_use" if role != "assistant" => fail(format!(
            "{at}: `tool_use` blocks can only be in `assistant` messages"
        )),
        "tool_use" => tool_use_block(o, &at),
        "tool_result" if role != "user" => fail(format!(
            "{at}: `tool_result` blocks can only be in `user` messages"
        )),
        "tool_result" => tool_result_block(o, &at),
        _ => Ok(()),
    }
}
