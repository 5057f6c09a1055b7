//! OpenAI chat request → Mistral chat request.
//!
//! Mistral validates strictly and answers 422 `extra_forbidden` for any field it does not
//! know (`user`, `store`, `max_completion_tokens`, a `name` on a user message…), so the
//! request is rebuilt from a whitelist instead of forwarded. Beyond renaming fields it
//! fixes what Mistral rejects in OpenAI histories: tool-call ids that are not nine
//! alphanumerics, assistant tool-call turns with `null` content, `developer` turns, and a
//! conversation that ends with an assistant turn (which Mistral accepts only as a prefix).

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::api::{ChatRequest, Content, ContentPart, Message, Role, Stop, Tool, ToolChoice};
use crate::providers::AdapterError;

/// Mistral's chat request, restricted to the fields tollgate sends.
#[derive(Debug, Serialize)]
pub(super) struct MistralRequest {
    model: String,
    messages: Vec<MistralMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<Stop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    random_seed: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<MistralTool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    /// Optional fields copied verbatim from the client's extra fields.
    #[serde(flatten)]
    passthrough: Map<String, Value>,
}

/// Client fields Mistral accepts with the same name and meaning, copied when present.
const PASSTHROUGH_FIELDS: &[&str] = &[
    "presence_penalty",
    "frequency_penalty",
    "prediction",
    "safe_prompt",
    "prompt_mode",
    "guardrails",
    "prompt_cache_key",
    "min_tokens",
];

#[derive(Debug, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum MistralMessage {
    System {
        content: MistralContent,
    },
    User {
        content: MistralContent,
    },
    Assistant {
        content: MistralContent,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<MistralToolCall>>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        prefix: bool,
    },
    Tool {
        content: MistralContent,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_call_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum MistralContent {
    Text(String),
    Chunks(Vec<Value>),
}

#[derive(Debug, Serialize)]
struct MistralToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: MistralFunctionCall,
}

#[derive(Debug, Serialize)]
struct MistralFunctionCall {
    name: String,
    arguments: String,
}

#[derive(Debug, Serialize)]
pub(super) struct MistralTool {
    #[serde(rename = "type")]
    kind: &'static str,
    function: MistralFunction,
}

#[derive(Debug, Serialize)]
struct MistralFunction {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// Required by Mistral; an empty object schema when the client gave none.
    parameters: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

/// Builds the Mistral request for `req`, calling `upstream_model`.
pub(super) fn translate(
    req: &ChatRequest,
    upstream_model: &str,
) -> Result<MistralRequest, AdapterError> {
    let last = req.messages.len().checked_sub(1);
    let messages = req
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| translate_message(i, m, Some(i) == last))
        .collect::<Result<Vec<_>, _>>()?;
    let tools = req
        .tools
        .as_ref()
        .map(|tools| tools.iter().enumerate().map(translate_tool).collect())
        .transpose()?;
    let mut passthrough = Map::new();
    for &key in PASSTHROUGH_FIELDS {
        if let Some(v) = extra_value(req, key) {
            passthrough.insert(key.to_string(), v.clone());
        }
    }
    if let Some(effort) = extra_value(req, "reasoning_effort") {
        passthrough.insert("reasoning_effort".into(), reasoning_effort(effort));
    }
    Ok(MistralRequest {
        model: upstream_model.to_string(),
        messages,
        temperature: req.temperature,
        top_p: req.top_p,
        max_tokens: req.max_output_tokens(),
        stream: req.is_stream(),
        stop: req.stop.clone(),
        random_seed: req
            .seed
            .map(Value::from)
            .or_else(|| extra_value(req, "random_seed").cloned()),
        response_format: req.response_format.clone().filter(|v| !v.is_null()),
        tools,
        tool_choice: req.tool_choice.as_ref().map(translate_tool_choice),
        parallel_tool_calls: req.parallel_tool_calls,
        n: req.n,
        passthrough,
    })
}

/// A non-null extra field of the client request.
fn extra_value<'a>(req: &'a ChatRequest, key: &str) -> Option<&'a Value> {
    req.extra.get(key).filter(|v| !v.is_null())
}

/// Mistral knows `none` and `high`: OpenAI's `minimal` maps to no reasoning, every other
/// level to reasoning.
fn reasoning_effort(effort: &Value) -> Value {
    match effort.as_str() {
        Some("none" | "minimal") => Value::from("none"),
        Some(_) => Value::from("high"),
        None => effort.clone(),
    }
}

