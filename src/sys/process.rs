//! Raw process syscalls: fd plumbing for children, rlimits, the child
//! subreaper, waiting, signalling and resource usage. Every `unsafe` block says why it is sound.
//! Functions meant for `pre_exec` hooks only make async-signal-safe calls and never allocate.
//! Runs in every process of a run.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Returns a close-on-exec duplicate of `fd` numbered at least `min`, so that moving it to a
/// low target number in a child can never clobber another source.
pub fn dup_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid borrowed fd has no memory effects; the new fd is
    // owned by nobody else, so wrapping it in an OwnedFd is correct.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a freshly created fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// What a child process does between fork and exec, prepared before the fork so that the
/// hook itself neither allocates nor takes locks. A child that execs also starts with default
/// signal dispositions and an empty signal mask, whatever this process inherited (a child
/// forked without exec keeps them: the zygote's helpers carry its interpreter's handlers).
#[derive(Debug, Clone, Default)]
pub struct ChildSetup {
    /// `(source, target)`: source fds (numbered above every target, see [`dup_at_least`]) to
    /// place at `target` without close-on-exec.
    pub fds: Vec<(RawFd, RawFd)>,
    /// Close every fd from this number up, after the moves.
    pub close_from: Option<u32>,
    /// `(resource, value)`: soft and hard limit set to `value`, only ever lowered.
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    /// Put the child in a process group of its own.
    pub new_process_group: bool,
}

impl ChildSetup {
    /// Installs the setup as `cmd`'s pre-exec hook.
    pub fn apply(self, cmd: &mut Command) {
        let setup = self;
        // SAFETY: the closure runs in the forked child before exec. It only calls sigaction,
        // sigprocmask, dup2, close_range/close, getrlimit/setrlimit and setpgid, which are
        // async-signal-safe, on
        // data prepared before the fork; it does not allocate or lock.
        unsafe {
            cmd.pre_exec(move || {
                super::signals::reset_signals_to_defaults();
                setup.run_in_child()
            });
        }
    }

    /// Applies the setup to this very process: for a child forked without `Command` (the
    /// zygote's helpers). The pre-exec hook's calls but the signal reset.
    ///
    /// # Safety
    /// The fds it overwrites and closes may have owners in this process: call it only in a
    /// freshly forked child that never uses or drops those owners (it runs on, then ends
    /// with `_exit`).
    pub unsafe fn apply_here(&self) -> io::Result<()> {
        self.run_in_child()
    }

    fn run_in_child(&self) -> io::Result<()> {
        for &(source, target) in &self.fds {
            // SAFETY: dup2 on fds this process holds; no memory is touched.
            if unsafe { libc::dup2(source, target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(first) = self.close_from {
            close_from(first);
        }
        for &(resource, value) in &self.rlimits {
            lower_rlimit(resource, value)?;
        }
        if self.new_process_group {
            // SAFETY: setpgid(0, 0) only changes this process's group.
            if unsafe { libc::setpgid(0, 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Closes every fd numbered `first` or above. Async-signal-safe.
pub fn close_from(first: u32) {
    // SAFETY: close_range takes no pointers; closing fds this process owns is what we want.
    let done = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) } == 0;
    if !done {
        // Kernels before 5.9: close one by one up to the soft limit.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the rlimit we own.
        let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            limit.rlim_cur.min(65_536) as i32
        } else {
            4096
        };
        for fd in first as i32..max {
            // SAFETY: closing an fd number that may or may not be open has no memory effects.
            unsafe { libc::close(fd) };
        }
    }
}

/// Closes one fd this process holds by number (not through an owner).
///
/// # Safety
/// No live owner (`OwnedFd`, `File`, …) of `fd` may be used or dropped afterwards: it would
/// act on whatever later takes the number.
pub unsafe fn close_fd(fd: RawFd) {
    // SAFETY: close takes no pointers; the caller guarantees no owner of `fd` is used again.
    unsafe { libc::close(fd) };
}

/// Closes every fd except those in `keep`.
///
/// # Safety
/// As for [`close_fd`], for every fd not in `keep`: meant for a freshly forked process that
/// then execs or ends with `_exit`, never touching the owners it inherited.
pub unsafe fn close_fds_except(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut next = 0u32;
    for fd in keep {
        if fd > next {
            // SAFETY: close_range takes no pointers; the caller guarantees that no owner of
            // a closed fd is used again.
            unsafe { libc::syscall(libc::SYS_close_range, next, fd - 1, 0u32) };
        }
        next = fd + 1;
    }
    close_from(next);
}

/// Sets a resource's soft and hard limit to `value`, never raising either (root here lacks
/// CAP_SYS_RESOURCE, and the sandbox must only tighten). Async-signal-safe.
pub fn lower_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own.
    if unsafe { libc::getrlimit(resource, &mut current) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let hard = current.rlim_max.min(value);
    let wanted = libc::rlimit {
        rlim_cur: current.rlim_cur.min(hard),
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the rlimit we own.
    if unsafe { libc::setrlimit(resource, &wanted) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard limit (a server holds one per connection);
/// returns the limit now in force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let wanted = libc::rlimit {
        rlim_cur: current.rlim_max,
        rlim_max: current.rlim_max,
    };
    // SAFETY: setrlimit reads the rlimit we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } < 0 {
        return Ok(current.rlim_cur);
    }
    Ok(wanted.rlim_cur)
}

/// Makes this process the reaper of every orphaned descendant, so that processes which
/// double-fork or call `setsid` stay visible (and killable) as our children.
pub fn become_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a reaped process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

/// Waits for any child. `Ok(None)` when there are no children left at all.
pub fn wait_any_child() -> io::Result<Option<(libc::pid_t, ExitStatus)>> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into our local.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(None),
                _ => return Err(err),
            }
        }
        let how = if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else if libc::WIFEXITED(status) {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        } else {
            // Stopped or continued: not an end; keep waiting.
            continue;
        };
        return Ok(Some((pid, how)));
    }
}

/// CPU time (user + system) and the largest peak resident set of all reaped descendants.
pub fn children_usage() -> (std::time::Duration, u64) {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the rusage we own.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    let max_rss_kb = usage.ru_maxrss.max(0) as u64;
    (cpu, max_rss_kb)
}

/// Clock ticks per second, the unit of CPU times in `/proc/<pid>/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes an integer and touches no memory.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// The size of a memory page, the unit of `/proc/<pid>/statm`.
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes an integer and touches no memory.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

/// Takes ownership of an fd this process inherited at a known number, after checking that it
/// is open, and marks it close-on-exec so it reaches no further child.
///
/// # Safety
/// Nothing else in this process may own `fd`: each inherited number is taken once, and not
/// after something else was opened at it.
pub unsafe fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD/F_SETFD take no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked above) and the caller guarantees it has no other owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Points `fd` at /dev/null, dropping this process's reference to what it was.
pub fn point_at_dev_null(fd: RawFd) -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // SAFETY: dup2 between two fds this process holds; no memory is touched.
    if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The state of this process's children after a non-blocking wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildWait {
    Reaped(libc::pid_t, ExitStatus),
    StillRunning,
    NoChildren,
}

