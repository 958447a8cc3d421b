//! The recipe's `[[component]]` tables: software built from pinned source in
//! the build sandbox and installed into the image as a generated Debian
//! package (see [`crate::component`]).
//!
//! ```toml
//! [[component]]
//! name = "bmv2"                       # the generated package's name
//! git = "https://github.com/p4lang/behavioral-model"
//! rev = "1.15.5"                      # tag, branch or commit; the lock pins the commit
//! build-depends = ["g++", "libjudy-dev"]
//! depends = ["libjudydebian1"]        # runtime relations, solved with the image
//! build = ["./autogen.sh", "./configure --prefix=$PREFIX", "make -j$JOBS", "make install DESTDIR=$DESTDIR"]
//! prefix = "/usr/local"               # default
//! install = ["usr/local/bin/*"]       # optional filter (globs under DESTDIR)
//! ```
//!
//! A source is either `git` + `rev` or `url` (a tarball, optionally with its
//! `sha256`). Everything here is part of the recipe's canonical hash: a
//! changed `rev`, build script or relation makes the lock stale.

use serde::Deserialize;
use toml::Spanned;

use super::error::SourceText;
use super::{RecipeError, Requirement};
use crate::core::relation::Dependency;
use crate::core::version::DebVersion;

/// Default `prefix` (the `PREFIX` the build sees).
pub const DEFAULT_PREFIX: &str = "/usr/local";

/// `[[component]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawComponent {
    pub name: Spanned<String>,
    pub version: Option<Spanned<String>>,
    pub git: Option<Spanned<String>>,
    pub rev: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub sha256: Option<Spanned<String>>,
    #[serde(default)]
    pub build_depends: Vec<Spanned<String>>,
    #[serde(default)]
    pub depends: Vec<Spanned<String>>,
    pub build: Spanned<Vec<Spanned<String>>>,
    pub prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub install: Vec<Spanned<String>>,
}

/// Where a component's source comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentSource {
    /// A git repository at a revision; the URL is kept as written (the git
    /// mapping, not the recipe, says where it is fetched from).
    Git {
        /// Repository URL as written.
        url: String,
        /// Tag, branch or commit.
        rev: String,
    },
    /// A tarball (`.tar`, `.tar.gz`, `.tar.xz`, …).
    Tarball {
        /// Its URL.
        url: String,
        /// Its sha256 when the recipe pins it (the lock always does).
        sha256: Option<String>,
    },
}

/// One merged `[[component]]`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Component {
    /// Name of the component and of its generated package.
    pub name: String,
    /// Package version; unset: derived from the tag or commit at solve time.
    pub version: Option<String>,
    /// The source.
    pub source: ComponentSource,
    /// Debian relations of the build root (solved with the Essential set).
    #[serde(serialize_with = "relations")]
    pub build_depends: Vec<Requirement>,
    /// Runtime relations: solved with the image's packages, and the
    /// generated package's `Depends`.
    #[serde(serialize_with = "relations")]
    pub depends: Vec<Requirement>,
    /// Shell commands, run in order (`sh -ec`) in the source tree.
    pub build: Vec<String>,
    /// `PREFIX` (default [`DEFAULT_PREFIX`]).
    pub prefix: String,
    /// Globs (relative to DESTDIR) of the files kept; empty: all.
    pub install: Vec<String>,
    /// `file:line` of the table.
    #[serde(skip)]
    pub origin: String,
}

impl Component {
    /// `git URL@rev` or the tarball URL, for messages.
    pub fn source_label(&self) -> String {
        match &self.source {
            ComponentSource::Git { url, rev } => format!("{url}@{rev}"),
            ComponentSource::Tarball { url, .. } => url.clone(),
        }
    }
}

/// Relations hash by their parsed, re-rendered form (`a(>=1)` = `a (>= 1)`).
fn relations<S: serde::Serializer>(r: &[Requirement], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(r.iter().map(|r| r.dependency.to_string()))
}

