//! Rootless `build` and `verify`: the whole command re-run inside a user
//! namespace mapped from the caller's `/etc/subuid` and `/etc/subgid` range.
//!
//! A non-root caller cannot give files in-image owners on the host (`chown`
//! to another user needs a capability), nor read back what a sandboxed
//! `chown` did (the file then belongs to a subordinate id). So, as `podman
//! unshare` and mmdebstrap's unshare mode do, [`reexec`] runs this very
//! command again as a child in a new user namespace where the caller is
//! uid 0 and ids 1–65535 are the first 65535 of its range (mapped by
//! `newuidmap`/`newgidmap`, package `uidmap`). There, everything that
//! touches an image tree (unpack with owners, dpkg database, scripts in the
//! nested sandboxes, normalisation, the tar writer, the tools and disk
//! trees) sees and records in-image ids, as a root build does, and the two
//! give the same bytes. Files the child writes for the caller (outputs,
//! caches, store) are owned by ns uid 0, which is the caller on the host.
//!
//! The parent only waits and passes the exit status on. Without a
//! subordinate range (or `newuidmap`) the command runs as before, in
//! process, with a warning: file owners inside the image are then lost.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

use crate::sandbox::idmap::IdMap;

/// Set in the re-run child, so that it does not re-run itself again.
pub const CHILD_ENV: &str = "IMGBUILD_USERNS_CHILD";

/// For a non-root caller in the initial user namespace with a subordinate
/// id range: runs this process's command line again in the mapped user
/// namespace and returns its exit status. `None`: run in process (root,
/// already in a user namespace, or no range — then with a warning).
pub fn reexec(quiet: bool) -> Result<Option<ExitCode>> {
    if rustix::process::geteuid().is_root() || std::env::var_os(CHILD_ENV).is_some() {
        return Ok(None);
    }
    let initial = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(false);
    if !initial {
        return Ok(None);
    }
    let map = IdMap::for_caller().context("reading the id maps")?;
    if !map.is_subordinate() {
        if !quiet {
            eprintln!(
                "warning: no subordinate id range for uid {} in /etc/subuid and /etc/subgid \
                 (or no newuidmap): building without one, so files keep no owner but the \
                 caller; see docs/sandbox.md",
                rustix::process::geteuid().as_raw()
            );
        }
        return Ok(None);
    }
    let exe = std::env::current_exe().context("finding this program")?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (go_r, go_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let fds = [
        ready_r.as_raw_fd(),
        ready_w.as_raw_fd(),
        go_r.as_raw_fd(),
        go_w.as_raw_fd(),
    ];
    let mut cmd = Command::new(&exe);
    cmd.args(&args).env(CHILD_ENV, "1");
    // SAFETY: raw system calls only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let [ready_r, ready_w, go_r, go_w] = fds;
            libc::close(ready_r);
            libc::close(go_w);
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(io::Error::last_os_error());
            }
            let pid = libc::getpid().to_ne_bytes();
            libc::write(ready_w, pid.as_ptr().cast(), pid.len());
            let mut ok = 0u8;
            if libc::read(go_r, (&mut ok as *mut u8).cast(), 1) != 1 || ok != 1 {
                return Err(io::Error::other("the id maps were not written"));
            }
            Ok(())
        });
    }
    // The maps are written from here while `spawn` waits for the exec.
    let mapper = std::thread::spawn(move || -> io::Result<()> {
        let mut pid = [0u8; 4];
        let n = rustix::io::read(&ready_r, &mut pid)?;
        if n != 4 {
            return Err(io::Error::other("the child did not start"));
        }
        map.write(i32::from_ne_bytes(pid))?;
        let mut go = std::fs::File::from(go_w);
        go.write_all(&[1])
    });
    let spawned = cmd.spawn();
    drop(ready_w);
    drop(go_r);
    drop(cmd);
    let mapped = mapper.join().expect("mapper thread");
    let mut child = match (spawned, mapped) {
        (Ok(child), _) => child,
        (Err(e), Err(m)) => {
            return Err(anyhow::anyhow!(
                "running {} in a user namespace: {e} (mapping ids: {m})",
                exe.display()
            ));
        }
        (Err(e), Ok(())) => {
            return Err(e)
                .with_context(|| format!("running {} in a user namespace", exe.display()));
        }
    };
    let status = child.wait().context("waiting for the namespaced build")?;
    Ok(Some(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }))
}
