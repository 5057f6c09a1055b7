//! Deterministic synthetic text: sentences of common English words from a seeded generator,
//! split into small stream pieces, and cut to a token budget with the tiktoken encodings.

use fastrand::Rng;
use tiktoken_rs::CoreBPE;

use crate::tokens::Encoding;

const WORDS: &[&str] = &[
    "the",
    "gateway",
    "routes",
    "each",
    "request",
    "to",
    "a",
    "model",
    "that",
    "fits",
    "its",
    "budget",
    "and",
    "latency",
    "target",
    "while",
    "streaming",
    "tokens",
    "back",
    "in",
    "small",
    "pieces",
    "so",
    "clients",
    "see",
    "progress",
    "early",
    "every",
    "answer",
    "carries",
    "usage",
    "for",
    "accounting",
    "of",
    "cost",
    "per",
    "service",
    "team",
    "when",
    "provider",
    "fails",
    "another",
    "one",
    "takes",
    "over",
    "without",
    "losing",
    "context",
    "this",
    "simulated",
    "reply",
    "is",
    "built",
    "from",
    "plain",
    "words",
    "with",
    "stable",
    "order",
    "same",
    "prompt",
    "gives",
    "text",
    "useful",
    "tests",
    "demo",
    "runs",
    "offline",
    "fast",
    "clear",
    "simple",
    "result",
    "value",
    "data",
    "system",
    "user",
    "message",
    "stream",
    "event",
    "chunk",
    "retry",
    "limit",
    "window",
    "cache",
    "price",
    "token",
    "count",
    "record",
    "trace",
    "metric",
    "health",
    "check",
    "route",
    "fallback",
    "region",
    "queue",
    "worker",
    "batch",
    "policy",
    "rule",
    "state",
    "quick",
    "steady",
    "careful",
    "honest",
    "bright",
    "quiet",
    "green",
    "north",
    "river",
    "stone",
    "light",
    "paper",
    "garden",
    "valley",
    "signal",
    "bridge",
    "harbor",
    "meadow",
    "summit",
];

/// Text of exactly `words` words, seeded by `seed`: sentences of 5 to 12 words, each
/// capitalised and ending with a period, with an occasional comma.
pub fn generate(seed: u64, words: usize) -> String {
    let mut rng = Rng::with_seed(seed);
    let mut out = String::with_capacity(words * 7);
    let mut left_in_sentence = 0usize;
    for i in 0..words {
        let sentence_start = left_in_sentence == 0;
        if sentence_start {
            left_in_sentence = rng.usize(5..=12);
        }
        let word = WORDS[rng.usize(0..WORDS.len())];
        if i > 0 {
            out.push(' ');
        }
        if sentence_start {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            out.push_str(word);
        }
        left_in_sentence -= 1;
        if left_in_sentence == 0 || i + 1 == words {
            out.push('.');
            left_in_sentence = 0;
        } else if left_in_sentence > 2 && rng.u8(0..10) == 0 {
            out.push(',');
        }
    }
    out
}

/// Splits `text` into stream pieces of one or two words each (a word keeps its leading
/// space), chosen by `seed`. The pieces concatenate to `text`.
pub fn pieces(text: &str, seed: u64) -> Vec<String> {
    let mut rng = Rng::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut units: Vec<&str> = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' && i > start {
            units.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        units.push(&text[start..]);
    }
    let mut out = Vec::with_capacity(units.len());
    let mut i = 0;
    while i < units.len() {
        let take = if rng.u8(0..3) == 0 { 2 } else { 1 };
        let end = (i + take).min(units.len());
        out.push(units[i..end].concat());
        i = end;
    }
    out
}

/// Splits `s` into pieces of 1 to `max` characters (never inside a character), chosen by
/// `seed`: how tool-call arguments are streamed.
pub fn fragments(s: &str, max: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::with_seed(seed ^ 0x5851_f42d_4c95_7f2d);
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let n = rng.usize(1..=max.max(1));
        let end = (i + n).min(chars.len());
        out.push(chars[i..end].iter().collect());
        i = end;
    }
    out
}

fn bpe(enc: Encoding) -> &'static CoreBPE {
    match enc {
        Encoding::Cl100k => tiktoken_rs::cl100k_base_singleton(),
        Encoding::O200k => tiktoken_rs::o200k_base_singleton(),
    }
}

/// `text` cut to at most `cap` tokens, and whether it was cut.
pub fn truncate_to_tokens(enc: Encoding, text: &str, cap: u64) -> (String, bool) {
    let bpe = bpe(enc);
    let tokens = bpe.encode_ordinary(text);
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    if tokens.len() <= cap {
        return (text.to_string(), false);
    }
    match bpe.decode(&tokens[..cap]) {
        Ok(s) => (s, true),
        Err(_) => {
            // A cut inside a multi-byte character: fall back to whole words.
            let mut out = String::new();
            for word in text.split_inclusive(' ') {
                let candidate = format!("{out}{word}");
                if enc.count(&candidate) as usize > cap {
                    break;
                }
                out = candidate;
            }
            (out, true)
        }
    }
}

/// A stable 64-bit FNV-1a hash (the same on every platform and run).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_text_and_exact_word_count() {
        let a = generate(42, 30);
        assert_eq!(a, generate(42, 30));
        assert_ne!(a, generate(43, 30));
        assert_eq!(a.split(' ').count(), 30);
        assert!(a.ends_with('.'));
        assert!(a.chars().next().unwrap().is_uppercase());
        assert_eq!(generate(1, 0), "");
    }

    #[test]
    fn pieces_concatenate_to_the_text_and_hold_one_or_two_words() {
        let t = generate(7, 40);
        let p = pieces(&t, 7);
        assert_eq!(p.concat(), t);
        assert!(p.len() >= 20);
        assert!(p.iter().all(|s| s.trim().split(' ').count() <= 2));
    }

    #[test]
    fn fragments_respect_char_boundaries() {
        let s = "{\"city\":\"Zürich\"}";
        let f = fragments(s, 4, 3);
        assert_eq!(f.concat(), s);
        assert!(f.iter().all(|x| x.chars().count() <= 4));
    }

    #[test]
    fn truncation_caps_tokens() {
        let t = generate(5, 100);
        let (cut, was_cut) = truncate_to_tokens(Encoding::O200k, &t, 10);
        assert!(was_cut);
        assert!(t.starts_with(&cut));
        assert_eq!(Encoding::O200k.count(&cut), 10);
        let (same, was_cut) = truncate_to_tokens(Encoding::Cl100k, "hello world", 10);
        assert_eq!((same.as_str(), was_cut), ("hello world", false));
    }
}
