//! A scripted loopback HTTP/1.1 server: every request goes to a handler
//! closure (one request per connection, `Connection: close`), for registry
//! auth flows and hostile replies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One request as the handler sees it.
#[derive(Debug, Clone)]
pub struct Req {
    /// `GET`, `PUT`, …
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header lines.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Req {
    /// A header by name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Answers a request (given the server's port): status, headers, body.
pub type Handler = dyn Fn(&Req, u16) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync;

/// Serves `handler` on 127.0.0.1 (one thread per connection, one request
/// each); returns the port and the request log.
pub fn serve(handler: Arc<Handler>) -> (u16, Arc<Mutex<Vec<Req>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let handler = handler.clone();
            let log = log2.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.is_empty() {
                    return;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let target = parts.next().unwrap_or("").to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.trim_end().split_once(':') {
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
                let mut req = Req {
                    method,
                    target,
                    headers,
                    body: Vec::new(),
                };
                let len: usize = req
                    .header("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                req.body = vec![0; len];
                reader.read_exact(&mut req.body).ok();
                log.lock().unwrap().push(req.clone());
                let (status, hdrs, body) = handler(&req, port);
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in hdrs {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let _ = stream.write_all(out.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    (port, log)
}
