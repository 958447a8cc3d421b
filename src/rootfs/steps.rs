//! A recipe's build steps (`[[step]]`), applied to an assembled root
//! filesystem after the packages (and their scripts) and before
//! normalisation, so that mtimes are clamped and logs removed afterwards.
//!
//! File actions are done natively: `copy`, `write`, `sysctl`
//! (`/etc/sysctl.d/90-imgbuild.conf`, rewritten with every key set so far,
//! sorted) and `mask` (`/etc/systemd/system/UNIT → /dev/null`). Every parent
//! directory is opened with `openat2(root, path, RESOLVE_IN_ROOT)`, so a
//! symlink in the image resolves as it would with the image as `/` and never
//! leads out of it; missing parents are created (0755). The file itself is
//! written to a temp name in its directory and renamed over the destination
//! (a symlink there is replaced, not followed).
//!
//! `run`, `enable` (`systemctl enable UNIT…`, offline: no systemd runs
//! in the sandbox), `group` and `user` (the image's own `groupadd` and
//! `useradd`, which take `/etc/shadow`'s dates from SOURCE_DATE_EPOCH) run in the build sandbox ([`crate::sandbox`]) with
//! the same fixed environment, hostname and `SOURCE_DATE_EPOCH` as the
//! maintainer scripts, no network, and `/usr/sbin/policy-rc.d` exiting 101
//! so that no service starts.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::recipe::{Step, StepAction, UserAccount};
use crate::rootfs::AssembleOptions;
use crate::sandbox::{self, SandboxError, SandboxSpec, Status};

/// Where `sysctl` steps write.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-imgbuild.conf";
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// How `run` and `enable` steps are sandboxed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSandbox {
    /// The hostname the commands see.
    pub hostname: String,
    /// `SOURCE_DATE_EPOCH` the commands see.
    pub source_date_epoch: i64,
    /// The longest one step may run.
    pub timeout: Duration,
    /// Extra read-only binds `(host, inside)`: none for image builds (tests
    /// bind the host's `/usr` into a bare root).
    pub ro_binds: Vec<(PathBuf, PathBuf)>,
}

impl StepSandbox {
    /// The settings of the assembly's script phase, a one-hour timeout.
    pub fn for_assembly(opts: &AssembleOptions) -> StepSandbox {
        StepSandbox {
            hostname: crate::rootfs::sandbox_hostname(&opts.hostname),
            source_date_epoch: opts.source_date_epoch,
            timeout: Duration::from_secs(3600),
            ro_binds: Vec::new(),
        }
    }
}

/// Why a step failed. Each names the step by its `file:line` and action.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A file could not be read or written, or a path was refused.
    #[error("step at {origin} ({action}): {path}: {message}")]
    File {
        /// `file:line` of the step.
        origin: String,
        /// The action key.
        action: &'static str,
        /// The path concerned (in the image, or the copy source).
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The sandbox could not be started.
    #[error("step at {origin} ({action}): {source}")]
    Sandbox {
        /// `file:line` of the step.
        origin: String,
        /// The action key.
        action: &'static str,
        /// What went wrong.
        #[source]
        source: SandboxError,
    },
    /// A command run by the step failed.
    #[error(
        "step at {origin} ({action}) failed with {status}: `{command}`; last output:\n{output}"
    )]
    Command {
        /// `file:line` of the step.
        origin: String,
        /// The action key.
        action: &'static str,
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// The end of its output.
        output: String,
    },
}

/// Applies `steps` in order to the image at `root`; returns one log line per
/// step. Copy sources were resolved (each against its own recipe's
/// directory, which matters with `extends`) and hashed when the recipe was
/// loaded; a source whose contents changed since is an error.
pub fn apply(root: &Path, steps: &[Step], sandbox: &StepSandbox) -> Result<Vec<String>, StepError> {
    apply_with(root, steps, sandbox, &super::Silent)
}

