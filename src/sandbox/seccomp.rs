//! The sandbox's system call filter: the denials of the OCI runtimes'
//! default seccomp profile that matter for a build (see `docs/sandbox.md`).
//!
//! Every denied call returns `EPERM` (not a kill), so a maintainer script
//! sees an ordinary error and its own error handling runs. Two filters are
//! stacked (the kernel runs both; the stricter answer wins):
//! 1. built with `seccompiler` (rust-vmm's BPF compiler, used by
//!    Firecracker) for the native architecture: the listed calls give
//!    `EPERM`, `unshare`/`clone` with `CLONE_NEWUSER` give `EPERM` (a nested
//!    user namespace would hand the command a fresh set of capabilities to
//!    probe the kernel with), and any architecture but the native one and,
//!    on x86-64, i386 kills the process (it would reach system calls under
//!    other numbers). seccompiler compiles for one architecture, so a
//!    three-instruction prefix lets i386 calls past it, to the second filter;
//! 2. hand-written ([`guard_program`]): for native calls, `clone3` gives
//!    `ENOSYS` (its flags are in memory, out of a filter's reach; C
//!    libraries fall back to `clone`, which the first filter checks), and on
//!    x86-64 any call with the x32 bit set gives `ENOSYS` as well (what a
//!    kernel without x32 says). For i386 calls (x86-64 only: multiarch images
//!    run i386 maintainer scripts and binaries) it applies the same policy
//!    under the i386 numbers ([`DENIED_I386`]): `EPERM` for the same list,
//!    `clone`/`unshare` with `CLONE_NEWUSER`, and `ENOSYS` for `clone3`.
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

/// The same denials under the i386 system call numbers (from the kernel's
/// `arch/x86/entry/syscalls/syscall_32.tbl`; a unit test compares them with
/// `<asm/unistd_32.h>`). i386 has no `kexec_file_load`, but extra entry
/// points to the same kernel functions: `umount`, `stime`, the 64-bit-time
/// `clock_settime64`/`clock_adjtime64`, and `vm86`/`vm86old`.
#[cfg(target_arch = "x86_64")]
pub const DENIED_I386: &[(&str, u32)] = &[
    ("open_by_handle_at", 342),
    ("name_to_handle_at", 341),
    ("kexec_load", 283),
    ("init_module", 128),
    ("finit_module", 350),
    ("delete_module", 129),
    ("bpf", 357),
    ("perf_event_open", 336),
    ("userfaultfd", 374),
    ("reboot", 88),
    ("swapon", 87),
    ("swapoff", 115),
    ("syslog", 103),
    ("acct", 51),
    ("quotactl", 131),
    ("lookup_dcookie", 253),
    ("keyctl", 288),
    ("add_key", 286),
    ("request_key", 287),
    ("settimeofday", 79),
    ("stime", 25),
    ("clock_settime", 264),
    ("clock_settime64", 404),
    ("clock_adjtime", 343),
    ("clock_adjtime64", 405),
    ("ptrace", 26),
    ("process_vm_readv", 347),
    ("process_vm_writev", 348),
    ("mount", 21),
    ("umount", 22),
    ("umount2", 52),
    ("pivot_root", 217),
    ("open_tree", 428),
    ("move_mount", 429),
    ("fsopen", 430),
    ("fsconfig", 431),
    ("fsmount", 432),
    ("fspick", 433),
    ("mount_setattr", 442),
    ("setns", 346),
    ("iopl", 110),
    ("ioperm", 101),
    ("vm86", 166),
    ("vm86old", 113),
];

