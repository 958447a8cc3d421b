//! The reports of `ci/nightly.sh` (written by `ci/nightly_report.py`), fast
//! and offline: the drift between two locks agrees with `imgbuild outdated
//! --json` on a fixture archive that moves on; the night's REPORT.md is one
//! page with what moved, security updates, digests, reproducibility and
//! time per stage; a lock that is not TOML is refused naming the file.
//! (The whole pipeline: tests/nightly_pipeline.rs, run by ci/live.sh.)

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use support::solving::lock;
use support::*;

fn report_py(args: &[&Path]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/nightly_report.py");
    Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs (ci/setup.sh; Debian's python3 has tomllib)")
}

fn run_ok(args: &[&Path]) {
    let out = report_py(args);
    assert!(
        out.status.success(),
        "nightly_report.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// (name, old, new, source, security) of each entry.
fn rows(v: &serde_json::Value) -> Vec<(String, String, String, String, bool)> {
    let s = |x: &serde_json::Value| x.as_str().unwrap_or("-").to_string();
    v["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                s(&d["name"]),
                s(&d["old"]),
                s(&d["new"]),
                s(&d["source"]),
                d["security"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn drift_between_the_locks_is_what_imgbuild_outdated_lists() {
    let site = Site::new();
    let build = |a: &str, extra: bool| {
        let mut main = site
            .archive("debian")
            .suite("bookworm", &["amd64"], &["main"])
            .add(DebSpec::new("a", "1", "amd64").depends("b, c"))
            .add(DebSpec::new("b", "1", "amd64"))
            .add(DebSpec::new("c", "1", "all"));
        if a != "1" {
            main = main.add(DebSpec::new("a", a, "amd64").depends("b, c"));
        }
        main.build();
        let mut sec = site
            .archive("debian-security")
            .suite("bookworm-security", &["amd64"], &["main"])
            .add(DebSpec::new("unrelated", "1", "all"));
        if extra {
            sec = sec.add(DebSpec::new("b", "1+deb12u1", "amd64"));
        }
        sec.build();
    };
    build("1", false);
    let server = site.serve();
    let ws = Workspace::new();
    let key = ws.install_key(TestKey::primary(), "test.pgp");
    let recipe = RecipeToml::new("amd64")
        .packages(&["a"])
        .source(SourceToml::url("bookworm", &server.url("debian/"), "bookworm").keyring(&key))
        .source(
            SourceToml::url(
                "bookworm-security",
                &server.url("debian-security/"),
                "bookworm-security",
            )
            .keyring(&key),
        );
    ws.write_recipe("r", &recipe.to_toml());
    ws.run(&["solve", "r"]).assert_success();
    let old = ws.path().join("old.lock");
    fs::copy(ws.path().join("locks/r.lock"), &old).unwrap();

    // The archive moves on: a new `a`, a security update of `b`.
    build("2", true);
    let outdated = ws.run(&["outdated", "r", "--json"]);
    assert_eq!(outdated.status.code(), Some(1), "{}", outdated.stderr);
    let reference: serde_json::Value = serde_json::from_str(&outdated.stdout).unwrap();
    ws.run(&["solve", "r", "--update"]).assert_success();
    let out = ws.path().join("night");
    run_ok(&[
        Path::new("drift"),
        &old,
        &ws.path().join("locks/r.lock"),
        &out,
    ]);
    let ours = json(&out.join("drift.json"));
    assert_eq!(rows(&ours), rows(&reference), "{ours}\n{reference}");
    assert_eq!(
        rows(&ours),
        [
            ("a".into(), "1".into(), "2".into(), "bookworm".into(), false),
            (
                "b".into(),
                "1".into(),
                "1+deb12u1".into(),
                "bookworm-security".into(),
                true
            ),
        ]
    );
    assert_eq!(ours["security"], 1);
    assert_eq!(ours["drift"][1]["source_package"], "b");
    assert_eq!(lock(&ws, "r").package("b").unwrap().version, "1+deb12u1");
    let md = fs::read_to_string(out.join("drift.md")).unwrap();
    assert!(
        md.contains("| b | 1 | 1+deb12u1 | bookworm-security | b | yes |"),
        "{md}"
    );
    // Deterministic: the same transition gives the same bytes (it is
    // attached to the publication and a subject of its provenance).
    let again = ws.path().join("again");
    run_ok(&[
        Path::new("drift"),
        &old,
        &ws.path().join("locks/r.lock"),
        &again,
    ]);
    assert_eq!(
        fs::read(again.join("drift.md")).unwrap(),
        fs::read(out.join("drift.md")).unwrap()
    );
}

const OLD_LOCK: &str = r#"version = 1
[recipe]
name = "switch"
hash = "sha256:00"
architecture = "amd64"
[[source]]
name = "bookworm"
suite = "bookworm"
[[source]]
name = "bookworm-security"
suite = "bookworm-security"
[[package]]
name = "libsystemd0"
version = "252.30-1~deb12u2"
architecture = "amd64"
source = "bookworm"
filename = "pool/main/s/systemd/libsystemd0_252.30-1~deb12u2_amd64.deb"
[[package]]
name = "libc6"
version = "2.36-9+deb12u9"
architecture = "i386"
source = "bookworm"
filename = "pool/main/g/glibc/libc6_2.36-9+deb12u9_i386.deb"
[[package]]
name = "gone"
version = "1"
architecture = "all"
source = "bookworm"
filename = "pool/main/g/gone/gone_1_all.deb"
[[python]]
name = "grpcio"
version = "1.85.1"
[[component]]
name = "bmv2"
version = "1.15.5"
commit = "693e69e634fedf007964a069fdd69acc441a5f80"
"#;

fn new_lock() -> String {
    OLD_LOCK
        .replace(
            "version = \"252.30-1~deb12u2\"\narchitecture = \"amd64\"\nsource = \"bookworm\"\nfilename = \"pool/main/s/systemd/libsystemd0_252.30-1~deb12u2_amd64.deb\"",
            "version = \"252.31-1~deb12u1\"\narchitecture = \"amd64\"\nsource = \"bookworm-security\"\nfilename = \"pool/updates/main/s/systemd/libsystemd0_252.31-1~deb12u1_amd64.deb\"",
        )
        .replace("2.36-9+deb12u9", "2.36-9+deb12u10")
        .replace(
            "[[package]]\nname = \"gone\"\nversion = \"1\"\narchitecture = \"all\"\nsource = \"bookworm\"\nfilename = \"pool/main/g/gone/gone_1_all.deb\"\n",
            "",
        )
        .replace("1.85.1", "1.85.3")
        .replace("693e69e634fe", "0123456789ab")
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), text).unwrap();
}

#[test]
fn the_night_report_is_one_page_with_moves_digests_and_times() {
    let tmp = tempfile::tempdir().unwrap();
    let night = tmp.path().join("nightly");
    let digest = format!("sha256:{}", "ab".repeat(32));
    write(
        &night,
        "facts",
        "date=20261201\nbase=0123456789abcdef0123456789abcdef01234567\nimgbuild=imgbuild 0.1.0\n",
    );

    // A recipe that moved and was published.
    let sw = night.join("switch");
    write(&sw, "old.lock", OLD_LOCK);
    write(&sw, "new.lock", &new_lock());
    run_ok(&[
        Path::new("drift"),
        &sw.join("old.lock"),
        &sw.join("new.lock"),
        &sw,
    ]);
    let d = json(&sw.join("drift.json"));
    let names: Vec<&str> = d["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gone", "libc6:i386", "libsystemd0", "pypi:grpcio"]);
    assert_eq!(d["drift"][0]["new"], serde_json::Value::Null);
    assert_eq!(d["drift"][2]["source_package"], "systemd");
    assert_eq!(d["drift"][2]["security"], true);
    assert_eq!(d["drift"][1]["source_package"], "glibc");
    assert_eq!(d["security"], 1);
    assert_eq!(d["build_inputs"][0]["name"], "component:bmv2");
    write(
        &sw,
        "facts",
        &format!(
            "recipe=switch\nbranch=nightly/20261201\ncommit={}\nlock_tag=lock-0123456789ab\nreference=127.0.0.1:5000/team/switch\nprevious_nightly=sha256:{}\nreproducible=yes\nstatus=published\nstore=store push skipped: this imgbuild has no vendor push\n",
            "c".repeat(40),
            "cd".repeat(32)
        ),
    );
    write(
        &sw,
        "stages.tsv",
        "solve\tok\t12.5\ndrift\tok\t0.1\ncheck\tok\t0.2\nfetch\tok\t30.0\nbuild\tok\t200.4\nverify\tok\t410.0\npublish\tok\t20.0\n",
    );
    write(
        &sw,
        "publish.json",
        &format!(
            r#"{{"repository": "127.0.0.1:5000/team/switch", "digest": "{digest}", "tags": ["lock-0123456789ab", "nightly", "20261201"], "uploaded_bytes": 1234}}"#
        ),
    );
    // One unchanged, one not reproducible.
    let same = night.join("node");
    write(
        &same,
        "facts",
        &format!(
            "recipe=node\nstatus=unchanged\ndigest={digest}\nreason=unchanged: already `nightly`; nothing rebuilt, nothing uploaded\n"
        ),
    );
    write(
        &same,
        "stages.tsv",
        "solve\tok\t3.0\ndrift\tok\t0.1\ncheck\tok\t0.2\n",
    );
    write(
        &same,
        "drift.json",
        r#"{"drift": [], "security": 0, "build_inputs": []}"#,
    );
    let bad = night.join("lab");
    write(
        &bad,
        "facts",
        "recipe=lab\nreproducible=no\nstatus=not-reproducible\nfailed_stage=verify\n",
    );
    write(&bad, "stages.tsv", "solve\tok\t3.0\nverify\tfailed\t99.0\n");

    run_ok(&[Path::new("report"), &night]);
    let md = fs::read_to_string(night.join("REPORT.md")).unwrap();
    eprintln!("{md}");
    assert!(md.starts_with("# Nightly 20261201\n"), "{md}");
    assert!(md.contains("1234 bytes uploaded"), "{md}");
    assert!(
        md.contains("| switch | published | 4 | 1 | yes | `sha256:abababababab` | 673 s |"),
        "{md}"
    );
    assert!(
        md.contains("| node | unchanged: nothing rebuilt, nothing uploaded | 0 | 0 | - |"),
        "{md}"
    );
    assert!(md.contains("| lab | NOT REPRODUCIBLE"), "{md}");
    assert!(
        md.contains("security updates: libsystemd0 252.30-1~deb12u2 -> 252.31-1~deb12u1 (systemd)"),
        "{md}"
    );
    assert!(
        md.contains("other updates: gone 1 -> -, libc6:i386"),
        "{md}"
    );
    assert!(md.contains("verify 410.0 s"), "{md}");
    assert!(
        md.contains("previous `nightly`: `sha256:cdcdcdcdcdcd`"),
        "{md}"
    );
    assert!(md.contains("store push skipped"), "{md}");
    assert!(md.lines().count() < 45, "not one page:\n{md}");
    let j = json(&night.join("REPORT.json"));
    let names: Vec<&str> = j["recipes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["recipe"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lab", "node", "switch"]);
    assert_eq!(j["recipes"][0]["reproducible"], false);
    assert_eq!(j["recipes"][2]["digest"], digest.as_str());
    assert_eq!(j["recipes"][2]["seconds"], 673.2);
    assert_eq!(j["uploaded_bytes"], 1234);
}

#[test]
fn a_lock_that_is_not_toml_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.lock");
    fs::write(&bad, "version = 1\n[[package]\nname = \"x\"\n").unwrap();
    let good = tmp.path().join("good.lock");
    fs::write(&good, OLD_LOCK).unwrap();
    let out_dir = tmp.path().join("out");
    let out = report_py(&[Path::new("drift"), &good, &bad, &out_dir]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.lock: not a lock file"), "{err}");
    assert!(!out_dir.join("drift.json").exists());
}

#[test]
fn configuration_errors_exit_2_before_anything_is_done() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    write(
        &repo.join("recipes"),
        "edge.toml",
        "architecture = \"amd64\"\n",
    );
    let status = Command::new("git")
        .args(["init", "-q"])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(status.success());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/nightly.sh");
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new("bash");
        cmd.arg(&script).args(args);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("NIGHTLY_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("NIGHTLY_REPO", &repo)
            .env("IMGBUILD_BIN", env!("CARGO_BIN_EXE_imgbuild"))
            .env("NIGHTLY_LONG_CHECKS", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[], &["edge"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("set NIGHTLY_REGISTRY"), "{err}");
    let reg = [("NIGHTLY_REGISTRY", "127.0.0.1:9/team")];
    let (code, err) = run(&[reg[0], ("NIGHTLY_DATE", "2026-12-01")], &["edge"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("NIGHTLY_DATE must be YYYYMMDD"), "{err}");
    let (code, err) = run(&reg, &["../etc"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not a recipe name"), "{err}");
    let (code, err) = run(&reg, &["other"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no recipes/other.toml"), "{err}");
    // Nothing was made: no work tree, no report.
    assert!(!repo.join("out").exists());
}
