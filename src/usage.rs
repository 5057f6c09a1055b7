//! Token usage normalised across providers.
//!
//! Every adapter reports usage in this one shape, whatever its provider calls the fields, so
//! pricing and the ledger never need to know which provider served a request.

use serde::{Deserialize, Serialize};

/// Tokens consumed by one request.
///
/// `input_tokens` follows OpenAI semantics: it is the *whole* prompt, including tokens read
/// from or written to a prompt cache. `cached_input_tokens` and `cache_write_tokens` are the
/// subsets of it that are priced differently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Prompt tokens served from a cache (subset of `input_tokens`).
    pub cached_input_tokens: u64,
    /// Prompt tokens written to a cache (subset of `input_tokens`; Anthropic, Cortex).
    pub cache_write_tokens: u64,
    /// True when tollgate counted the tokens itself because the provider reported none.
    pub estimated: bool,
}

impl Usage {
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Usage {
            input_tokens,
            output_tokens,
            ..Usage::default()
        }
    }

    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}
