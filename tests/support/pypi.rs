//! A PEP 691 package index on disk, to serve with [`super::TestServer`]:
//! real wheels (zip, with METADATA, WHEEL, RECORD, modules, entry points)
//! and sdists (tar.gz with PKG-INFO and a `setup.py`), JSON project pages
//! with sha256, size, `requires-python`, `yanked` and PEP 714
//! `core-metadata` hashes, and the `.metadata` files next to the dists.
//!
//! ```ignore
//! let mut ix = PyIndex::new(dir);
//! ix.wheel(WheelSpec::new("app", "1.0").requires(&["dep>=1"]));
//! ix.write();                       // simple/<name>/index.json + files/
//! let server = TestServer::serve(dir);
//! let base = server.url("simple/");
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One wheel to build.
#[derive(Debug, Clone)]
pub struct WheelSpec {
    pub name: String,
    pub version: String,
    /// `py3-none-any` unless set.
    pub tag: String,
    pub requires: Vec<String>,
    pub requires_python: Option<String>,
    pub extras: Vec<String>,
    pub yanked: bool,
    /// Extra files (path in the archive, contents).
    pub files: Vec<(String, String)>,
    /// `entry_points.txt` contents.
    pub entry_points: Option<String>,
    /// Publish a `.metadata` file (PEP 658).
    pub metadata_file: bool,
}

