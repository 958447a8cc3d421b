//! A runnable fixture base system made from the host's own binaries, so that
//! offline tests can run the real maintainer-script path (the image's
//! `dpkg --configure -a`, `systemctl enable`, `useradd`) without the network.
//!
//! [`host_base`] packs a shell, coreutils, dpkg, systemctl and shadow's tools
//! plus every shared library they load (found with `ldd`) into one
//! `Essential: yes` package named `dpkg`, with a minimal `/etc` (passwd,
//! group, shadow, login.defs). A `usr-is-merged` package makes the assembly
//! create the merged-/usr links, under which every file is stored.
//!
//! Needs a Debian host with merged /usr and these programs (`ci/setup.sh`
//! installs them); a missing one is a test failure, not a skip.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::deb::DebSpec;

/// The programs the base provides (looked up in the host's PATH).
const PROGRAMS: &[&str] = &[
    "sh",
    "dash",
    "bash",
    "cat",
    "chmod",
    "cp",
    "date",
    "diff",
    "echo",
    "env",
    "find",
    "grep",
    "id",
    "ln",
    "ls",
    "mkdir",
    "mv",
    "rm",
    "rmdir",
    "sed",
    "sleep",
    "tar",
    "test",
    "touch",
    "true",
    "false",
    "dpkg",
    "dpkg-deb",
    "dpkg-query",
    "dpkg-trigger",
    "dpkg-divert",
    "dpkg-split",
    "dpkg-maintscript-helper",
    "ldconfig",
    "start-stop-daemon",
    "update-alternatives",
    "systemctl",
    "useradd",
    "groupadd",
    "usermod",
    "getent",
];

/// `/bin/x` → `/usr/bin/x` (and `/sbin`, `/lib`, `/lib64`): where a file lives
/// in a merged-/usr image.
fn merged(path: &str) -> String {
    for dir in ["/bin/", "/sbin/", "/lib/", "/lib64/"] {
        if let Some(rest) = path.strip_prefix(dir) {
            return format!("/usr{dir}{rest}");
        }
    }
    path.to_string()
}

/// Adds `path` (as named on the host) to `files`: the real file at its
/// canonical merged location, plus a symlink from the name if it differs.
fn add_path(files: &mut BTreeMap<String, Entry>, path: &str) {
    let canonical = fs::canonicalize(path).unwrap_or_else(|e| panic!("host {path}: {e}"));
    let canonical_str = canonical.to_str().expect("utf-8 host path");
    let target = merged(canonical_str);
    let name = merged(path);
    if !files.contains_key(&target) {
        let meta = fs::metadata(&canonical).unwrap();
        let bytes = fs::read(&canonical).unwrap_or_else(|e| panic!("host {canonical_str}: {e}"));
        files.insert(
            target.clone(),
            Entry::File(bytes, meta.permissions().mode() & 0o7777),
        );
    }
    if name != target {
        files.entry(name).or_insert(Entry::Link(target));
    }
}

/// The shared objects `binary` loads, as `ldd` names them.
fn libraries(binary: &str) -> Vec<String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .unwrap_or_else(|e| panic!("ldd {binary}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=> ") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

enum Entry {
    File(Vec<u8>, u32),
    Link(String),
}

/// The host's path of `program`, found in the usual directories.
fn which(program: &str) -> String {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let p = format!("{dir}/{program}");
        if Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{program} is not installed on this host (see ci/setup.sh)")
}

/// The host's dpkg version (the fixture `dpkg` package carries it, so that
/// `DPKG_RUNNING_VERSION` is right).
fn host_dpkg_version() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "dpkg"])
        .output()
        .expect("dpkg-query");
    String::from_utf8(out.stdout).unwrap()
}

/// `usr-is-merged` (empty) and `dpkg` (the runnable base), both essential.
pub fn host_base() -> Vec<DebSpec> {
    let mut files = BTreeMap::new();
    for program in PROGRAMS {
        let path = which(program);
        add_path(&mut files, &path);
        for lib in libraries(&path) {
            add_path(&mut files, &lib);
        }
    }
    let mut dpkg = DebSpec::new("dpkg", &host_dpkg_version(), "amd64")
        .essential()
        .priority("required")
        .file("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .file("/etc/group", "root:x:0:\nsudo:x:27:\n", 0o644)
        .file("/etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640)
        .file("/etc/gshadow", "root:*::\nsudo:*::\n", 0o640)
        .file("/etc/login.defs", LOGIN_DEFS, 0o644)
        .file("/etc/skel/.profile", "# fixture skel\n", 0o644)
        // gzip: this member is tens of MiB and xz would dominate the test.
        .gzip();
    for (path, entry) in files {
        dpkg = match entry {
            Entry::File(bytes, mode) => dpkg.file(&path, bytes, mode),
            Entry::Link(target) => dpkg.symlink(&path, &target),
        };
    }
    vec![
        DebSpec::new("usr-is-merged", "39", "all").priority("required"),
        dpkg,
    ]
}

/// What useradd needs from login.defs (uid/gid ranges, no mail spool).
const LOGIN_DEFS: &str = "UID_MIN 1000\nUID_MAX 60000\nSYS_UID_MIN 100\nSYS_UID_MAX 999\n\
GID_MIN 1000\nGID_MAX 60000\nSYS_GID_MIN 100\nSYS_GID_MAX 999\nCREATE_HOME yes\n\
USERGROUPS_ENAB yes\nENCRYPT_METHOD SHA512\n";
