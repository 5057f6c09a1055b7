//! CSV export of ledger rows for a time range, streamed from the SQLite cursor: one row is
//! formatted and written at a time, so a range of any size is exported in constant memory.
//!
//! RFC 4180: fields holding a comma, a quote, CR or LF are quoted with inner quotes
//! doubled; lines end with CRLF. A field that a spreadsheet would read as a formula
//! (starting with `=`, `+`, `-`, `@`, tab or CR: a client chooses the requested model
//! name, for one) gets a leading `'`, so opening an export never runs it. Money is a decimal dollar string with exactly nine
//! decimals (`0.000123450`), formatted from the integer nano-dollars.

use std::io::{BufWriter, Write};

use super::record::COLUMNS;
use super::{Ledger, LedgerError, LedgerRecord};
use crate::money::NANOS_PER_DOLLAR;

/// The header line's fields, in row order.
pub(crate) const HEADER: [&str; 25] = [
    "id",
    "at_ms",
    "at",
    "day",
    "budget",
    "key_id",
    "requested_model",
    "tier",
    "route_reason",
    "served_model",
    "provider",
    "attempts",
    "attempt_count",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "estimated",
    "cost_usd",
    "price_version",
    "latency_ms",
    "ttft_ms",
    "status",
    "error_code",
    "streamed",
];

/// `nanos` as dollars with nine decimals: `123450` → `"0.000123450"`.
pub fn format_dollars(nanos: u64) -> String {
    format!(
        "{}.{:09}",
        nanos / NANOS_PER_DOLLAR,
        nanos % NANOS_PER_DOLLAR
    )
}

/// Appends `field` to `line`, defused when a spreadsheet would take it for a formula and
/// quoted when it needs to be.
fn push_field(line: &mut String, field: &str) {
    let formula = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quoted = field.contains([',', '"', '\r', '\n']);
    if quoted {
        line.push('"');
    }
    if formula {
        line.push('\'');
    }
    if quoted {
        line.push_str(&field.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(field);
    }
}

/// Formats one record as a CSV line (with its CRLF) into `line`, which is cleared first.
pub(crate) fn format_row(rec: &LedgerRecord, line: &mut String) {
    line.clear();
    let at = jiff::Timestamp::from_millisecond(rec.at_ms)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields: [String; 25] = [
        rec.id.clone(),
        rec.at_ms.to_string(),
        at,
        rec.day.clone(),
        rec.budget.clone(),
        opt(&rec.key_id),
        rec.requested_model.clone(),
        opt(&rec.tier),
        rec.route_reason.clone(),
        opt(&rec.served_model),
        opt(&rec.provider),
        rec.attempts.clone(),
        rec.attempt_count.to_string(),
        rec.input_tokens.to_string(),
        rec.output_tokens.to_string(),
        rec.cached_input_tokens.to_string(),
        rec.cache_write_tokens.to_string(),
        rec.estimated.to_string(),
        format_dollars(rec.cost_nanos),
        rec.price_version.clone(),
        rec.latency_ms.to_string(),
        rec.ttft_ms.map(|v| v.to_string()).unwrap_or_default(),
        rec.status.to_string(),
        opt(&rec.error_code),
        rec.streamed.to_string(),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        push_field(line, f);
    }
    line.push_str("\r\n");
}

impl Ledger {
    /// Writes a header line and one CSV row per request started in `from_ms..to_ms` (unix
    /// ms, end exclusive), optionally of one budget, oldest first. Rows are read from the
    /// cursor and written one at a time (through a buffer), never collected. Returns the
    /// number of rows written. Blocking.
    pub fn export_csv(
        &self,
        from_ms: i64,
        to_ms: i64,
        budget: Option<&str>,
        out: &mut impl Write,
    ) -> Result<u64, LedgerError> {
        let mut out = BufWriter::new(out);
        let mut line = HEADER.join(",");
        line.push_str("\r\n");
        out.write_all(line.as_bytes())
            .map_err(LedgerError::Export)?;
        let rows = self.inner.reads.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM requests WHERE at_ms >= ?1 AND at_ms < ?2 \
                 AND (?3 IS NULL OR budget = ?3) ORDER BY at_ms, seq"
            ))?;
            let mut rows = stmt.query(rusqlite::params![from_ms, to_ms, budget])?;
            let mut n = 0u64;
            while let Some(row) = rows.next()? {
                format_row(&LedgerRecord::from_row(row)?, &mut line);
                out.write_all(line.as_bytes())
                    .map_err(LedgerError::Export)?;
                n += 1;
            }
            Ok(n)
        })?;
        out.flush().map_err(LedgerError::Export)?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_have_nine_decimals_from_integer_math() {
        assert_eq!(format_dollars(123_450), "0.000123450");
        assert_eq!(format_dollars(0), "0.000000000");
        assert_eq!(format_dollars(12_000_000_001), "12.000000001");
        assert_eq!(format_dollars(u64::MAX), "18446744073.709551615");
    }

    #[test]
    fn fields_with_separators_quotes_or_newlines_are_quoted() {
        let mut line = String::new();
        for f in ["plain", "a,b", "say \"hi\"", "two\nlines", "cr\rhere", ""] {
            push_field(&mut line, f);
            line.push('|');
        }
        assert_eq!(
            line,
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|\"cr\rhere\"||"
        );
    }

    #[test]
    fn fields_a_spreadsheet_would_evaluate_are_defused() {
        let mut line = String::new();
        for f in [
            "=HYPERLINK(\"x\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "a=b",
            "0.5",
        ] {
            push_field(&mut line, f);
            line.push('|');
        }
        assert_eq!(
            line,
            "\"'=HYPERLINK(\"\"x\"\")\"|'+1|'-2|'@SUM(A1)|'\tx|a=b|0.5|"
        );
    }

    #[test]
    fn row_has_one_field_per_header_column_and_empty_for_none() {
        let mut rec = crate::ledger::tests::record("r1", "team", "2025-06-15", 5);
        rec.tier = None;
        let mut line = String::new();
        format_row(&rec, &mut line);
        let fields: Vec<&str> = line.trim_end_matches("\r\n").split(',').collect();
        assert_eq!(fields.len(), HEADER.len());
        let col = |name| fields[HEADER.iter().position(|h| *h == name).unwrap()];
        assert_eq!(col("tier"), "");
        assert_eq!(col("cost_usd"), "0.000000005");
        assert_eq!(col("at"), "2025-06-15T15:06:40Z");
        assert_eq!(col("ttft_ms"), "");
    }
}
