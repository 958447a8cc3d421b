//! A temporary imgbuild project (`recipes/`, `locks/`, `recipes/keys/`) and a
//! bounded runner for the built `imgbuild` binary.
//!
//! ```ignore
//! let ws = Workspace::new();
//! let src = ws.trusted_source("main", &server.url("debian/"), "bookworm", &["main"]);
//! ws.write_recipe("base", &RecipeToml::new("amd64").packages(&["foo"]).source(src).to_toml());
//! let out = ws.run(&["solve", "base"]).assert_success();
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::key::TestKey;

/// How long [`Workspace::run`] lets the binary run before killing it.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A temp dir `T` with the project in `T/ws` and the cache in `T/cache`.
pub struct Workspace {
    tmp: tempfile::TempDir,
    root: PathBuf,
}

/// Result of one run of the binary.
#[derive(Debug)]
pub struct RunOutput {
    /// Exit status (after a kill when timed out).
    pub status: ExitStatus,
    /// Captured stdout (lossy UTF-8).
    pub stdout: String,
    /// Captured stderr (lossy UTF-8).
    pub stderr: String,
    /// Whether the run was killed at [`RUN_TIMEOUT`].
    pub timed_out: bool,
}

impl RunOutput {
    /// Exit code 0 and not timed out.
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// Panics with both streams unless the run succeeded.
    pub fn assert_success(self) -> Self {
        assert!(
            self.success(),
            "imgbuild failed ({:?}):\n{}",
            self.status,
            self.describe()
        );
        self
    }

    /// Panics with both streams unless the run failed (non-zero exit, not a timeout).
    pub fn assert_failure(self) -> Self {
        assert!(
            !self.status.success() && !self.timed_out,
            "imgbuild should have failed ({:?}):\n{}",
            self.status,
            self.describe()
        );
        self
    }

    fn describe(&self) -> String {
        format!(
            "timed out: {}\n--- stdout\n{}--- stderr\n{}",
            self.timed_out, self.stdout, self.stderr
        )
    }
}

impl Workspace {
    /// Creates the temp project with `recipes/`, `recipes/keys/` and `locks/`.
    pub fn new() -> Workspace {
        let tmp = tempfile::Builder::new()
            .prefix("imgbuild-ws-")
            .tempdir()
            .expect("create workspace temp dir");
        let root = tmp.path().join("ws");
        for dir in ["recipes/keys", "locks"] {
            std::fs::create_dir_all(root.join(dir)).expect("create workspace dirs");
        }
        Workspace { tmp, root }
    }

    /// The project directory (passed as `-C`).
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The isolated cache directory (`IMGBUILD_CACHE`), outside the project.
    pub fn cache_dir(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// Writes `recipes/NAME.toml`; returns its path.
    pub fn write_recipe(&self, name: &str, toml_text: &str) -> PathBuf {
        self.write_file(&format!("recipes/{name}.toml"), toml_text.as_bytes())
    }

    /// Writes a file relative to the project (creating directories); returns its path.
    pub fn write_file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// Reads a project file as text (`locks/base.lock`); panics with the path if missing.
    pub fn read(&self, rel: &str) -> String {
        let path = self.root.join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Copies `key`'s binary keyring to `recipes/keys/FILE`; returns the recipe-relative
    /// path (`keys/FILE`) for a source's `keyring`.
    pub fn install_key(&self, key: &TestKey, file: &str) -> String {
        key.write_keyring(&self.root.join("recipes/keys").join(file))
            .expect("write keyring");
        format!("keys/{file}")
    }

    /// Installs [`TestKey::primary`] as `keys/test.pgp` and returns a source (priority 500)
    /// using it. Render with [`SourceToml::to_toml`] or pass to [`RecipeToml::source`].
    pub fn trusted_source(&self, name: &str, url: &str, suite: &str, comps: &[&str]) -> SourceToml {
        let keyring = self.install_key(TestKey::primary(), "test.pgp");
        SourceToml::url(name, url, suite)
            .components(comps)
            .keyring(&keyring)
    }

    /// The command `imgbuild -C <ws> ARGS…` with the isolated cache and HOME, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgbuild"));
        cmd.arg("-C").arg(&self.root).args(args);
        cmd.env("IMGBUILD_CACHE", self.cache_dir());
        cmd.env("HOME", self.tmp.path().join("home"));
        cmd.env("NO_COLOR", "1");
        // An empty apt configuration: tests never pick up the host's mirrors.
        cmd.env("IMGBUILD_APT_DIR", self.tmp.path().join("apt"));
        // Nor the host's shared store registry.
        cmd.env_remove("IMGBUILD_STORE");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("IMGBUILD_MIRROR_") || k == "IMGBUILD_SNAPSHOT" {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(self.tmp.path());
        cmd
    }

    /// Runs `imgbuild -C <ws> ARGS…` with a [`RUN_TIMEOUT`] limit.
    pub fn run(&self, args: &[&str]) -> RunOutput {
        run_bounded(self.command(args), RUN_TIMEOUT)
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace::new()
    }
}

/// Runs `cmd` with piped output, killing it after `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> RunOutput {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    // Drain both pipes concurrently so a chatty child cannot block on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout pipe")));
    let err = drain(Box::new(child.stderr.take().expect("stderr pipe")));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for imgbuild") {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    RunOutput {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        timed_out,
    }
}

