//! The sandbox's seccomp policy: a default-deny allowlist (blocked calls fail with EPERM),
//! argument checks for `clone` (no namespace flags) and `socket` (only AF_UNIX, AF_INET,
//! AF_INET6), and a second filter that makes `clone3` fail with ENOSYS so that the C library
//! falls back to `clone`, whose flags the first filter can inspect. The architecture is checked
//! first (other ABIs, such as i386 through `int 0x80`, kill the process); x32 numbers are not in
//! the allowlist. The allowlist is compiled here into a compact search tree (see
//! [`allowlist_program`]); built once per helper (or once in the zygote), installed last.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, sock_filter};
#[cfg(test)]
use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

/// Namespace flags that `clone` may never carry inside the sandbox.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// Socket families code may open: local sockets and IP (which only reaches loopback inside).
const SOCKET_FAMILIES: [i32; 3] = [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6];

/// System calls allowed without conditions. Everything absent is refused with EPERM: among
/// them every namespace, mount, module, kexec, reboot, swap, keyring, bpf, perf, ptrace,
/// process_vm, userfaultfd, io_uring, handle-based open, clock-setting, hostname and
/// personality call.
#[cfg(target_arch = "x86_64")]
const ALLOWED: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_open,
    libc::SYS_close,
    libc::SYS_stat,
    libc::SYS_fstat,
    libc::SYS_lstat,
    libc::SYS_poll,
    libc::SYS_lseek,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_munmap,
    libc::SYS_brk,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_ioctl,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_access,
    libc::SYS_pipe,
    libc::SYS_select,
    libc::SYS_sched_yield,
    libc::SYS_mremap,
    libc::SYS_msync,
    libc::SYS_mincore,
    libc::SYS_madvise,
    libc::SYS_shmget,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_dup,
    libc::SYS_dup2,
    libc::SYS_pause,
    libc::SYS_nanosleep,
    libc::SYS_getitimer,
    libc::SYS_alarm,
    libc::SYS_setitimer,
    libc::SYS_getpid,
    libc::SYS_sendfile,
    libc::SYS_connect,
    libc::SYS_accept,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_shutdown,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_socketpair,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_execve,
    libc::SYS_exit,
    libc::SYS_wait4,
    libc::SYS_kill,
    libc::SYS_uname,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semctl,
    libc::SYS_shmdt,
    libc::SYS_msgget,
    libc::SYS_msgsnd,
    libc::SYS_msgrcv,
    libc::SYS_msgctl,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_truncate,
    libc::SYS_ftruncate,
    libc::SYS_getdents,
    libc::SYS_getcwd,
    libc::SYS_chdir,
    libc::SYS_fchdir,
    libc::SYS_rename,
    libc::SYS_mkdir,
    libc::SYS_rmdir,
    libc::SYS_creat,
    libc::SYS_link,
    libc::SYS_unlink,
    libc::SYS_symlink,
    libc::SYS_readlink,
    libc::SYS_chmod,
    libc::SYS_fchmod,
    libc::SYS_chown,
    libc::SYS_fchown,
    libc::SYS_lchown,
    libc::SYS_umask,
    libc::SYS_gettimeofday,
    libc::SYS_getrlimit,
    libc::SYS_getrusage,
    libc::SYS_sysinfo,
    libc::SYS_times,
    libc::SYS_getuid,
    libc::SYS_getgid,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_geteuid,
    libc::SYS_getegid,
    libc::SYS_setpgid,
    libc::SYS_getppid,
    libc::SYS_getpgrp,
    libc::SYS_setsid,
    libc::SYS_setreuid,
    libc::SYS_setregid,
    libc::SYS_getgroups,
    libc::SYS_setgroups,
    libc::SYS_setresuid,
    libc::SYS_getresuid,
    libc::SYS_setresgid,
    libc::SYS_getresgid,
    libc::SYS_getpgid,
    libc::SYS_setfsuid,
    libc::SYS_setfsgid,
    libc::SYS_getsid,
    libc::SYS_capget,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_sigsuspend,
    libc::SYS_sigaltstack,
    libc::SYS_utime,
    libc::SYS_mknod,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_getpriority,
    libc::SYS_setpriority,
    libc::SYS_sched_setparam,
    libc::SYS_sched_getparam,
    libc::SYS_sched_setscheduler,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_sched_rr_get_interval,
    libc::SYS_mlock,
    libc::SYS_munlock,
    libc::SYS_mlockall,
    libc::SYS_munlockall,
    libc::SYS_prctl,
    libc::SYS_arch_prctl,
    libc::SYS_setrlimit,
    libc::SYS_sync,
    libc::SYS_gettid,
    libc::SYS_readahead,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    libc::SYS_tkill,
    libc::SYS_time,
    libc::SYS_futex,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_getaffinity,
    libc::SYS_io_setup,
    libc::SYS_io_destroy,
    libc::SYS_io_getevents,
    libc::SYS_io_submit,
    libc::SYS_io_cancel,
    libc::SYS_epoll_create,
    libc::SYS_getdents64,
    libc::SYS_set_tid_address,
    libc::SYS_restart_syscall,
    libc::SYS_semtimedop,
    libc::SYS_fadvise64,
    libc::SYS_timer_create,
    libc::SYS_timer_settime,
    libc::SYS_timer_gettime,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_delete,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_exit_group,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_ctl,
    libc::SYS_tgkill,
    libc::SYS_utimes,
    libc::SYS_get_mempolicy,
    libc::SYS_mq_open,
    libc::SYS_mq_unlink,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_timedreceive,
    libc::SYS_mq_notify,
    libc::SYS_mq_getsetattr,
    libc::SYS_waitid,
    libc::SYS_ioprio_get,
    libc::SYS_inotify_init,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    libc::SYS_openat,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_fchownat,
    libc::SYS_futimesat,
    libc::SYS_newfstatat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_readlinkat,
    libc::SYS_fchmodat,
    libc::SYS_faccessat,
    libc::SYS_pselect6,
    libc::SYS_ppoll,
    libc::SYS_set_robust_list,
    libc::SYS_get_robust_list,
    libc::SYS_splice,
    libc::SYS_tee,
    libc::SYS_sync_file_range,
    libc::SYS_vmsplice,
    libc::SYS_utimensat,
    libc::SYS_epoll_pwait,
    libc::SYS_signalfd,
    libc::SYS_timerfd_create,
    libc::SYS_eventfd,
    libc::SYS_fallocate,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_accept4,
    libc::SYS_signalfd4,
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_inotify_init1,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_recvmmsg,
    libc::SYS_prlimit64,
    libc::SYS_syncfs,
    libc::SYS_sendmmsg,
    libc::SYS_getcpu,
    libc::SYS_sched_setattr,
    libc::SYS_sched_getattr,
    libc::SYS_renameat2,
    libc::SYS_seccomp,
    libc::SYS_getrandom,
    libc::SYS_memfd_create,
    libc::SYS_execveat,
    libc::SYS_membarrier,
    libc::SYS_mlock2,
    libc::SYS_copy_file_range,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_pkey_mprotect,
    libc::SYS_pkey_alloc,
    libc::SYS_pkey_free,
    libc::SYS_statx,
    libc::SYS_rseq,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pidfd_open,
    libc::SYS_close_range,
    libc::SYS_openat2,
    libc::SYS_pidfd_getfd,
    libc::SYS_faccessat2,
    libc::SYS_epoll_pwait2,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_restrict_self,
    libc::SYS_futex_waitv,
    libc::SYS_fchmodat2,
];

