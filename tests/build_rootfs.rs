//! rootfs assembly on fixture .debs (offline, no shell needed in the image:
//! `run_scripts: false`): refusal of a missing blob, unpack order w.r.t.
//! Pre-Depends and the base set, merged /usr, the dpkg database, overlaps
//! with Replaces, normalisation. Fixture: `tests/support/rootfs.rs`.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use imgbuild::rootfs::{self, RootfsError};
use sha2::Digest;
use support::rootfs::*;
use support::*;

#[test]
fn a_missing_blob_is_refused_with_the_fetch_command() {
    let fx = Fixture::new(&distro());
    let gone = fx.lock.package("helper").unwrap().sha256.clone();
    fs::remove_file(fx.store().path_of(&gone)).unwrap();
    let err = fx.assemble().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RootfsError::Missing(_)), "{text}");
    assert!(text.contains("helper 2.0 all"), "{text}");
    assert!(text.contains("imgbuild fetch fixture"), "{text}");
    assert!(
        fs::read_dir(fx.root()).unwrap().next().is_none(),
        "nothing may be written"
    );
}

#[test]
fn the_destination_must_be_empty() {
    let fx = Fixture::new(&distro());
    fs::write(fx.root().join("stale"), "x").unwrap();
    let err = fx.assemble().unwrap_err();
    assert!(matches!(err, RootfsError::Destination { .. }), "{err}");
}

#[test]
fn base_set_first_then_pre_dependencies_before_dependants() {
    let fx = Fixture::new(&distro());
    let report = fx.assemble().unwrap();
    assert_eq!(report.packages, 6);
    // zbase is essential, zlib required; zbase pre-depends on zlib.
    assert_eq!(report.base, ["zlib:amd64", "zbase:amd64"]);
    let order = &report.unpack_order;
    let pos = |p: &str| {
        order
            .iter()
            .position(|x| x == p)
            .unwrap_or_else(|| panic!("{p} in {order:?}"))
    };
    assert!(pos("zbase:amd64") < pos("app:amd64"));
    assert!(pos("libfoo:amd64") < pos("helper:all"), "{order:?}");
    assert!(pos("helper:all") < pos("app:amd64"), "{order:?}");
    assert!(report.scripts.is_empty());
    let names: Vec<&str> = report.phases.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["check", "control", "unpack", "database", "normalize"]
    );
}

#[test]
fn merged_usr_links_come_first_and_packages_install_through_them() {
    let fx = Fixture::new(&distro());
    let report = fx.assemble().unwrap();
    assert!(report.merged_usr);
    for dir in ["bin", "sbin", "lib", "lib64"] {
        let link = fs::read_link(fx.root().join(dir)).unwrap();
        assert_eq!(link, Path::new("usr").join(dir));
    }
    // /bin/zsh-like landed in /usr/bin through the link.
    assert!(fx.root().join("usr/bin/zsh-like").is_file());
    assert!(
        fx.root()
            .join("usr/lib/x86_64-linux-gnu/libz.so.1")
            .is_file()
    );
}

#[test]
fn without_usr_is_merged_no_links_are_made() {
    let mut specs = distro();
    specs.retain(|(s, _)| s.name != "usr-is-merged");
    let fx = Fixture::new(&specs);
    let report = fx.assemble().unwrap();
    assert!(!report.merged_usr);
    assert!(
        fs::symlink_metadata(fx.root().join("bin"))
            .unwrap()
            .is_dir()
    );
}

