//! From a classified request to the ordered chain of models to try.
//!
//! The chain comes from the tier (and the caller's budget state) for routed requests, or
//! from the requested model and its fallbacks otherwise. Models are then skipped when the
//! prompt plus the requested output cannot fit their context window, or when their
//! estimated cost is above the request's cost ceiling; with a latency class, models whose
//! observed time to first token meets the class's target move to the front. Every
//! decision is written into a short machine-readable reason.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ModelConfig};
use crate::error::GatewayError;
use crate::money::Decimal9;
use crate::pricing;

/// What the planner needs to know about one request.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub requested_model: &'a str,
    /// Tier chosen by the classifier or the caller (`Some` only for routed requests).
    pub tier: Option<usize>,
    /// Why that tier (classifier reason, or `header`).
    pub tier_reason: &'a str,
    pub budget_percent: u32,
    pub prompt_tokens: u64,
    /// The client's `max_completion_tokens` / `max_tokens`.
    pub max_output_tokens: Option<u32>,
    /// Effective ceiling on the estimated cost (config, lowered by the caller).
    pub max_cost: Option<Decimal9>,
    /// Latency class name and its target time to first token.
    pub latency: Option<(&'a str, Duration)>,
}

/// The planner's result.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tier: Option<String>,
    pub chain: Vec<Arc<ModelConfig>>,
    /// `tier=complex;score=…;budget=80;skip=gpt-4-turbo:cost;latency=interactive`.
    pub reason: String,
}

/// Builds the plan. `ttft` gives an upstream's observed median time to first token.
pub fn plan(
    config: &Config,
    input: &PlanInput<'_>,
    ttft: &dyn Fn(&ModelConfig) -> Option<Duration>,
) -> Result<Plan, GatewayError> {
    let mut reason: Vec<String> = Vec::new();
    let (tier_name, candidates) = match input.tier.and_then(|i| config.routing.tiers.get(i)) {
        Some(t) => {
            reason.push(format!("tier={}", t.name));
            if !input.tier_reason.is_empty() {
                reason.push(input.tier_reason.to_string());
            }
            if input.budget_percent > 0 {
                reason.push(format!("budget={}", input.budget_percent));
            }
            (
                Some(t.name.clone()),
                config.models_named(t.chain_at(input.budget_percent)),
            )
        }
        None => {
            let chain =
                config
                    .chain(input.requested_model)
                    .ok_or_else(|| GatewayError::ModelNotFound {
                        model: input.requested_model.to_string(),
                    })?;
            (None, chain)
        }
    };

    let mut chain = Vec::new();
    let mut skipped = Vec::new();
    let mut context_skips = 0;
    let mut cost_skips = 0;
    // The largest output limit among models skipped only for the client's max_tokens.
    let mut output_skips: Vec<u32> = Vec::new();
    for m in candidates {
        let output = output_tokens(config, &m, input.max_output_tokens);
        let over_output = input
            .max_output_tokens
            .is_some_and(|o| o > m.max_output_tokens);
        let over_context = input.prompt_tokens + u64::from(output) > m.context_window;
        if over_context || over_output {
            skipped.push(format!("{}:context", m.name));
            context_skips += 1;
            if over_output && !over_context {
                output_skips.push(m.max_output_tokens);
            }
            continue;
        }
        if let Some(ceiling) = input.max_cost {
            let est = pricing::estimate_nanos(&m.price, input.prompt_tokens, u64::from(output));
            if est > ceiling.raw() {
                skipped.push(format!("{}:cost", m.name));
                cost_skips += 1;
                continue;
            }
        }
        chain.push(m);
    }
    if !skipped.is_empty() {
        reason.push(format!("skip={}", skipped.join(",")));
    }
    if let Some((class, target)) = input.latency {
        // Stable partition: upstreams known to meet the target, then unknown ones, then slow.
        let rank = |m: &Arc<ModelConfig>| match ttft(m) {
            Some(t) if t <= target => 0,
            None => 1,
            Some(_) => 2,
        };
        chain.sort_by_key(rank);
        reason.push(format!("latency={class}"));
    }
    if chain.is_empty() {
        let asked = input.max_output_tokens.unwrap_or(0);
        return Err(
            if output_skips.len() == context_skips && context_skips > 0 && cost_skips == 0 {
                GatewayError::InvalidRequest {
                    message: format!(
                    "max_tokens is too large: {asked}. The models available for `{}` support at \
                     most {} completion tokens.",
                    input.requested_model,
                    output_skips.iter().max().copied().unwrap_or(0)
                ),
                    param: Some("max_tokens".into()),
                    code: Some("max_tokens_too_large"),
                }
            } else if context_skips > 0 && cost_skips == 0 {
                GatewayError::InvalidRequest {
                    message: format!(
                    "This request needs about {} prompt tokens plus its output, which no model \
                     available for `{}` can hold; shorten the messages or lower max_tokens.",
                    input.prompt_tokens, input.requested_model
                ),
                    param: Some("messages".into()),
                    code: Some("context_length_exceeded"),
                }
            } else if cost_skips > 0 {
                GatewayError::InvalidRequest {
                    message: format!(
                    "Every model available for `{}` is estimated to cost more than the ceiling \
                     of ${} for this request.",
                    input.requested_model,
                    input.max_cost.unwrap_or_default()
                ),
                    param: None,
                    code: Some("max_cost_exceeded"),
                }
            } else {
                GatewayError::NoUpstreamAvailable {
                    model: input.requested_model.to_string(),
                }
            },
        );
    }
    Ok(Plan {
        tier: tier_name,
        chain,
        reason: reason.join(";"),
    })
}

