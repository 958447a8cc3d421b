//! The dpkg database of the image, written as dpkg itself would after
//! `dpkg --unpack` of every package, so that `dpkg --configure -a`, `dpkg -l`,
//! `dpkg -S` and `dpkg --verify` work inside the image:
//!
//! ```text
//! /var/lib/dpkg/status            one stanza per package (control + Status + Conffiles)
//! /var/lib/dpkg/available         empty (dpkg only reads it for dselect)
//! /var/lib/dpkg/arch              native architecture, then foreign ones
//! /var/lib/dpkg/diversions, statoverride   empty (scripts add to them)
//! /var/lib/dpkg/info/PKG.list     the paths the package installed
//! /var/lib/dpkg/info/PKG.*        every control member but `control` (md5sums,
//!                                 conffiles, maintainer scripts, triggers, shlibs…)
//! /var/lib/dpkg/triggers/File     file-trigger interests ("PATH PKG[/noawait]")
//! /var/lib/dpkg/triggers/NAME     explicit-trigger interests, one package a line
//! ```
//!
//! `PKG` is `NAME:ARCH` for `Multi-Arch: same` packages, as dpkg names them.
//! Every file appears by an atomic rename.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use md5::Digest as _;
use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::RootfsError;
use super::order::Pkg;

/// Directory of the dpkg database inside the image.
pub(crate) const ADMINDIR: &str = "var/lib/dpkg";

/// Creates the empty database skeleton and apt's state directories.
pub(crate) fn init(root: &Path, native: &str, foreign: &[String]) -> Result<(), RootfsError> {
    let admin = root.join(ADMINDIR);
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "var/lib/dpkg/alternatives",
        "var/lib/dpkg/parts",
        // apt's state, so that `apt-get update` works in the finished image.
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/log/apt",
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "etc/apt/sources.list.d",
        "etc/apt/trusted.gpg.d",
    ] {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(RootfsError::io(&path))?;
    }
    let mut arch = format!("{native}\n");
    for f in foreign {
        arch.push_str(f);
        arch.push('\n');
    }
    for (name, text) in [
        ("status", ""),
        ("available", ""),
        ("diversions", ""),
        ("statoverride", ""),
        ("arch", arch.as_str()),
        ("info/format", "1\n"),
        ("triggers/File", ""),
        ("triggers/Unincorp", ""),
    ] {
        write_atomic(&admin.join(name), text.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// Writes `info/`, `status` and `triggers/` for `pkgs`, whose files are
/// unpacked in `root` and listed (dpkg style) in `lists` (same order).
pub(crate) fn write(root: &Path, pkgs: &[Pkg], lists: &[Vec<String>]) -> Result<(), RootfsError> {
    let admin = root.join(ADMINDIR);
    let info = admin.join("info");
    let mut stanzas: Vec<(String, String, String)> = Vec::with_capacity(pkgs.len());
    let mut file_interests = Vec::new();
    let mut explicit: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (pkg, list) in pkgs.iter().zip(lists) {
        let stem = pkg.dpkg_name();
        let mut text = String::with_capacity(list.iter().map(|p| p.len() + 1).sum());
        for path in list {
            text.push_str(path);
            text.push('\n');
        }
        write_atomic(&info.join(format!("{stem}.list")), text.as_bytes(), 0o644)?;
        for (member, m) in pkg.control.members() {
            if member == "control" || member.contains('/') {
                continue;
            }
            let mode = if m.mode & 0o111 != 0 { 0o755 } else { 0o644 };
            write_atomic(&info.join(format!("{stem}.{member}")), &m.data, mode)?;
        }
        if pkg.control.md5sums().is_none() {
            // dpkg writes md5sums itself when a package ships none.
            let sums = compute_md5sums(root, list, &pkg.control.conffiles())?;
            write_atomic(
                &info.join(format!("{stem}.md5sums")),
                sums.as_bytes(),
                0o644,
            )?;
        }
        for (kind, name) in trigger_interests(pkg) {
            let who = if kind == "interest-noawait" {
                format!("{stem}/noawait")
            } else {
                stem.clone()
            };
            if name.starts_with('/') {
                file_interests.push(format!("{name} {who}\n"));
            } else {
                explicit.entry(name).or_default().push(format!("{who}\n"));
            }
        }
        stanzas.push((
            pkg.name.clone(),
            pkg.arch.clone(),
            status_stanza(root, pkg)?,
        ));
    }
    file_interests.sort();
    write_atomic(
        &admin.join("triggers/File"),
        file_interests.concat().as_bytes(),
        0o644,
    )?;
    for (name, who) in explicit {
        if name.contains('/') || name.starts_with('.') {
            continue;
        }
        write_atomic(
            &admin.join("triggers").join(name),
            who.concat().as_bytes(),
            0o644,
        )?;
    }
    // dpkg keeps status sorted by name, then architecture.
    stanzas.sort();
    let status: String = stanzas.into_iter().map(|(_, _, s)| s + "\n").collect();
    write_atomic(&admin.join("status"), status.as_bytes(), 0o644)
}

/// `(directive, trigger name)` for every `interest*` line of the package's
/// `triggers` member.
pub(crate) fn trigger_interests(pkg: &Pkg) -> Vec<(String, String)> {
    let Some(m) = pkg.control.get("triggers") else {
        return Vec::new();
    };
    String::from_utf8_lossy(&m.data)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (kind, name) = (words.next()?, words.next()?);
            kind.starts_with("interest")
                .then(|| (kind.to_string(), name.to_string()))
        })
        .collect()
}

