//! Signed Debian archives (dists layout or flat) written to a directory.
//!
//! ```ignore
//! let site = Site::new();
//! let debian = site
//!     .archive("debian")
//!     .suite("bookworm", &["amd64"], &["main"])
//!     .package("bookworm", "main", DebSpec::new("foo", "1.0", "amd64").depends("bar"))
//!     .build();
//! let server = site.serve();
//! let url = server.url("debian/"); // http://127.0.0.1:PORT/debian/
//! ```

use std::path::{Path, PathBuf};

use md5::Digest as _;
use sha2::Sha256;

use super::deb::{DebSpec, gz, xz};
use super::key::TestKey;

/// Release `Date` used unless [`RepoBuilder::date`] is called: 2024-06-01T00:00:00Z.
pub const DEFAULT_DATE: u32 = 1_717_200_000;

/// A .deb placed in an archive.
#[derive(Debug, Clone)]
pub struct BuiltDeb {
    /// The spec it was built from.
    pub spec: DebSpec,
    /// Suite it was added to (`/` for flat repositories).
    pub suite: String,
    /// Component it was added to (empty for flat repositories).
    pub component: String,
    /// Path relative to the archive root (the `Filename` field).
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256.
    pub sha256: String,
    /// Lower-case hex md5.
    pub md5: String,
}

#[derive(Debug, Clone)]
struct SuiteSpec {
    name: String,
    architectures: Vec<String>,
    components: Vec<String>,
}

/// Builds a [`Repo`]; chain the setters, then call [`RepoBuilder::build`].
#[derive(Debug, Clone)]
pub struct RepoBuilder {
    root: PathBuf,
    flat: bool,
    origin: String,
    label: String,
    date: u32,
    valid_until: Option<u32>,
    key: Option<&'static TestKey>,
    release_gpg: bool,
    suites: Vec<SuiteSpec>,
    packages: Vec<(String, String, DebSpec)>,
}

impl RepoBuilder {
    /// An archive with `dists/` and `pool/` under `root`, signed by [`TestKey::primary`].
    pub fn new(root: &Path) -> RepoBuilder {
        RepoBuilder {
            root: root.to_path_buf(),
            flat: false,
            origin: "Debian".into(),
            label: "Debian".into(),
            date: DEFAULT_DATE,
            valid_until: None,
            key: Some(TestKey::primary()),
            release_gpg: true,
            suites: Vec::new(),
            packages: Vec::new(),
        }
    }

    /// A flat repository (`deb URL /`) at `root` for the given architectures.
    pub fn flat(root: &Path, architectures: &[&str]) -> RepoBuilder {
        let mut b = RepoBuilder::new(root)
            .origin("test-flat")
            .label("test-flat");
        b.flat = true;
        b.suites.push(SuiteSpec {
            name: "/".into(),
            architectures: strings(architectures),
            components: vec![String::new()],
        });
        b
    }

    /// Declares a suite (Suite = Codename = `name`) with its architectures and components.
    pub fn suite(mut self, name: &str, architectures: &[&str], components: &[&str]) -> Self {
        assert!(
            !self.flat,
            "flat repositories have exactly one suite, \"/\""
        );
        self.suites.push(SuiteSpec {
            name: name.into(),
            architectures: strings(architectures),
            components: strings(components),
        });
        self
    }

    /// Adds a package to a declared suite and component (flat: suite `/`, component `""`).
    pub fn package(mut self, suite: &str, component: &str, spec: DebSpec) -> Self {
        let known = self
            .suites
            .iter()
            .any(|s| s.name == suite && s.components.iter().any(|c| c == component));
        assert!(
            known,
            "package {}: undeclared suite/component {suite}/{component}",
            spec.name
        );
        self.packages.push((suite.into(), component.into(), spec));
        self
    }

    /// Adds a package to the first declared suite and its first component.
    pub fn add(self, spec: DebSpec) -> Self {
        let first = self.suites.first().expect("declare a suite before add()");
        let (suite, comp) = (first.name.clone(), first.components[0].clone());
        self.package(&suite, &comp, spec)
    }

    /// Release `Origin`.
    pub fn origin(mut self, origin: &str) -> Self {
        self.origin = origin.into();
        self
    }

    /// Release `Label`.
    pub fn label(mut self, label: &str) -> Self {
        self.label = label.into();
        self
    }

    /// Release `Date` and signature time, unix seconds (must be after [`super::key::KEY_CREATED`]).
    pub fn date(mut self, unix: u32) -> Self {
        self.date = unix;
        self
    }

    /// Adds a `Valid-Until` field.
    pub fn valid_until(mut self, unix: u32) -> Self {
        self.valid_until = Some(unix);
        self
    }

