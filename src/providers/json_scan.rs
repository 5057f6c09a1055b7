//! A one-pass JSON reader for the few fields an adapter reads from a provider's answer.
//!
//! Relaying a stream means reading every chunk for its usage, finish reason and text, while
//! the chunk itself is forwarded as received. `serde_json` reads about twenty instructions
//! per byte however little is kept; [`Scan`] walks the text once, hands each object's keys
//! to the caller, and skips every value the caller does not want while still checking it.
//!
//! It is deliberately stricter than JSON and never looser than `serde_json`: it gives up
//! (returns `None`) on anything it does not read in the plain way, and the caller then reads
//! the document with `serde_json` as before. So a document `Scan` accepts is one `serde_json`
//! accepts too. Given up on: keys with escapes, `\u` escapes of surrogates, numbers with an
//! exponent or more than [`MAX_NUMBER_LEN`] characters, nesting deeper than [`MAX_DEPTH`]. A
//! string with escapes that the caller wants is decoded by `serde_json`.

use std::borrow::Cow;

/// Deepest nesting read; deeper documents are left to `serde_json` (which stops at 128).
pub(crate) const MAX_DEPTH: u32 = 64;
/// Longest number read; longer ones (which `serde_json` may find out of range) are left to it.
pub(crate) const MAX_NUMBER_LEN: usize = 40;

/// A cursor over one JSON document.
pub(crate) struct Scan<'a> {
    text: &'a str,
    i: usize,
    depth: u32,
}

impl<'a> Scan<'a> {
    pub fn new(text: &'a str) -> Self {
        Scan {
            text,
            i: 0,
            depth: 0,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn ws(&mut self) {
        let b = self.bytes();
        // Compact JSON: usually no whitespace at all.
        if b.get(self.i).is_some_and(|&c| c > b' ') {
            return;
        }
        while let Some(&c) = b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.i + word.len();
        (self.bytes().get(self.i..end)? == word.as_bytes()).then(|| self.i = end)
    }

    /// The whole document has been read: only whitespace is left.
    pub fn end(mut self) -> Option<()> {
        self.ws();
        (self.i == self.text.len()).then_some(())
    }

    /// Reads a `null` if one is next: `Some(true)`; `Some(false)` if something else is.
    pub fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        self.literal("null").map(|_| true)
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// Reads an object, calling `field` with each key; `field` must read or skip the value.
    pub fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        self.sequence(b'{', b'}', |s| {
            let key = s.key()?;
            s.eat(b':')?;
            field(s, key)
        })
    }

    /// Reads an array, calling `item` for each element; `item` must read or skip it.
    pub fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.sequence(b'[', b']', item)
    }

