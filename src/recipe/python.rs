//! The recipe's `[python]` table: PyPI requirements locked together with the
//! Debian system (see [`crate::pypi`]).
//!
//! ```toml
//! [python]
//! requirements = ["tenjin==1.1.1", "ptf>=0.10", "p4runtime"]   # PEP 508
//! constraints = ["protobuf<5"]       # limit versions, never add a package
//! allow-sdist = ["tenjin"]           # may be built from source (off by default)
//! use-debian = ["scapy"]             # satisfied by the locked Debian python3-* package
//! ```
//!
//! Names in `allow-sdist` and `use-debian` are compared normalised (PEP 503).

use std::str::FromStr;

use serde::Deserialize;
use toml::Spanned;

use super::RecipeError;
use super::error::SourceText;

/// `[python]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawPython {
    #[serde(default)]
    pub requirements: Vec<Spanned<String>>,
    #[serde(default)]
    pub constraints: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_sdist: Vec<Spanned<String>>,
    #[serde(default)]
    pub use_debian: Vec<Spanned<String>>,
}

/// One PEP 508 requirement of the recipe.
#[derive(Debug, Clone)]
pub struct PyRequirement {
    /// The text as written.
    pub text: String,
    /// The parsed requirement.
    pub requirement: pep508_rs::Requirement,
    /// `file:line` where it was written.
    pub origin: String,
}

/// The merged `[python]` table.
#[derive(Debug, Clone, Default)]
pub struct PythonSpec {
    /// What to install (parents' first, duplicates removed).
    pub requirements: Vec<PyRequirement>,
    /// Version limits applied to whatever is installed; they add nothing.
    pub constraints: Vec<PyRequirement>,
    /// Normalised names that may be built from an sdist.
    pub allow_sdist: Vec<String>,
    /// Normalised names taken from the locked Debian `python3-*` package.
    pub use_debian: Vec<String>,
}

/// PEP 503 normalisation: lower case, runs of `-_.` become `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn requirement(src: &SourceText<'_>, s: &Spanned<String>) -> Result<PyRequirement, RecipeError> {
    let r = pep508_rs::Requirement::from_str(s.get_ref())
        .map_err(|e| src.error(s.span(), format!("invalid PEP 508 requirement: {e}")))?;
    if matches!(r.version_or_url, Some(pep508_rs::VersionOrUrl::Url(_))) {
        return Err(src.error_hint(
            s.span(),
            format!("`{}`: URL requirements cannot be locked", s.get_ref()),
            Some("publish the file on the `pypi` index, or pin a version".into()),
        ));
    }
    Ok(PyRequirement {
        text: s.get_ref().clone(),
        requirement: r,
        origin: src.origin(s.span().start),
    })
}

