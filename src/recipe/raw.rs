//! The recipe file as written: one serde field per TOML key.
//!
//! Adding a key to the recipe format is one line here (plus its validation in
//! `parse.rs`); `deny_unknown_fields` makes every other key an error with a
//! span, which `error.rs` turns into `file:line:col` and a did-you-mean hint.
//! Values are [`Spanned`] where an error may need to point at them.

use serde::Deserialize;
use toml::Spanned;

/// Top-level keys of `recipes/NAME.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawRecipe {
    pub name: Option<Spanned<String>>,
    pub architecture: Option<Spanned<String>>,
    #[serde(default)]
    pub foreign_architectures: Vec<Spanned<String>>,
    pub extends: Option<Spanned<String>>,
    pub essential: Option<bool>,
    pub recommends: Option<bool>,
    #[serde(default)]
    pub packages: Vec<Spanned<String>>,
    #[serde(default, rename = "source")]
    pub sources: Vec<Spanned<RawSource>>,
}

/// One `[[source]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSource {
    pub name: Spanned<String>,
    pub archive: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub suite: Spanned<String>,
    pub components: Option<Spanned<Vec<Spanned<String>>>>,
    pub keyring: Spanned<String>,
    pub priority: Option<i32>,
}
