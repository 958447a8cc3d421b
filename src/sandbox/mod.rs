//! Run a command with a directory as `/`, isolated from the host.
//!
//! [`run`] starts the command in fresh user, mount, pid, uts, ipc and
//! network namespaces:
//! - `/` is the given root (bind-mounted onto itself — id-mapped for a root
//!   caller — then `pivot_root`; the
//!   host's root is detached, so no host path is reachable except the declared
//!   binds). Read-only binds are not recursive: mounts below the host path are
//!   not carried along;
//! - `/dev` is a small tmpfs with `null`, `zero`, `full`, `random`, `urandom`
//!   and `tty` bind-mounted from the host, `fd`/`stdin`/`stdout`/`stderr`
//!   symlinks, a private devpts `/dev/pts` and a tmpfs `/dev/shm`;
//! - `/proc` is a new proc mount for the new pid namespace, in which the
//!   command is pid 1; `/tmp` and `/run` are fresh tmpfs;
//! - the network namespace has only `lo` (brought up, so a build can talk to
//!   itself over 127.0.0.1, but nothing leads out of it);
//! - the environment is cleared and set to [`SandboxSpec::env_vars`], the hostname is
//!   fixed, the umask is 022, and the command runs in a new session (no
//!   controlling terminal to inject keystrokes into).
//!
//! Mount points missing in the root (`/dev`, `/proc`, …, bind targets) are
//! created before the run and removed after it. A mount point that is a
//! symlink inside the root is refused rather than followed.
//!
//! How: the user namespace is made first (`idmap.rs`), then
//! `std::process::Command` with a `pre_exec` hook that joins it, `unshare`s
//! the other namespaces and forks once more, because a new pid namespace only applies
//! to children. The intermediate process waits for that child (pid 1 inside)
//! and exits with its status; pid 1 gets `SIGKILL` when the intermediate dies
//! (`PR_SET_PDEATHSIG`), and the kernel then kills every process of the
//! namespace. So the timeout (and dropping the caller) kills the whole tree.
//!
//! Privileges: none of the host's, whoever the caller is (see `idmap.rs`
//! for the id maps and `docs/sandbox.md` for the whole policy):
//! - always a new user namespace: ids 0–65535 inside are a reserved range
//!   (root caller) or the caller's `/etc/subuid` range, never host root; for
//!   a root caller the root and the binds are id-mapped mounts, so the tree
//!   keeps its in-image owners on disk; capabilities exist only inside;
//! - `/proc/sys`, `/proc/sysrq-trigger`, `/proc/irq`, `/proc/bus` and
//!   `/proc/fs` are read-only, `/proc/kcore`, `/proc/keys` and the other
//!   kernel-internal files are masked; there is no `/sys`; `/dev` has only
//!   the six nodes above, `pts` (a private devpts) and `shm`;
//! - `PR_SET_NO_NEW_PRIVS` and a seccomp filter (see `seccomp.rs`) that
//!   refuses `open_by_handle_at`, module loading, kexec, `bpf`, keyrings,
//!   `ptrace`, new user namespaces, and any mount after the setup, with
//!   `EPERM`. A package's device nodes cannot be made inside (`mknod`
//!   needs a capability of the initial namespace).

mod child;
pub mod idmap;
pub mod seccomp;
mod setup;

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the sandboxed command reads on stdin.
#[derive(Debug, Clone, Default)]
pub enum Input {
    /// `/dev/null`.
    #[default]
    Null,
    /// The caller's stdin.
    Inherit,
    /// These bytes, then end of file.
    Bytes(Vec<u8>),
    /// What a function writes while the command runs, then end of file.
    Producer(Producer),
}

/// A function that writes a command's stdin from a thread of its own
/// ([`Input::Producer`]): input too big to hold in memory, made as it is
/// read. What it could not write (the command stopped reading, or its own
/// source failed) is the caller's to record and check; the command only
/// sees its input end.
#[derive(Clone)]
pub struct Producer(std::sync::Arc<WriteFn>);

