//! Rate limits: requests and tokens per minute, per budget and per virtual key.
//!
//! A budget file's `[limits]` caps all of the budget's traffic; `requests_per_minute` and
//! `tokens_per_minute` on a `[[keys]]` entry cap that key alone (see [`RateLimits`]). Each
//! configured limit is a GCRA cell (`gcra.rs`): a burst of the whole limit, refilled evenly
//! over the minute. Before a request is sent, [`RateLimiter::acquire`] takes one request
//! and its estimated tokens from every cell that applies, all or nothing, and answers the
//! `x-ratelimit-*` headers OpenAI sends; when it ends, [`RateLimiter::settle`] corrects the
//! token cells by the real usage (a refund when it used less than estimated).
//!
//! Cells are named by budget, scope (the budget, or one key), kind and limit, so a reload
//! that leaves a limit unchanged keeps its cell, and a changed limit starts a fresh one.
//! In embedded mode the cells live in this process (`local.rs`); with `[state] backend =
//! "redis"` they live in Redis and every replica enforces one shared limit (`redis.rs`).
//! While Redis cannot be reached, `redis_failure = "fail_open"` falls back to this
//! replica's own cells and `"fail_closed"` refuses the request (503).

mod gcra;
mod local;
mod redis;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::budget::{Budget, RateLimits};
use crate::clock::Clock;
use crate::config::{Backend, RedisFailure, StateSettings};

pub use gcra::format_reset;
use local::LocalCells;
use redis::RedisCells;

/// Response headers: `(name, value)`.
pub type Headers = Vec<(&'static str, String)>;

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Requests,
    Tokens,
}

