//! Turning recipe files into a [`Recipe`]: validate each file on its own
//! (a [`Layer`]), follow `extends`, then merge the layers parents first.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{RecipeError, SourceText};
use super::raw::RawRecipe;
use super::{Recipe, Requirement, Source, Step};
use crate::core::relation::Dependency;

/// A byte range in a recipe file.
pub(super) type Span = std::ops::Range<usize>;

/// Priority of a source that does not set one (apt's default pin).
pub const DEFAULT_PRIORITY: i32 = 500;

/// Reads recipe files and names them in errors relative to the workspace.
pub(super) struct Loader<'w> {
    /// When set, files inside it are displayed relative to it (`recipes/x.toml`).
    pub workspace: Option<&'w Path>,
}

/// One recipe file, validated but not merged with its parents.
struct Layer {
    path: PathBuf,
    file: String,
    text: String,
    name: String,
    architecture: Option<Spanned<String>>,
    foreign_architectures: Vec<String>,
    extends: Option<Spanned<String>>,
    essential: Option<bool>,
    recommends: Option<bool>,
    hostname: Option<String>,
    packages: Vec<Requirement>,
    sources: Vec<Source>,
    steps: Vec<Step>,
    python: Option<super::python::PythonSpec>,
    tools: Vec<Requirement>,
    disk: Option<super::disk::DiskLayer>,
    /// `[onie]` and the span of its table (for the architecture check at merge).
    onie: Option<(super::onie::Onie, Span)>,
    publish: Option<super::publish::Publish>,
    components: Vec<super::Component>,
}

impl Layer {
    fn src(&self) -> SourceText<'_> {
        SourceText {
            file: &self.file,
            text: &self.text,
        }
    }
}