impl WheelSpec {
    pub fn new(name: &str, version: &str) -> WheelSpec {
        WheelSpec {
            name: name.into(),
            version: version.into(),
            tag: "py3-none-any".into(),
            requires: vec![],
            requires_python: None,
            extras: vec![],
            yanked: false,
            files: vec![],
            entry_points: None,
            metadata_file: true,
        }
    }
    pub fn tag(mut self, t: &str) -> Self {
        self.tag = t.into();
        self
    }
    pub fn requires(mut self, r: &[&str]) -> Self {
        self.requires = r.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn requires_python(mut self, r: &str) -> Self {
        self.requires_python = Some(r.into());
        self
    }
    pub fn extra(mut self, e: &str) -> Self {
        self.extras.push(e.into());
        self
    }
    pub fn yanked(mut self) -> Self {
        self.yanked = true;
        self
    }
    pub fn file(mut self, path: &str, contents: &str) -> Self {
        self.files.push((path.into(), contents.into()));
        self
    }
    pub fn entry_points(mut self, text: &str) -> Self {
        self.entry_points = Some(text.into());
        self
    }
    pub fn no_metadata_file(mut self) -> Self {
        self.metadata_file = false;
        self
    }

    fn dist_name(&self) -> String {
        self.name.replace('-', "_")
    }

    pub fn filename(&self) -> String {
        format!("{}-{}-{}.whl", self.dist_name(), self.version, self.tag)
    }

    pub fn metadata(&self) -> String {
        let mut m = format!(
            "Metadata-Version: 2.1\nName: {}\nVersion: {}\n",
            self.name, self.version
        );
        if let Some(r) = &self.requires_python {
            m.push_str(&format!("Requires-Python: {r}\n"));
        }
        for e in &self.extras {
            m.push_str(&format!("Provides-Extra: {e}\n"));
        }
        for r in &self.requires {
            m.push_str(&format!("Requires-Dist: {r}\n"));
        }
        m.push_str("\nA test distribution.\n");
        m
    }

    /// The wheel's bytes (deterministic).
    pub fn build(&self) -> Vec<u8> {
        let di = format!("{}-{}.dist-info", self.dist_name(), self.version);
        let mut members: Vec<(String, String)> = vec![(
            format!("{}/__init__.py", self.dist_name()),
            format!("VERSION = \"{}\"\n", self.version),
        )];
        members.extend(self.files.iter().cloned());
        members.push((format!("{di}/METADATA"), self.metadata()));
        members.push((
            format!("{di}/WHEEL"),
            format!(
                "Wheel-Version: 1.0\nGenerator: imgbuild-tests\nRoot-Is-Purelib: true\nTag: {}\n",
                self.tag
            ),
        ));
        if let Some(ep) = &self.entry_points {
            members.push((format!("{di}/entry_points.txt"), ep.clone()));
        }
        let mut record: String = members
            .iter()
            .map(|(p, c)| format!("{p},,{}\n", c.len()))
            .collect();
        record.push_str(&format!("{di}/RECORD,,\n"));
        members.push((format!("{di}/RECORD"), record));
        zip_bytes(&members)
    }
}

/// A zip of `(path, contents)` with fixed times.
pub fn zip_bytes(members: &[(String, String)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644)
        .last_modified_time(zip::DateTime::default());
    for (p, c) in members {
        w.start_file(p.as_str(), opts).unwrap();
        w.write_all(c.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// An sdist: `name-version/PKG-INFO` and a setuptools `setup.py`.
pub fn sdist_bytes(name: &str, version: &str, module: &str) -> Vec<u8> {
    let top = format!("{name}-{version}");
    let members = [
        (
            format!("{top}/PKG-INFO"),
            format!("Metadata-Version: 1.1\nName: {name}\nVersion: {version}\n"),
        ),
        (
            format!("{top}/setup.py"),
            format!(
                "from setuptools import setup\nsetup(name=\"{name}\", version=\"{version}\", py_modules=[\"{module}\"])\n"
            ),
        ),
        (format!("{top}/{module}.py"), "ANSWER = 42\n".to_string()),
    ];
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (p, c) in &members {
        let mut h = tar::Header::new_gnu();
        h.set_size(c.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, p, c.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

struct FileEntry {
    filename: String,
    sha256: String,
    size: usize,
    requires_python: Option<String>,
    yanked: bool,
    metadata_sha256: Option<String>,
}

/// The index under construction.
pub struct PyIndex {
    root: PathBuf,
    /// Write `size` in the pages (default true).
    pub with_sizes: bool,
    projects: BTreeMap<String, Vec<FileEntry>>,
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl PyIndex {
    pub fn new(root: &Path) -> PyIndex {
        std::fs::create_dir_all(root.join("files")).unwrap();
        PyIndex {
            root: root.to_path_buf(),
            with_sizes: true,
            projects: BTreeMap::new(),
        }
    }

    /// Adds a wheel; returns its bytes.
    pub fn wheel(&mut self, w: WheelSpec) -> Vec<u8> {
        let data = w.build();
        let filename = w.filename();
        std::fs::write(self.root.join("files").join(&filename), &data).unwrap();
        let metadata_sha256 = w.metadata_file.then(|| {
            let m = w.metadata();
            std::fs::write(
                self.root.join("files").join(format!("{filename}.metadata")),
                &m,
            )
            .unwrap();
            sha(m.as_bytes())
        });
        self.projects
            .entry(w.name.clone())
            .or_default()
            .push(FileEntry {
                filename,
                sha256: sha(&data),
                size: data.len(),
                requires_python: w.requires_python.clone(),
                yanked: w.yanked,
                metadata_sha256,
            });
        data
    }

    /// Adds an sdist (no `.metadata` file: its PKG-INFO is read); returns its bytes.
    /// Serves `data` as `filename` of project `name` (no Requires-Python,
    /// not yanked, no separate metadata file).
    fn add_plain_file(&mut self, name: &str, filename: String, data: &[u8]) {
        std::fs::write(self.root.join("files").join(&filename), data).unwrap();
        self.projects
            .entry(name.to_string())
            .or_default()
            .push(FileEntry {
                filename,
                sha256: sha(data),
                size: data.len(),
                requires_python: None,
                yanked: false,
                metadata_sha256: None,
            });
    }

    /// A legacy `.zip` sdist (only PKG-INFO inside), as old releases have.
    pub fn zip_sdist(&mut self, name: &str, version: &str) {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file(
            format!("{name}-{version}/PKG-INFO"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        std::io::Write::write_all(
            &mut zip,
            format!("Metadata-Version: 1.1\nName: {name}\nVersion: {version}\n").as_bytes(),
        )
        .unwrap();
        let data = zip.finish().unwrap().into_inner();
        let filename = format!("{name}-{version}.zip");
        self.add_plain_file(name, filename, &data);
    }

    pub fn sdist(&mut self, name: &str, version: &str, module: &str) -> Vec<u8> {
        let data = sdist_bytes(name, version, module);
        let filename = format!("{name}-{version}.tar.gz");
        self.add_plain_file(name, filename, &data);
        data
    }

    /// Writes `simple/<name>/index.json` for every project.
    pub fn write(&self) {
        for (name, files) in &self.projects {
            let files: Vec<serde_json::Value> = files
                .iter()
                .map(|f| {
                    let mut v = serde_json::json!({
                        "filename": f.filename,
                        "url": format!("../../files/{}", f.filename),
                        "hashes": { "sha256": f.sha256 },
                        "yanked": f.yanked,
                    });
                    // API 1.1 pages give sizes; 1.0 pages (some mirrors) do not.
                    if self.with_sizes {
                        v["size"] = f.size.into();
                    }
                    if let Some(r) = &f.requires_python {
                        v["requires-python"] = r.clone().into();
                    }
                    if let Some(m) = &f.metadata_sha256 {
                        v["core-metadata"] = serde_json::json!({ "sha256": m });
                    }
                    v
                })
                .collect();
            let page = serde_json::json!({
                "meta": { "api-version": "1.1" },
                "name": name,
                "files": files,
            });
            let dir = self.root.join("simple").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("index.json"), page.to_string()).unwrap();
        }
    }
}
