//! Downloads into the vendor store against the loopback test server with
//! injected faults: resume, retries, wrong bytes, timeouts, mirror fallback,
//! parallelism, and a fetch killed mid-way.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use imgbuild::fetch::download::{Options, fetch_blocking};
use imgbuild::fetch::{FetchError, Progress, Store, Wanted, maintain};
use sha2::{Digest, Sha256};
use support::*;
use url::Url;

/// A .deb written under `<site>/debian/pool/main/…`.
struct Blob {
    name: String,
    filename: String,
    bytes: Vec<u8>,
    sha256: String,
}

/// Deterministic, incompressible filler so that .debs have a real size.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

fn make_debs(site: &Path, count: usize, payload: usize) -> Vec<Blob> {
    (0..count)
        .map(|i| {
            let name = format!("pkg{i}");
            let spec = DebSpec::new(&name, "1.0-1", "amd64").gzip().file(
                &format!("/usr/share/{name}/data"),
                noise(i as u64, payload),
                0o644,
            );
            let bytes = spec.build();
            let filename = format!("pool/main/p/{name}/{}", spec.file_name());
            let path = site.join("debian").join(&filename);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            Blob {
                name,
                filename,
                sha256: hex::encode(Sha256::digest(&bytes)),
                bytes,
            }
        })
        .collect()
}

fn wanted(blob: &Blob, bases: &[&str]) -> Wanted {
    Wanted {
        package: format!("{} 1.0-1 amd64", blob.name),
        source: "main".into(),
        filename: blob.filename.clone(),
        size: blob.bytes.len() as u64,
        sha256: blob.sha256.clone(),
        urls: bases
            .iter()
            .map(|b| Url::parse(b).unwrap().join(&blob.filename).unwrap())
            .collect(),
    }
}

/// Fast settings for tests: short pauses and timeouts.
fn options() -> Options {
    Options {
        jobs: 8,
        attempts: 4,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        backoff: Duration::from_millis(10),
    }
}

fn fetch(store: &Store, wanted: Vec<Wanted>, opts: &Options) -> Result<usize, FetchError> {
    fetch_blocking(store, wanted, opts, &Progress::hidden()).map(|r| r.fetched)
}

/// Every file under `sha256/` (path relative to it).
fn stored(store: &Store) -> Vec<String> {
    store
        .blobs()
        .unwrap()
        .into_iter()
        .map(|(_, name)| name)
        .collect()
}

fn tmp_files(store: &Store) -> Vec<PathBuf> {
    match std::fs::read_dir(store.tmp_dir()) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn setup(count: usize, payload: usize) -> (Site, Vec<Blob>, TestServer, tempfile::TempDir, Store) {
    let site = Site::new();
    let blobs = make_debs(site.path(), count, payload);
    let server = site.serve();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("vendor")).unwrap();
    (site, blobs, server, dir, store)
}

#[test]
fn fetches_verifies_and_reuses() {
    let (_site, blobs, server, _dir, store) = setup(3, 1000);
    let base = server.url("debian/");
    let want: Vec<Wanted> = blobs.iter().map(|b| wanted(b, &[base.as_str()])).collect();
    assert_eq!(fetch(&store, want.clone(), &options()).unwrap(), 3);
    for b in &blobs {
        let path = store.path_of(&b.sha256);
        assert!(path.ends_with(format!("sha256/{}/{}", &b.sha256[..2], b.sha256)));
        assert_eq!(std::fs::read(&path).unwrap(), b.bytes);
        assert!(store.contains(&b.sha256, b.bytes.len() as u64));
    }
    assert!(tmp_files(&store).is_empty(), "no temp files left behind");
    server.reset_log();
    assert_eq!(fetch(&store, want, &options()).unwrap(), 0, "all reused");
    assert_eq!(server.total_requests(), 0, "reuse needs no network");
}

#[test]
fn resumes_a_dropped_transfer_with_range() {
    let (_site, blobs, server, _dir, store) = setup(1, 400_000);
    let b = &blobs[0];
    let path = format!("/debian/{}", b.filename);
    server.fault_n(&path, Fault::Truncate(300_000), 1);
    fetch(
        &store,
        vec![wanted(b, &[&server.url("debian/")])],
        &options(),
    )
    .unwrap();
    assert_eq!(std::fs::read(store.path_of(&b.sha256)).unwrap(), b.bytes);
    let reqs: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].range, None);
    // Everything before the drop was kept (buffered writes flush before the retry).
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=300000-"), "{reqs:?}");
    assert_eq!(reqs[1].status, 206);
}

