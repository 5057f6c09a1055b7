//! Reading the common Anthropic stream event, a text delta, without building its JSON tree.
//!
//! Most events of a streamed answer are `content_block_delta`s carrying a `text_delta`,
//! and all the translator takes from one is its text. [`text_delta`] reads exactly that
//! shape in one pass with [`Scan`]; for every other event or shape it returns `None` and
//! the translator reads the `serde_json::Value` as before.

use std::borrow::Cow;

use crate::providers::json_scan::Scan;

/// The text of `data` if it is a `content_block_delta` event whose delta is a `text_delta`
/// with a string `text` (and every key read here appears once).
pub(super) fn text_delta(data: &str) -> Option<Cow<'_, str>> {
    let mut s = Scan::new(data);
    let mut kind = None;
    let mut text = None;
    let mut seen = 0;
    s.object(|s, key| match key {
        "type" => s.once(&mut seen, 1, Scan::string).map(|v| kind = Some(v)),
        "delta" => {
            let mut delta_type = None;
            let mut inner = 0;
            s.once(&mut seen, 2, |s| {
                s.object(|s, key| match key {
                    "type" => s
                        .once(&mut inner, 1, Scan::string)
                        .map(|v| delta_type = Some(v)),
                    "text" => s.once(&mut inner, 2, Scan::string).map(|v| text = Some(v)),
                    _ => s.skip(),
                })
            })?;
            (delta_type.as_deref() == Some("text_delta")).then_some(())
        }
        _ => s.skip(),
    })?;
    s.end()?;
    (kind.as_deref() == Some("content_block_delta")).then_some(())?;
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// What the translator's `Value` path takes from an event as a text delta.
    fn by_tree(data: &str) -> Option<String> {
        let v: Value = serde_json::from_str(data).ok()?;
        if v.get("type")?.as_str()? != "content_block_delta" {
            return None;
        }
        let delta = v.get("delta")?;
        if delta.get("type")?.as_str()? != "text_delta" {
            return None;
        }
        delta.get("text")?.as_str().map(str::to_string)
    }

    fn recorded_events() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/anthropic/recorded");
        let mut events = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().ends_with(".stream.sse") {
                let text = std::fs::read_to_string(&path).unwrap();
                events.extend(
                    text.lines()
                        .filter_map(|l| l.strip_prefix("data: "))
                        .map(str::to_string),
                );
            }
        }
        events
    }

    #[test]
    fn recorded_text_deltas_read_the_same_as_through_the_json_tree() {
        let events = recorded_events();
        let mut read = 0;
        for data in &events {
            let fast = text_delta(data).map(Cow::into_owned);
            if fast.is_some() {
                read += 1;
                assert_eq!(fast, by_tree(data), "{data}");
            }
        }
        let deltas = events.iter().filter(|d| by_tree(d).is_some()).count();
        assert!(deltas > 20, "recorded text deltas: {deltas}");
        assert_eq!(
            read, deltas,
            "every recorded text delta is read in one pass"
        );
    }

    #[test]
    fn escaped_and_spaced_text_deltas_are_read() {
        for data in [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"caf\u00e9 \"q\"\n"}}"#,
            r#" { "delta" : { "text" : "", "type" : "text_delta" } , "type" : "content_block_delta" } "#,
        ] {
            let fast = text_delta(data).map(Cow::into_owned);
            assert!(fast.is_some(), "{data}");
            assert_eq!(fast, by_tree(data), "{data}");
        }
    }

    #[test]
    fn other_events_and_shapes_are_left_to_the_json_tree() {
        for data in [
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":5}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta"}}"#,
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a","text":"b"}}"#,
            r#"{"type":"content_block_delta","type":"ping","delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"message_delta","delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}} x"#,
            r#"{"type":"ping"}"#,
            "not json",
        ] {
            assert_eq!(text_delta(data), None, "{data}");
        }
    }
}