/// Reaps one finished child if there is one, without blocking.
pub fn try_wait_any_child() -> io::Result<ChildWait> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into our local.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(ChildWait::NoChildren),
                _ => return Err(err),
            }
        }
        if pid == 0 {
            return Ok(ChildWait::StillRunning);
        }
        if libc::WIFSIGNALED(status) {
            return Ok(ChildWait::Reaped(
                pid,
                ExitStatus::Signal(libc::WTERMSIG(status)),
            ));
        }
        if libc::WIFEXITED(status) {
            return Ok(ChildWait::Reaped(
                pid,
                ExitStatus::Code(libc::WEXITSTATUS(status)),
            ));
        }
    }
}

/// This process's effective uid.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// This process's effective gid.
pub fn effective_gid() -> u32 {
    // SAFETY: getegid takes no arguments and cannot fail.
    unsafe { libc::getegid() }
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot (with
/// the pid, it names one process for good: a recycled pid starts later).
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether this process has exactly one thread (counted in `/proc/self/task`): a fork of it
/// may then run any code, as a fresh process would.
pub fn is_single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.take(2).count() == 1)
}

/// Waits for the child `pid` to end and reaps it; its status is not needed.
pub fn reap_child(pid: libc::pid_t) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into our local.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Reaps the child `pid` if it has ended; whether it is gone (reaped now, or not ours).
pub fn try_reap_child(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: waitpid writes the status into our local.
    let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    ret != 0
}

/// Lets `fd` survive an exec (clears its close-on-exec flag).
pub fn keep_across_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD takes an int and touches no memory.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Empties this process's environment, as an exec with an empty one would.
///
/// # Safety
/// `clearenv` is not thread-safe: call it only in a single-threaded process (a fresh fork
/// of one) that holds no pointer into the environment.
pub unsafe fn clear_environment() {
    // SAFETY: the caller guarantees no other thread reads or writes the environment.
    unsafe { libc::clearenv() };
}

/// Overwrites this process's command line with `argv` (NUL-separated, cut to fit) and blanks
/// its original environment block, in place: what `/proc/<pid>/cmdline` (readable by
/// anyone) and `/proc/<pid>/environ` then show, as after an exec of `argv` with an empty
/// environment.
///
/// # Safety
/// Nothing in this process may read its original arguments or environment strings again
/// (call it in a fresh single-threaded fork, after [`clear_environment`], that never asks
/// for `std::env::args` or variables).
pub unsafe fn replace_command_line(argv: &[&str]) -> io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces and parentheses) start at field 3.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("unreadable /proc/self/stat"))?;
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // proc(5): (48) arg_start, (49) arg_end, (50) env_start, (51) env_end.
    let field = |n: usize| fields.get(n - 3).copied().unwrap_or(0) as usize;
    let (arg_start, arg_end, env_start, env_end) = (field(48), field(49), field(50), field(51));
    if arg_start == 0 || arg_end <= arg_start || env_end < env_start {
        return Err(io::Error::other("no argument block in /proc/self/stat"));
    }
    let mut title: Vec<u8> = Vec::new();
    for arg in argv {
        title.extend_from_slice(arg.as_bytes());
        title.push(0);
    }
    let length = arg_end - arg_start;
    title.truncate(length - 1);
    title.resize(length, 0);
    // SAFETY: the kernel names [arg_start, arg_end) and [env_start, env_end) as this
    // process's argument and environment strings: mapped, writable (the initial stack) and,
    // as the caller guarantees, read by nothing any more.
    unsafe {
        std::ptr::copy_nonoverlapping(title.as_ptr(), arg_start as *mut u8, length);
        std::ptr::write_bytes(env_start as *mut u8, 0, env_end - env_start);
    }
    Ok(())
}