/// [`apply`], telling `progress` which step runs (`ACTION (FILE:LINE)`).
pub fn apply_with(
    root: &Path,
    steps: &[Step],
    sandbox: &StepSandbox,
    progress: &dyn super::Reporter,
) -> Result<Vec<String>, StepError> {
    let image = ImageRoot::open(root).map_err(|e| StepError::File {
        origin: steps.first().map(|s| s.origin.clone()).unwrap_or_default(),
        action: steps.first().map_or("step", |s| s.action.key()),
        path: root.display().to_string(),
        message: format!("cannot open the image root: {e}"),
    })?;
    let mut runner = Runner {
        image,
        root,
        sandbox,
        sysctl: BTreeMap::new(),
        own_policy: false,
        log: Vec::new(),
    };
    let result = steps.iter().try_for_each(|s| {
        progress.item(&format!("{} ({})", s.action.key(), s.origin));
        runner.step(s)
    });
    if runner.own_policy {
        let _ = runner.image.remove(POLICY_RC_D);
    }
    result.map(|()| runner.log)
}

struct Runner<'a> {
    image: ImageRoot,
    root: &'a Path,
    sandbox: &'a StepSandbox,
    sysctl: BTreeMap<String, String>,
    own_policy: bool,
    log: Vec<String>,
}

