//! Incremental server-sent-events parsing and writing, shared by every adapter.
//!
//! [`SseParser`] follows the WHATWG event-stream rules: lines end in `\n`, `\r\n` or `\r`;
//! `data:` lines of one event are joined with `\n`; a blank line dispatches the event;
//! lines starting with `:` are comments. It accepts input split at any byte, so a stream
//! fed one byte at a time yields exactly the events of the whole stream.

use bytes::{BufMut, BytesMut};
use serde::Serialize;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// All `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental parser. Holds at most one partial line and one partial event.
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` at the start of the next one belongs to it.
    skip_lf: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    max_event_bytes: usize,
}

/// The default cap on one event's size (line plus accumulated data).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// An event grew past the parser's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server-sent event larger than {limit} bytes")]
pub struct EventTooLarge {
    pub limit: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            line: Vec::new(),
            skip_lf: false,
            event: None,
            data: String::new(),
            has_data: false,
            max_event_bytes,
        }
    }

    /// Feeds bytes; calls `on_event` for every event completed by them.
    pub fn push(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(SseEvent),
    ) -> Result<(), EventTooLarge> {
        let mut rest = chunk;
        if self.skip_lf {
            if let Some((&b'\n', tail)) = rest.split_first() {
                rest = tail;
            }
            if !rest.is_empty() || chunk.is_empty() {
                self.skip_lf = false;
            }
        }
        while !rest.is_empty() {
            match memchr::memchr2(b'\n', b'\r', rest) {
                None => {
                    self.line.extend_from_slice(rest);
                    self.check_size()?;
                    break;
                }
                Some(pos) => {
                    let (head, tail) = rest.split_at(pos);
                    let was_cr = tail[0] == b'\r';
                    rest = &tail[1..];
                    if was_cr {
                        match rest.first() {
                            Some(b'\n') => rest = &rest[1..],
                            Some(_) => {}
                            None => self.skip_lf = true,
                        }
                    }
                    let event = if self.line.is_empty() {
                        // The whole line is in this chunk: read it in place.
                        if head.len() + self.data.len() > self.max_event_bytes {
                            return Err(EventTooLarge {
                                limit: self.max_event_bytes,
                            });
                        }
                        self.process_line(head)
                    } else {
                        self.line.extend_from_slice(head);
                        self.check_size()?;
                        let line = std::mem::take(&mut self.line);
                        let event = self.process_line(&line);
                        // Keep the buffer for the next partial line.
                        self.line = line;
                        self.line.clear();
                        event
                    };
                    if let Some(ev) = event {
                        on_event(ev);
                    }
                }
            }
        }
        Ok(())
    }

    /// Called at end of input: dispatches a final event that lacked its blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            if let Some(ev) = self.process_line(&line) {
                return Some(ev);
            }
        }
        self.dispatch()
    }

    fn check_size(&self) -> Result<(), EventTooLarge> {
        if self.line.len() + self.data.len() > self.max_event_bytes {
            Err(EventTooLarge {
                limit: self.max_event_bytes,
            })
        } else {
            Ok(())
        }
    }

    fn process_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        // Valid UTF-8 (the usual case) is checked by the faster validator.
        let value = match std::str::from_utf8(value) {
            Ok(v) => std::borrow::Cow::Borrowed(v),
            Err(_) => String::from_utf8_lossy(value),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.into_owned()),
            _ => {} // id, retry and unknown fields carry nothing we translate
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if !self.has_data && self.event.is_none() {
            return None;
        }
        let ev = SseEvent {
            event: self.event.take(),
            data: std::mem::take(&mut self.data),
        };
        self.has_data = false;
        Some(ev)
    }
}

/// Appends `data: <json>\n\n`.
pub fn write_json(out: &mut BytesMut, value: &impl Serialize) {
    out.put_slice(b"data: ");
    let mut w = out.writer();
    // Serializing our own types to memory cannot fail.
    let _ = serde_json::to_writer(&mut w, value);
    let out = w.into_inner();
    out.put_slice(b"\n\n");
}

/// Appends `data: <raw>\n\n` for a payload that is already JSON text.
pub fn write_raw(out: &mut BytesMut, data: &str) {
    out.put_slice(b"data: ");
    out.put_slice(data.as_bytes());
    out.put_slice(b"\n\n");
}

/// Appends the OpenAI end-of-stream sentinel.
pub fn write_done(out: &mut BytesMut) {
    out.put_slice(b"data: [DONE]\n\n");
}

/// Feeds `input` to a fresh parser in pieces of `piece` bytes and returns all events.
/// Test helper for "split at any byte" properties.
pub fn parse_all(input: &[u8], piece: usize) -> Vec<SseEvent> {
    let mut p = SseParser::default();
    let mut evs = Vec::new();
    for c in input.chunks(piece.max(1)) {
        p.push(c, |e| evs.push(e))
            .expect("event within default limit");
    }
    evs.extend(p.finish());
    evs
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n: comment\n\ndata: x\ndata: y\n\nevent: ping\rdata: {}\r\rdata: tail";

    #[test]
    fn parses_named_events_multiline_data_and_all_line_endings() {
        let evs = parse_all(STREAM, STREAM.len());
        assert_eq!(
            evs,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "x\ny".into()
                },
                SseEvent {
                    event: Some("ping".into()),
                    data: "{}".into()
                },
                SseEvent {
                    event: None,
                    data: "tail".into()
                },
            ]
        );
    }

    #[test]
    fn any_split_yields_the_same_events() {
        let whole = parse_all(STREAM, STREAM.len());
        for piece in 1..STREAM.len() {
            assert_eq!(parse_all(STREAM, piece), whole, "piece size {piece}");
        }
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut p = SseParser::new(16);
        let r = p.push(b"data: 0123456789012345678901234567890", |_| {});
        assert_eq!(r, Err(EventTooLarge { limit: 16 }));
    }

    #[test]
    fn writer_frames_json_and_done() {
        let mut out = BytesMut::new();
        write_json(&mut out, &serde_json::json!({"k": 1}));
        write_done(&mut out);
        assert_eq!(&out[..], b"data: {\"k\":1}\n\ndata: [DONE]\n\n");
    }
}
