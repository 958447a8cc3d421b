//! The `[publish]` table: how `imgbuild publish` names and labels the image.
//!
//! ```toml
//! [publish]
//! repository = "switches/sonic-p4"   # a repository NAME only, never a host
//! version = "2026.12.1"              # tag + org.opencontainers.image.version
//! source = "https://git.example/sonic-p4"  # org.opencontainers.image.source
//! labels = { sonic_version = "202305" }    # extra annotations
//! ```
//!
//! The registry itself is configuration (`IMGBUILD_REGISTRY` or the command
//! line), so a recipe cannot send images anywhere by itself. None of this
//! changes the built image: it is in neither the lock's hash nor the build
//! hash. A child recipe's keys override its parent's; labels merge.

use std::collections::BTreeMap;

use toml::Spanned;

use super::error::{RecipeError, SourceText};

/// The `[publish]` settings of a merged recipe.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Publish {
    /// Repository name (`team/image`), no registry host.
    pub repository: Option<String>,
    /// Image version: a tag and the `org.opencontainers.image.version` annotation.
    pub version: Option<String>,
    /// `org.opencontainers.image.source`.
    pub source: Option<String>,
    /// Extra annotations (e.g. `sonic_version`), sorted by key.
    pub labels: BTreeMap<String, String>,
}

/// The `[publish]` table as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPublish {
    repository: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
}

/// Validates one file's `[publish]`.
pub(super) fn parse(src: &SourceText<'_>, raw: &RawPublish) -> Result<Publish, RecipeError> {
    let repository = match &raw.repository {
        Some(r) => {
            let name = r.get_ref();
            // A first component that looks like a host (has `.` or `:`, or is
            // `localhost`) would make the recipe choose the registry.
            let first = name.split('/').next().unwrap_or("");
            if first.contains('.') || first.contains(':') || first == "localhost" {
                return Err(src.error(
                    r.span(),
                    format!("`repository = \"{name}\"` names a registry host: write the repository name only (the registry is configuration: IMGBUILD_REGISTRY or the command line)"),
                ));
            }
            crate::registry::Reference::parse(&format!("localhost/{name}"))
                .map_err(|e| src.error(r.span(), e.to_string()))?;
            Some(name.clone())
        }
        None => None,
    };
    let version = match &raw.version {
        Some(v) => {
            crate::registry::reference::check_tag(v.get_ref()).map_err(|e| {
                src.error(v.span(), format!("`version` must be usable as a tag: {e}"))
            })?;
            Some(v.get_ref().clone())
        }
        None => None,
    };
    let mut labels = BTreeMap::new();
    for (k, v) in &raw.labels {
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(src.error(v.span(), format!("bad label name `{k}`")));
        }
        labels.insert(k.clone(), v.get_ref().clone());
    }
    Ok(Publish {
        repository,
        version,
        source: raw.source.as_ref().map(|s| s.get_ref().clone()),
        labels,
    })
}

impl Publish {
    /// This (parent) table with what `child` sets replaced; labels merge.
    pub(super) fn overridden_by(mut self, child: &Publish) -> Publish {
        self.repository = child.repository.clone().or(self.repository);
        self.version = child.version.clone().or(self.version);
        self.source = child.source.clone().or(self.source);
        self.labels
            .extend(child.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }
}

#[cfg(test)]
mod tests {
    use crate::recipe::Recipe;

    fn parse(publish: &str) -> Result<Recipe, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.pgp"), b"key").unwrap();
        let text = format!(
            "architecture = \"amd64\"\npackages = [\"a\"]\n[[source]]\nname = \"main\"\nurl = \"http://127.0.0.1:9/d\"\nsuite = \"bookworm\"\ncomponents = [\"main\"]\nkeyring = \"k.pgp\"\n[publish]\n{publish}"
        );
        Recipe::parse_str(&text, &dir.path().join("x.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn publish_table_is_checked_and_outside_the_hashes() {
        let r = parse(
            "repository = \"team/x\"\nversion = \"1.0\"\nlabels = { sonic_version = \"202305\" }\n",
        )
        .unwrap();
        assert_eq!(r.publish.repository.as_deref(), Some("team/x"));
        assert_eq!(r.publish.labels["sonic_version"], "202305");
        let other = parse("version = \"2.0\"\n").unwrap();
        assert_eq!(r.canonical_hash(), other.canonical_hash());
        assert_eq!(r.build_hash(), other.build_hash());
        let e = parse("repository = \"registry.example:5000/x\"\n").unwrap_err();
        assert!(
            e.contains("x.toml:10") && e.contains("registry host"),
            "{e}"
        );
        let e = parse("version = \"not a tag!\"\n").unwrap_err();
        assert!(e.contains("usable as a tag"), "{e}");
        assert!(parse("repo = \"x\"\n").is_err());
    }
}