#[test]
fn a_wrong_prefix_from_an_earlier_run_is_detected_and_refetched() {
    let (_site, blobs, server, _dir, store) = setup(1, 5000);
    let b = &blobs[0];
    store.create_dirs().unwrap();
    std::fs::write(
        store.part_path(&b.sha256),
        b"definitely not the start of a deb",
    )
    .unwrap();
    fetch(
        &store,
        vec![wanted(b, &[&server.url("debian/")])],
        &options(),
    )
    .unwrap();
    assert_eq!(std::fs::read(store.path_of(&b.sha256)).unwrap(), b.bytes);
    let ranges: Vec<_> = server.requests().into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, [Some("bytes=33-".to_string()), None]);
}

#[test]
fn retries_server_errors_then_succeeds() {
    let (_site, blobs, server, _dir, store) = setup(1, 1000);
    let b = &blobs[0];
    let path = format!("/debian/{}", b.filename);
    server.fault_n(&path, Fault::Status(500), 2);
    fetch(
        &store,
        vec![wanted(b, &[&server.url("debian/")])],
        &options(),
    )
    .unwrap();
    assert!(store.contains(&b.sha256, b.bytes.len() as u64));
    assert_eq!(server.hits(&path), 3);
}

#[test]
fn gives_up_after_bounded_attempts() {
    let (_site, blobs, server, _dir, store) = setup(1, 1000);
    let b = &blobs[0];
    let path = format!("/debian/{}", b.filename);
    server.fault(&path, Fault::Status(503));
    let err = fetch(
        &store,
        vec![wanted(b, &[&server.url("debian/")])],
        &options(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("HTTP status 503") && text.contains("pkg0 1.0-1 amd64"),
        "{text}"
    );
    assert_eq!(server.hits(&path), 4, "exactly `attempts` tries");
    assert!(stored(&store).is_empty());
}

#[test]
fn wrong_bytes_never_reach_the_store() {
    let (_site, blobs, server, _dir, store) = setup(2, 3000);
    let (good, bad) = (&blobs[0], &blobs[1]);
    let bad_path = format!("/debian/{}", bad.filename);
    server.fault(&bad_path, Fault::Corrupt);
    let want = vec![
        wanted(good, &[&server.url("debian/")]),
        wanted(bad, &[&server.url("debian/")]),
    ];
    let err = fetch(&store, want, &options()).unwrap_err();
    let mut corrupted = bad.bytes.clone();
    let mid = corrupted.len() / 2;
    corrupted[mid] ^= 0x55;
    let actual = hex::encode(Sha256::digest(&corrupted));
    let text = err.to_string();
    for needle in [
        "pkg1 1.0-1 amd64",
        &server.url(&bad_path),
        &bad.sha256,
        &actual,
    ] {
        assert!(text.contains(needle), "missing `{needle}` in: {text}");
    }
    assert!(matches!(&err, FetchError::Failed(v) if v.len() == 1));
    assert_eq!(
        stored(&store),
        std::slice::from_ref(&good.sha256),
        "only the good blob is stored"
    );
    assert!(tmp_files(&store).is_empty(), "wrong bytes are deleted");
    assert_eq!(
        server.hits(&bad_path),
        1,
        "wrong bytes are not a transient error"
    );

    // A body of another size is refused from the announced length alone.
    server.clear_faults();
    server.fault(&bad_path, Fault::Body(b"short".to_vec()));
    let err = fetch(
        &store,
        vec![wanted(bad, &[&server.url("debian/")])],
        &options(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("announces 5 bytes"), "{err}");
    assert_eq!(stored(&store).len(), 1);
}

#[test]
fn mirrors_are_tried_in_order() {
    let (site, blobs, server, _dir, store) = setup(2, 1000);
    let b = &blobs[0];
    let bases = [&*server.url("nowhere/"), &*server.url("debian/")];
    fetch(&store, vec![wanted(b, &bases)], &options()).unwrap();
    assert_eq!(
        server.hits(&format!("/nowhere/{}", b.filename)),
        1,
        "404: no retry"
    );
    assert_eq!(server.hits(&format!("/debian/{}", b.filename)), 1);

    // Wrong bytes on the first mirror: the second one is used.
    let c = &blobs[1];
    let mirror2 = site.path().join("mirror2");
    let file = mirror2.join(&c.filename);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, &c.bytes).unwrap();
    server.fault(&format!("/debian/{}", c.filename), Fault::Corrupt);
    let bases = [&*server.url("debian/"), &*server.url("mirror2/")];
    fetch(&store, vec![wanted(c, &bases)], &options()).unwrap();
    assert_eq!(std::fs::read(store.path_of(&c.sha256)).unwrap(), c.bytes);
}

#[test]
fn file_mirrors_are_read_from_disk() {
    let (site, blobs, server, _dir, store) = setup(2, 1000);
    let base = Url::from_directory_path(site.path().join("debian"))
        .unwrap()
        .to_string();
    let want: Vec<Wanted> = blobs.iter().map(|b| wanted(b, &[base.as_str()])).collect();
    // Damage one on disk: refused with the same error as over HTTP.
    let damaged = site.path().join("debian").join(&blobs[1].filename);
    let mut bytes = blobs[1].bytes.clone();
    bytes[10] ^= 1;
    std::fs::write(&damaged, bytes).unwrap();
    let err = fetch(&store, want, &options()).unwrap_err();
    assert!(
        err.to_string().contains("served the wrong content"),
        "{err}"
    );
    assert_eq!(stored(&store), std::slice::from_ref(&blobs[0].sha256));
    assert_eq!(server.total_requests(), 0);
}

#[test]
fn a_slow_server_times_out_and_is_retried() {
    let (_site, blobs, server, _dir, store) = setup(1, 1000);
    let b = &blobs[0];
    let path = format!("/debian/{}", b.filename);
    server.fault_n(&path, Fault::Delay(Duration::from_millis(1500)), 1);
    let opts = Options {
        read_timeout: Duration::from_millis(300),
        ..options()
    };
    let start = Instant::now();
    fetch(&store, vec![wanted(b, &[&server.url("debian/")])], &opts).unwrap();
    assert!(store.contains(&b.sha256, b.bytes.len() as u64));
    assert!(
        start.elapsed() < Duration::from_millis(1400),
        "did not wait for the slow reply"
    );
    // Slow but within the limit: one request is enough.
    server.fault_n(&path, Fault::Delay(Duration::from_millis(200)), 1);
    std::fs::remove_file(store.path_of(&b.sha256)).unwrap();
    server.reset_log();
    fetch(
        &store,
        vec![wanted(b, &[&server.url("debian/")])],
        &options(),
    )
    .unwrap();
    assert_eq!(server.hits(&path), 1);
}

#[test]
fn fetches_many_small_files_in_parallel() {
    let (_site, blobs, server, _dir, store) = setup(200, 64);
    let want: Vec<Wanted> = blobs
        .iter()
        .map(|b| wanted(b, &[&server.url("debian/")]))
        .collect();
    // 16 slow replies of 400 ms: serially 6.4 s, with 8 connections about 0.8 s.
    server.fault_n(
        "/debian/pool/main/p/pkg1*",
        Fault::Delay(Duration::from_millis(400)),
        16,
    );
    let start = Instant::now();
    assert_eq!(fetch(&store, want, &options()).unwrap(), 200);
    let elapsed = start.elapsed();
    assert_eq!(stored(&store).len(), 200);
    assert!(
        elapsed < Duration::from_secs(4),
        "not parallel: {elapsed:?}"
    );
    let report = maintain::verify(&store).unwrap();
    assert_eq!((report.checked, report.corrupt.len()), (200, 0));
}

/// Env var that turns the `child_fetch` test into the child process body.
const CHILD_PLAN: &str = "IMGBUILD_TEST_FETCH_CHILD_PLAN";

/// Child body for [`a_killed_fetch_leaves_a_consistent_store`]: fetches the
/// plan (`store dir` on line 1, then `sha size url` lines) and never returns
/// while one of its servers stalls. A no-op in a normal test run.
#[test]
fn child_fetch() {
    let Ok(plan) = std::env::var(CHILD_PLAN) else {
        return;
    };
    let text = std::fs::read_to_string(plan).unwrap();
    let mut lines = text.lines();
    let store = Store::open(Path::new(lines.next().unwrap())).unwrap();
    let want = lines
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Wanted {
                package: "child".into(),
                source: "main".into(),
                filename: f[2].rsplit('/').next().unwrap().into(),
                size: f[1].parse().unwrap(),
                sha256: f[0].into(),
                urls: vec![Url::parse(f[2]).unwrap()],
            }
        })
        .collect();
    let opts = Options {
        read_timeout: Duration::from_secs(60),
        ..options()
    };
    let _ = fetch(&store, want, &opts);
}

