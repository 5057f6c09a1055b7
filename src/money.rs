//! Money as integers: nano-dollars (10⁻⁹ USD). No floating point touches a money path.
//!
//! Prices in `routes.toml` may be written as TOML numbers (`10.00`) or strings (`"0.075"`);
//! both are read as exact decimals. A TOML float is converted through its shortest
//! round-trip representation, which is the literal ops wrote (`0.15` stays `0.15`).

use serde::{Deserialize, Deserializer};

/// Nano-dollars per dollar.
pub const NANOS_PER_DOLLAR: u64 = 1_000_000_000;

/// An exact non-negative decimal with up to 9 fractional digits, stored scaled by 10⁹.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decimal9(pub u64);

/// A decimal literal that is not a non-negative number with at most 9 fractional digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a non-negative decimal with at most 9 digits after the point")]
pub struct DecimalError(pub String);

impl Decimal9 {
    /// Parses `"12"`, `"0.075"`, `"1e-3"` is rejected (write decimals plainly).
    pub fn parse(s: &str) -> Result<Self, DecimalError> {
        let err = || DecimalError(s.to_string());
        let t = s.trim().replace('_', "");
        let (int, frac) = match t.split_once('.') {
            Some((i, f)) => (i, f),
            None => (t.as_str(), ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(err());
        }
        if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        if frac.len() > 9 {
            return Err(err());
        }
        let int_v: u64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| err())?
        };
        let frac_v: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().map_err(|_| err())?
        };
        int_v
            .checked_mul(NANOS_PER_DOLLAR)
            .and_then(|v| v.checked_add(frac_v))
            .map(Decimal9)
            .ok_or_else(err)
    }

    /// The scaled integer (for dollars: nano-dollars).
    pub fn raw(self) -> u64 {
        self.0
    }

    /// Multiplies two 10⁹-scaled decimals (e.g. credits × dollars-per-credit), exactly when
    /// the product has at most 9 fractional digits, else rounded half up.
    pub fn times(self, other: Decimal9) -> Decimal9 {
        let p = self.0 as u128 * other.0 as u128;
        let q = (p + (NANOS_PER_DOLLAR as u128 / 2)) / NANOS_PER_DOLLAR as u128;
        Decimal9(q.min(u64::MAX as u128) as u64)
    }
}

impl std::fmt::Display for Decimal9 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let int = self.0 / NANOS_PER_DOLLAR;
        let frac = self.0 % NANOS_PER_DOLLAR;
        if frac == 0 {
            write!(f, "{int}")
        } else {
            let s = format!("{frac:09}");
            write!(f, "{int}.{}", s.trim_end_matches('0'))
        }
    }
}

impl<'de> Deserialize<'de> for Decimal9 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Lit {
            Int(i64),
            Float(f64),
            Str(String),
        }
        let text = match Lit::deserialize(d)? {
            Lit::Int(i) => i.to_string(),
            // `{}` on f64 prints the shortest string that round-trips: the literal written.
            Lit::Float(x) if x.is_finite() => format!("{x}"),
            Lit::Float(x) => x.to_string(),
            Lit::Str(s) => s,
        };
        Decimal9::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(
            Decimal9::parse("10.00").unwrap().raw(),
            10 * NANOS_PER_DOLLAR
        );
        assert_eq!(Decimal9::parse("0.075").unwrap().raw(), 75_000_000);
        assert_eq!(Decimal9::parse("0.000000001").unwrap().raw(), 1);
        assert!(Decimal9::parse("-1").is_err());
        assert!(Decimal9::parse("1e-3").is_err());
        assert!(Decimal9::parse("0.0000000001").is_err());
    }

    #[test]
    fn toml_float_keeps_its_literal_value() {
        #[derive(Deserialize)]
        struct P {
            x: Decimal9,
        }
        let p: P = toml::from_str("x = 0.15").unwrap();
        assert_eq!(p.x.raw(), 150_000_000);
        let p: P = toml::from_str("x = \"2.5\"").unwrap();
        assert_eq!(p.x.to_string(), "2.5");
    }

    #[test]
    fn credit_conversion_is_exact() {
        let credits = Decimal9::parse("1.95").unwrap();
        let rate = Decimal9::parse("2.00").unwrap();
        assert_eq!(credits.times(rate).to_string(), "3.9");
    }
}
