//! Per-request state, filled in as the request moves through the gateway and read once at
//! the end for the access log (and, later, the ledger).

use std::time::{Duration, Instant};

use crate::billing::Hold;
use crate::budget::Caller;
use crate::error::GatewayError;
use crate::usage::Usage;

/// One try of one model.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub model: String,
    pub provider: String,
    /// HTTP status the upstream answered (0 when none: connect failure, timeout, skipped).
    pub status: u16,
    /// `ok`, or a short reason (`rate_limited`, `upstream_timeout`, `no_credentials`, …).
    pub outcome: String,
    pub latency: Duration,
}

impl AttemptRecord {
    /// Appends `model status outcome 12ms` to `out`.
    fn write_header_value(&self, out: &mut String) {
        let mut n = itoa::Buffer::new();
        for part in [
            &self.model,
            " ",
            n.format(self.status),
            " ",
            &self.outcome,
            " ",
        ] {
            out.push_str(part);
        }
        out.push_str(n.format(self.latency.as_millis()));
        out.push_str("ms");
    }
}

/// Everything known about a request.
#[derive(Debug)]
pub struct RequestCtx {
    pub request_id: String,
    pub started: Instant,
    pub route: &'static str,
    pub requested_model: Option<String>,
    /// Tier of a routed request.
    pub tier: Option<String>,
    /// The planner's reason (tier, budget, skipped models, latency class).
    pub route_reason: String,
    pub served_model: Option<String>,
    pub served_provider: Option<String>,
    pub attempts: Vec<AttemptRecord>,
    pub status: u16,
    pub error: Option<GatewayError>,
    pub usage: Option<Usage>,
    pub streamed: bool,
    pub time_to_first_token: Option<Duration>,
    pub client_gone: bool,
    /// Who the request bills to (after authentication).
    pub caller: Option<Caller>,
    /// The request's budget reservations, settled when it ends.
    pub hold: Option<Hold>,
    /// Prompt tokens counted before sending.
    pub prompt_tokens: u64,
    /// Text relayed to the client in a stream (to count output when no usage came).
    pub output_text: String,
    /// What the request cost, nano-dollars (set when it is billed).
    pub cost_nanos: u64,
    /// `x-ratelimit-*` headers, when a rate limit applies.
    pub rate_headers: Vec<(&'static str, String)>,
    /// Token estimate taken from the rate limits, corrected when the request ends.
    pub rate_ticket: Option<crate::ratelimit::Ticket>,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            request_id: new_id(),
            started: Instant::now(),
            route: "unknown",
            requested_model: None,
            tier: None,
            route_reason: String::new(),
            served_model: None,
            served_provider: None,
            attempts: Vec::new(),
            status: 0,
            error: None,
            usage: None,
            streamed: false,
            time_to_first_token: None,
            client_gone: false,
            caller: None,
            hold: None,
            prompt_tokens: 0,
            output_text: String::new(),
            cost_nanos: 0,
            rate_headers: Vec::new(),
            rate_ticket: None,
        }
    }

    /// The `x-tollgate-attempts` header value: every attempt, in order.
    pub fn attempts_header(&self) -> String {
        attempts_header(&self.attempts)
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}

/// The `x-tollgate-attempts` header value of `attempts`: `model status outcome 12ms, …`.
pub fn attempts_header(attempts: &[AttemptRecord]) -> String {
    let mut out = String::with_capacity(40 * attempts.len());
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        a.write_header_value(&mut out);
    }
    out
}

/// Digits of request ids, in ASCII order so that ids compare as their numbers do.
const ID_DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A 24-character alphanumeric request id: the Unix time in milliseconds (8 base-62 digits)
/// then 16 random digits (95 bits). Ids sort by the millisecond they were made in, so the
/// ledger's unique index on them grows at its end: a batch of inserts touches a few pages
/// there instead of one page per row all over the index.
pub fn new_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    id_at(ms)
}

fn id_at(ms: u64) -> String {
    let mut id = [0u8; 24];
    let mut t = ms;
    for d in id[..8].iter_mut().rev() {
        *d = ID_DIGITS[(t % 62) as usize];
        t /= 62;
    }
    for d in &mut id[8..] {
        *d = ID_DIGITS[fastrand::usize(..ID_DIGITS.len())];
    }
    id.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_sort_by_the_millisecond_they_were_made_in() {
        let times = [
            0,
            1,
            61,
            62,
            1_763_769_600_000,
            1_763_769_600_001,
            62u64.pow(8) - 1,
        ];
        let ids: Vec<String> = times.iter().map(|&t| id_at(t)).collect();
        for id in &ids {
            assert_eq!(id.len(), 24);
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
        assert_eq!(&id_at(62)[..8], "00000010");
        let a = new_id();
        std::thread::sleep(Duration::from_millis(2));
        assert!(a < new_id());
    }

    #[test]
    fn request_ids_made_in_the_same_millisecond_differ() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| id_at(5)).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
