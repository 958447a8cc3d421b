//! The registry client against a scripted loopback server: the bearer token
//! flow, retries of transient failures, and hostile replies (oversized,
//! wrong digest, an upload Location on another host).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::scripted::{Req, serve};

use imgbuild::registry::{Client, Credentials, RegistryError, TransportOptions, sha256_digest};

fn creds() -> Credentials {
    Credentials {
        username: "ci".into(),
        password: "pw".into(),
        origin: "test".into(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn insecure() -> TransportOptions {
    TransportOptions {
        insecure: true,
        ca_file: None,
    }
}

fn h(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

#[test]
fn bearer_token_flow_with_basic_credentials_at_the_realm() {
    let (port, log) = serve(Arc::new(|req: &Req, port| {
        let basic = creds().basic_header();
        if req.target.starts_with("/token") {
            assert!(
                req.target.contains("service=test-registry"),
                "{}",
                req.target
            );
            assert!(
                req.target
                    .contains("scope=repository%3Ateam%2Fimg%3Apull%2Cpush"),
                "{}",
                req.target
            );
            if req.header("authorization") == Some(basic.as_str()) {
                return (200, vec![], br#"{"token":"tok-123"}"#.to_vec());
            }
            return (401, vec![], b"bad credentials".to_vec());
        }
        if req.header("authorization") == Some("Bearer tok-123") {
            return (200, vec![], b"{}".to_vec());
        }
        let challenge = format!(
            r#"Bearer realm="http://127.0.0.1:{port}/token",service="test-registry",scope="repository:team/img:pull,push""#
        );
        (401, vec![h("WWW-Authenticate", challenge)], b"{}".to_vec())
    }));
    let client = Client::new(&format!("127.0.0.1:{port}"), &insecure(), Some(creds())).unwrap();
    rt().block_on(client.ping("team/img", true)).unwrap();
    let targets: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(targets.len(), 3, "{targets:?}");
    assert!(targets[1].starts_with("/token?"));

    // Wrong password: a clear error naming the credentials' origin.
    let mut wrong = creds();
    wrong.password = "nope".into();
    let client = Client::new(&format!("127.0.0.1:{port}"), &insecure(), Some(wrong)).unwrap();
    let e = rt().block_on(client.ping("team/img", true)).unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("credentials for `ci` from test were refused"),
        "{e}"
    );
}

#[test]
fn transient_failures_are_retried_then_reported() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    let (port, _) = serve(Arc::new(move |_req: &Req, _| {
        if h2.fetch_add(1, Ordering::SeqCst) < 2 {
            (503, vec![], b"busy".to_vec())
        } else {
            (200, vec![], b"{}".to_vec())
        }
    }));
    let client = Client::new(&format!("127.0.0.1:{port}"), &insecure(), None).unwrap();
    rt().block_on(client.ping("x", false)).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    let (port, log) = serve(Arc::new(|_req: &Req, _| (500, vec![], b"down".to_vec())));
    let client = Client::new(&format!("127.0.0.1:{port}"), &insecure(), None).unwrap();
    let e = rt().block_on(client.ping("x", false)).unwrap_err();
    assert!(e.to_string().contains("HTTP 500"), "{e}");
    assert_eq!(log.lock().unwrap().len(), 4, "bounded attempts");
}

#[test]
fn hostile_replies_are_refused() {
    let good =
        b"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"}"
            .to_vec();
    let good_digest = sha256_digest(&good);
    let g = good.clone();
    let (port, _) = serve(Arc::new(move |req: &Req, _| {
        let t = req.target.as_str();
        if t.ends_with("/manifests/huge") {
            return (200, vec![], vec![b' '; 5 << 20]);
        }
        if t.ends_with("/manifests/lying") {
            return (
                200,
                vec![h(
                    "Docker-Content-Digest",
                    format!("sha256:{}", "0".repeat(64)),
                )],
                g.clone(),
            );
        }
        if t.contains("/manifests/sha256:") {
            // Served under a digest it does not hash to.
            return (200, vec![], b"{\"mediaType\":\"x\"}".to_vec());
        }
        if req.method == "HEAD" {
            return (404, vec![], vec![]);
        }
        if req.method == "POST" {
            return (
                202,
                vec![h("Location", "http://198.51.100.7/upload/1")],
                vec![],
            );
        }
        (404, vec![], vec![])
    }));
    let client = Client::new(&format!("127.0.0.1:{port}"), &insecure(), None).unwrap();
    let rt = rt();
    let e = rt.block_on(client.get_manifest("x", "huge")).unwrap_err();
    assert!(matches!(e, RegistryError::TooLarge { .. }), "{e}");
    let e = rt.block_on(client.get_manifest("x", "lying")).unwrap_err();
    assert!(matches!(e, RegistryError::Digest { .. }), "{e}");
    let e = rt
        .block_on(client.get_manifest("x", &good_digest))
        .unwrap_err();
    assert!(matches!(e, RegistryError::Digest { .. }), "{e}");
    let blob = b"data".to_vec();
    let e = rt
        .block_on(client.push_blob(
            "x",
            &sha256_digest(&blob),
            4,
            &imgbuild::registry::BlobSource::Bytes(blob.clone()),
            None,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("is not on 127.0.0.1"), "{e}");
}

/// A registry that takes any upload: no blob present, one session, every
/// PATCH acknowledged up to its end, the PUT answered with its digest.
fn accepting_registry() -> (u16, Arc<std::sync::Mutex<Vec<Req>>>) {
    serve(Arc::new(|req: &Req, _| {
        let session = vec![h("Location", "/v2/x/blobs/uploads/u1")];
        match req.method.as_str() {
            "HEAD" => (404, vec![], vec![]),
            "POST" => (202, session, vec![]),
            "PATCH" => {
                let end = req
                    .header("content-range")
                    .unwrap()
                    .split_once('-')
                    .unwrap()
                    .1;
                let mut hdrs = session;
                hdrs.push(h("Range", format!("0-{end}")));
                (202, hdrs, vec![])
            }
            "PUT" => {
                let digest = req
                    .target
                    .split("digest=")
                    .nth(1)
                    .unwrap()
                    .replace("%3A", ":");
                (201, vec![h("Docker-Content-Digest", digest)], vec![])
            }
            _ => (400, vec![], vec![]),
        }
    }))
}

#[test]
fn a_file_blob_is_streamed_in_one_patch_or_in_the_chunks_asked_for() {
    use imgbuild::registry::{BlobOutcome, BlobSource};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer");
    // Larger than the 16 MiB pieces uploads were once cut into, and not a
    // multiple of a streamed piece.
    let bytes: Vec<u8> = (0..17_000_001u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    let digest = sha256_digest(&bytes);
    let size = bytes.len() as u64;
    let source = BlobSource::File(path.clone());

    for (chunk, patches) in [(None, 1), (Some(4_000_000u64), 5)] {
        let (port, log) = accepting_registry();
        let mut client = Client::new(&format!("127.0.0.1:{port}"), &insecure(), None).unwrap();
        client.monolithic_limit = 1 << 20;
        if let Some(c) = chunk {
            client.chunk_size = c;
        }
        let got = rt()
            .block_on(client.push_blob("x", &digest, size, &source, None))
            .unwrap();
        assert_eq!(got, BlobOutcome::Uploaded(size));
        let log = log.lock().unwrap();
        let sent: Vec<&Req> = log.iter().filter(|r| r.method == "PATCH").collect();
        assert_eq!(sent.len(), patches, "chunk size {chunk:?}");
        let mut offset = 0usize;
        for r in &sent {
            let range = format!("{offset}-{}", offset + r.body.len() - 1);
            assert_eq!(r.header("content-range"), Some(range.as_str()));
            assert_eq!(r.body, bytes[offset..offset + r.body.len()], "at {offset}");
            offset += r.body.len();
        }
        assert_eq!(offset, bytes.len(), "every byte sent once");
        assert_eq!(log.last().unwrap().method, "PUT");
    }

    // A file that is not the size its descriptor says: refused before an
    // upload session is opened.
    let (port, log) = accepting_registry();
    let client = Client::new(&format!("127.0.0.1:{port}"), &insecure(), None).unwrap();
    let e = rt()
        .block_on(client.push_blob("x", &digest, size + 1, &source, None))
        .unwrap_err();
    assert!(
        e.to_string().contains(&format!("source has {size} bytes")),
        "{e}"
    );
    assert!(log.lock().unwrap().iter().all(|r| r.method == "HEAD"));
}
