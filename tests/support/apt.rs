//! The real apt as an independent judge: a private apt configuration (own
//! sources, lists, cache and empty dpkg status) pointed at fixture archives.
//!
//! ```ignore
//! let Some(apt) = Apt::new("amd64", TestKey::primary()) else { return }; // apt absent
//! apt.source(&server.url("debian/"), "bookworm", &["main"]);
//! apt.update().assert_success();
//! let plan = apt.simulate_install(&["foo"], false).unwrap(); // [("foo", "1.0"), ...]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::key::TestKey;
use super::workspace::{RunOutput, run_bounded};

/// apt runs are local and small; anything slower is a hang.
const APT_TIMEOUT: Duration = Duration::from_secs(30);

/// A private apt root. Nothing outside its temp dir is read or written
/// (system sources and apt.conf.d are not consulted).
pub struct Apt {
    dir: tempfile::TempDir,
    keyring: PathBuf,
}

impl Apt {
    /// Sets up the private root for `arch` trusting `key`; `None` if apt-get is not installed.
    pub fn new(arch: &str, key: &TestKey) -> Option<Apt> {
        Command::new("apt-get").arg("--version").output().ok()?;
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-apt-")
            .tempdir()
            .ok()?;
        let root = dir.path();
        for sub in [
            "etc/apt.conf.d",
            "etc/preferences.d",
            "etc/sources.list.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            std::fs::create_dir_all(root.join(sub)).ok()?;
        }
        std::fs::write(root.join("state/status"), "").ok()?;
        std::fs::write(root.join("etc/sources.list"), "").ok()?;
        let keyring = root.join("trusted.pgp");
        key.write_keyring(&keyring).ok()?;
        let r = root.display();
        let conf = format!(
            "Dir::Etc \"{r}/etc\";\nDir::State \"{r}/state\";\nDir::State::status \"{r}/state/status\";\n\
             Dir::Cache \"{r}/cache\";\nAPT::Architecture \"{arch}\";\nAPT::Architectures {{ \"{arch}\"; }};\n\
             APT::Sandbox::User \"root\";\nDebug::NoLocking \"true\";\nAcquire::Languages \"none\";\n"
        );
        std::fs::write(root.join("apt.conf"), conf).ok()?;
        Some(Apt { dir, keyring })
    }

    /// The private root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Adds `deb [signed-by=KEY] URL SUITE COMPS…` (flat: suite `/`, no components).
    pub fn source(&self, url: &str, suite: &str, comps: &[&str]) {
        let line = format!(
            "deb [signed-by={}] {url} {suite} {}\n",
            self.keyring.display(),
            comps.join(" ")
        );
        let path = self.dir.path().join("etc/sources.list");
        let mut text = std::fs::read_to_string(&path).expect("read private sources.list");
        text.push_str(&line);
        std::fs::write(&path, text).expect("write private sources.list");
    }

    /// Runs an apt tool (`apt-get`, `apt-cache`) with the private configuration.
    pub fn run(&self, tool: &str, args: &[&str]) -> RunOutput {
        let mut cmd = Command::new(tool);
        cmd.args(args)
            .env("APT_CONFIG", self.dir.path().join("apt.conf"))
            .env("LC_ALL", "C")
            .current_dir(self.dir.path());
        run_bounded(cmd, APT_TIMEOUT)
    }

    /// `apt-get update`.
    pub fn update(&self) -> RunOutput {
        self.run("apt-get", &["update"])
    }

    /// `apt-get install -s`: the (name, version) pairs apt would install, in apt's order,
    /// or apt's stdout+stderr if it finds no solution.
    pub fn simulate_install(
        &self,
        packages: &[&str],
        recommends: bool,
    ) -> Result<Vec<(String, String)>, String> {
        let flag = if recommends {
            "--install-recommends"
        } else {
            "--no-install-recommends"
        };
        let mut args = vec!["install", "-s", "-q", flag];
        args.extend_from_slice(packages);
        let out = self.run("apt-get", &args);
        if !out.success() {
            return Err(format!("{}{}", out.stdout, out.stderr));
        }
        // Lines look like `Inst foo (1.0 bookworm [amd64])` or `Inst foo (1.0 localhost [all])`.
        let plan = out
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("Inst "))
            .filter_map(|rest| {
                let (name, tail) = rest.split_once(" (")?;
                let version = tail.split_whitespace().next()?;
                Some((name.to_string(), version.to_string()))
            })
            .collect();
        Ok(plan)
    }
}
