//! Retry delays: how long to wait before trying the same model again, and whether to.
//!
//! Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
//! Jitter", 2015): the n-th retry waits a uniformly random time in
//! `[0, min(max_backoff, base_backoff * 2^(n-1))]`. Full jitter rather than decorrelated
//! jitter because it needs no memory of the previous delay, so [`retry_delay`] stays a pure
//! function of the attempt number, and it spreads competing callers at least as well.
//! A provider's `Retry-After` replaces the computed delay: it is waited out exactly when it
//! is at most `max_retry_after`; a longer one means moving on to the next model.

use std::time::Duration;

use crate::config::RetrySettings;

/// The wait before retrying the same model, or `None` to move on to the next model.
///
/// `attempt` is how many attempts this model has had so far (1 after the first failure; 0
/// is taken as 1). `None` when those were all `attempts_per_model` allowed, or when the
/// provider's `retry_after` exceeds `max_retry_after`. `rng` returns uniform numbers in
/// [0, 1) (e.g. `fastrand::f64`); values outside are clamped, a non-number counts as 1.
pub fn retry_delay(
    attempt: u32,
    retry_after: Option<Duration>,
    cfg: &RetrySettings,
    rng: &mut impl FnMut() -> f64,
) -> Option<Duration> {
    let attempt = attempt.max(1);
    if attempt >= cfg.attempts_per_model {
        return None;
    }
    if let Some(wait) = retry_after {
        return (wait <= cfg.max_retry_after).then_some(wait);
    }
    let r = rng();
    let r = if r.is_finite() {
        r.clamp(0.0, 1.0)
    } else {
        1.0
    };
    Some(ceiling(attempt, cfg).mul_f64(r))
}

/// The longest wait before retry number `attempt`: `base_backoff * 2^(attempt-1)`, capped.
fn ceiling(attempt: u32, cfg: &RetrySettings) -> Duration {
    let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
    cfg.base_backoff.saturating_mul(factor).min(cfg.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetrySettings {
        RetrySettings {
            attempts_per_model: 10,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(5),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// An rng that always returns `x`.
    fn fixed(x: f64) -> impl FnMut() -> f64 {
        move || x
    }

    #[test]
    fn the_ceiling_doubles_from_base_backoff_up_to_max_backoff() {
        let got: Vec<Option<Duration>> = (1..=7)
            .map(|a| retry_delay(a, None, &cfg(), &mut fixed(1.0)))
            .collect();
        let want = [100, 200, 400, 800, 1600, 2000, 2000].map(|n| Some(ms(n)));
        assert_eq!(got, want);
    }

    #[test]
    fn full_jitter_scales_the_ceiling_by_the_random_draw() {
        let c = cfg();
        assert_eq!(retry_delay(3, None, &c, &mut fixed(0.0)), Some(ms(0)));
        assert_eq!(retry_delay(3, None, &c, &mut fixed(0.25)), Some(ms(100)));
        assert_eq!(retry_delay(3, None, &c, &mut fixed(0.5)), Some(ms(200)));
        let mut draws = [0.9, 0.1, 0.5].into_iter().cycle();
        let mut rng = move || draws.next().unwrap_or(0.0);
        let got: Vec<_> = (1..=3)
            .map(|a| retry_delay(a, None, &c, &mut rng))
            .collect();
        assert_eq!(got, [Some(ms(90)), Some(ms(20)), Some(ms(200))]);
    }

    #[test]
    fn random_delays_stay_within_the_ceiling() {
        let mut r = fastrand::Rng::with_seed(3);
        let c = cfg();
        for attempt in 1..=9 {
            let cap = ceiling(attempt, &c);
            let delays: Vec<Duration> = (0..200)
                .filter_map(|_| retry_delay(attempt, None, &c, &mut || r.f64()))
                .collect();
            assert_eq!(delays.len(), 200);
            assert!(delays.iter().all(|d| *d <= cap));
            assert!(delays.iter().any(|d| *d < cap / 4));
            assert!(delays.iter().any(|d| *d > cap * 3 / 4));
        }
    }

    #[test]
    fn a_retry_after_within_the_limit_is_waited_exactly() {
        let mut calls = 0;
        let mut rng = || {
            calls += 1;
            0.5
        };
        for wait in [ms(0), ms(1500), Duration::from_secs(5)] {
            assert_eq!(retry_delay(1, Some(wait), &cfg(), &mut rng), Some(wait));
        }
        assert_eq!(calls, 0, "no jitter on a provider's own wait");
    }

    #[test]
    fn a_retry_after_beyond_the_limit_moves_on_to_the_next_model() {
        let too_long = Some(Duration::from_millis(5001));
        assert_eq!(retry_delay(1, too_long, &cfg(), &mut fixed(0.5)), None);
    }

    #[test]
    fn no_retry_once_the_model_has_had_all_its_attempts() {
        let c = RetrySettings {
            attempts_per_model: 2,
            ..cfg()
        };
        assert_eq!(retry_delay(1, None, &c, &mut fixed(1.0)), Some(ms(100)));
        assert_eq!(retry_delay(2, None, &c, &mut fixed(1.0)), None);
        assert_eq!(retry_delay(2, Some(ms(10)), &c, &mut fixed(1.0)), None);
        let once = RetrySettings {
            attempts_per_model: 1,
            ..cfg()
        };
        assert_eq!(retry_delay(0, None, &once, &mut fixed(1.0)), None);
    }

    #[test]
    fn attempt_zero_counts_as_the_first() {
        assert_eq!(
            retry_delay(0, None, &cfg(), &mut fixed(1.0)),
            retry_delay(1, None, &cfg(), &mut fixed(1.0))
        );
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let c = RetrySettings {
            attempts_per_model: u32::MAX,
            base_backoff: Duration::MAX,
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::ZERO,
        };
        let max = Some(Duration::from_secs(30));
        assert_eq!(retry_delay(u32::MAX - 1, None, &c, &mut fixed(1.0)), max);
        assert_eq!(retry_delay(40, None, &c, &mut fixed(7.0)), max, "clamped");
        assert_eq!(retry_delay(40, None, &c, &mut fixed(f64::NAN)), max);
        assert_eq!(retry_delay(40, None, &c, &mut fixed(-1.0)), Some(ms(0)));
        assert_eq!(retry_delay(1, Some(ms(1)), &c, &mut fixed(0.5)), None);
    }
}
