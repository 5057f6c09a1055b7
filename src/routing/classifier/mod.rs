//! Request complexity classifier: one logistic score per request, cut into tiers.
//!
//! [`signals`] reads a dozen cheap signals of difficulty from the request (code, math,
//! reasoning and extraction cues, everyday-task cues, prompt and system prompt size,
//! conversation depth, tools, JSON output, `max_tokens`, language), each in `0..=1`. The
//! score is `sigmoid(bias + Σ weight × signal)` with the weights of
//! `[classifier.weights]`; `[classifier].thresholds` cut the score into the configured
//! tiers, cheapest first. The reason names the score and the signals that moved it most,
//! e.g. `score=0.86;code;math`. Everything is computed in one pass over the text: no
//! model, no network, a few microseconds per thousand tokens beside token counting.

mod config;
mod lexicon;
pub mod signals;

pub use config::{default_thresholds, ClassifierConfig, Keywords, Weights};
pub use signals::{Family, Lexicon, Signals};

use crate::api::ChatRequest;
use crate::tokens::{count_prompt, Encoding};

/// The classifier's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Index into the configured tiers (cheapest first).
    pub tier: usize,
    /// The logistic score in `0..=1`.
    pub score: f64,
    /// Short machine-readable reason, e.g. `score=0.86;code;math`.
    pub reason: String,
    /// Prompt tokens (tiktoken count).
    pub prompt_tokens: u64,
}

/// Scores requests into tiers.
#[derive(Debug, Clone)]
pub struct Classifier {
    thresholds: Vec<f64>,
    weights: Weights,
    lexicon: Lexicon,
}

/// A signal's contribution to the logit must reach this to be named in the reason.
const REASON_MIN_CONTRIBUTION: f64 = 0.5;

impl Classifier {
    /// Builds the classifier for `tiers` (names, cheapest first).
    pub fn new(cfg: &ClassifierConfig, tiers: &[String]) -> Result<Self, String> {
        let own = |list: &[&str], extra: &[String]| -> Vec<String> {
            list.iter()
                .map(|s| s.to_string())
                .chain(extra.iter().cloned())
                .collect()
        };
        let k = &cfg.keywords;
        let lists = [
            (Family::Code, own(lexicon::CODE, &k.code)),
            (Family::Math, own(lexicon::MATH, &k.math)),
            (Family::Reasoning, own(lexicon::REASONING, &k.reasoning)),
            (Family::Extraction, own(lexicon::EXTRACTION, &k.extraction)),
            (Family::Simple, own(lexicon::SIMPLE, &k.simple)),
        ];
        let lexicon = Lexicon::new(lists.iter().map(|(f, l)| (*f, l.as_slice())))?;
        Ok(Classifier {
            thresholds: cfg.thresholds_for(tiers.len()),
            weights: cfg.weights,
            lexicon,
        })
    }

    /// Classifies `req`, counting its prompt with `cl100k_base` (the encoding of
    /// gpt-4-turbo and the approximation used for non-OpenAI models).
    pub fn classify(&self, req: &ChatRequest) -> Classification {
        self.classify_with(req, Encoding::Cl100k)
    }

    /// Classifies `req`, counting its prompt with `enc`.
    pub fn classify_with(&self, req: &ChatRequest, enc: Encoding) -> Classification {
        let prompt_tokens = count_prompt(enc, req);
        let signals = self.signals(req, prompt_tokens);
        let (score, mut named) = self.score(&signals);
        let mut reason = format!("score={score:.2}");
        named.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        for (name, c) in named.iter().take(3) {
            reason.push(';');
            if *c < 0.0 {
                reason.push('-');
            }
            reason.push_str(name);
        }
        Classification {
            tier: self.tier_of(score),
            score,
            reason,
            prompt_tokens,
        }
    }

    /// The signals of `req` with a prompt of `prompt_tokens`.
    pub fn signals(&self, req: &ChatRequest, prompt_tokens: u64) -> Signals {
        Signals::read(&self.lexicon, req, prompt_tokens)
    }

    /// The score of `signals`, and the signals whose contribution is large enough to be
    /// named in a reason (name, weight × value).
    pub fn score(&self, signals: &Signals) -> (f64, Vec<(&'static str, f64)>) {
        let mut logit = self.weights.bias;
        let mut named = Vec::new();
        for ((name, w), v) in Signals::NAMES
            .into_iter()
            .zip(self.weights.values())
            .zip(signals.values())
        {
            let c = w * v;
            logit += c;
            if c.abs() >= REASON_MIN_CONTRIBUTION {
                named.push((name, c));
            }
        }
        (1.0 / (1.0 + (-logit).exp()), named)
    }

    /// The tier a score falls in.
    pub fn tier_of(&self, score: f64) -> usize {
        self.thresholds.iter().filter(|t| score >= **t).count()
    }

    /// The cut-offs in force.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }
}

#[cfg(test)]
mod tests;
