//! Reading what tollgate needs from an OpenAI response or stream chunk (error, usage,
//! finish reason, the text produced) without building the whole JSON document.
//!
//! OpenAI answers are relayed byte for byte, so the gateway reads only a few fields. Parsing
//! every chunk into a `serde_json::Value` allocated a map and a string for each of its
//! fields, which made it the largest cost of relaying a stream. [`skim`] reads a body in
//! one pass into structs of just the fields wanted (strings borrowed where they have no
//! escapes; every other field is skipped without being built). It reads only the usual
//! shape, with each field of the type OpenAI documents or `null`; for anything else it
//! returns `None` and callers read the `Value` tree as before, so an unusual body is read
//! exactly as it always was.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::providers::StreamOutcome;
use crate::usage::Usage;

/// The top level of a response or chunk.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Skim<'a> {
    #[serde(borrow)]
    pub error: Option<&'a RawValue>,
    #[serde(borrow)]
    choices: Option<Vec<Obj<Choice<'a>>>>,
    usage: Option<Obj<UsageSkim>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Choice<'a> {
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    delta: Option<Obj<Delta<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Delta<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<Obj<ToolCall<'a>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ToolCall<'a> {
    #[serde(borrow)]
    function: Option<Obj<Function<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Function<'a> {
    #[serde(borrow)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UsageSkim {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<Obj<Details>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Details {
    cached_tokens: Option<u64>,
    cache_write_tokens: Option<u64>,
}

/// A struct read only from a JSON object: a derived struct would also accept an array,
/// as a sequence of its fields.
#[derive(Debug, Default)]
pub(crate) struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Fields(std::marker::PhantomData)).map(Obj)
    }
}

impl<'de, T: Deserialize<'de>> Obj<T> {
    /// `text` read as `T` if it is a JSON object of that shape.
    pub(crate) fn read(text: &'de str) -> Option<T> {
        serde_json::from_str::<Obj<T>>(text).ok().map(|o| o.0)
    }
}

impl<T> std::ops::Deref for Obj<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Reads `text` in one pass if it has the usual shape: an object whose fields read here
/// have the types OpenAI documents (or are `null`). Anything else (another type, a
/// duplicated key, not an object) gives `None`, and the caller reads the JSON tree.
pub(crate) fn skim(text: &str) -> Option<Skim<'_>> {
    Obj::read(text)
}

