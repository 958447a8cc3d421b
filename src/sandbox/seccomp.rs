//! The sandbox's system call filter: the denials of the OCI runtimes'
//! default seccomp profile that matter for a build (see `docs/sandbox.md`).
//!
//! Every denied call returns `EPERM` (not a kill), so a maintainer script
//! sees an ordinary error and its own error handling runs. Two filters are
//! stacked (the kernel runs both; the stricter answer wins):
//! 1. built with `seccompiler` (rust-vmm's BPF compiler, used by
//!    Firecracker): a wrong architecture kills the process (an i386 or x32
//!    binary would otherwise reach syscalls under other numbers), the
//!    listed calls give `EPERM`, `unshare`/`clone` with `CLONE_NEWUSER`
//!    give `EPERM` (a nested user namespace would hand the command a fresh
//!    set of capabilities to probe the kernel with);
//! 2. hand-written, four instructions: `clone3` gives `ENOSYS` (its flags
//!    are in memory, out of a filter's reach; C libraries fall back to
//!    `clone`, which the first filter checks), and on x86-64 any call with
//!    the x32 bit set gives `ENOSYS` as well.
//!
//! The programs are compiled in the parent ([`Filters::new`]) and installed
//! by the child right before `exec` ([`Filters::install`]) with raw system
//! calls: that is after the sandbox's own mounts, so `mount` and friends
//! are refused to the command only.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

/// System calls refused with `EPERM`, whatever their arguments.
const DENIED: &[(&str, libc::c_long)] = &[
    // Reading host files through an inode handle (the "shocker" escape).
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    // The kernel itself.
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("syslog", libc::SYS_syslog),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    // Keys are not namespaced.
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    // The clock is not namespaced either.
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    // Other processes' memory.
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    // Mounts: the sandbox's own are made before the filter is installed.
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    // Entering other namespaces.
    ("setns", libc::SYS_setns),
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
];

/// The names of the calls refused whatever their arguments (for the docs and tests).
pub fn denied_names() -> Vec<&'static str> {
    DENIED.iter().map(|(name, _)| *name).collect()
}

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;
#[cfg(target_arch = "riscv64")]
const ARCH: TargetArch = TargetArch::riscv64;

/// The compiled filters, ready for [`Filters::install`].
#[derive(Debug, Clone)]
pub(super) struct Filters {
    main: BpfProgram,
    guard: Vec<sock_filter>,
}

fn compile_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("compiling the seccomp filter: {e}"))
}

impl Filters {
    /// Compiles both filters.
    pub(super) fn new() -> io::Result<Filters> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            DENIED.iter().map(|&(_, nr)| (nr, Vec::new())).collect();
        let newuser = || -> io::Result<Vec<SeccompRule>> {
            let flag = libc::CLONE_NEWUSER as u64;
            let cond = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .map_err(compile_error)?;
            Ok(vec![SeccompRule::new(vec![cond]).map_err(compile_error)?])
        };
        rules.insert(libc::SYS_unshare, newuser()?);
        rules.insert(libc::SYS_clone, newuser()?);
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            ARCH,
        )
        .map_err(compile_error)?;
        let main = BpfProgram::try_from(filter).map_err(compile_error)?;
        Ok(Filters {
            main,
            guard: guard_program(),
        })
    }

    /// `PR_SET_NO_NEW_PRIVS`, then both filters. Raw system calls only: runs
    /// in the forked child of a multi-threaded parent.
    pub(super) fn install(&self) -> io::Result<()> {
        // SAFETY: prctl and seccomp with pointers to live programs.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            for prog in [&self.guard[..], &self.main[..]] {
                let fprog = libc::sock_fprog {
                    len: prog.len() as libc::c_ushort,
                    filter: prog.as_ptr() as *mut libc::sock_filter,
                };
                let rc = libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0,
                    &fprog as *const libc::sock_fprog,
                );
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

/// `BPF_LD | BPF_W | BPF_ABS` (0x00 | 0x00 | 0x20).
const BPF_LD_W_ABS: u16 = 0x20;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
/// `BPF_JMP | BPF_JSET | BPF_K`.
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
/// `BPF_RET | BPF_K`.
const BPF_RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, nr)`.
const NR_OFFSET: u32 = 0;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// `clone3` → ENOSYS; on x86-64 the x32 bit → ENOSYS; else allow. The
/// architecture is checked by the main filter.
fn guard_program() -> Vec<sock_filter> {
    let enosys = libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32);
    let x32_bit = if cfg!(target_arch = "x86_64") {
        X32_SYSCALL_BIT
    } else {
        0
    };
    vec![
        insn(BPF_LD_W_ABS, 0, 0, NR_OFFSET),
        insn(BPF_JMP_JEQ_K, 2, 0, libc::SYS_clone3 as u32),
        insn(BPF_JMP_JSET_K, 1, 0, x32_bit),
        insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        insn(BPF_RET_K, 0, 0, enosys),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_and_cover_the_escapes() {
        let f = Filters::new().unwrap();
        assert!(!f.main.is_empty() && f.main.len() < 4096);
        for name in ["open_by_handle_at", "mount", "keyctl", "bpf", "ptrace"] {
            assert!(denied_names().contains(&name), "{name}");
        }
        // The guard jumps land inside the program.
        for (i, ins) in f.guard.iter().enumerate() {
            assert!(i + 1 + (ins.jt as usize) < f.guard.len() || ins.code == BPF_RET_K);
            assert!(i + 1 + (ins.jf as usize) < f.guard.len() || ins.code == BPF_RET_K);
        }
    }
}