/// i386 `clone`, `unshare` and `clone3`.
#[cfg(target_arch = "x86_64")]
const I386_CLONE: u32 = 120;
#[cfg(target_arch = "x86_64")]
const I386_UNSHARE: u32 = 310;
#[cfg(target_arch = "x86_64")]
const I386_CLONE3: u32 = 435;
/// `AUDIT_ARCH_I386` (`EM_386 | __AUDIT_ARCH_LE`).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

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
        let native = BpfProgram::try_from(filter).map_err(compile_error)?;
        let mut main = i386_bypass();
        main.extend(native);
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
/// `BPF_JMP | BPF_JA`.
const BPF_JMP_JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
/// `BPF_JMP | BPF_JSET | BPF_K`.
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
/// `BPF_RET | BPF_K`.
const BPF_RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, nr)`.
const NR_OFFSET: u32 = 0;
/// `offsetof(struct seccomp_data, arch)`.
const ARCH_OFFSET: u32 = 4;
/// `offsetof(struct seccomp_data, args[0])`: its low 32 bits (little endian).
#[cfg(target_arch = "x86_64")]
const ARG0_LOW_OFFSET: u32 = 16;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The prefix of the seccompiler program: i386 calls are allowed by it
/// (the second filter judges them), everything else goes on to its own
/// architecture check. Empty where there is no i386 compat mode.
fn i386_bypass() -> Vec<sock_filter> {
    #[cfg(target_arch = "x86_64")]
    {
        vec![
            insn(BPF_LD_W_ABS, 0, 0, ARCH_OFFSET),
            insn(BPF_JMP_JEQ_K, 0, 1, AUDIT_ARCH_I386),
            insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        ]
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

/// Calls that only ask for written data to reach the disk: they return 0
/// at once, as under `systemd-nspawn --suppress-sync` or eatmydata. A build
/// tree is scratch (thrown away on any failure, and imgbuild syncs the
/// artifacts it keeps itself), and dpkg alone syncs ~1,500 times per image.
/// Native calls only: an i386 program's syncs still run.
const SUPPRESSED_SYNC: &[libc::c_long] = &[
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_syncfs,
    libc::SYS_sync,
    libc::SYS_sync_file_range,
];

/// The native part of the second filter: `clone3` → ENOSYS; on x86-64 the
/// x32 bit → ENOSYS; the [`SUPPRESSED_SYNC`] calls → 0 without running
/// them; else allow.
fn native_guard() -> Vec<sock_filter> {
    let enosys = libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32);
    // ERRNO with errno 0: the call is not run and returns 0.
    let success = libc::SECCOMP_RET_ERRNO;
    let x32_bit = if cfg!(target_arch = "x86_64") {
        X32_SYSCALL_BIT
    } else {
        0
    };
    let n = SUPPRESSED_SYNC.len() as u8;
    let mut p = vec![
        insn(BPF_LD_W_ABS, 0, 0, NR_OFFSET),
        insn(BPF_JMP_JEQ_K, 2 + n, 0, libc::SYS_clone3 as u32),
        insn(BPF_JMP_JSET_K, 1 + n, 0, x32_bit),
    ];
    for (i, &nr) in SUPPRESSED_SYNC.iter().enumerate() {
        p.push(insn(BPF_JMP_JEQ_K, 1 + n - i as u8, 0, nr as u32));
    }
    p.extend([
        insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        insn(BPF_RET_K, 0, 0, enosys),
        insn(BPF_RET_K, 0, 0, success),
    ]);
    p
}

/// The i386 policy: [`DENIED_I386`] → EPERM, `clone`/`unshare` with
/// `CLONE_NEWUSER` → EPERM, `clone3` → ENOSYS, else allow. Each test is
/// followed by its own return, so no jump is longer than four instructions.
#[cfg(target_arch = "x86_64")]
fn i386_policy() -> Vec<sock_filter> {
    let eperm = libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32);
    let enosys = libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32);
    let allow = libc::SECCOMP_RET_ALLOW;
    let mut p = vec![insn(BPF_LD_W_ABS, 0, 0, NR_OFFSET)];
    for &(_, nr) in DENIED_I386 {
        p.push(insn(BPF_JMP_JEQ_K, 0, 1, nr));
        p.push(insn(BPF_RET_K, 0, 0, eperm));
    }
    p.push(insn(BPF_JMP_JEQ_K, 0, 1, I386_CLONE3));
    p.push(insn(BPF_RET_K, 0, 0, enosys));
    // The flags are the first argument of both (i386 `clone` takes flags
    // first too); CLONE_NEWUSER is in their low 32 bits.
    p.push(insn(BPF_JMP_JEQ_K, 1, 0, I386_CLONE));
    p.push(insn(BPF_JMP_JEQ_K, 0, 4, I386_UNSHARE));
    p.push(insn(BPF_LD_W_ABS, 0, 0, ARG0_LOW_OFFSET));
    p.push(insn(BPF_JMP_JSET_K, 0, 1, libc::CLONE_NEWUSER as u32));
    p.push(insn(BPF_RET_K, 0, 0, eperm));
    p.push(insn(BPF_RET_K, 0, 0, allow));
    p.push(insn(BPF_RET_K, 0, 0, allow));
    p
}

/// The second filter: i386 calls to [`i386_policy`] (x86-64), the rest to
/// [`native_guard`] (other architectures are killed by the first filter).
fn guard_program() -> Vec<sock_filter> {
    #[cfg(target_arch = "x86_64")]
    {
        let i386 = i386_policy();
        let mut p = vec![
            insn(BPF_LD_W_ABS, 0, 0, ARCH_OFFSET),
            insn(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH_I386),
            insn(BPF_JMP_JA, 0, 0, i386.len() as u32),
        ];
        p.extend(i386);
        p.extend(native_guard());
        p
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        native_guard()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a program of the instructions used here on (arch, nr, arg0).
    fn eval(prog: &[sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let (mut pc, mut acc) = (0usize, 0u32);
        for _ in 0..prog.len() {
            let i = &prog[pc];
            let k = i.k as usize;
            let (jump, next) = match i.code {
                BPF_LD_W_ABS => {
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                    (0, 0)
                }
                BPF_JMP_JA => (i.k as usize, 0),
                BPF_JMP_JEQ_K => (0, if acc == i.k { i.jt } else { i.jf } as usize),
                BPF_JMP_JSET_K => (0, if acc & i.k != 0 { i.jt } else { i.jf } as usize),
                BPF_RET_K => return i.k,
                c => panic!("opcode {c:#x} at {pc}"),
            };
            pc += 1 + jump + next;
            assert!(pc < prog.len(), "ran off the end");
        }
        panic!("no return");
    }

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
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        let native = ARCH.into_audit();
        assert_eq!(eval(&f.guard, native, libc::SYS_clone3 as u32, 0), enosys);
        assert_eq!(
            eval(&f.guard, native, libc::SYS_getpid as u32, 0),
            libc::SECCOMP_RET_ALLOW
        );
        for &nr in SUPPRESSED_SYNC {
            assert_eq!(
                eval(&f.guard, native, nr as u32, 0),
                libc::SECCOMP_RET_ERRNO
            );
        }
        assert_eq!(
            eval(&f.guard, native, libc::SYS_write as u32, 0),
            libc::SECCOMP_RET_ALLOW
        );
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            eval(
                &f.guard,
                native,
                X32_SYSCALL_BIT | libc::SYS_getpid as u32,
                0
            ),
            enosys
        );
    }

    trait Audit {
        fn into_audit(self) -> u32;
    }
    impl Audit for TargetArch {
        fn into_audit(self) -> u32 {
            match self {
                TargetArch::x86_64 => 0xC000_003E,
                TargetArch::aarch64 => 0xC000_00B7,
                TargetArch::riscv64 => 0xC000_00F3,
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn i386_calls_meet_the_same_policy_under_their_own_numbers() {
        let f = Filters::new().unwrap();
        // The seccompiler program lets i386 through to the guard, and only i386.
        assert_eq!(
            eval(&f.main[..3], AUDIT_ARCH_I386, 342, 0),
            libc::SECCOMP_RET_ALLOW
        );
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        let allow = libc::SECCOMP_RET_ALLOW;
        for &(name, nr) in DENIED_I386 {
            assert_eq!(eval(&f.guard, AUDIT_ARCH_I386, nr, 0), eperm, "{name}");
        }
        let newuser = libc::CLONE_NEWUSER as u64;
        for (nr, arg0, want) in [
            (20, 0, allow),                            // getpid
            (4, 0, allow),                             // write
            (I386_CLONE, libc::SIGCHLD as u64, allow), // fork-like clone
            (I386_CLONE, newuser | libc::SIGCHLD as u64, eperm),
            (I386_UNSHARE, libc::CLONE_NEWNS as u64, allow),
            (I386_UNSHARE, newuser, eperm),
            (I386_CLONE3, 0, enosys),
        ] {
            assert_eq!(
                eval(&f.guard, AUDIT_ARCH_I386, nr, arg0),
                want,
                "{nr} {arg0:#x}"
            );
        }
        // Every native denial has its i386 twin (i386 has no kexec_file_load).
        let i386: Vec<&str> = DENIED_I386.iter().map(|(n, _)| *n).collect();
        for name in denied_names() {
            assert!(
                name == "kexec_file_load" || i386.contains(&name),
                "{name} is not denied to i386"
            );
        }
    }

    /// The i386 numbers against the kernel's own header, where installed
    /// (package linux-libc-dev, which gcc pulls in).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn i386_numbers_match_asm_unistd_32() {
        let header = "/usr/include/x86_64-linux-gnu/asm/unistd_32.h";
        let Ok(text) = std::fs::read_to_string(header) else {
            eprintln!("skipped: no {header} (package linux-libc-dev)");
            return;
        };
        let defined: BTreeMap<&str, u32> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next()? == "#define").then_some(())?;
                let name = w.next()?.strip_prefix("__NR_")?;
                Some((name, w.next()?.parse().ok()?))
            })
            .collect();
        let extra = [
            ("clone", I386_CLONE),
            ("unshare", I386_UNSHARE),
            ("clone3", I386_CLONE3),
        ];
        for &(name, nr) in DENIED_I386.iter().chain(extra.iter()) {
            assert_eq!(defined.get(name), Some(&nr), "{name} in {header}");
        }
    }
}
