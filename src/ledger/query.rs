//! Reads for start-up and the dashboard: spend per (budget, day) to rebuild the budget
//! counters, recent requests paged and filtered, and spend grouped by day, model, provider,
//! tier or budget.
//!
//! Reads use their own read-only connections (a small pool), so they never wait for the
//! writer; in WAL mode they see the last committed state. They are blocking calls: from
//! async code, run them inside `tokio::task::spawn_blocking` on a clone of the [`Ledger`].

use std::path::PathBuf;

use parking_lot::Mutex;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use super::record::{get_u64, COLUMNS};
use super::{schema, Ledger, LedgerError, LedgerRecord};

/// Largest page [`Ledger::recent`] returns.
pub const MAX_PAGE: u32 = 1000;
/// Idle read connections kept open.
const MAX_IDLE: usize = 4;

/// Which requests [`Ledger::recent`] returns. `Default` is the 50 newest of everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentFilter {
    pub budget: Option<String>,
    /// Matches the requested model or the served model.
    pub model: Option<String>,
    pub status: Option<u16>,
    /// Keyset paging: only requests older than this one (by start time, then by order of
    /// writing). An id not in the ledger yields an empty page.
    pub before_id: Option<String>,
    /// Rows to skip after the other conditions (offset paging).
    pub offset: u32,
    /// Page size, clamped to `1..=MAX_PAGE`.
    pub limit: u32,
}

impl Default for RecentFilter {
    fn default() -> Self {
        RecentFilter {
            budget: None,
            model: None,
            status: None,
            before_id: None,
            offset: 0,
            limit: 50,
        }
    }
}

/// The key [`Ledger::spend_grouped`] groups by. A request with no provider or tier (it
/// failed before one was chosen) is grouped under `""`; `Model` is the served model, or the
/// requested one when nothing was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Model,
    Provider,
    Tier,
    Budget,
}

/// Requests, tokens and cost of one routing tier over a range of days, from
/// [`Ledger::tier_usage`]. Requests that named a model themselves have tier `""`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierUsage {
    pub tier: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost_nanos: u64,
}

impl GroupBy {
    fn expr(self) -> &'static str {
        match self {
            GroupBy::Day => "day",
            GroupBy::Model => "COALESCE(served_model, requested_model)",
            GroupBy::Provider => "COALESCE(provider, '')",
            GroupBy::Tier => "COALESCE(tier, '')",
            GroupBy::Budget => "budget",
        }
    }
}

/// Read-only connections, opened on demand and kept for reuse.
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub(crate) fn new(path: PathBuf) -> Self {
        ReadPool {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Opens a first connection, so a file that cannot be read fails `Ledger::open`.
    pub(crate) fn check(&self) -> Result<(), LedgerError> {
        self.with(|conn| {
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
            Ok(())
        })
    }

    /// Runs `f` on an idle connection (or a new one) and returns it to the pool.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let idle = self.idle.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => schema::open_reader(&self.path)?,
        };
        let out = f(&conn);
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        out
    }
}

impl Ledger {
    /// Total cost per (budget, day), for days `>= since_day` (all days when `None`), sorted
    /// by budget then day: what the budget counters are rebuilt from on start. Blocking.
    pub fn spent_by_budget_day(
        &self,
        since_day: Option<&str>,
    ) -> Result<Vec<(String, String, u64)>, LedgerError> {
        self.inner.reads.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT budget, day, SUM(cost_nanos) FROM requests \
                 WHERE ?1 IS NULL OR day >= ?1 GROUP BY budget, day ORDER BY budget, day",
            )?;
            let rows =
                stmt.query_map([since_day], |r| Ok((r.get(0)?, r.get(1)?, get_u64(r, 2)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Total cost of one budget on one day, in nano-dollars. Blocking.
    pub fn sum_cost(&self, budget: &str, day: &str) -> Result<u64, LedgerError> {
        self.inner.reads.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT COALESCE(SUM(cost_nanos), 0) FROM requests WHERE budget = ?1 AND day = ?2",
            )?;
            Ok(stmt.query_row([budget, day], |r| get_u64(r, 0))?)
        })
    }

