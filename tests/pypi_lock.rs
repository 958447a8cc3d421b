//! `[[python]]` entries are hostile input like the rest of a lock, offline:
//! a fixture Debian archive and a PEP 691 index, both on 127.0.0.1.
//! - `solve --locked` and `fetch` check every entry (file name, version,
//!   sha256, size) against the index's project page: an entry edited to
//!   pin another file fails naming the entry and the page, and nothing is
//!   fetched; a cached page edited to agree with the forgery is not used;
//! - `build` hashes each wheel as it reads it from the store: a same-size
//!   tampered wheel fails the build naming the distribution and both
//!   hashes, and nothing is written to `out/`.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use imgbuild::lock::Lockfile;
use support::hostbase::host_base;
use support::*;

struct Fixture {
    _site: Site,
    _archive: TestServer,
    index: TestServer,
    _index_dir: tempfile::TempDir,
    ws: Workspace,
}

impl Fixture {
    fn new() -> Fixture {
        let site = Site::new();
        let mut archive = site
            .archive("debian")
            .suite("bookworm", &["amd64"], &["main"]);
        let stubs = [
            DebSpec::new("python3", "3.11.2-1+b1", "amd64").depends("dpkg"),
            DebSpec::new("libc6", "2.36-9+deb12u13", "amd64"),
        ];
        for spec in host_base().into_iter().chain(stubs) {
            archive = archive.add(spec);
        }
        archive.build();
        let archive_server = site.serve();
        let index_dir = tempfile::tempdir().unwrap();
        let mut ix = PyIndex::new(index_dir.path());
        ix.wheel(WheelSpec::new("dep", "1.5").file("dep_data.py", "ANSWER = 1\n"));
        ix.wheel(WheelSpec::new("dep", "1.0"));
        ix.write();
        let index = TestServer::serve(index_dir.path());
        let ws = Workspace::new();
        let src = ws.trusted_source(
            "main",
            &archive_server.url("debian/"),
            "bookworm",
            &["main"],
        );
        let mut text = RecipeToml::new("amd64")
            .packages(&["python3", "libc6"])
            .source(src)
            .to_toml();
        text.push_str("\n[python]\nrequirements = [\"dep\"]\n");
        ws.write_recipe("img", &text);
        let f = Fixture {
            _site: site,
            _archive: archive_server,
            index,
            _index_dir: index_dir,
            ws,
        };
        f.run(&["solve", "img"]).assert_success();
        f
    }

    fn index_url(&self) -> String {
        self.index.url("simple/")
    }

    /// `imgbuild ARGS… --mirror pypi=<fixture index>`.
    fn run(&self, args: &[&str]) -> RunOutput {
        let mirror = format!("pypi={}", self.index_url());
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--mirror", &mirror]);
        workspace::run_bounded(self.ws.command(&all), Duration::from_secs(300))
    }

    fn lock_path(&self) -> std::path::PathBuf {
        self.ws.path().join("locks/img.lock")
    }

    fn lock(&self) -> Lockfile {
        Lockfile::read(&self.lock_path()).unwrap()
    }
}

fn store(ws: &Workspace) -> imgbuild::fetch::Store {
    imgbuild::fetch::Store::open(&ws.path().join("vendor")).unwrap()
}

