//! The processes of a run other than the host caller, one file each, named for the process
//! its code runs in, and the dispatcher that turns the `code-exec` binary into one of them
//! (`code-exec __supervise | __sandbox | __zygote | __work_holder`, the config on fd 6: see
//! `crate::protocol`). Nothing here imports `crate::backend`, which is the host's side.
//!
//! # One run, across processes, in order
//!
//! A native run forked from the zygote (the library's default):
//!
//! 1. **host** (`backend::native`): creates the run's cgroup with its limits, the run
//!    directory and the code file; makes the five pipes of the run (stdout, stderr, report,
//!    status, control) and sends the [`SandboxConfig`](crate::protocol::SandboxConfig)
//!    JSON with the six fds to the zygote.
//! 2. **zygote** ([`zygote`], started once per tool: an interpreter past its core start-up and
//!    the compiled seccomp policy): forks the **helper** with those fds in place and answers
//!    its pid and pidfd. (A cold run instead execs `code-exec __sandbox`, which compiles the
//!    policy itself.)
//! 3. **helper** ([`sandbox_helper`], on the host side of the namespaces): reads the code,
//!    clones the **init** into new user, PID, mount, network, IPC and UTS namespaces, writes
//!    its uid and gid maps, sends it [`GO`](crate::protocol::GO), reports `Started`, then
//!    samples usage and waits (for the init's status record, or a kill on the control
//!    channel).
//! 4. **init** ([`init`], PID 1 inside): dies with the helper; on `GO` joins the run's cgroup
//!    and enters a cgroup namespace, sets the hostname, brings loopback up, builds the root
//!    (`sandbox::root`), becomes non-dumpable and forks the **code process**; keeps only
//!    CAP_KILL and reaps.
//! 5. **code process** ([`code`]): new session, lowered rlimits, capabilities gone for good,
//!    uid 1000, `no_new_privs`, fds 0–3 only, the seccomp filter last; then execs the
//!    interpreter (cold) or runs the runner in the inherited one (forked from the zygote).
//!    The runner (`runner.py`) compiles and runs the code and writes its report on fd 3.
//! 6. **init**: when the code's main process ends, kills and reaps every other process of the
//!    sandbox, then sends the helper the exit-status record and exits.
//! 7. **helper**: reads the record and the cgroup's usage, reports `Exit` on the status channel
//!    (without a cgroup it first reaps the init for its rusage); the namespaces are torn down
//!    after the report, when it exits.
//! 8. **host** (`backend::helper`): has drained stdout and stderr under the output cap and
//!    enforced the timeout all along (a kill is a byte on the control channel); decides the
//!    verdict (`backend::verdict`) from what it saw, the helper's status and the runner's
//!    report; removes the cgroup and the run directory.
//!
//! The `none` backend replaces steps 2–7 with the [`supervisor`]: the child subreaper of
//! everything the code starts, which runs the interpreter directly, samples the tree
//! ([`tree`]) and kills every descendant when the main process ends. Both speak the same
//! protocol to the host.
//!
//! An unprivileged tool's persistent sandbox also has a [`work_holder`] (`__work_holder`):
//! the process whose namespaces hold its `/work` tmpfs, entered by each run's helper first.

pub(crate) mod code;
pub(crate) mod init;
pub(crate) mod sandbox_helper;
pub(crate) mod supervisor;
pub(crate) mod tree;
pub(crate) mod work_holder;
pub(crate) mod zygote;

use crate::protocol::{self, HiddenMode};

/// For programs that embed the library and act as their own helper binary (as `code-exec`
/// does): call this first thing in `main`. When the process was started in a hidden mode it
/// runs as that process and exits; otherwise it returns at once.
pub fn run_if_requested() {
    let Some(mode) = std::env::args()
        .nth(1)
        .and_then(|a| HiddenMode::from_arg(&a))
    else {
        return;
    };
    std::process::exit(run_hidden_mode(mode))
}

/// Runs this process as the hidden-mode process `mode`, its config on fd 6 and its other
/// fds in place; returns its exit status. Reached after an exec of the binary
/// ([`run_if_requested`]), or in a fork of a single-threaded process that is its own helper
/// (the CLI: `ToolBuilder::helpers_forked_here`), which spares the exec.
pub(crate) fn run_hidden_mode(mode: HiddenMode) -> i32 {
    let config = protocol::read_config();
    match mode {
        HiddenMode::Supervise => supervisor::main(&config),
        HiddenMode::Sandbox => sandbox_helper::main(&config),
        HiddenMode::Zygote => zygote::main(&config),
        HiddenMode::WorkHolder => work_holder::main(&config),
    }
}
