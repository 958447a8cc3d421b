//! Binary package records read from `Packages` indexes.

use crate::core::deb822::{self, Stanza};
use crate::core::version::DebVersion;

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

/// One stanza of a `Packages` index, with the fields the solver and the lock need.
/// Relation fields are kept as text and parsed on demand: a solve touches a few
/// hundred of the ~60k packages in a suite.
#[derive(Debug, Clone)]
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
    /// Raw `Depends`.
    pub depends: Box<str>,
    /// Raw `Pre-Depends`.
    pub pre_depends: Box<str>,
    /// Raw `Recommends`.
    pub recommends: Box<str>,
    /// Raw `Conflicts`.
    pub conflicts: Box<str>,
    /// Raw `Breaks`.
    pub breaks: Box<str>,
    /// Raw `Provides`.
    pub provides: Box<str>,
    /// `Filename`, relative to the archive root (`pool/main/...`).
    pub filename: Box<str>,
    /// `Size` in bytes.
    pub size: u64,
    /// `SHA256` of the `.deb`.
    pub sha256: Box<str>,
    /// Index of the recipe source this record came from.
    pub source: usize,
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

/// Parses a whole `Packages` file. `index` names the file in error messages.
pub fn parse_packages(
    text: &str,
    index: &str,
    source: usize,
) -> Result<Vec<BinaryPackage>, PackagesError> {
    let mut out = Vec::with_capacity(text.len() / 1000);
    for stanza in deb822::stanzas(text) {
        let stanza = stanza.map_err(|e| PackagesError {
            index: index.to_string(),
            line: e.line,
            package: String::new(),
            reason: e.reason.to_string(),
        })?;
        let err = |reason: String| PackagesError {
            index: index.to_string(),
            line: stanza.line,
            package: field(&stanza, "Package").to_string(),
            reason,
        };
        let name = field(&stanza, "Package");
        if name.is_empty() {
            return Err(err("missing Package".into()));
        }
        let version =
            DebVersion::parse(field(&stanza, "Version")).map_err(|e| err(e.to_string()))?;
        let size = field(&stanza, "Size")
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
        out.push(BinaryPackage {
            name: name.into(),
            version,
            architecture: field(&stanza, "Architecture").into(),
            multi_arch,
            essential: field(&stanza, "Essential").eq_ignore_ascii_case("yes"),
            required: field(&stanza, "Priority") == "required",
            depends: field(&stanza, "Depends").into(),
            pre_depends: field(&stanza, "Pre-Depends").into(),
            recommends: field(&stanza, "Recommends").into(),
            conflicts: field(&stanza, "Conflicts").into(),
            breaks: field(&stanza, "Breaks").into(),
            provides: field(&stanza, "Provides").into(),
            filename: filename.into(),
            size,
            sha256: sha256.to_ascii_lowercase().into(),
            source,
        });
    }
    Ok(out)
}