    /// Signs with `key` instead of the primary test key.
    pub fn signed_by(mut self, key: &'static TestKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Writes no InRelease and no Release.gpg.
    pub fn unsigned(mut self) -> Self {
        self.key = None;
        self
    }

    /// Whether to write the detached `Release.gpg` (default true).
    pub fn release_gpg(mut self, on: bool) -> Self {
        self.release_gpg = on;
        self
    }

    /// Writes everything. Panics with context on I/O errors (fixtures are test-only).
    pub fn build(self) -> Repo {
        let mut debs: Vec<BuiltDeb> = Vec::new();
        for (suite, component, spec) in &self.packages {
            let filename = pool_path(self.flat, component, spec);
            let bytes = spec.build();
            let path = self.root.join(&filename);
            if let Ok(existing) = std::fs::read(&path) {
                // The same pool file in two suites is fine only if it is the same package.
                assert!(existing == bytes, "two different packages at {filename}");
            }
            write(&path, &bytes);
            debs.push(BuiltDeb {
                spec: spec.clone(),
                suite: suite.clone(),
                component: component.clone(),
                filename,
                size: bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(&bytes)),
                md5: hex::encode(md5::Md5::digest(&bytes)),
            });
        }
        let repo = Repo {
            root: self.root.clone(),
            flat: self.flat,
            date: self.date,
            debs,
        };
        for suite in &self.suites {
            let release = self.write_indexes(&repo, suite);
            let dir = repo.dist_dir(&suite.name);
            write(&dir.join("Release"), release.as_bytes());
        }
        if let Some(key) = self.key {
            repo.sign_all(key, self.release_gpg);
        }
        repo
    }

    /// Writes Packages(.gz/.xz) (+ by-hash copies) for one suite; returns the Release text.
    fn write_indexes(&self, repo: &Repo, suite: &SuiteSpec) -> String {
        let dir = repo.dist_dir(&suite.name);
        let mut listed: Vec<(String, Vec<u8>)> = Vec::new();
        for comp in &suite.components {
            let arches: Vec<Option<&str>> = if self.flat {
                vec![None]
            } else {
                suite
                    .architectures
                    .iter()
                    .map(|a| Some(a.as_str()))
                    .collect()
            };
            for arch in arches {
                let text = packages_text(&repo.debs, &suite.name, comp, arch);
                let base = match arch {
                    Some(arch) => format!("{comp}/binary-{arch}/"),
                    None => String::new(),
                };
                let variants = [
                    ("Packages", text.clone().into_bytes()),
                    ("Packages.gz", gz(text.as_bytes())),
                    ("Packages.xz", xz(text.as_bytes())),
                ];
                for (name, bytes) in variants {
                    write(&dir.join(format!("{base}{name}")), &bytes);
                    if !self.flat {
                        let hash = hex::encode(Sha256::digest(&bytes));
                        write(&dir.join(format!("{base}by-hash/SHA256/{hash}")), &bytes);
                    }
                    listed.push((format!("{base}{name}"), bytes));
                }
            }
        }
        let mut out = format!("Origin: {}\nLabel: {}\n", self.origin, self.label);
        if !self.flat {
            out.push_str(&format!("Suite: {0}\nCodename: {0}\n", suite.name));
        }
        out.push_str(&format!("Date: {}\n", rfc2822(self.date)));
        if let Some(until) = self.valid_until {
            out.push_str(&format!("Valid-Until: {}\n", rfc2822(until)));
        }
        if !self.flat {
            out.push_str("Acquire-By-Hash: yes\nNo-Support-for-Architecture-all: Packages\n");
        }
        out.push_str(&format!(
            "Architectures: {}\n",
            suite.architectures.join(" ")
        ));
        if !self.flat {
            out.push_str(&format!("Components: {}\n", suite.components.join(" ")));
        }
        out.push_str(&format!("Description: test archive {}\n", suite.name));
        // MD5Sum first, like Debian: readers must pick the SHA256 list.
        out.push_str("MD5Sum:\n");
        for (path, bytes) in &listed {
            let sum = hex::encode(md5::Md5::digest(bytes));
            out.push_str(&format!(" {sum} {:>8} {path}\n", bytes.len()));
        }
        out.push_str("SHA256:\n");
        for (path, bytes) in &listed {
            let sum = hex::encode(Sha256::digest(bytes));
            out.push_str(&format!(" {sum} {:>8} {path}\n", bytes.len()));
        }
        out
    }
}

/// A written archive. Cheap accessors plus tamper helpers for negative tests.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
    flat: bool,
    date: u32,
    debs: Vec<BuiltDeb>,
}

impl Repo {
    /// Archive root (what a `deb URL suite` line's URL points at).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory holding `Release`/`InRelease`: `root/dists/SUITE`, or the root if flat.
    pub fn dist_dir(&self, suite: &str) -> PathBuf {
        if self.flat {
            self.root.clone()
        } else {
            self.root.join("dists").join(suite)
        }
    }

    /// All packages written, in the order added.
    pub fn debs(&self) -> &[BuiltDeb] {
        &self.debs
    }

    /// The package with this name and version (first match). Panics if absent.
    pub fn deb(&self, name: &str, version: &str) -> &BuiltDeb {
        self.debs
            .iter()
            .find(|d| d.spec.name == name && d.spec.version == version)
            .unwrap_or_else(|| panic!("no package {name} {version} in {}", self.root.display()))
    }