fn translate_message(
    index: usize,
    m: &Message,
    is_last: bool,
) -> Result<MistralMessage, AdapterError> {
    let content = || translate_content(index, m.content.as_ref());
    Ok(match m.role {
        Role::System | Role::Developer => MistralMessage::System {
            content: content()?,
        },
        Role::User => MistralMessage::User {
            content: content()?,
        },
        Role::Assistant => {
            let tool_calls = m
                .tool_calls
                .as_ref()
                .filter(|c| !c.is_empty())
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| MistralToolCall {
                            id: mistral_tool_call_id(&c.id).into_owned(),
                            kind: "function",
                            function: MistralFunctionCall {
                                name: c.function.name.clone(),
                                arguments: c.function.arguments.clone(),
                            },
                        })
                        .collect()
                });
            MistralMessage::Assistant {
                // Mistral wants "" rather than null next to tool calls.
                content: content()?,
                tool_calls,
                prefix: is_last,
            }
        }
        Role::Tool => MistralMessage::Tool {
            content: content()?,
            tool_call_id: m
                .tool_call_id
                .as_deref()
                .map(|id| mistral_tool_call_id(id).into_owned()),
            name: m.name.clone(),
        },
        Role::Function => return Err(AdapterError::invalid(
            "Messages with role `function` are not supported by this model; use `tool` messages.",
            Some(&format!("messages[{index}].role")),
        )),
    })
}

