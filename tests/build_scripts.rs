//! The maintainer-script path of `imgbuild build`, offline: a fixture archive
//! whose base system is made of the host's own binaries
//! ([`support::hostbase`]), so the image's dpkg really runs `preinst` and
//! `postinst` in the sandbox, and the recipe's `run`, `enable`, `group` and
//! `user` steps run the image's own tools. Covers the hostile cases of the
//! build issue: a postinst that tries the network, one that writes the date.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use imgbuild::ops::build::{self, BuildArgs};
use imgbuild::ops::verify::{self, VerifyArgs};
use support::*;

const EPOCH: i64 = 1_600_000_000;

/// The greeter's postinst records its arguments and SOURCE_DATE_EPOCH; its
/// preinst leaves a mark that the postinst checks (order preinst → postinst).
fn greeter() -> DebSpec {
    DebSpec::new("greeter", "1.0", "amd64")
        .depends("dpkg")
        .file("/usr/share/greeter/data", "hello\n", 0o644)
        .file(
            "/usr/lib/systemd/system/greeter.service",
            "[Unit]\nDescription=greeter\n[Service]\nExecStart=/usr/bin/true\n\
             [Install]\nWantedBy=multi-user.target\n",
            0o644,
        )
        .script(
            "preinst",
            "#!/bin/sh\nset -e\nmkdir -p /var/lib/greeter\necho \"preinst $1\" > /var/lib/greeter/preinst\n",
        )
        .script(
            "postinst",
            "#!/bin/sh\nset -e\n[ -e /var/lib/greeter/preinst ]\n\
             echo \"postinst $1 epoch=$SOURCE_DATE_EPOCH tz=$TZ\" > /etc/greeter.conf\n",
        )
}

/// A postinst that tries to reach `port` on the host's loopback over TCP and
/// records what happened; it must not fail the install.
fn netprobe(port: u16) -> DebSpec {
    DebSpec::new("netprobe", "1.0", "amd64")
        .depends("dpkg")
        .script(
            "postinst",
            &format!(
                "#!/bin/bash\nmkdir -p /var/lib/netprobe\n\
                 if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then r=connected; else r=blocked; fi\n\
                 echo \"$r\" > /var/lib/netprobe/result\nexit 0\n"
            ),
        )
}

/// A postinst that writes the wall-clock time into the image.
fn stamper() -> DebSpec {
    DebSpec::new("stamper", "1.0", "amd64")
        .depends("dpkg")
        .script(
            "postinst",
            "#!/bin/sh\nset -e\nmkdir -p /var/lib/stamper\ndate +%s%N > /var/lib/stamper/built-at\n",
        )
}

const STEPS: &str = r#"
[[step]]
group = "p4"
gid = 1100

[[step]]
user = "admin"
uid = 1000
groups = ["sudo", "p4"]
shell = "/bin/bash"
password-hash = ""

[[step]]
run = ["sh", "-c", "echo ran as $(id -u) on $(cat /proc/sys/kernel/hostname) > /etc/run-step"]

[[step]]
enable = ["greeter.service"]
"#;

fn args(ws: &Workspace) -> BuildArgs {
    build_args(ws, EPOCH)
}