    /// Reads `open`, comma-separated entries (each read by `entry`) and `close`.
    fn sequence(
        &mut self,
        open: u8,
        close: u8,
        mut entry: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        self.enter()?;
        if self.peek()? == close {
            self.i += 1;
        } else {
            loop {
                entry(self)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    c if c == close => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// A key without escapes.
    fn key(&mut self) -> Option<&'a str> {
        match self.string()? {
            Cow::Borrowed(k) => Some(k),
            Cow::Owned(_) => None,
        }
    }

    /// Reads a string: borrowed when it has no escapes, decoded by `serde_json` otherwise.
    pub fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.i;
        if self.plain_run()? == b'"' {
            let s = &self.text[start..self.i];
            self.i += 1;
            return Some(Cow::Borrowed(s));
        }
        self.string_tail()?;
        let quoted = &self.text[start - 1..self.i];
        serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
    }

    /// Moves over string bytes up to the next `"` or `\\` and returns that byte; `None` at
    /// the end of input or at a control character (not allowed in a JSON string).
    fn plain_run(&mut self) -> Option<u8> {
        let b = self.bytes();
        let mut i = self.i;
        // Eight bytes at a time while none of them is `"`, `\\` or below 0x20.
        const ONES: u64 = u64::from_le_bytes([1; 8]);
        const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
        let has_byte = |w: u64, c: u8| {
            let x = w ^ (ONES * u64::from(c));
            x.wrapping_sub(ONES) & !x
        };
        while let Some(chunk) = b.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().ok()?);
            let below_space = w.wrapping_sub(ONES * 0x20) & !w;
            let found = (has_byte(w, b'"') | has_byte(w, b'\\') | below_space) & HIGH;
            if found != 0 {
                // The lowest flagged byte is a real match (a borrow only spreads upwards).
                i += (found.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        while let Some(&c) = b.get(i) {
            match c {
                b'"' | b'\\' => {
                    self.i = i;
                    return Some(c);
                }
                0..=0x1f => return None,
                _ => i += 1,
            }
        }
        None
    }

    /// Reads the rest of a string, up to and including its closing quote.
    fn string_tail(&mut self) -> Option<()> {
        let b = self.bytes();
        loop {
            match self.plain_run()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                _ => {
                    self.i += 1;
                    match *b.get(self.i)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = std::str::from_utf8(b.get(self.i + 1..self.i + 5)?).ok()?;
                            if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                                return None;
                            }
                            let unit = u16::from_str_radix(hex, 16).ok()?;
                            if (0xD800..0xE000).contains(&unit) {
                                return None; // surrogates: left to serde_json
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
            }
        }
    }

    /// Reads a non-negative integer that fits a `u64` (no fraction, no exponent).
    pub fn u64(&mut self) -> Option<u64> {
        self.ws();
        let b = self.bytes();
        let start = self.i;
        while b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let digits = &self.text[start..self.i];
        if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
            return None;
        }
        if matches!(b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        digits.parse().ok()
    }

    /// Checks a number against JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        let b = self.bytes();
        let start = self.i;
        if b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match *b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                while b.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
            }
            _ => return None,
        }
        if b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let frac = self.i;
            while b.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            if self.i == frac {
                return None;
            }
        }
        if matches!(b.get(self.i), Some(b'e' | b'E')) || self.i - start > MAX_NUMBER_LEN {
            return None;
        }
        Some(())
    }

    /// Reads any value without keeping it.
    pub fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(|s, _| s.skip()),
            b'[' => self.array(Self::skip),
            b'"' => {
                self.i += 1;
                self.string_tail()
            }
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => self.number(),
        }
    }

    /// Reads the value of a key that may appear only once in its object (`seen` keeps a bit
    /// per key): `None` the second time, as a derived struct would refuse a duplicate.
    pub fn once<T>(
        &mut self,
        seen: &mut u32,
        bit: u32,
        read: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<T> {
        first_time(seen, bit)?;
        read(self)
    }

    /// Reads `null` as `None`, anything else with `read`.
    pub fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null()? {
            Some(None)
        } else {
            read(self).map(Some)
        }
    }
}

