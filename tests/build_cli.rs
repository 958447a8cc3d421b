//! `imgbuild build` / `imgbuild verify` end to end over a signed fixture
//! archive: solve and fetch with the built binary, then build in-process
//! with `ops::build::run` (maintainer scripts off: the fixture image has no
//! shell) and check the outputs, the incremental paths and the errors.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use imgbuild::image::compare::read_entries;
use imgbuild::ops::build::{self, BuildArgs, Reuse};
use imgbuild::ops::verify::{self, VerifyArgs};
use imgbuild::pack::Compression;
use support::*;

/// A fixed SOURCE_DATE_EPOCH: 2023-11-14T22:13:20Z.
const EPOCH: i64 = 1_700_000_000;

/// A workspace whose recipe `img` (package `app`) is solved and fetched.
fn fetched() -> (Site, TestServer, Workspace) {
    let debs = [
        DebSpec::new("base-files", "12.4", "amd64")
            .essential()
            .file("etc/os-release", "ID=test\n", 0o644)
            .file("usr/bin/hello", "#!/bin/sh\necho hello\n", 0o755)
            .symlink("usr/bin/hi", "hello"),
        DebSpec::new("app", "1.0", "amd64")
            .depends("libx (>= 2)")
            .file("usr/share/app/data", vec![7u8; 5000], 0o644),
        DebSpec::new("libx", "2:2.1+b1", "amd64").file("usr/lib/libx.so.2", "ELF", 0o644),
    ];
    fetched_img(debs, &["app"], "")
}

