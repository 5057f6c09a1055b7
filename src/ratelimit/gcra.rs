//! The arithmetic of the generic cell rate algorithm (GCRA) for the cells in Redis: the
//! scripts (`lua/take.lua`, `lua/adjust.lua`) do this line for line, on Redis' clock.
//!
//! A limit of `L` per minute is a cell that accepts one unit every `T = 60 s / L` and a
//! burst of `L` units. Its whole state is the *theoretical arrival time* (TAT): when the
//! cell would be whole again. Taking `n` units moves the TAT forward by `n × T`; it is
//! allowed while the TAT stays at most one window (60 s) ahead of now. Refunding moves it
//! back (never behind now). Times here are microseconds; `backlog` is `max(TAT − now, 0)`.
//!
//! The in-process cells (`local.rs`) decide with the `governor` crate, which runs the same
//! algorithm in nanoseconds; its tests replay takes and corrections through both and check
//! they agree, so a replica that falls back to its own cells while Redis is away
//! enforces the same limit.

use std::time::Duration;

use super::{Correction, Verdict};

/// The window every limit is counted over, in microseconds.
pub const WINDOW_US: i64 = 60_000_000;

/// Increments are capped here: anything above one window is refused anyway, and the cap
/// keeps Redis' double arithmetic exact.
pub const MAX_INCREMENT_US: i64 = 4 * WINDOW_US;

/// How far `n` units move the TAT of a cell with `limit` per minute. Rounded down, so
/// `limit` units always fit in a window.
pub fn increment(limit: u64, n: u64) -> i64 {
    if limit == 0 {
        return MAX_INCREMENT_US;
    }
    let us = u128::from(n) * WINDOW_US as u128 / u128::from(limit);
    us.min(MAX_INCREMENT_US as u128) as i64
}

/// Whether a cell whose backlog is `backlog` can take an `increment`.
pub fn admits(backlog: i64, increment: i64) -> bool {
    backlog.max(0).saturating_add(increment) <= WINDOW_US
}

/// Units still available in a cell with `limit` per minute at `backlog`.
pub fn remaining(limit: u64, backlog: i64) -> u64 {
    let free = (WINDOW_US - backlog.max(0)).max(0) as u128;
    (free * u128::from(limit) / WINDOW_US as u128) as u64
}

/// How long until a refused `increment` fits, from `backlog`.
pub fn retry_in(backlog: i64, increment: i64) -> Duration {
    let wait = backlog.max(0).saturating_add(increment) - WINDOW_US;
    Duration::from_micros(wait.max(0) as u64)
}

/// How far `correction` moves the TAT of a cell with `limit` per minute (negative refunds).
pub fn delta(limit: u64, correction: Correction) -> i64 {
    match correction {
        Correction::Charge(n) => increment(limit, n),
        Correction::Refund(n) => -increment(limit, n),
    }
}

/// A cell's verdict from the backlog the take script saw; `taken` when every cell admitted.
pub fn verdict(limit: u64, cost: u64, backlog: i64, taken: bool) -> Verdict {
    let inc = increment(limit, cost);
    let at = if taken {
        backlog.saturating_add(inc)
    } else {
        backlog
    };
    Verdict {
        admits: admits(backlog, inc),
        retry_in: (cost <= limit).then(|| retry_in(backlog, inc)),
        remaining: remaining(limit, at),
        reset_in: Duration::from_micros(at.max(0) as u64),
    }
}

/// `duration` as OpenAI writes `x-ratelimit-reset-*`: Go's duration notation rounded to
/// the millisecond (`20ms`, `1s`, `1.5s`, `6m0s`, `1h0m0s`).
pub fn format_reset(d: Duration) -> String {
    let ms = (d.as_micros().div_ceil(1000)) as u64;
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        let digits = format!("{frac:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `n` units at `now` from a cell at `tat`: the new TAT, or `None` if refused.
    fn take(tat: i64, now: i64, limit: u64, n: u64) -> Option<i64> {
        let backlog = (tat - now).max(0);
        let inc = increment(limit, n);
        admits(backlog, inc).then_some(now + backlog + inc)
    }

    #[test]
    fn a_full_cell_allows_exactly_its_limit_at_once() {
        for limit in [1u64, 7, 10, 60, 600, 200_000] {
            let mut tat = 0;
            let mut taken = 0;
            while let Some(t) = take(tat, 1_000, limit, 1) {
                tat = t;
                taken += 1;
                assert!(taken <= limit, "limit {limit}");
            }
            assert_eq!(taken, limit, "limit {limit}");
        }
    }

    #[test]
    fn a_unit_comes_back_every_emission_interval() {
        // 10 per minute: one every 6 s.
        let mut tat = 0;
        for _ in 0..10 {
            tat = take(tat, 0, 10, 1).unwrap();
        }
        assert_eq!(tat, WINDOW_US);
        assert_eq!(take(tat, 5_999_999, 10, 1), None);
        assert_eq!(
            retry_in(tat - 1_000_000, increment(10, 1)),
            Duration::from_secs(5)
        );
        let tat = take(tat, 6_000_000, 10, 1).expect("one unit is back after 6 s");
        assert_eq!(take(tat, 6_000_000, 10, 1), None);
    }

    #[test]
    fn remaining_counts_whole_units_left() {
        assert_eq!(remaining(10, 0), 10);
        assert_eq!(remaining(10, 6_000_000), 9);
        assert_eq!(remaining(10, 6_000_001), 8);
        assert_eq!(remaining(10, WINDOW_US), 0);
        assert_eq!(remaining(7, increment(7, 1)), 6);
        assert_eq!(remaining(1000, -5), 1000);
    }

    #[test]
    fn tokens_are_taken_in_bulk_and_refunded() {
        // 1000 tokens per minute; a 600-token estimate, then 580 of them refunded.
        let tat = take(0, 0, 1000, 600).unwrap();
        assert_eq!(remaining(1000, tat), 400);
        assert_eq!(take(tat, 0, 1000, 500), None);
        let refunded = tat - increment(1000, 580);
        assert_eq!(remaining(1000, refunded), 980);
        assert!(take(refunded, 0, 1000, 500).is_some());
        // More than the whole limit never fits.
        assert!(!admits(0, increment(1000, 1001)));
    }

    #[test]
    fn huge_increments_are_capped_and_a_zero_limit_refuses() {
        assert_eq!(increment(1, u64::MAX), MAX_INCREMENT_US);
        assert!(!admits(0, increment(0, 1)));
        assert_eq!(increment(1_000_000_000, 1), 0);
    }

    #[test]
    fn reset_is_written_like_openai() {
        let f = |ms: u64| format_reset(Duration::from_millis(ms));
        assert_eq!(f(0), "0s");
        assert_eq!(f(20), "20ms");
        assert_eq!(f(1000), "1s");
        assert_eq!(f(1500), "1.5s");
        assert_eq!(f(6_250), "6.25s");
        assert_eq!(f(360_000), "6m0s");
        assert_eq!(f(61_001), "1m1.001s");
        assert_eq!(f(3_600_000), "1h0m0s");
        assert_eq!(format_reset(Duration::from_micros(1)), "1ms");
    }
}