/// Output tokens assumed for context fit and cost: the client's cap, else the configured
/// expectation bounded by what the model sends by default.
pub fn output_tokens(config: &Config, m: &ModelConfig, requested: Option<u32>) -> u32 {
    requested.unwrap_or_else(|| {
        config
            .routing
            .expected_output_tokens
            .min(m.default_max_tokens)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::parse(include_str!("../../routes.toml"), "routes.toml").unwrap()
    }

    fn input(tier: Option<usize>) -> PlanInput<'static> {
        PlanInput {
            requested_model: "auto",
            tier,
            tier_reason: "",
            budget_percent: 0,
            prompt_tokens: 1000,
            max_output_tokens: None,
            max_cost: None,
            latency: None,
        }
    }

    fn names(p: &Plan) -> Vec<&str> {
        p.chain.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn complex_goes_to_gpt4_turbo_then_away_from_it_as_the_budget_fills() {
        let c = cfg();
        let complex = c.tier_index("complex");
        let p = plan(&c, &input(complex), &|_| None).unwrap();
        assert_eq!(names(&p)[0], "gpt-4-turbo");
        let at75 = plan(
            &c,
            &PlanInput {
                budget_percent: 80,
                ..input(complex)
            },
            &|_| None,
        )
        .unwrap();
        assert_eq!(names(&at75), ["claude-sonnet", "mistral-large"]);
        assert!(at75.reason.contains("budget=80"));
        let at90 = plan(
            &c,
            &PlanInput {
                budget_percent: 95,
                ..input(complex)
            },
            &|_| None,
        )
        .unwrap();
        assert_eq!(names(&at90)[0], "gpt-4o-mini");
    }

    #[test]
    fn cost_ceiling_skips_to_the_next_cheaper_model_and_says_so() {
        let c = cfg();
        // 100k prompt tokens on gpt-4-turbo ≈ $1.02; claude-sonnet ≈ $0.31.
        let p = plan(
            &c,
            &PlanInput {
                prompt_tokens: 100_000,
                max_cost: Some(Decimal9::parse("0.50").unwrap()),
                ..input(c.tier_index("complex"))
            },
            &|_| None,
        )
        .unwrap();
        assert_eq!(names(&p)[0], "claude-sonnet");
        assert!(p.reason.contains("skip=gpt-4-turbo:cost"), "{}", p.reason);
    }

    #[test]
    fn models_whose_context_cannot_hold_the_prompt_are_skipped() {
        let c = cfg();
        let p = plan(
            &c,
            &PlanInput {
                requested_model: "gpt-3.5-turbo",
                prompt_tokens: 20_000,
                ..input(None)
            },
            &|_| None,
        )
        .unwrap();
        assert_eq!(names(&p), ["mistral-small"]);
        assert!(p.reason.contains("gpt-3.5-turbo:context"));
        let err = plan(
            &c,
            &PlanInput {
                prompt_tokens: 10_000_000,
                ..input(c.tier_index("simple"))
            },
            &|_| None,
        )
        .unwrap_err();
        assert_eq!(err.code().as_deref(), Some("context_length_exceeded"));
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn latency_class_prefers_upstreams_meeting_the_target() {
        let c = cfg();
        let ttft = |m: &ModelConfig| match m.name.as_str() {
            "gpt-4-turbo" => Some(Duration::from_millis(3000)),
            "claude-sonnet" => Some(Duration::from_millis(2500)),
            "mistral-large" => Some(Duration::from_millis(400)),
            _ => None,
        };
        let p = plan(
            &c,
            &PlanInput {
                latency: Some(("interactive", Duration::from_millis(1500))),
                ..input(c.tier_index("complex"))
            },
            &ttft,
        )
        .unwrap();
        assert_eq!(names(&p), ["mistral-large", "gpt-4-turbo", "claude-sonnet"]);
        assert!(p.reason.ends_with("latency=interactive"));
    }

    #[test]
    fn unrouted_model_uses_its_own_fallback_chain() {
        let c = cfg();
        let p = plan(
            &c,
            &PlanInput {
                requested_model: "gpt-4",
                ..input(None)
            },
            &|_| None,
        )
        .unwrap();
        assert_eq!(names(&p), ["gpt-4-turbo", "claude-sonnet", "mistral-large"]);
        assert!(p.tier.is_none());
        let e = plan(
            &c,
            &PlanInput {
                requested_model: "nope",
                ..input(None)
            },
            &|_| None,
        );
        assert!(matches!(e, Err(GatewayError::ModelNotFound { .. })));
    }
}
