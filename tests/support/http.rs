//! A loopback HTTP/1.1 file server with request counting and fault injection.
//!
//! Std only: one accept thread, one thread per connection, keep-alive, GET and
//! HEAD, `Range: bytes=N-` / `bytes=N-M`. Listens on 127.0.0.1 only; stops on
//! Drop with a bounded wait.
//!
//! ```ignore
//! let server = TestServer::serve(site.path());
//! server.fault_n("*/Packages.xz", Fault::Status(500), 2); // first two fail
//! fetch(server.url("debian/dists/bookworm/InRelease"));
//! assert_eq!(server.hits("/debian/dists/bookworm/InRelease"), 1);
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest delay a [`Fault::Delay`] may impose (keeps tests bounded).
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// A connection idle this long is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(5);
/// Poll interval for stop checks while waiting for data or connections.
const POLL: Duration = Duration::from_millis(20);
/// Largest accepted request head.
const MAX_HEAD: usize = 16 * 1024;

/// What to do instead of a normal response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Respond with this status code and a short text body.
    Status(u16),
    /// Announce the full Content-Length, send only this many body bytes, then close.
    Truncate(usize),
    /// Serve the right length with one byte flipped in the middle.
    Corrupt,
    /// Serve these bytes (status 200) instead of the file.
    Body(Vec<u8>),
    /// Wait this long (capped at [`MAX_DELAY`]) before responding normally.
    Delay(Duration),
}

/// One request as seen by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// Decoded path, starting with `/`, without query string.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// Status code sent.
    pub status: u16,
}

struct Rule {
    pattern: String,
    fault: Fault,
    remaining: Option<usize>,
}

struct State {
    root: PathBuf,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<RequestRecord>>,
    stop: AtomicBool,
}

