//! The forked side of [`super::run`]: namespaces, the extra fork that makes
//! the command pid 1, and the intermediate process that mirrors its status.
//! Everything here runs between `fork` and `exec` of a multi-threaded
//! program, so it only makes raw system calls and never allocates.

use std::io;

use super::setup;

/// The `pre_exec` hook: runs in the forked child, before `exec`. Only raw
/// system calls: the parent is multi-threaded.
pub(super) fn child(
    userns: bool,
    uid_map: &str,
    gid_map: &str,
    steps: &[setup::Step],
    report_fd: libc::c_int,
) -> io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY (all blocks): plain system calls on valid, NUL-terminated or
    // length-delimited buffers; after fork only this thread exists.
    unsafe {
        // Die with the thread that spawned us (also covers a caller's crash).
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        let mut flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWNET;
        if userns {
            flags |= libc::CLONE_NEWUSER;
        }
        check(libc::unshare(flags))?;
        if userns {
            write_file(c"/proc/self/uid_map", uid_map.as_bytes())?;
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/gid_map", gid_map.as_bytes())?;
        }
        let pid = libc::fork();
        check(pid)?;
        if pid > 0 {
            intermediate(pid);
        }
        // pid 1 of the new namespace.
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        setup::enter(steps, report_fd)?;
        libc::umask(0o022);
        check(libc::setsid())?;
    }
    Ok(())
}

/// Waits for pid 1 of the sandbox and leaves with its status. Never returns.
///
/// # Safety
/// Only for the forked child in [`child`].
unsafe fn intermediate(pid: libc::pid_t) -> ! {
    // SAFETY: raw system calls in a single-threaded child.
    unsafe {
        // Release the exec-status pipe (and every other inherited fd), so
        // `spawn` returns once pid 1 has exec'ed, not when it exits.
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0 {
            if *libc::__errno_location() != libc::EINTR {
                libc::_exit(127);
            }
        }
        if libc::WIFSIGNALED(status) {
            // Mirror the signal (without a core dump of this process).
            let sig = libc::WTERMSIG(status);
            libc::prctl(libc::PR_SET_DUMPABLE, 0);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(libc::WEXITSTATUS(status));
    }
}

fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: valid path and buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n != data.len() as isize {
            return Err(err);
        }
    }
    Ok(())
}
