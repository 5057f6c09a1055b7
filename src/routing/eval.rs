//! `tollgate eval-router`: how well the configured classifier separates prompts labelled
//! `simple` from prompts labelled `complex`, and what its routing would cost.
//!
//! Each input line is `{"id", "prompt", "label": "simple"|"complex", "source"?}`. A prompt
//! is sent through the classifier as a one-message `auto` request. It counts as routed to
//! a premium tier when its tier has `premium = true`. The report gives complex recall
//! (complex prompts on a premium tier), the share of simple prompts kept off premium
//! tiers, their mean (balanced accuracy), the estimated cost against sending everything
//! to the baseline model (gpt-4-turbo), a per-source table (the `source` value up to its
//! first `/`, e.g. `mt_bench` for `mt_bench/writing`), a sweep of the premium cut-off so
//! that ops can pick a threshold for the premium share they want, and on request the
//! prompts routed against their label.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;

use serde::Deserialize;

use crate::api::ChatRequest;
use crate::config::Config;
use crate::pricing::{dollars, estimate_nanos};

/// The model every prompt is compared against for the cost saving.
pub const BASELINE_MODEL: &str = "gpt-4-turbo";

#[derive(Debug, Deserialize)]
struct Line {
    #[serde(default)]
    id: Option<serde_json::Value>,
    prompt: String,
    label: String,
    #[serde(default)]
    source: Option<String>,
}

/// Counts for one group of prompts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub complex: usize,
    pub complex_premium: usize,
    pub simple: usize,
    pub simple_cheap: usize,
}

impl Counts {
    fn add(&mut self, complex: bool, premium: bool) {
        if complex {
            self.complex += 1;
            self.complex_premium += usize::from(premium);
        } else {
            self.simple += 1;
            self.simple_cheap += usize::from(!premium);
        }
    }

    pub fn total(&self) -> usize {
        self.complex + self.simple
    }

    /// Share of complex prompts routed to a premium tier (`None` without any).
    pub fn complex_recall(&self) -> Option<f64> {
        ratio(self.complex_premium, self.complex)
    }

    /// Share of simple prompts routed to a non-premium tier (`None` without any).
    pub fn simple_kept_cheap(&self) -> Option<f64> {
        ratio(self.simple_cheap, self.simple)
    }

    /// Mean of the two shares (the one present when only one label occurs).
    pub fn balanced_accuracy(&self) -> Option<f64> {
        match (self.complex_recall(), self.simple_kept_cheap()) {
            (Some(a), Some(b)) => Some((a + b) / 2.0),
            (a, b) => a.or(b),
        }
    }

    fn premium_share(&self) -> f64 {
        let premium = self.complex_premium + (self.simple - self.simple_cheap);
        ratio(premium, self.total()).unwrap_or(0.0)
    }
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// One row of the premium cut-off sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRow {
    pub threshold: f64,
    pub counts: Counts,
}

/// The evaluation of one labelled file.
#[derive(Debug, Clone, Default)]
pub struct EvalReport {
    pub overall: Counts,
    /// Per source dataset: the `source` value up to its first `/` (prompts without one
    /// under `-`).
    pub by_source: BTreeMap<String, Counts>,
    /// Estimated cost of the routed tiers' first models, in nano-dollars.
    pub routed_nanos: u64,
    /// Estimated cost of sending every prompt to [`BASELINE_MODEL`].
    pub baseline_nanos: u64,
    /// Prompts per tier name.
    pub tiers: BTreeMap<String, usize>,
    /// The premium cut-off in force and the sweep around it (empty when the tiers have
    /// no cheap-to-premium boundary).
    pub premium_threshold: Option<f64>,
    pub sweep: Vec<SweepRow>,
    /// Prompts routed against their label.
    pub misses: Vec<Miss>,
}

/// A prompt routed against its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Miss {
    pub id: String,
    pub label: &'static str,
    pub tier: String,
    pub reason: String,
}

impl EvalReport {
    /// Estimated saving against the baseline, as a share of the baseline's cost.
    pub fn saving(&self) -> Option<f64> {
        (self.baseline_nanos > 0).then(|| {
            (self.baseline_nanos as f64 - self.routed_nanos as f64) / self.baseline_nanos as f64
        })
    }

    /// The prompts routed against their label, one per line.
    pub fn render_misses(&self) -> String {
        let mut out = String::from("\nrouted against the label:\n");
        for m in &self.misses {
            let _ = writeln!(out, "  {} {} -> {} ({})", m.id, m.label, m.tier, m.reason);
        }
        out
    }