/// A server that sends the headers and the first `half` bytes of `body`,
/// then stalls (at most 20 s) without closing.
fn stalling_server(body: Vec<u8>, half: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/stall.deb", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut head = [0u8; 4096];
            let _ = s.read(&mut head);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body[..half]);
            let _ = s.flush();
            std::thread::sleep(Duration::from_secs(20));
        }
    });
    url
}

#[test]
fn a_stalled_body_times_out_and_the_next_mirror_resumes_it() {
    let (_site, blobs, server, _dir, store) = setup(1, 1_200_000);
    let b = &blobs[0];
    let stall_url = stalling_server(b.bytes.clone(), 900_000);
    let mut want = wanted(b, &[&server.url("debian/")]);
    want.urls.insert(0, Url::parse(&stall_url).unwrap());
    let opts = Options {
        read_timeout: Duration::from_millis(300),
        ..options()
    };
    let start = Instant::now();
    fetch(&store, vec![want], &opts).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(std::fs::read(store.path_of(&b.sha256)).unwrap(), b.bytes);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let range = reqs[0]
        .range
        .as_deref()
        .expect("resumed with a Range request");
    let from: u64 = range["bytes=".len()..range.len() - 1].parse().unwrap();
    assert!((256 * 1024..=900_000).contains(&from), "{range}");
}

