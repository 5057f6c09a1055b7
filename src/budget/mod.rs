//! Budgets: who may call tollgate and what their spending is billed to.
//!
//! Each file in `budgets/` defines one budget (a team, service or project): its daily
//! limit, the time zone its day starts in, alert thresholds, the policy once it is spent,
//! alert webhooks, and the virtual API keys that bill to it (stored as SHA-256 hashes
//! only). A budget marked `global = true` caps all traffic on top of each caller's own
//! budget. A budget and each of its keys may also carry rate limits ([`RateLimits`],
//! enforced by [`crate::ratelimit`]). [`BudgetSet`] is the validated, immutable set; it is part of the
//! [`crate::config::Config`] snapshot, so budget files reload together with `routes.toml`
//! under the same validate-then-swap rule.

mod file;
pub mod keys;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::config::{ConfigErrors, Problem};
use crate::money::Decimal9;

pub use file::parse_budget;
pub use keys::KeyHash;

/// Default alert thresholds, percent of the daily limit.
pub const DEFAULT_THRESHOLDS: [u32; 4] = [50, 75, 90, 100];

/// What happens to a request that does not fit in what is left of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Refuse with HTTP 429 `budget_exceeded`.
    Block,
    /// Serve it from the cheapest tier, if that fits; otherwise refuse.
    Downgrade,
    /// Serve it anyway: recorded and alerted, never refused.
    Allow,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Block => "block",
            Policy::Downgrade => "downgrade",
            Policy::Allow => "allow",
        }
    }
}

/// Requests and tokens per minute allowed to a budget or a key; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

impl RateLimits {
    /// Neither limit is set.
    pub fn is_empty(&self) -> bool {
        self.requests_per_minute.is_none() && self.tokens_per_minute.is_none()
    }
}

/// A virtual API key that bills to a budget. Only its hash is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// A name for the key, safe to log and show (never the key itself).
    pub id: String,
    pub hash: KeyHash,
    /// This key's own limits, on top of the budget's.
    pub limits: RateLimits,
}

/// One validated budget file.
#[derive(Debug, Clone)]
pub struct Budget {
    pub name: String,
    /// Daily limit in nano-dollars.
    pub daily_limit: Decimal9,
    /// IANA name of the time zone whose midnight starts the budget's day.
    pub timezone_name: String,
    pub timezone: TimeZone,
    /// Alert thresholds in percent, ascending, without duplicates.
    pub thresholds: Vec<u32>,
    pub policy: Policy,
    /// Ceiling on one request's estimated cost (lower than the global one wins).
    pub max_request_cost: Option<Decimal9>,
    /// Webhook URLs receiving Slack-compatible alert JSON.
    pub webhooks: Vec<String>,
    pub keys: Vec<KeyEntry>,
    /// Caps all traffic, whatever budget it bills to.
    pub global: bool,
    /// `[limits]`: shared by every key of the budget.
    pub limits: RateLimits,
}

impl Budget {
    /// The limits of key `id` (none for an unknown id or an anonymous caller).
    pub fn key_limits(&self, id: Option<&str>) -> RateLimits {
        id.and_then(|id| self.keys.iter().find(|k| k.id == id))
            .map(|k| k.limits)
            .unwrap_or_default()
    }

    /// The budget's day (`YYYY-MM-DD` in its time zone) at `now`.
    pub fn day_at(&self, now: Timestamp) -> String {
        now.to_zoned(self.timezone.clone()).date().to_string()
    }

    /// The limit in nano-dollars.
    pub fn limit_nanos(&self) -> u64 {
        self.daily_limit.raw()
    }

    /// Whole percent of the limit that `spent` represents (0 for a zero limit with nothing
    /// spent; capped at 10,000).
    pub fn percent(&self, spent: u64) -> u32 {
        let limit = self.limit_nanos();
        if limit == 0 {
            return if spent == 0 { 0 } else { 10_000 };
        }
        ((spent as u128 * 100 / limit as u128).min(10_000)) as u32
    }

    /// Thresholds that a settle moving spending from `before` to `after` crossed: those
    /// with `before < limit × t / 100 ≤ after`.
    pub fn crossed(&self, before: u64, after: u64) -> Vec<u32> {
        let limit = self.limit_nanos() as u128;
        self.thresholds
            .iter()
            .copied()
            .filter(|t| {
                let line = (limit * *t as u128).div_ceil(100);
                (before as u128) < line && (after as u128) >= line
            })
            .collect()
    }
}

