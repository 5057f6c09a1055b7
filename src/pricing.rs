//! Prices × tokens, in integer nano-dollars.
//!
//! Prices are nano-dollars per 1M tokens ([`crate::config::Price`]); a cost is
//! `tokens × price / 1,000,000`, computed in 128-bit integers and rounded half up to the
//! nano-dollar once per request, so no floating point ever touches money.

use crate::config::Price;
use crate::usage::Usage;

const PER: u128 = 1_000_000;

fn times(tokens: u64, per_million: u64) -> u128 {
    tokens as u128 * per_million as u128
}

fn round(scaled: u128) -> u64 {
    ((scaled + PER / 2) / PER).min(u64::MAX as u128) as u64
}

/// What `usage` costs at `price`: uncached input, cached input, cache writes and output,
/// each at its own rate.
pub fn cost_nanos(price: &Price, usage: &Usage) -> u64 {
    let special = usage
        .cached_input_tokens
        .saturating_add(usage.cache_write_tokens);
    let plain = usage.input_tokens.saturating_sub(special);
    round(
        times(plain, price.input.raw())
            + times(usage.cached_input_tokens, price.cached_input.raw())
            + times(usage.cache_write_tokens, price.cache_write.raw())
            + times(usage.output_tokens, price.output.raw()),
    )
}

/// Estimated cost of a request before it is sent: every prompt token at the input price,
/// `output_tokens` at the output price.
pub fn estimate_nanos(price: &Price, prompt_tokens: u64, output_tokens: u64) -> u64 {
    round(times(prompt_tokens, price.input.raw()) + times(output_tokens, price.output.raw()))
}

/// Nano-dollars as a dollar amount string (`0.000123`), for headers and logs.
pub fn dollars(nanos: u64) -> String {
    crate::money::Decimal9(nanos).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Decimal9;

    fn price(i: &str, o: &str, c: &str, w: &str) -> Price {
        let d = |s: &str| Decimal9::parse(s).unwrap();
        Price {
            input: d(i),
            output: d(o),
            cached_input: d(c),
            cache_write: d(w),
        }
    }

    #[test]
    fn gpt4_turbo_thousand_in_five_hundred_out() {
        // 1000 × $10/M + 500 × $30/M = $0.01 + $0.015 = $0.025
        let p = price("10", "30", "10", "10");
        assert_eq!(cost_nanos(&p, &Usage::new(1000, 500)), 25_000_000);
        assert_eq!(estimate_nanos(&p, 1000, 500), 25_000_000);
    }

    #[test]
    fn cache_reads_and_writes_are_priced_separately() {
        // Claude Sonnet: 3 / 15 / read 0.30 / write 3.75.
        let p = price("3", "15", "0.30", "3.75");
        let u = Usage {
            input_tokens: 1532,
            output_tokens: 100,
            cached_input_tokens: 1111,
            cache_write_tokens: 418,
            estimated: false,
        };
        // 3×3 + 1111×0.30 + 418×3.75 + 100×15 = 9 + 333.3 + 1567.5 + 1500 = 3409.8 (×1e-6 $)
        assert_eq!(cost_nanos(&p, &u), 3_409_800);
    }

    #[test]
    fn rounds_half_up_to_the_nano_dollar() {
        // 1 token at $0.0005/M = 0.5 nano-dollar → 1; 1 token at $0.0004/M → 0
        assert_eq!(estimate_nanos(&price("0.0005", "0", "0", "0"), 1, 0), 1);
        assert_eq!(estimate_nanos(&price("0.0004", "0", "0", "0"), 1, 0), 0);
        assert_eq!(dollars(25_000_000), "0.025");
    }
}
