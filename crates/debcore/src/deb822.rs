//! A fast, borrowing reader for deb822 control data (`Packages`, `Release`,
//! apt `.sources`): stanzas separated by blank lines, `Field: value` lines,
//! continuation lines starting with a space or tab.

/// One stanza: its fields in file order, borrowed from the input.
#[derive(Debug, Clone, Default)]
pub struct Stanza<'a> {
    fields: Vec<(&'a str, &'a str)>,
    /// 1-based line number of the stanza's first line (for error messages).
    pub line: usize,
    /// Byte range of the stanza in the input (first field line to end of last line).
    pub span: (usize, usize),
}

impl<'a> Stanza<'a> {
    /// The raw value of a field (case-insensitive name), continuation lines
    /// included with their newlines, surrounding whitespace trimmed.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// All fields in file order.
    pub fn fields(&self) -> &[(&'a str, &'a str)] {
        &self.fields
    }
}

/// A line that is neither a field, a continuation nor a blank.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Deb822Error {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// Iterates over the stanzas of `text`. Comment lines (`#`) are skipped.
pub fn stanzas(text: &str) -> Stanzas<'_> {
    Stanzas {
        text,
        pos: 0,
        line: 0,
    }
}

/// Iterator returned by [`stanzas`].
pub struct Stanzas<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Iterator for Stanzas<'a> {
    type Item = Result<Stanza<'a>, Deb822Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.text;
        let bytes = text.as_bytes();
        let mut stanza = Stanza {
            fields: Vec::with_capacity(24),
            line: 0,
            span: (0, 0),
        };
        // Start/end byte offsets of the value of the field being read.
        let mut current: Option<(&'a str, usize, usize)> = None;
        while self.pos < bytes.len() {
            let start = self.pos;
            let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
            self.pos = if end < bytes.len() {
                end + 1
            } else {
                bytes.len()
            };
            self.line += 1;
            let line = &text[start..end];
            if !line.trim().is_empty() && !line.starts_with('#') {
                stanza.span.1 = end;
            }
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                if current.is_some() || !stanza.fields.is_empty() {
                    break;
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                match current.as_mut() {
                    Some((_, _, e)) => *e = start + line.len(),
                    None => {
                        return Some(Err(Deb822Error {
                            line: self.line,
                            reason: "continuation line without a field",
                        }));
                    }
                }
                continue;
            }
            let Some(colon) = line.find(':') else {
                return Some(Err(Deb822Error {
                    line: self.line,
                    reason: "expected `Field: value`",
                }));
            };
            if colon == 0 {
                return Some(Err(Deb822Error {
                    line: self.line,
                    reason: "empty field name",
                }));
            }
            if let Some((n, s, e)) = current.take() {
                stanza.fields.push((n, text[s..e].trim()));
            }
            if stanza.fields.is_empty() {
                stanza.line = self.line;
                stanza.span.0 = start;
            }
            current = Some((&line[..colon], start + colon + 1, start + line.len()));
        }
        if let Some((n, s, e)) = current.take() {
            stanza.fields.push((n, text[s..e].trim()));
        }
        if stanza.fields.is_empty() {
            None
        } else {
            Some(Ok(stanza))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stanzas_and_continuations() {
        let text = "Package: a\nVersion: 1\nDescription: x\n more\n .\n\n\nPackage: b\r\nDepends: c,\n d\n";
        let all: Vec<_> = stanzas(text).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].get("package"), Some("a"));
        assert_eq!(all[0].get("Description"), Some("x\n more\n ."));
        assert_eq!(all[1].get("Depends"), Some("c,\n d"));
        assert_eq!(all[1].line, 8);
    }

    #[test]
    fn reports_bad_lines() {
        let e = stanzas("Package: a\nnonsense\n")
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!(e.line, 2);
        let e = stanzas("Package: a\n: x\n")
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!((e.line, e.reason), (2, "empty field name"));
    }
}
