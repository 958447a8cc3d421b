//! One `[[source]]` table of a recipe file: validated, its URL normalised
//! and its keyring hashed (part of [`super::parse::Loader`]).

use std::path::Path;

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::error::{RecipeError, SourceText};
use super::parse::{DEFAULT_PRIORITY, Loader, dir_of, is_simple_name};
use super::raw::RawSource;
use super::{Location, Source};

impl Loader<'_> {
    /// Validates one `[[source]]` and hashes its keyring.
    pub(super) fn source(
        &self,
        src: &SourceText<'_>,
        recipe_path: &Path,
        s: &Spanned<RawSource>,
    ) -> Result<Source, RecipeError> {
        let header = s.span();
        let s = s.get_ref();
        let name = s.name.get_ref().clone();
        if !is_simple_name(&name) {
            return Err(src.error(s.name.span(), format!("invalid source name `{name}`")));
        }
        let location = match (&s.archive, &s.url) {
            (Some(_), Some(u)) => {
                return Err(src.error_hint(
                    u.span(),
                    format!("source `{name}` sets both `archive` and `url`"),
                    Some("keep exactly one of them".into()),
                ));
            }
            (None, None) => {
                return Err(src.error_hint(
                    header,
                    format!("source `{name}` needs `archive` or `url`"),
                    Some("`archive = \"debian\"` names a configured archive; `url` is a literal http, https or file URL".into()),
                ));
            }
            (Some(a), None) => {
                if !is_simple_name(a.get_ref()) {
                    return Err(
                        src.error(a.span(), format!("invalid archive name `{}`", a.get_ref()))
                    );
                }
                if a.get_ref() == crate::archive::snapshot_archive::SERVICE {
                    return Err(src.error_hint(
                        a.span(),
                        format!("archive name `{}` is reserved for the snapshot service", a.get_ref()),
                        Some("name the archive itself (`debian`) and set `snapshot = \"YYYYMMDDTHHMMSSZ\"`".into()),
                    ));
                }
                Location::Archive(a.get_ref().clone())
            }
            (None, Some(u)) => Location::Url(parse_url(src, u)?),
        };
        let suite = s.suite.get_ref().clone();
        if suite.is_empty() || suite.chars().any(char::is_whitespace) {
            return Err(src.error(s.suite.span(), format!("invalid suite `{suite}`")));
        }
        let components: Vec<String> = s
            .components
            .as_ref()
            .map(|c| c.get_ref().iter().map(|x| x.get_ref().clone()).collect())
            .unwrap_or_default();
        if suite == "/" && !components.is_empty() {
            let span = s.components.as_ref().map_or(header.clone(), |c| c.span());
            return Err(src.error_hint(
                span,
                format!(
                    "source `{name}` is a flat repository (`suite = \"/\"`) but lists components"
                ),
                Some("remove `components`".into()),
            ));
        }
        if suite != "/" && components.is_empty() {
            return Err(src.error_hint(
                s.suite.span(),
                format!("source `{name}` has suite `{suite}` but no components"),
                Some("add e.g. `components = [\"main\"]`, or use `suite = \"/\"` for a flat repository".into()),
            ));
        }
        for c in s.components.iter().flat_map(|c| c.get_ref()) {
            let v = c.get_ref();
            if v.is_empty() || v.starts_with('/') || v.chars().any(char::is_whitespace) {
                return Err(src.error(c.span(), format!("invalid component `{v}`")));
            }
        }
        let snapshot = match &s.snapshot {
            None => None,
            Some(_) if matches!(location, Location::Url(_)) => {
                let span = s.snapshot.as_ref().map_or(header.clone(), |t| t.span());
                return Err(src.error_hint(
                    span,
                    format!("source `{name}` has a literal `url`; `snapshot` needs a named `archive`"),
                    Some("use `archive = \"debian\"` and configure the snapshot service with --mirror snapshot=URL".into()),
                ));
            }
            Some(t) => Some(
                crate::core::timestamp::Timestamp::parse(t.get_ref())
                    .map_err(|e| src.error(t.span(), format!("source `{name}`: {e}")))?,
            ),
        };
        let keyring = dir_of(recipe_path).join(s.keyring.get_ref());
        let keyring = std::path::absolute(&keyring).unwrap_or(keyring);
        let bytes = crate::core::bounded::read_regular(&keyring, crate::core::bounded::MAX_KEYRING)
            .map_err(|e| {
                let what = if e.kind() == std::io::ErrorKind::NotFound {
                    "not found".to_string()
                } else {
                    format!("cannot be read: {e}")
                };
                src.error_hint(
                    s.keyring.span(),
                    format!(
                        "keyring `{}` {what} ({})",
                        s.keyring.get_ref(),
                        self.display(&keyring)
                    ),
                    Some("keyring paths are relative to the recipe's directory".into()),
                )
            })?;
        Ok(Source {
            name,
            location,
            suite,
            components,
            keyring,
            keyring_sha256: hex::encode(Sha256::digest(&bytes)),
            priority: s.priority.unwrap_or(DEFAULT_PRIORITY),
            check_valid_until: s.check_valid_until.unwrap_or(true),
            snapshot,
        })
    }
}

/// Validates a source URL and normalizes it (lowercase scheme and host, a
/// trailing `/`) so that equivalent spellings hash the same and joining
/// `dists/…` onto it always works.
fn parse_url(src: &SourceText<'_>, u: &Spanned<String>) -> Result<String, RecipeError> {
    let mut url = url::Url::parse(u.get_ref())
        .map_err(|e| src.error(u.span(), format!("invalid url `{}`: {e}", u.get_ref())))?;
    if !matches!(url.scheme(), "http" | "https" | "file") {
        return Err(src.error_hint(
            u.span(),
            format!("unsupported url scheme `{}`", url.scheme()),
            Some("use http, https or file".into()),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(src.error(
            u.span(),
            format!("url `{}` must not have a query or fragment", u.get_ref()),
        ));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url.into())
}
