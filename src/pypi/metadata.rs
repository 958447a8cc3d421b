//! Core metadata (`METADATA`, `PKG-INFO`): the fields resolution needs.
//!
//! The format is RFC 822-like headers (continuation lines start with
//! whitespace) followed by a body, which is ignored.

use std::str::FromStr;

use pep440_rs::VersionSpecifiers;
use pep508_rs::Requirement;

use super::error::{PypiError, Result};

/// What resolution needs from one distribution file's metadata.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// `Requires-Dist`, parsed (entries that do not parse are errors).
    pub requires_dist: Vec<Requirement>,
    /// `Requires-Python`.
    pub requires_python: Option<VersionSpecifiers>,
    /// `Provides-Extra`.
    pub provides_extra: Vec<String>,
}

/// The header fields of a metadata file as (name, value) pairs, in order.
pub fn headers(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

impl Metadata {
    /// Parses a `METADATA`/`PKG-INFO` text; `what` names it in errors.
    pub fn parse(text: &str, what: &str) -> Result<Metadata> {
        let mut m = Metadata::default();
        for (k, v) in headers(text) {
            match k.to_ascii_lowercase().as_str() {
                "requires-dist" => {
                    m.requires_dist.push(Requirement::from_str(&v).map_err(|e| {
                        PypiError::Invalid(format!("{what}: bad Requires-Dist `{v}`: {e}"))
                    })?)
                }
                "requires-python" => {
                    m.requires_python = Some(VersionSpecifiers::from_str(&v).map_err(|e| {
                        PypiError::Invalid(format!("{what}: bad Requires-Python `{v}`: {e}"))
                    })?)
                }
                "provides-extra" => m.provides_extra.push(v),
                _ => {}
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requirements() {
        let text = "Metadata-Version: 2.1\nName: ptf\nRequires-Python: >=3.7\n\
                    Requires-Dist: scapy (>=2.5)\nRequires-Dist: six; extra == \"test\"\n\
                    Summary: a long\n  continued line\n\nRequires-Dist: body-not-header\n";
        let m = Metadata::parse(text, "ptf").unwrap();
        assert_eq!(m.requires_dist.len(), 2);
        assert_eq!(m.requires_dist[0].name.as_ref(), "scapy");
        assert!(m.requires_python.is_some());
        assert!(Metadata::parse("Requires-Dist: ???\n", "x").is_err());
    }
}
