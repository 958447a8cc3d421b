//! `ci/nightly.sh` end to end, offline: a signed fixture archive (a runnable
//! base made of the host's binaries, so maintainer scripts really run) and a
//! security archive on 127.0.0.1, reached through `NIGHTLY_MIRRORS` only;
//! Debian's `docker-registry` on 127.0.0.1 as the publication target; the
//! project a git checkout whose lock is behind the archive.
//!
//! Night 1 refreshes the lock on branch `nightly/DATE`, writes the drift
//! report (one security update), builds, verifies, publishes with the
//! `nightly`, date and lock tags and the drift report attached. Night 2, the
//! archive unchanged: nothing is built or uploaded and the report says so.
//! Night 3, the archive brings a postinst that writes the clock: the night
//! fails with exit 3, nothing is published and `nightly` stays put.
//!
//! Three nights with six small builds take about 40 s here, so the test is
//! in the default suite (it skips, saying why, without docker-registry and
//! skopeo). `cargo test --test nightly_pipeline -- --nocapture` prints each
//! night's REPORT.md (docs/nightly.md quotes it).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::hostbase::host_base;
use support::publishing::{need_tools, p256};
use support::registry::Registry;
use support::workspace::run_bounded;
use support::*;

const RECIPE: &str = "edge";

/// The main and security archives in the state of a given night.
fn archives(site: &Site, security_version: Option<&str>, stamping: bool) {
    let mut main = site
        .archive("debian")
        .suite("bookworm", &["amd64"], &["main"]);
    for spec in host_base() {
        main = main.add(spec);
    }
    main.add(app("1.0", false)).build();
    let mut sec = site
        .archive("debian-security")
        .suite("bookworm-security", &["amd64"], &["main"])
        .add(DebSpec::new("secnote", "1", "all"));
    if let Some(v) = security_version {
        sec = sec.add(app(v, stamping));
    }
    sec.build();
}

/// The image's one package; `stamping` gives it a postinst that writes the
/// wall clock into the image (a non-reproducible build).
fn app(version: &str, stamping: bool) -> DebSpec {
    let spec = DebSpec::new("app", version, "amd64").depends("dpkg").file(
        "/usr/share/app/VERSION",
        format!("{version}\n"),
        0o644,
    );
    if stamping {
        spec.script(
            "postinst",
            "#!/bin/sh\nset -e\nmkdir -p /var/lib/app\ndate +%s%N > /var/lib/app/installed-at\n",
        )
    } else {
        spec
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@test.invalid"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Night {
    code: Option<i32>,
    out: String,
    report: serde_json::Value,
    markdown: String,
}

fn night(ws: &Workspace, env: &[(&str, String)], date: &str) -> Night {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/nightly.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script).arg(RECIPE);
    // Only this test's configuration: no mirror or nightly setting of the host.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("IMGBUILD_") || k.starts_with("NIGHTLY_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("IMGBUILD_BIN", env!("CARGO_BIN_EXE_imgbuild"))
        .env("NIGHTLY_REPO", ws.path())
        .env("NIGHTLY_DATE", date)
        .env("NIGHTLY_LONG_CHECKS", "0")
        .env("IMGBUILD_CACHE", ws.cache_dir())
        .env("HOME", ws.path().join("../home"))
        .env("IMGBUILD_APT_DIR", ws.path().join("../apt"))
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let run = run_bounded(cmd, Duration::from_secs(900));
    assert!(!run.timed_out, "ci/nightly.sh timed out:\n{}", run.stdout);
    let dir = ws.path().join("out/nightly");
    let markdown = std::fs::read_to_string(dir.join("REPORT.md"))
        .unwrap_or_else(|e| panic!("no REPORT.md ({e}):\n{}{}", run.stdout, run.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("REPORT.json")).unwrap()).unwrap();
    eprintln!("--- night {date}: exit {:?}\n{markdown}", run.status.code());
    Night {
        code: run.status.code(),
        out: format!("{}{}", run.stdout, run.stderr),
        report,
        markdown,
    }
}

/// Every file under the registry's storage (to see that nothing was added).
fn stored(root: &Path) -> BTreeSet<PathBuf> {
    support::solving::walk_files(root).into_iter().collect()
}

