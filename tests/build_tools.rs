//! build::tools on fixture .debs (offline): the tools tree is assembled from
//! the lock's `[[tool]]`s only, cached under its key and reused, and a tool
//! runs with the tree as `/`, inputs read-only and the output directory
//! writable. The fixture tree has no programs of its own, so the host's
//! `/usr` is bound read-only for the shell (as in tests/build_sandbox.rs).

mod support;

use std::fs;
use std::path::Path;

use imgbuild::fetch::Store;
use imgbuild::lock::{LockedPackage, LockedRecipe, Lockfile};
use imgbuild::rootfs::cache::RootfsCache;
use imgbuild::tools::{ToolRun, ToolsRoot, tools_key};
use sha2::{Digest, Sha256};
use support::*;

const EPOCH: i64 = 1_600_000_000;

fn locked(store: &Store, spec: &DebSpec) -> LockedPackage {
    let bytes = spec.build();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let path = store.path_of(&sha256);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, &bytes).unwrap();
    LockedPackage {
        name: spec.name.clone(),
        version: spec.version.clone(),
        architecture: spec.architecture.clone(),
        source: "test".into(),
        filename: format!("pool/main/{}", spec.file_name()),
        size: bytes.len() as u64,
        sha256,
        reason: None,
        depends: Vec::new(),
    }
}

fn lock(packages: Vec<LockedPackage>, tools: Vec<LockedPackage>) -> Lockfile {
    let mut lock = Lockfile {
        version: 1,
        recipe: LockedRecipe {
            name: "img".into(),
            hash: "sha256:00".into(),
            architecture: "amd64".into(),
        },
        sources: Vec::new(),
        packages,
        tools,
        components: Vec::new(),
        python: Vec::new(),
    };
    lock.sort_packages();
    lock
}

/// The fixture tool: one template file, usr-merged.
fn mktool(store: &Store) -> LockedPackage {
    locked(
        store,
        &DebSpec::new("mktool", "2.0", "amd64")
            .file("/opt/mktool/template", "template from the lock\n", 0o644)
            .symlink("/bin", "usr/bin")
            .symlink("/lib", "usr/lib")
            .symlink("/lib64", "usr/lib64"),
    )
}

/// A shell from the host's /usr, the fixture tree as `/`.
fn sh(script: &str) -> ToolRun {
    ToolRun::new(["/usr/bin/sh", "-c", script]).input("/usr", "/usr")
}

#[test]
fn tools_tree_is_built_from_tools_only_cached_and_run_with_binds() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("vendor")).unwrap();
    let image_pkg = locked(
        &store,
        &DebSpec::new("image-only", "1", "amd64").file("/etc/image.conf", "image\n", 0o644),
    );
    let tool = mktool(&store);
    let lock = lock(vec![image_pkg], vec![tool.clone()]);
    let cache = RootfsCache::new(&tmp.path().join("cache"));
    let work = tmp.path().join("work");

    let tools = ToolsRoot::prepare(&lock, &store, &cache, &work, EPOCH).unwrap();
    let root = tools.root();
    assert!(root.join("opt/mktool/template").is_file());
    assert!(
        !root.join("etc/image.conf").exists(),
        "image packages stay out"
    );
    let cached = cache.path_for("@tools-img", &tools_key(&lock));
    assert!(cached.is_file(), "the tools tree is cached under its key");

    // Inputs read-only, the output directory writable, the lock's files as /.
    let input = tmp.path().join("input.txt");
    fs::write(&input, "input\n").unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let run = sh(
        "set -e; cat /opt/mktool/template /in/input.txt > /out/result; \
                  if echo x > /in/input.txt; then echo input-writable; fi",
    )
    .input(&input, "/in/input.txt")
    .output(&out, "/out");
    let stdout = tools.run(&run).unwrap();
    assert_eq!(String::from_utf8_lossy(&stdout), "");
    assert_eq!(
        fs::read_to_string(out.join("result")).unwrap(),
        "template from the lock\ninput\n"
    );
    assert_eq!(fs::read_to_string(&input).unwrap(), "input\n");
    // A failing tool is an error naming the command and quoting stderr.
    let err = tools
        .run(&sh("echo broken >&2; exit 3"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exited with status 3") && err.contains("broken"),
        "{err}"
    );
    drop(tools);
    assert_eq!(
        fs::read_dir(&work).unwrap().count(),
        0,
        "temp trees removed"
    );

    // Cached: the store is no longer needed for the same tools.
    fs::remove_file(store.path_of(&tool.sha256)).unwrap();
    let again = ToolsRoot::prepare(&lock, &store, &cache, &work, EPOCH).unwrap();
    assert!(again.root().join("opt/mktool/template").is_file());
}

