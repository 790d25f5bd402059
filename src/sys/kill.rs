//! The one way this crate sends SIGKILL: to one process by pid (never a group or -1), to the
//! process behind a pidfd, or to every other process of the caller's PID namespace (the
//! sandbox's init ending the sandbox). A process that is already gone is not an error.
//! Runs in the host, the helpers and the init.

use std::os::fd::{AsRawFd, BorrowedFd};

/// SIGKILL to one process. Pids that do not address exactly one process (0, or too large to
/// be positive) are ignored.
pub fn kill(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid)
        && pid > 0
    {
        // SAFETY: kill takes no pointers; a positive pid addresses exactly one process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// SIGKILL to the process behind a pidfd (immune to pid reuse).
pub fn kill_pidfd(pidfd: BorrowedFd<'_>) {
    // SAFETY: pidfd_send_signal with a NULL siginfo takes no memory from us.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// SIGKILL to every process this one may signal in its PID namespace, except itself (and the
/// namespace's init, which this is when called by the sandbox's init). Atomic with respect to
/// fork: a process forking meanwhile either is signalled or fails to fork.
pub fn kill_all_others() {
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(-1, libc::SIGKILL) };
}
