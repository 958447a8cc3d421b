//! The vendor store shared through an OCI registry: `imgbuild vendor push`
//! to a real registry (Debian's `docker-registry` on 127.0.0.1), checked by
//! skopeo and oras; a second builder with an empty store, an empty cache
//! and the archive gone builds the same image from the registry alone; a
//! tampered blob and hostile registry replies are refused with nothing
//! stored.

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use imgbuild::lock::Lockfile;
use support::publishing::{need_tools, sha256, venv_python};
use support::registry::Registry;
use support::*;

/// A served archive with `app` (→ `libx`) and an Essential `base-files`,
/// and a workspace whose recipe `img` wants `app`.
fn fixture() -> (Site, TestServer, Workspace) {
    let site = Site::new();
    site.archive("debian")
        .suite("bookworm", &["amd64"], &["main"])
        .add(
            DebSpec::new("base-files", "12.4", "amd64")
                .essential()
                .file("etc/os-release", "ID=test\n", 0o644),
        )
        .add(
            DebSpec::new("app", "1.0", "amd64")
                .depends("libx (>= 2)")
                .file("usr/share/app/data", vec![7u8; 5000], 0o644),
        )
        .add(DebSpec::new("libx", "2.1", "amd64").file("usr/lib/libx.so.2", "ELF", 0o644))
        .build();
    let server = site.serve();
    let ws = Workspace::new();
    let src = ws.trusted_source("main", &server.url("debian/"), "bookworm", &["main"]);
    ws.write_recipe(
        "img",
        &RecipeToml::new("amd64")
            .packages(&["app"])
            .source(src)
            .to_toml(),
    );
    (site, server, ws)
}

/// A new workspace with `from`'s recipes and locks only (empty store and cache).
fn second_builder(from: &Workspace) -> Workspace {
    let ws = Workspace::new();
    for dir in ["recipes", "locks"] {
        copy_dir(&from.path().join(dir), &ws.path().join(dir));
    }
    ws
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every file under `vendor/sha256/` (name → size).
fn store_files(ws: &Workspace) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(fans) = fs::read_dir(ws.path().join("vendor/sha256")) else {
        return out;
    };
    for fan in fans {
        for f in fs::read_dir(fan.unwrap().path()).unwrap() {
            let f = f.unwrap();
            out.push((
                f.file_name().to_string_lossy().into_owned(),
                f.metadata().unwrap().len(),
            ));
        }
    }
    out.sort();
    out
}

