//! Assembling, caching and running the tools tree.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::fetch::Store;
use crate::lock::Lockfile;
use crate::pack::tar::{TarOptions, write_tree_with_devices};
use crate::rootfs::cache::RootfsCache;
use crate::rootfs::{self, AssembleOptions};
use crate::sandbox::{self, Input, Producer, SandboxSpec, Status, Stream};

use super::ToolsError;

type Result<T, E = ToolsError> = std::result::Result<T, E>;

/// Bump when the tools tree changes for the same locked tools.
const KEY_FORMAT: &str = "imgbuild-tools-key v1";

/// Default time bound of one tool run.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// `sha256:<hex>` of the tools tree of `lock`: its `[[tool]]` entries (in
/// their stable written form) and this imgbuild's version. The recipe name
/// and sources are left out, so recipes locking the same tools share it.
pub fn tools_key(lock: &Lockfile) -> String {
    let mut h = Sha256::new();
    h.update(KEY_FORMAT.as_bytes());
    h.update(b"\n");
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(b"\n");
    let mut tools: Vec<String> = lock
        .tools
        .iter()
        .map(|t| format!("{} {} {} {}\n", t.name, t.version, t.architecture, t.sha256))
        .collect();
    tools.sort();
    for t in tools {
        h.update(t.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// One command to run in the tools tree.
#[derive(Debug, Clone, Default)]
pub struct ToolRun {
    /// Program (looked up in `/usr/sbin:/usr/bin:/sbin:/bin` of the tools
    /// tree) and arguments.
    pub argv: Vec<String>,
    /// Read-only bind mounts (host path, absolute path inside): inputs.
    pub inputs: Vec<(PathBuf, PathBuf)>,
    /// Read-write bind mounts (host path, absolute path inside): outputs.
    pub outputs: Vec<(PathBuf, PathBuf)>,
    /// Extra environment variables (the sandbox's fixed ones come first).
    pub env: Vec<(String, String)>,
    /// Time bound; default 30 minutes.
    pub timeout: Option<Duration>,
    /// Standard input; default none (`/dev/null`).
    pub stdin: Input,
}

impl ToolRun {
    /// `argv` with no binds.
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> ToolRun {
        ToolRun {
            argv: argv.into_iter().map(Into::into).collect(),
            ..ToolRun::default()
        }
    }

    /// Adds a read-only bind of host `path` at `inside`.
    pub fn input(mut self, path: impl Into<PathBuf>, inside: impl Into<PathBuf>) -> ToolRun {
        self.inputs.push((path.into(), inside.into()));
        self
    }

    /// Adds a read-write bind of host `path` at `inside`.
    pub fn output(mut self, path: impl Into<PathBuf>, inside: impl Into<PathBuf>) -> ToolRun {
        self.outputs.push((path.into(), inside.into()));
        self
    }

    /// Feeds the command's stdin from `producer` ([`Input::Producer`]).
    pub fn stdin(mut self, producer: Producer) -> ToolRun {
        self.stdin = Input::Producer(producer);
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> ToolRun {
        self.env.push((key.to_string(), value.into()));
        self
    }
}

/// A tools tree: the cache's kept one ([`super::kept`]), or one in a
/// private temp directory (removed on drop).
#[derive(Debug)]
pub struct ToolsRoot {
    place: Place,
    source_date_epoch: i64,
}

/// Where a [`ToolsRoot`]'s tree is.
#[derive(Debug)]
enum Place {
    /// `DIR/root`, removed with `DIR`.
    Temp(tempfile::TempDir),
    /// The kept tree itself, left in the cache.
    Kept(PathBuf),
}

impl ToolsRoot {
    /// The tools tree of `lock`: taken from `cache` (entry `@tools-RECIPE`)
    /// or assembled from `store` and cached, then extracted into a temp
    /// directory under `work`. Fails when the lock has no `[[tool]]`s.
    pub fn prepare(
        lock: &Lockfile,
        store: &Store,
        cache: &RootfsCache,
        work: &Path,
        source_date_epoch: i64,
    ) -> Result<ToolsRoot> {
        let name = &lock.recipe.name;
        if lock.tools.is_empty() {
            return Err(ToolsError::NoTools {
                recipe: name.clone(),
            });
        }
        // `@` cannot start a recipe name: no entry of a recipe collides with it.
        let entry = format!("@tools-{name}");
        let key = tools_key(lock);
        if let Some(tree) = super::kept::take(cache, &entry, &key) {
            return Ok(ToolsRoot {
                place: Place::Kept(tree),
                source_date_epoch,
            });
        }
        let mut assembled = None;
        let tar = match cache.get(&entry, &key) {
            Some(tar) => tar,
            None => cache.insert_with(&entry, &key, |w| -> Result<()> {
                let tmp = private_dir(work, ".tools-assemble-")?;
                let root = tmp.path().join("root");
                make_root_dir(&root)?;
                let devices = assemble(lock, store, &root, source_date_epoch)?;
                write_tree_with_devices(&root, w, &TarOptions { source_date_epoch }, &devices)?;
                assembled = Some(tmp);
                Ok(())
            })?,
        };
        // Just assembled: that tree is used as it is, not restored from the
        // tar it was archived to (the same files; only unclamped mtimes
        // differ, which no tool run reads).
        if let Some(dir) = assembled {
            return Ok(ToolsRoot {
                place: Place::Temp(dir),
                source_date_epoch,
            });
        }
        // Restored next to the tar, to be kept there (the same file system).
        let dir = private_dir(&cache.dir().join(&entry), ".tmp-tree-")?;
        let root = dir.path().join("root");
        make_root_dir(&root)?;
        // Restored like a cached stage: device nodes stay placeholders (the
        // tools never need one; `mknod` is not done on the host).
        let devices =
            crate::rootfs::cache::restore(&tar, &root).map_err(|source| ToolsError::Extract {
                tar: tar.clone(),
                root: root.clone(),
                source,
            })?;
        // A tree with placeholders is not kept: its tar would not be the
        // cached one's. Nor is one that cannot be moved: used where it is.
        let place = match devices.is_empty() {
            true => match super::kept::keep(cache, &entry, &key, &root) {
                Ok(tree) => Place::Kept(tree),
                Err(_) => Place::Temp(dir),
            },
            false => Place::Temp(dir),
        };
        Ok(ToolsRoot {
            place,
            source_date_epoch,
        })
    }

    /// The tree's root directory on the host.
    pub fn root(&self) -> PathBuf {
        match &self.place {
            Place::Temp(dir) => dir.path().join("root"),
            Place::Kept(tree) => tree.clone(),
        }
    }

    /// Runs `run` in the sandbox with this tree as `/`; an error (naming the
    /// command and quoting its stderr) unless it exits 0. Returns stdout.
    pub fn run(&self, run: &ToolRun) -> Result<Vec<u8>> {
        run_in(&self.root(), run, self.source_date_epoch)
    }
}

/// Runs `run` in the sandbox with `root` as `/`.
fn run_in(root: &Path, run: &ToolRun, source_date_epoch: i64) -> Result<Vec<u8>> {
    let mut spec = SandboxSpec::new(root, run.argv.iter().map(String::as_str));
    spec.ro_binds = run.inputs.clone();
    spec.rw_binds = run.outputs.clone();
    spec.env = run.env.clone();
    spec.stdin = run.stdin.clone();
    spec.source_date_epoch = u64::try_from(source_date_epoch).unwrap_or(0);
    spec.stdout = Stream::Capture;
    spec.stderr = Stream::Capture;
    spec.timeout = Some(run.timeout.unwrap_or(DEFAULT_TIMEOUT));
    let command = run.argv.join(" ");
    let out = sandbox::run(&spec).map_err(|source| ToolsError::Sandbox {
        command: command.clone(),
        source,
    })?;
    match out.status {
        Status::Exited(0) => Ok(out.stdout),
        status => {
            let why = match status {
                Status::Exited(c) => format!("exited with status {c}"),
                Status::Signaled(s) => format!("was killed by signal {s}"),
                Status::TimedOut => {
                    format!("timed out after {:?}", spec.timeout.unwrap_or_default())
                }
            };
            Err(ToolsError::Failed {
                command,
                why,
                stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
            })
        }
    }
}

/// Unpacks the tools into `root` (no maintainer scripts) and runs the tree's
/// own `ldconfig` so its programs find their libraries.
fn assemble(
    lock: &Lockfile,
    store: &Store,
    root: &Path,
    source_date_epoch: i64,
) -> Result<Vec<crate::deb::DeviceNode>> {
    let opts = AssembleOptions {
        source_date_epoch,
        hostname: String::new(),
        run_scripts: false,
    };
    let report = rootfs::assemble(&lock.tools_lock(), store, root, &opts).map_err(|source| {
        ToolsError::Assemble {
            recipe: lock.recipe.name.clone(),
            source: Box::new(source),
        }
    })?;
    // The loader cache, when the tree has a loader to cache for (the
    // Essential set brings libc-bin; a tree of data files has none).
    if root.join("usr/sbin/ldconfig").exists() || root.join("sbin/ldconfig").exists() {
        run_in(root, &ToolRun::new(["ldconfig"]), source_date_epoch)?;
    }
    Ok(report.devices)
}

fn private_dir(work: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    fs::create_dir_all(work).map_err(ToolsError::io(format!("creating {}", work.display())))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(work)
        .map_err(ToolsError::io(format!(
            "creating a temp directory in {}",
            work.display()
        )))
}

fn make_root_dir(root: &Path) -> Result<()> {
    fs::create_dir(root).map_err(ToolsError::io(format!("creating {}", root.display())))?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))
        .map_err(ToolsError::io(format!("chmod {}", root.display())))
}
