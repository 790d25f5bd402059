//! The backend seam: what every way of running code (`none`, `native`, `docker`) implements,
//! and the request it receives. A request's code has already passed syntax validation and its
//! limits are valid by construction; a backend only runs and reports. Runs in the host process.

pub mod docker;
pub mod helper;
pub mod native;
pub mod none;
pub(crate) mod runner_cache;
pub(crate) mod runs;
pub(crate) mod verdict;
mod workspace;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::limits::Limits;
use crate::result::ExecutionResult;
pub use crate::result::{Enforced, Enforcement};

/// Which backend runs the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A plain subprocess with limits enforced from outside: for trusted code only.
    None,
    /// Our own Linux sandbox (namespaces, cgroups, seccomp).
    Native,
    /// A container through the Docker Engine API.
    Docker,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::None => "none",
            BackendKind::Native => "native",
            BackendKind::Docker => "docker",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(BackendKind::None),
            "native" => Ok(BackendKind::Native),
            "docker" => Ok(BackendKind::Docker),
            other => Err(format!(
                "invalid sandbox {other:?}; allowed: none, native, docker"
            )),
        }
    }
}

/// Lets a caller stop an execution it no longer wants (a client that went away): the run is
/// killed as for a timeout and its result says `Cancelled`. Clones share one flag; a flag made
/// with [`Cancel::or`] is also raised by the one it was made from (a persistent sandbox's
/// cleanup cancels whatever runs in it, whatever its caller's own flag says).
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<CancelFlag>);

#[derive(Debug, Default)]
struct CancelFlag {
    raised: std::sync::atomic::AtomicBool,
    /// Flags whose raising raises this one too.
    parents: Vec<Cancel>,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    pub fn cancel(&self) {
        self.0
            .raised
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.raised.load(std::sync::atomic::Ordering::SeqCst)
            || self.0.parents.iter().any(Cancel::is_cancelled)
    }

    /// A new flag, raised by its own `cancel` and by `self`'s and `other`'s.
    pub fn or(&self, other: &Cancel) -> Cancel {
        Cancel(std::sync::Arc::new(CancelFlag {
            raised: Default::default(),
            parents: vec![self.clone(), other.clone()],
        }))
    }
}

/// How often a running execution looks at its [`Cancel`] flag.
pub(crate) const CANCEL_POLL: Duration = Duration::from_millis(50);

/// One execution, as a backend receives it.
#[derive(Debug, Clone)]
pub struct ExecutionRequest<'a> {
    /// Source code that passed syntax validation.
    pub code: &'a [u8],
    /// Bytes for the code's stdin; `None` gives it an empty stdin.
    pub stdin: Option<&'a [u8]>,
    pub limits: Limits,
    /// Sample resource usage at this interval and return the samples.
    pub monitor: Option<Duration>,
    /// Stops the run when set.
    pub cancel: Option<Cancel>,
}

/// A way of running code. Implementations never panic on anything the code does: every
/// outcome, including their own failures, comes back as an [`ExecutionResult`].
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;
    fn execute(&self, request: &ExecutionRequest<'_>) -> ExecutionResult;
    /// How each limit is enforced by this backend on this host.
    fn enforcement(&self) -> Enforcement;
}

/// Resource usage of a persistent sandbox, read from the host side.
#[derive(Default, Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SandboxUsage {
    /// CPU use since the previous reading (as `docker stats` computes it), in percent of one core.
    pub cpu_percent: f64,
    pub memory_mb: f64,
    pub peak_memory_mb: f64,
    pub cpu_time_ms: f64,
    pub pids: u32,
}
