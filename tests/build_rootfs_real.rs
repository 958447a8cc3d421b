//! The real sonic-p4 lock assembled from `./vendor` (fill it with `imgbuild
//! fetch sonic-p4`; root, minutes): configured and reproducible. Ignored by
//! default.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use imgbuild::fetch::Store;
use imgbuild::lock::Lockfile;
use imgbuild::rootfs::{self, AssembleOptions};
use imgbuild::sandbox::{self, SandboxSpec};
use support::rootfs::*;

// ---- the real thing (network-free but needs ./vendor filled and root) ----

fn sonic_lock() -> Option<(Lockfile, Store)> {
    let lock = Lockfile::read(Path::new("locks/sonic-p4.lock")).ok()?;
    let vendor =
        std::env::var_os("IMGBUILD_VENDOR").map_or_else(|| PathBuf::from("vendor"), PathBuf::from);
    let store = Store::open(&vendor).ok()?;
    if let Err(e) = store.require(&lock, "sonic-p4") {
        eprintln!("skipped: {e}");
        return None;
    }
    Some((lock, store))
}

/// Runs `sh -c script` in the image, returns stdout.
fn inside(root: &Path, script: &str) -> String {
    let mut spec = SandboxSpec::new(root, ["/bin/sh", "-c", script]);
    spec.timeout = Some(std::time::Duration::from_secs(300));
    let out = sandbox::run(&spec).unwrap();
    eprintln!("$ {script}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "assembles sonic-p4 twice from ./vendor with scripts (needs root; minutes)"]
fn sonic_p4_assembles_configured_and_reproducibly() {
    let Some((lock, store)) = sonic_lock() else {
        return;
    };
    let out =
        std::env::var_os("IMGBUILD_ROOTFS_OUT").map_or_else(std::env::temp_dir, PathBuf::from);
    let opts = AssembleOptions {
        source_date_epoch: rootfs::default_source_date_epoch(&lock),
        hostname: "sonic".into(),
        run_scripts: true,
    };
    let mut listings = Vec::new();
    for run in ["a", "b"] {
        let root = out.join(format!("sonic-p4-rootfs-{run}"));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let report =
            rootfs::assemble(&lock, &store, &root, &opts).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "run {run}: {} packages, base {}, phases {:?}",
            report.packages,
            report.base.len(),
            report.phases
        );
        eprintln!("scripts run: {}", report.scripts.len());
        for s in &report.scripts {
            eprintln!("  {:>8.2?} {} {}", s.elapsed, s.package, s.script);
        }
        eprintln!("warnings: {:#?}", report.warnings);
        eprintln!("normalize removed: {:?}", report.normalize.removed);
        let installed = inside(
            &root,
            "dpkg-query -W -f '${db:Status-Abbrev}\\n' | grep -c '^ii'",
        );
        assert_eq!(installed.trim(), "249");
        let verify = inside(&root, "dpkg --verify; true");
        eprintln!("dpkg --verify:\n{verify}");
        assert_eq!(fs::read(root.join("etc/machine-id")).unwrap(), b"");
        listings.push(listing(&root));
    }
    let (a, b) = (&listings[0], &listings[1]);
    let mut diffs = Vec::new();
    for key in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if a.get(key) != b.get(key) {
            diffs.push(format!(
                "{key}\n   a: {:?}\n   b: {:?}",
                a.get(key),
                b.get(key)
            ));
        }
    }
    eprintln!(
        "{} of {} entries differ:\n{}",
        diffs.len(),
        a.len(),
        diffs.join("\n")
    );
    assert!(diffs.is_empty());
}