    /// The report as printed by `tollgate eval-router`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.1}%", v * 100.0));
        let o = &self.overall;
        let _ = writeln!(out, "count={}", o.total());
        let _ = writeln!(
            out,
            "complex_to_premium={} ({} of {} complex prompts)",
            pct(o.complex_recall()),
            o.complex_premium,
            o.complex
        );
        let _ = writeln!(
            out,
            "simple_to_non_premium={} ({} of {} simple prompts)",
            pct(o.simple_kept_cheap()),
            o.simple_cheap,
            o.simple
        );
        let _ = writeln!(
            out,
            "balanced_accuracy={:.3}",
            o.balanced_accuracy().unwrap_or(0.0)
        );
        let tiers: Vec<String> = self.tiers.iter().map(|(t, n)| format!("{t}={n}")).collect();
        let _ = writeln!(out, "tiers: {}", tiers.join(" "));
        let _ = writeln!(
            out,
            "estimated_cost: routed ${} vs all-{BASELINE_MODEL} ${} (saving {})",
            dollars(self.routed_nanos),
            dollars(self.baseline_nanos),
            pct(self.saving())
        );
        let _ = writeln!(out, "\nper source:");
        let _ = writeln!(
            out,
            "  {:<44} {:>5} {:>16} {:>16} {:>9}",
            "source", "count", "complex->premium", "simple->cheap", "balanced"
        );
        for (source, c) in &self.by_source {
            let frac = |a: usize, b: usize| {
                if b == 0 {
                    "-".to_string()
                } else {
                    format!("{a}/{b}")
                }
            };
            let _ = writeln!(
                out,
                "  {:<44} {:>5} {:>16} {:>16} {:>9}",
                source,
                c.total(),
                frac(c.complex_premium, c.complex),
                frac(c.simple_cheap, c.simple),
                c.balanced_accuracy()
                    .map_or("-".to_string(), |v| format!("{v:.3}"))
            );
        }
        if let Some(t) = self.premium_threshold {
            let _ = writeln!(
                out,
                "\npremium cut-off sweep (in force: {t:.2}; set it in [classifier].thresholds):"
            );
            let _ = writeln!(
                out,
                "  {:>9} {:>14} {:>16} {:>14} {:>9}",
                "threshold", "premium share", "complex recall", "simple cheap", "balanced"
            );
            for row in &self.sweep {
                let c = &row.counts;
                let _ = writeln!(
                    out,
                    "  {:>9.2} {:>14} {:>16} {:>14} {:>9.3}",
                    row.threshold,
                    pct(Some(c.premium_share())),
                    pct(c.complex_recall()),
                    pct(c.simple_kept_cheap()),
                    c.balanced_accuracy().unwrap_or(0.0)
                );
            }
        }
        out
    }
}

/// Evaluates `config`'s classifier on the labelled lines of `input`.
pub fn evaluate(config: &Config, input: impl BufRead) -> Result<EvalReport, String> {
    let tiers = &config.routing.tiers;
    if tiers.is_empty() {
        return Err("the config has no [[routing.tiers]]: nothing is classified".into());
    }
    let first_premium = tiers.iter().position(|t| t.premium);
    let premium_threshold = first_premium
        .filter(|p| *p > 0)
        .and_then(|p| config.classifier.thresholds().get(p - 1).copied());
    let baseline = config.models.get(BASELINE_MODEL).cloned();
    let output = u64::from(config.routing.expected_output_tokens);
    let sweep_points: Vec<f64> = (1..20).map(|i| f64::from(i) * 0.05).collect();

    let mut report = EvalReport {
        premium_threshold,
        sweep: sweep_points
            .iter()
            .map(|t| SweepRow {
                threshold: *t,
                counts: Counts::default(),
            })
            .collect(),
        ..EvalReport::default()
    };
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let item: Line = serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let complex = match item.label.as_str() {
            "complex" => true,
            "simple" => false,
            other => {
                return Err(format!(
                    "line {}{}: label must be \"simple\" or \"complex\", found {other:?}",
                    n + 1,
                    item.id.map(|i| format!(" (id {i})")).unwrap_or_default()
                ))
            }
        };
        let req: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "auto",
            "messages": [{"role": "user", "content": item.prompt}]
        }))
        .map_err(|e| format!("line {}: {e}", n + 1))?;
        let verdict = config.classifier.classify(&req);
        let tier = &tiers[verdict.tier.min(tiers.len() - 1)];
        report.overall.add(complex, tier.premium);
        let source = item.source.as_deref().unwrap_or("-");
        report
            .by_source
            .entry(source.split('/').next().unwrap_or(source).to_string())
            .or_default()
            .add(complex, tier.premium);
        if complex != tier.premium {
            report.misses.push(Miss {
                id: item
                    .id
                    .map(|i| i.to_string().trim_matches('"').to_string())
                    .unwrap_or_else(|| format!("line {}", n + 1)),
                label: if complex { "complex" } else { "simple" },
                tier: tier.name.clone(),
                reason: verdict.reason.clone(),
            });
        }
        *report.tiers.entry(tier.name.clone()).or_default() += 1;
        for row in &mut report.sweep {
            row.counts.add(complex, verdict.score >= row.threshold);
        }
        if let Some(first) = config.models_named(tier.chain_at(0)).first() {
            report.routed_nanos += estimate_nanos(&first.price, verdict.prompt_tokens, output);
        }
        if let Some(b) = &baseline {
            report.baseline_nanos += estimate_nanos(&b.price, verdict.prompt_tokens, output);
        }
    }
    if report.premium_threshold.is_none() {
        report.sweep.clear();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_accuracy_is_the_mean_of_the_two_shares() {
        let mut c = Counts::default();
        for (complex, premium) in [(true, true), (true, false), (false, false), (false, false)] {
            c.add(complex, premium);
        }
        assert_eq!(c.complex_recall(), Some(0.5));
        assert_eq!(c.simple_kept_cheap(), Some(1.0));
        assert_eq!(c.balanced_accuracy(), Some(0.75));
        assert_eq!(c.premium_share(), 0.25);
    }

    #[test]
    fn one_label_alone_gives_its_own_share() {
        let mut c = Counts::default();
        c.add(false, true);
        c.add(false, false);
        assert_eq!(c.complex_recall(), None);
        assert_eq!(c.balanced_accuracy(), Some(0.5));
    }
}
