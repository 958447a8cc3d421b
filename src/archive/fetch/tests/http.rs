//! Loading over HTTP from a throwaway server on 127.0.0.1.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// Serves files under `root`; a path listed in `fail` gets that many 503s first.
struct Server {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(root: PathBuf, fail: HashMap<String, usize>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut fail = fail;
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let Some(path) = request_path(&mut conn) else {
                    continue;
                };
                log2.lock().unwrap().push(path.clone());
                let left = fail.get_mut(&path);
                let (status, body) = match left {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        ("503 Service Unavailable", Vec::new())
                    }
                    _ => match std::fs::read(root.join(path.trim_start_matches('/'))) {
                        Ok(b) => ("200 OK", b),
                        Err(_) => ("404 Not Found", Vec::new()),
                    },
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            }
        });
        Server {
            port,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self, path: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The path of a `GET` request, read with a bounded wait.
fn request_path(conn: &mut TcpStream) -> Option<String> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut parts = text.split_whitespace();
    (parts.next()? == "GET").then(|| parts.next().map(str::to_string))?
}

#[test]
fn loads_over_http_with_retries_and_by_hash_fallback() {
    let f = Fixture::new(true);
    let xz_dir = "dists/bookworm/main/binary-amd64";
    // No by-hash copies on this server: the loader must fall back.
    std::fs::remove_dir_all(f.root().join("repo").join(xz_dir).join("by-hash")).unwrap();
    let inrelease = "/dists/bookworm/InRelease".to_string();
    let plain = format!("/{xz_dir}/Packages.xz");
    let server = Server::start(
        f.root().join("repo"),
        [(inrelease.clone(), 1), (plain.clone(), 2)].into(),
    );
    let m = mirrors(&[format!("debian=http://127.0.0.1:{}/", server.port)]);
    let r = recipe(vec![f.source()], "amd64", &[]);
    let l = load_sources(&r, &m, &f.opts(false)).unwrap();
    assert_eq!(l[0].packages.len(), 3);
    assert_eq!(server.requests(&inrelease), 2, "one 503, one retry");
    assert_eq!(server.requests(&plain), 3, "two 503s, one retry");
    let by_hash = format!("/{xz_dir}/by-hash/SHA256/{}", l[0].indexes[0].sha256);
    assert_eq!(server.requests(&by_hash), 1, "by-hash tried first");

    // Second run: the index comes from the cache, only InRelease is fetched.
    let l2 = load_sources(&r, &m, &f.opts(false)).unwrap();
    assert_eq!(l2[0].indexes, l[0].indexes);
    assert_eq!(server.requests(&plain), 3);
    assert_eq!(server.requests(&inrelease), 3);
}

#[test]
fn unreachable_mirror_falls_through_to_the_next() {
    let f = Fixture::new(false);
    // A port with nothing listening: bind, note the port, close.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server::start(f.root().join("repo"), HashMap::new());
    let m = mirrors(&[
        format!("debian=http://127.0.0.1:{dead}/"),
        format!("debian=http://127.0.0.1:{}/", server.port),
    ]);
    let r = recipe(vec![f.source()], "amd64", &[]);
    let t = std::time::Instant::now();
    let l = load_sources(&r, &m, &f.opts(false)).unwrap();
    assert_eq!(l[0].packages.len(), 3);
    // Connection refused is retried with backoff (0.5 + 1 + 2 s), no more.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}