fn resolve(reference: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .args(["pull", "--resolve", reference, "--insecure"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn nightly_publishes_a_refreshed_lock_once_and_refuses_an_irreproducible_one() {
    need_tools!();
    let _umask = umask_lock();
    let site = Site::new();
    archives(&site, None, false);
    let server = site.serve();
    let ws = Workspace::new();
    let key = ws.install_key(TestKey::primary(), "test.pgp");
    let sources = [
        ("bookworm", "debian", "bookworm"),
        ("bookworm-security", "debian-security", "bookworm-security"),
    ];
    let mut recipe = RecipeToml::new("amd64").packages(&["app"]);
    for (name, archive, suite) in sources {
        recipe = recipe.source(SourceToml::archive(name, archive, suite).keyring(&key));
    }
    ws.write_recipe(RECIPE, &recipe.to_toml());
    ws.write_file(".gitignore", b"/out\n/vendor\n");
    let mirrors = format!(
        "debian={} debian-security={}",
        server.url("debian/"),
        server.url("debian-security/")
    );
    let mut solve = Vec::new();
    for m in mirrors.split(' ') {
        solve.extend(["--mirror", m]);
    }
    solve.extend(["solve", RECIPE]);
    ws.run(&solve).assert_success();
    git(ws.path(), &["init", "-q", "-b", "main"]);
    git(ws.path(), &["add", "."]);
    git(ws.path(), &["commit", "-q", "-m", "the user's checkout"]);
    let user_head = git(ws.path(), &["rev-parse", "HEAD"]);
    let user_lock = ws.read(&format!("locks/{RECIPE}.lock"));

    // Tonight the archive has a security update of app.
    archives(&site, Some("1.0+deb12u1"), false);
    let reg = Registry::plain();
    let keys = tempfile::tempdir().unwrap();
    let (signing, public) = p256(keys.path(), "nightly");
    let env = [
        ("NIGHTLY_REGISTRY", format!("{}/team", reg.addr)),
        ("NIGHTLY_INSECURE", "1".to_string()),
        ("NIGHTLY_MIRRORS", mirrors.clone()),
        ("NIGHTLY_SIGNING_KEY", signing.display().to_string()),
    ];
    let target = format!("{}/team/{RECIPE}", reg.addr);

    // Night 1: refreshed, built, verified, published.
    let n1 = night(&ws, &env, "20261201");
    assert_eq!(n1.code, Some(0), "{}", n1.out);
    let r = &n1.report["recipes"][0];
    assert_eq!(r["status"], "published", "{}", n1.out);
    assert_eq!(r["reproducible"], true);
    assert_eq!(r["moved"][0]["name"], "app");
    assert_eq!(r["moved"][0]["old"], "1.0");
    assert_eq!(r["moved"][0]["new"], "1.0+deb12u1");
    assert_eq!(r["moved"][0]["security"], true);
    assert_eq!(r["moved"][0]["source_package"], "app");
    let digest = r["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{r}");
    let lock_tag = r["lock_tag"].as_str().unwrap().to_string();
    let tags: Vec<&str> = r["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in ["nightly", "20261201", lock_tag.as_str()] {
        assert!(tags.contains(&t), "{t} not in {tags:?}");
        assert_eq!(resolve(&format!("{target}:{t}")), digest, "tag {t}");
    }
    let stages: Vec<&str> = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    let has_push = Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .args(["vendor", "push", "--help"])
        .output()
        .unwrap()
        .status
        .success();
    let mut expected = vec![
        "solve", "drift", "check", "fetch", "build", "verify", "publish",
    ];
    if has_push {
        expected.push("store");
    }
    assert_eq!(stages, expected);
    assert!(r["uploaded_bytes"].as_u64().unwrap() > 0);
    assert!(
        n1.markdown
            .contains("| edge | published | 1 | 1 | yes | `sha256:"),
        "{}",
        n1.markdown
    );
    assert!(
        n1.markdown
            .contains("security updates: app 1.0 -> 1.0+deb12u1 (app)"),
        "{}",
        n1.markdown
    );
    // The store push: the command when this imgbuild has it, else said.
    let store = r["store"].as_str().unwrap();
    if has_push {
        assert!(store.starts_with("pushed to "), "{store}");
    } else {
        assert_eq!(
            store,
            "store push skipped: this imgbuild has no vendor push"
        );
    }
    // The drift report is attached to the image (referrers tag schema).
    let index = reg.skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{target}:{}", digest.replace(':', "-")),
    ]);
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let attached = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["artifactType"] == "application/vnd.imgbuild.attachment.v1")
        .count();
    assert_eq!(attached, 2, "drift.md and drift.json: {index}");
    // Pulled by its digest with the key, the drift report is a signed subject.
    let drift_md = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["artifactType"] == "application/vnd.imgbuild.attachment.v1"
                && reg
                    .skopeo(&[
                        "inspect",
                        "--tls-verify=false",
                        "--raw",
                        &format!("docker://{target}@{}", m["digest"].as_str().unwrap()),
                    ])
                    .windows(8)
                    .any(|w| w == b"drift.md")
        })
        .expect("drift.md among the referrers")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let pulled = keys.path().join("pulled");
    support::publishing::pull(&ws, &format!("{target}@{drift_md}"), Some(&public), &pulled)
        .assert_success();
    assert_eq!(
        std::fs::read(pulled.join("drift.md")).unwrap(),
        std::fs::read(ws.path().join("out/nightly/edge/drift.md")).unwrap()
    );
    let drift_text = std::fs::read_to_string(pulled.join("drift.md")).unwrap();
    assert!(
        drift_text.contains("| app | 1.0 | 1.0+deb12u1 | bookworm-security | app | yes |"),
        "{drift_text}"
    );
    // The lock moved on the work branch only: the user's checkout is as it was.
    assert_eq!(git(ws.path(), &["rev-parse", "HEAD"]), user_head);
    assert_eq!(git(ws.path(), &["branch", "--show-current"]), "main");
    assert_eq!(ws.read(&format!("locks/{RECIPE}.lock")), user_lock);
    let log = git(ws.path(), &["log", "--format=%s", "nightly/20261201"]);
    assert!(
        log.starts_with("nightly 20261201: refresh locks/edge.lock"),
        "{log}"
    );
    let committed = git(
        ws.path(),
        &["show", &format!("nightly/20261201:locks/{RECIPE}.lock")],
    );
    assert!(committed.contains("1.0+deb12u1"));

    // Night 2, nothing moved: nothing built, nothing uploaded, and said so.
    let before = stored(&reg.storage);
    let n2 = night(&ws, &env, "20261202");
    assert_eq!(n2.code, Some(0), "{}", n2.out);
    let r = &n2.report["recipes"][0];
    assert_eq!(r["status"], "unchanged", "{}", n2.out);
    assert_eq!(r["digest"], digest.as_str());
    assert_eq!(n2.report["uploaded_bytes"], 0);
    let stages: Vec<&str> = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["solve", "drift", "check"],
        "nothing fetched or built"
    );
    assert!(
        n2.markdown
            .contains("unchanged: nothing rebuilt, nothing uploaded"),
        "{}",
        n2.markdown
    );
    assert!(
        n2.markdown
            .lines()
            .nth(2)
            .unwrap()
            .ends_with(", nothing uploaded"),
        "{}",
        n2.markdown
    );
    assert_eq!(
        stored(&reg.storage),
        before,
        "night 2 wrote to the registry"
    );
    assert_eq!(resolve(&format!("{target}:nightly")), digest);

    // Night 3: the update's postinst writes the clock. Not reproducible:
    // exit 3, nothing published, `nightly` where it was.
    archives(&site, Some("1.0+deb12u2"), true);
    let n3 = night(&ws, &env, "20261203");
    assert_eq!(n3.code, Some(3), "{}", n3.out);
    let r = &n3.report["recipes"][0];
    assert_eq!(r["status"], "not-reproducible", "{}", n3.out);
    assert_eq!(r["reproducible"], false);
    assert!(n3.markdown.contains("NOT REPRODUCIBLE"), "{}", n3.markdown);
    assert!(
        n3.markdown.contains("- image: not published to"),
        "{}",
        n3.markdown
    );
    assert_eq!(
        resolve(&format!("{target}:nightly")),
        digest,
        "nightly moved"
    );
    assert_eq!(
        resolve(&format!("{target}:20261203")),
        "",
        "a date tag was published"
    );
    let new_tag = r["lock_tag"].as_str().unwrap();
    assert_ne!(new_tag, lock_tag);
    assert_eq!(resolve(&format!("{target}:{new_tag}")), "");
    let verify_log =
        std::fs::read_to_string(ws.path().join("out/nightly/edge/verify.log")).unwrap();
    assert!(
        verify_log.contains("var/lib/app/installed-at"),
        "{verify_log}"
    );
}
