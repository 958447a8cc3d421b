//! Binary package records read from `Packages` indexes.
//!
//! A suite has ~60k stanzas and a solve looks at a few hundred of them, so a
//! record keeps only what every package needs eagerly (name, version,
//! architecture, Multi-Arch, Essential/Priority, Provides) and a reference to
//! its stanza in the shared index text; the relation fields and the artifact
//! fields are read from the stanza when asked for. The whole index is
//! validated once, when it is first parsed, so those reads cannot fail.

use std::sync::Arc;

use crate::deb822::{self, Stanza};
use crate::version::DebVersion;

/// The text of one decompressed `Packages` index, shared by its records
/// (a memory map of the cached file, or an in-memory buffer).
pub type IndexText = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// `Multi-Arch` field values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MultiArch {
    /// Field absent or `no`.
    #[default]
    No,
    /// `same`: co-installable across architectures at the same version.
    Same,
    /// `foreign`: satisfies dependencies from any architecture.
    Foreign,
    /// `allowed`: dependents may ask for `:any`.
    Allowed,
}

/// One stanza of a `Packages` index.
#[derive(Clone)]
pub struct BinaryPackage {
    /// `Package`.
    pub name: Box<str>,
    /// `Version`.
    pub version: DebVersion,
    /// `Architecture` (`amd64`, `all`, …).
    pub architecture: Box<str>,
    /// `Multi-Arch`.
    pub multi_arch: MultiArch,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority: required`.
    pub required: bool,
    /// Raw `Provides` (needed for every package, to index virtual names).
    pub provides: Box<str>,
    /// Index of the recipe source this record came from.
    pub source: usize,
    text: IndexText,
    /// Byte range of the stanza in `text`.
    span: (u32, u32),
}

impl std::fmt::Debug for BinaryPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BinaryPackage({} {} {})",
            self.name, self.version, self.architecture
        )
    }
}

/// A stanza that lacks a required field or has a malformed one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{index}: stanza at line {line} ({package}): {reason}")]
pub struct PackagesError {
    /// Which index file (archive-relative path) the stanza is in.
    pub index: String,
    /// 1-based line of the stanza.
    pub line: usize,
    /// The package name, if known.
    pub package: String,
    /// What is wrong.
    pub reason: String,
}

fn field<'a>(s: &Stanza<'a>, name: &str) -> &'a str {
    s.get(name).unwrap_or("")
}

impl BinaryPackage {
    /// The stanza text.
    fn stanza_text(&self) -> &str {
        let bytes = (*self.text).as_ref();
        let (a, b) = (self.span.0 as usize, self.span.1 as usize);
        // Validated as UTF-8 when the index was parsed.
        std::str::from_utf8(&bytes[a..b]).unwrap_or("")
    }

    /// A field of this package's stanza (empty when absent).
    pub fn field(&self, name: &str) -> &str {
        match deb822::stanzas(self.stanza_text()).next() {
            Some(Ok(s)) => field(&s, name),
            _ => "",
        }
    }

    /// Raw `Pre-Depends`, `Depends`, `Recommends`, `Conflicts` and `Breaks`,
    /// in that order, from one read of the stanza (the reachability walk
    /// wants all five of every record it visits).
    pub fn relation_fields(&self) -> [&str; 5] {
        match deb822::stanzas(self.stanza_text()).next() {
            Some(Ok(s)) => [
                field(&s, "Pre-Depends"),
                field(&s, "Depends"),
                field(&s, "Recommends"),
                field(&s, "Conflicts"),
                field(&s, "Breaks"),
            ],
            _ => [""; 5],
        }
    }

    /// Raw `Depends`.
    pub fn depends(&self) -> &str {
        self.field("Depends")
    }

    /// Raw `Pre-Depends`.
    pub fn pre_depends(&self) -> &str {
        self.field("Pre-Depends")
    }

    /// Raw `Recommends`.
    pub fn recommends(&self) -> &str {
        self.field("Recommends")
    }

    /// Raw `Conflicts`.
    pub fn conflicts(&self) -> &str {
        self.field("Conflicts")
    }

    /// Raw `Breaks`.
    pub fn breaks(&self) -> &str {
        self.field("Breaks")
    }

    /// `Filename`, relative to the archive root (`pool/main/...`).
    pub fn filename(&self) -> &str {
        self.field("Filename")
    }

    /// `Size` in bytes.
    pub fn size(&self) -> u64 {
        self.field("Size").parse().unwrap_or(0)
    }

    /// `SHA256` of the `.deb` (lowercase hex).
    pub fn sha256(&self) -> String {
        self.field("SHA256").to_ascii_lowercase()
    }

    /// The index text this record's stanza is in.
    pub fn index_text(&self) -> &IndexText {
        &self.text
    }

    /// The stanza's byte range in its index text (for snapshots).
    pub fn span(&self) -> (u32, u32) {
        self.span
    }

    /// Rebuilds a record from snapshot fields; `span` must come from a
    /// validated parse of the same `text`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        name: &str,
        version: DebVersion,
        architecture: &str,
        multi_arch: MultiArch,
        essential: bool,
        required: bool,
        provides: &str,
        source: usize,
        text: IndexText,
        span: (u32, u32),
    ) -> BinaryPackage {
        BinaryPackage {
            name: name.into(),
            version,
            architecture: architecture.into(),
            multi_arch,
            essential,
            required,
            provides: provides.into(),
            source,
            text,
            span,
        }
    }
}

/// Parses a whole `Packages` text (a copy is kept for the records). `index`
/// names the file in error messages.
pub fn parse_packages(
    text: &str,
    index: &str,
    source: usize,
) -> Result<Vec<BinaryPackage>, PackagesError> {
    let shared: IndexText = Arc::new(text.to_owned());
    parse_index_range(&shared, 0, text.len(), 0, index, source)
}

/// Parses the stanzas in `text[start..end]` (which must be stanza-aligned),
/// validating every field the later stages rely on. `first_line` is the
/// number of lines before `start`, for error messages.
pub fn parse_index_range(
    text: &IndexText,
    start: usize,
    end: usize,
    first_line: usize,
    index: &str,
    source: usize,
) -> Result<Vec<BinaryPackage>, PackagesError> {
    let bytes = &(**text).as_ref()[start..end];
    let chunk = std::str::from_utf8(bytes).map_err(|e| PackagesError {
        index: index.to_string(),
        line: first_line + 1,
        package: String::new(),
        reason: format!("not UTF-8: {e}"),
    })?;
    let mut out = Vec::with_capacity(chunk.len() / 1000);
    for stanza in deb822::stanzas(chunk) {
        let stanza = stanza.map_err(|e| PackagesError {
            index: index.to_string(),
            line: first_line + e.line,
            package: String::new(),
            reason: e.reason.to_string(),
        })?;
        let err = |reason: String| PackagesError {
            index: index.to_string(),
            line: first_line + stanza.line,
            package: field(&stanza, "Package").to_string(),
            reason,
        };
        let name = field(&stanza, "Package");
        if name.is_empty() {
            return Err(err("missing Package".into()));
        }
        let version =
            DebVersion::parse(field(&stanza, "Version")).map_err(|e| err(e.to_string()))?;
        field(&stanza, "Size")
            .parse::<u64>()
            .map_err(|_| err("missing or bad Size".into()))?;
        let sha256 = field(&stanza, "SHA256");
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("missing or bad SHA256".into()));
        }
        let filename = field(&stanza, "Filename");
        if filename.is_empty()
            || filename.starts_with('/')
            || filename.split('/').any(|c| c == "..")
        {
            return Err(err(format!("bad Filename `{filename}`")));
        }
        let multi_arch = match field(&stanza, "Multi-Arch") {
            "same" => MultiArch::Same,
            "foreign" => MultiArch::Foreign,
            "allowed" => MultiArch::Allowed,
            _ => MultiArch::No,
        };
        let span = (
            (start + stanza.span.0) as u32,
            (start + stanza.span.1) as u32,
        );
        out.push(BinaryPackage {
            name: name.into(),
            version,
            architecture: field(&stanza, "Architecture").into(),
            multi_arch,
            essential: field(&stanza, "Essential").eq_ignore_ascii_case("yes"),
            required: field(&stanza, "Priority") == "required",
            provides: field(&stanza, "Provides").into(),
            source,
            text: text.clone(),
            span,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_fields_read_the_right_stanza() {
        let text = "Package: a\nVersion: 1\nArchitecture: amd64\nDepends: b (>= 2),\n c\nFilename: pool/a.deb\nSize: 10\nSHA256: ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n\n\
                    Package: b\nVersion: 2\nArchitecture: all\nProvides: x (= 1)\nFilename: pool/b.deb\nSize: 20\nSHA256: 0000000000000000000000000000000000000000000000000000000000000000\n";
        let p = parse_packages(text, "P", 3).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].depends(), "b (>= 2),\n c");
        assert_eq!(p[0].size(), 10);
        assert_eq!(
            p[0].sha256(),
            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
        );
        assert_eq!(p[1].filename(), "pool/b.deb");
        assert_eq!(p[1].depends(), "");
        assert_eq!(&*p[1].provides, "x (= 1)");
        assert_eq!(p[1].source, 3);
    }

    #[test]
    fn invalid_stanzas_are_refused_up_front() {
        let ok = "Package: a\nVersion: 1\nFilename: pool/a.deb\nSize: 1\nSHA256: ";
        let hex = "0".repeat(64);
        assert!(parse_packages(&format!("{ok}{hex}\n"), "P", 0).is_ok());
        for bad in [
            format!("{ok}xyz\n"),
            format!("Package: a\nVersion: 1\nFilename: ../a.deb\nSize: 1\nSHA256: {hex}\n"),
            format!("Package: a\nVersion: 1\nFilename: pool/a.deb\nSize: x\nSHA256: {hex}\n"),
            format!("Package: a\nVersion: :\nFilename: pool/a.deb\nSize: 1\nSHA256: {hex}\n"),
        ] {
            let e = parse_packages(&bad, "main/P", 0).unwrap_err();
            assert_eq!(e.index, "main/P");
        }
    }
}