impl Runner<'_> {
    fn step(&mut self, step: &Step) -> Result<(), StepError> {
        let action = step.action.key();
        let file_err = |path: &str| {
            let path = path.to_string();
            move |message: String| StepError::File {
                origin: step.origin.clone(),
                action,
                path,
                message,
            }
        };
        let start = Instant::now();
        let line = match &step.action {
            StepAction::Copy {
                from,
                source,
                sha256,
                to,
                mode,
                owner,
            } => {
                let shown = source.display().to_string();
                // Bounded and regular-only like the load-time read; the hash
                // below then pins the contents vetted (and confined) then.
                let bytes =
                    crate::core::bounded::read_regular(source, crate::core::bounded::MAX_COPY)
                        .map_err(|e| file_err(&shown)(e.to_string()))?;
                if hex::encode(Sha256::digest(&bytes)) != *sha256 {
                    return Err(file_err(&shown)(
                        "changed since the recipe was loaded".into(),
                    ));
                }
                self.image
                    .write_file(to, &bytes, *mode, *owner)
                    .map_err(file_err(to))?;
                format!("copy {from} → {to} ({mode:04o})")
            }
            StepAction::Write {
                path,
                content,
                mode,
                owner,
            } => {
                self.image
                    .write_file(path, content.as_bytes(), *mode, *owner)
                    .map_err(file_err(path))?;
                format!("write {path} ({mode:04o}, {} bytes)", content.len())
            }
            StepAction::Sysctl { settings } => {
                self.sysctl
                    .extend(settings.iter().map(|(k, v)| (k.clone(), v.clone())));
                let mut text =
                    String::from("# Written by imgbuild from the recipe's sysctl steps.\n");
                for (k, v) in &self.sysctl {
                    text.push_str(&format!("{k} = {v}\n"));
                }
                self.image
                    .write_file(SYSCTL_FILE, text.as_bytes(), 0o644, None)
                    .map_err(file_err(SYSCTL_FILE))?;
                let keys: Vec<&str> = settings.keys().map(String::as_str).collect();
                format!("sysctl {} → {SYSCTL_FILE}", keys.join(", "))
            }
            StepAction::Mask { units } => {
                for unit in units {
                    let path = format!("/etc/systemd/system/{unit}");
                    self.image
                        .symlink(&path, "/dev/null")
                        .map_err(file_err(&path))?;
                }
                format!("mask {}", units.join(" "))
            }
            StepAction::Run { argv } => {
                self.command(step, argv.iter().map(OsString::from).collect())?;
                format!("run {}", argv.join(" "))
            }
            StepAction::Enable { units } => {
                let found = ["/usr/bin/systemctl", "/bin/systemctl"]
                    .iter()
                    .any(|p| self.image.exists(p));
                if !found {
                    return Err(file_err("/usr/bin/systemctl")(
                        "not in the image: `enable` needs systemd installed".into(),
                    ));
                }
                let mut argv: Vec<OsString> = vec!["systemctl".into(), "enable".into()];
                argv.extend(units.iter().map(OsString::from));
                self.command(step, argv)?;
                format!("enable {}", units.join(" "))
            }
            StepAction::Group { name, gid, system } => {
                let mut argv: Vec<OsString> = vec!["groupadd".into()];
                if let Some(gid) = gid {
                    argv.extend(["--gid".into(), gid.to_string().into()]);
                }
                if *system {
                    argv.push("--system".into());
                }
                argv.push(name.into());
                self.command(step, argv)?;
                format!("group {name}")
            }
            StepAction::User(account) => {
                self.command(step, useradd_argv(account))?;
                format!("user {}", account.name)
            }
        };
        self.log.push(format!(
            "{}: {line} ({:.1}s)",
            step.origin,
            start.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Runs `argv` in the sandbox with the image as `/`.
    fn command(&mut self, step: &Step, argv: Vec<OsString>) -> Result<(), StepError> {
        let action = step.action.key();
        if !self.own_policy && !self.image.exists(POLICY_RC_D) && self.image.exists("/usr/sbin") {
            self.image
                .write_file(
                    POLICY_RC_D,
                    b"#!/bin/sh\n# imgbuild: no service starts during the build.\nexit 101\n",
                    0o755,
                    None,
                )
                .map_err(|message| StepError::File {
                    origin: step.origin.clone(),
                    action,
                    path: POLICY_RC_D.into(),
                    message,
                })?;
            self.own_policy = true;
        }
        let mut spec = SandboxSpec::new(self.root, argv.clone());
        spec.hostname = self.sandbox.hostname.clone();
        spec.source_date_epoch = self.sandbox.source_date_epoch.max(0) as u64;
        spec.timeout = Some(self.sandbox.timeout);
        spec.ro_binds = self.sandbox.ro_binds.clone();
        let out = sandbox::run(&spec).map_err(|source| StepError::Sandbox {
            origin: step.origin.clone(),
            action,
            source,
        })?;
        if out.success() {
            return Ok(());
        }
        let status = match out.status {
            Status::Exited(c) => format!("exit status {c}"),
            Status::Signaled(s) => format!("killed by signal {s}"),
            Status::TimedOut => format!("timed out after {}s", self.sandbox.timeout.as_secs()),
        };
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = text.lines().collect();
        Err(StepError::Command {
            origin: step.origin.clone(),
            action,
            command: argv
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            status,
            output: lines[lines.len().saturating_sub(40)..].join("\n"),
        })
    }
}

/// `useradd` arguments for a `user` step: a group of the same name, a home
/// made from `/etc/skel` unless it is a system account without `home`.
fn useradd_argv(account: &UserAccount) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["useradd".into(), "--user-group".into()];
    if let Some(uid) = account.uid {
        argv.extend(["--uid".into(), uid.to_string().into()]);
    }
    if !account.groups.is_empty() {
        argv.extend(["--groups".into(), account.groups.join(",").into()]);
    }
    if let Some(shell) = &account.shell {
        argv.extend(["--shell".into(), shell.into()]);
    }
    if let Some(home) = &account.home {
        argv.extend(["--home-dir".into(), home.into()]);
    }
    if account.system {
        argv.push("--system".into());
    }
    if account.home.is_some() || !account.system {
        argv.push("--create-home".into());
    }
    if let Some(hash) = &account.password_hash {
        argv.extend(["--password".into(), hash.into()]);
    }
    argv.push(account.name.as_str().into());
    argv
}

/// The image root, opened once; every path is resolved inside it.
struct ImageRoot {
    fd: OwnedFd,
}

/// `(parent components, file name)` of an absolute image path, refusing
/// empty, `.` and `..` components.
fn split(path: &str) -> Result<(Vec<&str>, &str), String> {
    let rel = path
        .strip_prefix('/')
        .ok_or_else(|| "not an absolute path".to_string())?;
    let comps: Vec<&str> = rel.split('/').collect();
    if comps
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err("refused: empty, `.` or `..` path component".into());
    }
    let (name, parents) = comps.split_last().expect("split yields one item");
    Ok((parents.to_vec(), name))
}

