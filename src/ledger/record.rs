//! `LedgerRecord`, one row per request, and its mapping to and from the `requests` table.
//!
//! Integers are stored as SQLite INTEGER (signed 64-bit). A `u64` above `i64::MAX` cannot be
//! stored as is; it is clamped to `i64::MAX` with a warning rather than wrapped, so a
//! corrupt figure shows as an obviously huge one instead of a negative one.

use rusqlite::{Row, ToSql};
use serde::Serialize;

/// One request as the ledger keeps it. Failed requests are recorded too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LedgerRecord {
    /// Request id; the primary key, so recording the same id twice keeps the first.
    pub id: String,
    /// Request start, unix milliseconds.
    pub at_ms: i64,
    /// The budget's day (`YYYY-MM-DD`, in the budget's time zone), computed by the caller.
    pub day: String,
    pub budget: String,
    /// The key's id, never the key itself.
    pub key_id: Option<String>,
    pub requested_model: String,
    pub tier: Option<String>,
    pub route_reason: String,
    pub served_model: Option<String>,
    pub provider: Option<String>,
    /// The attempts, already formatted by the caller.
    pub attempts: String,
    pub attempt_count: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    /// Tokens were estimated, not reported by the provider.
    pub estimated: bool,
    /// Cost in nano-dollars (0 for a failed request unless tokens were billed).
    pub cost_nanos: u64,
    /// Version of the price table the cost was computed with.
    pub price_version: String,
    pub latency_ms: u64,
    /// Time to first token, for streamed answers.
    pub ttft_ms: Option<u64>,
    /// HTTP status returned to the client.
    pub status: u16,
    pub error_code: Option<String>,
    pub streamed: bool,
}

/// Columns in the order `from_row` reads them.
pub(crate) const COLUMNS: &str = "id, at_ms, day, budget, key_id, requested_model, tier, \
     route_reason, served_model, provider, attempts, attempt_count, input_tokens, \
     output_tokens, cached_input_tokens, cache_write_tokens, estimated, cost_nanos, \
     price_version, latency_ms, ttft_ms, status, error_code, streamed";

/// The idempotent insert: a duplicate id is ignored.
pub(crate) const INSERT: &str = "INSERT OR IGNORE INTO requests (id, at_ms, day, budget, \
     key_id, requested_model, tier, route_reason, served_model, provider, attempts, \
     attempt_count, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, \
     estimated, cost_nanos, price_version, latency_ms, ttft_ms, status, error_code, streamed) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
     ?18, ?19, ?20, ?21, ?22, ?23, ?24)";

/// `v` as an SQLite integer; values above `i64::MAX` are clamped and logged.
pub(crate) fn clamp_i64(v: u64, field: &'static str, id: &str) -> i64 {
    i64::try_from(v).unwrap_or_else(|_| {
        tracing::warn!(
            request_id = id,
            field,
            value = v,
            "Ledger value above i64::MAX clamped."
        );
        i64::MAX
    })
}

/// Reads an INTEGER column as `u64`; a negative value is an error, never wrapped.
pub(crate) fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

impl LedgerRecord {
    /// Executes `INSERT` for this record; `Ok(true)` when a row was added.
    pub(crate) fn insert(
        &self,
        stmt: &mut rusqlite::CachedStatement<'_>,
    ) -> rusqlite::Result<bool> {
        let id = self.id.as_str();
        let n = |v: u64, field| clamp_i64(v, field, id);
        let ttft = self.ttft_ms.map(|v| n(v, "ttft_ms"));
        let params: [&dyn ToSql; 24] = [
            &self.id,
            &self.at_ms,
            &self.day,
            &self.budget,
            &self.key_id,
            &self.requested_model,
            &self.tier,
            &self.route_reason,
            &self.served_model,
            &self.provider,
            &self.attempts,
            &self.attempt_count,
            &n(self.input_tokens, "input_tokens"),
            &n(self.output_tokens, "output_tokens"),
            &n(self.cached_input_tokens, "cached_input_tokens"),
            &n(self.cache_write_tokens, "cache_write_tokens"),
            &self.estimated,
            &n(self.cost_nanos, "cost_nanos"),
            &self.price_version,
            &n(self.latency_ms, "latency_ms"),
            &ttft,
            &self.status,
            &self.error_code,
            &self.streamed,
        ];
        Ok(stmt.execute(params.as_slice())? == 1)
    }

    /// Reads a row selected with [`COLUMNS`]. A negative or out-of-range integer is an
    /// error (`FromSqlConversionFailure`/`IntegralValueOutOfRange`), never a wrapped value.
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(LedgerRecord {
            id: row.get(0)?,
            at_ms: row.get(1)?,
            day: row.get(2)?,
            budget: row.get(3)?,
            key_id: row.get(4)?,
            requested_model: row.get(5)?,
            tier: row.get(6)?,
            route_reason: row.get(7)?,
            served_model: row.get(8)?,
            provider: row.get(9)?,
            attempts: row.get(10)?,
            attempt_count: row.get(11)?,
            input_tokens: get_u64(row, 12)?,
            output_tokens: get_u64(row, 13)?,
            cached_input_tokens: get_u64(row, 14)?,
            cache_write_tokens: get_u64(row, 15)?,
            estimated: row.get(16)?,
            cost_nanos: get_u64(row, 17)?,
            price_version: row.get(18)?,
            latency_ms: get_u64(row, 19)?,
            ttft_ms: match row.get::<_, Option<i64>>(20)? {
                Some(_) => Some(get_u64(row, 20)?),
                None => None,
            },
            status: row.get(21)?,
            error_code: row.get(22)?,
            streamed: row.get(23)?,
        })
    }
}
