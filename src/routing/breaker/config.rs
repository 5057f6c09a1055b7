//! `[breaker]` in `routes.toml`: the thresholds every per-upstream circuit breaker uses, with
//! their defaults and validation.

use std::time::Duration;

use serde::Deserialize;

/// Longest span any breaker setting is taken to mean, so that arithmetic on instants can never
/// overflow even with a config that skipped validation.
const MAX_SPAN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Upper bound accepted by validation for the window and the cooldowns, in seconds.
const MAX_SECS: u64 = 3600;

/// `[breaker]` in `routes.toml`. Every field is optional; missing ones take the defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// `false` turns the breakers off: every request is admitted and nothing is recorded.
    pub enabled: bool,
    /// A Closed circuit opens when at least this share of the requests in the window failed
    /// (and there were at least `min_requests`). In (0, 1].
    pub failure_ratio: f64,
    /// Length of the rolling window of outcomes, in seconds.
    pub window_secs: u64,
    /// Fewest outcomes in the window before the failure ratio is considered at all.
    pub min_requests: u32,
    /// How long an Open circuit rejects requests before probing, in seconds.
    pub cooldown_secs: u64,
    /// Probe requests a HalfOpen circuit lets through at once; this many successes close it.
    pub half_open_probes: u32,
    /// Cooldown after a 429 that carried no `Retry-After`, in seconds.
    pub rate_limit_cooldown_secs: u64,
    /// A `Retry-After` longer than this cools the upstream down for only this long, in seconds
    /// (0: a 429 never cools the upstream down).
    pub max_rate_limit_cooldown_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_ratio: 0.5,
            window_secs: 60,
            min_requests: 10,
            cooldown_secs: 30,
            half_open_probes: 3,
            rate_limit_cooldown_secs: 1,
            max_rate_limit_cooldown_secs: 60,
        }
    }
}

impl BreakerConfig {
    /// Problems as (dotted path below `breaker`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |field: &str, msg: &str| out.push((field.to_string(), msg.to_string()));
        if !(self.failure_ratio.is_finite()
            && self.failure_ratio > 0.0
            && self.failure_ratio <= 1.0)
        {
            bad("failure_ratio", "must be greater than 0 and at most 1");
        }
        let secs = |v: u64| (1..=MAX_SECS).contains(&v);
        if !secs(self.window_secs) {
            bad("window_secs", "must be between 1 and 3600");
        }
        if self.min_requests == 0 {
            bad("min_requests", "must be at least 1");
        }
        if !secs(self.cooldown_secs) {
            bad("cooldown_secs", "must be between 1 and 3600");
        }
        if !(1..=100).contains(&self.half_open_probes) {
            bad("half_open_probes", "must be between 1 and 100");
        }
        if self.max_rate_limit_cooldown_secs > MAX_SECS {
            bad("max_rate_limit_cooldown_secs", "must be at most 3600");
        }
        if self.rate_limit_cooldown_secs > self.max_rate_limit_cooldown_secs {
            bad(
                "rate_limit_cooldown_secs",
                "must not exceed max_rate_limit_cooldown_secs",
            );
        }
        out
    }

    pub(super) fn window(&self) -> Duration {
        span(self.window_secs)
    }

    pub(super) fn cooldown(&self) -> Duration {
        span(self.cooldown_secs)
    }

    /// Probe slots of a HalfOpen circuit (at least one, whatever the config says).
    pub(super) fn probes(&self) -> u32 {
        self.half_open_probes.max(1)
    }

    /// How long a 429 cools the upstream down, given its `Retry-After` if any.
    pub(super) fn rate_limit_cooldown(&self, retry_after: Option<Duration>) -> Duration {
        let max = span(self.max_rate_limit_cooldown_secs);
        retry_after
            .unwrap_or_else(|| span(self.rate_limit_cooldown_secs))
            .min(max)
    }

    /// Whether `failures` out of `total` outcomes trip a Closed circuit.
    pub(super) fn trips(&self, failures: u64, total: u64) -> bool {
        total > 0
            && total >= u64::from(self.min_requests)
            && failures as f64 / total as f64 >= self.failure_ratio
    }
}

fn span(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_SPAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<BreakerConfig, toml::de::Error> {
        toml::from_str(src)
    }

    #[test]
    fn defaults_are_valid() {
        assert!(BreakerConfig::default().validate().is_empty());
    }

    #[test]
    fn missing_fields_take_defaults_and_integers_are_accepted_as_ratios() {
        let cfg = parse("failure_ratio = 1\ncooldown_secs = 5").unwrap();
        assert_eq!(cfg.failure_ratio, 1.0);
        assert_eq!(cfg.cooldown_secs, 5);
        assert_eq!(cfg.window_secs, BreakerConfig::default().window_secs);
        assert!(cfg.validate().is_empty());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = parse("failure_rate = 0.5").unwrap_err();
        assert!(err.message().contains("unknown field `failure_rate`"));
    }

    #[test]
    fn every_bad_value_is_reported_with_its_field() {
        let cfg = BreakerConfig {
            enabled: true,
            failure_ratio: 0.0,
            window_secs: 0,
            min_requests: 0,
            cooldown_secs: 7200,
            half_open_probes: 0,
            rate_limit_cooldown_secs: 10,
            max_rate_limit_cooldown_secs: 5000,
        };
        let fields: Vec<String> = cfg.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "failure_ratio",
                "window_secs",
                "min_requests",
                "cooldown_secs",
                "half_open_probes",
                "max_rate_limit_cooldown_secs",
            ]
        );
        let nan = BreakerConfig {
            failure_ratio: f64::NAN,
            rate_limit_cooldown_secs: 90,
            ..BreakerConfig::default()
        };
        let fields: Vec<String> = nan.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["failure_ratio", "rate_limit_cooldown_secs"]);
    }

    #[test]
    fn rate_limit_cooldown_honours_retry_after_up_to_the_cap() {
        let cfg = BreakerConfig {
            rate_limit_cooldown_secs: 2,
            max_rate_limit_cooldown_secs: 10,
            ..BreakerConfig::default()
        };
        assert_eq!(
            cfg.rate_limit_cooldown(Some(Duration::from_millis(1500))),
            Duration::from_millis(1500)
        );
        assert_eq!(
            cfg.rate_limit_cooldown(Some(Duration::from_secs(600))),
            Duration::from_secs(10)
        );
        assert_eq!(cfg.rate_limit_cooldown(None), Duration::from_secs(2));
    }

    #[test]
    fn trips_only_at_min_requests_and_at_or_above_the_ratio() {
        let cfg = BreakerConfig {
            failure_ratio: 0.5,
            min_requests: 4,
            ..BreakerConfig::default()
        };
        assert!(!cfg.trips(3, 3), "below min_requests");
        assert!(!cfg.trips(1, 4), "25% < 50%");
        assert!(cfg.trips(2, 4), "50% reaches the ratio");
        assert!(cfg.trips(4, 4));
        assert!(!cfg.trips(0, 0));
    }

    #[test]
    fn absurd_unvalidated_spans_are_clamped() {
        let cfg = BreakerConfig {
            window_secs: u64::MAX,
            cooldown_secs: u64::MAX,
            ..BreakerConfig::default()
        };
        assert_eq!(cfg.window(), MAX_SPAN);
        assert_eq!(cfg.cooldown(), MAX_SPAN);
    }
}