#[test]
fn the_dpkg_database_is_complete() {
    let fx = Fixture::new(&distro());
    fx.assemble().unwrap();
    let status = fx.read("var/lib/dpkg/status");
    // Sorted by name, each unpacked, control fields kept.
    let names: Vec<&str> = status
        .lines()
        .filter_map(|l| l.strip_prefix("Package: "))
        .collect();
    assert_eq!(
        names,
        ["app", "helper", "libfoo", "usr-is-merged", "zbase", "zlib"]
    );
    let app = status
        .split("\n\n")
        .find(|s| s.starts_with("Package: app\n"))
        .unwrap();
    let lines: Vec<&str> = app.lines().collect();
    assert_eq!(lines[1], "Status: install ok unpacked");
    assert!(app.contains("Pre-Depends: helper\n"), "{app}");
    // Conffiles with the md5 of the file as unpacked, before Description.
    let md5 = hex::encode(md5::Md5::digest(b"answer=42\n"));
    let conf = app
        .find(&format!("Conffiles:\n /etc/app.conf {md5}\n"))
        .expect(app);
    assert!(conf < app.find("Description:").unwrap(), "{app}");
    // Lists, md5sums, scripts; Multi-Arch: same packages as NAME:ARCH.
    let list = fx.read("var/lib/dpkg/info/app.list");
    assert!(list.starts_with("/.\n"), "{list}");
    assert!(list.lines().any(|l| l == "/usr/bin/app"), "{list}");
    assert!(list.lines().any(|l| l == "/etc/app.conf"), "{list}");
    assert!(
        fx.read("var/lib/dpkg/info/libfoo:amd64.list")
            .contains("/usr/lib/x86_64-linux-gnu/libfoo.so.1\n")
    );
    assert!(!fx.root().join("var/lib/dpkg/info/libfoo.list").exists());
    assert!(
        fx.read("var/lib/dpkg/info/app.md5sums")
            .contains("usr/bin/app\n")
    );
    assert_eq!(
        fx.read("var/lib/dpkg/info/app.conffiles"),
        "/etc/app.conf\n"
    );
    let postinst = fx.root().join("var/lib/dpkg/info/app.postinst");
    assert_eq!(fs::metadata(&postinst).unwrap().mode() & 0o777, 0o755);
    assert!(!fx.root().join("var/lib/dpkg/info/app.control").exists());
    // Trigger interests as dpkg records them.
    assert_eq!(
        fx.read("var/lib/dpkg/triggers/File"),
        "/usr/share/app-plugins app/noawait\n"
    );
    assert_eq!(fx.read("var/lib/dpkg/triggers/ldconfig"), "zlib\n");
    // The rest of the skeleton, and apt's state directories.
    assert_eq!(fx.read("var/lib/dpkg/arch"), "amd64\n");
    for empty in [
        "available",
        "diversions",
        "statoverride",
        "triggers/Unincorp",
    ] {
        assert_eq!(fx.read(&format!("var/lib/dpkg/{empty}")), "", "{empty}");
    }
    for dir in [
        "var/lib/dpkg/updates",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
    ] {
        assert!(fx.root().join(dir).is_dir(), "{dir}");
    }
}

#[test]
fn the_host_dpkg_reads_the_database() {
    // An independent judge: the host's dpkg-query on the image's admindir.
    let fx = Fixture::new(&distro());
    fx.assemble().unwrap();
    let admindir = fx.root().join("var/lib/dpkg");
    let Ok(out) = std::process::Command::new("dpkg-query")
        .arg(format!("--admindir={}", admindir.display()))
        .args(["-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n"])
        .output()
    else {
        eprintln!("skipped: no dpkg-query on this host");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.trim_end() == "app 1.0 iU"), "{text}");
    assert_eq!(text.lines().count(), 6, "{text}");
    let out = std::process::Command::new("dpkg-query")
        .arg(format!("--admindir={}", admindir.display()))
        .args(["-S", "/usr/bin/app"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "app: /usr/bin/app\n");
}

