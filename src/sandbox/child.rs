//! The forked side of [`super::run`]: joining the user namespace, the other
//! namespaces, the extra fork that makes the command pid 1, the intermediate
//! process that mirrors its status, and the syscall filter.
//! Everything here runs between `fork` and `exec` of a multi-threaded
//! program, so it only makes raw system calls and never allocates.

use std::io;

use super::seccomp::Filters;
use super::setup;

/// What the child needs, prepared by the parent.
pub(super) struct ChildPlan<'a> {
    /// The root directory on the host, entered first (see `setup::Step::AttachRoot`).
    pub root: &'a std::ffi::CStr,
    /// The user namespace to join ([`super::idmap::IdMap::create`]).
    pub userns: libc::c_int,
    /// Whether `setgroups` works inside (a map of more than one id).
    pub setgroups: bool,
    /// The mount steps.
    pub steps: &'a [setup::Step],
    /// Where a failing step's index is reported.
    pub report_fd: libc::c_int,
    /// The syscall filter, installed last.
    pub filters: &'a Filters,
}

/// The `pre_exec` hook: runs in the forked child, before `exec`. Only raw
/// system calls: the parent is multi-threaded.
pub(super) fn child(plan: &ChildPlan<'_>) -> io::Result<()> {
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
        // While the caller's credentials can still walk there.
        check(libc::chdir(plan.root.as_ptr()))?;
        // Into the user namespace first: the namespaces made below belong to
        // it, and the process holds capabilities only there.
        check(libc::setns(plan.userns, libc::CLONE_NEWUSER))?;
        check(libc::setresgid(0, 0, 0))?;
        if plan.setgroups {
            // Best effort: `newgidmap` may have denied setgroups.
            libc::setgroups(0, std::ptr::null());
        }
        check(libc::setresuid(0, 0, 0))?;
        // After the credential change, which clears it: die with the
        // thread that spawned us (also covers a caller's crash).
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        check(libc::unshare(
            libc::CLONE_NEWNS
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWNET,
        ))?;
        let pid = libc::fork();
        check(pid)?;
        if pid > 0 {
            intermediate(pid);
        }
        // pid 1 of the new namespace.
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        setup::enter(plan.steps, plan.report_fd)?;
        libc::umask(0o022);
        check(libc::setsid())?;
    }
    // Last: no_new_privs and the filter (which refuses mount from here on).
    plan.filters.install()
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