/// Names that end up in file names: recipe names, `extends`, archive and source names.
pub(super) fn is_simple_name(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

/// Debian architecture names (`amd64`, `arm64`, `i386`, `hurd-i386`).
pub(super) fn is_arch_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Loader<'_> {
    /// How `path` is shown in errors and origins.
    pub fn display(&self, path: &Path) -> String {
        if let Some(ws) = self.workspace
            && let (Ok(p), Ok(w)) = (std::path::absolute(path), std::path::absolute(ws))
            && let Ok(rel) = p.strip_prefix(&w)
        {
            return rel.display().to_string();
        }
        path.display().to_string()
    }

    /// Loads the recipe file at `path` and everything it extends.
    pub fn load_file(&self, path: &Path) -> Result<Recipe, RecipeError> {
        let text = read_recipe(path).map_err(|error| RecipeError::Io {
            file: self.display(path),
            error,
        })?;
        self.load_text(text, path)
    }

    /// Parses `text` as the recipe at `path`, loading parents from disk.
    pub fn load_text(&self, text: String, path: &Path) -> Result<Recipe, RecipeError> {
        let mut layers = vec![self.layer(text, path)?];
        let mut seen = vec![std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())];
        while let Some(parent) = layers.last().and_then(|l| l.extends.clone()) {
            let child = layers.last().expect("non-empty");
            let span = parent.span();
            let parent = parent.into_inner();
            let parent_path = dir_of(&child.path).join(format!("{parent}.toml"));
            let abs = std::path::absolute(&parent_path).unwrap_or_else(|_| parent_path.clone());
            if seen.contains(&abs) {
                let mut chain: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
                chain.push(&parent);
                return Err(child
                    .src()
                    .error(span, format!("`extends` cycle: {}", chain.join(" → "))));
            }
            if !parent_path.is_file() {
                return Err(child.src().error_hint(
                    span,
                    format!(
                        "extends `{parent}`, but {} does not exist",
                        self.display(&parent_path)
                    ),
                    Some("`extends` names a recipe in the same directory".into()),
                ));
            }
            let text = read_recipe(&parent_path).map_err(|error| RecipeError::Io {
                file: self.display(&parent_path),
                error,
            })?;
            layers.push(self.layer(text, &parent_path)?);
            seen.push(abs);
        }
        merge(layers)
    }

    /// Parses and validates one file on its own.
    fn layer(&self, text: String, path: &Path) -> Result<Layer, RecipeError> {
        let file = self.display(path);
        let src = SourceText {
            file: &file,
            text: &text,
        };
        let raw: RawRecipe = toml::from_str(&text).map_err(|e| src.toml_error(&e))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match &raw.name {
            Some(n) if *n.get_ref() != stem => {
                return Err(src.error_hint(
                    n.span(),
                    format!(
                        "name `{}` does not match the file name `{stem}.toml`",
                        n.get_ref()
                    ),
                    Some("rename the file, or drop `name` (it defaults to the file name)".into()),
                ));
            }
            _ => stem,
        };
        if let Some(a) = &raw.architecture
            && !is_arch_name(a.get_ref())
        {
            return Err(src.error(a.span(), format!("invalid architecture `{}`", a.get_ref())));
        }
        let mut foreign_architectures = Vec::new();
        for a in &raw.foreign_architectures {
            if !is_arch_name(a.get_ref()) {
                return Err(src.error(a.span(), format!("invalid architecture `{}`", a.get_ref())));
            }
            if raw.architecture.as_ref().map(|p| p.get_ref()) == Some(a.get_ref()) {
                return Err(src.error(
                    a.span(),
                    format!(
                        "`{}` is the primary architecture, not a foreign one",
                        a.get_ref()
                    ),
                ));
            }
            if !foreign_architectures.contains(a.get_ref()) {
                foreign_architectures.push(a.get_ref().clone());
            }
        }
        if let Some(e) = &raw.extends
            && !is_simple_name(e.get_ref())
        {
            return Err(src.error_hint(
                e.span(),
                format!("invalid `extends` value `{}`", e.get_ref()),
                Some("give the name of a recipe in the same directory, without `.toml`".into()),
            ));
        }
        let mut packages = Vec::new();
        for p in &raw.packages {
            let dependency =
                Dependency::parse(p.get_ref()).map_err(|e| src.error(p.span(), e.to_string()))?;
            packages.push(Requirement {
                text: p.get_ref().clone(),
                dependency,
                origin: src.origin(p.span().start),
            });
        }
        let mut sources: Vec<Source> = Vec::new();
        let mut source_lines = Vec::new();
        for s in &raw.sources {
            let source = self.source(&src, path, s)?;
            if let Some(i) = sources.iter().position(|o| o.name == source.name) {
                return Err(src.error_hint(
                    s.get_ref().name.span(),
                    format!("duplicate source name `{}`", source.name),
                    Some(format!("first defined at line {}", source_lines[i])),
                ));
            }
            source_lines.push(super::error::line_col(&text, s.get_ref().name.span().start).0);
            sources.push(source);
        }
        if let Some(h) = &raw.hostname {
            let v = h.get_ref();
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            if !v.is_empty() && !v.split('.').all(label_ok) {
                return Err(src.error(
                    h.span(),
                    format!("invalid hostname `{v}` (letters, digits, `-`, dots; \"\" for none)"),
                ));
            }
        }
        let steps = raw
            .steps
            .iter()
            .map(|s| self.step(&src, path, s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tools = Vec::new();
        for t in &raw.tools {
            let dependency =
                Dependency::parse(t.get_ref()).map_err(|e| src.error(t.span(), e.to_string()))?;
            tools.push(Requirement {
                text: t.get_ref().clone(),
                dependency,
                origin: src.origin(t.span().start),
            });
        }
        let python = match &raw.python {
            Some(p) => Some(super::python::layer(&src, p)?),
            None => None,
        };
        let disk = raw
            .disk
            .as_ref()
            .map(|d| super::disk::layer(&src, d))
            .transpose()?;
        let onie = match &raw.onie {
            Some(o) => Some((super::onie::parse(&src, o)?, o.span())),
            None => None,
        };
        let publish = raw
            .publish
            .as_ref()
            .map(|p| super::publish::parse(&src, p))
            .transpose()?;
        let mut components: Vec<super::Component> = Vec::new();
        for c in &raw.components {
            let parsed = super::component::parse(&src, c)?;
            if components.iter().any(|o| o.name == parsed.name) {
                return Err(src.error(
                    c.get_ref().name.span(),
                    format!("duplicate component name `{}`", parsed.name),
                ));
            }
            components.push(parsed);
        }
        Ok(Layer {
            publish,
            components,
            onie,
            steps,
            python,
            tools,
            disk,
            path: path.to_path_buf(),
            name,
            architecture: raw.architecture,
            foreign_architectures,
            extends: raw.extends,
            essential: raw.essential,
            recommends: raw.recommends,
            hostname: raw.hostname.map(|h| h.into_inner()),
            packages,
            sources,
            file,
            text,
        })
    }
}

/// A recipe file's text: a regular file of at most
/// [`MAX_RECIPE`](crate::core::bounded::MAX_RECIPE) bytes, UTF-8.
fn read_recipe(path: &Path) -> std::io::Result<String> {
    let bytes = crate::core::bounded::read_regular(path, crate::core::bounded::MAX_RECIPE)?;
    String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))
}

