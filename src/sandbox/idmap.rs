//! The sandbox's user namespace: which ids it maps, how the map is written,
//! and the id-mapped mounts that show a host tree to it with in-image owners.
//!
//! Every sandbox runs in a new user namespace, whoever the caller is, so
//! the command never holds a capability of the initial namespace (no
//! `CAP_DAC_READ_SEARCH` for `open_by_handle_at`, no `CAP_MKNOD`, no
//! `CAP_SYS_ADMIN` over the host's mounts or sysfs). [`IdMap::for_caller`]
//! picks the map:
//! - **root in the initial namespace**: ids 0–65535 inside are a reserved
//!   range outside (the `root` line of `/etc/subuid` and `/etc/subgid` when
//!   there is one, else [`RESERVED_BASE`]), never the host's own 0. The
//!   image tree keeps its in-image owners on disk (host uid 0 is image
//!   uid 0, as the tar writer and the unpacker expect), and the sandbox sees
//!   it through an *id-mapped mount* ([`idmapped`]): image uid k on disk is
//!   uid k inside, and a file the command creates as uid k is stored as k.
//!   The processes themselves run as `base + k` on the host: not a host
//!   user, holding nothing. This is the design of `systemd-nspawn
//!   --private-users` with id-mapped mounts; it keeps every tree-writing
//!   part of imgbuild (unpack, dpkg database, normalisation, tar writer)
//!   unchanged and in-process, where running all of it inside the
//!   namespace (mmdebstrap's unshare mode) would need a second process;
//! - **another user with a range in `/etc/subuid` and `/etc/subgid`**: 0
//!   inside is the caller, 1–65535 the first 65535 ids of the range,
//!   written by the setuid helpers `newuidmap`/`newgidmap` (package
//!   `uidmap`); id-mapped mounts need root, so files chowned inside belong
//!   to the range on the host;
//! - **another user without a range**: only the caller, as 0 inside
//!   (`chown` to other ids fails there);
//! - **inside a user namespace already** (a container, or imgbuild's own
//!   rootless build process): the ids mapped there from 0 on, at most
//!   65536, one to one.
//!
//! The namespace is made by a short-lived forked child that only calls
//! `unshare` and waits; the parent writes its maps and keeps a handle to
//! it, and the sandbox's child joins it with `setns` before making the
//! other namespaces, which the new user namespace then owns.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

/// Host uid and gid of image id 0 for a root caller without a `root` line
/// in `/etc/subuid` / `/etc/subgid`: far above any uid `useradd` hands out
/// (and above the 100000+ ranges it writes to `/etc/subuid`).
pub const RESERVED_BASE: u32 = 0x7000_0000;

/// How many ids the sandbox maps.
pub const RANGE: u32 = 65536;

/// One line of a uid_map/gid_map: `inside outside count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First id inside.
    pub inside: u32,
    /// First id outside.
    pub outside: u32,
    /// How many.
    pub count: u32,
}

/// Who writes the maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// The parent writes `/proc/PID/{uid,gid}_map` itself.
    Direct {
        /// `setgroups` must be denied first (an unprivileged single-id map).
        deny_setgroups: bool,
    },
    /// `newuidmap` / `newgidmap`.
    Helpers,
}

/// The id maps of a sandbox's user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    /// uid_map lines.
    pub uid: Vec<Extent>,
    /// gid_map lines.
    pub gid: Vec<Extent>,
    /// Whether the sandbox's root and binds are id-mapped mounts (root caller).
    pub idmapped_mounts: bool,
    writer: Writer,
}

/// The current process's map of `kind` (`uid_map`/`gid_map`).
fn own_map(kind: &str) -> io::Result<Vec<Extent>> {
    let text = fs::read_to_string(format!("/proc/self/{kind}"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let n: Vec<u32> = line
            .split_whitespace()
            .map(|w| {
                w.parse()
                    .map_err(|_| io::Error::other(format!("bad {kind} line {line:?}")))
            })
            .collect::<io::Result<_>>()?;
        if let [inside, outside, count] = n[..] {
            out.push(Extent {
                inside,
                outside,
                count,
            });
        }
    }
    Ok(out)
}

fn is_initial(map: &[Extent]) -> bool {
    map == [Extent {
        inside: 0,
        outside: 0,
        count: u32::MAX,
    }]
}

/// The ids mapped contiguously from 0 in `map` (at most [`RANGE`]), as
/// identity extents that follow `map`'s own extents: the kernel wants each
/// extent of a child map inside one extent of its parent's.
fn identity_from_zero(map: &[Extent]) -> Vec<Extent> {
    let mut out = Vec::new();
    let mut next = 0u32;
    while next < RANGE {
        let Some(e) = map
            .iter()
            .find(|e| e.inside <= next && next - e.inside < e.count)
        else {
            break;
        };
        let end = e.inside.saturating_add(e.count).min(RANGE);
        out.push(Extent {
            inside: next,
            outside: next,
            count: end - next,
        });
        next = end;
    }
    out
}

/// How many ids [`identity_from_zero`] covers.
#[cfg(test)]
fn mapped_from_zero(map: &[Extent]) -> u32 {
    identity_from_zero(map).iter().map(|e| e.count).sum()
}

/// The first range of at least `min` ids for `user` (name or numeric id)
/// in a subuid/subgid file's text.
pub fn subordinate_range(text: &str, names: &[&str], min: u32) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        let (start, count): (u32, u32) = (start.parse().ok()?, count.parse().ok()?);
        (names.contains(&who) && count >= min).then_some(start)
    })
}

