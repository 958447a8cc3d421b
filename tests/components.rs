//! `[[component]]`, offline: a fixture git repository the test creates, a
//! fixture archive whose base system is the host's own binaries
//! ([`support::hostbase`]) plus a build dependency (`greet-dev`: a code
//! generator script and its data), solved, fetched and built end to end.
//!
//! What the fixtures prove: the lock pins the commit and the exported tree,
//! the build closure is solved from the archive and assembled (configured by
//! the closure's own dpkg), the build sees its source tree, its build
//! dependency, `DESTDIR`/`PREFIX`/`JOBS`/`SOURCE_DATE_EPOCH`, and no
//! network; its output becomes a dpkg-registered package of the image whose
//! ELF (a copy of the host's `true`, built elsewhere: there is no fixture
//! compiler) resolves its libraries in the image. A library the image lacks
//! (an ELF linked by the host's gcc against a library only the build root
//! has) is an error naming the file and the library. Not proven here: a
//! real compile (see `docs/components.md` for the live bmv2 recipe).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use imgbuild::ops::build::{self, BuildArgs};
use support::hostbase::host_base;
use support::*;

const EPOCH: i64 = 1_600_000_000;

/// Runs git in `dir` with a clean configuration and fixed dates.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", "1500000000 +0000")
        .env("GIT_COMMITTER_DATE", "1500000000 +0000")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `mirrors/hello.git`: a bare repository with tag v1.0 holding `message.txt`.
fn mirror(tmp: &Path) -> (PathBuf, String) {
    let work = tmp.join("hello-work");
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("message.txt"), "built from the pinned source\n").unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "v1.0"]);
    git(&work, &["tag", "v1.0"]);
    let commit = git(&work, &["rev-parse", "HEAD"]);
    let mirrors = tmp.join("mirrors");
    fs::create_dir_all(&mirrors).unwrap();
    git(
        tmp,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            mirrors.join("hello.git").to_str().unwrap(),
        ],
    );
    (mirrors, commit)
}

/// The build dependency: a generator and its data.
fn greet_dev() -> DebSpec {
    DebSpec::new("greet-dev", "2.0", "amd64")
        .depends("dpkg")
        .file("/usr/share/greet/greeting", "Hello from greet-dev\n", 0o644)
        .file(
            "/usr/bin/greet-gen",
            "#!/bin/sh\nprintf '#!/bin/sh\\necho \"%s\"\\ncat /usr/local/share/hello/message.txt\\n' \"$(cat /usr/share/greet/greeting)\"\n",
            0o755,
        )
}

const BUILD: &str = r#"
[[component]]
name = "hello"
git = "https://git.example.org/hello.git"
rev = "v1.0"
build-depends = ["greet-dev (>= 2)"]
depends = ["dpkg"]
build = [
  "mkdir -p $DESTDIR$PREFIX/bin $DESTDIR$PREFIX/share/hello",
  "greet-gen > $DESTDIR$PREFIX/bin/hello && chmod 755 $DESTDIR$PREFIX/bin/hello",
  "cp message.txt $DESTDIR$PREFIX/share/hello/",
  "cp /usr/bin/true $DESTDIR$PREFIX/bin/hello-true",
  "echo \"epoch=$SOURCE_DATE_EPOCH jobs-set=${JOBS:+yes} prefix=$PREFIX\" > $DESTDIR$PREFIX/share/hello/env",
  "touch $DESTDIR$PREFIX/share/hello/junk",
]
install = ["usr/local/bin/*", "usr/local/share/hello/message.txt", "usr/local/share/hello/env"]
"#;

struct Fixture {
    _site: Site,
    _server: TestServer,
    ws: Workspace,
    tmp: tempfile::TempDir,
    mirrors: PathBuf,
    commit: String,
}

