//! Request complexity classifier (placeholder until the scoring lands).

use serde::Deserialize;

use crate::api::ChatRequest;

/// `[classifier]` in `routes.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {}

impl ClassifierConfig {
    /// Problems as (dotted path below `classifier`, message).
    pub fn validate(&self, _tiers: &[String]) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// The classifier's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Index into the configured tiers (cheapest first).
    pub tier: usize,
    /// Short machine-readable reason, e.g. `score=0.71;code;tokens=1830`.
    pub reason: String,
    /// Prompt tokens (tiktoken count).
    pub prompt_tokens: u64,
}

/// Scores requests into tiers.
#[derive(Debug, Clone)]
pub struct Classifier {
    _tiers: usize,
}

impl Classifier {
    pub fn new(_cfg: &ClassifierConfig, tiers: &[String]) -> Result<Self, String> {
        Ok(Classifier {
            _tiers: tiers.len(),
        })
    }

    pub fn classify(&self, req: &ChatRequest) -> Classification {
        let tokens = crate::tokens::count_prompt(crate::tokens::Encoding::Cl100k, req);
        Classification {
            tier: 0,
            reason: "placeholder".into(),
            prompt_tokens: tokens,
        }
    }
}