/// A running server; dropping it stops it.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Serves the files under `root` on `127.0.0.1:<ephemeral port>`.
    pub fn serve(root: &Path) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            root: root.to_path_buf(),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let st = Arc::clone(&state);
        let accept = std::thread::spawn(move || accept_loop(listener, st));
        TestServer {
            addr,
            state,
            accept: Some(accept),
        }
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/` + `rel` (e.g. `url("debian/")`).
    pub fn url(&self, rel: &str) -> String {
        format!("http://{}/{}", self.addr, rel.trim_start_matches('/'))
    }

    /// Applies `fault` to every request whose path matches `pattern` (`*` = any characters).
    /// The first matching active rule wins.
    pub fn fault(&self, pattern: &str, fault: Fault) {
        self.add_rule(pattern, fault, None);
    }

    /// Like [`TestServer::fault`] but only for the first `times` matching requests.
    pub fn fault_n(&self, pattern: &str, fault: Fault, times: usize) {
        self.add_rule(pattern, fault, Some(times));
    }

    /// Removes all fault rules.
    pub fn clear_faults(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    fn add_rule(&self, pattern: &str, fault: Fault, remaining: Option<usize>) {
        let rule = Rule {
            pattern: pattern.into(),
            fault,
            remaining,
        };
        self.state.rules.lock().unwrap().push(rule);
    }

    /// All requests so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.log.lock().unwrap().clone()
    }

    /// Number of requests so far.
    pub fn total_requests(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }

    /// Requests for exactly this path (`/debian/dists/bookworm/InRelease`).
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Requests whose path matches the glob `pattern` (`*/by-hash/*`).
    pub fn hits_matching(&self, pattern: &str) -> usize {
        let log = self.state.log.lock().unwrap();
        log.iter().filter(|r| glob(pattern, &r.path)).count()
    }

    /// Forgets the request log.
    pub fn reset_log(&self) {
        self.state.log.lock().unwrap().clear();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept.take() {
            // The accept loop waits at most ~2 s for its connections, so this join is bounded.
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !state.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let st = Arc::clone(&state);
                conns.push(std::thread::spawn(move || {
                    let _ = serve_connection(stream, &st);
                }));
                conns.retain(|h| !h.is_finished());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL / 4),
            Err(_) => std::thread::sleep(POLL),
        }
    }
    let deadline = Instant::now() + MAX_DELAY;
    while conns.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
}

struct Request {
    method: String,
    path: String,
    range: Option<String>,
    close: bool,
}

fn serve_connection(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(req) = read_request(&mut stream, &mut buf, state)? else {
            return Ok(());
        };
        let keep = respond(&mut stream, &req, state)?;
        if !keep || req.close {
            return Ok(());
        }
    }
}

/// Reads one request head; `None` on EOF, idle timeout or server stop.
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    state: &State,
) -> std::io::Result<Option<Request>> {
    let idle_since = Instant::now();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Ok(Some(parse_head(&head)));
        }
        if buf.len() > MAX_HEAD || state.stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if idle_since.elapsed() > IDLE_LIMIT {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn parse_head(head: &str) -> Request {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/");
    let version = parts.next().unwrap_or("HTTP/1.1");
    let raw_path = target.split('?').next().unwrap_or("/");
    let mut req = Request {
        method,
        path: percent_decode(raw_path),
        range: None,
        close: version == "HTTP/1.0",
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("range") {
            req.range = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("connection") {
            req.close = value.eq_ignore_ascii_case("close");
        }
    }
    req
}

/// Writes the response; returns whether the connection may be kept open.
fn respond(stream: &mut TcpStream, req: &Request, state: &State) -> std::io::Result<bool> {
    let fault = take_fault(state, &req.path);
    if let Some(Fault::Delay(d)) = &fault {
        std::thread::sleep((*d).min(MAX_DELAY));
    }
    let (status, extra, mut body) = match &fault {
        Some(Fault::Status(code)) => (
            *code,
            String::new(),
            format!("injected {code}\n").into_bytes(),
        ),
        Some(Fault::Body(bytes)) => (200, String::new(), bytes.clone()),
        _ => file_response(state, req),
    };
    if fault == Some(Fault::Corrupt) && !body.is_empty() {
        let mid = body.len() / 2;
        body[mid] ^= 0x55;
    }
    state.log.lock().unwrap().push(RequestRecord {
        method: req.method.clone(),
        path: req.path.clone(),
        range: req.range.clone(),
        status,
    });
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n{extra}Connection: {}\r\n\r\n",
        reason(status),
        body.len(),
        if req.close { "close" } else { "keep-alive" }
    );
    stream.write_all(head.as_bytes())?;
    if req.method == "HEAD" {
        return Ok(true);
    }
    if let Some(Fault::Truncate(after)) = fault {
        stream.write_all(&body[..after.min(body.len())])?;
        stream.flush()?;
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return Ok(false);
    }
    stream.write_all(&body)?;
    stream.flush()?;
    Ok(true)
}

/// (status, extra header lines, body) for a plain file request.
fn file_response(state: &State, req: &Request) -> (u16, String, Vec<u8>) {
    if req.method != "GET" && req.method != "HEAD" {
        return (405, String::new(), b"method not allowed\n".to_vec());
    }
    let rel = Path::new(req.path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return (404, String::new(), b"bad path\n".to_vec());
    }
    let mut path = state.root.join(rel);
    // A directory serves its `index.json` (PEP 691 project pages end in `/`).
    if path.is_dir() {
        path = path.join("index.json");
    }
    let data = match std::fs::read(&path) {
        Ok(data) if path.is_file() => data,
        _ => return (404, String::new(), b"not found\n".to_vec()),
    };
    let Some(range) = &req.range else {
        return (200, String::new(), data);
    };
    let len = data.len() as u64;
    match parse_range(range, len) {
        Some((start, end)) => {
            let extra = format!("Content-Range: bytes {start}-{end}/{len}\r\n");
            (206, extra, data[start as usize..=end as usize].to_vec())
        }
        None => (416, format!("Content-Range: bytes */{len}\r\n"), Vec::new()),
    }
}

/// `bytes=N-` or `bytes=N-M` → inclusive (start, end); `None` if unsatisfiable or unsupported.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => len.checked_sub(1)?,
        b => b.parse::<u64>().ok()?.min(len.checked_sub(1)?),
    };
    (start <= end).then_some((start, end))
}

fn take_fault(state: &State, path: &str) -> Option<Fault> {
    let mut rules = state.rules.lock().unwrap();
    let rule = rules
        .iter_mut()
        .find(|r| r.remaining != Some(0) && glob(&r.pattern, path))?;
    if let Some(n) = &mut rule.remaining {
        *n -= 1;
    }
    Some(rule.fault.clone())
}

/// Glob match where `*` matches any run of characters (including `/`).
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A one-shot raw HTTP/1.1 request to `127.0.0.1:port` (`Connection: close`, 5 s read
/// timeout), for tests that need exact control over headers. `extra` holds additional
/// header lines, each ending in `\r\n`. Returns (status, response head, body as received).
pub fn raw_request(port: u16, method: &str, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to test server");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head[9..12].parse().expect("status code");
    (status, head, raw[end..].to_vec())
}
