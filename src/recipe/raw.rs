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
    pub hostname: Option<Spanned<String>>,
    #[serde(default)]
    pub packages: Vec<Spanned<String>>,
    #[serde(default, rename = "source")]
    pub sources: Vec<Spanned<RawSource>>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<RawStep>>,
    pub onie: Option<Spanned<super::onie::RawOnie>>,
    pub python: Option<super::python::RawPython>,
    /// Debian packages of the locked tools tree (`tools = ["e2fsprogs"]`).
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    /// `[disk]`: a bootable raw disk image of the rootfs.
    pub disk: Option<Spanned<RawDisk>>,
    /// `[publish]`: repository name, version and labels for `imgbuild publish`.
    pub publish: Option<super::publish::RawPublish>,
    /// `[[component]]`: software built from pinned source.
    #[serde(default, rename = "component")]
    pub components: Vec<Spanned<super::component::RawComponent>>,
}

/// The `[disk]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawDisk {
    pub size: Spanned<String>,
    pub uuid: Option<Spanned<String>>,
    pub hash_seed: Option<Spanned<String>>,
}

/// One `[[step]]` table: every key optional here, exactly one action key is
/// checked in `parse.rs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawStep {
    pub copy: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    pub write: Option<Spanned<String>>,
    pub content: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    pub owner: Option<Spanned<String>>,
    pub run: Option<Spanned<Vec<Spanned<String>>>>,
    pub sysctl: Option<Spanned<std::collections::BTreeMap<String, Spanned<String>>>>,
    pub enable: Option<Spanned<Vec<Spanned<String>>>>,
    pub mask: Option<Spanned<Vec<Spanned<String>>>>,
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub uid: Option<Spanned<u32>>,
    pub gid: Option<Spanned<u32>>,
    pub groups: Option<Spanned<Vec<Spanned<String>>>>,
    pub shell: Option<Spanned<String>>,
    pub home: Option<Spanned<String>>,
    pub system: Option<Spanned<bool>>,
    pub password_hash: Option<Spanned<String>>,
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
    pub check_valid_until: Option<bool>,
    /// `snapshot = "YYYYMMDDTHHMMSSZ"`: read the archive as it was then.
    pub snapshot: Option<Spanned<String>>,
}