/// The rootfs tar unpacked with the host's tar (numeric owners kept).
fn unpack(ws: &Workspace) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tar = ws.path().join("out/img/rootfs.tar");
    let status = Command::new("tar")
        .args(["-xpf", tar.to_str().unwrap(), "--numeric-owner", "-C"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `field: value` of every package in the image's dpkg status file.
fn statuses(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stanza in read(root, "var/lib/dpkg/status").split("\n\n") {
        let field = |f: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{f}: ")))
                .map(str::to_string)
        };
        if let (Some(p), Some(s)) = (field("Package"), field("Status")) {
            out.insert(p, s);
        }
    }
    out
}

#[test]
fn scripts_and_steps_run_inside_the_image_without_network() {
    let _umask = umask_lock();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_site, _server, ws) = fetched_on_host_base(
        &["greeter", "netprobe"],
        &[greeter(), netprobe(port)],
        STEPS,
    );
    let report = build::run(&args(&ws)).unwrap();
    assert_eq!(report.reuse, build::Reuse::Assembled);
    let tree = unpack(&ws);
    let root = tree.path();

    // Every package configured by the image's own dpkg.
    let status = statuses(root);
    assert_eq!(
        status.keys().map(String::as_str).collect::<Vec<_>>(),
        ["dpkg", "greeter", "netprobe", "usr-is-merged"]
    );
    assert!(
        status.values().all(|s| s == "install ok installed"),
        "{status:?}"
    );
    // preinst ran with `install`, postinst with `configure` after it, in the
    // fixed environment.
    assert_eq!(read(root, "var/lib/greeter/preinst"), "preinst install\n");
    assert_eq!(
        read(root, "etc/greeter.conf"),
        format!("postinst configure epoch={EPOCH} tz=UTC\n")
    );

    // No route out: the host's loopback listener saw nothing.
    assert_eq!(read(root, "var/lib/netprobe/result"), "blocked\n");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "a postinst reached the host");

    // Steps: group, user (shadow dated by SOURCE_DATE_EPOCH), run, enable.
    let group = read(root, "etc/group");
    assert!(group.contains("p4:x:1100:admin\n"), "{group}");
    assert!(group.contains("sudo:x:27:admin\n"), "{group}");
    let passwd = read(root, "etc/passwd");
    assert!(
        passwd.contains("admin:x:1000:1000::/home/admin:/bin/bash\n"),
        "{passwd}"
    );
    let shadow = read(root, "etc/shadow");
    let day = EPOCH / 86_400;
    assert!(shadow.contains(&format!("admin::{day}:")), "{shadow}");
    assert_eq!(read(root, "home/admin/.profile"), "# fixture skel\n");
    assert_eq!(
        fs::metadata(root.join("home/admin"))
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.uid(), m.gid())
            })
            .unwrap(),
        (1000, 1000)
    );
    assert_eq!(read(root, "etc/run-step"), "ran as 0 on img\n");
    let wants = root.join("etc/systemd/system/multi-user.target.wants/greeter.service");
    // systemctl links to the unit by its own unit path (/lib/… in bookworm's
    // systemd): the link must resolve, inside the image, to the shipped unit.
    let target = fs::read_link(&wants).unwrap();
    let unit = root.join(target.strip_prefix("/").unwrap());
    assert!(
        read(root, unit.strip_prefix(root).unwrap().to_str().unwrap()).contains("WantedBy"),
        "{target:?}"
    );
    // The policy-rc.d guard is gone again.
    assert!(!root.join("usr/sbin/policy-rc.d").exists());

    // The host's dpkg agrees the database is consistent.
    let audit = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg("--audit")
        .output()
        .unwrap();
    assert!(audit.status.success(), "{audit:?}");
    assert_eq!(String::from_utf8_lossy(&audit.stdout), "");

    // A changed step reuses the configured packages, and gives the same
    // bytes as a build from scratch.
    let text =
        ws.read("recipes/img.toml") + "\n[[step]]\nwrite = \"/etc/motd\"\ncontent = \"hi\\n\"\n";
    ws.write_recipe("img", &text);
    let changed = build::run(&args(&ws)).unwrap();
    assert_eq!(changed.reuse, build::Reuse::CachedPackages);
    let scratch = build::run(&BuildArgs {
        out: Some(ws.path().join("out-scratch")),
        cache_dir: Some(ws.path().join("cache-scratch")),
        ..args(&ws)
    })
    .unwrap();
    assert_eq!(scratch.reuse, build::Reuse::Assembled);
    assert_eq!(scratch.manifest, changed.manifest);
}

fn verify_args(ws: &Workspace) -> VerifyArgs {
    VerifyArgs {
        recipe: "img".into(),
        workspace: ws.path().to_path_buf(),
        source_date_epoch: Some(EPOCH),
        quiet: true,
        ..VerifyArgs::default()
    }
}

#[test]
fn scripted_builds_are_reproducible_and_verify_names_a_postinst_date() {
    let _umask = umask_lock();
    let (_site, _server, ws) = fetched_on_host_base(&["greeter"], &[greeter(), stamper()], STEPS);
    let clean = verify::run(&verify_args(&ws)).unwrap();
    assert!(clean.manifest.artifact("rootfs.tar").is_some());

    // Add the package whose postinst writes the date: verify must fail and
    // name that file.
    let text = ws.read("recipes/img.toml").replace(
        "packages = [\"greeter\"]",
        "packages = [\"greeter\", \"stamper\"]",
    );
    ws.write_recipe("img", &text);
    ws.run(&["solve", "img"]).assert_success();
    ws.run(&["fetch", "img"]).assert_success();
    let err = format!("{:#}", verify::run(&verify_args(&ws)).unwrap_err());
    assert!(err.contains("is not reproducible"), "{err}");
    assert!(err.contains("var/lib/stamper/built-at"), "{err}");
}