fn user_name(uid: u32) -> Option<String> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next()?;
        (f.next()? == uid.to_string()).then(|| name.to_string())
    })
}

fn single(inside_of: u32) -> Vec<Extent> {
    vec![Extent {
        inside: 0,
        outside: inside_of,
        count: 1,
    }]
}

impl IdMap {
    /// The map for a sandbox started by this process (see the module docs).
    pub fn for_caller() -> io::Result<IdMap> {
        let (uid_map, gid_map) = (own_map("uid_map")?, own_map("gid_map")?);
        let euid = rustix::process::geteuid().as_raw();
        let egid = rustix::process::getegid().as_raw();
        let range = |outside: u32| {
            vec![Extent {
                inside: 0,
                outside,
                count: RANGE,
            }]
        };
        if !is_initial(&uid_map) {
            if euid != 0 {
                return Ok(IdMap {
                    uid: single(euid),
                    gid: single(egid),
                    idmapped_mounts: false,
                    writer: Writer::Direct {
                        deny_setgroups: true,
                    },
                });
            }
            return Ok(IdMap {
                uid: identity_from_zero(&uid_map),
                gid: identity_from_zero(&gid_map),
                idmapped_mounts: false,
                writer: Writer::Direct {
                    deny_setgroups: false,
                },
            });
        }
        let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
        let subgid = fs::read_to_string("/etc/subgid").unwrap_or_default();
        if euid == 0 {
            let names = ["root", "0"];
            return Ok(IdMap {
                uid: range(subordinate_range(&subuid, &names, RANGE).unwrap_or(RESERVED_BASE)),
                gid: range(subordinate_range(&subgid, &names, RANGE).unwrap_or(RESERVED_BASE)),
                idmapped_mounts: true,
                writer: Writer::Direct {
                    deny_setgroups: false,
                },
            });
        }
        let name = user_name(euid);
        let id = euid.to_string();
        let mut names = vec![id.as_str()];
        if let Some(n) = &name {
            names.push(n);
        }
        let sub = (
            subordinate_range(&subuid, &names, RANGE - 1),
            subordinate_range(&subgid, &names, RANGE - 1),
        );
        let helpers = which("newuidmap").is_some() && which("newgidmap").is_some();
        match sub {
            (Some(su), Some(sg)) if helpers => {
                let with_range = |own: u32, start: u32| {
                    vec![
                        Extent {
                            inside: 0,
                            outside: own,
                            count: 1,
                        },
                        Extent {
                            inside: 1,
                            outside: start,
                            count: RANGE - 1,
                        },
                    ]
                };
                Ok(IdMap {
                    uid: with_range(euid, su),
                    gid: with_range(egid, sg),
                    idmapped_mounts: false,
                    writer: Writer::Helpers,
                })
            }
            _ => Ok(IdMap {
                uid: single(euid),
                gid: single(egid),
                idmapped_mounts: false,
                writer: Writer::Direct {
                    deny_setgroups: true,
                },
            }),
        }
    }

    /// Whether the map has more than one id (so `setgroups` is allowed inside).
    pub(super) fn allows_setgroups(&self) -> bool {
        !matches!(
            self.writer,
            Writer::Direct {
                deny_setgroups: true
            }
        )
    }

    /// Whether the map comes from `/etc/subuid` and `/etc/subgid` (a
    /// non-root caller with a range).
    pub fn is_subordinate(&self) -> bool {
        self.writer == Writer::Helpers
    }