fn translate_content(
    index: usize,
    content: Option<&Content>,
) -> Result<MistralContent, AdapterError> {
    Ok(match content {
        None => MistralContent::Text(String::new()),
        Some(Content::Text(s)) => MistralContent::Text(s.clone()),
        Some(Content::Parts(parts)) => MistralContent::Chunks(
            parts
                .iter()
                .enumerate()
                .map(|(j, p)| translate_part(index, j, p))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Text and image parts keep OpenAI's shape, which Mistral shares; extra keys (cache
/// hints and the like) are dropped because Mistral rejects unknown keys.
fn translate_part(i: usize, j: usize, part: &ContentPart) -> Result<Value, AdapterError> {
    match part.kind.as_str() {
        "text" => Ok(json!({"type": "text", "text": part.text.clone().unwrap_or_default()})),
        "refusal" => {
            let text = part
                .extra
                .get("refusal")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(json!({"type": "text", "text": text}))
        }
        "image_url" => {
            let image = part.image_url.as_ref().ok_or_else(|| {
                AdapterError::invalid(
                    "An image_url content part needs an `image_url` object.",
                    Some(&format!("messages[{i}].content[{j}].image_url")),
                )
            })?;
            let mut url = json!({"url": image.url});
            if let Some(detail) = &image.detail {
                url["detail"] = Value::from(detail.clone());
            }
            Ok(json!({"type": "image_url", "image_url": url}))
        }
        other => Err(AdapterError::invalid(
            format!("Content parts of type `{other}` are not supported by this model."),
            Some(&format!("messages[{i}].content[{j}].type")),
        )),
    }
}

fn translate_tool((i, tool): (usize, &Tool)) -> Result<MistralTool, AdapterError> {
    if tool.kind != "function" {
        return Err(AdapterError::invalid(
            format!(
                "Tools of type `{}` are not supported by this model; only `function` tools are.",
                tool.kind
            ),
            Some(&format!("tools[{i}].type")),
        ));
    }
    let f = &tool.function;
    Ok(MistralTool {
        kind: "function",
        function: MistralFunction {
            name: f.name.clone(),
            description: f.description.clone(),
            parameters: f
                .parameters
                .clone()
                .filter(|p| !p.is_null())
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            strict: f.strict,
        },
    })
}

/// `required` is spelled `any` by Mistral; a named function keeps OpenAI's shape.
fn translate_tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Mode(mode) if mode == "required" => Value::from("any"),
        ToolChoice::Mode(mode) => Value::from(mode.clone()),
        ToolChoice::Named(named) => json!({
            "type": "function",
            "function": {"name": named.function.name},
        }),
    }
}

/// Length of a Mistral tool-call id.
const ID_LEN: usize = 9;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A tool-call id Mistral accepts (`[a-zA-Z0-9]{9}`). Valid ids are kept; any other id
/// (`call_…`, `toolu_…`) becomes the last nine base-62 digits of the big-endian number in
/// the first eight bytes of its SHA-256, most significant digit first. The same id always
/// gives the same result, so an assistant's tool call and the tool result answering it
/// stay paired.
pub fn mistral_tool_call_id(id: &str) -> Cow<'_, str> {
    if id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Cow::Borrowed(id);
    }
    let digest = Sha256::digest(id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let mut n = u64::from_be_bytes(head);
    let mut digits = [0u8; ID_LEN];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    Cow::Owned(digits.iter().map(|&b| b as char).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(v: Value) -> Value {
        let req: ChatRequest = serde_json::from_value(v).unwrap();
        serde_json::to_value(translate(&req, "mistral-large-latest").unwrap()).unwrap()
    }

    #[test]
    fn valid_tool_call_ids_are_kept() {
        assert_eq!(mistral_tool_call_id("KikbB849t"), "KikbB849t");
        assert!(matches!(
            mistral_tool_call_id("KikbB849t"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn foreign_tool_call_ids_become_nine_alphanumerics_deterministically() {
        for id in [
            "call_ZR5UUuTt3pf61kjwAJIYdVMj",
            "toolu_01A09q90qw90lq917835lq9",
            "",
            "KikbB849",
            "KikbB849t_",
            "été123456",
        ] {
            let a = mistral_tool_call_id(id);
            assert_eq!(a.len(), 9, "{id}");
            assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()), "{id} -> {a}");
            assert_eq!(a, mistral_tool_call_id(id));
        }
        assert_ne!(
            mistral_tool_call_id("call_a"),
            mistral_tool_call_id("call_b")
        );
    }

    #[test]
    fn rewritten_id_is_base62_of_the_sha256_prefix() {
        // sha256("call_1") starts with bytes whose u64 value modulo 62^9, in base 62:
        let digest = Sha256::digest(b"call_1");
        let n = u64::from_be_bytes(digest[..8].try_into().unwrap()) % 62u64.pow(9);
        let mut expected = String::new();
        let mut rest = n;
        for _ in 0..9 {
            expected.insert(0, BASE62[(rest % 62) as usize] as char);
            rest /= 62;
        }
        assert_eq!(mistral_tool_call_id("call_1"), expected);
    }

    #[test]
    fn only_whitelisted_fields_reach_mistral() {
        let w = wire(json!({
            "model": "x",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "u-1", "logit_bias": {"1": 2}, "logprobs": true, "top_logprobs": 2,
            "service_tier": "flex", "store": true, "metadata": {"k": "v"},
            "presence_penalty": 0.5, "frequency_penalty": 0.25, "safe_prompt": true,
            "prompt_mode": "reasoning", "verbosity": "low", "modalities": ["text"]
        }));
        let keys: Vec<&str> = w.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "model",
                "messages",
                "stream",
                "presence_penalty",
                "frequency_penalty",
                "safe_prompt",
                "prompt_mode"
            ]
        );
    }

    #[test]
    fn seed_and_max_completion_tokens_are_renamed() {
        let w = wire(json!({
            "model": "x", "messages": [{"role": "user", "content": "hi"}],
            "seed": 42, "max_tokens": 10, "max_completion_tokens": 20
        }));
        assert_eq!(w["random_seed"], 42);
        assert_eq!(w["max_tokens"], 20);
        assert!(w.get("seed").is_none());
        assert!(w.get("max_completion_tokens").is_none());
    }

    #[test]
    fn tool_choice_required_becomes_any_and_named_is_kept() {
        let base = json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]});
        let mut r = base.clone();
        r["tool_choice"] = json!("required");
        assert_eq!(wire(r)["tool_choice"], "any");
        let mut r = base;
        r["tool_choice"] = json!({"type": "function", "function": {"name": "f"}});
        assert_eq!(
            wire(r)["tool_choice"],
            json!({"type": "function", "function": {"name": "f"}})
        );
    }

    #[test]
    fn reasoning_effort_maps_to_mistral_levels() {
        for (given, sent) in [
            ("none", "none"),
            ("minimal", "none"),
            ("low", "high"),
            ("medium", "high"),
            ("high", "high"),
        ] {
            let w = wire(json!({
                "model": "x", "messages": [{"role": "user", "content": "hi"}],
                "reasoning_effort": given
            }));
            assert_eq!(w["reasoning_effort"], sent, "{given}");
        }
    }

    #[test]
    fn unsupported_content_parts_and_tools_are_rejected() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "x",
            "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]
        }))
        .unwrap();
        match translate(&req, "m") {
            Err(AdapterError::InvalidRequest { param, .. }) => {
                assert_eq!(param.as_deref(), Some("messages[0].content[0].type"))
            }
            other => panic!("expected invalid request, got {other:?}"),
        }
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "x", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "custom", "function": {"name": "f"}}]
        }))
        .unwrap();
        assert!(matches!(
            translate(&req, "m"),
            Err(AdapterError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn function_without_parameters_gets_an_empty_object_schema() {
        let w = wire(json!({
            "model": "x", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "now"}}]
        }));
        assert_eq!(
            w["tools"],
            json!([{"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}])
        );
    }
}
