//! The sandbox's setup, planned in the parent and replayed in the child.
//!
//! Everything that allocates or can fail with a useful message (path checks,
//! creating mount points in the root, C strings) happens in [`plan`], before
//! the fork. The child (see [`enter`]) runs between `fork` and `exec` of a
//! multi-threaded program, so it only makes raw system calls over that plan;
//! when one fails it writes the failing step's index to a pipe so the parent
//! can say which step failed.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::{SandboxError, SandboxSpec};

/// Device nodes bind-mounted from the host into the sandbox's `/dev`.
pub(super) const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// `/proc` entries bound read-only onto themselves (as runc does).
const PROC_READONLY: [&str; 5] = ["sys", "sysrq-trigger", "irq", "bus", "fs"];

/// `/proc` entries hidden: files under `/dev/null`, directories under an
/// empty read-only tmpfs (as runc does).
const PROC_MASKED: [&str; 8] = [
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "acpi",
    "scsi",
    "asound",
];

/// One system call (or two) of the setup, with its arguments ready.
#[derive(Debug)]
pub(super) enum Step {
    /// `mount --make-rprivate /`: nothing we mount propagates to the host.
    PrivateRoot,
    /// `mount --bind src dst`, then a read-only remount keeping the source's
    /// locked flags (a user namespace may not drop nosuid/nodev/noexec).
    Bind {
        src: CString,
        dst: CString,
        readonly: bool,
        keep: libc::c_ulong,
    },
    /// A filesystem without a source (`tmpfs`, `proc`).
    Fs {
        fstype: &'static CStr,
        dst: CString,
        flags: libc::c_ulong,
        data: CString,
    },
    /// `move_mount` of a detached (id-mapped) mount, made by the parent, onto `dst`.
    Attach {
        fd: libc::c_int,
        src: CString,
        dst: CString,
    },
    /// `move_mount` of the id-mapped root onto the working directory (the
    /// root, entered by the child while it could still walk there), then
    /// `fchdir` into the attached mount.
    AttachRoot {
        mount: libc::c_int,
        path: CString,
    },
    Mkdir(CString, libc::mode_t),
    Touch(CString),
    Symlink(&'static CStr, CString),
    /// `pivot_root` into the (bind-mounted) root and detach the old one.
    PivotRoot(CString),
    Hostname(Vec<u8>),
    LoopbackUp,
    Chdir(CString),
}

impl Step {
    /// Human description for error messages (parent side only).
    pub(super) fn describe(&self) -> String {
        let s = |c: &CStr| c.to_string_lossy().into_owned();
        match self {
            Step::PrivateRoot => "make / a private mount".into(),
            Step::Bind {
                src, dst, readonly, ..
            } => {
                format!(
                    "bind {} on {}{}",
                    s(src),
                    s(dst),
                    if *readonly { " read-only" } else { "" }
                )
            }
            Step::Fs { fstype, dst, .. } => format!("mount {} on {}", s(fstype), s(dst)),
            Step::AttachRoot { path, .. } => {
                format!("attach the id-mapped mount of the root {}", s(path))
            }
            Step::Attach { src, dst, .. } => {
                format!("attach the id-mapped mount of {} on {}", s(src), s(dst))
            }
            Step::Mkdir(p, _) => format!("create directory {}", s(p)),
            Step::Touch(p) => format!("create mount point {}", s(p)),
            Step::Symlink(t, p) => format!("create symlink {} -> {}", s(p), s(t)),
            Step::PivotRoot(r) => format!("pivot_root into {}", s(r)),
            Step::Hostname(h) => format!("set hostname {}", String::from_utf8_lossy(h)),
            Step::LoopbackUp => "bring up lo".into(),
            Step::Chdir(p) => format!("change directory to {} (inside)", s(p)),
        }
    }
}

impl Step {
    /// Rewrites the paths of this step that lie under `root` relative to it
    /// (`root/dev/null` → `dev/null`; the root itself → `.`).
    fn relative_to(&mut self, root: &Path) {
        let rel = |c: &mut CString| {
            let p = Path::new(std::ffi::OsStr::from_bytes(c.as_bytes()));
            if let Ok(r) = p.strip_prefix(root) {
                let r = if r.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    r
                };
                *c = cstr(r);
            }
        };
        match self {
            Step::Bind { src, dst, .. } => {
                rel(src);
                rel(dst);
            }
            Step::Fs { dst, .. } | Step::Attach { dst, .. } => rel(dst),
            Step::Mkdir(p, _) | Step::Touch(p) | Step::Symlink(_, p) => rel(p),
            _ => {}
        }
    }
}