    /// Writes the maps of process `pid`'s user namespace.
    pub fn write(&self, pid: i32) -> io::Result<()> {
        let text = |m: &[Extent]| {
            m.iter()
                .map(|e| format!("{} {} {}\n", e.inside, e.outside, e.count))
                .collect::<String>()
        };
        match self.writer {
            Writer::Direct { deny_setgroups } => {
                let proc = format!("/proc/{pid}");
                let put = |file: &str, data: &str| {
                    fs::write(format!("{proc}/{file}"), data).map_err(|e| {
                        io::Error::new(e.kind(), format!("writing {proc}/{file}: {e}"))
                    })
                };
                put("uid_map", &text(&self.uid))?;
                if deny_setgroups {
                    put("setgroups", "deny")?;
                }
                put("gid_map", &text(&self.gid))
            }
            Writer::Helpers => {
                for (tool, map) in [("newuidmap", &self.uid), ("newgidmap", &self.gid)] {
                    let mut cmd = Command::new(tool);
                    cmd.arg(pid.to_string());
                    for e in map {
                        cmd.args([e.inside, e.outside, e.count].map(|n| n.to_string()));
                    }
                    let out = cmd
                        .output()
                        .map_err(|e| io::Error::new(e.kind(), format!("running {tool}: {e}")))?;
                    if !out.status.success() {
                        return Err(io::Error::other(format!(
                            "{tool} failed ({}): {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim()
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// A new user namespace with these maps, as a handle to `setns` into.
    pub(super) fn create(&self) -> io::Result<OwnedFd> {
        let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        // SAFETY: the child makes raw system calls only and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: async-signal-safe calls on this process's own fds. The
            // child keeps only its end of the pipe on fd 3 (it must not hold
            // other threads' pipes open), reports, and waits to be killed.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::dup2(ready_w.as_raw_fd(), 3);
                libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
                let ok: u8 = u8::from(libc::unshare(libc::CLONE_NEWUSER) == 0);
                libc::write(3, (&ok as *const u8).cast(), 1);
                loop {
                    libc::pause();
                }
            }
        }
        drop(ready_w);
        let result = (|| {
            let mut ok = [0u8];
            let n = rustix::io::read(&ready_r, &mut ok)?;
            if n != 1 || ok[0] != 1 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "cannot create a user namespace (unprivileged user namespaces disabled?)",
                ));
            }
            self.write(pid)?;
            let path = CString::new(format!("/proc/{pid}/ns/user")).expect("no NUL");
            // SAFETY: valid path; the fd is owned by the OwnedFd below.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh fd of ours.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })();
        let mut status = 0;
        // SAFETY: killing and reaping our own child; the namespace lives on
        // through the fd.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            while libc::waitpid(pid, &mut status, 0) < 0 && *libc::__errno_location() == libc::EINTR
            {
            }
        }
        result
    }
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
}

/// A detached, id-mapped (by `userns`) clone of the mount at `path`, not
/// recursive; read-only (and nosuid, nodev) when `readonly`.
pub(super) fn idmapped(path: &Path, userns: &OwnedFd, readonly: bool) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).expect("paths have no NUL");
    // SAFETY: raw syscalls with a valid path and a live struct.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        ) as libc::c_int;
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("open_tree: {e}")));
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut attr: libc::mount_attr = std::mem::zeroed();
        attr.attr_set = libc::MOUNT_ATTR_IDMAP;
        if readonly {
            attr.attr_set |=
                libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
        }
        attr.userns_fd = userns.as_raw_fd() as u64;
        let rc = libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        );
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot make an id-mapped mount of it ({e}; needs Linux 5.12 or later and a \
                     file system that supports id-mapped mounts, such as ext4, xfs, btrfs or tmpfs)"
                ),
            ));
        }
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges() {
        let text = "alice:100000:65536\nbob:165536:1000\n1001:200000:65536\n";
        assert_eq!(
            subordinate_range(text, &["alice"], RANGE - 1),
            Some(100_000)
        );
        assert_eq!(subordinate_range(text, &["bob"], RANGE - 1), None);
        assert_eq!(
            subordinate_range(text, &["1001", "carol"], RANGE - 1),
            Some(200_000)
        );
    }

    #[test]
    fn contiguous_ids_from_zero() {
        let e = |inside, outside, count| Extent {
            inside,
            outside,
            count,
        };
        assert_eq!(
            mapped_from_zero(&[e(0, 1000, 1), e(1, 100_000, 65536)]),
            RANGE
        );
        assert_eq!(mapped_from_zero(&[e(0, 1000, 1)]), 1);
        assert_eq!(mapped_from_zero(&[e(1, 1000, 5)]), 0);
        assert!(is_initial(&[e(0, 0, u32::MAX)]));
        assert_eq!(
            identity_from_zero(&[e(0, 1000, 1), e(1, 100_000, 65536)]),
            [e(0, 0, 1), e(1, 1, 65535)]
        );
    }
}