/// Debian package names: `[a-z0-9][a-z0-9+.-]+`.
pub(crate) fn is_package_name(s: &str) -> bool {
    s.len() >= 2
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b))
}

fn relation_list(
    src: &SourceText<'_>,
    list: &[Spanned<String>],
) -> Result<Vec<Requirement>, RecipeError> {
    list.iter()
        .map(|r| {
            let dependency =
                Dependency::parse(r.get_ref()).map_err(|e| src.error(r.span(), e.to_string()))?;
            Ok(Requirement {
                text: r.get_ref().clone(),
                dependency,
                origin: src.origin(r.span().start),
            })
        })
        .collect()
}

/// A relative path pattern without `..` (globs are matched under DESTDIR).
fn valid_glob(g: &str) -> bool {
    let g = g.trim_start_matches('/');
    !g.is_empty() && !g.split('/').any(|c| c == ".." || c.is_empty()) && !g.contains('\0')
}

/// Validates one `[[component]]` table.
pub(super) fn parse(
    src: &SourceText<'_>,
    raw: &Spanned<RawComponent>,
) -> Result<Component, RecipeError> {
    let header = raw.span();
    let raw = raw.get_ref();
    let name = raw.name.get_ref().clone();
    if !is_package_name(&name) {
        return Err(src.error_hint(
            raw.name.span(),
            format!("invalid component name `{name}`"),
            Some(
                "it names the generated Debian package: lower case letters, digits, `+`, `-`, `.`"
                    .into(),
            ),
        ));
    }
    if let Some(v) = &raw.version {
        DebVersion::parse(v.get_ref())
            .map_err(|e| src.error(v.span(), format!("invalid version `{}`: {e}", v.get_ref())))?;
    }
    let url_of = |u: &Spanned<String>, schemes: &[&str]| -> Result<String, RecipeError> {
        let parsed = url::Url::parse(u.get_ref())
            .map_err(|e| src.error(u.span(), format!("invalid url `{}`: {e}", u.get_ref())))?;
        if !schemes.contains(&parsed.scheme()) {
            return Err(src.error_hint(
                u.span(),
                format!("unsupported url scheme `{}`", parsed.scheme()),
                Some(format!("use {}", schemes.join(", "))),
            ));
        }
        Ok(u.get_ref().clone())
    };
    let source = match (&raw.git, &raw.url) {
        (Some(_), Some(u)) => {
            return Err(src.error_hint(
                u.span(),
                format!("component `{name}` sets both `git` and `url`"),
                Some("keep exactly one source".into()),
            ));
        }
        (None, None) => {
            return Err(src.error_hint(
                header,
                format!("component `{name}` needs a source"),
                Some("`git = URL` with `rev`, or `url` of a tarball".into()),
            ));
        }
        (Some(g), None) => {
            let url = url_of(g, &["https", "http", "git", "ssh", "file"])?;
            let Some(rev) = &raw.rev else {
                return Err(src.error_hint(
                    g.span(),
                    format!("component `{name}`: `git` needs `rev`"),
                    Some("a tag, a branch or a commit; the lock pins the commit".into()),
                ));
            };
            let r = rev.get_ref();
            // Never an option to git, never a range or a reflog expression.
            let ok = !r.is_empty()
                && !r.starts_with('-')
                && !r.contains("..")
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/+".contains(&b));
            if !ok {
                return Err(src.error(rev.span(), format!("invalid git rev `{r}`")));
            }
            if let Some(s) = &raw.sha256 {
                return Err(src.error_hint(
                    s.span(),
                    "`sha256` is for `url` sources",
                    Some("a git source is pinned by its commit in the lock".into()),
                ));
            }
            ComponentSource::Git {
                url,
                rev: r.clone(),
            }
        }
        (None, Some(u)) => {
            if let Some(rev) = &raw.rev {
                return Err(src.error(rev.span(), "`rev` is for `git` sources"));
            }
            let url = url_of(u, &["https", "http", "file"])?;
            let sha256 = match &raw.sha256 {
                Some(s) if crate::core::digest::valid_sha256(s.get_ref()) => {
                    Some(s.get_ref().clone())
                }
                Some(s) => {
                    return Err(src.error(
                        s.span(),
                        format!(
                            "invalid sha256 `{}` (64 lower-case hex digits)",
                            s.get_ref()
                        ),
                    ));
                }
                None => None,
            };
            ComponentSource::Tarball { url, sha256 }
        }
    };
    if raw.build.get_ref().is_empty() {
        return Err(src.error(raw.build.span(), "`build` needs at least one command"));
    }
    let mut build = Vec::new();
    for c in raw.build.get_ref() {
        if c.get_ref().trim().is_empty() {
            return Err(src.error(c.span(), "empty build command"));
        }
        build.push(c.get_ref().clone());
    }
    let prefix = match &raw.prefix {
        Some(p) => {
            let v = p.get_ref();
            if !v.starts_with('/')
                || v.split('/').any(|c| c == "..")
                || v.contains(char::is_whitespace)
            {
                return Err(src.error(p.span(), format!("invalid prefix `{v}` (an absolute path)")));
            }
            v.trim_end_matches('/').to_string()
        }
        None => DEFAULT_PREFIX.to_string(),
    };
    let mut install = Vec::new();
    for g in &raw.install {
        if !valid_glob(g.get_ref()) {
            return Err(src.error(
                g.span(),
                format!(
                    "invalid install glob `{}` (a path under DESTDIR, no `..`)",
                    g.get_ref()
                ),
            ));
        }
        install.push(g.get_ref().trim_start_matches('/').to_string());
    }
    Ok(Component {
        name,
        version: raw.version.as_ref().map(|v| v.get_ref().clone()),
        source,
        build_depends: relation_list(src, &raw.build_depends)?,
        depends: relation_list(src, &raw.depends)?,
        build,
        prefix: if prefix.is_empty() {
            "/".into()
        } else {
            prefix
        },
        install,
        origin: src.origin(header.start),
    })
}

