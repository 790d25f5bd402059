//! Raw syscalls that isolate a process: creating namespaces, identity changes, capabilities,
//! `no_new_privs`, dumpability, the hostname and the loopback interface.
//! Runs in the sandbox helper, the init and the code's process.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

fn check(ret: libc::c_long, what: &str) -> io::Result<libc::c_long> {
    if ret < 0 {
        let err = io::Error::last_os_error();
        Err(io::Error::new(err.kind(), format!("{what} => {err}")))
    } else {
        Ok(ret)
    }
}

/// Namespaces every sandbox gets. The cgroup namespace is entered later, once the process sits
/// in its own cgroup, so that the sandbox sees that cgroup as its root.
pub const SANDBOX_NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS;

/// The side of a fork-like clone this process is on.
pub enum Forked {
    Parent(libc::pid_t),
    Child,
}

/// `clone(flags | SIGCHLD)` with fork semantics: the child gets a copy of this process in the
/// new namespaces.
///
/// # Safety
/// This process must be single-threaded (the sandbox helper is a fresh exec of our binary, or
/// a fresh fork of the zygote, that has not started any thread): a lock held by another
/// thread would stay locked forever in the child's copy of memory.
pub unsafe fn fork_into_namespaces(flags: libc::c_int) -> io::Result<Forked> {
    // SAFETY: a raw clone without CLONE_VM and with a null stack behaves like fork(): the child
    // continues on a copy of our stack. The caller guarantees this process is single-threaded,
    // so no lock is held by another thread in the child's copy of memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match check(ret, "clone(namespaces)")? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// `clone_args` of `clone3(2)` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7): the child starts in the cgroup v2 directory `cgroup`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Like [`fork_into_namespaces`], but the child starts as a member of the cgroup v2 directory
/// open as `cgroup` (`clone3` with `CLONE_INTO_CGROUP`). The kernel places it there during
/// the fork, under the read side of the thread-group lock; a later write to `cgroup.procs`
/// takes the write side, whose first use costs a full RCU grace period (~8 ms here).
///
/// `Ok(None)`: the kernel lacks `clone3` or `CLONE_INTO_CGROUP` (`ENOSYS`, `EINVAL`, `E2BIG`),
/// and nothing was created.
///
/// # Safety
/// As for [`fork_into_namespaces`]: this process must be single-threaded.
pub unsafe fn fork_into_namespaces_and_cgroup(
    flags: libc::c_int,
    cgroup: BorrowedFd<'_>,
) -> io::Result<Option<Forked>> {
    let args = CloneArgs {
        flags: flags as u32 as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid `clone_args` of the size passed, alive for the call. Without
    // CLONE_VM and with no stack the child continues, like fork(), on a copy of our stack; the
    // caller guarantees this process is single-threaded, so no other thread holds a lock in
    // the child's copy of memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if matches!(
            err.raw_os_error(),
            Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG)
        ) {
            return Ok(None);
        }
        return Err(io::Error::new(
            err.kind(),
            format!("clone3(namespaces, into cgroup) => {err}"),
        ));
    }
    Ok(Some(match ret {
        0 => Forked::Child,
        pid => Forked::Parent(pid as libc::pid_t),
    }))
}

/// A plain fork.
///
/// # Safety
/// As for [`fork_into_namespaces`]: this process must be single-threaded.
pub unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller guarantees what fork_into_namespaces requires.
    unsafe { fork_into_namespaces(0) }
}

/// The C library's `fork()`: a plain fork, after which the child's C-library thread
/// descriptor holds the child's own thread id. A raw clone leaves the parent's id there, so
/// that `pthread_kill`, `pthread_getcpuclockid` and the like on the main thread fail in the
/// child — for an interpreter forked from the zygote, in the code's own process. Runs the
/// fork handlers registered with `pthread_atfork`.
///
/// # Safety
/// As for [`fork_into_namespaces`]: this process must be single-threaded.
pub unsafe fn fork_as_libc_does() -> io::Result<Forked> {
    // SAFETY: the caller guarantees this process is single-threaded, so no lock is held by
    // another thread in the child's copy of memory; fork takes no pointers.
    let ret = unsafe { libc::fork() };
    match check(ret as libc::c_long, "fork")? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// Enters new namespaces of the given kinds (`unshare(2)`).
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes an integer and touches no memory.
    check(unsafe { libc::unshare(flags) } as libc::c_long, "unshare").map(drop)
}

/// Enters the user and mount namespaces of the process `pid`, which must be the one that
/// started at `start_ticks` (a recycled pid is refused). The caller must be single-threaded.
pub fn enter_user_and_mount_namespaces_of(pid: u32, start_ticks: u64) -> io::Result<()> {
    let pidfd = super::fdpass::pidfd_open(pid as libc::pid_t)?;
    // Checked after the pidfd is open: from here on it names this very process.
    if super::process::process_start_ticks(pid) != Some(start_ticks) {
        return Err(io::Error::other(format!(
            "process {pid} is not the one that holds the namespaces (it ended)"
        )));
    }
    // SAFETY: setns takes an fd we own and flags; it touches no memory.
    let ret = unsafe { libc::setns(pidfd.as_raw_fd(), libc::CLONE_NEWUSER | libc::CLONE_NEWNS) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    let ret = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    check(ret as libc::c_long, "sethostname").map(drop)
}

/// Switches real, effective and saved ids; supplementary groups are dropped first.
pub fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: an empty group list with a null pointer is valid for setgroups.
    let ret = unsafe { libc::setgroups(0, std::ptr::null()) };
    // In a user namespace with setgroups denied this fails with EPERM; there are no groups
    // to drop then, so the failure is harmless.
    if ret < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
        check(-1, "setgroups([])")?;
    }
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::setresgid(gid, gid, gid) };
    check(ret as libc::c_long, "setresgid")?;
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::setresuid(uid, uid, uid) };
    check(ret as libc::c_long, "setresuid")?;
    Ok(())
}