impl Fixture {
    fn new(component: &str, extra: Vec<DebSpec>) -> Fixture {
        let site = Site::new();
        let mut archive = site
            .archive("debian")
            .suite("bookworm", &["amd64"], &["main"]);
        for spec in host_base().into_iter().chain([greet_dev()]).chain(extra) {
            archive = archive.add(spec);
        }
        archive.build();
        let server = site.serve();
        let ws = Workspace::new();
        let src = ws.trusted_source("main", &server.url("debian/"), "bookworm", &["main"]);
        let mut text = RecipeToml::new("amd64").source(src).to_toml();
        text.push_str(component);
        ws.write_recipe("img", &text);
        let tmp = tempfile::tempdir().unwrap();
        let (mirrors, commit) = mirror(tmp.path());
        Fixture {
            _site: site,
            _server: server,
            ws,
            tmp,
            mirrors,
            commit,
        }
    }

    fn mapping(&self) -> String {
        format!("git:https://git.example.org/={}/", self.mirrors.display())
    }

    fn run(&self, args: &[&str]) -> RunOutput {
        let mapping = self.mapping();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--mirror", mapping.as_str()]);
        self.ws.run(&all)
    }

    fn build_args(&self) -> BuildArgs {
        BuildArgs {
            recipe: "img".into(),
            workspace: self.ws.path().to_path_buf(),
            source_date_epoch: Some(EPOCH),
            quiet: true,
            cache_dir: Some(self.ws.cache_dir().join("rootfs")),
            ..BuildArgs::default()
        }
    }
}