impl ImageRoot {
    fn open(root: &Path) -> io::Result<ImageRoot> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(ImageRoot { fd })
    }

    /// Opens `rel` (relative to the root, `""` for the root) resolving
    /// symlinks as if the root were `/`.
    fn resolve(&self, rel: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        let rel = if rel.is_empty() { "." } else { rel };
        rustix::fs::openat2(
            &self.fd,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// The directory holding `path`, created (0755, level by level) if missing.
    fn parent(&self, parents: &[&str]) -> Result<OwnedFd, String> {
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        let mut fd = self
            .resolve("", flags)
            .map_err(|e| format!("open the root: {e}"))?;
        for i in 0..parents.len() {
            let prefix = parents[..=i].join("/");
            fd = match self.resolve(&prefix, flags) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&fd, parents[i], Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(format!("create directory /{prefix}: {e}")),
                    }
                    self.resolve(&prefix, flags)
                        .map_err(|e| format!("open directory /{prefix}: {e}"))?
                }
                Err(Errno::NOTDIR) => return Err(format!("/{prefix} is not a directory")),
                Err(e) => return Err(format!("open directory /{prefix}: {e}")),
            };
        }
        Ok(fd)
    }

    /// A temp name in a directory for an atomic replace.
    fn temp_name(name: &str) -> String {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!(".{name}.imgbuild-{}-{n}", std::process::id())
    }

    /// Refuses to replace a directory.
    fn check_not_dir(dir: &OwnedFd, name: &str) -> Result<(), String> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() => {
                Err("is a directory".into())
            }
            _ => Ok(()),
        }
    }

    /// Writes `bytes` to `path` via a temp file and a rename.
    fn write_file(
        &self,
        path: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), String> {
        let (parents, name) = split(path)?;
        let dir = self.parent(&parents)?;
        Self::check_not_dir(&dir, name)?;
        let tmp = Self::temp_name(name);
        let result = (|| -> Result<(), String> {
            let fd = rustix::fs::openat(
                &dir,
                tmp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| format!("create: {e}"))?;
            let mut file = std::fs::File::from(fd);
            file.write_all(bytes).map_err(|e| format!("write: {e}"))?;
            if let Some((uid, gid)) = owner {
                // chown before chmod: chown clears setuid/setgid bits.
                rustix::fs::fchown(
                    &file,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                )
                .map_err(|e| format!("chown {uid}:{gid}: {e}"))?;
            }
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
                .map_err(|e| format!("chmod {mode:04o}: {e}"))?;
            rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)
                .map_err(|e| format!("rename into place: {e}"))
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        }
        result
    }

    /// Makes `path` a symlink to `target` (replacing a file or symlink).
    fn symlink(&self, path: &str, target: &str) -> Result<(), String> {
        let (parents, name) = split(path)?;
        let dir = self.parent(&parents)?;
        Self::check_not_dir(&dir, name)?;
        let tmp = Self::temp_name(name);
        rustix::fs::symlinkat(target, &dir, tmp.as_str()).map_err(|e| format!("symlink: {e}"))?;
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, name).map_err(|e| {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
            format!("rename into place: {e}")
        })
    }

    /// Whether `path` exists in the image (symlinks followed inside it).
    fn exists(&self, path: &str) -> bool {
        self.resolve(path.trim_start_matches('/'), OFlags::PATH)
            .is_ok()
    }

    /// Removes the file `path` (not following a final symlink).
    fn remove(&self, path: &str) -> Result<(), String> {
        let (parents, name) = split(path)?;
        let dir = self
            .resolve(&parents.join("/"), OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| e.to_string())?;
        rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(|e| e.to_string())
    }

    /// Reads the file at `path` (used by tests).
    #[cfg(test)]
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        use std::io::Read;
        let fd = self
            .resolve(path.trim_start_matches('/'), OFlags::RDONLY)
            .ok()?;
        let mut out = Vec::new();
        std::fs::File::from(fd).read_to_end(&mut out).ok()?;
        Some(out)
    }
}

#[cfg(test)]
mod tests;
