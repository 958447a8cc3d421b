//! A record's own copy of its stanza, read from the cached index text.
//!
//! A solve builds a few hundred records from a 50 MB text. Read through the
//! mapping, each stanza would fault in the pages around it too (the kernel
//! maps 64 KiB per fault), and a few hundred scattered stanzas would put most
//! of the text in the process's resident set. So each record gets a copy of
//! its stanza, read with `pread` from the cache file when there is one, with
//! the line before and the line after it: exactly what the lock audit's
//! `reparse` checks a span against (a stanza starts after a blank line and
//! ends before one), so that check means the same on the copy.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::snapshot::Damaged;
use crate::core::package::IndexText;

/// How far from the span the line before and the line after are looked for.
const REACH: usize = 64 << 10;

/// A verified text and, when it is a cache file, that file.
#[derive(Clone)]
pub(crate) struct Plain {
    /// The whole text (a mapping of the file, or a buffer).
    pub(crate) text: IndexText,
    /// The cache file, read without mapping when there is one.
    pub(crate) file: Option<Arc<File>>,
}

impl Plain {
    /// A text in memory.
    pub(crate) fn memory(text: IndexText) -> Plain {
        Plain { text, file: None }
    }

    /// What records are read from.
    pub(crate) fn reader(&self) -> Text<'_> {
        Text {
            text: &self.text,
            file: self.file.as_deref(),
        }
    }
}

/// Where the text is read from: its cache file, else the text in memory.
pub(crate) struct Text<'a> {
    /// The whole text (a mapping, or a buffer).
    pub(crate) text: &'a IndexText,
    /// The file the mapping is of, read without mapping.
    pub(crate) file: Option<&'a File>,
}

impl Text<'_> {
    fn len(&self) -> usize {
        (**self.text).as_ref().len()
    }

    /// Bytes `[a, b)` (within the text).
    fn read(&self, a: usize, b: usize) -> Result<Vec<u8>, Damaged> {
        match self.file {
            Some(f) => {
                let mut buf = vec![0u8; b - a];
                f.read_exact_at(&mut buf, a as u64).map_err(|_| Damaged)?;
                Ok(buf)
            }
            None => Ok((**self.text).as_ref()[a..b].to_vec()),
        }
    }

    /// The stanza `span` with the line before and the line after it, as a
    /// text of its own, and the span within it. A span that is not in the
    /// text, or does not start a line, is [`Damaged`].
    pub(crate) fn window(&self, span: (u32, u32)) -> Result<(IndexText, (u32, u32)), Damaged> {
        let (a, b) = (span.0 as usize, span.1 as usize);
        let len = self.len();
        if a > b || b > len {
            return Err(Damaged);
        }
        // Read a little around the span, more only when a line is longer.
        let mut around = 256;
        loop {
            let (lo, hi) = (a.saturating_sub(around), (b + around).min(len));
            let bytes = self.read(lo, hi)?;
            let (x, y) = (a - lo, b - lo);
            // The start of the line before `a` (which must end at `a`).
            let start = if a == 0 {
                Some(0)
            } else if bytes[x - 1] != b'\n' {
                return Err(Damaged);
            } else {
                match bytes[..x - 1].iter().rposition(|&c| c == b'\n') {
                    Some(i) => Some(i + 1),
                    None if lo == 0 => Some(0),
                    None => None,
                }
            };
            // The end of the line after the one `b` is in.
            let mut newlines = bytes[y..].iter().enumerate().filter(|(_, c)| **c == b'\n');
            let end = match newlines.nth(1) {
                Some((i, _)) => Some(y + i + 1),
                None if hi == len => Some(bytes.len()),
                None => None,
            };
            if let (Some(s), Some(e)) = (start, end) {
                let span = ((x - s) as u32, (y - s) as u32);
                return Ok((Arc::new(bytes[s..e].to_vec()), span));
            }
            if around >= REACH {
                return Err(Damaged);
            }
            around *= 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &str =
        "Package: a\nVersion: 1\n\nPackage: b\nVersion: 2\n\n\nPackage: c\nVersion: 3\n";

    fn both(f: impl Fn(&Text)) {
        let text: IndexText = Arc::new(TEXT.to_string());
        f(&Text {
            text: &text,
            file: None,
        });
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(TEXT.as_bytes()).unwrap();
        f(&Text {
            text: &text,
            file: Some(&file),
        });
    }

    fn span_of(name: &str) -> (u32, u32) {
        let a = TEXT.find(&format!("Package: {name}")).unwrap();
        let b = a + TEXT[a..].find("\n\n").unwrap_or(TEXT.len() - a - 1);
        (a as u32, b as u32)
    }

    #[test]
    fn copies_the_stanza_with_the_lines_around_it() {
        both(|t| {
            for (name, want) in [
                ("a", "Package: a\nVersion: 1\n\n"),
                ("b", "\nPackage: b\nVersion: 2\n\n"),
                ("c", "\nPackage: c\nVersion: 3\n"),
            ] {
                let (w, (x, y)) = t.window(span_of(name)).unwrap();
                let w = std::str::from_utf8((*w).as_ref()).unwrap();
                assert_eq!(w, want, "{name}");
                let (a, b) = span_of(name);
                assert_eq!(&w[x as usize..y as usize], &TEXT[a as usize..b as usize]);
            }
        });
    }

    #[test]
    fn spans_that_do_not_fit_are_damaged() {
        both(|t| {
            let len = TEXT.len() as u32;
            assert!(t.window((3, 2)).is_err());
            assert!(t.window((0, len + 1)).is_err());
            // Not at the start of a line.
            assert!(t.window((2, 10)).is_err());
            // At the end: an empty window.
            assert!(t.window((len, len)).is_ok());
        });
    }

    #[test]
    fn long_lines_are_followed_up_to_the_bound() {
        let long = format!("X: {}\nPackage: a\nVersion: 1\n", "y".repeat(1000));
        let text: IndexText = Arc::new(long.clone());
        let t = Text {
            text: &text,
            file: None,
        };
        let a = long.find("Package").unwrap() as u32;
        let (w, (x, _)) = t.window((a, long.len() as u32 - 1)).unwrap();
        assert_eq!(
            x as usize,
            long.find('\n').unwrap() + 1,
            "the whole line before"
        );
        assert_eq!((*w).as_ref().len(), long.len());
        let huge = format!("X: {}\nPackage: a\n", "y".repeat(REACH * 2));
        let text: IndexText = Arc::new(huge.clone());
        let t = Text {
            text: &text,
            file: None,
        };
        let a = huge.find("Package").unwrap() as u32;
        assert!(t.window((a, huge.len() as u32 - 1)).is_err());
    }
}