/// The function inside a [`Producer`].
type WriteFn = dyn Fn(&mut dyn Write) + Send + Sync;

impl Producer {
    /// Wraps `write`, called once per run with the pipe to the command.
    pub fn new(write: impl Fn(&mut dyn Write) + Send + Sync + 'static) -> Producer {
        Producer(std::sync::Arc::new(write))
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Producer")
    }
}

/// Gives the pipe to a command's stdin 1 MiB (the most an unprivileged
/// process may ask for by default) instead of 64 KiB: a command reading a
/// stream of hundreds of megabytes (mkfs's rootfs tar) then sleeps and
/// wakes once per megabyte, not per 64 KiB. Best effort.
fn widen_pipe(pipe: &std::process::ChildStdin) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor `pipe` owns; no memory is passed.
    let _ = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
}

/// Where stdout or stderr of the sandboxed command goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stream {
    /// Discarded.
    Null,
    /// The caller's stream.
    Inherit,
    /// Captured into [`Output`].
    #[default]
    Capture,
}

/// Everything about one sandboxed run. Start with [`SandboxSpec::new`].
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Host directory that becomes `/`.
    pub root: PathBuf,
    /// Read-only bind mounts: (host path, absolute path inside).
    pub ro_binds: Vec<(PathBuf, PathBuf)>,
    /// Read-write bind mounts: (host path, absolute path inside).
    pub rw_binds: Vec<(PathBuf, PathBuf)>,
    /// Extra environment variables, after (and overriding) the fixed ones.
    pub env: Vec<(String, String)>,
    /// Hostname inside.
    pub hostname: String,
    /// `SOURCE_DATE_EPOCH` inside.
    pub source_date_epoch: u64,
    /// Working directory inside.
    pub cwd: PathBuf,
    /// Program (looked up in the sandbox's `PATH` unless it has a `/`) and arguments.
    pub argv: Vec<OsString>,
    /// Standard input.
    pub stdin: Input,
    /// Standard output.
    pub stdout: Stream,
    /// Standard error.
    pub stderr: Stream,
    /// Kill the whole sandbox after this long.
    pub timeout: Option<Duration>,
}

impl SandboxSpec {
    /// `argv` in `root`, hostname `imgbuild`, epoch 0, cwd `/`, stdin null,
    /// stdout/stderr captured, no timeout, no binds.
    pub fn new<I, S>(root: impl Into<PathBuf>, argv: I) -> SandboxSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        SandboxSpec {
            root: root.into(),
            ro_binds: Vec::new(),
            rw_binds: Vec::new(),
            env: Vec::new(),
            hostname: "imgbuild".into(),
            source_date_epoch: 0,
            cwd: PathBuf::from("/"),
            argv: argv.into_iter().map(Into::into).collect(),
            stdin: Input::Null,
            stdout: Stream::Capture,
            stderr: Stream::Capture,
            timeout: None,
        }
    }

    /// The environment the command gets: the fixed variables, then [`SandboxSpec::env`].
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = [
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
            ("LC_ALL", "C.UTF-8".into()),
            ("TZ", "UTC".into()),
            ("SOURCE_DATE_EPOCH", self.source_date_epoch.to_string()),
            ("DEBIAN_FRONTEND", "noninteractive".into()),
            ("HOME", "/root".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in &self.env {
            vars.retain(|(name, _)| name != k);
            vars.push((k.clone(), v.clone()));
        }
        vars
    }
}

/// How the sandboxed command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Killed (with everything in its pid namespace) at the timeout.
    TimedOut,
}

/// The result of [`run`].
#[derive(Debug, Clone)]
pub struct Output {
    /// How it ended.
    pub status: Status,
    /// Captured stdout (empty unless [`Stream::Capture`]).
    pub stdout: Vec<u8>,
    /// Captured stderr (empty unless [`Stream::Capture`]).
    pub stderr: Vec<u8>,
    /// Wall time from start to end.
    pub elapsed: Duration,
}