fn unpack(tar: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .args(["-xpf", tar.to_str().unwrap(), "--numeric-owner", "-C"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn sha(path: &Path) -> String {
    imgbuild::core::digest::hash_file(path).unwrap().0
}

#[test]
fn component_is_locked_fetched_built_and_registered() {
    let _umask = umask_lock();
    let f = Fixture::new(BUILD, vec![]);
    f.run(&["solve", "img"]).assert_success();
    let lock = f.ws.read("locks/img.lock");
    assert!(
        lock.contains("\n[[component]]\nname = \"hello\"\nversion = \"1.0\"\n"),
        "{lock}"
    );
    assert!(
        lock.contains("git = \"https://git.example.org/hello.git\"\nrev = \"v1.0\"\n"),
        "{lock}"
    );
    assert!(
        lock.contains(&format!("commit = \"{}\"", f.commit)),
        "{lock}"
    );
    assert!(
        !lock.contains(f.mirrors.to_str().unwrap()),
        "the mirror is configuration"
    );
    assert!(
        lock.contains("[[component.package]]\nname = \"greet-dev\""),
        "{lock}"
    );
    // The build dependency is in the closure only, not in the image.
    assert!(
        !lock.contains("[[package]]\nname = \"greet-dev\""),
        "{lock}"
    );
    f.ws.run(&["solve", "img", "--locked"]).assert_success();

    // Offline with nothing fetched: the source is reported missing.
    let e = f.ws.run(&["fetch", "img", "--offline"]).assert_failure();
    assert!(
        e.stderr.contains("greet-dev") || e.stderr.contains("hello"),
        "{}",
        e.stderr
    );
    f.run(&["fetch", "img"]).assert_success();

    let report = build::run(&f.build_args()).unwrap();
    let out = report.out_dir.clone();
    let tree = unpack(&out.join("rootfs.tar"));
    let root = tree.path();
    let hello = fs::read_to_string(root.join("usr/local/bin/hello")).unwrap();
    assert!(hello.contains("Hello from greet-dev"), "{hello}");
    assert_eq!(
        fs::read_to_string(root.join("usr/local/share/hello/message.txt")).unwrap(),
        "built from the pinned source\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/local/share/hello/env")).unwrap(),
        format!("epoch={EPOCH} jobs-set=yes prefix=/usr/local\n")
    );
    assert!(
        !root.join("usr/local/share/hello/junk").exists(),
        "install filter"
    );
    // Registered with dpkg, listed in packages.txt and the SBOM.
    let status = fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(
        status.contains("Package: hello\nStatus: install ok installed\n"),
        "{status}"
    );
    let list = fs::read_to_string(root.join("var/lib/dpkg/info/hello.list")).unwrap();
    assert!(list.contains("/usr/local/bin/hello-true\n"), "{list}");
    let md5 = fs::read_to_string(root.join("var/lib/dpkg/info/hello.md5sums")).unwrap();
    assert!(md5.contains("  usr/local/bin/hello\n"), "{md5}");
    let pkgs = fs::read_to_string(out.join("packages.txt")).unwrap();
    assert!(pkgs.contains("hello 1.0 amd64\n"), "{pkgs}");
    assert!(!pkgs.contains("greet-dev"), "{pkgs}");
    let sbom = fs::read_to_string(out.join("sbom.cdx.json")).unwrap();
    assert!(
        sbom.contains("pkg:deb/imgbuild/hello@1.0?arch=amd64"),
        "{sbom}"
    );
    let first = sha(&out.join("rootfs.tar"));

    // A fresh cache gives the same bytes (the component is rebuilt).
    let again = BuildArgs {
        cache_dir: Some(f.tmp.path().join("cache2")),
        out: Some(f.tmp.path().join("out2")),
        ..f.build_args()
    };
    let r2 = build::run(&again).unwrap();
    assert_eq!(
        sha(&r2.out_dir.join("rootfs.tar")),
        first,
        "bit-reproducible"
    );

    // A changed build script: the lock is stale, then only that component rebuilds.
    let recipe = f.ws.read("recipes/img.toml");
    f.ws.write_recipe(
        "img",
        &recipe.replace("touch $DESTDIR$PREFIX/share/hello/junk", "true"),
    );
    let stale = f.ws.run(&["solve", "img", "--locked"]).assert_failure();
    assert!(stale.stderr.contains("stale"), "{}", stale.stderr);
    f.run(&["solve", "img"]).assert_success();
    let cache = f.ws.cache_dir().join("rootfs/@components/hello");
    let before: Vec<_> = fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    build::run(&f.build_args()).unwrap();
    let after: Vec<_> = fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_ne!(before, after, "the component was rebuilt under a new key");
    // Its output is the same (the removed file was filtered out anyway).
    assert_eq!(sha(&out.join("rootfs.tar")), first);

    // `verify`: two image builds and a from-scratch rebuild of the component agree.
    let report = imgbuild::ops::verify::run(&imgbuild::ops::verify::VerifyArgs {
        recipe: "img".into(),
        workspace: f.ws.path().to_path_buf(),
        source_date_epoch: Some(EPOCH),
        quiet: true,
        ..Default::default()
    })
    .unwrap();
    assert!(
        report
            .manifest
            .artifacts
            .iter()
            .any(|a| a.path.contains("rootfs"))
    );
}

#[test]
fn failing_and_networked_builds_leave_nothing() {
    let _umask = umask_lock();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let failing = BUILD.replace(
        "\"cp message.txt $DESTDIR$PREFIX/share/hello/\",",
        &format!(
            "\"cp message.txt $DESTDIR$PREFIX/share/hello/\",\n  \
             \"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' || {{ echo no network here >&2; exit 7; }}\","
        ),
    );
    let f = Fixture::new(&failing, vec![]);
    f.run(&["solve", "img"]).assert_success();
    f.run(&["fetch", "img"]).assert_success();
    let e = format!("{:#}", build::run(&f.build_args()).unwrap_err());
    assert!(e.contains("component `hello`"), "{e}");
    assert!(e.contains("build command 4"), "{e}");
    assert!(e.contains("exited with status 7"), "{e}");
    assert!(e.contains("no network here"), "the build's own error: {e}");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the build reached the host");
    let out = f.ws.path().join("out");
    assert!(!out.join("img").exists());
    assert!(
        fs::read_dir(&out).map_or(true, |mut d| d.next().is_none()),
        "nothing in out/"
    );
    let cache = f.ws.cache_dir().join("rootfs/@components/hello");
    let kept: Vec<fs::DirEntry> = fs::read_dir(&cache)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(kept.is_empty(), "nothing cached: {kept:?}");
}

#[test]
fn tampered_tree_and_missing_commit_are_refused() {
    let f = Fixture::new(BUILD, vec![]);
    f.run(&["solve", "img"]).assert_success();
    let lock = f.ws.read("locks/img.lock");
    let tree_sha = lock
        .split("[[component]]")
        .nth(1)
        .and_then(|c| c.lines().find_map(|l| l.strip_prefix("sha256 = \"")))
        .map(|s| s.trim_end_matches('"').to_string())
        .unwrap();
    // The lock pins another tree: the export is refused and nothing stored.
    let other = "0".repeat(64);
    f.ws.write_file("locks/img.lock", lock.replace(&tree_sha, &other).as_bytes());
    let e = f.run(&["fetch", "img"]).assert_failure();
    assert!(e.stderr.contains("nothing was stored"), "{}", e.stderr);
    assert!(e.stderr.contains(&tree_sha), "{}", e.stderr);
    let blob =
        f.ws.path()
            .join(format!("vendor/sha256/{}/{other}", &other[..2]));
    assert!(!blob.exists());

    // A mirror without the locked commit: a clear error.
    f.ws.write_file("locks/img.lock", lock.as_bytes());
    let elsewhere = f.tmp.path().join("empty-mirrors");
    let work = f.tmp.path().join("other-work");
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("x"), "other\n").unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "other"]);
    fs::create_dir_all(&elsewhere).unwrap();
    git(
        f.tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            elsewhere.join("hello.git").to_str().unwrap(),
        ],
    );
    let mut cmd = f.ws.command(&["fetch", "img"]);
    cmd.env(
        "IMGBUILD_MIRROR_GIT",
        format!("https://git.example.org/={}/", elsewhere.display()),
    );
    let e = support::workspace::run_bounded(cmd, support::workspace::RUN_TIMEOUT).assert_failure();
    assert!(
        e.stderr
            .contains(&format!("commit {} is not available from", f.commit)),
        "{}",
        e.stderr
    );
}

