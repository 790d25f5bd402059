//! `code-exec doctor`: what this host supports and what will work here, found by trying —
//! user namespaces, cgroups (version, and whether run cgroups can be made), seccomp, Landlock,
//! the interpreter — ending with a real `print(1)` through each available backend.
//! Runs in the host process (`code-exec doctor`, and the tests' capability checks).

use serde::Serialize;

use crate::backend::BackendKind;
use crate::cgroup::CgroupDriver;
use crate::interpreter::Interpreter;
use crate::tool::CodeExecutionTool;

/// One finding: what was checked, whether it is usable, and the detail in words.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// How a limit is enforced on this host by the native backend.
#[derive(Debug, Clone, Serialize)]
pub struct LimitSupport {
    pub limit: &'static str,
    pub enforced_by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub backends: Vec<Check>,
    pub native_limits: Vec<LimitSupport>,
}

/// Runs every check.
/// Whether this process can create run cgroups here: the cgroup version, or why not (what
/// `diagnose` reports as its "cgroups" check).
pub fn run_cgroups() -> Result<u8, String> {
    CgroupDriver::detect()
        .map(|driver| driver.version())
        .map_err(|e| e.to_string())
}

pub fn diagnose(supervisor: Option<&std::path::Path>) -> Report {
    let mut checks = Vec::new();
    let interpreter = Interpreter::discover();
    checks.push(Check {
        name: "python",
        ok: interpreter.is_ok(),
        detail: match &interpreter {
            Ok(i) => format!("{} (Python {})", i.path().display(), i.version()),
            Err(e) => e.to_string(),
        },
    });
    let max_userns = read_trimmed("/proc/sys/user/max_user_namespaces");
    let unpriv = read_trimmed("/proc/sys/kernel/unprivileged_userns_clone");
    let userns_ok =
        max_userns.as_deref().is_none_or(|v| v != "0") && unpriv.as_deref() != Some("0");
    checks.push(Check {
        name: "user namespaces",
        ok: userns_ok,
        detail: format!(
            "max_user_namespaces={}, unprivileged_userns_clone={}",
            max_userns.as_deref().unwrap_or("n/a"),
            unpriv.as_deref().unwrap_or("n/a (allowed)")
        ),
    });
    let cgroups = CgroupDriver::detect();
    checks.push(Check {
        name: "cgroups",
        ok: cgroups.is_ok(),
        detail: match &cgroups {
            Ok(CgroupDriver::V1(d)) => format!(
                "cgroup v1: run cgroups can be created below {} (memory), {} (cpu), {} (pids)",
                d.memory.display(),
                d.cpu.display(),
                d.pids.display()
            ),
            Ok(CgroupDriver::V2 { parent }) => format!(
                "cgroup v2: run cgroups can be created below {} with memory, cpu and pids",
                parent.display()
            ),
            Err(e) => format!("{e}; limits fall back to per-process rlimits"),
        },
    });
    let seccomp = read_trimmed("/proc/sys/kernel/seccomp/actions_avail");
    checks.push(Check {
        name: "seccomp",
        ok: seccomp.as_deref().is_some_and(|a| a.contains("errno")),
        detail: seccomp.map_or("not available".into(), |a| format!("actions: {a}")),
    });
    let landlock = crate::sys::landlock_abi();
    checks.push(Check {
        name: "landlock",
        ok: landlock.is_some(),
        detail: landlock.map_or("not available (not needed by code-exec)".into(), |v| {
            format!("ABI version {v} (not needed by code-exec)")
        }),
    });
    let mut backends = Vec::new();
    for kind in [BackendKind::None, BackendKind::Native] {
        backends.push(try_backend(kind, supervisor));
    }
    backends.push(try_docker());
    let cgroup_name = match &cgroups {
        Ok(d) => format!("cgroup v{}", d.version()),
        Err(_) => String::new(),
    };
    let root = crate::sys::effective_uid() == 0;
    let native_limits = vec![
        LimitSupport {
            limit: "memory_mb",
            enforced_by: if cgroups.is_ok() {
                format!("{cgroup_name} (whole sandbox, swap off, OOM verdict)")
            } else {
                "RLIMIT_DATA per process (fallback: no cgroup); kernel memory (socket buffers, \
                 page tables) is bounded by nothing"
                    .into()
            },
        },
        LimitSupport {
            limit: "cpu",
            enforced_by: if cgroups.is_ok() {
                format!("{cgroup_name} CPU quota")
            } else {
                "not enforced (needs a cgroup)".into()
            },
        },
        LimitSupport {
            limit: "pids",
            enforced_by: if cgroups.is_ok() {
                format!("{cgroup_name} pids controller")
            } else if root {
                "RLIMIT_NPROC of the sandbox's own host uid (fallback)".into()
            } else {
                "RLIMIT_NPROC on top of this user's processes (fallback)".into()
            },
        },
        LimitSupport {
            limit: "timeout",
            enforced_by: "host-side monotonic clock; SIGKILL of the sandbox's PID namespace".into(),
        },
        LimitSupport {
            limit: "max_output_bytes",
            enforced_by: "host-side, per stream".into(),
        },
        LimitSupport {
            limit: "/tmp, /work",
            enforced_by: if root {
                "size- and inode-limited tmpfs (a persistent sandbox's /work mounted on the host)"
                    .into()
            } else {
                "size- and inode-limited tmpfs (a persistent sandbox's /work held in a user \
                 and mount namespace of its own)"
                    .into()
            },
        },
    ];
    Report {
        checks,
        backends,
        native_limits,
    }
}