impl Output {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.status == Status::Exited(0)
    }
}

/// Why a sandbox could not be run (the command's own failure is an [`Output`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The root or its mount points are unusable.
    #[error("sandbox root {root}: {reason}")]
    Root {
        /// The root directory.
        root: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A bind mount is unusable.
    #[error("sandbox bind {host} -> {inside}: {reason}")]
    Bind {
        /// Host path.
        host: PathBuf,
        /// Path inside.
        inside: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Setting up the namespaces or starting the command failed.
    #[error("sandbox {root}: cannot start {program}: {step}: {error}")]
    Spawn {
        /// The root directory.
        root: PathBuf,
        /// `argv[0]`.
        program: String,
        /// The setup step that failed, or `exec`.
        step: String,
        /// The underlying error.
        error: io::Error,
    },
    /// Waiting for the command or reading its output failed.
    #[error("sandbox {root}: {what}: {error}")]
    Io {
        /// The root directory.
        root: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        error: io::Error,
    },
}

/// Runs the command described by `spec` in a fresh sandbox and waits for it
/// (at most [`SandboxSpec::timeout`]). See the module docs for what it sees.
pub fn run(spec: &SandboxSpec) -> Result<Output, SandboxError> {
    let root_err = |reason: String| SandboxError::Root {
        root: spec.root.clone(),
        reason,
    };
    let root = std::fs::canonicalize(&spec.root).map_err(|e| root_err(e.to_string()))?;
    if !root.is_dir() {
        return Err(root_err("not a directory".into()));
    }
    let Some(program) = spec.argv.first() else {
        return Err(root_err("empty argv".into()));
    };
    let spawn_err = |step: &str, error: io::Error| SandboxError::Spawn {
        root: root.clone(),
        program: program.to_string_lossy().into_owned(),
        step: step.to_string(),
        error,
    };
    let map = idmap::IdMap::for_caller().map_err(|e| spawn_err("reading the id maps", e))?;
    let userns = map
        .create()
        .map_err(|e| spawn_err("creating the user namespace", e))?;
    let filters = seccomp::Filters::new().map_err(|e| spawn_err("seccomp filter", e))?;
    let mut created = setup::Created::default();
    let mut fds = Vec::new();
    let mapped = map.idmapped_mounts.then_some(&userns);
    let result = setup::plan(spec, &root, &mut created, mapped, &mut fds).and_then(|steps| {
        let plan = Prepared {
            userns: &userns,
            setgroups: map.allows_setgroups(),
            filters: &filters,
        };
        spawn_and_wait(spec, &root, steps, &plan)
    });
    drop(fds);
    created.remove();
    result.map_err(|e| match e {
        SandboxError::Spawn {
            root, step, error, ..
        } => SandboxError::Spawn {
            root,
            program: program.to_string_lossy().into_owned(),
            step,
            error,
        },
        e => e,
    })
}

/// The parts of a run prepared before the fork.
struct Prepared<'a> {
    userns: &'a OwnedFd,
    setgroups: bool,
    filters: &'a seccomp::Filters,
}

