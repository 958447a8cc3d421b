//! The rootfs cache's tests.

use super::*;
use crate::core::growing::bounded;
use crate::lock::{LOCK_VERSION, LockedRecipe};
use std::io::Write;

fn lock() -> Lockfile {
    Lockfile {
        version: LOCK_VERSION,
        recipe: LockedRecipe {
            name: "base".into(),
            hash: "sha256:00".into(),
            architecture: "amd64".into(),
        },
        sources: vec![],
        packages: vec![],
        python: vec![],
        tools: Vec::new(),
        components: Vec::new(),
    }
}

#[test]
fn key_depends_on_every_input() {
    let l = lock();
    let base = KeyInputs {
        lock: &l,
        recipe_hash: "sha256:00",
        steps_hash: "sha256:10",
        source_date_epoch: 1,
        hostname: "h",
        run_scripts: true,
    };
    let k = rootfs_key(&base);
    assert_eq!(k, rootfs_key(&base.clone()));
    let mut other = l.clone();
    other.recipe.architecture = "arm64".into();
    let variants = [
        KeyInputs {
            lock: &other,
            ..base.clone()
        },
        KeyInputs {
            recipe_hash: "sha256:01",
            ..base.clone()
        },
        KeyInputs {
            steps_hash: "sha256:11",
            ..base.clone()
        },
        KeyInputs {
            source_date_epoch: 2,
            ..base.clone()
        },
        KeyInputs {
            hostname: "g",
            ..base.clone()
        },
        KeyInputs {
            run_scripts: false,
            ..base.clone()
        },
    ];
    for v in variants {
        assert_ne!(rootfs_key(&v), k, "{v:?}");
    }
}

#[test]
fn restore_keeps_directory_mtimes_owners_and_links() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir_all(tree.join("etc/apt/keyrings")).unwrap();
    fs::write(tree.join("etc/apt/sources.list"), b"deb x y\n").unwrap();
    fs::hard_link(
        tree.join("etc/apt/sources.list"),
        tree.join("etc/apt/sources.copy"),
    )
    .unwrap();
    std::os::unix::fs::symlink("apt", tree.join("etc/apt-link")).unwrap();
    // Old directory times, as packages ship them: older than the epoch.
    let old = |p: &Path, secs: i64| {
        let t = rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            p,
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    };
    old(&tree.join("etc/apt/keyrings"), 1_000_000_000);
    old(&tree.join("etc/apt"), 1_100_000_000);
    old(&tree.join("etc"), 1_200_000_000);
    let tar = tmp.path().join("stage.tar");
    let mut w = std::io::BufWriter::new(File::create(&tar).unwrap());
    let opts = crate::pack::tar::TarOptions {
        source_date_epoch: 1_600_000_000,
    };
    crate::pack::tar::write_tree(&tree, &mut w, &opts).unwrap();
    drop(w);

    let back = tmp.path().join("back");
    fs::create_dir(&back).unwrap();
    restore(&tar, &back).unwrap();
    let mtime = |p: &str| fs::symlink_metadata(back.join(p)).unwrap().mtime();
    assert_eq!(mtime("etc/apt/keyrings"), 1_000_000_000);
    assert_eq!(mtime("etc/apt"), 1_100_000_000);
    assert_eq!(mtime("etc"), 1_200_000_000);
    let a = fs::metadata(back.join("etc/apt/sources.list")).unwrap();
    let b = fs::metadata(back.join("etc/apt/sources.copy")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link kept");
    assert_eq!(
        fs::read_link(back.join("etc/apt-link")).unwrap(),
        Path::new("apt")
    );
}

#[test]
fn insert_get_prune_and_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = RootfsCache::new(tmp.path());
    assert_eq!(cache.get("base", "sha256:aa"), None);
    let a = cache
        .insert_with::<OutputError>("base", "sha256:aa", |w| {
            w.write_all(b"first")
                .map_err(OutputError::io("w", Path::new("x")))
        })
        .unwrap();
    assert_eq!(cache.get("base", "sha256:aa"), Some(a.clone()));
    // A failing writer stores nothing.
    let failed = cache.insert_with("base", "sha256:cc", |_| {
        Err(OutputError::Invalid {
            path: "x".into(),
            reason: "boom".into(),
        })
    });
    assert!(failed.is_err());
    assert_eq!(cache.get("base", "sha256:cc"), None);
    // A new key replaces the old one.
    let b = cache
        .insert_with::<OutputError>("base", "sha256:bb", |w| {
            w.write_all(b"second")
                .map_err(OutputError::io("w", Path::new("x")))
        })
        .unwrap();
    assert_eq!(cache.get("base", "sha256:aa"), None);
    assert!(!a.exists());
    // Damage is detected and the entry dropped.
    fs::write(&b, b"secont").unwrap();
    assert_eq!(cache.get("base", "sha256:bb"), None);
    assert!(!b.exists());
    let left: Vec<_> = fs::read_dir(tmp.path().join("base")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_growing_entry_is_read_while_written_and_fails_unless_stored() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let cache = RootfsCache::new(tmp.path());
    let growing = Growing::new();
    let reader = {
        let growing = growing.clone();
        bounded("the reader", move || {
            growing.wait_started().unwrap();
            let mut all = Vec::new();
            growing.reader().unwrap().read_to_end(&mut all).unwrap();
            (all, growing.wait_complete().unwrap())
        })
    };
    // Several MiB: more than one of the writer's blocks.
    let data: Vec<u8> = (0..(5u32 << 20) + 123).map(|i| (i % 251) as u8).collect();
    let stored = cache
        .insert_growing::<OutputError>("base", "sha256:aa", &growing, |w| {
            for chunk in data.chunks(300_000) {
                w.write_all(chunk)
                    .map_err(OutputError::io("w", Path::new("x")))?;
            }
            Ok(())
        })
        .unwrap();
    let (read, path) = reader();
    assert!(read == data, "the reader got other bytes");
    assert_eq!(path, stored);
    // A failing `make`: the readers get an error, not a short tar.
    let failing = Growing::new();
    let waiting = {
        let failing = failing.clone();
        bounded("the wait for completion", move || failing.wait_complete())
    };
    let failed = cache.insert_growing("base", "sha256:bb", &failing, |w| {
        w.write_all(b"part").unwrap();
        Err(OutputError::Invalid {
            path: "x".into(),
            reason: "boom".into(),
        })
    });
    assert!(failed.is_err());
    assert!(waiting().is_err());
    assert!(failing.reader().is_err());
}