fn cstr(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("paths from the OS have no NUL")
}

/// An absolute inside path as components, refusing `..` and relative paths.
fn inside_components(inside: &Path) -> Option<Vec<&std::ffi::OsStr>> {
    if !inside.is_absolute() {
        return None;
    }
    let mut out = Vec::new();
    for c in inside.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The mount points `plan` created in the root, removed again after the run.
#[derive(Debug, Default)]
pub(super) struct Created(pub Vec<PathBuf>);

impl Created {
    /// Removes what was created, deepest first; best effort (a later package
    /// may have put files there meanwhile, then the directory stays).
    pub(super) fn remove(&self) {
        for p in self.0.iter().rev() {
            let _ = std::fs::remove_dir(p).or_else(|_| std::fs::remove_file(p));
        }
    }
}

/// Makes `root/inside` exist (a directory, or an empty file when `file`),
/// never through a symlink: mount(2) would follow it, possibly out of the root.
fn mount_point(
    root: &Path,
    inside: &Path,
    file: bool,
    created: &mut Created,
) -> Result<PathBuf, String> {
    let comps = inside_components(inside).ok_or("must be an absolute path without `..`")?;
    let mut path = root.to_path_buf();
    for (i, c) in comps.iter().enumerate() {
        path.push(c);
        let last = i + 1 == comps.len();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symlink inside the root; mount points must not be",
                    path.display()
                ));
            }
            Ok(m) if !last && !m.is_dir() => {
                return Err(format!("{} is not a directory", path.display()));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let made = if last && file {
                    std::fs::File::create(&path).map(drop)
                } else {
                    std::fs::create_dir(&path)
                };
                made.map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                created.0.push(path.clone());
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Ok(path)
}

/// Mount flags a bind mount must keep when remounted (from its source's statvfs).
fn locked_flags(src: &Path) -> io::Result<libc::c_ulong> {
    use rustix::fs::StatVfsMountFlags as F;
    let flags = rustix::fs::statvfs(src)?.f_flag;
    let mut keep = 0;
    for (st, ms) in [
        (F::NOSUID, libc::MS_NOSUID),
        (F::NODEV, libc::MS_NODEV),
        (F::NOEXEC, libc::MS_NOEXEC),
        (F::NOATIME, libc::MS_NOATIME),
        (F::NODIRATIME, libc::MS_NODIRATIME),
        (F::RELATIME, libc::MS_RELATIME),
    ] {
        if flags.contains(st) {
            keep |= ms;
        }
    }
    Ok(keep)
}

