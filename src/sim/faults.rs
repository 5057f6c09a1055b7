//! Fault injection: the public [`Fault`] enum, the `[[sim: …]]` directive syntax, and the
//! combined plan one request follows (see the module docs of [`crate::sim`]).

use std::time::Duration;

/// A failure a simulated provider can be told to produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status, the provider's exact error body and headers
    /// (`retry-after` when `retry_after_secs` is given; rate-limit headers on 429).
    /// Statuses below 300 are ignored (the request is answered normally).
    Status {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    /// Wait before sending the response headers.
    DelayFirstByte(Duration),
    /// Stream: wait between events.
    ChunkDelay(Duration),
    /// Stream: abort the connection abruptly after N events (no clean chunked end).
    ResetAfterEvents(usize),
    /// Stream: end the body cleanly after N events, without the terminal event.
    TruncateAfterEvents(usize),
    /// Stream: the provider's mid-stream error event after N events.
    StreamErrorAfterEvents(usize),
    /// 200 with invalid JSON (non-stream), or an invalid JSON data line (stream).
    MalformedBody,
    /// Accept and read the request, never answer.
    Hang,
    /// Stream: after the first event, one event whose data line is this many bytes.
    OversizedEvent(usize),
    /// Stream: never end (the events repeat, `chunk_delay` apart, 10 ms by default).
    Endless,
    /// `200 OK` whose body is the provider's error JSON.
    ErrorBodyOk,
    /// `200 OK` with an HTML page (`text/html`), as a misconfigured proxy would answer.
    Html,
}

/// How a stream ends early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    Reset(usize),
    Truncate(usize),
    Error(usize),
}

/// Everything a request is told to do wrong; several faults may combine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FaultPlan {
    pub status: Option<(u16, Option<u64>)>,
    pub first_byte_delay: Option<Duration>,
    pub chunk_delay: Option<Duration>,
    pub stream_end: Option<StreamEnd>,
    pub malformed: bool,
    pub hang: bool,
    pub oversized_event: Option<usize>,
    pub endless: bool,
    pub error_body_ok: bool,
    pub html: bool,
}

impl FaultPlan {
    pub fn is_empty(&self) -> bool {
        *self == FaultPlan::default()
    }
}

impl From<&Fault> for FaultPlan {
    fn from(f: &Fault) -> Self {
        let mut p = FaultPlan::default();
        match f {
            Fault::Status {
                status,
                retry_after_secs,
            } => p.status = Some((*status, *retry_after_secs)),
            Fault::DelayFirstByte(d) => p.first_byte_delay = Some(*d),
            Fault::ChunkDelay(d) => p.chunk_delay = Some(*d),
            Fault::ResetAfterEvents(n) => p.stream_end = Some(StreamEnd::Reset(*n)),
            Fault::TruncateAfterEvents(n) => p.stream_end = Some(StreamEnd::Truncate(*n)),
            Fault::StreamErrorAfterEvents(n) => p.stream_end = Some(StreamEnd::Error(*n)),
            Fault::MalformedBody => p.malformed = true,
            Fault::Hang => p.hang = true,
            Fault::OversizedEvent(n) => p.oversized_event = Some(*n),
            Fault::Endless => p.endless = true,
            Fault::ErrorBodyOk => p.error_body_ok = true,
            Fault::Html => p.html = true,
        }
        p
    }
}

/// The largest `huge_event=` size honoured (64 MiB).
pub(crate) const MAX_EVENT: usize = 64 << 20;

/// The largest `words=` value honoured (keeps a typo from allocating gigabytes).
pub(crate) const MAX_WORDS: usize = 50_000;

/// A parsed directive or `x-sim-fault` header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Directive {
    pub plan: FaultPlan,
    /// Output length override.
    pub words: Option<usize>,
}

impl Directive {
    /// Collects every `[[sim: …]]` block in `text` (later keys win).
    pub fn from_text(text: &str) -> Directive {
        let mut d = Directive::default();
        let mut rest = text;
        while let Some(start) = rest.find("[[sim:") {
            let after = &rest[start + "[[sim:".len()..];
            let Some(end) = after.find("]]") else { break };
            d.apply_spec(&after[..end]);
            rest = &after[end + 2..];
        }
        d
    }