    /// Recent requests matching `filter`, newest first. Blocking.
    pub fn recent(&self, filter: &RecentFilter) -> Result<Vec<LedgerRecord>, LedgerError> {
        let mut sql = format!("SELECT {COLUMNS} FROM requests WHERE 1");
        let mut args: Vec<Value> = Vec::new();
        let mut arg = |cond: &str, v: Value, sql: &mut String| {
            args.push(v);
            sql.push_str(&cond.replace('?', &format!("?{}", args.len())));
        };
        if let Some(b) = &filter.budget {
            arg(" AND budget = ?", Value::Text(b.clone()), &mut sql);
        }
        if let Some(m) = &filter.model {
            arg(
                " AND (requested_model = ? OR served_model = ?)",
                Value::Text(m.clone()),
                &mut sql,
            );
        }
        if let Some(s) = filter.status {
            arg(" AND status = ?", Value::Integer(s.into()), &mut sql);
        }
        if let Some(id) = &filter.before_id {
            arg(
                " AND (at_ms, seq) < (SELECT at_ms, seq FROM requests WHERE id = ?)",
                Value::Text(id.clone()),
                &mut sql,
            );
        }
        let limit = filter.limit.clamp(1, MAX_PAGE);
        arg(
            " ORDER BY at_ms DESC, seq DESC LIMIT ?",
            limit.into(),
            &mut sql,
        );
        arg(" OFFSET ?", filter.offset.into(), &mut sql);
        self.inner.reads.with(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), LedgerRecord::from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Cost and request count per `by` key over the days `from_day..=to_day`, optionally for
    /// one budget. Sorted by day for [`GroupBy::Day`], else by cost, highest first. Blocking.
    pub fn spend_grouped(
        &self,
        from_day: &str,
        to_day: &str,
        budget: Option<&str>,
        by: GroupBy,
    ) -> Result<Vec<(String, u64, u64)>, LedgerError> {
        let order = match by {
            GroupBy::Day => "k",
            _ => "cost DESC, k",
        };
        let mut args = vec![from_day, to_day];
        let only_budget = match budget {
            Some(b) => {
                args.push(b);
                " AND budget = ?3"
            }
            None => "",
        };
        let sql = format!(
            "SELECT {} AS k, SUM(cost_nanos) AS cost, COUNT(*) FROM requests \
             WHERE day BETWEEN ?1 AND ?2{only_budget} GROUP BY k ORDER BY {order}",
            by.expr()
        );
        self.inner.reads.with(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), |r| {
                Ok((r.get(0)?, get_u64(r, 1)?, get_u64(r, 2)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Requests, token totals and cost per tier over the days `from_day..=to_day`,
    /// optionally for one budget, highest cost first. Blocking.
    pub fn tier_usage(
        &self,
        from_day: &str,
        to_day: &str,
        budget: Option<&str>,
    ) -> Result<Vec<TierUsage>, LedgerError> {
        self.inner.reads.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT COALESCE(tier, '') AS k, COUNT(*), SUM(input_tokens), \
                 SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), \
                 SUM(cost_nanos) AS cost FROM requests \
                 WHERE day BETWEEN ?1 AND ?2 AND (?3 IS NULL OR budget = ?3) \
                 GROUP BY k ORDER BY cost DESC, k",
            )?;
            let rows = stmt.query_map(rusqlite::params![from_day, to_day, budget], |r| {
                Ok(TierUsage {
                    tier: r.get(0)?,
                    requests: get_u64(r, 1)?,
                    input_tokens: get_u64(r, 2)?,
                    output_tokens: get_u64(r, 3)?,
                    cached_input_tokens: get_u64(r, 4)?,
                    cache_write_tokens: get_u64(r, 5)?,
                    cost_nanos: get_u64(r, 6)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}
