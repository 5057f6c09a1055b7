//! Size limits on a chat request that the JSON parser does not enforce by itself: nesting
//! depth (checked on the raw bytes before parsing, so a deeply nested body costs one linear
//! scan and no recursion), the number of `messages` and `n`.

/// Limits a request body must respect (from `[server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_json_depth: usize,
    pub max_messages: usize,
    pub max_n: u32,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_json_depth: 64,
            max_messages: 2048,
            max_n: 8,
        }
    }
}

/// Where a JSON document first nests deeper than allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    /// The top-level field whose value nests too deeply (empty when the document itself is
    /// not an object).
    pub field: String,
}

/// Scans `body` and fails at the first array or object opened deeper than `max_depth`
/// (the top-level value is depth 1). Malformed JSON is not reported here: the parser
/// reports it with a better message.
pub fn check_depth(body: &[u8], max_depth: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // The last string seen directly inside the top-level object: its key, once a nested
    // value opens.
    let mut string_start = 0usize;
    let mut last_top_string: (usize, usize) = (0, 0);
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                if depth == 1 {
                    last_top_string = (string_start, i);
                }
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                string_start = i + 1;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    let (s, e) = last_top_string;
                    let field = if body.first_non_ws() == Some(b'{') {
                        String::from_utf8_lossy(&body[s..e]).into_owned()
                    } else {
                        String::new()
                    };
                    return Err(TooDeep { field });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

trait FirstNonWs {
    fn first_non_ws(&self) -> Option<u8>;
}

impl FirstNonWs for [u8] {
    fn first_non_ws(&self) -> Option<u8> {
        self.iter().copied().find(|b| !b.is_ascii_whitespace())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(field: &str, depth: usize) -> String {
        format!(
            r#"{{"model":"m","{field}":{}1{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    }

    #[test]
    fn names_the_top_level_field_that_nests_too_deeply() {
        assert_eq!(check_depth(nested("messages", 63).as_bytes(), 64), Ok(()));
        let e = check_depth(nested("messages", 64).as_bytes(), 64).unwrap_err();
        assert_eq!(e.field, "messages");
        let e = check_depth(nested("tools", 10_000).as_bytes(), 64).unwrap_err();
        assert_eq!(e.field, "tools");
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"{}\"{}"}}]}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert_eq!(check_depth(body.as_bytes(), 8), Ok(()));
    }

    #[test]
    fn a_nested_top_level_array_has_no_field() {
        let body = "[".repeat(100);
        assert_eq!(check_depth(body.as_bytes(), 64).unwrap_err().field, "");
    }
}
