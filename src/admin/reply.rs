//! Building admin answers: JSON bodies, OpenAI-shaped errors
//! (`{"error": {"message", "type", "param", "code"}}`), money as exact nano-dollars next to
//! decimal-dollar strings, and the query-string and date parameters the API routes share.
//!
//! Money never goes through a float: every amount is given twice, as `NAME_nanos` (an
//! integer) and `NAME_usd` (a string with nine decimals, formatted from the integer).

use http::Response;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::{json, Map, Value};

use crate::ledger::format_dollars;

/// A whole admin response, boxed so that results carrying one stay small.
pub type Answer = Box<Response<Vec<u8>>>;

/// A JSON answer with `status`.
pub fn json(status: u16, body: &Value) -> Answer {
    let body = body.to_string().into_bytes();
    Box::new(
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .header("cache-control", "no-store")
            .body(body)
            .unwrap_or_default(),
    )
}

/// An OpenAI-shaped error of type `admin_error`.
pub fn error(status: u16, code: &str, message: &str) -> Answer {
    json(
        status,
        &json!({"error": {"message": message, "type": "admin_error", "param": null, "code": code}}),
    )
}

/// A 400 naming the query parameter at fault.
pub fn bad_param(param: &str, message: &str) -> Answer {
    json(
        400,
        &json!({"error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": "invalid_parameter",
        }}),
    )
}

/// A 409 for routes that read the ledger when this gateway keeps none.
pub fn no_ledger() -> Answer {
    error(
        409,
        "ledger_disabled",
        "This gateway keeps no ledger, so it has no request history.",
    )
}

/// A 500 for a failed ledger read; the detail is logged, not sent.
pub fn ledger_failed(what: &str, detail: &str) -> Answer {
    tracing::error!(error = detail, what, "Admin ledger read failed.");
    error(
        500,
        "ledger_read_failed",
        "The ledger could not be read; see the gateway log.",
    )
}

/// Inserts `NAME_nanos` and `NAME_usd` for `nanos` into `obj`.
pub fn put_money(obj: &mut Map<String, Value>, name: &str, nanos: u64) {
    obj.insert(format!("{name}_nanos"), Value::from(nanos));
    obj.insert(format!("{name}_usd"), Value::from(format_dollars(nanos)));
}

/// Inserts a signed amount (a saving may be negative) as `NAME_nanos` and `NAME_usd`.
pub fn put_signed_money(obj: &mut Map<String, Value>, name: &str, nanos: i128) {
    let clamped = nanos.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    let abs = clamped.unsigned_abs();
    let sign = if clamped < 0 { "-" } else { "" };
    obj.insert(format!("{name}_nanos"), Value::from(clamped));
    obj.insert(
        format!("{name}_usd"),
        Value::from(format!("{sign}{}", format_dollars(abs))),
    );
}

/// Unix milliseconds as RFC 3339 (UTC), or `null`.
pub fn rfc3339(ms: i64) -> Value {
    Timestamp::from_millisecond(ms)
        .map(|t| Value::from(t.to_string()))
        .unwrap_or(Value::Null)
}

/// The decoded query string.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The last value of `name`; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// An unsigned integer in `min..=max`, `default` when absent.
    pub fn uint(&self, name: &str, default: u32, min: u32, max: u32) -> Result<u32, Answer> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        match raw.parse::<u32>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(bad_param(
                name,
                &format!("`{name}` must be a whole number from {min} to {max}."),
            )),
        }
    }

    /// A `YYYY-MM-DD` day, `None` when absent.
    pub fn day(&self, name: &str) -> Result<Option<Date>, Answer> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => parse_day(raw)
                .map(Some)
                .ok_or_else(|| bad_param(name, &format!("`{name}` must be a date, YYYY-MM-DD."))),
        }
    }
}

/// Parses a `YYYY-MM-DD` day.
pub fn parse_day(raw: &str) -> Option<Date> {
    if raw.len() != 10 {
        return None;
    }
    raw.parse::<Date>().ok()
}

/// The day `now` falls on in `tz`.
pub fn day_in(now: Timestamp, tz: &TimeZone) -> Date {
    now.to_zoned(tz.clone()).date()
}

/// `day` moved by `days` (negative: back), saturating at the calendar's ends.
pub fn shift(day: Date, days: i64) -> Date {
    day.checked_add(jiff::Span::new().days(days)).unwrap_or(day)
}

/// The longest range of days a spend or alert query may cover.
pub const MAX_DAYS: i64 = 366;

/// A range of days from `from`/`to`, or the single day `day`, defaulting to `today`.
/// Both ends are inclusive; `from` after `to` or a range over [`MAX_DAYS`] is refused.
pub fn day_range(q: &Query, today: Date) -> Result<(Date, Date), Answer> {
    let (from, to) = match q.day("day")? {
        Some(d) => (d, d),
        None => {
            let to = q.day("to")?.unwrap_or(today);
            (q.day("from")?.unwrap_or(to), to)
        }
    };
    if from > to {
        return Err(bad_param("from", "`from` must not be after `to`."));
    }
    let span = to.since(from).map(|s| s.get_days()).unwrap_or(i32::MAX);
    if i64::from(span) >= MAX_DAYS {
        return Err(bad_param(
            "from",
            &format!("A range may cover at most {MAX_DAYS} days."),
        ));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_money_keeps_nine_decimals_and_the_sign() {
        let mut m = Map::new();
        put_signed_money(&mut m, "saving", -1_500_000_001);
        put_money(&mut m, "cost", 42);
        assert_eq!(m["saving_nanos"], -1_500_000_001i64);
        assert_eq!(m["saving_usd"], "-1.500000001");
        assert_eq!(m["cost_usd"], "0.000000042");
    }

    #[test]
    fn query_values_are_decoded_and_empty_ones_ignored() {
        let q = Query::parse(Some("budget=team%20a&model=&limit=20&model=gpt-4o-mini"));
        assert_eq!(q.get("budget"), Some("team a"));
        assert_eq!(q.get("model"), Some("gpt-4o-mini"));
        assert_eq!(q.uint("limit", 50, 1, 100).ok(), Some(20));
        assert!(q.uint("limit", 50, 1, 10).is_err());
        assert_eq!(q.uint("offset", 0, 0, 10).ok(), Some(0));
    }

    #[test]
    fn day_ranges_default_to_today_and_refuse_reversed_or_huge_ones() {
        let today: Date = "2025-06-15".parse().unwrap();
        let d = |s: &str| s.parse::<Date>().unwrap();
        let range =
            |qs: &str| day_range(&Query::parse(Some(qs)), today).map_err(|r| r.status().as_u16());
        assert_eq!(range(""), Ok((today, today)));
        assert_eq!(
            range("day=2025-01-02"),
            Ok((d("2025-01-02"), d("2025-01-02")))
        );
        assert_eq!(range("from=2025-06-01"), Ok((d("2025-06-01"), today)));
        assert_eq!(range("from=2025-06-16").map(|_| ()), Err(400));
        assert_eq!(range("from=2020-01-01").map(|_| ()), Err(400));
        assert_eq!(range("day=2025-6-1").map(|_| ()), Err(400));
        assert_eq!(shift(today, -29), d("2025-05-17"));
    }
}
