//! Rate limits: requests and tokens per minute, per budget and per virtual key.
//!
//! A budget file's `[limits]` caps all of the budget's traffic; `requests_per_minute` and
//! `tokens_per_minute` on a `[[keys]]` entry cap that key alone (see [`RateLimits`]). Each
//! configured limit is a GCRA cell: a burst of the whole limit, refilled evenly over the
//! minute. Before a request is sent, [`RateLimiter::acquire`] takes one request and its
//! estimated tokens from every cell that applies, all or nothing, and answers the
//! `x-ratelimit-*` headers OpenAI sends; when it ends, [`RateLimiter::settle`] corrects the
//! token cells by the real usage (a refund when it used less than estimated).
//!
//! Cells are named by budget, scope (the budget, or one key), kind and limit, so a reload
//! that leaves a limit unchanged keeps its cell, and a changed limit starts a fresh one.
//! In embedded mode the cells live in this process and each is decided by the `governor`
//! crate (`local.rs`, which adds the all-or-nothing take and the corrections governor
//! lacks). With `[state] backend = "redis"` they live in Redis and every replica enforces
//! one shared limit (`redis.rs`): a Lua script runs the same algorithm (`gcra.rs`) on Redis'
//! clock. While Redis cannot be reached, `redis_failure = "fail_open"` falls back to this
//! replica's own cells and `"fail_closed"` refuses the request (503). Both kinds of cell
//! answer a `Verdict` per cell, from which the headers and refusals are made.

mod gcra;
mod local;
mod redis;

use std::cmp::Ordering;
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

/// One cell a request takes from, by its name in the store it lives in.
#[derive(Debug, Clone, Copy)]
struct Take<'a> {
    name: &'a str,
    /// Per minute.
    limit: u64,
    /// 1 request, or the estimated tokens.
    cost: u64,
}

/// A correction of a finished request's token cells by its real usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Correction {
    /// It used more than estimated: take these tokens too.
    Charge(u64),
    /// It used fewer: give these tokens back.
    Refund(u64),
}

/// One cell's answer to a take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Verdict {
    /// This cell alone has room for the take.
    admits: bool,
    /// When a refused take would fit this cell; `None` when it never can (more than the
    /// whole limit).
    retry_in: Option<Duration>,
    /// Units left: after the take when every cell admitted, else before it.
    remaining: u64,
    /// Until the cell is whole again, at the same moment as `remaining`.
    reset_in: Duration,
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

    /// Nanoseconds since the epoch, for this process's cells.
    fn now_ns(&self) -> i128 {
        self.clock.now().as_nanosecond()
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
        let (local, (ok, verdicts)) = match &self.redis {
            None => (true, self.take_locally(&budget.name, &cells)),
            Some((redis, policy)) => {
                let keys: Vec<String> = cells
                    .iter()
                    .map(|c| redis.key(&c.name, &budget.name))
                    .collect();
                match redis.take(&takes(&cells, &keys)).await {
                    Ok(taken) => (false, taken),
                    Err(_) if *policy == RedisFailure::FailOpen => {
                        (true, self.take_locally(&budget.name, &cells))
                    }
                    Err(_) => return Err(Refusal::Unavailable),
                }
            }
        };
        let headers = headers(&cells, &verdicts);
        if !ok {
            // Of the limits that refused, name the one that frees up last: one that can
            // never fit, else the longest wait.
            let refusing = cells
                .iter()
                .zip(&verdicts)
                .filter(|(_, v)| !v.admits)
                .max_by_key(|(_, v)| v.retry_in.unwrap_or(Duration::MAX));
            // A refusal always has a refusing cell; the first cell stands in otherwise.
            let Some((cell, verdict)) = refusing.or_else(|| cells.iter().zip(&verdicts).next())
            else {
                return Err(Refusal::Unavailable);
            };
            let detail = RateLimited {
                budget: budget.name.clone(),
                key_id: cell.key_id.clone(),
                kind: cell.kind,
                limit: cell.limit,
                remaining: verdict.remaining,
                requested: cell.cost,
                retry_in: verdict.retry_in,
            };
            return Err(Refusal::Limited {
                detail: Box::new(detail),
                headers,
            });
        }
        let token_cells: Vec<(String, u64)> = cells
            .iter()
            .filter(|c| c.kind == Kind::Tokens)
            .map(|c| (c.name.clone(), c.limit))
            .collect();
        Ok(Some(Grant {
            headers,
            ticket: (!token_cells.is_empty()).then(|| Ticket {
                budget: budget.name.clone(),
                cells: token_cells,
                estimate: tokens,
                local,
            }),
        }))
    }

    fn take_locally(&self, budget: &str, cells: &[Cell]) -> (bool, Vec<Verdict>) {
        let names: Vec<String> = cells.iter().map(|c| local_name(budget, &c.name)).collect();
        self.local.take(self.now_ns(), &takes(cells, &names))
    }

    /// Corrects the token cells of a finished request by `actual − estimate` tokens.
    pub async fn settle(&self, ticket: Ticket, actual: u64) {
        let correction = match actual.cmp(&ticket.estimate) {
            Ordering::Equal => return,
            Ordering::Greater => Correction::Charge(actual - ticket.estimate),
            Ordering::Less => Correction::Refund(ticket.estimate - actual),
        };
        let names: Vec<String> = match &self.redis {
            Some((redis, _)) if !ticket.local => ticket
                .cells
                .iter()
                .map(|(name, _)| redis.key(name, &ticket.budget))
                .collect(),
            _ => ticket
                .cells
                .iter()
                .map(|(name, _)| local_name(&ticket.budget, name))
                .collect(),
        };
        let cells: Vec<(&str, u64)> = names
            .iter()
            .map(String::as_str)
            .zip(ticket.cells.iter().map(|(_, limit)| *limit))
            .collect();
        match &self.redis {
            Some((redis, _)) if !ticket.local => {
                if redis.adjust(&cells, correction).await.is_err() {
                    tracing::debug!(budget = %ticket.budget, "Token correction lost: Redis unreachable.");
                }
            }
            _ => self.local.adjust(self.now_ns(), &cells, correction),
        }
    }
}

fn local_name(budget: &str, cell: &str) -> String {
    format!("{budget}:{cell}")
}

/// `cells` as takes from the cells named `names` (one name per cell).
fn takes<'a>(cells: &[Cell], names: &'a [String]) -> Vec<Take<'a>> {
    cells
        .iter()
        .zip(names)
        .map(|(c, name)| Take {
            name,
            limit: c.limit,
            cost: c.cost,
        })
        .collect()
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

/// The `x-ratelimit-*` headers: per kind, the cell with the least left.
fn headers(cells: &[Cell], verdicts: &[Verdict]) -> Headers {
    let mut out = Headers::new();
    for kind in [Kind::Requests, Kind::Tokens] {
        let tightest = cells
            .iter()
            .zip(verdicts)
            .filter(|(c, _)| c.kind == kind)
            .min_by_key(|(_, v)| v.remaining);
        if let Some((c, v)) = tightest {
            let [limit, remaining, reset] = kind.header_names();
            out.push((limit, c.limit.to_string()));
            out.push((remaining, v.remaining.to_string()));
            out.push((reset, format_reset(v.reset_in)));
        }
    }
    out
}

#[cfg(test)]
mod tests;