fn spawn_and_wait(
    spec: &SandboxSpec,
    root: &std::path::Path,
    steps: Vec<setup::Step>,
    prepared: &Prepared<'_>,
) -> Result<Output, SandboxError> {
    let io_err = |what: &'static str| {
        move |error: io::Error| SandboxError::Io {
            root: root.to_path_buf(),
            what,
            error,
        }
    };
    let (report_r, report_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io_err("pipe")(e.into()))?;
    let report_fd = report_w.as_raw_fd();
    let described: Vec<String> = steps.iter().map(setup::Step::describe).collect();
    let userns = prepared.userns.as_raw_fd();
    let setgroups = prepared.setgroups;
    let filters = prepared.filters.clone();
    let root_c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
        .map_err(|e| io_err("root path")(io::Error::other(e)))?;

    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..]).env_clear().envs(spec.env_vars());
    cmd.stdin(match spec.stdin {
        Input::Null => Stdio::null(),
        Input::Inherit => Stdio::inherit(),
        Input::Bytes(_) | Input::Producer(_) => Stdio::piped(),
    });
    let stream = |s: Stream| match s {
        Stream::Null => Stdio::null(),
        Stream::Inherit => Stdio::inherit(),
        Stream::Capture => Stdio::piped(),
    };
    cmd.stdout(stream(spec.stdout)).stderr(stream(spec.stderr));
    // SAFETY: the hook only makes raw system calls on data prepared above
    // (see `child` and `setup::enter`); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            child::child(&child::ChildPlan {
                root: &root_c,
                userns,
                setgroups,
                steps: &steps,
                report_fd,
                filters: &filters,
            })
        });
    }
    let start = Instant::now();
    let spawned = cmd.spawn();
    drop(cmd);
    drop(report_w);
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => return Err(spawn_error(root, &report_r, error, &described)),
    };
    let stdin_writer = match (&spec.stdin, child.stdin.take()) {
        (Input::Bytes(bytes), Some(mut pipe)) => {
            let bytes = bytes.clone();
            // A command that does not read all its input is not an error.
            Some(std::thread::spawn(move || drop(pipe.write_all(&bytes))))
        }
        (Input::Producer(producer), Some(mut pipe)) => {
            let producer = producer.clone();
            widen_pipe(&pipe);
            Some(std::thread::spawn(move || (producer.0)(&mut pipe)))
        }
        _ => None,
    };
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        pipe.map(|mut p| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                p.read_to_end(&mut buf).map(|_| buf)
            })
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );

    let mut pause = Duration::from_millis(1);
    let (exit, timed_out) = loop {
        if let Some(status) = child.try_wait().map_err(io_err("wait"))? {
            break (status, false);
        }
        let now = Instant::now();
        match spec.timeout.map(|t| start + t) {
            Some(deadline) if now >= deadline => {
                // SIGKILL to the intermediate; pid 1 follows by PDEATHSIG, the
                // rest of the namespace with it.
                child.kill().map_err(io_err("kill at timeout"))?;
                break (child.wait().map_err(io_err("wait"))?, true);
            }
            Some(deadline) => std::thread::sleep(pause.min(deadline - now)),
            None => std::thread::sleep(pause),
        }
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let collect =
        |h: Option<std::thread::JoinHandle<io::Result<Vec<u8>>>>| -> Result<Vec<u8>, SandboxError> {
            match h {
                None => Ok(Vec::new()),
                Some(h) => h
                    .join()
                    .expect("reader thread")
                    .map_err(io_err("read output")),
            }
        };
    let stdout = collect(out)?;
    let stderr = collect(err)?;
    if let Some(w) = stdin_writer {
        let _ = w.join();
    }
    let status = if timed_out {
        Status::TimedOut
    } else if let Some(code) = exit.code() {
        Status::Exited(code)
    } else {
        Status::Signaled(exit.signal().unwrap_or(0))
    };
    Ok(Output {
        status,
        stdout,
        stderr,
        elapsed: start.elapsed(),
    })
}

fn spawn_error(
    root: &std::path::Path,
    report: &OwnedFd,
    error: io::Error,
    described: &[String],
) -> SandboxError {
    let mut idx = [0u8; 4];
    let step = match rustix::io::read(report, &mut idx) {
        Ok(4) => {
            let i = u32::from_ne_bytes(idx) as usize;
            described
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("setup step {i}"))
        }
        _ if error.raw_os_error() == Some(libc::EPERM) => {
            "joining the user namespace or creating the others".into()
        }
        _ => "namespaces, syscall filter or exec".into(),
    };
    SandboxError::Spawn {
        root: root.to_path_buf(),
        program: String::new(),
        step,
        error,
    }
}
