//! Where the `pypi` index is served from. Like Debian archives, its URL is
//! configuration, never written in recipes or locks. First that answers:
//!
//! 1. `--mirror pypi=URL`,
//! 2. `IMGBUILD_MIRROR_PYPI`,
//! 3. the host's pip configuration: `PIP_INDEX_URL`, then `index-url` in
//!    `[global]` of `PIP_CONFIG_FILE` or the site, user and global
//!    `pip.conf` files (pip's precedence: site over user over global),
//! 4. pip's own built-in default index, asked of the host's pip at run time.

use std::path::{Path, PathBuf};
use std::process::Command;

use url::Url;

use super::error::{PypiError, Result, invalid};
use crate::archive::mirror::Mirrors;

/// The mirror name of the Python package index.
pub const INDEX_NAME: &str = "pypi";

/// Looks up an environment variable.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// `index-url` from the `[global]` (or `[install]`) section of a pip.conf.
fn conf_index_url(text: &str) -> Option<String> {
    let mut section = String::new();
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with(['#', ';']) || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_ascii_lowercase();
            continue;
        }
        if let Some((k, v)) = line.split_once(['=', ':'])
            && k.trim().replace('_', "-") == "index-url"
            && matches!(section.as_str(), "global" | "install")
        {
            found = Some(v.trim().to_string());
        }
    }
    found
}

/// pip's configuration files, lowest precedence first.
fn pip_conf_files(env: Env<'_>) -> Vec<PathBuf> {
    if let Some(f) = env("PIP_CONFIG_FILE").filter(|f| !f.is_empty()) {
        return vec![PathBuf::from(f)];
    }
    let mut out = vec![
        PathBuf::from("/etc/xdg/pip/pip.conf"),
        PathBuf::from("/etc/pip.conf"),
    ];
    if let Some(home) = env("HOME") {
        out.push(Path::new(&home).join(".pip/pip.conf"));
        let xdg = env("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(&home).join(".config"));
        out.push(xdg.join("pip/pip.conf"));
    }
    if let Some(venv) = env("VIRTUAL_ENV") {
        out.push(Path::new(&venv).join("pip.conf"));
    }
    out
}

/// pip's built-in default index, from the host's pip; `None` without one.
fn pip_default_index() -> Option<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "from pip._internal.models.index import PyPI; print(PyPI.simple_url)",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The index base URL (ending in `/`).
pub fn index_url(flags: &[String], env: Env<'_>) -> Result<Url> {
    let parse = |what: &str, text: &str| {
        crate::archive::mirror::base_url(text.trim())
            .map_err(|e| PypiError::Invalid(format!("{what}: `{text}`: {e}")))
    };
    for f in flags {
        if let Some((name, url)) = f.split_once('=')
            && name.trim() == INDEX_NAME
        {
            return parse("--mirror pypi", url);
        }
    }
    let var = Mirrors::env_var(INDEX_NAME);
    if let Some(v) = env(&var).filter(|v| !v.trim().is_empty()) {
        return parse(&var, v.split_whitespace().next().unwrap_or(""));
    }
    if let Some(v) = env("PIP_INDEX_URL").filter(|v| !v.trim().is_empty()) {
        return parse("PIP_INDEX_URL", &v);
    }
    let mut from_conf = None;
    for file in pip_conf_files(env) {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Some(u) = conf_index_url(&text)
        {
            from_conf = Some((file, u));
        }
    }
    if let Some((file, u)) = from_conf {
        return parse(&file.display().to_string(), &u);
    }
    match pip_default_index() {
        Some(u) => parse("pip's default index", &u),
        None => invalid!(
            "no index configured for `pypi`: pass --mirror pypi=URL, set {var} or PIP_INDEX_URL, \
             or install pip on this host (its default index is used)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        let none = |_: &str| None;
        let flags = vec!["pypi=http://127.0.0.1:9/simple".to_string()];
        assert_eq!(
            index_url(&flags, &none).unwrap().as_str(),
            "http://127.0.0.1:9/simple/"
        );
        let env = |k: &str| (k == "IMGBUILD_MIRROR_PYPI").then(|| "http://127.0.0.1:8/s/".into());
        assert_eq!(index_url(&[], &env).unwrap().port(), Some(8));
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("pip.conf");
        std::fs::write(&conf, "[global]\nindex-url = http://127.0.0.1:7/x\n").unwrap();
        let c = conf.display().to_string();
        let env = move |k: &str| (k == "PIP_CONFIG_FILE").then(|| c.clone());
        assert_eq!(index_url(&[], &env).unwrap().port(), Some(7));
        assert!(index_url(&["pypi=ftp://x/".into()], &none).is_err());
    }
}