#[test]
fn unresolved_library_names_file_and_library() {
    let _umask = umask_lock();
    // An ELF linked against a library that only the build root has.
    let tmp = tempfile::tempdir().unwrap();
    let cc = |args: &[&str]| {
        let out = Command::new("gcc")
            .args(args)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gcc {args:?}: {out:?} (gcc is needed, see ci/setup.sh)"
        );
    };
    fs::write(tmp.path().join("m.c"), "int missing_fn(void){return 0;}\n").unwrap();
    fs::write(
        tmp.path().join("p.c"),
        "int missing_fn(void);\nint main(void){return missing_fn();}\n",
    )
    .unwrap();
    cc(&[
        "-shared",
        "-fPIC",
        "-o",
        "libmissing.so.1",
        "-Wl,-soname,libmissing.so.1",
        "m.c",
    ]);
    cc(&["-o", "needs-missing", "p.c", "./libmissing.so.1"]);
    let linked = DebSpec::new("linked-dev", "1", "amd64")
        .depends("dpkg")
        .file(
            "/usr/lib/linked/needs-missing",
            fs::read(tmp.path().join("needs-missing")).unwrap(),
            0o755,
        );
    let component = BUILD.replace("greet-dev (>= 2)", "linked-dev").replace(
        "greet-gen > $DESTDIR$PREFIX/bin/hello",
        "cp /usr/lib/linked/needs-missing $DESTDIR$PREFIX/bin/hello",
    );
    let f = Fixture::new(&component, vec![linked]);
    f.run(&["solve", "img"]).assert_success();
    f.run(&["fetch", "img"]).assert_success();
    let e = format!("{:#}", build::run(&f.build_args()).unwrap_err());
    assert!(
        e.contains("/usr/local/bin/hello (component `hello`) needs libmissing.so.1"),
        "{e}"
    );
    assert!(
        !e.contains("hello-true"),
        "the host's true resolves libc in the image: {e}"
    );
    assert!(!f.ws.path().join("out/img").exists());
}
