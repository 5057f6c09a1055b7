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

/// A random 24-character alphanumeric id.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..24)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}
