//! Mistral chat response → OpenAI `chat.completion`, and the pieces of Mistral's response
//! model that streams share (content, tool calls, usage, finish reasons).
//!
//! Mistral's body is OpenAI-like but not OpenAI: tool calls lack `type`, `arguments` may be
//! an object, reasoning models send `content` as a list of `thinking` / `text` chunks,
//! finish reasons include `model_length` and `error`, and cached prompt tokens are reported
//! as `num_cached_tokens` or `prompt_tokens_details.cached_tokens`. Every field is read
//! leniently; unknown ones are ignored.

use serde::Deserialize;
use serde_json::Value;

use crate::api::{ChatCompletion, Choice, FunctionCall, ResponseMessage, ToolCall, UsageJson};
use crate::providers::{AdapterError, ResponseContext};
use crate::usage::Usage;

/// A non-streaming Mistral response.
#[derive(Debug, Deserialize)]
pub(super) struct MistralCompletion {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    model: Option<String>,
    choices: Vec<MistralChoice>,
    #[serde(default)]
    usage: Option<MistralUsage>,
}

#[derive(Debug, Deserialize)]
struct MistralChoice {
    #[serde(default)]
    index: Option<u32>,
    message: MistralResponseMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MistralResponseMessage {
    #[serde(default)]
    content: Option<MistralContent>,
    #[serde(default)]
    tool_calls: Option<Vec<MistralToolCall>>,
}

/// Message content: a string, or a list of typed chunks (reasoning models).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum MistralContent {
    Text(String),
    Chunks(Vec<Value>),
}

impl MistralContent {
    /// The answer text: `text` chunks concatenated; `thinking` and other chunks dropped.
    pub fn text(&self) -> String {
        match self {
            MistralContent::Text(s) => s.clone(),
            MistralContent::Chunks(chunks) => chunks
                .iter()
                .filter(|c| c.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|c| c.get("text").and_then(Value::as_str))
                .collect(),
        }
    }
}

/// A tool call, whole (responses) or partial (stream deltas).
#[derive(Debug, Deserialize)]
pub(super) struct MistralToolCall {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub function: MistralFunctionCall,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct MistralFunctionCall {
    #[serde(default)]
    pub name: Option<String>,
    /// A JSON string, or (Mistral allows it) the arguments object itself.
    #[serde(default)]
    pub arguments: Option<Value>,
}

impl MistralFunctionCall {
    /// The arguments as OpenAI's JSON string.
    pub fn arguments_text(&self) -> Option<String> {
        match self.arguments.as_ref()? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// Mistral's `usage`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct MistralUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    num_cached_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Clone, Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl MistralUsage {
    /// Normalised usage; `None` when Mistral reported no token counts at all.
    pub fn to_usage(&self) -> Option<Usage> {
        if self.prompt_tokens.is_none() && self.completion_tokens.is_none() {
            return None;
        }
        let input = self.prompt_tokens.unwrap_or(0);
        let cached = self
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .or(self.num_cached_tokens)
            .unwrap_or(0);
        Some(Usage {
            input_tokens: input,
            output_tokens: self.completion_tokens.unwrap_or(0),
            cached_input_tokens: cached.min(input),
            cache_write_tokens: 0,
            estimated: false,
        })
    }
}

/// Mistral finish reason → OpenAI's (`model_length` → `length`, `error` → `stop`).
pub(super) fn finish_reason(reason: &str) -> String {
    match reason {
        "model_length" => "length",
        "error" => "stop",
        other => other,
    }
    .to_string()
}

/// Translates a parsed Mistral completion.
pub(super) fn to_openai(
    m: MistralCompletion,
    ctx: &ResponseContext,
) -> (ChatCompletion, Option<Usage>) {
    let usage = m.usage.as_ref().and_then(MistralUsage::to_usage);
    let choices = m
        .choices
        .into_iter()
        .enumerate()
        .map(|(i, c)| Choice {
            index: c.index.unwrap_or(i as u32),
            message: response_message(c.message),
            finish_reason: c.finish_reason.as_deref().map(finish_reason),
            logprobs: None,
        })
        .collect();
    let completion = ChatCompletion {
        id: m
            .id
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ctx.id.clone()),
        object: "chat.completion".to_string(),
        created: m.created.unwrap_or(ctx.created),
        model: m
            .model
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ctx.model.clone()),
        choices,
        usage: usage.as_ref().map(UsageJson::from),
        system_fingerprint: None,
    };
    (completion, usage)
}

