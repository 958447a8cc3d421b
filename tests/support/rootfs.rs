//! The rootfs assembly tests' fixture: a store and a lock made from fixture
//! .debs, a small "distribution", and listings of assembled trees.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::*;
use imgbuild::fetch::Store;
use imgbuild::lock::{LockedEdge, LockedPackage, LockedRecipe, LockedSource, Lockfile};
use imgbuild::rootfs::{self, AssembleOptions, RootfsError};
use imgbuild::sandbox::{self, SandboxSpec};
use sha2::{Digest, Sha256};

pub const EPOCH: i64 = 1_600_000_000;

/// A store and a lock made from fixture specs, with `edges` per package.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub lock: Lockfile,
}

impl Fixture {
    pub fn new(specs: &[(DebSpec, &[(&str, &str)])]) -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("imgbuild-rootfs-")
            .tempdir()
            .unwrap();
        let store = Store::open(&tmp.path().join("vendor")).unwrap();
        let mut packages = Vec::new();
        for (spec, edges) in specs {
            let bytes = spec.build();
            let sha256 = hex::encode(Sha256::digest(&bytes));
            let path = store.path_of(&sha256);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &bytes).unwrap();
            packages.push(LockedPackage {
                name: spec.name.clone(),
                version: spec.version.clone(),
                architecture: spec.architecture.clone(),
                source: "test".into(),
                filename: format!("pool/main/{}", spec.file_name()),
                size: bytes.len() as u64,
                sha256,
                reason: None,
                depends: edges
                    .iter()
                    .map(|(kind, name)| LockedEdge {
                        name: name.to_string(),
                        relation: name.to_string(),
                        kind: kind.to_string(),
                    })
                    .collect(),
            });
        }
        let mut lock = Lockfile {
            version: 1,
            recipe: LockedRecipe {
                name: "fixture".into(),
                hash: "sha256:00".into(),
                architecture: "amd64".into(),
            },
            sources: vec![LockedSource {
                name: "test".into(),
                suite: "test".into(),
                inrelease_sha256: "00".into(),
                date: "Sun, 13 Sep 2020 12:26:40 UTC".into(),
                snapshot: None,
                signed_by: "00".into(),
                indexes: Vec::new(),
            }],
            packages,
            python: vec![],
            tools: Vec::new(),
            components: Vec::new(),
        };
        lock.sort_packages();
        fs::create_dir(tmp.path().join("root")).unwrap();
        Fixture { tmp, lock }
    }
    pub fn store(&self) -> Store {
        Store::open(&self.tmp.path().join("vendor")).unwrap()
    }
    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    pub fn assemble(&self) -> Result<rootfs::AssembleReport, RootfsError> {
        let opts = AssembleOptions {
            source_date_epoch: EPOCH,
            hostname: "fixture-host".into(),
            run_scripts: false,
        };
        rootfs::assemble(&self.lock, &self.store(), &self.root(), &opts)
    }
    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

/// A small "distribution": an essential package with its own pre-dependency,
/// a usr-is-merged marker, and optional packages with a pre-depends chain.
pub fn distro() -> Vec<(DebSpec, &'static [(&'static str, &'static str)])> {
    vec![
        (
            DebSpec::new("app", "1.0", "amd64")
                .file("/usr/bin/app", "app\n", 0o755)
                .file("/etc/app.conf", "answer=42\n", 0o644)
                .control_member("conffiles", "/etc/app.conf\n")
                .script("postinst", "#!/bin/sh\nexit 0\n")
                .control_member("triggers", "interest-noawait /usr/share/app-plugins\n")
                .pre_depends("helper"),
            &[("pre-depends", "helper"), ("depends", "libfoo")],
        ),
        (
            DebSpec::new("helper", "2.0", "all")
                .file("/usr/share/helper/tool", "t\n", 0o755)
                .pre_depends("libfoo"),
            &[("pre-depends", "libfoo")],
        ),
        (
            DebSpec::new("libfoo", "1.2-3", "amd64")
                .multi_arch("same")
                .file("/usr/lib/x86_64-linux-gnu/libfoo.so.1", "ELF\n", 0o644)
                .control_member("triggers", "activate-noawait ldconfig\n"),
            &[],
        ),
        (
            DebSpec::new("zbase", "1", "amd64")
                .essential()
                .file("/bin/zsh-like", "#!\n", 0o755)
                .file("/etc/zbase", "z\n", 0o644)
                .pre_depends("zlib"),
            &[("pre-depends", "zlib")],
        ),
        (
            DebSpec::new("zlib", "1", "amd64")
                .priority("required")
                .file("/lib/x86_64-linux-gnu/libz.so.1", "z\n", 0o644)
                .control_member("triggers", "interest-await ldconfig\n"),
            &[],
        ),
        (
            DebSpec::new("usr-is-merged", "37", "all").file(
                "/usr/share/doc/usr-is-merged/x",
                "m",
                0o644,
            ),
            &[],
        ),
    ]
}

/// Every path under `root` with its mtime (no symlinks followed).
pub fn walk(root: &Path) -> Vec<(PathBuf, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
        out.push((p, m.mtime()));
    }
    out
}

/// `path → (mode, uid, gid, size, mtime, sha256 or link target)` of a tree.
pub fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (p, mtime) in walk(root) {
        let m = fs::symlink_metadata(&p).unwrap();
        let content = if m.file_type().is_symlink() {
            fs::read_link(&p).unwrap().display().to_string()
        } else if m.is_file() {
            hex::encode(Sha256::digest(fs::read(&p).unwrap()))
        } else {
            String::new()
        };
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        // A directory's st_size is the filesystem's allocation, not content
        // (tar records 0): the same entries can give 65536 or 69632 bytes.
        let size = if m.is_dir() { 0 } else { m.len() };
        out.insert(
            rel,
            format!(
                "{:o} {}:{} {} {mtime} {content}",
                m.mode(),
                m.uid(),
                m.gid(),
                size
            ),
        );
    }
    out
}