/// Files (recursively) of `dir`, relative; empty when it does not exist.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_forged_python_entry_fails_solve_locked_and_fetch_naming_it_and_the_index() {
    let f = Fixture::new();
    let honest = f.lock();
    let dep = honest.python.iter().find(|p| p.name == "dep").unwrap();
    assert_eq!(dep.version, "1.5");
    f.run(&["solve", "img", "--locked"]).assert_success();

    // The trojan: another wheel of the same name and version, shipped in
    // the vendor store with the pull request that edits the lock.
    let trojan = WheelSpec::new("dep", "1.5")
        .tag("py2.py3-none-any")
        .file("dep_data.py", "import os\n")
        .build();
    let trojan_sha = imgbuild::core::digest::sha256_hex(&trojan);
    let trojan_name = "dep-1.5-py2.py3-none-any.whl";
    let text = fs::read_to_string(f.lock_path()).unwrap();
    let forged = text
        .replace(&dep.filename, trojan_name)
        .replace(&dep.sha256, &trojan_sha)
        .replace(
            &format!("size = {}", dep.size),
            &format!("size = {}", trojan.len()),
        );
    assert_ne!(forged, text);
    fs::write(f.lock_path(), &forged).unwrap();
    let page = format!("{}dep/", f.index_url());
    for args in [&["solve", "img", "--locked"][..], &["fetch", "img"][..]] {
        let out = f.run(args).assert_failure();
        let err = &out.stderr;
        assert!(err.contains("locks/img.lock"), "{args:?}: {err}");
        assert!(err.contains("[[python]] `dep` 1.5"), "{args:?}: {err}");
        assert!(err.contains(trojan_name), "{args:?}: {err}");
        assert!(err.contains(&page), "{args:?}: {err}");
        assert!(err.contains("lists no file"), "{args:?}: {err}");
    }
    assert!(
        files_under(&f.ws.path().join("vendor")).is_empty(),
        "fetch stored something"
    );

    // The genuine file name with the trojan's hash: refused as well.
    let swapped = text.replace(&dep.sha256, &trojan_sha);
    fs::write(f.lock_path(), &swapped).unwrap();
    let out = f.run(&["solve", "img", "--locked"]).assert_failure();
    assert!(out.stderr.contains(&dep.sha256), "{}", out.stderr);
    assert!(out.stderr.contains(&trojan_sha), "{}", out.stderr);

    // Offline, from the page cache: the same verdicts; and a cached page
    // edited to list the trojan is not believed (its hash no longer holds).
    fs::write(f.lock_path(), &text).unwrap();
    f.run(&["solve", "img", "--locked", "--offline"])
        .assert_success();
    let pages = f.ws.cache_dir().join("pypi/pages");
    let mut edited = 0;
    for p in files_under(&pages) {
        let path = pages.join(p);
        let body = fs::read_to_string(&path).unwrap();
        if body.contains(&dep.sha256) {
            fs::write(&path, body.replace(&dep.sha256, &trojan_sha)).unwrap();
            edited += 1;
        }
    }
    assert_eq!(edited, 1, "the cached page of dep");
    fs::write(f.lock_path(), &swapped).unwrap();
    let out = f
        .run(&["solve", "img", "--locked", "--offline"])
        .assert_failure();
    assert!(out.stderr.contains("[[python]] `dep`"), "{}", out.stderr);
    assert!(
        out.stderr.contains("not in the index cache"),
        "{}",
        out.stderr
    );
    // Online, the page is fetched again and the honest lock passes.
    fs::write(f.lock_path(), &text).unwrap();
    f.run(&["solve", "img", "--locked"]).assert_success();
    f.run(&["fetch", "img"]).assert_success();
}

#[test]
fn a_same_size_tampered_wheel_in_the_store_fails_the_build_naming_both_hashes() {
    let f = Fixture::new();
    f.run(&["fetch", "img"]).assert_success();
    let lock = f.lock();
    let dep = lock.python.iter().find(|p| p.name == "dep").unwrap();
    let blob = store(&f.ws).path_of(&dep.sha256);
    let original = fs::read(&blob).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
    // The first member's modification time in its local header: still a
    // valid wheel (readers take the central directory's), the same size;
    // only the hash can tell.
    assert_eq!(&original[..4], b"PK\x03\x04");
    let mut tampered = original.clone();
    tampered[10] ^= 0x01;
    fs::write(&blob, &tampered).unwrap();
    let actual = imgbuild::core::digest::sha256_hex(&tampered);
    let out = workspace::run_bounded(f.ws.command(&["build", "img"]), Duration::from_secs(600))
        .assert_failure();
    let err = &out.stderr;
    assert!(err.contains("dep 1.5"), "{err}");
    assert!(err.contains(&dep.filename), "{err}");
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert!(err.contains(&dep.sha256), "{err}");
    assert!(err.contains(&actual), "{err}");
    let left: Vec<String> = fs::read_dir(f.ws.path().join("out"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.iter().all(|n| !n.contains("img")), "out/ has {left:?}");
    // The genuine wheel builds (the check can pass).
    fs::write(&blob, &original).unwrap();
    workspace::run_bounded(f.ws.command(&["build", "img"]), Duration::from_secs(600))
        .assert_success();
}