fn response_message(m: MistralResponseMessage) -> ResponseMessage {
    let tool_calls: Vec<ToolCall> = m
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, call)| ToolCall {
            id: call
                .id
                .clone()
                .filter(|id| !id.is_empty() && id != "null")
                .unwrap_or_else(|| format!("call_{i}")),
            kind: "function".to_string(),
            function: FunctionCall {
                name: call.function.name.clone().unwrap_or_default(),
                arguments: call.function.arguments_text().unwrap_or_default(),
            },
        })
        .collect();
    let text = m.content.as_ref().map(MistralContent::text);
    // OpenAI reports a tool-call-only turn with `content: null`; Mistral sends "".
    let content = match text {
        Some(t) if t.is_empty() && !tool_calls.is_empty() => None,
        other => other,
    };
    ResponseMessage {
        role: "assistant".to_string(),
        content,
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        refusal: None,
    }
}

/// Parses a 2xx body: a completion, or the error Mistral put in it.
pub(super) fn parse(body: &[u8]) -> Result<MistralCompletion, AdapterError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| AdapterError::MalformedResponse(format!("response body is not JSON: {e}")))?;
    if let Some(fields) = super::error::in_band_error_fields(&v) {
        return Err(AdapterError::Upstream(
            crate::providers::openai::error::in_band_error(
                &fields,
                "The upstream provider answered with an error.",
            ),
        ));
    }
    if v.get("choices").and_then(Value::as_array).is_none() {
        return Err(AdapterError::MalformedResponse(
            "response has no `choices` array".into(),
        ));
    }
    serde_json::from_value(v)
        .map_err(|e| AdapterError::MalformedResponse(format!("unexpected response shape: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_prefers_prompt_details_and_falls_back_to_num_cached_tokens() {
        let u: MistralUsage = serde_json::from_value(json!({
            "completion_tokens": 29, "num_cached_tokens": 99, "prompt_tokens": 100, "total_tokens": 129
        }))
        .unwrap();
        assert_eq!(
            u.to_usage(),
            Some(Usage {
                cached_input_tokens: 99,
                ..Usage::new(100, 29)
            })
        );
        let u: MistralUsage = serde_json::from_value(json!({
            "prompt_tokens": 28, "total_tokens": 32, "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 0}, "service_tier": "standard"
        }))
        .unwrap();
        assert_eq!(u.to_usage(), Some(Usage::new(28, 4)));
        let u: MistralUsage = serde_json::from_value(json!({})).unwrap();
        assert_eq!(u.to_usage(), None);
    }

    #[test]
    fn thinking_chunks_are_dropped_from_content() {
        let c: MistralContent = serde_json::from_value(json!([
            {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
            {"type": "text", "text": "323"},
            {"type": "text", "text": "!"}
        ]))
        .unwrap();
        assert_eq!(c.text(), "323!");
    }

    #[test]
    fn finish_reasons_map_to_openai() {
        assert_eq!(finish_reason("model_length"), "length");
        assert_eq!(finish_reason("error"), "stop");
        assert_eq!(finish_reason("tool_calls"), "tool_calls");
        assert_eq!(finish_reason("stop"), "stop");
    }

    #[test]
    fn object_arguments_become_a_json_string() {
        let f: MistralFunctionCall =
            serde_json::from_value(json!({"name": "f", "arguments": {"city": "Paris"}})).unwrap();
        assert_eq!(f.arguments_text().as_deref(), Some(r#"{"city":"Paris"}"#));
    }
}
