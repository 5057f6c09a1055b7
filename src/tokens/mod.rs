//! Token counting with tiktoken-rs, for estimates when a provider reports no usage and for
//! the simulated providers.
//!
//! Encodings follow OpenAI's table: `o200k_base` for gpt-4o, gpt-4.1, o-series and gpt-5;
//! `cl100k_base` for everything else (gpt-4, gpt-4-turbo, gpt-3.5 and, as an approximation,
//! non-OpenAI models, whose tokenizers are not public). The BPE tables load once per process.

mod ascii;

use tiktoken_rs::CoreBPE;

use crate::api::{ChatRequest, Content};

/// The tokenizer family to count with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Cl100k,
    O200k,
}

impl Encoding {
    /// The encoding for an upstream model id.
    pub fn for_model(model: &str) -> Self {
        let m = model.rsplit('/').next().unwrap_or(model);
        let o200k = [
            "gpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "o1",
            "o3",
            "o4",
            "chatgpt-4o",
        ];
        if o200k.iter().any(|p| m.starts_with(p)) {
            Encoding::O200k
        } else {
            Encoding::Cl100k
        }
    }

    fn bpe(self) -> &'static CoreBPE {
        match self {
            Encoding::Cl100k => tiktoken_rs::cl100k_base_singleton(),
            Encoding::O200k => tiktoken_rs::o200k_base_singleton(),
        }
    }

    /// Tokens in `text`. ASCII text in `cl100k_base` takes the fast exact path of
    /// [`ascii`]; everything else tiktoken's own.
    pub fn count(self, text: &str) -> u64 {
        if self == Encoding::Cl100k && text.is_ascii() {
            return ascii::count_cl100k(text);
        }
        self.bpe().encode_ordinary(text).len() as u64
    }
}

/// Prompt tokens of a chat request, following OpenAI's cookbook rule: 3 tokens per message,
/// 1 per `name`, 3 to prime the reply, plus the encoded role, text, tool-call names and
/// arguments, and the tool definitions (as JSON text: an approximation of OpenAI's
/// internal rendering).
pub fn count_prompt(enc: Encoding, req: &ChatRequest) -> u64 {
    let mut n = 3u64;
    for m in &req.messages {
        n += 3 + enc.count(m.role.as_str());
        match &m.content {
            Some(Content::Text(t)) => n += enc.count(t),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    if let Some(t) = &p.text {
                        n += enc.count(t);
                    } else if p.image_url.is_some() {
                        // OpenAI's low-detail image cost; high detail depends on the size.
                        n += 85;
                    }
                }
            }
            None => {}
        }
        if let Some(name) = &m.name {
            n += 1 + enc.count(name);
        }
        for tc in m.tool_calls.iter().flatten() {
            n += 1 + enc.count(&tc.function.name) + enc.count(&tc.function.arguments);
        }
    }
    if let Some(tools) = &req.tools {
        for t in tools {
            n += 10 + enc.count(&t.function.name);
            if let Some(d) = &t.function.description {
                n += enc.count(d);
            }
            if let Some(p) = &t.function.parameters {
                n += enc.count(&p.to_string());
            }
        }
        n += 12;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_o200k_for_gpt4o_and_cl100k_for_gpt4_turbo() {
        assert_eq!(Encoding::for_model("gpt-4o-2024-08-06"), Encoding::O200k);
        assert_eq!(Encoding::for_model("gpt-4-turbo"), Encoding::Cl100k);
        assert_eq!(Encoding::for_model("claude-sonnet-4-5"), Encoding::Cl100k);
    }

    #[test]
    fn counts_known_text() {
        // "hello world" is two tokens in both encodings.
        assert_eq!(Encoding::Cl100k.count("hello world"), 2);
        assert_eq!(Encoding::O200k.count("hello world"), 2);
    }

    #[test]
    fn prompt_count_matches_cookbook_rule_for_plain_text() {
        let req: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "gpt-4-turbo",
            "messages": [{"role": "user", "content": "hello world"}]
        }))
        .unwrap();
        // 3 (priming) + 3 (message) + 1 ("user") + 2 ("hello world")
        assert_eq!(count_prompt(Encoding::Cl100k, &req), 9);
    }
}