    /// Parses a bare list of `key=value` items (the header form).
    pub fn from_spec(spec: &str) -> Directive {
        let mut d = Directive::default();
        d.apply_spec(spec);
        d
    }

    fn apply_spec(&mut self, spec: &str) {
        let items = spec
            .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
            .filter(|s| !s.is_empty());
        for item in items {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (item.trim().to_ascii_lowercase(), None),
            };
            let num = value.and_then(|v| v.parse::<u64>().ok());
            let ms = num.map(Duration::from_millis);
            let count = num.and_then(|n| usize::try_from(n).ok());
            let p = &mut self.plan;
            match key.as_str() {
                "status" => {
                    if let Some(s) = num.filter(|s| (100..=599).contains(s)) {
                        let retry = p.status.and_then(|(_, r)| r);
                        p.status = Some((s as u16, retry));
                    }
                }
                "retry_after" => {
                    if let Some(r) = num {
                        match &mut p.status {
                            Some((_, retry)) => *retry = Some(r),
                            // Remembered until a status arrives; a lone retry_after is a 429.
                            None => p.status = Some((429, Some(r))),
                        }
                    }
                }
                "delay_ms" => p.first_byte_delay = ms.or(p.first_byte_delay),
                "chunk_delay_ms" => p.chunk_delay = ms.or(p.chunk_delay),
                "reset_after" => {
                    if let Some(n) = count {
                        p.stream_end = Some(StreamEnd::Reset(n));
                    }
                }
                "truncate_after" => {
                    if let Some(n) = count {
                        p.stream_end = Some(StreamEnd::Truncate(n));
                    }
                }
                "stream_error_after" => {
                    if let Some(n) = count {
                        p.stream_end = Some(StreamEnd::Error(n));
                    }
                }
                "malformed" => p.malformed = true,
                "hang" => p.hang = true,
                "huge_event" => p.oversized_event = count.map(|n| n.min(MAX_EVENT)),
                "endless" => p.endless = true,
                "error_body_200" => p.error_body_ok = true,
                "html" => p.html = true,
                "words" => {
                    if let Some(n) = count {
                        self.words = Some(n.min(MAX_WORDS));
                    }
                }
                other => tracing::debug!(key = other, "ignoring unknown sim directive key"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_with_retry_after_from_message_text() {
        let d = Directive::from_text("hello [[sim: status=429 retry_after=2]] there");
        assert_eq!(d.plan.status, Some((429, Some(2))));
        assert!(d.words.is_none());
    }

    #[test]
    fn combines_keys_and_blocks_later_keys_win() {
        let d = Directive::from_text(
            "[[sim: chunk_delay_ms=50 reset_after=3]] x [[sim: words=7 truncate_after=2]]",
        );
        assert_eq!(d.plan.chunk_delay, Some(Duration::from_millis(50)));
        assert_eq!(d.plan.stream_end, Some(StreamEnd::Truncate(2)));
        assert_eq!(d.words, Some(7));
    }

    #[test]
    fn flags_and_header_form() {
        let d = Directive::from_spec("malformed, hang");
        assert!(d.plan.malformed && d.plan.hang);
        let d = Directive::from_spec("status=503");
        assert_eq!(d.plan.status, Some((503, None)));
    }

    #[test]
    fn ignores_garbage_and_unterminated_blocks() {
        assert!(Directive::from_text("[[sim: status=abc bogus=1 words=-3]]")
            .plan
            .is_empty());
        assert_eq!(Directive::from_text("[[sim: hang"), Directive::default());
        assert_eq!(Directive::from_text("[[sim: status=99]]").plan.status, None);
    }

    #[test]
    fn words_are_capped() {
        assert_eq!(
            Directive::from_text("[[sim: words=999999999]]").words,
            Some(MAX_WORDS)
        );
    }

    #[test]
    fn fault_converts_to_plan() {
        let p = FaultPlan::from(&Fault::ResetAfterEvents(3));
        assert_eq!(p.stream_end, Some(StreamEnd::Reset(3)));
        assert!(!p.is_empty());
    }
}
