//! Formatting a log line's fields for a file: the same text as `tracing_subscriber`'s
//! default, with less work per field.
//!
//! The default field formatter writes every field through `write!` with the name and `=`
//! wrapped in ANSI styles, even when styles are off; for the access line's nineteen fields
//! that was most of the cost of logging a request. [`PlainFields`] writes strings, integers
//! and booleans directly (`name="text"`, `name=42`, `name=true`) and formats any other
//! value as `name={value:?}`, which is exactly what the default writes without colours.
//! Everything it does not handle the same way (the message, a string that `{:?}` would
//! escape, `r#` names, `log.` metadata, and any line with colours) goes to the default
//! visitor, so the output never differs from it.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// The field formatter for log lines without colours (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<'a> MakeVisitor<Writer<'a>> for PlainFields {
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> PlainVisitor<'a> {
        PlainVisitor {
            fast: !target.has_ansi_escapes(),
            writer: target,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// Writes one line's fields; see [`PlainFields`].
pub struct PlainVisitor<'a> {
    writer: Writer<'a>,
    /// No colours: the direct paths write what the default would.
    fast: bool,
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Whether `field` is written here rather than by the default visitor.
    fn direct(&self, field: &Field) -> bool {
        let name = field.name();
        self.fast && name != "message" && !name.starts_with("r#") && !name.starts_with("log.")
    }

    /// The separator and `name=`, as the default writes them without colours.
    fn start(&mut self, field: &Field) -> fmt::Result {
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.writer.write_char(' ')?;
        }
        self.writer.write_str(field.name())?;
        self.writer.write_char('=')
    }

    /// Hands one field to the default visitor, continuing the same line.
    fn by_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut v = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut v);
        self.result = v.finish();
        self.is_empty = false;
    }

    fn write_str_value(&mut self, field: &Field, value: &str) -> fmt::Result {
        self.start(field)?;
        self.writer.write_char('"')?;
        self.writer.write_str(value)?;
        self.writer.write_char('"')
    }

    fn write_int(&mut self, field: &Field, value: impl itoa::Integer) -> fmt::Result {
        self.start(field)?;
        self.writer.write_str(itoa::Buffer::new().format(value))
    }
}

/// Whether `{:?}` writes `s` unchanged between quotes: printable ASCII without `"` or `\`.
fn debug_is_verbatim(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

impl PlainVisitor<'_> {
    /// Writes `field` with `direct` when it is written here (and `plain` holds for its
    /// value), otherwise hands it to the default visitor with `default`.
    fn record_with(
        &mut self,
        field: &Field,
        plain: bool,
        direct: impl FnOnce(&mut Self) -> fmt::Result,
        default: impl FnOnce(&mut DefaultVisitor<'_>),
    ) {
        if self.result.is_err() {
            return;
        }
        if plain && self.direct(field) {
            self.result = direct(self);
        } else {
            self.by_default(default);
        }
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_with(
            field,
            debug_is_verbatim(value),
            |s| s.write_str_value(field, value),
            |v| v.record_str(field, value),
        );
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_with(
            field,
            true,
            |s| s.write_int(field, value),
            |v| v.record_u64(field, value),
        );
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_with(
            field,
            true,
            |s| s.write_int(field, value),
            |v| v.record_i64(field, value),
        );
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        let text = if value { "true" } else { "false" };
        self.record_with(
            field,
            true,
            |s| s.start(field).and_then(|_| s.writer.write_str(text)),
            |v| v.record_bool(field, value),
        );
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_with(field, false, |_| Ok(()), |v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_with(
            field,
            true,
            |s| s.start(field).and_then(|_| write!(s.writer, "{value:?}")),
            |v| v.record_debug(field, value),
        );
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Oops;
    impl fmt::Display for Oops {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("it broke")
        }
    }
    impl std::error::Error for Oops {}

    /// Emits events covering every kind of field value.
    fn emit() {
        let odd = "tab\there \"quoted\" back\\slash é \u{1b}[31m";
        tracing::info!(
            request_id = %"abc123",
            route = "/v1/chat/completions",
            empty = "",
            odd,
            status = 200u16,
            big = u64::MAX,
            negative = -42i64,
            flag = true,
            off = false,
            ratio = 0.25f64,
            maybe = ?Some(3),
            error = &Oops as &(dyn std::error::Error + 'static),
            r#type = "raw name",
            "Request finished."
        );
        tracing::warn!(odd, "message with {} and \"quotes\"", 7);
        tracing::info!("only a message");
        tracing::info!(a = 1u64, b = "x");
    }

    fn render(plain: bool, ansi: bool) -> String {
        let out = Capture::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(ansi)
            .without_time();
        if plain {
            tracing::subscriber::with_default(builder.fmt_fields(PlainFields).finish(), emit);
        } else {
            tracing::subscriber::with_default(builder.finish(), emit);
        }
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn lines_are_identical_to_the_default_formatter_without_colours() {
        let ours = render(true, false);
        assert_eq!(ours, render(false, false));
        assert!(
            ours.contains("route=\"/v1/chat/completions\" empty=\"\""),
            "{ours}"
        );
        assert!(
            ours.contains("big=18446744073709551615 negative=-42 flag=true"),
            "{ours}"
        );
        assert_eq!(ours.lines().count(), 4, "{ours}");
    }

    #[test]
    fn lines_with_colours_are_left_to_the_default_formatter() {
        assert_eq!(render(true, true), render(false, true));
    }

    #[test]
    fn only_printable_ascii_without_quote_or_backslash_is_verbatim() {
        assert!(debug_is_verbatim("gpt-4o-mini/2024 ok: ~{}[]"));
        assert!(debug_is_verbatim(""));
        for s in ["a\"b", "a\\b", "tab\t", "\u{7f}", "\n"] {
            assert!(!debug_is_verbatim(s), "{s:?}");
            assert_ne!(format!("{s:?}"), format!("\"{s}\""), "{s:?}");
        }
        // Left to the default formatter although `{:?}` would not escape it.
        assert!(!debug_is_verbatim("é"));
    }
}
