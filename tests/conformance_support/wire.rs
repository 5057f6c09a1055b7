//! The provider side: what the simulators received, read in each provider's own format
//! (credentials, system prompt, turns, tool choice, tool calls and results).

use serde_json::{json, Value};
use tollgate::providers::ProviderKind;

use super::{Bench, Target, ANTHROPIC_KEY, CORTEX_PAT, MISTRAL_KEY, OPENAI_KEY};

/// The tool result every tool scenario sends back.
pub const TOOL_RESULT: &str = r#"{"temperature": 18, "condition": "sunny"}"#;

/// The provider got tollgate's credential in its own header, never the client's key.
pub fn check_upstream_auth(b: &Bench, t: Target) {
    let sent = b.sim(t.kind).requests();
    let req = sent.last().expect("the provider was called");
    for (name, value) in &req.headers {
        assert!(
            !String::from_utf8_lossy(value.as_bytes()).contains("must-not-be-forwarded"),
            "the client's key reached {} in {name}",
            t.provider
        );
    }
    let h = |n: &str| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{} request has {n}", t.provider))
            .to_string()
    };
    match t.kind {
        ProviderKind::OpenAi => assert_eq!(h("authorization"), format!("Bearer {OPENAI_KEY}")),
        ProviderKind::Mistral => assert_eq!(h("authorization"), format!("Bearer {MISTRAL_KEY}")),
        ProviderKind::Anthropic => {
            assert_eq!(h("x-api-key"), ANTHROPIC_KEY);
            assert_eq!(h("anthropic-version"), "2023-06-01");
            assert!(req.headers.get("authorization").is_none());
        }
        ProviderKind::Cortex => {
            assert_eq!(h("authorization"), format!("Bearer {CORTEX_PAT}"));
            assert_eq!(
                h("x-snowflake-authorization-token-type"),
                "PROGRAMMATIC_ACCESS_TOKEN"
            );
        }
    }
}

/// The text of a message content in any of the providers' formats: a string, a list of
/// text blocks (Anthropic, OpenAI parts) or a Cortex `content_list`.
pub fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

/// The text of one message, Cortex `content_list` included.
pub fn message_text(m: &Value) -> String {
    match m.get("content_list") {
        Some(list) => text_of(list),
        None => text_of(&m["content"]),
    }
}

/// The system prompt and the (role, text) turns of a provider request, read the way that
/// provider reads them: Anthropic has a top-level `system`, the others a first `system`
/// message.
pub fn wire_conversation(
    kind: ProviderKind,
    wire: &Value,
) -> (Option<String>, Vec<(String, String)>) {
    let messages = wire["messages"].as_array().expect("messages array");
    let mut turns: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or("user").to_string(),
                message_text(m),
            )
        })
        .collect();
    let system = match kind {
        ProviderKind::Anthropic => {
            assert!(
                turns.iter().all(|(r, _)| r != "system"),
                "Anthropic takes no system message: {wire}"
            );
            wire.get("system").map(text_of)
        }
        _ => {
            assert!(
                turns[1..].iter().all(|(r, _)| r != "system"),
                "system only first: {wire}"
            );
            (turns.first().map(|(r, _)| r.as_str()) == Some("system")).then(|| turns.remove(0).1)
        }
    };
    (system, turns)
}

/// `tool_choice` naming `get_weather` in the provider's own form.
pub fn check_forced_choice_on_the_wire(t: Target, wire: &Value) {
    let expected = match t.kind {
        ProviderKind::OpenAi | ProviderKind::Mistral => {
            json!({"type": "function", "function": {"name": "get_weather"}})
        }
        ProviderKind::Anthropic => json!({"type": "tool", "name": "get_weather"}),
        ProviderKind::Cortex => json!({"type": "tool", "name": ["get_weather"]}),
    };
    assert_eq!(wire["tool_choice"], expected, "{}: {wire}", t.provider);
}

/// The assistant's call and the tool's result reached the provider in its format, linked
/// by an id the provider accepts. `id` is the call id the client used.
pub fn check_tool_result_on_the_wire(t: Target, wire: &Value, id: &str) {
    let msgs = wire["messages"].as_array().expect("messages");
    let last = msgs.last().expect("a last message");
    let prev = &msgs[msgs.len() - 2];
    match t.kind {
        ProviderKind::OpenAi | ProviderKind::Mistral => {
            assert_eq!(last["role"], "tool", "{wire}");
            assert_eq!(text_of(&last["content"]), TOOL_RESULT, "{wire}");
            assert_eq!(prev["role"], "assistant", "{wire}");
            let call = &prev["tool_calls"][0];
            assert_eq!(call["function"]["name"], "get_weather", "{wire}");
            let wire_id = last["tool_call_id"].as_str().expect("tool_call_id");
            assert_eq!(call["id"], wire_id, "result answers the call: {wire}");
            if t.kind == ProviderKind::Mistral {
                assert!(
                    wire_id.len() == 9 && wire_id.chars().all(|c| c.is_ascii_alphanumeric()),
                    "Mistral ids are 9 alphanumerics: {wire_id}"
                );
            } else {
                assert_eq!(wire_id, id);
            }
        }
        ProviderKind::Anthropic => {
            assert_eq!(
                last["role"], "user",
                "tool results go in a user turn: {wire}"
            );
            let block = &last["content"][0];
            assert_eq!(block["type"], "tool_result", "{wire}");
            assert_eq!(block["tool_use_id"], id, "{wire}");
            assert_eq!(text_of(&block["content"]), TOOL_RESULT, "{wire}");
            assert_eq!(prev["role"], "assistant", "{wire}");
            let uses: Vec<&Value> = prev["content"]
                .as_array()
                .expect("assistant blocks")
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .collect();
            assert_eq!(uses.len(), 1, "{wire}");
            assert_eq!(uses[0]["id"], id, "{wire}");
            assert_eq!(uses[0]["name"], "get_weather", "{wire}");
            assert!(uses[0]["input"].is_object(), "input is an object: {wire}");
        }
        ProviderKind::Cortex => {
            assert_eq!(
                last["role"], "user",
                "tool results go in a user turn: {wire}"
            );
            let item = last["content_list"]
                .as_array()
                .expect("content_list")
                .iter()
                .find(|i| i["type"] == "tool_results")
                .unwrap_or_else(|| panic!("a tool_results item: {wire}"));
            let r = &item["tool_results"];
            assert_eq!(r["tool_use_id"], id, "{wire}");
            assert_eq!(
                r["name"], "get_weather",
                "Cortex needs the tool name: {wire}"
            );
            assert_eq!(text_of(&r["content"]), TOOL_RESULT, "{wire}");
            let uses: Vec<&Value> = prev["content_list"]
                .as_array()
                .expect("assistant content_list")
                .iter()
                .filter(|i| i["type"] == "tool_use")
                .collect();
            assert_eq!(uses.len(), 1, "{wire}");
            assert_eq!(uses[0]["tool_use"]["tool_use_id"], id, "{wire}");
            assert_eq!(uses[0]["tool_use"]["name"], "get_weather", "{wire}");
            assert!(uses[0]["tool_use"]["input"].is_object(), "{wire}");
        }
    }
}