#[test]
fn a_killed_fetch_leaves_a_consistent_store() {
    let (_site, blobs, server, dir, store) = setup(4, 1_200_000);
    let (done, stalled) = (&blobs[..3], &blobs[3]);
    let stall_url = stalling_server(stalled.bytes.clone(), 900_000);
    let mut plan = format!("{}\n", store.root().display());
    for b in done {
        let url = server.url(&format!("debian/{}", b.filename));
        plan.push_str(&format!("{} {} {url}\n", b.sha256, b.bytes.len()));
    }
    plan.push_str(&format!(
        "{} {} {stall_url}\n",
        stalled.sha256,
        stalled.bytes.len()
    ));
    let plan_path = dir.path().join("plan");
    std::fs::write(&plan_path, plan).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_fetch", "--nocapture", "--test-threads=1"])
        .env(CHILD_PLAN, &plan_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let part = store.part_path(&stalled.sha256);
    let deadline = Instant::now() + Duration::from_secs(15);
    let ready = || {
        let have_part = std::fs::metadata(&part).is_ok_and(|m| m.len() > 0);
        have_part
            && done
                .iter()
                .all(|b| store.contains(&b.sha256, b.bytes.len() as u64))
    };
    while !ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ready(), "child did not get mid-way in time");

    // Consistent: only complete, correct blobs under sha256/; the partial is in tmp/.
    let report = maintain::verify(&store).unwrap();
    assert_eq!((report.checked, report.corrupt.len()), (3, 0), "{report:?}");
    assert!(!store.contains(&stalled.sha256, stalled.bytes.len() as u64));
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < stalled.bytes.len() as u64);

    // The next fetch completes, resuming the partial file.
    server.reset_log();
    let want: Vec<Wanted> = blobs
        .iter()
        .map(|b| wanted(b, &[&server.url("debian/")]))
        .collect();
    assert_eq!(fetch(&store, want, &options()).unwrap(), 1);
    assert_eq!(
        std::fs::read(store.path_of(&stalled.sha256)).unwrap(),
        stalled.bytes
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].range, Some(format!("bytes={kept}-")));
    assert!(tmp_files(&store).is_empty());
}