fn names(src: &SourceText<'_>, list: &[Spanned<String>]) -> Result<Vec<String>, RecipeError> {
    let mut out = Vec::new();
    for n in list {
        let ok = !n.get_ref().is_empty()
            && n.get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            return Err(src.error(
                n.span(),
                format!("invalid Python distribution name `{}`", n.get_ref()),
            ));
        }
        let n = normalize_name(n.get_ref());
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Validates one file's `[python]` table.
pub(super) fn layer(src: &SourceText<'_>, raw: &RawPython) -> Result<PythonSpec, RecipeError> {
    let parse_all = |list: &[Spanned<String>]| {
        list.iter()
            .map(|s| requirement(src, s))
            .collect::<Result<Vec<_>, _>>()
    };
    let constraints = parse_all(&raw.constraints)?;
    for (c, raw) in constraints.iter().zip(&raw.constraints) {
        if !c.requirement.extras.is_empty() {
            return Err(src.error(raw.span(), "a constraint cannot name extras"));
        }
    }
    Ok(PythonSpec {
        requirements: parse_all(&raw.requirements)?,
        constraints,
        allow_sdist: names(src, &raw.allow_sdist)?,
        use_debian: names(src, &raw.use_debian)?,
    })
}

/// Merges layers parent first: lists are concatenated, repeats dropped.
pub(super) fn merge(into: &mut Option<PythonSpec>, layer: &PythonSpec) {
    let m = into.get_or_insert_with(PythonSpec::default);
    for r in &layer.requirements {
        if !m
            .requirements
            .iter()
            .any(|o| o.requirement == r.requirement)
        {
            m.requirements.push(r.clone());
        }
    }
    for r in &layer.constraints {
        if !m.constraints.iter().any(|o| o.requirement == r.requirement) {
            m.constraints.push(r.clone());
        }
    }
    for n in &layer.allow_sdist {
        if !m.allow_sdist.contains(n) {
            m.allow_sdist.push(n.clone());
        }
    }
    for n in &layer.use_debian {
        if !m.use_debian.contains(n) {
            m.use_debian.push(n.clone());
        }
    }
}

/// The canonical form hashed into the lock's recipe hash: parsed
/// requirements re-rendered, name lists sorted.
#[derive(Debug, serde::Serialize)]
pub(super) struct CanonicalPython {
    requirements: Vec<String>,
    constraints: Vec<String>,
    allow_sdist: Vec<String>,
    use_debian: Vec<String>,
}

impl PythonSpec {
    pub(super) fn canonical(&self) -> CanonicalPython {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        CanonicalPython {
            requirements: self
                .requirements
                .iter()
                .map(|r| r.requirement.to_string())
                .collect(),
            constraints: self
                .constraints
                .iter()
                .map(|r| r.requirement.to_string())
                .collect(),
            allow_sdist: sorted(&self.allow_sdist),
            use_debian: sorted(&self.use_debian),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::recipe::{Recipe, RecipeError};

    fn parse(python: &str) -> Result<Recipe, RecipeError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.pgp"), b"k").unwrap();
        let text = format!(
            "architecture = \"amd64\"\n[[source]]\nname = \"m\"\nurl = \"http://127.0.0.1:9/\"\n\
             suite = \"/\"\ncomponents = []\nkeyring = \"k.pgp\"\n{python}"
        );
        Recipe::parse_str(&text, &dir.path().join("r.toml"))
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("[python]\nrequirements = [\"ok\", \"bad ===\"]\n").unwrap_err();
        assert!(e.to_string().contains("r.toml:9:"), "{e}");
        assert!(e.to_string().contains("invalid PEP 508 requirement"), "{e}");
        let e = parse("[python]\nrequirements = [\"x @ https://h/x.whl\"]\n").unwrap_err();
        assert!(e.to_string().contains("cannot be locked"), "{e}");
        let e = parse("[python]\nrequirment = []\n").unwrap_err();
        assert!(e.to_string().contains("requirment"), "{e}");
        let e = parse("[python]\nconstraints = [\"a[x]<2\"]\n").unwrap_err();
        assert!(e.to_string().contains("cannot name extras"), "{e}");
        let e = parse("[python]\nallow-sdist = [\"a b\"]\n").unwrap_err();
        assert!(
            e.to_string().contains("invalid Python distribution name"),
            "{e}"
        );
    }

    #[test]
    fn canonical_hash_covers_python_only_when_present() {
        let none = parse("").unwrap();
        assert!(none.python.is_none());
        let a = parse("[python]\nrequirements = [\"ptf>=0.10\"]\nallow-sdist = [\"A_b\", \"c\"]\n")
            .unwrap();
        let b =
            parse("[python]\nrequirements = [\"ptf >= 0.10\"]\nallow-sdist = [\"c\", \"a-b\"]\n")
                .unwrap();
        assert_eq!(
            a.canonical_hash(),
            b.canonical_hash(),
            "spelling must not matter"
        );
        assert_ne!(a.canonical_hash(), none.canonical_hash());
        let c = parse("[python]\nrequirements = [\"ptf>=0.11\"]\n").unwrap();
        assert_ne!(c.canonical_hash(), a.canonical_hash());
        let d = parse("[python]\nrequirements = [\"ptf>=0.10\"]\nallow-sdist = [\"a-b\", \"c\"]\nuse-debian = [\"x\"]\n")
            .unwrap();
        assert_ne!(d.canonical_hash(), a.canonical_hash());
        assert_eq!(a.python.unwrap().allow_sdist, ["a-b", "c"]);
    }
}