/// A `[[source]]` table of a recipe.
#[derive(Debug, Clone)]
pub struct SourceToml {
    /// `name`.
    pub name: String,
    /// `url = …` or `archive = …`.
    pub location: (&'static str, String),
    /// `suite` (`/` for flat).
    pub suite: String,
    /// `components`.
    pub components: Vec<String>,
    /// `keyring`, relative to the recipe directory.
    pub keyring: String,
    /// `priority`.
    pub priority: i32,
}

impl SourceToml {
    /// A source with a literal URL; keyring `keys/test.pgp`, priority 500, component `main`
    /// (none for suite `/`).
    pub fn url(name: &str, url: &str, suite: &str) -> SourceToml {
        SourceToml::with(name, ("url", url.into()), suite)
    }

    /// A source naming an archive whose URL comes from `--mirror NAME=URL`.
    pub fn archive(name: &str, archive: &str, suite: &str) -> SourceToml {
        SourceToml::with(name, ("archive", archive.into()), suite)
    }

    fn with(name: &str, location: (&'static str, String), suite: &str) -> SourceToml {
        let components = if suite == "/" {
            vec![]
        } else {
            vec!["main".into()]
        };
        SourceToml {
            name: name.into(),
            location,
            suite: suite.into(),
            components,
            keyring: "keys/test.pgp".into(),
            priority: 500,
        }
    }

    /// Sets `components`.
    pub fn components(mut self, comps: &[&str]) -> Self {
        self.components = comps.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Sets `keyring`.
    pub fn keyring(mut self, keyring: &str) -> Self {
        self.keyring = keyring.into();
        self
    }

    /// Sets `priority`.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// The `[[source]]` block text.
    pub fn to_toml(&self) -> String {
        format!(
            "[[source]]\nname = {}\n{} = {}\nsuite = {}\ncomponents = {}\nkeyring = {}\npriority = {}\n",
            quote(&self.name),
            self.location.0,
            quote(&self.location.1),
            quote(&self.suite),
            array(&self.components),
            quote(&self.keyring),
            self.priority
        )
    }
}

/// Recipe TOML text builder.
#[derive(Debug, Clone)]
pub struct RecipeToml {
    /// `architecture`.
    pub architecture: String,
    /// `extends`.
    pub extends: Option<String>,
    /// `packages` (Debian relation syntax).
    pub packages: Vec<String>,
    /// `essential` (omitted when `None`: the recipe default, true).
    pub essential: Option<bool>,
    /// `recommends` (omitted when `None`).
    pub recommends: Option<bool>,
    /// Extra top-level lines, written verbatim before the sources.
    pub extra: Vec<String>,
    /// `[[source]]` tables.
    pub sources: Vec<SourceToml>,
}

impl RecipeToml {
    /// A recipe for `architecture` with nothing else set.
    pub fn new(architecture: &str) -> RecipeToml {
        RecipeToml {
            architecture: architecture.into(),
            extends: None,
            packages: Vec::new(),
            essential: None,
            recommends: None,
            extra: Vec::new(),
            sources: Vec::new(),
        }
    }

    /// Appends requirements.
    pub fn packages(mut self, packages: &[&str]) -> Self {
        self.packages.extend(packages.iter().map(|p| p.to_string()));
        self
    }

    /// Sets `essential`.
    pub fn essential(mut self, on: bool) -> Self {
        self.essential = Some(on);
        self
    }

    /// Sets `recommends`.
    pub fn recommends(mut self, on: bool) -> Self {
        self.recommends = Some(on);
        self
    }

    /// Sets `extends`.
    pub fn extends(mut self, parent: &str) -> Self {
        self.extends = Some(parent.into());
        self
    }

    /// Adds a verbatim top-level line (`foreign-architectures = ["i386"]`).
    pub fn line(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }

    /// Adds a source.
    pub fn source(mut self, source: SourceToml) -> Self {
        self.sources.push(source);
        self
    }

    /// The recipe text.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        if let Some(parent) = &self.extends {
            out.push_str(&format!("extends = {}\n", quote(parent)));
        }
        out.push_str(&format!("architecture = {}\n", quote(&self.architecture)));
        out.push_str(&format!("packages = {}\n", array(&self.packages)));
        if let Some(on) = self.essential {
            out.push_str(&format!("essential = {on}\n"));
        }
        if let Some(on) = self.recommends {
            out.push_str(&format!("recommends = {on}\n"));
        }
        for line in &self.extra {
            out.push_str(line);
            out.push('\n');
        }
        for source in &self.sources {
            out.push('\n');
            out.push_str(&source.to_toml());
        }
        out
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}
