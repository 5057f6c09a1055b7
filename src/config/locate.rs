//! Maps a dotted config path (`models.gpt-4-turbo.provider`) to its line in the source, so
//! that every reported problem says where to look.

use toml_edit::{ImDocument, Item};

pub struct Locator {
    doc: Option<ImDocument<String>>,
    line_starts: Vec<usize>,
}

impl Locator {
    pub fn new(src: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Locator {
            doc: ImDocument::parse(src.to_string()).ok(),
            line_starts,
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of_offset(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// Line of the deepest existing item along `path`.
    pub fn line(&self, path: &[&str]) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item: &Item = doc.as_item();
        let mut best = None;
        for key in path {
            let table = item.as_table_like()?;
            let (k, next) = table.get_key_value(key)?;
            if let Some(span) = k.span().or_else(|| next.span()) {
                best = Some(self.line_of_offset(span.start));
            }
            item = next;
        }
        best
    }
}
