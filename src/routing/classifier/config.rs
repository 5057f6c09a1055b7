//! `[classifier]` in `routes.toml`: score cut-offs between tiers, the weight of every
//! signal, and extra cue words per family. Every key is optional; the defaults are the
//! shipped tuning described in the README.

use serde::Deserialize;

use super::signals::Signals;

/// `[classifier]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Score cut-offs between consecutive tiers, ascending in `(0, 1)`: one fewer than the
    /// tiers. A score at or above `thresholds[i]` reaches tier `i + 1`.
    #[serde(default)]
    pub thresholds: Option<Vec<f64>>,
    #[serde(default)]
    pub weights: Weights,
    #[serde(default)]
    pub keywords: Keywords,
}

/// `[classifier.weights]`: the logistic score is `sigmoid(bias + Σ weight × signal)`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub bias: f64,
    pub code: f64,
    pub math: f64,
    pub reasoning: f64,
    pub extraction: f64,
    pub simple: f64,
    pub tools: f64,
    pub json: f64,
    pub length: f64,
    pub system: f64,
    pub depth: f64,
    pub short_output: f64,
    pub long_output: f64,
    pub non_english: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            bias: -1.5,
            code: 3.0,
            math: 2.5,
            reasoning: 1.5,
            extraction: 0.75,
            simple: -1.5,
            tools: 1.0,
            json: 0.75,
            length: 1.0,
            system: 0.5,
            depth: 0.75,
            short_output: -1.0,
            long_output: 0.75,
            non_english: 0.5,
        }
    }
}

/// `[classifier.keywords]`: cue words added to the built-in lists of each family.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keywords {
    pub code: Vec<String>,
    pub math: Vec<String>,
    pub reasoning: Vec<String>,
    pub extraction: Vec<String>,
    pub simple: Vec<String>,
}

/// Default cut-offs for `n` tiers: the first boundary at 0.45, the rest spread evenly up
/// to 0.85.
pub fn default_thresholds(n: usize) -> Vec<f64> {
    match n {
        0 | 1 => Vec::new(),
        2 => vec![0.45],
        _ => {
            // Rounded to hundredths, so that three tiers get exactly [0.45, 0.85].
            let step = 40.0 / (n - 2) as f64;
            (0..n - 1)
                .map(|i| (45.0 + step * i as f64).round() / 100.0)
                .collect()
        }
    }
}

impl ClassifierConfig {
    /// The cut-offs in force for `tiers`.
    pub fn thresholds_for(&self, tiers: usize) -> Vec<f64> {
        self.thresholds
            .clone()
            .unwrap_or_else(|| default_thresholds(tiers))
    }

    /// Problems as (dotted path below `classifier`, message).
    pub fn validate(&self, tiers: &[String]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(t) = &self.thresholds {
            if !tiers.is_empty() && t.len() + 1 != tiers.len() {
                out.push((
                    "thresholds".into(),
                    format!(
                        "{} tiers need {} thresholds (one between each pair), found {}",
                        tiers.len(),
                        tiers.len() - 1,
                        t.len()
                    ),
                ));
            }
            if t.iter().any(|v| !(v.is_finite() && *v > 0.0 && *v < 1.0)) {
                out.push((
                    "thresholds".into(),
                    "every threshold must lie strictly between 0 and 1".into(),
                ));
            }
            if t.windows(2).any(|w| w[0] >= w[1]) {
                out.push((
                    "thresholds".into(),
                    "thresholds must be in ascending order".into(),
                ));
            }
        }
        let w = self.weights;
        let named =
            std::iter::once(("bias", w.bias)).chain(Signals::NAMES.into_iter().zip(w.values()));
        for (name, v) in named {
            if !v.is_finite() || v.abs() > 100.0 {
                out.push((
                    format!("weights.{name}"),
                    "must be a finite number between -100 and 100".into(),
                ));
            }
        }
        let k = &self.keywords;
        for (name, list) in [
            ("code", &k.code),
            ("math", &k.math),
            ("reasoning", &k.reasoning),
            ("extraction", &k.extraction),
            ("simple", &k.simple),
        ] {
            if list
                .iter()
                .any(|c| c.trim().trim_end_matches('*').is_empty())
            {
                out.push((
                    format!("keywords.{name}"),
                    "keywords may not be empty".into(),
                ));
            }
        }
        out
    }
}
