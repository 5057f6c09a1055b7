//! A fast exact `cl100k_base` token counter for ASCII text.
//!
//! tiktoken splits text into pieces with a regular expression before byte-pair merging
//! each piece; the expression's look-ahead (`\s+(?!\S)`) runs on a backtracking engine and
//! dominates the cost. For ASCII text the same split is a simple scan, written here rule by
//! rule after tiktoken-rs's `cl100k_base` pattern:
//!
//! ```text
//! '(?i:[sdmt]|ll|ve|re) | [^\r\n\p{L}\p{N}]?+\p{L}++ | \p{N}{1,3}+
//! | ?[^\s\p{L}\p{N}]++[\r\n]*+ | \s++$ | \s*[\r\n] | \s+(?!\S) | \s
//! ```
//!
//! Each piece is then looked up in the encoding's ranks (one hash lookup for the common
//! case of a whole-word token) or merged with tiktoken-rs's own byte-pair split, so counts
//! are identical to tiktoken's; the tests compare both on random text. Text with any
//! non-ASCII byte takes tiktoken's own path.

use std::sync::OnceLock;

use rustc_hash::FxHashMap;
use tiktoken_rs::Rank;

/// `cl100k_base`'s ordinary tokens: ranks `0..100256`.
const CL100K_ORDINARY: Rank = 100_256;

fn cl100k_ranks() -> &'static FxHashMap<Vec<u8>, Rank> {
    static RANKS: OnceLock<FxHashMap<Vec<u8>, Rank>> = OnceLock::new();
    RANKS.get_or_init(|| {
        let bpe = tiktoken_rs::cl100k_base_singleton();
        let mut map = FxHashMap::default();
        map.reserve(CL100K_ORDINARY as usize);
        for rank in 0..CL100K_ORDINARY {
            if let Ok(bytes) = bpe.decode_bytes(&[rank]) {
                map.insert(bytes, rank);
            }
        }
        map
    })
}

/// `cl100k_base` tokens in `text`, which must be ASCII.
pub fn count_cl100k(text: &str) -> u64 {
    debug_assert!(text.is_ascii());
    let ranks = cl100k_ranks();
    let mut n = 0u64;
    split(text.as_bytes(), |piece| {
        n += if ranks.contains_key(piece) {
            1
        } else {
            tiktoken_rs::byte_pair_split(piece, ranks).len() as u64
        };
    });
    n
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn is_newline(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

/// Neither whitespace, letter nor digit.
fn is_other(b: u8) -> bool {
    !is_space(b) && !b.is_ascii_alphanumeric()
}

fn run(b: &[u8], from: usize, f: impl Fn(u8) -> bool) -> usize {
    from + b[from..].iter().take_while(|c| f(**c)).count()
}

/// Length of a contraction suffix after an apostrophe at `b[0]`, if any.
fn contraction(b: &[u8]) -> Option<usize> {
    let lower = |i: usize| b.get(i).map(u8::to_ascii_lowercase);
    match (lower(1), lower(2)) {
        (Some(b'l'), Some(b'l')) | (Some(b'v' | b'r'), Some(b'e')) => Some(3),
        (Some(b's' | b'd' | b'm' | b't'), _) => Some(2),
        _ => None,
    }
}

/// Calls `emit` with each piece of ASCII `b`, in order.
pub(crate) fn split(b: &[u8], mut emit: impl FnMut(&[u8])) {
    let n = b.len();
    let mut i = 0;
    while i < n {
        let c = b[i];
        let end = if c == b'\'' && contraction(&b[i..]).is_some() {
            i + contraction(&b[i..]).unwrap_or(1)
        } else if c.is_ascii_alphabetic() {
            run(b, i, |x| x.is_ascii_alphabetic())
        } else if !is_newline(c)
            && !c.is_ascii_digit()
            && b.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
        {
            run(b, i + 1, |x| x.is_ascii_alphabetic())
        } else if c.is_ascii_digit() {
            run(b, i, |x| x.is_ascii_digit()).min(i + 3)
        } else if is_other(c) || (c == b' ' && b.get(i + 1).is_some_and(|x| is_other(*x))) {
            let start = if c == b' ' { i + 1 } else { i };
            run(b, run(b, start, is_other), is_newline)
        } else {
            // Whitespace.
            let e = run(b, i, is_space);
            if e == n {
                e
            } else if let Some(k) = b[i..e].iter().rposition(|x| is_newline(*x)) {
                i + k + 1
            } else if e - i > 1 {
                e - 1
            } else {
                e
            }
        };
        emit(&b[i..end]);
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiktoken(text: &str) -> u64 {
        tiktoken_rs::cl100k_base_singleton()
            .encode_ordinary(text)
            .len() as u64
    }

    fn pieces(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        split(text.as_bytes(), |p| {
            out.push(String::from_utf8_lossy(p).into_owned())
        });
        out
    }

    #[test]
    fn splits_like_the_cl100k_pattern() {
        assert_eq!(pieces("Hello world"), ["Hello", " world"]);
        assert_eq!(
            pieces("it's  2024!\n\n  ok"),
            ["it", "'s", " ", " ", "202", "4", "!\n\n", " ", " ok"]
        );
        assert_eq!(pieces("x   \n  y  "), ["x", "   \n", " ", " y", "  "]);
        assert_eq!(pieces("(foo) 12345"), ["(foo", ")", " ", "123", "45"]);
        assert_eq!(pieces("WE'LL 'Quote'"), ["WE", "'LL", " '", "Quote", "'"]);
    }

    #[test]
    fn counts_equal_tiktoken_on_code_prose_and_edge_cases() {
        let cases = [
            "",
            " ",
            "\n",
            "hello world",
            "def f(x):\n    return x ** 2  # square\n\n\n",
            "She said: 'I'll go; you'd stay.' They've left. WE'RE here! 'M",
            "a\t\tb \x0b c\x0cd\r\ne  \r\n  f",
            "1234567 + 89 = 1234656; 3.14159, 2,718",
            "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
            "    indented\n\tand tabbed\n   \n",
            "!!!???...,,,;;;:::---___+++===",
            "trailing spaces   ",
            "x'sy 'tz ''' \"\"\" ```rust\nfn main() {}\n```",
        ];
        for text in cases {
            assert_eq!(count_cl100k(text), tiktoken(text), "{text:?}");
        }
    }

    #[test]
    fn counts_equal_tiktoken_on_this_repository_s_sources() {
        for text in [
            include_str!("../../README.md"),
            include_str!("../../routes.toml"),
            include_str!("mod.rs"),
            include_str!("../proxy/chat.rs"),
        ] {
            let ascii: String = text.chars().filter(char::is_ascii).collect();
            assert_eq!(count_cl100k(&ascii), tiktoken(&ascii));
        }
    }

    #[test]
    fn counts_equal_tiktoken_on_random_ascii() {
        let alphabet: &[u8] = b"aZk9 0 \n\t\r'-_.,;:(){}[]\"\x0b\x0csdmtlvre  ";
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let len = rng.usize(0..60);
            let text: String = (0..len)
                .map(|_| alphabet[rng.usize(0..alphabet.len())] as char)
                .collect();
            assert_eq!(count_cl100k(&text), tiktoken(&text), "{text:?}");
        }
    }
}
