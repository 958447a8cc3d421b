//! Recipe errors, and the helpers that turn byte spans into `file:line:col`.

use std::io;
use std::ops::Range;

/// Why a recipe could not be loaded.
///
/// Every variant names the file it is about; [`RecipeError::Invalid`] also
/// names the line and column, so editors can jump to it.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// A recipe file could not be read.
    #[error("{file}: cannot read recipe: {error}")]
    Io {
        /// The file, as displayed (relative to the workspace when inside it).
        file: String,
        /// The underlying error.
        error: io::Error,
    },
    /// A recipe name given on the command line has no file.
    #[error("no recipe `{spec}`: {file} does not exist")]
    NotFound {
        /// What was asked for.
        spec: String,
        /// Where it was looked for.
        file: String,
    },
    /// The recipe text is invalid at a known place.
    #[error("{file}:{line}:{column}: {message}{}", fmt_hint(.hint))]
    Invalid {
        /// The file, as displayed (relative to the workspace when inside it).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong.
        message: String,
        /// How to fix it, when we can tell (`did you mean `packages`?`).
        hint: Option<String>,
    },
}

fn fmt_hint(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("; {h}"),
        None => String::new(),
    }
}

/// 1-based (line, column) of byte `offset` in `text`; the column counts
/// characters, not bytes, because that is what editors show.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// A source file being parsed: its display name and text, to build errors.
pub(crate) struct SourceText<'a> {
    /// Display name (`recipes/x.toml`).
    pub file: &'a str,
    /// Full text.
    pub text: &'a str,
}

impl SourceText<'_> {
    /// An [`RecipeError::Invalid`] at the start of `span`.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> RecipeError {
        self.error_hint(span, message, None)
    }

    /// An [`RecipeError::Invalid`] at the start of `span`, with a hint.
    pub fn error_hint(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> RecipeError {
        let (line, column) = line_col(self.text, span.start);
        RecipeError::Invalid {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
            hint,
        }
    }

    /// `file:line` of byte `offset` (used for [`super::Requirement::origin`]).
    pub fn origin(&self, offset: usize) -> String {
        format!("{}:{}", self.file, line_col(self.text, offset).0)
    }

    /// Converts a TOML deserialization error, rewording serde's messages in
    /// recipe terms and suggesting the closest key for typos.
    pub fn toml_error(&self, e: &toml::de::Error) -> RecipeError {
        let span = e.span().unwrap_or(0..0);
        let msg = e.message().trim();
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let hint = closest(key, &backticked(expected)).map(|k| format!("did you mean `{k}`?"));
            return self.error_hint(span, format!("unknown key `{key}`"), hint);
        }
        if let Some(rest) = msg.strip_prefix("missing field `") {
            let key = rest.split('`').next().unwrap_or(rest);
            return self.error(span, format!("missing required key `{key}`"));
        }
        self.error(span, msg.to_string())
    }
}

/// The `` `quoted` `` words of a serde "expected one of" list.
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// The candidate closest to `word` by edit distance, if close enough to be a
/// plausible typo (at most a third of the word's length, and at least 1).
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars_from_one() {
        let t = "ab\ncé\nx";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        // `x` is after the two-byte `é`: column 1 of line 3.
        assert_eq!(line_col(t, t.find('x').unwrap()), (3, 1));
        // Offset just after `é` is column 3 in characters.
        assert_eq!(line_col(t, 6), (2, 3));
        assert_eq!(line_col(t, 1000), (3, 2));
    }

    #[test]
    fn suggests_close_keys_only() {
        let keys = ["packages", "architecture", "source"];
        assert_eq!(closest("pakages", &keys), Some("packages"));
        assert_eq!(closest("sources", &keys), Some("source"));
        assert_eq!(closest("zzz", &keys), None);
    }
}