/// Checks the spec against the host, creates missing mount points in the
/// root, and returns the steps for the child.
///
/// With `userns` (a root caller), the root and every bind are id-mapped
/// mounts made here (their fds are pushed onto `fds`, which must outlive
/// the child's setup) and attached by the child; otherwise plain binds.
pub(super) fn plan(
    spec: &SandboxSpec,
    root: &Path,
    created: &mut Created,
    userns: Option<&OwnedFd>,
    fds: &mut Vec<OwnedFd>,
) -> Result<Vec<Step>, SandboxError> {
    // The child enters the root before anything else and names every path
    // below it relatively: as the namespace's root it may not be allowed to
    // walk the host directories above it (a umask 077 temp directory).
    let root_step = match userns {
        Some(ns) => {
            let root_err = |e: io::Error| SandboxError::Root {
                root: root.to_path_buf(),
                reason: e.to_string(),
            };
            let mount = super::idmap::idmapped(root, ns, false).map_err(root_err)?;
            let step = Step::AttachRoot {
                mount: mount.as_raw_fd(),
                path: cstr(root),
            };
            fds.push(mount);
            step
        }
        None => Step::Bind {
            src: cstr(root),
            dst: cstr(root),
            readonly: false,
            keep: 0,
        },
    };
    let mut attach = |host: &Path, dst: &Path, readonly: bool| -> io::Result<Step> {
        let ns = userns.expect("only with a user namespace");
        let fd = super::idmap::idmapped(host, ns, readonly)?;
        let step = Step::Attach {
            fd: fd.as_raw_fd(),
            src: cstr(host),
            dst: cstr(dst),
        };
        fds.push(fd);
        Ok(step)
    };
    let mut steps = vec![Step::PrivateRoot, root_step];
    if userns.is_none() {
        steps.push(Step::Chdir(cstr(root)));
    }
    let first_inside = steps.len();
    let mut fixed = |inside: &str| {
        mount_point(root, Path::new(inside), false, created).map_err(|reason| SandboxError::Root {
            root: root.to_path_buf(),
            reason: format!("mount point {inside}: {reason}"),
        })
    };
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    let dev = fixed("/dev")?;
    steps.push(Step::Fs {
        fstype: c"tmpfs",
        dst: cstr(&dev),
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: c"mode=0755,size=1m".into(),
    });
    for name in DEVICES {
        let node = dev.join(name);
        steps.push(Step::Touch(cstr(&node)));
        steps.push(Step::Bind {
            src: cstr(&Path::new("/dev").join(name)),
            dst: cstr(&node),
            readonly: false,
            keep: 0,
        });
    }
    for (target, name) in [
        (c"/proc/self/fd", "fd"),
        (c"/proc/self/fd/0", "stdin"),
        (c"/proc/self/fd/1", "stdout"),
        (c"/proc/self/fd/2", "stderr"),
    ] {
        steps.push(Step::Symlink(target, cstr(&dev.join(name))));
    }
    steps.push(Step::Mkdir(cstr(&dev.join("shm")), 0o1777));
    steps.push(Step::Fs {
        fstype: c"tmpfs",
        dst: cstr(&dev.join("shm")),
        flags: nosuid_nodev,
        data: c"mode=1777".into(),
    });
    // /dev/pts: a private devpts instance (no host terminal reachable).
    let pts = dev.join("pts");
    steps.push(Step::Mkdir(cstr(&pts), 0o755));
    steps.push(Step::Fs {
        fstype: c"devpts",
        dst: cstr(&pts),
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: c"newinstance,ptmxmode=0666,mode=0620".into(),
    });
    steps.push(Step::Symlink(c"pts/ptmx", cstr(&dev.join("ptmx"))));
    let proc = fixed("/proc")?;
    let proc_flags = nosuid_nodev | libc::MS_NOEXEC;
    steps.push(Step::Fs {
        fstype: c"proc",
        dst: cstr(&proc),
        flags: proc_flags,
        data: c"".into(),
    });
    // What the OCI runtimes make read-only or mask in /proc.
    for name in PROC_READONLY {
        if Path::new("/proc").join(name).exists() {
            let p = cstr(&proc.join(name));
            steps.push(Step::Bind {
                src: p.clone(),
                dst: p,
                readonly: true,
                keep: proc_flags,
            });
        }
    }
    for name in PROC_MASKED {
        let host = Path::new("/proc").join(name);
        if host.is_dir() {
            steps.push(Step::Fs {
                fstype: c"tmpfs",
                dst: cstr(&proc.join(name)),
                flags: proc_flags | libc::MS_RDONLY,
                data: c"size=0".into(),
            });
        } else if host.exists() {
            steps.push(Step::Bind {
                src: cstr(&dev.join("null")),
                dst: cstr(&proc.join(name)),
                readonly: false,
                keep: 0,
            });
        }
    }
    steps.push(Step::Fs {
        fstype: c"tmpfs",
        dst: cstr(&fixed("/tmp")?),
        flags: nosuid_nodev,
        data: c"mode=1777".into(),
    });
    steps.push(Step::Fs {
        fstype: c"tmpfs",
        dst: cstr(&fixed("/run")?),
        flags: nosuid_nodev,
        data: c"mode=0755".into(),
    });
    let binds = spec
        .ro_binds
        .iter()
        .map(|b| (b, true))
        .chain(spec.rw_binds.iter().map(|b| (b, false)));
    for ((host, inside), readonly) in binds {
        let bind_err = |reason: String| SandboxError::Bind {
            host: host.clone(),
            inside: inside.clone(),
            reason,
        };
        let meta = std::fs::metadata(host).map_err(|e| bind_err(format!("host path: {e}")))?;
        let keep = locked_flags(host).map_err(|e| bind_err(format!("statvfs: {e}")))?;
        let comps = inside_components(inside)
            .ok_or_else(|| bind_err("inside path must be absolute, without `..`".into()))?;
        let first = comps.first().map(|c| c.as_bytes());
        let dst = match first {
            Some(b"dev" | b"proc") | None => {
                return Err(bind_err("cannot bind onto /, /dev or /proc".into()));
            }
            // Under the fresh tmpfs: the mount point is made in the child.
            Some(b"tmp" | b"run") => {
                let mut path = root.to_path_buf();
                for (i, c) in comps.iter().enumerate() {
                    path.push(c);
                    if i + 1 == comps.len() && !meta.is_dir() {
                        steps.push(Step::Touch(cstr(&path)));
                    } else if i > 0 {
                        steps.push(Step::Mkdir(cstr(&path), 0o755));
                    }
                }
                path
            }
            Some(_) => mount_point(root, inside, !meta.is_dir(), created).map_err(bind_err)?,
        };
        if userns.is_some() {
            steps.push(attach(host, &dst, readonly).map_err(|e| bind_err(e.to_string()))?);
        } else {
            steps.push(Step::Bind {
                src: cstr(host),
                dst: cstr(&dst),
                readonly,
                keep,
            });
        }
    }
    for step in &mut steps[first_inside..] {
        step.relative_to(root);
    }
    steps.push(Step::PivotRoot(cstr(root)));
    steps.push(Step::Hostname(spec.hostname.as_bytes().to_vec()));
    steps.push(Step::LoopbackUp);
    let cwd = inside_components(&spec.cwd).ok_or_else(|| SandboxError::Root {
        root: root.to_path_buf(),
        reason: format!("cwd {} must be absolute, without `..`", spec.cwd.display()),
    })?;
    steps.push(Step::Chdir(cstr(
        &Path::new("/").join(cwd.iter().collect::<PathBuf>()),
    )));
    Ok(steps)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Runs one step. Async-signal-safe: raw system calls only, no allocation.
fn run(step: &Step) -> io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY (all blocks): valid NUL-terminated strings and plain-data arguments.
    unsafe {
        match step {
            Step::PrivateRoot => check(libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )),
            Step::Bind {
                src,
                dst,
                readonly,
                keep,
            } => {
                check(libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    null,
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
                if *readonly {
                    let flags = libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_RDONLY
                        | libc::MS_NOSUID
                        | libc::MS_NODEV
                        | keep;
                    check(libc::mount(
                        null,
                        dst.as_ptr(),
                        null,
                        flags,
                        std::ptr::null(),
                    ))?;
                }
                Ok(())
            }
            Step::Fs {
                fstype,
                dst,
                flags,
                data,
            } => check(libc::mount(
                fstype.as_ptr(),
                dst.as_ptr(),
                fstype.as_ptr(),
                *flags,
                data.as_ptr().cast(),
            )),
            Step::Attach { fd, dst, .. } => check(libc::syscall(
                libc::SYS_move_mount,
                *fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                dst.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            ) as libc::c_int),
            Step::AttachRoot { mount, .. } => {
                check(libc::syscall(
                    libc::SYS_move_mount,
                    *mount,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    c".".as_ptr(),
                    libc::MOVE_MOUNT_F_EMPTY_PATH,
                ) as libc::c_int)?;
                check(libc::fchdir(*mount))
            }
            Step::Mkdir(p, mode) => match check(libc::mkdir(p.as_ptr(), *mode)) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
                other => other,
            },
            Step::Touch(p) => {
                let fd = libc::open(
                    p.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    0o644,
                );
                check(fd)?;
                libc::close(fd);
                Ok(())
            }
            Step::Symlink(target, p) => check(libc::symlink(target.as_ptr(), p.as_ptr())),
            Step::PivotRoot(_) => {
                // The working directory is the root (entered first).
                // pivot_root(".", "."): the old root ends up stacked on the new
                // one and is detached right away, leaving no host path reachable.
                check(
                    libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr())
                        as libc::c_int,
                )?;
                check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
                check(libc::chdir(c"/".as_ptr()))
            }
            Step::Hostname(name) => check(libc::sethostname(name.as_ptr().cast(), name.len())),
            Step::LoopbackUp => {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
                check(fd)?;
                let mut req: libc::ifreq = std::mem::zeroed();
                req.ifr_name[0] = b'l' as libc::c_char;
                req.ifr_name[1] = b'o' as libc::c_char;
                req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
                let rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
                libc::close(fd);
                check(rc)
            }
            Step::Chdir(p) => check(libc::chdir(p.as_ptr())),
        }
    }
}

/// Replays `steps` in the child; on failure reports the step's index on `report_fd`.
pub(super) fn enter(steps: &[Step], report_fd: libc::c_int) -> io::Result<()> {
    for (i, step) in steps.iter().enumerate() {
        if let Err(e) = run(step) {
            let idx = (i as u32).to_ne_bytes();
            // SAFETY: writing 4 bytes from a live buffer to an fd we own.
            unsafe { libc::write(report_fd, idx.as_ptr().cast(), idx.len()) };
            return Err(e);
        }
    }
    Ok(())
}
