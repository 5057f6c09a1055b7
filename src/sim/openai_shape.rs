//! Helpers for request bodies in OpenAI's chat shape (OpenAI, Mistral, Cortex's
//! OpenAI-compatible endpoint): reading the last user text leniently, naming JSON types in
//! error messages, and the `Authorization: Bearer` credential.

use http::HeaderMap;
use serde_json::Value;

/// Text of the last `user` message of a body that may not be valid for the provider.
pub(crate) fn last_user_text(body: &Value) -> Option<String> {
    let messages = body.get("messages")?.as_array()?;
    let m = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    match m.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

/// How OpenAI names a JSON value's type in validation messages (`an integer`, `a string`).
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The credential of an `Authorization: Bearer <key>` header; `None` when missing or empty.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, key) = v.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// `sk-abc***wxyz`: how OpenAI echoes a rejected key.
pub(crate) fn redact_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_last_user_text_in_strings_and_parts() {
        let b = json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]},
            {"role": "tool", "content": "t"}
        ]});
        assert_eq!(last_user_text(&b).as_deref(), Some("a\nb"));
        assert_eq!(last_user_text(&json!({"messages": 3})), None);
    }

    #[test]
    fn bearer_requires_scheme_and_non_empty_key() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "bearer sk-1".parse().unwrap());
        assert_eq!(bearer(&h), Some("sk-1"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn redacts_keys() {
        assert_eq!(redact_key("sk-abcdefghijkl"), "sk-***ijkl");
        assert_eq!(redact_key("short"), "*****");
    }
}