/// Highest capability number this kernel knows.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Keeps capabilities across the coming uid change (`SECBIT_NO_SETUID_FIXUP`), so the sandbox
/// init can switch to the sandbox uid and still finish building the mounts.
pub fn keep_capabilities_across_setuid() -> io::Result<()> {
    const PR_SET_SECUREBITS: libc::c_int = 28;
    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 0x4;
    // SAFETY: prctl with integer arguments.
    let ret = unsafe { libc::prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0) };
    check(ret as libc::c_long, "prctl(PR_SET_SECUREBITS)").map(drop)
}

/// Makes capabilities impossible to regain: empties the bounding set (no exec can grant any)
/// and the ambient set, and locks root's special treatment off with securebits. Needs
/// CAP_SETPCAP, so it runs before [`clear_capabilities`].
pub fn lock_capabilities() -> io::Result<()> {
    const PR_CAPBSET_DROP: libc::c_int = 24;
    const PR_CAP_AMBIENT: libc::c_int = 47;
    const PR_CAP_AMBIENT_CLEAR_ALL: libc::c_ulong = 4;
    const PR_SET_SECUREBITS: libc::c_int = 28;
    // noroot, no_setuid_fixup, keep_caps_locked, no_cap_ambient_raise: each with its lock.
    const SECUREBITS: libc::c_ulong = 0x1 | 0x2 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80;
    // SAFETY: prctl with integer arguments.
    let ret = unsafe { libc::prctl(PR_SET_SECUREBITS, SECUREBITS, 0, 0, 0) };
    check(ret as libc::c_long, "prctl(PR_SET_SECUREBITS, locked)")?;
    for cap in 0..=last_capability() {
        // SAFETY: prctl with integer arguments.
        let ret = unsafe { libc::prctl(PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if ret < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            check(-1, "prctl(PR_CAPBSET_DROP)")?;
        }
    }
    // SAFETY: prctl with integer arguments.
    let ret = unsafe { libc::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    check(ret as libc::c_long, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)").map(drop)
}

/// Empties the effective, permitted and inheritable capability sets.
pub fn clear_capabilities() -> io::Result<()> {
    retain_capabilities(&[])
}

/// Reduces the effective and permitted sets to `keep` (capability numbers below 32) and
/// empties the inheritable set.
pub fn retain_capabilities(keep: &[u32]) -> io::Result<()> {
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let bits = keep
        .iter()
        .filter(|&&cap| cap < 32)
        .fold(0u32, |bits, &cap| bits | (1 << cap));
    let data = [
        CapData {
            effective: bits,
            permitted: bits,
            inheritable: 0,
        },
        CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    // SAFETY: header and data are laid out as capset v3 expects (two data elements) and live
    // across the call; the kernel only reads data.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    check(ret, "capset(0)").map(drop)
}

/// After this, no exec can grant privileges (setuid bits, file capabilities).
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    check(ret as libc::c_long, "prctl(PR_SET_NO_NEW_PRIVS)").map(drop)
}

/// A non-dumpable process cannot be ptrace-attached and its /proc files are root-owned.
pub fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    let ret = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    check(ret as libc::c_long, "prctl(PR_SET_DUMPABLE, 0)").map(drop)
}

/// Asks the kernel to SIGKILL this process when its parent dies.
pub fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    let ret = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    check(ret as libc::c_long, "prctl(PR_SET_PDEATHSIG)").map(drop)
}

/// Starts a new session (no controlling terminal, own process group).
pub fn new_session() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    check(unsafe { libc::setsid() } as libc::c_long, "setsid").map(drop)
}

/// Brings the loopback interface of this network namespace up.
pub fn loopback_up() -> io::Result<()> {
    const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
    const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
    #[repr(C)]
    struct IfreqFlags {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    // SAFETY: socket takes integers; the returned fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(fd as libc::c_long, "socket(AF_INET)")?;
    // SAFETY: `fd` is a fresh fd that nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut req = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: `req` is a valid, large-enough ifreq for the flags ioctls and lives across both
    // calls; the kernel reads the name and reads/writes the flags.
    unsafe {
        check(
            libc::ioctl(sock.as_raw_fd(), SIOCGIFFLAGS, &mut req) as libc::c_long,
            "ioctl(SIOCGIFFLAGS, lo)",
        )?;
        req.flags |= libc::IFF_UP as libc::c_short;
        check(
            libc::ioctl(sock.as_raw_fd(), SIOCSIFFLAGS, &mut req) as libc::c_long,
            "ioctl(SIOCSIFFLAGS, lo)",
        )?;
    }
    Ok(())
}

/// Ends this process at once with `code`, without running destructors or atexit handlers
/// (for a forked child that must not touch its parent's state).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and takes an integer.
    unsafe { libc::_exit(code) }
}

/// Replaces this process with `program`. Returns only on failure.
pub fn exec(
    program: &std::ffi::CStr,
    argv: &[std::ffi::CString],
    envp: &[std::ffi::CString],
) -> io::Error {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: program, argv and envp are NUL-terminated strings in null-terminated arrays
    // that stay alive across the call.
    unsafe { libc::execve(program.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// The Landlock ABI version the kernel offers, if any.
pub fn landlock_abi() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the kernel only
    // returns the ABI version; no memory is read or written.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(ret).ok().filter(|v| *v > 0)
}