/// Maintainer scripts off: the fixture image has no shell.
fn args(ws: &Workspace) -> BuildArgs {
    BuildArgs {
        no_scripts: true,
        ..build_args(ws, EPOCH)
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn build_writes_outputs_and_rebuilds_incrementally() {
    let _umask = umask_lock();
    let (_site, _server, ws) = fetched();
    let out: PathBuf = ws.path().join("out/img");

    let first = build::run(&args(&ws)).unwrap();
    assert_eq!(first.reuse, Reuse::Assembled);
    assert_eq!(first.out_dir, out);
    assert!(first.manifest.check(&out).is_empty());
    let entries = read_entries(&out.join("rootfs.tar")).unwrap();
    let entry = |name: &str| {
        entries
            .iter()
            .find(|e| e.0 == name)
            .unwrap_or_else(|| panic!("no {name} in the rootfs"))
            .1
            .clone()
    };
    assert_eq!(entry("./usr/bin/hello").mode, 0o755);
    assert_eq!(
        (entry("./usr/bin/hi").kind, entry("./usr/bin/hi").link),
        ('2', "hello".into())
    );
    assert_eq!(entry("./usr/share/app/data").size, 5000);
    assert!(entries.iter().all(|(_, e)| e.mtime <= EPOCH as u64));
    let packages = fs::read_to_string(out.join("packages.txt")).unwrap();
    assert!(packages.contains("app 1.0 amd64\n"), "{packages}");
    assert!(packages.contains("libx 2:2.1+b1 amd64\n"), "{packages}");
    let sbom = fs::read_to_string(out.join("sbom.cdx.json")).unwrap();
    assert!(sbom.contains("pkg:deb/debian/libx@2%3A2.1%2Bb1?arch=amd64"));

    // Unchanged: nothing to do, fast.
    let again = build::run(&args(&ws)).unwrap();
    assert_eq!(again.reuse, Reuse::UpToDate);
    assert!(again.seconds < 1.0, "{}s", again.seconds);
    assert_eq!(again.manifest, first.manifest);

    // Outputs gone: re-emitted from the cached rootfs, byte for byte.
    fs::remove_dir_all(&out).unwrap();
    let reemitted = build::run(&args(&ws)).unwrap();
    assert_eq!(reemitted.reuse, Reuse::CachedRootfs);
    assert_eq!(reemitted.manifest, first.manifest);

    // Another compression changes the outputs, not the rootfs.
    let zstd = build::run(&BuildArgs {
        compression: Compression::Zstd,
        ..args(&ws)
    })
    .unwrap();
    assert_eq!(zstd.reuse, Reuse::CachedRootfs);
    assert!(zstd.manifest.artifact("rootfs.tar.zst").is_some());
    assert!(zstd.manifest.artifact("rootfs.tar").is_none() && !out.join("rootfs.tar").exists());
    assert_eq!(
        zstd.manifest.artifact("oci/index.json"),
        first.manifest.artifact("oci/index.json")
    );

    // Another epoch is another rootfs (and another image).
    let later = build::run(&BuildArgs {
        source_date_epoch: Some(EPOCH + 86_400),
        ..args(&ws)
    })
    .unwrap();
    assert_eq!(later.reuse, Reuse::Assembled);
    assert_ne!(later.build_key, first.build_key);
    assert_ne!(
        later.manifest.artifact("oci/index.json"),
        first.manifest.artifact("oci/index.json")
    );
    // Nothing but the published directory is left in out/.
    assert_eq!(names_in(&ws.path().join("out")), ["img"]);
}

#[test]
fn stale_lock_or_missing_packages_are_errors_and_write_nothing() {
    let _umask = umask_lock();
    let (_site, server, ws) = fetched();
    write_img_recipe(&ws, &server, &["app", "libx"], "");
    let err = format!("{:#}", build::run(&args(&ws)).unwrap_err());
    assert!(
        err.contains("is stale") && err.contains("run `imgbuild solve img`"),
        "{err}"
    );

    write_img_recipe(&ws, &server, &["app"], "");
    fs::remove_dir_all(ws.path().join("vendor")).unwrap();
    let e = build::run(&args(&ws)).unwrap_err();
    let err = format!("{e:#}");
    assert!(err.contains("run `imgbuild fetch img`"), "{err}");
    // What the CLI prints says it once, not `X: Y: X: Y` (issue 11).
    let text = imgbuild::ops::error_text(&e);
    assert_eq!(
        text.matches("run `imgbuild fetch img`").count(),
        1,
        "{text}"
    );
    assert!(!ws.path().join("out/img").exists());
}

#[test]
fn verify_finds_two_builds_identical() {
    let _umask = umask_lock();
    let (_site, _server, ws) = fetched();
    let report = verify::run(&VerifyArgs {
        recipe: "img".into(),
        workspace: ws.path().to_path_buf(),
        source_date_epoch: Some(EPOCH),
        no_scripts: true,
        quiet: true,
        ..VerifyArgs::default()
    })
    .unwrap();
    assert!(report.manifest.artifact("rootfs.tar").is_some());
    assert!(report.manifest.artifact("oci/index.json").is_some());
    // Its temp builds are gone and nothing was published.
    assert_eq!(names_in(&ws.path().join("out")), Vec::<String>::new());
}

/// The fixture recipe plus `[[step]]`s copying `recipes/files/interfaces`,
/// writing, setting a sysctl and masking a unit.
fn write_recipe_with_steps(ws: &Workspace, server: &TestServer) {
    write_img_recipe(
        ws,
        server,
        &["app"],
        "\n[[step]]\ncopy = \"files/interfaces\"\nto = \"/etc/network/interfaces\"\nmode = \"0640\"\n\
         \n[[step]]\nwrite = \"/etc/modules-load.d/k8s.conf\"\ncontent = \"overlay\\nbr_netfilter\\n\"\n\
         \n[[step]]\nsysctl = { \"net.ipv4.ip_forward\" = \"1\" }\n\
         \n[[step]]\nmask = [\"swap.target\"]\n",
    );
}

#[test]
fn steps_change_the_build_not_the_lock() {
    let _umask = umask_lock();
    let (_site, server, ws) = fetched();
    let plain = build::run(&args(&ws)).unwrap();

    ws.write_file("recipes/files/interfaces", b"auto lo\n");
    write_recipe_with_steps(&ws, &server);
    // The lock is about packages: still fresh.
    ws.run(&["solve", "img", "--locked"]).assert_success();
    let first = build::run(&args(&ws)).unwrap();
    // The package stage of the plain build is reused for the added steps.
    assert_eq!(first.reuse, Reuse::CachedPackages);
    assert_ne!(first.build_key, plain.build_key);
    let out = ws.path().join("out/img");
    let entries = read_entries(&out.join("rootfs.tar")).unwrap();
    let entry = |name: &str| {
        entries
            .iter()
            .find(|e| e.0 == name)
            .unwrap_or_else(|| panic!("no {name} in the rootfs"))
            .1
            .clone()
    };
    let interfaces = entry("./etc/network/interfaces");
    assert_eq!((interfaces.mode, interfaces.size), (0o640, 8));
    let modules = entry("./etc/modules-load.d/k8s.conf");
    assert_eq!((modules.mode, modules.size), (0o644, 21));
    assert_eq!(entry("./etc/sysctl.d/90-imgbuild.conf").mode, 0o644);
    let mask = entry("./etc/systemd/system/swap.target");
    assert_eq!((mask.kind, mask.link), ('2', "/dev/null".into()));
    // Normalisation ran after the steps.
    assert!(entries.iter().all(|(_, e)| e.mtime <= EPOCH as u64));

    // Editing a copied file: same lock, another rootfs.
    ws.write_file("recipes/files/interfaces", b"auto lo\nauto eth0\n");
    ws.run(&["solve", "img", "--locked"]).assert_success();
    let edited = build::run(&args(&ws)).unwrap();
    // Only a step changed: the package stage is reused, and the result is
    // the same, byte for byte, as assembling everything from scratch.
    assert_eq!(edited.reuse, Reuse::CachedPackages);
    assert_ne!(edited.build_key, first.build_key);
    let scratch = build::run(&BuildArgs {
        out: Some(ws.path().join("out-scratch")),
        cache_dir: Some(ws.path().join("cache-scratch")),
        ..args(&ws)
    })
    .unwrap();
    assert_eq!(scratch.reuse, Reuse::Assembled);
    assert_eq!(scratch.manifest, edited.manifest);
    let entries = read_entries(&out.join("rootfs.tar")).unwrap();
    let size = entries
        .iter()
        .find(|e| e.0 == "./etc/network/interfaces")
        .unwrap()
        .1
        .size;
    assert_eq!(size, 18);
    // Unchanged again: up to date.
    assert_eq!(build::run(&args(&ws)).unwrap().reuse, Reuse::UpToDate);
}

#[test]
fn a_missing_copy_source_is_an_error_with_file_line() {
    let _umask = umask_lock();
    let (_site, server, ws) = fetched();
    write_recipe_with_steps(&ws, &server);
    let err = format!("{:#}", build::run(&args(&ws)).unwrap_err());
    assert!(
        err.contains("recipes/img.toml:")
            && err.contains("`copy` source `files/interfaces` not found"),
        "{err}"
    );
}
