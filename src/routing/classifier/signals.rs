//! Cheap signals of a request's difficulty, each a number in `0..=1`, read in one pass
//! over the request.
//!
//! Text signals (code, math, reasoning, extraction, everyday tasks, language) come from
//! the user turns: cue words from [`super::lexicon`] matched with one Aho-Corasick
//! automaton, plus structure that cue words miss (code-like lines and syntax, equations,
//! how many numbers a word problem carries). Shape signals come from the request itself:
//! prompt size, system prompt size, conversation depth, tools, JSON output and
//! `max_tokens`.

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use crate::api::{ChatRequest, Content, Message, Role, ToolChoice};

/// The cue families, in the order of [`Signals::FAMILIES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Code = 0,
    Math = 1,
    Reasoning = 2,
    Extraction = 3,
    Simple = 4,
}

const FAMILY_COUNT: usize = 5;

/// Cue words compiled into one automaton.
#[derive(Debug, Clone)]
pub struct Lexicon {
    automaton: AhoCorasick,
    /// Per pattern: its family and whether it is a prefix (`word*`).
    patterns: Vec<(Family, bool)>,
}

impl Lexicon {
    /// Builds the automaton from `(family, cues)` lists; cues are lowercased.
    pub fn new<'a>(
        lists: impl IntoIterator<Item = (Family, &'a [String])>,
    ) -> Result<Self, String> {
        let mut texts = Vec::new();
        let mut patterns = Vec::new();
        for (family, cues) in lists {
            for cue in cues {
                let cue = cue.trim().to_lowercase();
                let (text, prefix) = match cue.strip_suffix('*') {
                    Some(t) => (t.to_string(), true),
                    None => (cue, false),
                };
                if text.is_empty() {
                    continue;
                }
                texts.push(text);
                patterns.push((family, prefix));
            }
        }
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&texts)
            .map_err(|e| format!("cannot compile the classifier's keywords: {e}"))?;
        Ok(Lexicon {
            automaton,
            patterns,
        })
    }

    /// Distinct cues matched per family in `text` (ASCII letters in any case; other
    /// letters must be lowercase, as the cues are).
    fn count(&self, text: &str) -> [u32; FAMILY_COUNT] {
        let bytes = text.as_bytes();
        let mut seen = vec![false; self.patterns.len()];
        let mut counts = [0u32; FAMILY_COUNT];
        for m in self.automaton.find_iter(text) {
            let id = m.pattern().as_usize();
            let (family, prefix) = self.patterns[id];
            if seen[id] {
                continue;
            }
            let starts_word = m.start() == 0 || !is_word_byte(bytes[m.start() - 1]);
            let ends_word = prefix || m.end() == bytes.len() || !is_word_byte(bytes[m.end()]);
            if starts_word && ends_word {
                seen[id] = true;
                counts[family as usize] += 1;
            }
        }
        counts
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Declares the signal set once: the [`Signals`] struct, the names in order, and the
/// `values()` of both [`Signals`] and [`super::Weights`] (which has a field per signal).
macro_rules! signal_set {
    ($($name:ident),+ $(,)?) => {
        /// Every signal of one request, each in `0..=1`.
        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        pub struct Signals {
            $(pub $name: f64,)+
        }

        /// How many signals there are.
        pub const SIGNAL_COUNT: usize = [$(stringify!($name)),+].len();

        impl Signals {
            /// Signal names as they appear in `[classifier.weights]` and in reasons.
            pub const NAMES: [&'static str; SIGNAL_COUNT] = [$(stringify!($name)),+];

            /// The values in the order of [`Signals::NAMES`].
            pub fn values(&self) -> [f64; SIGNAL_COUNT] {
                [$(self.$name),+]
            }
        }

        impl super::Weights {
            /// The weights in the order of [`Signals::NAMES`].
            pub fn values(&self) -> [f64; SIGNAL_COUNT] {
                [$(self.$name),+]
            }
        }
    };
}

signal_set!(
    code,
    math,
    reasoning,
    extraction,
    simple,
    tools,
    json,
    length,
    system,
    depth,
    short_output,
    long_output,
    non_english,
);

impl Signals {
    /// Reads the signals of `req`, whose prompt is `prompt_tokens` long.
    pub fn read(lexicon: &Lexicon, req: &ChatRequest, prompt_tokens: u64) -> Signals {
        let mut user = String::new();
        let mut system_chars = 0usize;
        let mut user_turns = 0u32;
        for m in &req.messages {
            match m.role {
                Role::User => {
                    user_turns += 1;
                    push_text(&mut user, m);
                }
                Role::System | Role::Developer => {
                    system_chars += text_len(m);
                }
                _ => {}
            }
        }
        let cues = if user.is_ascii() {
            lexicon.count(&user)
        } else {
            lexicon.count(&user.to_lowercase())
        };
        let text = scan_text(&user);

        let cue = |f: Family, per: f64| (f64::from(cues[f as usize]) * per).min(1.0);
        let code_structure = if text.fence {
            1.0
        } else {
            (f64::from(text.code_lines) / 3.0 + f64::from(text.code_syntax) / 4.0).min(1.0)
        };
        let math_terms = cue(Family::Math, 0.5);
        let numbers = (f64::from(text.numbers.saturating_sub(1)) / 4.0).min(1.0);
        let math = (math_terms
            + if text.equation { 1.0 } else { 0.0 }
            + if math_terms > 0.0 { 0.5 * numbers } else { 0.0 })
        .min(1.0);

        let tools = match (&req.tools, &req.tool_choice) {
            (Some(t), Some(ToolChoice::Mode(m))) if !t.is_empty() && m == "required" => 1.0,
            (Some(t), Some(ToolChoice::Named(_))) if !t.is_empty() => 1.0,
            (Some(t), _) if !t.is_empty() => 0.5,
            _ => 0.0,
        };
        let json = match req
            .response_format
            .as_ref()
            .and_then(|f| f.get("type"))
            .and_then(|t| t.as_str())
        {
            Some("json_schema") => 1.0,
            Some("json_object") => 0.5,
            _ => 0.0,
        };
        let max_tokens = req.max_completion_tokens.or(req.max_tokens);
        Signals {
            code: (code_structure + cue(Family::Code, 0.5)).min(1.0),
            // Everyday-task words inside pasted code or docstrings ("return a sorted
            // list") do not make the task an everyday one.
            simple: cue(Family::Simple, 0.5) * (1.0 - code_structure),
            math,
            reasoning: cue(Family::Reasoning, 0.5),
            extraction: cue(Family::Extraction, 0.5),
            tools,
            json,
            length: ramp_log(prompt_tokens as f64, 150.0, 8000.0),
            system: (system_chars as f64 / 8000.0).min(1.0),
            depth: (f64::from(user_turns.saturating_sub(1)) / 4.0).min(1.0),
            short_output: match max_tokens {
                Some(m) if m <= 100 => 1.0,
                _ => 0.0,
            },
            long_output: max_tokens
                .map_or(0.0, |m| ((f64::from(m) - 1000.0) / 3000.0).clamp(0.0, 1.0)),
            non_english: if text.letters == 0 {
                0.0
            } else {
                (2.0 * text.non_ascii_letters as f64 / text.letters as f64).min(1.0)
            },
        }
    }
}

/// 0 at or below `lo`, 1 at or above `hi`, logarithmic in between.
fn ramp_log(x: f64, lo: f64, hi: f64) -> f64 {
    if x <= lo {
        0.0
    } else {
        ((x / lo).ln() / (hi / lo).ln()).min(1.0)
    }
}

fn push_text(out: &mut String, m: &Message) {
    match &m.content {
        Some(Content::Text(t)) => {
            out.push_str(t);
            out.push('\n');
        }
        Some(Content::Parts(parts)) => {
            for t in parts.iter().filter_map(|p| p.text.as_deref()) {
                out.push_str(t);
                out.push('\n');
            }
        }
        None => {}
    }
}

fn text_len(m: &Message) -> usize {
    match &m.content {
        Some(Content::Text(t)) => t.len(),
        Some(Content::Parts(parts)) => parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .map(str::len)
            .sum(),
        None => 0,
    }
}

/// Structure found in the user text by one pass over its lines and bytes.
#[derive(Debug, Default)]
struct TextScan {
    fence: bool,
    code_lines: u32,
    code_syntax: u32,
    equation: bool,
    numbers: u32,
    letters: u64,
    non_ascii_letters: u64,
}

const CODE_LINE_STARTS: &[&str] = &[
    "def ", "class ", "import ", "from ", "#include", "fn ", "let ", "const ", "var ", "public ",
    "private ", "return ", "for (", "if (", "while (", "#!/", "print(", "console.", "select ",
    "func ", "package ", "using ", "struct ", "impl ", "}", ">>>", "\"\"\"", "'''",
];

const CODE_SYNTAX: &[&str] = &[
    "();", "()", "){", ") {", "->", "=>", "::", "!=", "==", "+=", "[]", "</", "/>", "$(", "&&",
    "||",
];

/// How many distinct [`CODE_SYNTAX`] marks occur in `text` (one pass; a mark inside a
/// longer one, `()` in `();`, is not counted again).
fn code_syntax(text: &str) -> u32 {
    static MARKS: OnceLock<AhoCorasick> = OnceLock::new();
    let marks = MARKS.get_or_init(|| {
        AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(CODE_SYNTAX)
            .expect("fixed patterns compile")
    });
    let mut seen = [false; CODE_SYNTAX.len()];
    for m in marks.find_iter(text) {
        seen[m.pattern().as_usize()] = true;
    }
    seen.iter().filter(|s| **s).count() as u32
}

fn scan_text(text: &str) -> TextScan {
    let mut s = TextScan {
        fence: memchr::memmem::find(text.as_bytes(), b"```").is_some(),
        ..TextScan::default()
    };
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if t.ends_with(';')
            || t.ends_with('{')
            || CODE_LINE_STARTS.iter().any(|p| {
                t.len() >= p.len() && t.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            })
        {
            s.code_lines += 1;
        }
    }
    s.code_syntax = code_syntax(text) + u32::from(has_method_call(text.as_bytes()));

    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_digit() {
            s.numbers += 1;
            while i < bytes.len()
                && (bytes[i].is_ascii_digit()
                    || ((bytes[i] == b'.' || bytes[i] == b',')
                        && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            continue;
        }
        if !s.equation && OPERATOR[usize::from(b)] && operands_around(bytes, i) {
            s.equation = true;
        }
        i += 1;
    }
    if text.is_ascii() {
        s.letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count() as u64;
    } else {
        for c in text.chars().filter(|c| c.is_alphabetic()) {
            s.letters += 1;
            if !c.is_ascii() {
                s.non_ascii_letters += 1;
            }
        }
    }
    let latex = memchr::memchr(b'\\', bytes).is_some()
        && (memchr::memmem::find(bytes, b"\\frac").is_some()
            || memchr::memmem::find(bytes, b"\\sqrt").is_some());
    if latex || (!text.is_ascii() && (text.contains('∫') || text.contains('√'))) {
        s.equation = true;
    }
    s
}

/// `name.name(`: a method or module call, as in pasted code (`df.plot(`, `os.path.join(`).
fn has_method_call(bytes: &[u8]) -> bool {
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    memchr::memchr_iter(b'.', bytes).any(|i| {
        if i == 0 || !ident(bytes[i - 1]) {
            return false;
        }
        let rest = &bytes[i + 1..];
        let n = rest.iter().take_while(|c| ident(**c)).count();
        n > 0 && rest.get(n) == Some(&b'(') && !rest[0].is_ascii_digit()
    })
}

/// `^ = + * / -`, as a table: the scan looks at every byte.
static OPERATOR: [bool; 256] = {
    let mut t = [false; 256];
    let ops = *b"^=+*/-";
    let mut i = 0;
    while i < ops.len() {
        t[ops[i] as usize] = true;
        i += 1;
    }
    t
};

/// An operator between a number or single-letter variable and a number, variable or `(`:
/// `x^2`, `3 + 4`, `2x = 8`. A bare `-` counts only with spaces around it (so dates and
/// ranges such as `2020-2021` do not); `^` needs nothing but an operand before it.
fn operands_around(bytes: &[u8], i: usize) -> bool {
    let op = bytes[i];
    let mut l = i;
    while l > 0 && bytes[l - 1] == b' ' {
        l -= 1;
    }
    let mut r = i + 1;
    while r < bytes.len() && bytes[r] == b' ' {
        r += 1;
    }
    let spaced = l < i && r > i + 1;
    if op == b'-' && !spaced {
        return false;
    }
    let left = l > 0 && operand_end(bytes, l - 1);
    let right =
        r < bytes.len() && (bytes[r].is_ascii_digit() || bytes[r] == b'(' || lone_letter(bytes, r));
    if op == b'^' {
        return left && r < bytes.len() && bytes[r].is_ascii_alphanumeric();
    }
    let digit =
        (l > 0 && bytes[l - 1].is_ascii_digit()) || (r < bytes.len() && bytes[r].is_ascii_digit());
    left && right && digit
}

/// A digit, or a letter that stands alone or follows a digit (`x`, `4x`).
fn operand_end(bytes: &[u8], j: usize) -> bool {
    let b = bytes[j];
    if b.is_ascii_digit() || b == b')' {
        return true;
    }
    b.is_ascii_alphabetic() && (j == 0 || !bytes[j - 1].is_ascii_alphabetic())
}

/// A letter not followed by another letter (a variable, not a word).
fn lone_letter(bytes: &[u8], j: usize) -> bool {
    bytes[j].is_ascii_alphabetic() && bytes.get(j + 1).is_none_or(|b| !b.is_ascii_alphabetic())
}