impl Kind {
    /// Also OpenAI's `error.type` for this limit.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Tokens => "tokens",
        }
    }

    /// `x-ratelimit-limit-*`, `x-ratelimit-remaining-*` and `x-ratelimit-reset-*`.
    fn header_names(self) -> [&'static str; 3] {
        match self {
            Kind::Requests => [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            Kind::Tokens => [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    pub budget: String,
    /// The key whose own limit refused, or `None` for the budget's limit.
    pub key_id: Option<String>,
    pub kind: Kind,
    /// Per minute.
    pub limit: u64,
    pub remaining: u64,
    /// What the request needed (1 request, or its estimated tokens).
    pub requested: u64,
    /// When it would fit; `None` when it never can (more tokens than the whole limit).
    pub retry_in: Option<Duration>,
}

impl RateLimited {
    /// `key` or `budget`, for metrics.
    pub fn scope(&self) -> &'static str {
        if self.key_id.is_some() {
            "key"
        } else {
            "budget"
        }
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match &self.key_id {
            Some(id) => format!("key `{id}` of budget `{}`", self.budget),
            None => format!("budget `{}`", self.budget),
        };
        let kind = self.kind.as_str();
        match self.retry_in {
            Some(wait) => write!(
                f,
                "Rate limit reached for {kind} per minute on {who}: limit {}, remaining {}, \
                 requested {}. Please try again in {}.",
                self.limit,
                self.remaining,
                self.requested,
                format_reset(wait)
            ),
            None => write!(
                f,
                "Request too large for {kind} per minute on {who}: limit {}, requested {}. \
                 Send a shorter prompt or a lower max_tokens.",
                self.limit, self.requested
            ),
        }
    }
}

/// A request the limits let through.
#[derive(Debug)]
pub struct Grant {
    /// The `x-ratelimit-*` headers of its response.
    pub headers: Headers,
    /// What to correct once its real usage is known (when a token limit applies).
    pub ticket: Option<Ticket>,
}

/// A request the limits refused.
#[derive(Debug)]
pub enum Refusal {
    /// Over a limit: answer 429 with these headers.
    Limited {
        detail: Box<RateLimited>,
        headers: Headers,
    },
    /// Redis cannot be reached and `redis_failure = "fail_closed"`.
    Unavailable,
}

/// The token cells a request took its estimate from.
#[derive(Debug)]
pub struct Ticket {
    budget: String,
    /// (cell name, limit).
    cells: Vec<(String, u64)>,
    estimate: u64,
    /// Taken from this replica's cells (embedded, or Redis was away).
    local: bool,
}

/// One limit a request is checked against.
struct Cell {
    kind: Kind,
    key_id: Option<String>,
    limit: u64,
    cost: u64,
    /// Unique within the budget: scope, kind and limit.
    name: String,
}

/// The rate limits of one gateway. See the module documentation.
pub struct RateLimiter {
    local: LocalCells,
    redis: Option<(RedisCells, RedisFailure)>,
    clock: Arc<dyn Clock>,
}

impl RateLimiter {
    /// Cells in this process only.
    pub fn embedded(clock: Arc<dyn Clock>) -> RateLimiter {
        RateLimiter {
            local: LocalCells::default(),
            redis: None,
            clock,
        }
    }

    /// Cells where `[state]` keeps shared state: in Redis for `backend = "redis"`.
    pub fn from_state(state: &StateSettings, clock: Arc<dyn Clock>) -> RateLimiter {
        let mut limiter = RateLimiter::embedded(clock);
        if state.backend == Backend::Redis {
            match RedisCells::new(
                &state.redis_url,
                &state.redis_key_prefix,
                state.redis_timeout(),
            ) {
                Ok(r) => limiter.redis = Some((r, state.redis_failure)),
                Err(error) => tracing::error!(
                    %error,
                    "Invalid Redis URL; rate limits are enforced per replica."
                ),
            }
        }
        limiter
    }

    fn now_us(&self) -> i64 {
        self.clock.now().as_microsecond()
    }

    /// Takes one request and `tokens` (the request's estimate) from the limits of `budget`
    /// and of its key `key_id`. `Ok(None)`: no limit applies (and no headers are sent).
    pub async fn acquire(
        &self,
        budget: &Budget,
        key_id: Option<&str>,
        tokens: u64,
    ) -> Result<Option<Grant>, Refusal> {
        let mut cells = Vec::new();
        if let Some(id) = key_id {
            push_cells(&mut cells, Some(id), budget.key_limits(key_id), tokens);
        }
        push_cells(&mut cells, None, budget.limits, tokens);
        if cells.is_empty() {
            return Ok(None);
        }
        let incs: Vec<i64> = cells
            .iter()
            .map(|c| gcra::increment(c.limit, c.cost))
            .collect();
        let (local, (ok, backlogs)) = match &self.redis {
            None => (true, self.take_locally(&budget.name, &cells, &incs)),
            Some((redis, policy)) => {
                let keys: Vec<String> = cells
                    .iter()
                    .map(|c| redis.key(&c.name, &budget.name))
                    .collect();
                match redis.take(&keys, &incs).await {
                    Ok(taken) => (false, taken),
                    Err(_) if *policy == RedisFailure::FailOpen => {
                        (true, self.take_locally(&budget.name, &cells, &incs))
                    }
                    Err(_) => return Err(Refusal::Unavailable),
                }
            }
        };
        if !ok {
            let headers = headers(&cells, &backlogs);
            // Of the limits that refused, name the one that frees up last: one that can
            // never fit, else the longest wait.
            let wait = |i: usize| {
                (cells[i].cost <= cells[i].limit).then(|| gcra::retry_in(backlogs[i], incs[i]))
            };
            let (i, cell) = cells
                .iter()
                .enumerate()
                .filter(|(i, _)| !gcra::admits(backlogs[*i], incs[*i]))
                .max_by_key(|(i, _)| wait(*i).map_or(Duration::MAX, |d| d))
                .unwrap_or((0, &cells[0]));
            let detail = RateLimited {
                budget: budget.name.clone(),
                key_id: cell.key_id.clone(),
                kind: cell.kind,
                limit: cell.limit,
                remaining: gcra::remaining(cell.limit, backlogs[i]),
                requested: cell.cost,
                retry_in: wait(i),
            };
            return Err(Refusal::Limited {
                detail: Box::new(detail),
                headers,
            });
        }
        let after: Vec<i64> = backlogs.iter().zip(&incs).map(|(b, i)| b + i).collect();
        let token_cells: Vec<(String, u64)> = cells
            .iter()
            .filter(|c| c.kind == Kind::Tokens)
            .map(|c| (c.name.clone(), c.limit))
            .collect();
        Ok(Some(Grant {
            headers: headers(&cells, &after),
            ticket: (!token_cells.is_empty()).then(|| Ticket {
                budget: budget.name.clone(),
                cells: token_cells,
                estimate: tokens,
                local,
            }),
        }))
    }

    fn take_locally(&self, budget: &str, cells: &[Cell], incs: &[i64]) -> (bool, Vec<i64>) {
        let names: Vec<String> = cells.iter().map(|c| local_name(budget, &c.name)).collect();
        let pairs: Vec<(&str, i64)> = names
            .iter()
            .map(String::as_str)
            .zip(incs.iter().copied())
            .collect();
        self.local.take(self.now_us(), &pairs)
    }

    /// Corrects the token cells of a finished request by `actual − estimate` tokens.
    pub async fn settle(&self, ticket: Ticket, actual: u64) {
        if actual == ticket.estimate {
            return;
        }
        let (diff, sign) = if actual > ticket.estimate {
            (actual - ticket.estimate, 1)
        } else {
            (ticket.estimate - actual, -1)
        };
        let deltas: Vec<i64> = ticket
            .cells
            .iter()
            .map(|(_, limit)| sign * gcra::increment(*limit, diff))
            .collect();
        match &self.redis {
            Some((redis, _)) if !ticket.local => {
                let keys: Vec<String> = ticket
                    .cells
                    .iter()
                    .map(|(name, _)| redis.key(name, &ticket.budget))
                    .collect();
                if redis.adjust(&keys, &deltas).await.is_err() {
                    tracing::debug!(budget = %ticket.budget, "Token correction lost: Redis unreachable.");
                }
            }
            _ => {
                let names: Vec<String> = ticket
                    .cells
                    .iter()
                    .map(|(name, _)| local_name(&ticket.budget, name))
                    .collect();
                let pairs: Vec<(&str, i64)> = names
                    .iter()
                    .map(String::as_str)
                    .zip(deltas.iter().copied())
                    .collect();
                self.local.adjust(self.now_us(), &pairs);
            }
        }
    }
}

fn local_name(budget: &str, cell: &str) -> String {
    format!("{budget}:{cell}")
}

/// The cells of one scope (a key, or the budget when `key_id` is `None`).
fn push_cells(cells: &mut Vec<Cell>, key_id: Option<&str>, limits: RateLimits, tokens: u64) {
    let scope = match key_id {
        Some(id) => format!("key:{id}"),
        None => "budget".to_string(),
    };
    for (kind, limit, cost) in [
        (Kind::Requests, limits.requests_per_minute, 1),
        (Kind::Tokens, limits.tokens_per_minute, tokens),
    ] {
        if let Some(limit) = limit {
            cells.push(Cell {
                kind,
                key_id: key_id.map(str::to_string),
                limit,
                cost,
                name: format!("{scope}:{}:{limit}", kind.as_str()),
            });
        }
    }
}

/// The `x-ratelimit-*` headers: per kind, the cell with the least left (at `backlogs`).
fn headers(cells: &[Cell], backlogs: &[i64]) -> Headers {
    let mut out = Headers::new();
    for kind in [Kind::Requests, Kind::Tokens] {
        let tightest = cells
            .iter()
            .zip(backlogs)
            .filter(|(c, _)| c.kind == kind)
            .min_by_key(|(c, b)| gcra::remaining(c.limit, **b));
        if let Some((c, b)) = tightest {
            let [limit, remaining, reset] = kind.header_names();
            out.push((limit, c.limit.to_string()));
            out.push((remaining, gcra::remaining(c.limit, *b).to_string()));
            let reset_in = Duration::from_micros((*b).max(0) as u64);
            out.push((reset, format_reset(reset_in)));
        }
    }
    out
}

#[cfg(test)]
mod tests;