/// Who a request is billed to.
#[derive(Debug, Clone)]
pub struct Caller {
    pub budget: Arc<Budget>,
    /// The key's id, or `None` for anonymous (demo) callers.
    pub key_id: Option<String>,
}

/// Keys of one 8-byte hash prefix: (full hash, budget, key id).
type KeyBucket = Vec<(KeyHash, Arc<Budget>, String)>;

/// `(display path, contents)` of one budget file.
pub type BudgetFile = (String, Vec<u8>);

/// All budgets, indexed by name and by key hash.
#[derive(Debug, Clone, Default)]
pub struct BudgetSet {
    budgets: BTreeMap<String, Arc<Budget>>,
    /// Keys bucketed by the first 8 bytes of their hash; the full hash is then compared in
    /// constant time.
    by_key: HashMap<[u8; 8], KeyBucket>,
    global: Option<Arc<Budget>>,
}

impl BudgetSet {
    /// Builds the set from parsed budgets, reporting keys used twice and more than one
    /// global budget.
    pub fn new(budgets: Vec<(Budget, String)>) -> Result<BudgetSet, ConfigErrors> {
        let mut set = BudgetSet::default();
        let mut problems = Vec::new();
        for (b, origin) in budgets {
            let b = Arc::new(b);
            for k in &b.keys {
                let bucket = set.by_key.entry(k.hash.prefix()).or_default();
                if let Some((_, other, _)) = bucket.iter().find(|(h, _, _)| *h == k.hash) {
                    problems.push(Problem {
                        origin: origin.clone(),
                        line: None,
                        path: format!("keys.{}", k.id),
                        message: format!(
                            "this key hash is already used by budget `{}`",
                            other.name
                        ),
                    });
                }
                bucket.push((k.hash, b.clone(), k.id.clone()));
            }
            if b.global {
                if let Some(g) = &set.global {
                    problems.push(Problem {
                        origin: origin.clone(),
                        line: None,
                        path: "global".into(),
                        message: format!("budget `{}` is already the global budget", g.name),
                    });
                }
                set.global = Some(b.clone());
            }
            set.budgets.insert(b.name.clone(), b);
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// Reads every `*.toml` file in `dir` (sorted by name); a missing directory is an
    /// empty set. Every problem of every file is reported.
    pub fn load_dir(dir: &Path) -> Result<(BudgetSet, Vec<BudgetFile>), ConfigErrors> {
        let files = read_dir_files(dir)?;
        let mut parsed = Vec::new();
        let mut problems = Vec::new();
        for (path, bytes) in &files {
            let origin = path.clone();
            let stem = Path::new(path)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let text = match std::str::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    problems.push(Problem {
                        origin,
                        line: None,
                        path: String::new(),
                        message: "file is not UTF-8".into(),
                    });
                    continue;
                }
            };
            match parse_budget(&stem, text, &origin) {
                Ok(b) => parsed.push((b, origin)),
                Err(e) => problems.extend(e.0),
            }
        }
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        Ok((BudgetSet::new(parsed)?, files))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Budget>> {
        self.budgets.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Budget>> {
        self.budgets.values()
    }

    pub fn len(&self) -> usize {
        self.budgets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty()
    }

    /// The budget capping all traffic, if one is configured.
    pub fn global(&self) -> Option<&Arc<Budget>> {
        self.global.as_ref()
    }

    /// The budget a presented key bills to. The key is hashed and the hash compared in
    /// constant time, so neither the lookup nor the comparison reveals the key.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        let hash = KeyHash::of(presented);
        let bucket = self.by_key.get(&hash.prefix())?;
        let mut found = None;
        for (h, budget, id) in bucket {
            if keys::constant_time_eq(&h.0, &hash.0) {
                found = Some(Caller {
                    budget: budget.clone(),
                    key_id: Some(id.clone()),
                });
            }
        }
        found
    }
}

/// `(display path, contents)` of the `*.toml` files in `dir`, sorted by name.
pub fn read_dir_files(dir: &Path) -> Result<Vec<BudgetFile>, ConfigErrors> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigErrors::single(Problem {
                origin: dir.display().to_string(),
                line: None,
                path: String::new(),
                message: format!("cannot read budgets directory: {e}"),
            }))
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        match std::fs::read(&p) {
            Ok(b) => out.push((p.display().to_string(), b)),
            // A file removed between listing and reading is simply gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ConfigErrors::single(Problem {
                    origin: p.display().to_string(),
                    line: None,
                    path: String::new(),
                    message: format!("cannot read file: {e}"),
                }))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