/// The package's control stanza with `Status: install ok unpacked` after
/// `Package` and a `Conffiles` field (md5 of each conffile as unpacked)
/// before `Description`, where dpkg puts them.
fn status_stanza(root: &Path, pkg: &Pkg) -> Result<String, RootfsError> {
    let mut conffiles = String::new();
    for path in pkg.control.conffiles() {
        let Some(sum) = md5_in_root(root, &path)? else {
            continue;
        };
        conffiles.push_str(&format!(" {path} {sum}\n"));
    }
    let control = pkg.control.control().trim_end_matches(['\n', ' ', '\t']);
    let mut out = String::with_capacity(control.len() + conffiles.len() + 64);
    let mut conffiles_done = conffiles.is_empty();
    for line in control.lines().filter(|l| !l.trim().is_empty()) {
        if !conffiles_done && line.starts_with("Description:") {
            out.push_str("Conffiles:\n");
            out.push_str(&conffiles);
            conffiles_done = true;
        }
        out.push_str(line);
        out.push('\n');
        if line.starts_with("Package:") {
            out.push_str("Status: install ok unpacked\n");
        }
    }
    if !conffiles_done {
        out.push_str("Conffiles:\n");
        out.push_str(&conffiles);
    }
    Ok(out)
}

/// `md5  path` lines for the regular files of `list` that are not conffiles.
fn compute_md5sums(
    root: &Path,
    list: &[String],
    conffiles: &[String],
) -> Result<String, RootfsError> {
    let mut out = String::new();
    for path in list {
        if conffiles.iter().any(|c| c == path) {
            continue;
        }
        if let Some(sum) = md5_in_root(root, path)? {
            out.push_str(&format!("{sum}  {}\n", path.trim_start_matches('/')));
        }
    }
    Ok(out)
}

/// md5 (hex) of the regular file at `path` (absolute inside the image),
/// resolving symlinks inside `root` only; `None` when it is missing or not a
/// regular file.
pub(crate) fn md5_in_root(root: &Path, path: &str) -> Result<Option<String>, RootfsError> {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return Ok(None);
    }
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RootfsError::io(root)(e.into()))?;
    let fd = match rustix::fs::openat2(
        &root_fd,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
            return Ok(None);
        }
        Err(e) => return Err(RootfsError::io(&root.join(rel))(e.into())),
    };
    let mut file = fs::File::from(fd);
    let meta = file.metadata().map_err(RootfsError::io(&root.join(rel)))?;
    if !meta.is_file() {
        return Ok(None);
    }
    let mut hasher = md5::Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(RootfsError::io(&root.join(rel))(e)),
        }
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

/// Writes a file of the image atomically with `mode` (no fsync: the tree is
/// rebuilt from scratch if the build dies).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), RootfsError> {
    use crate::core::atomic::{Durability, write_atomic};
    write_atomic(path, bytes, mode, Durability::Atomic).map_err(RootfsError::io(path))
}

/// Reads the `status` file back: `(package, Status value)` per stanza.
pub(crate) fn read_status(root: &Path) -> Result<Vec<(String, String)>, RootfsError> {
    let path: PathBuf = root.join(ADMINDIR).join("status");
    let text = fs::read_to_string(&path).map_err(RootfsError::io(&path))?;
    let mut out = Vec::new();
    for stanza in crate::core::deb822::stanzas(&text) {
        let stanza = stanza.map_err(|e| RootfsError::io(&path)(io::Error::other(e)))?;
        let name = stanza.get("Package").unwrap_or_default();
        let arch = stanza.get("Architecture").unwrap_or_default();
        let status = stanza.get("Status").unwrap_or_default();
        out.push((format!("{name}:{arch}"), status.to_string()));
    }
    Ok(out)
}