/// The docker backend: is an engine reachable, and is the default image there?
fn try_docker() -> Check {
    use crate::backend::docker::{DEFAULT_IMAGE, Engine};
    let name = BackendKind::Docker.as_str();
    let engine = match Engine::connect() {
        Ok(engine) => engine,
        Err(e) => {
            return Check {
                name,
                ok: false,
                detail: e.to_string(),
            };
        }
    };
    let image = match engine.image_python_version(DEFAULT_IMAGE) {
        Ok(_) => format!("the default image {DEFAULT_IMAGE} is present"),
        Err(e) => format!("{e}; or choose another image with --image"),
    };
    Check {
        name,
        ok: true,
        detail: format!("Docker Engine {} reachable; {image}", engine.version()),
    }
}

fn try_backend(kind: BackendKind, supervisor: Option<&std::path::Path>) -> Check {
    let name = kind.as_str();
    let mut builder = CodeExecutionTool::builder().backend(kind);
    if let Some(path) = supervisor {
        builder = builder.supervisor(path);
    }
    let outcome = builder
        .build()
        .map_err(|e| e.to_string())
        .and_then(|tool| tool.execute("print(1)").map_err(|e| e.to_string()))
        .and_then(|r| {
            if r.success && r.output == "1\n" {
                Ok(r.duration_ms)
            } else {
                Err(r.error.unwrap_or_else(|| "unexpected output".into()))
            }
        });
    Check {
        name,
        ok: outcome.is_ok(),
        detail: match outcome {
            Ok(ms) => format!("works: print(1) ran in {ms:.1} ms"),
            Err(e) => e,
        },
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

impl Report {
    /// The report in words, one finding per line.
    pub fn to_text(&self) -> String {
        let mut out = String::from("Host\n");
        let line = |c: &Check| {
            format!(
                "  [{}] {:<16} {}\n",
                if c.ok { " ok " } else { "FAIL" },
                c.name,
                c.detail
            )
        };
        for c in &self.checks {
            out.push_str(&line(c));
        }
        out.push_str("Backends\n");
        for c in &self.backends {
            out.push_str(&line(c));
        }
        out.push_str("Limits in the native sandbox\n");
        for l in &self.native_limits {
            out.push_str(&format!("  {:<17} {}\n", l.limit, l.enforced_by));
        }
        out
    }
}