/// Files left in `vendor/tmp/`.
fn temp_files(ws: &Workspace) -> usize {
    fs::read_dir(ws.path().join("vendor/tmp")).map_or(0, |d| d.count())
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn push_then_build_elsewhere_from_the_registry_alone() {
    need_tools!();
    let reg = Registry::plain();
    let (_site, server, ws) = fixture();
    ws.run(&["build", "img", "--no-scripts"]).assert_success();
    let lock_bytes = fs::read(ws.path().join("locks/img.lock")).unwrap();
    let lock = Lockfile::read(&ws.path().join("locks/img.lock")).unwrap();
    let tag = format!("img-lock-{}", &sha256(&lock_bytes)[..12]);
    let repo = format!("{}/imgbuild-store", reg.addr);

    // First push: every layer and the empty config are sent.
    let push = || ws.run(&["vendor", "push", &repo, "img", "--insecure", "--json"]);
    let first = push().assert_success();
    eprintln!("--- first push\n{}", first.stderr);
    let r = json(&first.stdout);
    assert_eq!(r["reference"], format!("{repo}:{tag}").as_str());
    let audit_files = 1 + lock.sources[0].indexes.len();
    let layers = 1 + lock.blobs().len() + audit_files;
    assert_eq!(
        r["layers"], layers,
        "lock, 3 packages, InRelease, indexes: {r}"
    );
    assert_eq!(r["blobs_sent"], layers + 1, "{r}");
    assert_eq!(r["blobs_skipped"], 0);
    assert!(r["bytes_sent"].as_u64().unwrap() > 5000);
    assert_eq!(r["manifest_sent"], true);
    assert!(r["uncached"].as_array().unwrap().is_empty(), "{r}");
    assert!(
        first
            .stderr
            .contains(&format!("{} blob(s) sent", layers + 1))
    );

    // Again: nothing is sent, and the summary says so.
    let second = push().assert_success();
    eprintln!("--- second push\n{}", second.stderr);
    let r2 = json(&second.stdout);
    assert_eq!(r2["blobs_sent"], 0, "{r2}");
    assert_eq!(r2["blobs_skipped"], layers + 1);
    assert_eq!(r2["bytes_sent"], 0);
    assert_eq!(r2["manifest_sent"], false);
    assert_eq!(r2["tag_moved"], false);
    assert_eq!(r2["digest"], r["digest"]);
    assert!(
        second.stderr.contains("nothing to upload"),
        "{}",
        second.stderr
    );

    // skopeo, an independent client: an OCI artifact listing every blob.
    let raw = reg.skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{repo}:{tag}"),
    ]);
    assert_eq!(
        format!("sha256:{}", sha256(&raw)),
        r["digest"].as_str().unwrap()
    );
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["artifactType"], "application/vnd.imgbuild.store.v1");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let m_layers = m["layers"].as_array().unwrap();
    assert_eq!(m_layers.len(), layers);
    assert_eq!(
        m_layers[0]["mediaType"],
        "application/vnd.imgbuild.lock.v1+toml"
    );
    assert_eq!(
        m_layers[0]["digest"],
        format!("sha256:{}", sha256(&lock_bytes))
    );
    for b in lock.blobs() {
        let l = m_layers
            .iter()
            .find(|l| l["digest"] == format!("sha256:{}", b.sha256).as_str())
            .unwrap_or_else(|| panic!("{} not in the manifest", b.label));
        assert_eq!(l["size"], b.size);
        assert_eq!(l["annotations"]["vnd.imgbuild.store.section"], "package");
        assert_eq!(
            l["annotations"]["vnd.imgbuild.store.label"],
            b.label.as_str()
        );
        assert_eq!(l["annotations"]["vnd.imgbuild.store.path"], b.filename);
    }
    let sections: Vec<&str> = m_layers
        .iter()
        .map(|l| {
            l["annotations"]["vnd.imgbuild.store.section"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(
        sections.contains(&"inrelease") && sections.contains(&"index"),
        "{sections:?}"
    );
    oras_check(&reg.addr, &format!("imgbuild-store:{tag}"), &ws);

    // A second builder: empty store, empty cache, and the archive gone.
    drop(server);
    let ws2 = second_builder(&ws);
    let store = format!("store=oci://{repo}:{tag}");
    let built = ws2
        .run(&["build", "img", "--no-scripts", "--mirror", &store])
        .assert_success();
    eprintln!("--- second builder\n{}", built.stderr);
    let err = &built.stderr;
    assert!(
        err.contains(&format!("store {repo}: 3 file(s) taken")),
        "{err}"
    );
    assert!(
        err.contains(&format!("and {audit_files} signed index file(s)")),
        "{err}"
    );
    assert!(err.contains("fetched 3, reused 0"), "{err}");
    assert_eq!(store_files(&ws2), store_files(&ws));
    assert_eq!(temp_files(&ws2), 0);
    // Bit-identical: the manifest lists every artifact's sha256.
    assert_eq!(
        ws2.read("out/img/manifest.json"),
        ws.read("out/img/manifest.json")
    );
    assert_eq!(
        fs::read(ws2.path().join("out/img/rootfs.tar")).unwrap(),
        fs::read(ws.path().join("out/img/rootfs.tar")).unwrap()
    );
    // The env form, and a store that has everything already: nothing taken.
    let again = ws2
        .command(&["fetch", "img"])
        .env("IMGBUILD_STORE", format!("oci://{repo}"))
        .output()
        .unwrap();
    let again_err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{again_err}");
    assert!(again_err.contains("fetched 0, reused 3"), "{again_err}");
    // vendor gc and verify see an ordinary store.
    let gc = ws2.run(&["vendor", "gc"]).assert_success();
    assert!(
        gc.stderr.contains("kept 3 blob(s), removed 0"),
        "{}",
        gc.stderr
    );
    ws2.run(&["vendor", "verify"]).assert_success();

    // A tampered blob in the registry: refused, naming it; nothing stored.
    let app = lock.package("app").unwrap();
    let file = reg.blob_file(&format!("sha256:{}", app.sha256));
    let mut bytes = fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&file, &bytes).unwrap();
    let ws3 = second_builder(&ws);
    let bad = ws3
        .run(&["fetch", "img", "--mirror", &store])
        .assert_failure();
    eprintln!("--- tampered\n{}", bad.stderr);
    assert!(
        bad.stderr.contains("package `app 1.0 amd64`"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains(&format!(
            "http://{}/v2/imgbuild-store/blobs/sha256:{}",
            reg.addr, app.sha256
        )),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("digest mismatch"), "{}", bad.stderr);
    assert!(
        !store_files(&ws3).iter().any(|(n, _)| *n == app.sha256),
        "the tampered blob was stored"
    );
    assert_eq!(temp_files(&ws3), 0);
}

/// The ORAS client (the test venv's) reads the store manifest and pulls
/// every layer under its title: the lock and the vendor store's files.
fn oras_check(registry: &str, reference: &str, ws: &Workspace) {
    let Some(py) = venv_python() else {
        eprintln!("skipping the oras check: no test venv (ci/setup.sh makes it)");
        return;
    };
    let script = r#"
import hashlib, json, os, sys, tempfile
import oras.client
registry, ref, vendor = sys.argv[1:4]
client = oras.client.OrasClient(hostname=registry, insecure=True)
m = client.get_manifest(f"{registry}/{ref}")
assert m["artifactType"] == "application/vnd.imgbuild.store.v1", m
with tempfile.TemporaryDirectory() as out:
    files = client.pull(target=f"{registry}/{ref}", outdir=out)
    assert len(files) == len(m["layers"]), (files, m["layers"])
    by_title = {l["annotations"]["org.opencontainers.image.title"]: l for l in m["layers"]}
    for f in files:
        data = open(f, "rb").read()
        layer = by_title[os.path.basename(f)]
        digest = hashlib.sha256(data).hexdigest()
        assert "sha256:" + digest == layer["digest"], f
        if layer["annotations"]["vnd.imgbuild.store.section"] == "package":
            assert open(f"{vendor}/sha256/{digest[:2]}/{digest}", "rb").read() == data
print("oras: ok", len(files))
"#;
    let out = std::process::Command::new(py)
        .args(["-c", script, registry, reference])
        .arg(ws.path().join("vendor"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oras check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A registry that answers every blob request with a hostile reply chosen
/// by the repository name; blobs it does not know are 404.
fn hostile_registry(sizes: Arc<Vec<(String, u64)>>) -> u16 {
    let (port, _log) = support::scripted::serve(Arc::new(move |req, port| {
        if req.target == "/v2/" {
            return (200, vec![], b"{}".to_vec());
        }
        let mut parts = req.target.trim_start_matches("/v2/").splitn(3, '/');
        let (mode, _, digest) = (
            parts.next().unwrap_or(""),
            parts.next(),
            parts.next().unwrap_or(""),
        );
        let hex = digest.trim_start_matches("sha256:");
        let Some((_, size)) = sizes.iter().find(|(h, _)| h == hex) else {
            return (
                404,
                vec![],
                b"{\"errors\":[{\"code\":\"BLOB_UNKNOWN\"}]}".to_vec(),
            );
        };
        let size = *size as usize;
        let to = |url: String| (302, vec![("Location".to_string(), url)], Vec::new());
        match mode {
            "wrong" => (200, vec![], vec![0u8; size]),
            "long" => (200, vec![], vec![0u8; size + 1]),
            "away" => to(format!("http://blobs.invalid/{hex}")),
            "bounce" => to(format!("http://127.0.0.1:{port}/v2/wrong/blobs/{digest}")),
            "loop" => to(format!("http://127.0.0.1:{port}/v2/loop/blobs/{digest}")),
            _ => (500, vec![], Vec::new()),
        }
    }));
    port
}

/// A registry whose blob replies have no length and never end.
fn endless_registry() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                reader.read_line(&mut line).unwrap_or(0);
                while reader.read_line(&mut String::new()).unwrap_or(0) > 2 {}
                if line.starts_with("GET /v2/ ") {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    );
                    return;
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                // Bounded only by the client hanging up (or 1 GiB).
                let chunk = vec![b'x'; 64 << 10];
                for _ in 0..(1 << 14) {
                    if stream.write_all(&chunk).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn hostile_registry_replies_store_nothing() {
    let (_site, _server, ws) = fixture();
    ws.run(&["solve", "img"]).assert_success();
    let lock = Lockfile::read(&ws.path().join("locks/img.lock")).unwrap();
    let mut sizes: Vec<(String, u64)> = lock
        .packages
        .iter()
        .map(|p| (p.sha256.clone(), p.size))
        .collect();
    // The InRelease too (the lock has no size for it: any will do).
    sizes.push((lock.sources[0].inrelease_sha256.clone(), 3000));
    let port = hostile_registry(Arc::new(sizes));
    let endless = endless_registry();
    let cases = [
        (port, "wrong", "digest mismatch"),
        (port, "long", "announces"),
        (port, "away", "refused: not https"),
        (port, "bounce", "redirected to http://127.0.0.1"),
        (port, "loop", "more than 5 redirects"),
        (endless, "endless", "longer than the"),
    ];
    for (port, repo, why) in cases {
        let setting = format!("store=oci://127.0.0.1:{port}/{repo}");
        let out = ws
            .run(&["fetch", "img", "--mirror", &setting])
            .assert_failure();
        let err = &out.stderr;
        eprintln!("--- {repo}\n{err}");
        assert!(err.contains(why), "{repo}: wanted `{why}` in:\n{err}");
        assert!(
            err.contains("could not be taken from the store registry"),
            "{err}"
        );
        assert!(err.contains("package `app 1.0 amd64`"), "{repo}: {err}");
        let url = format!("http://127.0.0.1:{port}/v2/{repo}/blobs/sha256:");
        assert!(err.contains(&url), "{repo}: no {url} in {err}");
        assert!(store_files(&ws).is_empty(), "{repo}: something was stored");
        assert_eq!(temp_files(&ws), 0, "{repo}: temp files left");
    }
    // A builder with an empty cache asks for the audit's InRelease first:
    // wrong bytes are refused and nothing is cached.
    let fresh = second_builder(&ws);
    let setting = format!("store=oci://127.0.0.1:{port}/wrong");
    let out = fresh
        .run(&["fetch", "img", "--mirror", &setting])
        .assert_failure();
    assert!(
        out.stderr.contains("source `main` InRelease from")
            && out.stderr.contains("digest mismatch"),
        "{}",
        out.stderr
    );
    assert!(!fresh.cache_dir().join("inrelease/sha256").exists());
    assert!(store_files(&fresh).is_empty());

    // A registry that is not there at all: a warning, then the mirrors.
    let gone = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = gone.local_addr().unwrap();
    drop(gone);
    let setting = format!("store=oci://{addr}/store");
    let out = ws
        .run(&["fetch", "img", "--mirror", &setting])
        .assert_success();
    assert!(out.stderr.contains("is unreachable"), "{}", out.stderr);
    assert!(out.stderr.contains("fetched 3, reused 0"), "{}", out.stderr);
}
