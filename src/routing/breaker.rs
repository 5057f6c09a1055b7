//! Per-upstream circuit breakers (placeholder until the state machine lands).

use serde::Deserialize;

/// `[breaker]` in `routes.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {}

impl BreakerConfig {
    /// Problems as (dotted path below `breaker`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}