/// Merges a layer's components into `into` (parents first): a component of
/// the same name replaces the parent's in place.
pub(super) fn merge(into: &mut Vec<Component>, layer: &[Component]) {
    for c in layer {
        match into.iter_mut().find(|o| o.name == c.name) {
            Some(slot) => *slot = c.clone(),
            None => into.push(c.clone()),
        }
    }
}

/// Whether `path` (relative, `/`-separated) matches `glob`: `*` and `?`
/// within one path component, `**` across components; a glob matching a
/// directory keeps everything below it.
pub fn glob_match(glob: &str, path: &str) -> bool {
    fn rec(g: &[u8], p: &[u8]) -> bool {
        match g.split_first() {
            None => p.is_empty() || p.first() == Some(&b'/'),
            Some((b'*', rest)) if rest.first() == Some(&b'*') => {
                let rest = &rest[1..];
                let rest = rest.strip_prefix(b"/").unwrap_or(rest);
                (0..=p.len()).any(|i| (i == 0 || p[i - 1] == b'/') && rec(rest, &p[i..]))
                    || rec(rest, p)
            }
            Some((b'*', rest)) => {
                let mut i = 0;
                loop {
                    if rec(rest, &p[i..]) {
                        return true;
                    }
                    if i == p.len() || p[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
            Some((b'?', rest)) => p.first().is_some_and(|&c| c != b'/') && rec(rest, &p[1..]),
            Some((c, rest)) => p.first() == Some(c) && rec(rest, &p[1..]),
        }
    }
    rec(glob.as_bytes(), path.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::glob_match;
    use crate::recipe::{Recipe, RecipeError};

    fn parse(component: &str) -> Result<Recipe, RecipeError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.pgp"), b"k").unwrap();
        let text = format!(
            "architecture = \"amd64\"\n[[source]]\nname = \"m\"\nurl = \"http://127.0.0.1:9/\"\n\
             suite = \"/\"\ncomponents = []\nkeyring = \"k.pgp\"\n{component}"
        );
        Recipe::parse_str(&text, &dir.path().join("r.toml"))
    }

    const OK: &str = "[[component]]\nname = \"hello\"\ngit = \"https://example.org/hello\"\n\
                      rev = \"v1.0\"\nbuild-depends = [\"make (>= 4)\"]\ndepends = [\"libc6\"]\n\
                      build = [\"make\", \"make install\"]\n";

    #[test]
    fn parses_and_defaults() {
        let r = parse(OK).unwrap();
        let c = &r.components[0];
        assert_eq!(c.name, "hello");
        assert_eq!(c.prefix, "/usr/local");
        assert_eq!(c.build, ["make", "make install"]);
        assert_eq!(c.build_depends[0].dependency.to_string(), "make (>= 4)");
        assert!(c.origin.ends_with("r.toml:8"), "{}", c.origin);
        assert!(c.version.is_none());
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (OK.replace("rev = \"v1.0\"\n", ""), "needs `rev`"),
            (
                OK.replace("name = \"hello\"", "name = \"Hello\""),
                "invalid component name",
            ),
            (OK.replace("make (>= 4)", "make (>= )"), "r.toml:12:"),
            (
                OK.replace("depends = [\"libc6\"]", "depend = []"),
                "unknown key `depend`",
            ),
            (OK.replace("v1.0", "--upload-pack=x"), "invalid git rev"),
            (
                OK.replace("build = [\"make\", \"make install\"]", "build = []"),
                "at least one",
            ),
            (
                format!("{OK}install = [\"../etc\"]\n"),
                "invalid install glob",
            ),
            (
                format!("{OK}url = \"https://e/x.tgz\"\n"),
                "both `git` and `url`",
            ),
            (
                format!("{OK}version = \"not a version!\"\n"),
                "invalid version",
            ),
            (
                OK.replace("https://example.org/hello", "ftp://x/y"),
                "unsupported url scheme",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert!(e.contains("r.toml:"), "{e}");
        }
    }

    #[test]
    fn canonical_hash_covers_components() {
        let none = parse("").unwrap();
        let a = parse(OK).unwrap();
        assert_ne!(a.canonical_hash(), none.canonical_hash());
        let spaced = parse(&OK.replace("make (>= 4)", "make(>=4)")).unwrap();
        assert_eq!(a.canonical_hash(), spaced.canonical_hash());
        for change in [
            OK.replace("v1.0", "v1.1"),
            OK.replace("\"make install\"", "\"make install V=1\""),
            OK.replace("make (>= 4)", "make (>= 5)"),
            OK.replace("libc6", "libc6 (>= 2.36)"),
            format!("{OK}prefix = \"/usr\"\n"),
            format!("{OK}install = [\"usr/**\"]\n"),
        ] {
            let b = parse(&change).unwrap();
            assert_ne!(a.canonical_hash(), b.canonical_hash(), "{change}");
        }
        // Build settings of the image do not touch the lock's hash of components.
        assert_eq!(a.build_hash(), none.build_hash());
    }

    #[test]
    fn globs() {
        assert!(glob_match("usr/local/bin/*", "usr/local/bin/x"));
        // A matched directory keeps what is below it.
        assert!(glob_match("usr/local/bin/*", "usr/local/bin/x/y"));
        assert!(glob_match("usr/local/bin", "usr/local/bin/x"));
        assert!(glob_match("usr/**/*.so", "usr/lib/a/b/libx.so"));
        assert!(glob_match("**/*.so", "libx.so"));
        assert!(!glob_match("usr/*/x", "usr/a/b/x"));
        assert!(glob_match("usr/?", "usr/a"));
        assert!(!glob_match("usr/lib", "usr/libexec/x"));
        assert!(!glob_match("etc/*", "usr/etc/a"));
    }
}