/// Records that a known key was seen; `None` the second time (a duplicated key is left to
/// `serde_json`, as a derived struct would refuse it).
fn first_time(seen: &mut u32, bit: u32) -> Option<()> {
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Whether `Scan` reads `text` as one whole document.
    fn accepts(text: &str) -> bool {
        let mut s = Scan::new(text);
        s.skip().is_some() && s.end().is_some()
    }

    fn serde_accepts(text: &str) -> bool {
        serde_json::from_str::<Value>(text).is_ok()
    }

    #[test]
    fn plain_documents_are_read() {
        for text in [
            r#"{}"#,
            r#"[]"#,
            r#" { "a" : [ 1 , -2.5 , 0 , true , false , null , "x" , { } , [ ] ] } "#,
            r#"{"s":"caf\u00e9 \"q\" \\ \/ \b\f\n\r\t","n":-0.001,"big":12345678901234567890}"#,
            "\"é and 字\"",
            "0",
            "-0",
        ] {
            assert!(accepts(text), "{text}");
            assert!(serde_accepts(text), "{text}");
        }
    }

    #[test]
    fn what_it_gives_up_on_is_left_to_serde_json() {
        // Valid JSON that Scan leaves to serde_json.
        for text in [
            r#"{"\u0061":1}"#,
            r#""\ud83d\ude00""#,
            "1e5",
            "1E-2",
            &"9".repeat(41),
            &format!("{}{}", "[".repeat(65), "]".repeat(65)),
        ] {
            assert!(!accepts(text), "{text}");
            assert!(serde_accepts(text), "{text}");
        }
    }

    #[test]
    fn invalid_documents_are_refused() {
        for text in [
            "",
            " ",
            "{",
            "}",
            "[1,]",
            "[,1]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{a:1}",
            "01",
            "-",
            "1.",
            ".5",
            "+1",
            "--1",
            "tru",
            "nul",
            "True",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12g4\"",
            "\"a\nb\"",
            "\"tab\there\"",
            "[1 2]",
            "{} {}",
            "[]]",
            "{\"a\":1 \"b\":2}",
            "'a'",
            "NaN",
            "Infinity",
            "[1,2",
            "{\"a\":[}]",
        ] {
            assert!(!accepts(text), "{text:?}");
            assert!(!serde_accepts(text), "{text:?}");
        }
    }

    /// Random edits of real documents: whatever Scan accepts, serde_json accepts too.
    #[test]
    fn never_accepts_what_serde_json_refuses() {
        let seeds = [
            r#"{"id":"c-1","object":"chat.completion.chunk","created":1795316802,"choices":[{"index":0,"delta":{"content":" in\"x\"\\"},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":0}},"n":-1.25}"#,
            r#"[{"a":[1,2,{"b":null}],"c":"\u00e9\n"},true,false,"",0.5]"#,
        ];
        let alphabet = b"{}[]\",:\\0123456789-.eEtrufalsn u\t\n";
        let mut rng = fastrand::Rng::with_seed(0x5ca9);
        let mut accepted = 0;
        for _ in 0..40_000 {
            let mut doc = seeds[rng.usize(..seeds.len())].as_bytes().to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..doc.len());
                match rng.u8(..3) {
                    0 => {
                        doc.remove(at);
                    }
                    1 => doc.insert(at, alphabet[rng.usize(..alphabet.len())]),
                    _ => doc[at] = alphabet[rng.usize(..alphabet.len())],
                }
                if doc.is_empty() {
                    break;
                }
            }
            let Ok(text) = String::from_utf8(doc) else {
                continue;
            };
            if accepts(&text) {
                accepted += 1;
                assert!(serde_accepts(&text), "accepted invalid JSON: {text}");
            }
        }
        // Enough edits leave a valid document for the check to mean something.
        assert!(
            accepted > 2_000,
            "only {accepted} edited documents were valid"
        );
    }

    /// The word-at-a-time search stops where a byte-by-byte one does.
    #[test]
    fn string_runs_end_where_a_bytewise_search_ends() {
        let pieces = [
            "a", "Z", " ", "\"", "\\", "\n", "\u{1f}", "é", "字", "\u{7f}", "~",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let text: String = (0..rng.usize(0..40))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            let start = rng.usize(..=text.len());
            let expected = text.as_bytes()[start..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .and_then(|n| {
                    let c = text.as_bytes()[start + n];
                    (c >= 0x20).then_some((start + n, c))
                });
            let mut s = Scan::new(&text);
            s.i = start;
            let got = s.plain_run().map(|c| (s.i, c));
            assert_eq!(got, expected, "{text:?} from {start}");
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let mut s = Scan::new(r#"["plain", "esc\"aped\u00e9"]"#);
        let mut got = Vec::new();
        s.array(|s| {
            got.push(s.string()?);
            Some(())
        })
        .unwrap();
        assert!(matches!(got[0], Cow::Borrowed("plain")));
        assert!(matches!(&got[1], Cow::Owned(o) if o == "esc\"apedé"));
    }

    #[test]
    fn integers_are_read_only_when_they_fit_a_u64_exactly() {
        let read = |t: &str| {
            let mut s = Scan::new(t);
            s.u64().filter(|_| s.end().is_some())
        };
        assert_eq!(read("0"), Some(0));
        assert_eq!(read(" 42 "), Some(42));
        assert_eq!(read("18446744073709551615"), Some(u64::MAX));
        for t in ["18446744073709551616", "-1", "1.0", "1e2", "01", "", "x"] {
            assert_eq!(read(t), None, "{t}");
        }
    }

    #[test]
    fn a_key_seen_twice_is_refused() {
        let mut seen = 0;
        assert!(first_time(&mut seen, 1).is_some());
        assert!(first_time(&mut seen, 2).is_some());
        assert!(first_time(&mut seen, 1).is_none());
    }
}