impl Skim<'_> {
    /// The `usage` object's counts, as [`super::usage_from_json`] reads them.
    pub fn usage(&self) -> Option<Usage> {
        let u = self.usage.as_ref()?;
        if u.prompt_tokens.is_none() && u.completion_tokens.is_none() {
            return None;
        }
        let input = u.prompt_tokens.unwrap_or(0);
        let details = u.prompt_tokens_details.as_ref();
        let detail = |f: fn(&Details) -> Option<u64>| details.and_then(|d| f(d)).unwrap_or(0);
        Some(Usage {
            input_tokens: input,
            output_tokens: u.completion_tokens.unwrap_or(0),
            cached_input_tokens: detail(|d| d.cached_tokens).min(input),
            cache_write_tokens: detail(|d| d.cache_write_tokens).min(input),
            estimated: false,
        })
    }

    /// Whether there is a `choices` array, and if so whether it is empty.
    pub fn choices_empty(&self) -> Option<bool> {
        self.choices.as_ref().map(Vec::is_empty)
    }

    /// The first `finish_reason` among the choices; `Err(())` when there is no `choices`
    /// array.
    pub fn finish_reason(&self) -> Result<Option<String>, ()> {
        let choices = self.choices.as_ref().ok_or(())?;
        Ok(choices
            .iter()
            .find_map(|c| c.finish_reason.as_deref().map(str::to_string)))
    }

    /// Adds each choice's text (content, refusal, tool-call arguments) to `outcome`, and
    /// the last finish reason, as a stream chunk's choices are recorded.
    pub fn record_choices(&self, outcome: &mut StreamOutcome) {
        for choice in self.choices.iter().flatten() {
            if let Some(reason) = &choice.finish_reason {
                outcome.finish_reason = Some(reason.to_string());
            }
            let Some(delta) = &choice.delta else {
                continue;
            };
            for text in [&delta.content, &delta.refusal].into_iter().flatten() {
                outcome.output_text.push_str(text);
            }
            for call in delta.tool_calls.iter().flatten() {
                if let Some(args) = call.function.as_ref().and_then(|f| f.arguments.as_ref()) {
                    outcome.output_text.push_str(args);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::openai::stream::record_choice;
    use crate::providers::openai::usage_from_json;
    use serde_json::Value;

    /// What the `Value` path records for a chunk.
    fn by_tree(text: &str) -> (Option<Usage>, Option<String>, String) {
        let v: Value = serde_json::from_str(text).unwrap();
        let mut o = StreamOutcome::default();
        for c in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            record_choice(c, &mut o);
        }
        (
            usage_from_json(v.get("usage")),
            o.finish_reason,
            o.output_text,
        )
    }

    fn by_skim(text: &str) -> (Option<Usage>, Option<String>, String) {
        let s = skim(text).expect("the usual shape");
        let mut o = StreamOutcome::default();
        s.record_choices(&mut o);
        (s.usage(), o.finish_reason, o.output_text)
    }

    fn recorded_chunks() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openai");
        let mut chunks = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().ends_with(".stream.sse") {
                let text = std::fs::read_to_string(&path).unwrap();
                chunks.extend(
                    text.lines()
                        .filter_map(|l| l.strip_prefix("data: "))
                        .filter(|d| d.starts_with('{') && !d.contains("\"error\""))
                        .map(str::to_string),
                );
            }
        }
        assert!(chunks.len() > 30, "recorded chunks found: {}", chunks.len());
        chunks
    }

    #[test]
    fn recorded_chunks_read_the_same_as_through_the_json_tree() {
        for chunk in recorded_chunks() {
            assert_eq!(by_skim(&chunk), by_tree(&chunk), "{chunk}");
        }
    }

    #[test]
    fn usual_shapes_read_the_same_as_through_the_json_tree() {
        for chunk in [
            r#"{"choices":[{"delta":{"content":"caf\u00e9 \"x\"\n"},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"a\":1}"}},{"function":null},{}]}}]}"#,
            r#"{"choices":[{"delta":{"refusal":"no","content":null}}],"usage":{"prompt_tokens":3}}"#,
            r#"{"usage":{"prompt_tokens":30,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":40}}}"#,
            r#"{"usage":{"completion_tokens":2,"prompt_tokens_details":null}}"#,
            r#"{"usage":{},"choices":[]}"#,
            r#"{"usage":null,"choices":null,"error":null}"#,
            r#" { "choices" : [ { "delta" : { "content" : "spaced" } , "finish_reason" : "stop" } ] } "#,
        ] {
            assert_eq!(by_skim(chunk), by_tree(chunk), "{chunk}");
        }
    }

    /// What the stream translator records for one chunk.
    fn translated(chunk: &str) -> (Option<Usage>, Option<String>, String) {
        use crate::providers::openai::stream::{DoneTerminatedStream, OpenAiPayloads};
        use crate::providers::sse::SseParser;
        use crate::providers::StreamTranslator;
        let mut t = DoneTerminatedStream::new(
            OpenAiPayloads {
                include_usage: true,
            },
            SseParser::default(),
        );
        let mut out = bytes::BytesMut::new();
        t.push(format!("data: {chunk}\n\n").as_bytes(), &mut out)
            .unwrap();
        let o = t.outcome();
        (o.usage, o.finish_reason, o.output_text)
    }

    #[test]
    fn other_shapes_are_left_to_the_json_tree_and_read_as_before() {
        for chunk in [
            r#"{"choices":"none"}"#,
            r#"{"choices":[1,"a",null,{"delta":{"content":"ok"}}]}"#,
            r#"{"choices":[{"finish_reason":7,"delta":{"content":5,"refusal":"no"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"x"}},3]}}]}"#,
            r#"{"choices":[{"delta":[1,2]}],"usage":{"prompt_tokens":3}}"#,
            r#"{"usage":{"prompt_tokens":"3","completion_tokens":2}}"#,
            r#"{"usage":[1,2],"choices":[]}"#,
            r#"{"usage":{"prompt_tokens":3.0,"completion_tokens":-2}}"#,
            r#"{"usage":{"prompt_tokens":30,"prompt_tokens_details":{"cached_tokens":"x"}}}"#,
            r#"{"choices":[{"delta":{"content":"a"}}],"choices":[{"delta":{"content":"b"}}]}"#,
        ] {
            assert!(skim(chunk).is_none(), "{chunk}");
            assert_eq!(translated(chunk), by_tree(chunk), "{chunk}");
        }
    }

    #[test]
    fn non_objects_and_duplicate_keys_are_left_to_the_json_tree() {
        assert!(skim("[1,2]").is_none());
        assert!(skim("\"text\"").is_none());
        assert!(skim("not json").is_none());
        assert!(skim(r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#).is_none());
    }

    #[test]
    fn finish_reason_needs_a_choices_array() {
        assert_eq!(skim(r#"{"id":"x"}"#).unwrap().finish_reason(), Err(()));
        let s = skim(r#"{"choices":[{"finish_reason":null},{"finish_reason":"length"}]}"#);
        assert_eq!(s.unwrap().finish_reason(), Ok(Some("length".into())));
    }
}
