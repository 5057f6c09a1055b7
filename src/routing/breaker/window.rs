//! The rolling window of recent outcomes a Closed circuit judges its upstream by.
//!
//! Outcomes are counted in time buckets a tenth of the window wide, kept in arrival order
//! with running totals, so recording and reading are O(1) amortized. A bucket leaves the
//! window once its first outcome is a full window old: every counted outcome is younger than
//! the window, and an outcome may leave up to one bucket width early. Bucket widths follow
//! the window length in force when the bucket was started, so a config reload that changes
//! the window keeps the counts.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Buckets per window length.
const BUCKETS_PER_WINDOW: u32 = 10;

#[derive(Debug)]
struct Bucket {
    start: Instant,
    successes: u64,
    failures: u64,
}

/// Successes and failures within the last `window`.
#[derive(Debug, Default)]
pub(super) struct Window {
    buckets: VecDeque<Bucket>,
    successes: u64,
    failures: u64,
}

impl Window {
    /// Records one outcome at `now`.
    pub(super) fn record(&mut self, now: Instant, window: Duration, failed: bool) {
        self.prune(now, window);
        let width = (window / BUCKETS_PER_WINDOW).max(Duration::from_millis(1));
        let current = self
            .buckets
            .back()
            .is_some_and(|b| now.saturating_duration_since(b.start) < width);
        if !current {
            self.buckets.push_back(Bucket {
                start: now,
                successes: 0,
                failures: 0,
            });
        }
        if let Some(b) = self.buckets.back_mut() {
            if failed {
                b.failures += 1;
                self.failures += 1;
            } else {
                b.successes += 1;
                self.successes += 1;
            }
        }
    }

    /// Drops buckets whose first outcome is at least `window` old.
    pub(super) fn prune(&mut self, now: Instant, window: Duration) {
        while let Some(b) = self.buckets.front() {
            if now.saturating_duration_since(b.start) < window {
                break;
            }
            self.successes -= b.successes;
            self.failures -= b.failures;
            self.buckets.pop_front();
        }
    }

    /// (successes, failures) as of the last record or prune.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.successes, self.failures)
    }

    pub(super) fn clear(&mut self) {
        *self = Window::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(10);

    #[test]
    fn counts_outcomes_and_drops_them_a_window_later() {
        let t0 = Instant::now();
        let mut w = Window::default();
        w.record(t0, W, true);
        w.record(t0 + Duration::from_millis(500), W, false);
        w.record(t0 + Duration::from_secs(5), W, true);
        assert_eq!(w.counts(), (1, 2));
        // The first bucket (t0 .. t0+1s) holds two outcomes and leaves at t0+10s.
        w.prune(t0 + Duration::from_millis(9_999), W);
        assert_eq!(w.counts(), (1, 2));
        w.prune(t0 + W, W);
        assert_eq!(w.counts(), (0, 1));
        w.prune(t0 + Duration::from_secs(15), W);
        assert_eq!(w.counts(), (0, 0));
        assert!(w.buckets.is_empty());
    }

    #[test]
    fn keeps_at_most_about_ten_buckets() {
        let t0 = Instant::now();
        let mut w = Window::default();
        for i in 0..1000 {
            w.record(t0 + Duration::from_millis(i * 100), W, i % 2 == 0);
        }
        assert!(w.buckets.len() <= 11, "{} buckets", w.buckets.len());
        let (s, f) = w.counts();
        assert!((90..=100).contains(&(s + f)), "{s} + {f}");
    }

    #[test]
    fn shrinking_the_window_drops_older_buckets_at_once() {
        let t0 = Instant::now();
        let mut w = Window::default();
        w.record(t0, W, true);
        w.record(t0 + Duration::from_secs(8), W, true);
        w.prune(t0 + Duration::from_secs(9), Duration::from_secs(2));
        assert_eq!(w.counts(), (0, 1));
    }

    #[test]
    fn clear_forgets_everything() {
        let mut w = Window::default();
        w.record(Instant::now(), W, true);
        w.clear();
        assert_eq!(w.counts(), (0, 0));
    }
}
