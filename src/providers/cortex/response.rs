//! Non-streaming Cortex answers → OpenAI `chat.completion`, plus the pieces the stream
//! translator shares: usage mapping and finish-reason normalisation.
//!
//! One parser reads both endpoints' shapes. Native: `choices[0].message.{content,
//! content_list}` with `tool_use` items, `finish_reason` at the top level (spec) or in the
//! choice, `usage` with `guard_tokens` and cache counters. OpenAI-compatible: `message.
//! tool_calls`, `id: ""`, `finish_reason: ""`, zero-valued placeholder objects. Missing ids,
//! timestamps and models come from the [`ResponseContext`]; a missing or empty finish reason
//! is derived (`tool_calls` when the answer calls tools, else `stop`). Should Cortex ignore
//! `stream: false` and answer with events anyway, the events are assembled into one reply.

use bytes::Bytes;
use serde_json::Value;

use super::error;
use super::stream::CortexStream;
use crate::api::{ChatChunk, ChatCompletion, Choice, FunctionCall, ResponseMessage, ToolCall};
use crate::providers::sse::parse_all;
use crate::providers::{AdapterError, ResponseContext, StreamTranslator, Translated};
use crate::usage::Usage;

/// Translates a 2xx body.
pub fn parse(body: &[u8], ctx: &ResponseContext) -> Result<Translated, AdapterError> {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    if body[start..].starts_with(b"data:") || body[start..].starts_with(b":") {
        return from_events(body, ctx);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| AdapterError::MalformedResponse(format!("response is not JSON: {e}")))?;
    if let Some(e) = error::from_value(200, &v) {
        return Err(AdapterError::Upstream(e));
    }
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| AdapterError::MalformedResponse("response has no choices".into()))?;
    let message = choice.get("message").unwrap_or(&Value::Null);

    let tool_calls = tool_calls(message);
    let text = text(message);
    let finish = [choice.get("finish_reason"), v.get("finish_reason")]
        .into_iter()
        .flatten()
        .find_map(|f| f.as_str().and_then(normalize_finish))
        .unwrap_or_else(|| derived_finish(!tool_calls.is_empty()).to_string());
    let usage = v.get("usage").and_then(usage_from);

    let completion = ChatCompletion {
        id: non_empty_str(v.get("id")).unwrap_or(&ctx.id).to_string(),
        object: "chat.completion".into(),
        created: v
            .get("created")
            .and_then(Value::as_u64)
            .filter(|c| *c > 0)
            .unwrap_or(ctx.created),
        model: non_empty_str(v.get("model"))
            .unwrap_or(&ctx.model)
            .to_string(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".into(),
                content: if text.is_empty() && !tool_calls.is_empty() {
                    None
                } else {
                    Some(text)
                },
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                refusal: None,
            },
            finish_reason: Some(finish.clone()),
            logprobs: None,
        }],
        usage: usage.as_ref().map(Into::into),
        system_fingerprint: None,
    };
    let body = serde_json::to_vec(&completion)
        .map_err(|e| AdapterError::MalformedResponse(format!("cannot encode response: {e}")))?;
    Ok(Translated {
        body: Bytes::from(body),
        usage,
        finish_reason: Some(finish),
    })
}

/// The reply text: `message.content`, or the `text` items of `content_list` when the plain
/// string is missing or empty.
fn text(message: &Value) -> String {
    if let Some(s) = non_empty_str(message.get("content")) {
        return s.to_string();
    }
    message
        .get("content_list")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter(|i| i.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|i| i.get("text").or_else(|| i.get("content")))
                .filter_map(Value::as_str)
                .collect::<String>()
        })
        .unwrap_or_default()
}

/// Tool calls from native `tool_use` items and from OpenAI `tool_calls`.
fn tool_calls(message: &Value) -> Vec<ToolCall> {
    let mut calls = Vec::new();
    for item in message
        .get("content_list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if item.get("type").and_then(Value::as_str) != Some("tool_use") {
            continue;
        }
        // Spec shape nests the call under `tool_use`; tolerate it flat as well.
        let call = item.get("tool_use").unwrap_or(item);
        let n = calls.len();
        calls.push(ToolCall {
            id: non_empty_str(call.get("tool_use_id"))
                .map(str::to_string)
                .unwrap_or_else(|| format!("call_{n}")),
            kind: "function".into(),
            function: FunctionCall {
                name: non_empty_str(call.get("name")).unwrap_or("").to_string(),
                arguments: arguments(call.get("input")),
            },
        });
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let n = calls.len();
        let function = call.get("function").unwrap_or(&Value::Null);
        calls.push(ToolCall {
            id: non_empty_str(call.get("id"))
                .map(str::to_string)
                .unwrap_or_else(|| format!("call_{n}")),
            kind: "function".into(),
            function: FunctionCall {
                name: non_empty_str(function.get("name"))
                    .unwrap_or("")
                    .to_string(),
                arguments: arguments(function.get("arguments")),
            },
        });
    }
    calls
}

