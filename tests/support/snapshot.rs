//! A snapshot service on 127.0.0.1, in the layout of Debian's:
//! `archive/<archive>/<YYYYMMDDTHHMMSSZ>/{dists,pool}/…`, one directory per
//! import run. Like the real one, a request at *any* timestamp is answered
//! from the last run at or before it (so asking at an InRelease's `Date`,
//! which precedes the run that imported it, gets the run before).
//!
//! ```ignore
//! let snap = SnapshotService::new();
//! snap.import("debian", DEFAULT_DATE + 1800, repo.root()); // a run 30 min after the Date
//! let url = snap.url(); // http://127.0.0.1:PORT/ (the service root)
//! ```

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use imgbuild::core::timestamp::Timestamp;

use super::scripted::{self, Req};

/// A running snapshot service over a temporary directory of runs.
pub struct SnapshotService {
    dir: tempfile::TempDir,
    port: u16,
    log: Arc<Mutex<Vec<Req>>>,
    tamper: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl SnapshotService {
    /// An empty service.
    pub fn new() -> SnapshotService {
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-snapshot-")
            .tempdir()
            .expect("snapshot temp dir");
        let root = dir.path().to_path_buf();
        let tamper: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let t = tamper.clone();
        let (port, log) =
            scripted::serve(Arc::new(move |req: &Req, _: u16| answer(&root, &t, req)));
        SnapshotService {
            dir,
            port,
            log,
            tamper,
        }
    }

    /// The service root URL (what `--mirror snapshot=URL` takes).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Records an import run of `archive` at Unix time `at`: a copy of the
    /// archive tree under `from` as it is now. Returns the run's timestamp.
    pub fn import(&self, archive: &str, at: u32, from: &Path) -> String {
        let ts = Timestamp::from_unix(i64::from(at)).to_string();
        copy_tree(
            from,
            &self.dir.path().join("archive").join(archive).join(&ts),
        );
        ts
    }

    /// Serves `bytes` instead of the file at `rel` (below the run, e.g.
    /// `pool/main/a/a/a_1_amd64.deb`) of `archive`, in every run.
    pub fn tamper(&self, archive: &str, rel: &str, bytes: Vec<u8>) {
        let key = format!("{archive}/{rel}");
        self.tamper.lock().unwrap().insert(key, bytes);
    }

    /// Paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.target.clone())
            .collect()
    }
}

impl Default for SnapshotService {
    fn default() -> Self {
        SnapshotService::new()
    }
}

fn answer(
    root: &Path,
    tamper: &Mutex<HashMap<String, Vec<u8>>>,
    req: &Req,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let not_found = (404, Vec::new(), b"not found".to_vec());
    let path = req.target.split('?').next().unwrap_or("");
    let mut parts = path.trim_start_matches('/').splitn(4, '/');
    let (Some("archive"), Some(archive), Some(ts), Some(rel)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return not_found;
    };
    if req.method != "GET"
        || Path::new(rel)
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        || Timestamp::parse(ts).is_err()
    {
        return not_found;
    }
    // The last run at or before `ts` (the names sort as times).
    let runs = root.join("archive").join(archive);
    let mut names: Vec<String> = std::fs::read_dir(&runs)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let Some(run) = names.into_iter().rev().find(|n| n.as_str() <= ts) else {
        return not_found;
    };
    let file = runs.join(run).join(rel);
    if !file.is_file() {
        return not_found;
    }
    if let Some(bytes) = tamper.lock().unwrap().get(&format!("{archive}/{rel}")) {
        return (200, Vec::new(), bytes.clone());
    }
    match std::fs::read(&file) {
        Ok(bytes) => (200, Vec::new(), bytes),
        Err(_) => not_found,
    }
}

/// Copies the files and directories under `from` to `to` (created).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap();
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        }
    }
}