    /// Index path relative to the suite directory: `main/binary-amd64/Packages.xz`
    /// (flat: `Packages.xz`; `comp`/`arch` ignored).
    pub fn index_rel(&self, comp: &str, arch: &str) -> String {
        if self.flat {
            "Packages.xz".into()
        } else {
            format!("{comp}/binary-{arch}/Packages.xz")
        }
    }

    /// The uncompressed Packages text as served.
    pub fn packages_text(&self, suite: &str, comp: &str, arch: &str) -> String {
        let rel = self.index_rel(comp, arch);
        let path = self.dist_dir(suite).join(rel.trim_end_matches(".xz"));
        read_string(&path)
    }

    /// The Release text of a suite.
    pub fn release_text(&self, suite: &str) -> String {
        read_string(&self.dist_dir(suite).join("Release"))
    }

    /// The InRelease text of a suite.
    pub fn inrelease_text(&self, suite: &str) -> String {
        read_string(&self.dist_dir(suite).join("InRelease"))
    }

    /// Flips one byte in the middle of a file under the root (archive-relative path).
    pub fn tamper_file(&self, rel: &str) {
        let path = self.root.join(rel);
        let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            !bytes.is_empty(),
            "cannot tamper with empty {}",
            path.display()
        );
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        write(&path, &bytes);
    }

    /// Flips a byte in `Packages.xz` (and its by-hash copy) after signing, so the index no
    /// longer matches the signed Release.
    pub fn tamper_index(&self, suite: &str, comp: &str, arch: &str) {
        let dir = self.dist_dir(suite);
        let rel = self.index_rel(comp, arch);
        let path = dir.join(&rel);
        let old = hex::encode(Sha256::digest(std::fs::read(&path).expect("read index")));
        let suite_rel = path.strip_prefix(&self.root).expect("under root");
        self.tamper_file(suite_rel.to_str().expect("utf-8 path"));
        if !self.flat {
            let by_hash = dir.join(format!("{comp}/binary-{arch}/by-hash/SHA256/{old}"));
            let rel = by_hash.strip_prefix(&self.root).expect("under root");
            self.tamper_file(rel.to_str().expect("utf-8 path"));
        }
    }

    /// Changes a character inside the signed text of InRelease (the first SHA256 line),
    /// leaving the signature block intact, so verification must fail.
    pub fn tamper_inrelease(&self, suite: &str) {
        let path = self.dist_dir(suite).join("InRelease");
        let text = read_string(&path);
        let at = text.find("\nSHA256:\n ").expect("SHA256 list in InRelease") + 10;
        let mut bytes = text.into_bytes();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        write(&path, &bytes);
    }

    /// Re-signs every suite's Release (InRelease and Release.gpg) with another key.
    pub fn resign_with(&self, key: &TestKey) {
        self.sign_all(key, true);
    }

    fn suite_dirs(&self) -> Vec<PathBuf> {
        if self.flat {
            return vec![self.root.clone()];
        }
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.root.join("dists"))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    fn sign_all(&self, key: &TestKey, detached: bool) {
        for dir in self.suite_dirs() {
            let release = read_string(&dir.join("Release"));
            write(
                &dir.join("InRelease"),
                key.clearsign(&release, self.date).as_bytes(),
            );
            if detached {
                let sig = key.detached_sign(release.as_bytes(), self.date);
                write(&dir.join("Release.gpg"), sig.as_bytes());
            }
        }
    }
}

/// Packages stanzas of one suite/component/arch (`None` = every arch, for flat repos).
/// `Architecture: all` packages go into every binary-ARCH index.
fn packages_text(debs: &[BuiltDeb], suite: &str, comp: &str, arch: Option<&str>) -> String {
    let mut out = String::new();
    for d in debs
        .iter()
        .filter(|d| d.suite == suite && d.component == comp)
    {
        let a = d.spec.architecture.as_str();
        if arch.is_some_and(|arch| a != arch && a != "all") {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&d.spec.control_text());
        for (k, v) in &d.spec.index_fields {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push_str(&format!(
            "Filename: {}\nSize: {}\nMD5sum: {}\nSHA256: {}\n",
            d.filename, d.size, d.md5, d.sha256
        ));
    }
    out
}

/// `pool/main/f/foo/foo_1.0_amd64.deb` (lib* packages under `libf/`), or `ARCH/file` if flat.
fn pool_path(flat: bool, component: &str, spec: &DebSpec) -> String {
    if flat {
        return format!("{}/{}", spec.architecture, spec.file_name());
    }
    let n = &spec.name;
    let prefix = if n.starts_with("lib") && n.len() > 3 {
        &n[..4]
    } else {
        &n[..1]
    };
    format!("pool/{component}/{prefix}/{n}/{}", spec.file_name())
}

/// RFC 2822 date in UTC, as in Debian Release files: `Sat, 01 Jun 2024 00:00:00 UTC`.
pub fn rfc2822(unix: u32) -> String {
    let days = i64::from(unix / 86_400);
    let secs = unix % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} UTC",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn read_string(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
