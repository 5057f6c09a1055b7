//! Reading what tollgate needs from an OpenAI response or stream chunk (error, usage,
//! finish reason, the text produced) without building the whole JSON document.
//!
//! OpenAI answers are relayed byte for byte, so the gateway reads only a few fields. Parsing
//! every chunk into a `serde_json::Value` allocated a map and a string for each of its
//! fields, which made it the largest cost of relaying a stream. [`skim`] reads a body in
//! one pass with [`Scan`] into structs of just the fields wanted (strings borrowed where
//! they have no escapes; every other field is checked and skipped). It reads only the usual
//! shape, with each field of the type OpenAI documents or `null`; for anything else it
//! returns `None` and callers read the `Value` tree as before, so an unusual body is read
//! exactly as it always was.
//!
//! [`Obj`] is the `serde` counterpart for adapters that read a chunk into a derived struct.

use std::borrow::Cow;

use serde::Deserialize;

use crate::providers::json_scan::Scan;
use crate::providers::StreamOutcome;
use crate::usage::Usage;

/// What is read of a response or chunk.
#[derive(Debug, Default)]
pub(crate) struct Skim<'a> {
    /// It has an `error` that is not `null`.
    pub error: bool,
    choices: Option<Vec<Choice<'a>>>,
    usage: Option<UsageSkim>,
}

#[derive(Debug, Default)]
struct Choice<'a> {
    finish_reason: Option<Cow<'a, str>>,
    delta: Option<Delta<'a>>,
}

#[derive(Debug, Default)]
struct Delta<'a> {
    content: Option<Cow<'a, str>>,
    refusal: Option<Cow<'a, str>>,
    /// Each tool call's `function.arguments`, where it has them.
    tool_arguments: Option<Vec<Option<Cow<'a, str>>>>,
}

#[derive(Debug, Default)]
struct UsageSkim {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
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
/// duplicated key, not an object, or what [`Scan`] leaves to `serde_json`) gives `None`,
/// and the caller reads the JSON tree.
pub(crate) fn skim(text: &str) -> Option<Skim<'_>> {
    let mut s = Scan::new(text);
    let mut out = Skim::default();
    let mut seen = 0;
    s.object(|s, key| match key {
        "error" => {
            // Anything but `null` is an error, read by the caller's JSON tree.
            out.error = !s.once(&mut seen, 1, Scan::null)?;
            if out.error {
                s.skip()?;
            }
            Some(())
        }
        "choices" => s
            .once(&mut seen, 2, |s| s.nullable(|s| list(s, choice)))
            .map(|v| out.choices = v),
        "usage" => s
            .once(&mut seen, 4, |s| s.nullable(usage))
            .map(|v| out.usage = v),
        _ => s.skip(),
    })?;
    s.end()?;
    Some(out)
}

/// An array of `T`.
fn list<'a, T>(s: &mut Scan<'a>, read: fn(&mut Scan<'a>) -> Option<T>) -> Option<Vec<T>> {
    let mut items = Vec::new();
    s.array(|s| {
        items.push(read(s)?);
        Some(())
    })?;
    Some(items)
}

fn choice<'a>(s: &mut Scan<'a>) -> Option<Choice<'a>> {
    let mut c = Choice::default();
    let mut seen = 0;
    s.object(|s, key| match key {
        "finish_reason" => s
            .once(&mut seen, 1, |s| s.nullable(Scan::string))
            .map(|v| c.finish_reason = v),
        "delta" => s
            .once(&mut seen, 2, |s| s.nullable(delta))
            .map(|v| c.delta = v),
        _ => s.skip(),
    })?;
    Some(c)
}

fn delta<'a>(s: &mut Scan<'a>) -> Option<Delta<'a>> {
    let mut d = Delta::default();
    let mut seen = 0;
    s.object(|s, key| match key {
        "content" => s
            .once(&mut seen, 1, |s| s.nullable(Scan::string))
            .map(|v| d.content = v),
        "refusal" => s
            .once(&mut seen, 2, |s| s.nullable(Scan::string))
            .map(|v| d.refusal = v),
        "tool_calls" => s
            .once(&mut seen, 4, |s| s.nullable(|s| list(s, tool_call)))
            .map(|v| d.tool_arguments = v),
        _ => s.skip(),
    })?;
    Some(d)
}

/// A tool call's `function.arguments`.
fn tool_call<'a>(s: &mut Scan<'a>) -> Option<Option<Cow<'a, str>>> {
    let mut arguments = None;
    let mut seen = 0;
    s.object(|s, key| match key {
        "function" => s
            .once(&mut seen, 1, |s| s.nullable(function))
            .map(|v| arguments = v.flatten()),
        _ => s.skip(),
    })?;
    Some(arguments)
}

fn function<'a>(s: &mut Scan<'a>) -> Option<Option<Cow<'a, str>>> {
    let mut arguments = None;
    let mut seen = 0;
    s.object(|s, key| match key {
        "arguments" => s
            .once(&mut seen, 1, |s| s.nullable(Scan::string))
            .map(|v| arguments = v),
        _ => s.skip(),
    })?;
    Some(arguments)
}

fn usage(s: &mut Scan<'_>) -> Option<UsageSkim> {
    let mut u = UsageSkim::default();
    let mut seen = 0;
    s.object(|s, key| match key {
        "prompt_tokens" => s
            .once(&mut seen, 1, |s| s.nullable(Scan::u64))
            .map(|v| u.prompt_tokens = v),
        "completion_tokens" => s
            .once(&mut seen, 2, |s| s.nullable(Scan::u64))
            .map(|v| u.completion_tokens = v),
        "prompt_tokens_details" => {
            let details = |s: &mut Scan<'_>| {
                let mut inner = 0;
                s.object(|s, key| match key {
                    "cached_tokens" => s
                        .once(&mut inner, 1, |s| s.nullable(Scan::u64))
                        .map(|v| u.cached_tokens = v),
                    "cache_write_tokens" => s
                        .once(&mut inner, 2, |s| s.nullable(Scan::u64))
                        .map(|v| u.cache_write_tokens = v),
                    _ => s.skip(),
                })
            };
            s.once(&mut seen, 4, |s| s.nullable(details)).map(drop)
        }
        _ => s.skip(),
    })?;
    Some(u)
}

impl Skim<'_> {
    /// The `usage` object's counts, as [`super::usage_from_json`] reads them.
    pub fn usage(&self) -> Option<Usage> {
        let u = self.usage.as_ref()?;
        if u.prompt_tokens.is_none() && u.completion_tokens.is_none() {
            return None;
        }
        let input = u.prompt_tokens.unwrap_or(0);
        Some(Usage {
            input_tokens: input,
            output_tokens: u.completion_tokens.unwrap_or(0),
            cached_input_tokens: u.cached_tokens.unwrap_or(0).min(input),
            cache_write_tokens: u.cache_write_tokens.unwrap_or(0).min(input),
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
            for args in delta.tool_arguments.iter().flatten().flatten() {
                outcome.output_text.push_str(args);
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
