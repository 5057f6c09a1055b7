//! Wall-clock time for accounting: which budget day a request falls in, ledger timestamps,
//! alert times. A [`ManualClock`] lets tests cross midnight in a budget's time zone without
//! waiting for it.

use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{SignedDuration, Timestamp};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The system clock shifted by an adjustable offset (tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    offset_ms: AtomicI64,
}

impl ManualClock {
    /// Moves the clock so that it reads `at` now (it keeps running from there).
    pub fn set(&self, at: Timestamp) {
        let offset = at.as_millisecond() - Timestamp::now().as_millisecond();
        self.offset_ms.store(offset, Ordering::SeqCst);
    }

    pub fn advance(&self, by: std::time::Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let offset = SignedDuration::from_millis(self.offset_ms.load(Ordering::SeqCst));
        Timestamp::now()
            .checked_add(offset)
            .unwrap_or_else(|_| Timestamp::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_reads_what_it_was_set_to_and_advances() {
        let c = ManualClock::default();
        let at: Timestamp = "2026-11-21T23:59:59Z".parse().unwrap();
        c.set(at);
        let d = c.now().duration_since(at).as_millis();
        assert!((0..5_000).contains(&d), "{d}");
        c.advance(std::time::Duration::from_secs(2));
        assert!(c.now() > "2026-11-22T00:00:00Z".parse::<Timestamp>().unwrap());
    }
}