/// The inode of the kept tree's template (the same inode: not extracted again).
fn template_inode(tools: &ToolsRoot) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(tools.root().join("opt/mktool/template"))
        .unwrap()
        .ino()
}

#[test]
fn the_extracted_tools_tree_is_kept_and_used_again_only_while_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("vendor")).unwrap();
    let tool = mktool(&store);
    let lock = lock(Vec::new(), vec![tool]);
    let cache = RootfsCache::new(&tmp.path().join("cache"));
    let work = tmp.path().join("work");
    let key = tools_key(&lock);
    let kept = cache.path_for("@tools-img", &key).with_extension("tree");

    // Assembled: used from its temp directory, nothing kept yet.
    let first = ToolsRoot::prepare(&lock, &store, &cache, &work, EPOCH).unwrap();
    assert_ne!(first.root(), kept);
    drop(first);
    // From the cached tar: extracted next to it and kept there.
    let second = ToolsRoot::prepare(&lock, &store, &cache, &work, EPOCH).unwrap();
    assert_eq!(second.root(), kept);
    assert!(kept.join("work").is_dir(), "the disk's mount point is made");
    let inode = template_inode(&second);
    // A run binding only the kept mount point leaves the tree as it was.
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    second
        .run(&sh("cat /opt/mktool/template > /work/copy").output(&out, "/work"))
        .unwrap();
    drop(second);
    assert!(kept.is_dir(), "dropping a kept tree keeps it");

    // Unchanged: the same files, even without the tar.
    let tar = cache.path_for("@tools-img", &key);
    let tar_bytes = fs::read(&tar).unwrap();
    fs::remove_file(&tar).unwrap();
    let third = ToolsRoot::prepare(&lock, &store, &cache, &work, EPOCH).unwrap();
    assert_eq!(
        (third.root(), template_inode(&third)),
        (kept.clone(), inode)
    );
    drop(third);

    // Changed since (one file rewritten, same size): removed, and the tar
    // extracted again.
    fs::write(&tar, &tar_bytes).unwrap();
    fs::write(kept.join("opt/mktool/template"), "planted by hand!!!!!!\n").unwrap();
    let fourth = ToolsRoot::prepare(&lock, &store, &cache, &work, EPOCH).unwrap();
    assert_eq!(fourth.root(), kept);
    assert_eq!(
        fs::read_to_string(kept.join("opt/mktool/template")).unwrap(),
        "template from the lock\n"
    );
    drop(fourth);

    // Without its sidecar a kept tree is not trusted either.
    let sidecar = kept.with_extension("tree.sha256");
    fs::remove_file(&sidecar).unwrap();
    let fifth = ToolsRoot::prepare(&lock, &store, &cache, &work, EPOCH).unwrap();
    assert_ne!(template_inode(&fifth), inode);
    assert!(sidecar.is_file());
}

#[test]
fn a_lock_without_tools_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("vendor")).unwrap();
    let lock = lock(Vec::new(), Vec::new());
    let cache = RootfsCache::new(&tmp.path().join("cache"));
    let err = ToolsRoot::prepare(&lock, &store, &cache, Path::new(tmp.path()), EPOCH)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("recipe `img`")
            && err.contains("tools = [...]")
            && err.contains("imgbuild solve img"),
        "{err}"
    );
}