#[test]
fn overlapping_files_belong_to_the_replacer() {
    let mut specs = distro();
    specs.push((
        // Unpacked before `newtool` (lock order), which takes over its file.
        DebSpec::new("aoldtool", "1", "amd64").file("/usr/bin/tool", "old\n", 0o755),
        &[],
    ));
    specs.push((
        DebSpec::new("newtool", "1", "amd64")
            .file("/usr/bin/tool", "new\n", 0o755)
            .replaces("aoldtool"),
        &[],
    ));
    let fx = Fixture::new(&specs);
    let report = fx.assemble().unwrap();
    assert_eq!(fx.read("usr/bin/tool"), "new\n");
    assert!(
        !fx.read("var/lib/dpkg/info/aoldtool.list")
            .contains("/usr/bin/tool\n")
    );
    assert!(
        fx.read("var/lib/dpkg/info/newtool.list")
            .contains("/usr/bin/tool\n")
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn overlaps_without_replaces_are_reported() {
    let mut specs = distro();
    specs.push((
        DebSpec::new("clash", "1", "amd64").file("/usr/bin/app", "other\n", 0o755),
        &[],
    ));
    let fx = Fixture::new(&specs);
    let report = fx.assemble().unwrap();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("/usr/bin/app"),
        "{:?}",
        report.warnings
    );
}

#[test]
fn normalisation_resets_build_state_and_clamps_mtimes() {
    let fx = Fixture::new(&distro());
    let root = fx.root();
    // Pre-made build debris a run would leave (the destination must be
    // empty before assembly, so normalise again afterwards).
    fx.assemble().unwrap();
    for (rel, body) in [
        ("etc/machine-id", "0123456789abcdef\n"),
        ("var/lib/dbus/machine-id", "0123\n"),
        ("var/log/dpkg.log", "log\n"),
        ("var/log/apt/history.log", "log\n"),
        ("var/log/alternatives.log", "log\n"),
        ("var/cache/ldconfig/aux-cache", "c"),
        ("var/cache/debconf/config.dat-old", "c"),
        ("var/lib/dpkg/status-old", "s"),
        ("etc/ssh/ssh_host_ed25519_key", "k"),
        (
            "usr/lib/python3/dist-packages/m/__pycache__/x.cpython-311.pyc",
            "pyc",
        ),
        ("usr/lib/python3/dist-packages/m/keep.pyc", "shipped"),
    ] {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
    }
    std::os::unix::fs::symlink("/nonexistent/target", root.join("usr/dangling")).unwrap();
    let old = root.join("etc/zbase");
    let t = rustix::fs::Timespec {
        tv_sec: 1_000_000_000,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(rustix::fs::CWD, &old, &times, rustix::fs::AtFlags::empty()).unwrap();
    let report = rootfs::normalize(&root, EPOCH, "box").unwrap();
    assert!(report.clamped > 0);
    assert_eq!(fx.read("etc/machine-id"), "");
    assert_eq!(fx.read("etc/hostname"), "box\n");
    // An empty hostname means no /etc/hostname at all (R2lab: DHCP names the node).
    rootfs::normalize(&root, EPOCH, "").unwrap();
    assert!(!root.join("etc/hostname").exists());
    assert_eq!(fx.read("etc/resolv.conf"), "");
    for gone in [
        "var/lib/dbus/machine-id",
        "var/log/dpkg.log",
        "var/log/apt/history.log",
        "var/log/alternatives.log",
        "var/cache/ldconfig/aux-cache",
        "var/cache/debconf/config.dat-old",
        "var/lib/dpkg/status-old",
        "etc/ssh/ssh_host_ed25519_key",
        "usr/lib/python3/dist-packages/m/__pycache__/x.cpython-311.pyc",
    ] {
        assert!(!root.join(gone).exists(), "{gone} should be gone");
        assert!(
            report.removed.contains(&format!("/{gone}")),
            "{gone} in {:?}",
            report.removed
        );
    }
    assert!(
        root.join("usr/lib/python3/dist-packages/m/keep.pyc")
            .exists()
    );
    // Nothing newer than the epoch, the dangling symlink included (lutimes).
    for (path, mtime) in walk(&root) {
        assert!(mtime <= EPOCH, "{} has mtime {mtime}", path.display());
    }
    assert_eq!(
        fs::symlink_metadata(root.join("usr/dangling"))
            .unwrap()
            .mtime(),
        EPOCH
    );
    // Package files from after the epoch are clamped, older ones kept.
    assert_eq!(
        fs::metadata(root.join("usr/bin/app")).unwrap().mtime(),
        EPOCH
    );
    assert_eq!(fs::metadata(&old).unwrap().mtime(), 1_000_000_000);
}

#[test]
fn default_epoch_is_the_newest_source_date() {
    let mut fx = Fixture::new(&distro());
    assert_eq!(rootfs::default_source_date_epoch(&fx.lock), 1_600_000_000);
    let mut newer = fx.lock.sources[0].clone();
    newer.date = "Mon, 14 Sep 2020 12:26:40 UTC".into();
    fx.lock.sources.push(newer);
    assert_eq!(rootfs::default_source_date_epoch(&fx.lock), 1_600_086_400);
}

#[test]
fn two_assemblies_are_identical() {
    let a = Fixture::new(&distro());
    let b = Fixture::new(&distro());
    a.assemble().unwrap();
    b.assemble().unwrap();
    assert_eq!(listing(&a.root()), listing(&b.root()));
}

/// A store blob of the locked size but other bytes is named as such, not as
/// the unpack or format error it also causes: each package is hashed as it
/// is read (by the thread that reads it ahead of extraction).
#[test]
fn a_blob_with_other_bytes_is_a_digest_mismatch() {
    for (what, change) in [
        ("a byte flipped near the end", 0usize),
        ("garbage of the same size", 1usize),
    ] {
        let fx = Fixture::new(&distro());
        let sha = fx.lock.package("app").unwrap().sha256.clone();
        let path = fx.store().path_of(&sha);
        let mut bytes = fs::read(&path).unwrap();
        if change == 0 {
            let at = bytes.len() - 10;
            bytes[at] ^= 0x55;
        } else {
            bytes.iter_mut().for_each(|b| *b = 0x42);
        }
        let mut perms = fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&path, perms).unwrap();
        fs::write(&path, &bytes).unwrap();
        let err = fx.assemble().unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("sha256 mismatch"), "{what}: {text}");
        assert!(text.contains("app "), "{what}: {text}");
    }
}