/// Tool input as OpenAI's arguments string: strings pass through, objects are encoded.
pub(crate) fn arguments(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "{}".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Cortex finish reasons (and the Anthropic/Bedrock ones that can leak through) in OpenAI
/// terms; empty means none was given.
pub(crate) fn normalize_finish(reason: &str) -> Option<String> {
    Some(
        match reason {
            "" => return None,
            "stop" | "end_turn" | "stop_sequence" => "stop",
            "length" | "max_tokens" => "length",
            "tool_calls" | "tool_use" => "tool_calls",
            other => other,
        }
        .to_string(),
    )
}

/// The finish reason when Cortex gives none.
pub(crate) fn derived_finish(called_tools: bool) -> &'static str {
    if called_tools {
        "tool_calls"
    } else {
        "stop"
    }
}

/// Cortex usage → [`Usage`]. `None` for the `usage: {}` placeholders of native streams.
///
/// Cortex Guard tokens are billed on input only (Snowflake's AISQL cost page), so they
/// count as input tokens. The cache counters (`cache_read_input_tokens`,
/// `cache_write_input_tokens`) are documented only as "reserved"; whether `prompt_tokens`
/// already includes them is read from the numbers: if `total_tokens` equals the sum with
/// them added separately, or they exceed `prompt_tokens`, they come on top of it (the
/// Anthropic convention); otherwise they are subsets of it (the OpenAI convention, which the
/// OpenAI-compatible endpoint's `prompt_tokens_details.cached_tokens` follows).
pub(crate) fn usage_from(v: &Value) -> Option<Usage> {
    let obj = v.as_object()?;
    // Counts are capped far above any real request so that sums downstream cannot overflow.
    const CAP: u64 = u32::MAX as u64;
    let num = |k: &str| obj.get(k).and_then(Value::as_u64).map(|n| n.min(CAP));
    if num("prompt_tokens").is_none() && num("completion_tokens").is_none() {
        return None;
    }
    let prompt = num("prompt_tokens").unwrap_or(0);
    let completion = num("completion_tokens").unwrap_or(0);
    let guard = num("guard_tokens").unwrap_or(0);
    let read = num("cache_read_input_tokens").unwrap_or(0);
    let write = num("cache_write_input_tokens").unwrap_or(0);
    let openai_cached = obj
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .map_or(0, |n| n.min(CAP));

    let cache = read.saturating_add(write);
    let total = num("total_tokens");
    let sum = |parts: &[u64]| parts.iter().try_fold(0u64, |acc, n| acc.checked_add(*n));
    let separate = cache > 0
        && (cache > prompt
            || (total.is_some() && total == sum(&[prompt, completion, cache]))
            || (total.is_some() && total == sum(&[prompt, guard, completion, cache])));
    let input = prompt
        .saturating_add(guard)
        .saturating_add(if separate { cache } else { 0 });
    let cached = if read > 0 { read } else { openai_cached }.min(input);
    let cache_write = write.min(input - cached);
    Some(Usage {
        input_tokens: input,
        output_tokens: completion,
        cached_input_tokens: cached,
        cache_write_tokens: cache_write,
        estimated: false,
    })
}

fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Assembles an event-stream body into one completion (Cortex streamed although asked not
/// to): runs the stream translator and folds its OpenAI chunks.
fn from_events(body: &[u8], ctx: &ResponseContext) -> Result<Translated, AdapterError> {
    let mut ctx = ctx.clone();
    ctx.include_usage = true;
    let mut s = CortexStream::new(ctx.clone());
    let mut out = bytes::BytesMut::new();
    s.push(body, &mut out)?;
    s.finish(&mut out)?;
    let outcome = s.outcome();
    if let Some(e) = outcome.error {
        return Err(AdapterError::Upstream(e));
    }
    let mut first: Option<ChatChunk> = None;
    let mut text = String::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    for ev in parse_all(&out, out.len()) {
        let Ok(chunk) = serde_json::from_str::<ChatChunk>(&ev.data) else {
            continue; // [DONE]
        };
        for c in &chunk.choices {
            text.push_str(c.delta.content.as_deref().unwrap_or(""));
            for d in c.delta.tool_calls.iter().flatten() {
                let i = d.index as usize;
                if calls.len() <= i {
                    calls.resize_with(i + 1, || ToolCall {
                        id: String::new(),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: String::new(),
                            arguments: String::new(),
                        },
                    });
                }
                if let Some(id) = &d.id {
                    calls[i].id = id.clone();
                }
                if let Some(n) = &d.function.name {
                    calls[i].function.name = n.clone();
                }
                if let Some(a) = &d.function.arguments {
                    calls[i].function.arguments.push_str(a);
                }
            }
        }
        first.get_or_insert(chunk);
    }
    let finish = outcome
        .finish_reason
        .unwrap_or_else(|| derived_finish(!calls.is_empty()).to_string());
    let (id, created, model) = match first {
        Some(c) => (c.id, c.created, c.model),
        None => (ctx.id, ctx.created, ctx.model),
    };
    let completion = ChatCompletion {
        id,
        object: "chat.completion".into(),
        created,
        model,
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".into(),
                content: if text.is_empty() && !calls.is_empty() {
                    None
                } else {
                    Some(text)
                },
                tool_calls: (!calls.is_empty()).then_some(calls),
                refusal: None,
            },
            finish_reason: Some(finish.clone()),
            logprobs: None,
        }],
        usage: outcome.usage.as_ref().map(Into::into),
        system_fingerprint: None,
    };
    let body = serde_json::to_vec(&completion)
        .map_err(|e| AdapterError::MalformedResponse(format!("cannot encode response: {e}")))?;
    Ok(Translated {
        body: Bytes::from(body),
        usage: outcome.usage,
        finish_reason: Some(finish),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> ResponseContext {
        ResponseContext {
            id: "chatcmpl-ctx".into(),
            created: 1_700_000_000,
            model: "ctx-model".into(),
            include_usage: false,
            max_event_bytes: crate::providers::sse::DEFAULT_MAX_EVENT_BYTES,
        }
    }

    fn parse_json(v: Value) -> (Value, Translated) {
        let t = parse(&serde_json::to_vec(&v).unwrap(), &ctx()).unwrap();
        (serde_json::from_slice(&t.body).unwrap(), t)
    }

    #[test]
    fn guard_tokens_count_as_input() {
        let u = usage_from(&json!({"prompt_tokens": 100, "completion_tokens": 10,
            "guard_tokens": 7, "total_tokens": 117}))
        .unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (107, 10));
    }

    #[test]
    fn cache_counters_on_top_of_prompt_tokens_are_added_to_input() {
        // total = prompt + completion + read + write: the cache tokens are not in prompt.
        let u = usage_from(&json!({"prompt_tokens": 20, "completion_tokens": 5,
            "total_tokens": 1525, "cache_read_input_tokens": 1000, "cache_write_input_tokens": 500}))
        .unwrap();
        assert_eq!(u.input_tokens, 1520);
        assert_eq!(u.cached_input_tokens, 1000);
        assert_eq!(u.cache_write_tokens, 500);
    }

    #[test]
    fn cache_counters_inside_prompt_tokens_are_subsets() {
        let u = usage_from(&json!({"prompt_tokens": 2000, "completion_tokens": 5,
            "total_tokens": 2005, "cache_read_input_tokens": 1024, "cache_write_input_tokens": null}))
        .unwrap();
        assert_eq!(
            (u.input_tokens, u.cached_input_tokens, u.cache_write_tokens),
            (2000, 1024, 0)
        );
        let u = usage_from(&json!({"prompt_tokens": 50, "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 32}}))
        .unwrap();
        assert_eq!((u.input_tokens, u.cached_input_tokens), (50, 32));
    }

    #[test]
    fn empty_usage_placeholder_is_no_usage() {
        assert!(usage_from(&json!({})).is_none());
        assert!(usage_from(&Value::Null).is_none());
    }

    #[test]
    fn finish_reason_in_choice_wins_and_empty_one_is_derived() {
        let (v, _) = parse_json(
            json!({"choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],
            "finish_reason": "stop"}),
        );
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        let (v, t) = parse_json(
            json!({"choices": [{"message": {"content": "", "content_list": [
            {"type": "tool_use", "tool_use": {"tool_use_id": "t1", "name": "f", "input": {"a": 1}}}]},
            "finish_reason": ""}]}),
        );
        assert_eq!(t.finish_reason.as_deref(), Some("tool_calls"));
        assert!(v["choices"][0]["message"]["content"].is_null());
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(v["id"], "chatcmpl-ctx");
        assert_eq!(v["model"], "ctx-model");
        assert_eq!(v["created"], 1_700_000_000);
    }

    #[test]
    fn text_falls_back_to_content_list_items() {
        let (v, _) = parse_json(json!({"choices": [{"message": {"content_list": [
            {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}]}));
        assert_eq!(v["choices"][0]["message"]["content"], "ab");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn error_inside_a_2xx_body_is_an_upstream_error() {
        let e = parse(
            br#"{"message":"quota","code":"1234","request_id":"r"}"#,
            &ctx(),
        )
        .unwrap_err();
        assert!(matches!(e, AdapterError::Upstream(_)));
        let e = parse(b"not json", &ctx()).unwrap_err();
        assert!(matches!(e, AdapterError::MalformedResponse(_)));
        let e = parse(br#"{"choices": []}"#, &ctx()).unwrap_err();
        assert!(matches!(e, AdapterError::MalformedResponse(_)));
    }

    #[test]
    fn event_stream_body_is_assembled_into_one_reply() {
        let body = b"data: {\"id\":\"u1\",\"model\":\"m\",\"choices\":[{\"delta\":{\"type\":\"text\",\"content\":\"Hel\"}}],\"usage\":{}}\n\n\
data: {\"id\":\"u1\",\"model\":\"m\",\"choices\":[{\"delta\":{\"type\":\"text\",\"content\":\"lo\"}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n";
        let t = parse(body, &ctx()).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["id"], "u1");
        assert_eq!(v["choices"][0]["message"]["content"], "Hello");
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert_eq!(t.usage.unwrap().output_tokens, 2);
        assert_eq!(t.finish_reason.as_deref(), Some("stop"));
    }
}
