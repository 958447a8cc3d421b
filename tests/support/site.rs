//! A temporary directory holding one or more archives, served together.
//!
//! Each archive lives in its own sub-directory (`debian/`, `kubernetes/`), so one
//! [`TestServer`] serves them all under different URL prefixes.

use std::path::Path;

use super::http::TestServer;
use super::repo::RepoBuilder;

/// Temp directory for archives; removed on Drop.
pub struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    /// A fresh, empty site.
    pub fn new() -> Site {
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-site-")
            .tempdir()
            .expect("create site temp dir");
        Site { dir }
    }

    /// The directory (what [`Site::serve`] serves as `/`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A dists-layout archive in `<site>/<name>/` (URL `server.url("<name>/")`).
    pub fn archive(&self, name: &str) -> RepoBuilder {
        RepoBuilder::new(&self.dir.path().join(name))
    }

    /// A flat repository in `<site>/<name>/` (sources line `deb URL /`).
    pub fn flat(&self, name: &str, architectures: &[&str]) -> RepoBuilder {
        RepoBuilder::flat(&self.dir.path().join(name), architectures)
    }

    /// Starts a loopback HTTP server over the whole site.
    pub fn serve(&self) -> TestServer {
        TestServer::serve(self.dir.path())
    }
}

impl Default for Site {
    fn default() -> Self {
        Site::new()
    }
}
