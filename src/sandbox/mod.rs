//! What a native sandbox is made of, shared by the processes that build it and the host that
//! prepares it: the identities and paths inside, the root filesystem (`root`, built by the
//! init) and the seccomp policy (`seccomp`, built by the helper or the zygote, installed by the
//! code's process). No process's code lives here (see `crate::process`).

pub(crate) mod root;
pub(crate) mod seccomp;

/// The code's uid and gid inside the sandbox.
pub(crate) const SANDBOX_UID: u32 = 1000;
pub(crate) const SANDBOX_HOSTNAME: &str = "sandbox";
/// Where the code runs and may write.
pub(crate) const WORK_DIR: &str = "/work";
/// Where the code file is, read-only.
pub(crate) const CODE_PATH: &str = "/code/main.py";
