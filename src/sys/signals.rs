//! Signal dispositions and the signal mask a process hands on: back to the defaults, so that
//! what a caller ignored or blocked (a background job ignores SIGINT, a service manager may
//! block signals) never reaches the code. Async-signal-safe: called in pre-exec hooks, in the
//! code's process before it execs, and in the zygote before its interpreter starts.
//! Runs in every process of a run.

/// The highest signal number Linux has (`SIGRTMAX` on x86-64).
const LAST_SIGNAL: libc::c_long = 64;

/// The kernel's `struct sigaction` for `rt_sigaction` (x86-64): the C library's wrapper
/// refuses its own two real-time signals (32 and 33), which a caller may still have ignored.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Every disposition back to `SIG_DFL` and an empty signal mask, as a process started by a
/// fresh login shell has them. SIGKILL and SIGSTOP cannot be changed and are skipped.
/// Async-signal-safe.
pub fn reset_signals_to_defaults() {
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signal in 1..=LAST_SIGNAL {
        if signal == libc::SIGKILL as libc::c_long || signal == libc::SIGSTOP as libc::c_long {
            continue;
        }
        // SAFETY: rt_sigaction reads the action we own (SIG_DFL, no flags, an empty mask of
        // the 8 bytes passed) and writes no old action; it is async-signal-safe.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
    let empty: u64 = 0;
    // SAFETY: rt_sigprocmask reads the empty 8-byte set we own; it is async-signal-safe.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
}