/// The compiled filters, in installation order.
#[derive(Debug, Clone)]
pub struct Policy {
    filters: Vec<BpfProgram>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the seccomp filter: {0}")]
pub struct PolicyError(String);

impl Policy {
    /// Compiles the policy for this architecture.
    #[cfg(target_arch = "x86_64")]
    pub fn build() -> Result<Policy, PolicyError> {
        let fail = |e: seccompiler::BackendError| PolicyError(e.to_string());
        let clone3 = SeccompFilter::new(
            [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            target_arch()?,
        )
        .map_err(fail)?;
        Ok(Policy {
            filters: vec![
                allowlist_program(),
                BpfProgram::try_from(clone3).map_err(fail)?,
            ],
        })
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn build() -> Result<Policy, PolicyError> {
        Err(PolicyError(format!(
            "the seccomp allowlist is written for x86_64; this is {}",
            std::env::consts::ARCH
        )))
    }

    /// Installs the filters on the calling thread. Needs `no_new_privs` (set before).
    pub fn install(&self) -> std::io::Result<()> {
        for filter in &self.filters {
            seccompiler::apply_filter(filter)
                .map_err(|e| std::io::Error::other(format!("seccomp: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(target_arch = "x86_64")]
fn target_arch() -> Result<seccompiler::TargetArch, PolicyError> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|e| PolicyError(format!("{e:?}")))
}

/// What the allowlist decides for one system call number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Deny,
    /// `clone`: allowed without namespace flags.
    Clone,
    /// `socket`: allowed for the permitted families.
    Socket,
}

// Classic BPF opcodes and the `seccomp_data` offsets the filter reads (x86_64, little-endian:
// the low half of argument 0 is at 16).
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGE_K: u16 = 0x35;
const JMP_JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARG0_LOW: u32 = 16;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_DENY: u32 = libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA);

fn op(code: u16, k: u32) -> sock_filter {
    jump(code, k, 0, 0)
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The allowlist as a balanced binary search over the syscall numbers, merged into ranges of
/// equal verdict: about 200 instructions where a linear chain (seccompiler's) takes 1,400.
/// The kernel checks and compiles the filter at every sandbox's start, and runs it at every
/// system call, so its size is paid per run. `tests::the_compact_allowlist_decides_as_the_reference`
/// checks it against seccompiler's compilation of the same rules on every number and argument
/// class.
#[cfg(target_arch = "x86_64")]
fn allowlist_program() -> BpfProgram {
    let mut verdicts: BTreeMap<u32, Verdict> = ALLOWED
        .iter()
        .map(|&nr| (nr as u32, Verdict::Allow))
        .collect();
    verdicts.insert(libc::SYS_clone as u32, Verdict::Clone);
    verdicts.insert(libc::SYS_socket as u32, Verdict::Socket);
    // Ranges [start, next start) covering every u32, each with one verdict.
    let mut ranges: Vec<(u32, Verdict)> = vec![(0, Verdict::Deny)];
    let mut push = |start: u32, verdict: Verdict| {
        if let Some(last) = ranges.last_mut() {
            if last.0 == start {
                last.1 = verdict;
                return;
            }
            if last.1 == verdict {
                return;
            }
        }
        ranges.push((start, verdict));
    };
    for (&nr, &verdict) in &verdicts {
        push(nr, verdict);
        if let Some(next) = nr.checked_add(1) {
            push(next, Verdict::Deny);
        }
    }
    // Merging may leave equal neighbours where a range was overwritten: fold them.
    ranges.dedup_by(|later, earlier| later.1 == earlier.1);
    let mut program = vec![
        op(LD_W_ABS, DATA_ARCH),
        jump(JMP_JEQ_K, AUDIT_ARCH, 1, 0),
        op(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        op(LD_W_ABS, DATA_NR),
    ];
    program.extend(search(&ranges));
    program
}

/// The decision tree over `ranges` (sorted starts), the syscall number in the accumulator.
fn search(ranges: &[(u32, Verdict)]) -> Vec<sock_filter> {
    if let [(_, verdict)] = ranges {
        return leaf(*verdict);
    }
    let mid = ranges.len() / 2;
    let (below, above) = (search(&ranges[..mid]), search(&ranges[mid..]));
    let pivot = ranges[mid].0;
    let mut out = Vec::with_capacity(below.len() + above.len() + 2);
    match u8::try_from(below.len()) {
        Ok(skip) => out.push(jump(JMP_JGE_K, pivot, skip, 0)),
        Err(_) => {
            // Too far for an 8-bit offset: through an unconditional 32-bit jump.
            out.push(jump(JMP_JGE_K, pivot, 0, 1));
            out.push(op(JMP_JA, below.len() as u32));
        }
    }
    out.extend(below);
    out.extend(above);
    out
}

fn leaf(verdict: Verdict) -> Vec<sock_filter> {
    match verdict {
        Verdict::Allow => vec![op(RET_K, RET_ALLOW)],
        Verdict::Deny => vec![op(RET_K, RET_DENY)],
        // Every namespace flag lies in the low half of the flags argument.
        Verdict::Clone => vec![
            op(LD_W_ABS, DATA_ARG0_LOW),
            jump(JMP_JSET_K, NAMESPACE_FLAGS as u32, 1, 0),
            op(RET_K, RET_ALLOW),
            op(RET_K, RET_DENY),
        ],
        Verdict::Socket => {
            let [a, b, c] = SOCKET_FAMILIES.map(|f| f as u32);
            vec![
                op(LD_W_ABS, DATA_ARG0_LOW),
                jump(JMP_JEQ_K, a, 3, 0),
                jump(JMP_JEQ_K, b, 2, 0),
                jump(JMP_JEQ_K, c, 1, 0),
                op(RET_K, RET_DENY),
                op(RET_K, RET_ALLOW),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same rules compiled by seccompiler (a linear chain): the reference.
    fn reference_allowlist() -> BpfProgram {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
        let no_namespaces = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS),
            0,
        )
        .unwrap();
        rules.insert(
            libc::SYS_clone,
            vec![SeccompRule::new(vec![no_namespaces]).unwrap()],
        );
        let families = SOCKET_FAMILIES
            .iter()
            .map(|&family| {
                let cond = SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    family as u64,
                )
                .unwrap();
                SeccompRule::new(vec![cond]).unwrap()
            })
            .collect();
        rules.insert(libc::SYS_socket, families);
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Errno(libc::EPERM as u32),
            SeccompAction::Allow,
            target_arch().unwrap(),
        )
        .unwrap();
        BpfProgram::try_from(filter).unwrap()
    }

    /// A classic-BPF interpreter for what seccomp filters use: loads from `seccomp_data`
    /// (arch, nr, arguments), conditional and unconditional jumps, AND, returns.
    fn evaluate(program: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, arg) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        for _ in 0..100_000 {
            let ins = &program[pc];
            let (class, code) = (ins.code & 0x07, ins.code);
            pc += 1;
            match class {
                0x00 => {
                    assert_eq!(code, LD_W_ABS, "unexpected load {code:#x}");
                    let at = ins.k as usize;
                    acc = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                }
                0x04 => {
                    assert_eq!(code, 0x54, "unexpected alu {code:#x}"); // AND K
                    acc &= ins.k;
                }
                0x05 => {
                    let taken = match code & 0xf0 {
                        0x00 => {
                            pc += ins.k as usize;
                            continue;
                        }
                        0x10 => acc == ins.k,
                        0x20 => acc > ins.k,
                        0x30 => acc >= ins.k,
                        0x40 => acc & ins.k != 0,
                        other => panic!("unexpected jump {other:#x}"),
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
                0x06 => return ins.k,
                other => panic!("unexpected class {other:#x}"),
            }
        }
        panic!("the program did not return");
    }

    #[test]
    fn the_compact_allowlist_decides_as_the_reference() {
        let compact = allowlist_program();
        let reference = reference_allowlist();
        assert!(
            compact.len() < 400 && reference.len() > 3 * compact.len(),
            "compact {} vs reference {} instructions",
            compact.len(),
            reference.len()
        );
        let ns = NAMESPACE_FLAGS;
        let arg0s = [
            0,
            libc::SIGCHLD as u64,
            (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_THREAD) as u64,
            libc::CLONE_NEWUSER as u64,
            libc::CLONE_NEWNET as u64 | libc::SIGCHLD as u64,
            libc::CLONE_NEWCGROUP as u64,
            ns,
            1 << 40,
            (1 << 40) | libc::CLONE_NEWNS as u64,
            libc::AF_UNIX as u64,
            libc::AF_INET as u64,
            libc::AF_INET6 as u64,
            libc::AF_NETLINK as u64,
            libc::AF_PACKET as u64,
            (1 << 32) | libc::AF_UNIX as u64,
            (1 << 32) | libc::AF_NETLINK as u64,
            u64::MAX,
        ];
        let mut numbers: Vec<u32> = (0..1100).collect();
        numbers.extend((0..600).map(|n| 0x4000_0000 | n));
        numbers.extend([0x3fff_ffff, 0x8000_0000, u32::MAX - 1, u32::MAX]);
        let mut checked = 0;
        for arch in [AUDIT_ARCH, 0x4000_0003, 0xc000_00b7] {
            for &nr in &numbers {
                for &arg0 in &arg0s {
                    let args = [arg0, 0, 0, 0, 0, 0];
                    assert_eq!(
                        evaluate(&compact, arch, nr, args),
                        evaluate(&reference, arch, nr, args),
                        "arch {arch:#x} nr {nr} arg0 {arg0:#x}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3 * numbers.len() * arg0s.len());
        // And the decisions themselves, for a few known calls.
        let allow =
            |nr: i64, arg0: u64| evaluate(&compact, AUDIT_ARCH, nr as u32, [arg0, 0, 0, 0, 0, 0]);
        assert_eq!(allow(libc::SYS_read, 0), RET_ALLOW);
        assert_eq!(allow(libc::SYS_mount, 0), RET_DENY);
        assert_eq!(allow(libc::SYS_clone, libc::SIGCHLD as u64), RET_ALLOW);
        assert_eq!(allow(libc::SYS_clone, libc::CLONE_NEWUSER as u64), RET_DENY);
        assert_eq!(allow(libc::SYS_socket, libc::AF_INET as u64), RET_ALLOW);
        assert_eq!(allow(libc::SYS_socket, libc::AF_NETLINK as u64), RET_DENY);
        assert_eq!(
            evaluate(&compact, 0x4000_0003, libc::SYS_read as u32, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn the_policy_compiles_and_leaves_dangerous_calls_out() {
        let policy = Policy::build().unwrap();
        assert_eq!(policy.filters.len(), 2);
        for nr in [
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_bpf,
            libc::SYS_userfaultfd,
            libc::SYS_perf_event_open,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_reboot,
            libc::SYS_swapon,
            libc::SYS_swapoff,
            libc::SYS_open_by_handle_at,
            libc::SYS_name_to_handle_at,
            libc::SYS_clone3,
            libc::SYS_socket,
            libc::SYS_clone,
            libc::SYS_personality,
            libc::SYS_sethostname,
            libc::SYS_settimeofday,
            libc::SYS_clock_settime,
            libc::SYS_acct,
            libc::SYS_syslog,
        ] {
            assert!(
                !ALLOWED.contains(&nr),
                "syscall {nr} must not be allowed unconditionally"
            );
        }
    }
}