/// The directory holding `path` (`.` for a bare file name).
pub(super) fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The `[onie]` platforms must be of the recipe's architecture
/// (`x86_64-…` for amd64).
fn check_onie_arch(
    layer: &Layer,
    onie: &super::onie::Onie,
    span: Span,
    architecture: &str,
) -> Result<super::onie::Onie, RecipeError> {
    let Some(arch) = super::onie::onie_arch(architecture) else {
        return Err(layer.src().error(
            span,
            format!("`[onie]` is not supported for architecture `{architecture}`"),
        ));
    };
    let prefix = format!("{arch}-");
    if let Some(p) = onie.platforms.iter().find(|p| !p.name.starts_with(&prefix)) {
        return Err(layer.src().error(
            span,
            format!(
                "ONIE platform `{}` is not an `{arch}` platform (architecture `{architecture}`)",
                p.name
            ),
        ));
    }
    Ok(onie.clone())
}

/// Merges `layers` (leaf first, as loaded) into one recipe, parents first.
fn merge(layers: Vec<Layer>) -> Result<Recipe, RecipeError> {
    let mut architecture: Option<(String, String)> = None; // (value, origin)
    let mut foreign_architectures: Vec<String> = Vec::new();
    let mut essential = None;
    let mut recommends = None;
    let mut hostname = None;
    let mut sources: Vec<Source> = Vec::new();
    let mut packages: Vec<Requirement> = Vec::new();
    let mut seen_packages = HashSet::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut python = None;
    let mut tools: Vec<Requirement> = Vec::new();
    let mut seen_tools = HashSet::new();
    let mut disk: Option<super::disk::DiskLayer> = None;
    let mut onie: Option<(&Layer, &super::onie::Onie, Span)> = None;
    let mut publish = super::publish::Publish::default();
    let mut components = Vec::new();
    for layer in layers.iter().rev() {
        if let Some(p) = &layer.publish {
            publish = publish.overridden_by(p);
        }
        super::component::merge(&mut components, &layer.components);
        if let Some(p) = &layer.python {
            super::python::merge(&mut python, p);
        }
        if let Some((o, span)) = &layer.onie {
            onie = Some((layer, o, span.clone()));
        }
        steps.extend(layer.steps.iter().cloned());
        for t in &layer.tools {
            if seen_tools.insert(t.dependency.to_string()) {
                tools.push(t.clone());
            }
        }
        // A child's `[disk]` keys override its parent's, key by key.
        if let Some(d) = &layer.disk {
            disk = Some(match disk {
                Some(parent) => parent.overridden_by(d),
                None => d.clone(),
            });
        }
        if let Some(a) = &layer.architecture {
            match &architecture {
                Some((prev, origin)) if prev != a.get_ref() => {
                    return Err(layer.src().error(
                        a.span(),
                        format!(
                            "architecture `{}` differs from `{prev}` set in {origin}",
                            a.get_ref()
                        ),
                    ));
                }
                _ => architecture = Some((a.get_ref().clone(), layer.src().origin(a.span().start))),
            }
        }
        for f in &layer.foreign_architectures {
            if !foreign_architectures.contains(f) {
                foreign_architectures.push(f.clone());
            }
        }
        essential = layer.essential.or(essential);
        recommends = layer.recommends.or(recommends);
        hostname = layer.hostname.clone().or(hostname);
        for s in &layer.sources {
            // A child's source replaces its parent's in place, so that
            // overriding e.g. a mirror URL keeps the source order stable.
            match sources.iter_mut().find(|o| o.name == s.name) {
                Some(slot) => *slot = s.clone(),
                None => sources.push(s.clone()),
            }
        }
        for p in &layer.packages {
            if seen_packages.insert(p.dependency.to_string()) {
                packages.push(p.clone());
            }
        }
    }
    let onie = match (onie, &architecture) {
        (Some((layer, o, span)), Some((arch, _))) => Some(check_onie_arch(layer, o, span, arch)?),
        _ => None,
    };
    let leaf = layers.into_iter().next().expect("at least the leaf");
    let Some((architecture, _)) = architecture else {
        return Err(leaf.src().error_hint(
            0..0,
            "missing required key `architecture`",
            Some("set it here or in the recipe this one extends".into()),
        ));
    };
    if sources.is_empty() {
        return Err(leaf.src().error_hint(
            0..0,
            "recipe has no `[[source]]`",
            Some("add one here or in the recipe this one extends".into()),
        ));
    }
    foreign_architectures.retain(|f| *f != architecture);
    let disk = disk.map(|d| d.finish(&leaf.name));
    Ok(Recipe {
        publish,
        components,
        tools,
        disk,
        onie,
        name: leaf.name,
        path: leaf.path,
        architecture,
        foreign_architectures,
        sources,
        packages,
        essential: essential.unwrap_or(true),
        recommends: recommends.unwrap_or(false),
        hostname,
        steps,
        python,
    })
}
