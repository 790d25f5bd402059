//! The Docker Engine, through its HTTP API (bollard): connecting, image checks, locked-down
//! containers, executions through `exec` with the code on stdin, stats, live limit updates,
//! removal and the reaping of containers whose owner is gone. Async inside, blocking outside:
//! every public method runs on this engine's own runtime. Runs in the host process.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerStatsResponse, ContainerUpdateBody, HostConfig,
    HostConfigLogConfig, ResourcesUlimits,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder,
};
use futures_util::StreamExt;
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use super::owner::Owner;
use crate::backend::{CANCEL_POLL, Cancel};
use crate::cgroup::RunCgroup;
use crate::limits::Limits;
use crate::result::Sample;
use crate::sandbox::SANDBOX_HOSTNAME;

/// Every container we create carries this label (value "1").
pub const LABEL: &str = "code-exec";
/// Who created it: see [`Owner`].
pub const OWNER_LABEL: &str = "code-exec.owner";
/// The container is created as root: the engine gives a root exec (the wrapper's) its
/// capabilities under `no-new-privileges` only in a container whose user is root. Its idle
/// main process drops at once to uid 65534 (nobody); executions run as [`SANDBOX_USER`], so
/// killing every process of the sandbox user spares the container.
const CONTAINER_USER: &str = "0:0";
pub const SANDBOX_USER: &str = "1000:1000";
/// The wrapper runs as the container's root with CAP_SETUID and CAP_SETGID only (see
/// `wrapper.py`): out of reach of the code, which it starts as [`SANDBOX_USER`].
const WRAPPER_USER: &str = "0:0";
const SANDBOX_UID: u32 = 1000;
pub const WORK_DIR: &str = "/work";
/// The container's main process: an idle interpreter (every usable image has `python3`),
/// without the capabilities it starts with.
const IDLE_SCRIPT: &str = "import os, signal\nos.setgroups([])\nos.setgid(65534)\nos.setuid(65534)\nwhile True:\n    signal.pause()\n";
/// Kills every process of the sandbox user (the caller excepted) and prints the container's
/// OOM-kill count.
const KILL_SCRIPT: &str = r#"import os
try:
    os.kill(-1, 9)
except OSError:
    pass
n = -1
for path, key in (("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"), ("/sys/fs/cgroup/memory.events", "oom_kill")):
    try:
        for line in open(path):
            k, _, v = line.partition(" ")
            if k == key:
                n = int(v)
        break
    except OSError:
        pass
print(n)
"#;

/// The tool's own failures with the engine (never the code's faults), each saying what to do.
#[derive(Debug, Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker Engine: {0}; start Docker (e.g. `sudo systemctl start docker`) or set DOCKER_HOST to a running engine"
    )]
    Unreachable(#[source] bollard::errors::Error),
    #[error(
        "the image {0:?} is not present in the Docker Engine; build it (for the tests: scripts/build-docker-image.sh) or pull it (`docker pull {0}`)"
    )]
    ImageMissing(String),
    #[error("the Docker Engine failed to {action}: {source}")]
    Engine {
        action: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot start the Docker client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the container's execution failed: {0}")]
    Protocol(String),
}

fn engine_error(action: &'static str) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    move |source| DockerError::Engine { action, source }
}

/// A connection to one Docker Engine.
pub struct Engine {
    docker: Docker,
    runtime: tokio::runtime::Runtime,
    owner: Owner,
    version: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("version", &self.version)
            .finish()
    }
}

/// How the container of a run is shaped (all of it locked down; only sizes vary).
#[derive(Debug, Clone)]
pub struct ContainerSpec<'a> {
    pub image: &'a str,
    pub limits: Limits,
}

/// The container's own tasks besides the code's: its init, the idle main process and the
/// execution's wrapper.
const CONTAINER_OWN_TASKS: i64 = 3;

/// Limits as the engine takes them. `pids` counts the code's processes and threads, its main
/// process included, as on every backend: the container's own tasks come on top.
fn resources(limits: &Limits) -> (i64, i64, i64) {
    let memory = limits.memory_mb.bytes() as i64;
    let nano_cpus = (limits.cpu.get() * 1e9).round() as i64;
    let pids = i64::from(limits.pids.get()) + CONTAINER_OWN_TASKS;
    (memory, nano_cpus, pids)
}

/// Where a container's usage is read: its cgroup files when the engine runs on this host
/// (exact, and as often as asked), else the engine's stats API (which this engine refreshes
/// about once a second).
#[derive(Debug, Clone)]
pub enum UsageSource {
    Cgroup(RunCgroup),
    Api,
}

/// One reading of a container's usage.
#[derive(Debug, Clone, Copy)]
pub struct UsagePoint {
    pub at: Instant,
    pub cpu_total_ns: u64,
    /// Host CPU time, from the stats API (the `docker stats` formula divides by it).
    system_ns: Option<u64>,
    online_cpus: u32,
    pub memory_bytes: u64,
    /// The cgroup's high-water mark, where the kernel keeps one.
    pub max_memory_bytes: Option<u64>,
    pub pids: u32,
}

impl UsagePoint {
    fn from_response(stats: &ContainerStatsResponse) -> UsagePoint {
        let cpu = stats.cpu_stats.as_ref();
        let memory = stats.memory_stats.as_ref();
        let usage = memory.and_then(|m| m.usage).unwrap_or(0);
        let inactive = memory
            .and_then(|m| m.stats.as_ref())
            .and_then(|s| {
                s.get("total_inactive_file")
                    .or_else(|| s.get("inactive_file"))
            })
            .copied()
            .unwrap_or(0);
        UsagePoint {
            at: Instant::now(),
            cpu_total_ns: cpu
                .and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.total_usage)
                .unwrap_or(0),
            system_ns: cpu.and_then(|c| c.system_cpu_usage),
            online_cpus: cpu.and_then(|c| c.online_cpus).unwrap_or(1).max(1),
            memory_bytes: usage.saturating_sub(inactive),
            max_memory_bytes: memory.and_then(|m| m.max_usage).filter(|&m| m > 0),
            pids: stats
                .pids_stats
                .as_ref()
                .and_then(|p| p.current)
                .unwrap_or(0) as u32,
        }
    }

    fn from_cgroup(cgroup: &RunCgroup) -> UsagePoint {
        let usage = cgroup.usage();
        UsagePoint {
            at: Instant::now(),
            cpu_total_ns: usage.cpu_time_ns,
            system_ns: None,
            online_cpus: 1,
            memory_bytes: usage.memory_bytes,
            max_memory_bytes: Some(usage.peak_memory_bytes).filter(|&m| m > 0),
            pids: usage.pids,
        }
    }

    /// CPU use between two readings, as `docker stats` computes it: the container's CPU time
    /// over the host's (all CPUs) times the number of CPUs, so 100 = one core busy. Read from
    /// the cgroup, the host's CPU time over all CPUs is the wall time times their number, and
    /// the formula reduces to CPU time over wall time.
    pub fn cpu_percent_since(&self, earlier: &UsagePoint) -> f64 {
        let cpu = self.cpu_total_ns.saturating_sub(earlier.cpu_total_ns) as f64;
        let (host, cpus) = match (self.system_ns, earlier.system_ns) {
            (Some(now), Some(then)) => {
                (now.saturating_sub(then) as f64, f64::from(self.online_cpus))
            }
            _ => (self.at.duration_since(earlier.at).as_nanos() as f64, 1.0),
        };
        if host > 0.0 {
            cpu / host * cpus * 100.0
        } else {
            0.0
        }
    }
}

/// What stopped an execution from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Timeout,
    Cancelled,
    StdoutCap,
    StderrCap,
}

/// How to stop a run's processes: a one-shot container is killed whole; a persistent one
/// keeps running and only the sandbox user's processes die.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillMode {
    Container,
    SandboxProcesses,
}

/// One execution request, as the engine sees it.
pub struct ExecSpec<'a> {
    pub code: &'a [u8],
    pub stdin: Option<&'a [u8]>,
    pub timeout: Duration,
    pub output_cap: usize,
    pub monitor: Option<Duration>,
    pub kill: KillMode,
    /// Where to read usage; found on demand when `None`.
    pub usage: Option<&'a UsageSource>,
    pub cancel: Option<&'a Cancel>,
}

/// What came back from one execution.
#[derive(Debug, Default)]
pub struct ExecOutcome {
    pub stdout: Vec<u8>,
    /// Raw stderr: the code's, then the wrapper's framed record.
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stop: Option<Stop>,
    /// The exec's exit code (the wrapper's), when the engine knows it.
    pub exit_code: Option<i64>,
    pub duration: Duration,
    pub samples: Vec<Sample>,
    pub sampled_peak_bytes: u64,
    /// The container's CPU time at the start of the run and when it was stopped (read only
    /// for stopped runs; the wrapper measures completed ones itself).
    pub cpu_ns_at_start: Option<u64>,
    pub cpu_ns_at_stop: Option<u64>,
    /// The container's OOM-kill count read after a forced kill (`None`: not read).
    pub oom_total_after_kill: Option<i64>,
}

/// The wrapper's framed record is at most this long (a 64 KiB report, hex-encoded, plus
/// a few fields).
pub const FRAME_CAP: usize = 140 * 1024;
/// How long stopped runs get for their streams to end.
const KILL_GRACE: Duration = Duration::from_secs(5);

impl Engine {
    /// Connects (DOCKER_HOST or the local socket), agrees on an API version and checks that
    /// the engine answers.
    pub fn connect() -> Result<Engine, DockerError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("code-exec-docker")
            .enable_all()
            .build()
            .map_err(DockerError::Runtime)?;
        let (docker, version) = runtime.block_on(async {
            let docker = Docker::connect_with_defaults().map_err(DockerError::Unreachable)?;
            let docker = docker
                .negotiate_version()
                .await
                .map_err(DockerError::Unreachable)?;
            let version = docker.version().await.map_err(DockerError::Unreachable)?;
            Ok::<_, DockerError>((docker, version.version.unwrap_or_default()))
        })?;
        Ok(Engine {
            docker,
            runtime,
            owner: Owner::current(),
            version,
        })
    }

    /// The engine's version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn block<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The image's `PYTHON_VERSION` environment variable (official Python images set it).
    pub fn image_python_version(&self, image: &str) -> Result<Option<String>, DockerError> {
        let inspect = self
            .block(self.docker.inspect_image(image))
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => DockerError::ImageMissing(image.to_owned()),
                source => DockerError::Engine {
                    action: "inspect the image",
                    source,
                },
            })?;
        Ok(inspect
            .config
            .and_then(|c| c.env)
            .unwrap_or_default()
            .iter()
            .find_map(|v| v.strip_prefix("PYTHON_VERSION=").map(str::to_owned)))
    }

    /// Removes containers with our label whose creating process is gone (a crashed caller).
    /// Returns how many were removed.
    pub fn reap_orphans(&self) -> usize {
        let filters = HashMap::from([("label", vec![format!("{LABEL}=1")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(containers) = self.block(self.docker.list_containers(Some(options))) else {
            return 0;
        };
        let mut reaped = 0;
        for container in containers {
            let owner = container
                .labels
                .as_ref()
                .and_then(|l| l.get(OWNER_LABEL))
                .and_then(|o| Owner::parse(o));
            let gone = owner.is_some_and(|o| self.owner.outlived(&o));
            if let (true, Some(id)) = (gone, container.id.as_deref())
                && self.remove(id).is_ok()
            {
                reaped += 1;
            }
        }
        reaped
    }

    /// Ids of every container with our label (all owners).
    pub fn labelled_containers(&self) -> Result<Vec<String>, DockerError> {
        let filters = HashMap::from([("label", vec![format!("{LABEL}=1")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .block(self.docker.list_containers(Some(options)))
            .map_err(engine_error("list containers"))?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Creates and starts a locked-down container that idles until executions arrive.
    pub fn start_container(&self, spec: &ContainerSpec<'_>) -> Result<String, DockerError> {
        let (memory, nano_cpus, pids) = resources(&spec.limits);
        // Scratch space as natively: each of /work, /tmp and /dev/shm, and every file.
        let disk = spec.limits.disk().bytes() as i64;
        let tmpfs_options = format!(
            "rw,nosuid,nodev,noexec,size={disk},nr_inodes=16384,mode=0700,uid={SANDBOX_UID},gid={SANDBOX_UID}"
        );
        let host_config = HostConfig {
            network_mode: Some("none".into()),
            // The sandbox's own name resolves, as natively (the generated /etc/hosts).
            extra_hosts: Some(vec![format!("{SANDBOX_HOSTNAME}:127.0.0.1")]),
            // IPv6 loopback, as natively (the engine turns IPv6 off in containers): the
            // namespace holds loopback only, so nothing else is reachable through it.
            sysctls: Some(HashMap::from([
                ("net.ipv6.conf.all.disable_ipv6".to_owned(), "0".to_owned()),
                ("net.ipv6.conf.lo.disable_ipv6".to_owned(), "0".to_owned()),
            ])),
            memory: Some(memory),
            memory_swap: Some(memory),
            memory_swappiness: None,
            nano_cpus: Some(nano_cpus),
            pids_limit: Some(pids),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([
                ("/tmp".to_owned(), tmpfs_options.clone()),
                (WORK_DIR.to_owned(), tmpfs_options),
            ])),
            shm_size: Some(disk),
            cap_drop: Some(vec!["ALL".into()]),
            // The wrapper's own two (it starts as root, forks the code's process, which drops
            // to the sandbox user and so loses them); nothing of the code's has any.
            cap_add: Some(vec!["SETUID".into(), "SETGID".into()]),
            // Our own seccomp profile: the native sandbox's allowlist (Docker's default lets
            // ptrace, io_uring and every socket family through, vsock among them).
            security_opt: Some(vec![
                "no-new-privileges".into(),
                format!("seccomp={}", crate::sandbox::seccomp::docker_profile()),
            ]),
            init: Some(true),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ipc_mode: Some("private".into()),
            privileged: Some(false),
            oom_kill_disable: Some(false),
            ulimits: Some(vec![
                ulimit("core", 0),
                ulimit("nofile", 1024),
                ulimit("memlock", 64 * 1024),
                ulimit("fsize", disk),
            ]),
            ..Default::default()
        };
        let labels = HashMap::from([
            (LABEL.to_owned(), "1".to_owned()),
            (OWNER_LABEL.to_owned(), self.owner.to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(spec.image.to_owned()),
            entrypoint: Some(vec![
                "python3".into(),
                "-I".into(),
                "-S".into(),
                "-c".into(),
                IDLE_SCRIPT.into(),
            ]),
            cmd: Some(Vec::new()),
            user: Some(CONTAINER_USER.into()),
            working_dir: Some(WORK_DIR.into()),
            hostname: Some(SANDBOX_HOSTNAME.into()),
            // Network mode `none` (a namespace with loopback only), not `network_disabled`:
            // with that the engine leaves /etc/hosts empty and even `localhost` fails.
            attach_stdin: Some(false),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            open_stdin: Some(false),
            tty: Some(false),
            labels: Some(labels),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().build();
        let id = self
            .block(self.docker.create_container(Some(options), body))
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => DockerError::ImageMissing(spec.image.to_owned()),
                source => DockerError::Engine {
                    action: "create the container",
                    source,
                },
            })?
            .id;
        if let Err(source) = self.block(self.docker.start_container(
            &id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )) {
            let _ = self.remove(&id);
            return Err(DockerError::Engine {
                action: "start the container",
                source,
            });
        }
        Ok(id)
    }

    /// Kills and removes a container with its anonymous volumes; an already removed one is
    /// not an error.
    pub fn remove(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.block(self.docker.remove_container(id, Some(options))) {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(source) => Err(DockerError::Engine {
                action: "remove the container",
                source,
            }),
        }
    }

    /// Whether the kernel's OOM killer struck in the container during its life.
    pub fn oom_killed(&self, id: &str) -> bool {
        self.block(self.docker.inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        ))
        .ok()
        .and_then(|i| i.state)
        .and_then(|s| s.oom_killed)
        .unwrap_or(false)
    }

    /// Whether the container still exists.
    pub fn exists(&self, id: &str) -> bool {
        self.block(self.docker.inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        ))
        .is_ok()
    }

    /// Applies new limits to a running container.
    pub fn update(&self, id: &str, limits: &Limits) -> Result<(), DockerError> {
        let (memory, nano_cpus, pids) = resources(limits);
        let body = ContainerUpdateBody {
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some(nano_cpus),
            pids_limit: Some(pids),
            ..Default::default()
        };
        self.block(self.docker.update_container(id, body))
            .map_err(engine_error("update the container's limits"))
    }

    /// Where the container's usage can be read from this process.
    pub fn usage_source(&self, id: &str) -> UsageSource {
        self.block(usage_source(&self.docker, id))
    }

    /// One usage reading.
    pub fn usage(&self, id: &str, source: &UsageSource) -> Result<UsagePoint, DockerError> {
        self.block(read_usage(&self.docker, id, source))
    }

    /// Kills every process of the sandbox user in a persistent container; returns the
    /// container's OOM-kill count.
    pub fn kill_sandbox_processes(&self, id: &str) -> Result<i64, DockerError> {
        self.block(kill_sandbox_processes(&self.docker, id))
    }

    /// Runs the wrapper in the container with the code on its stdin, enforcing the timeout and
    /// output cap from outside.
    pub fn execute(
        &self,
        id: &str,
        spec: &ExecSpec<'_>,
        wrapper: &[String],
        nonce: &str,
    ) -> Result<ExecOutcome, DockerError> {
        self.block(execute(&self.docker, id, spec, wrapper, nonce))
    }
}

fn ulimit(name: &str, value: i64) -> ResourcesUlimits {
    ResourcesUlimits {
        name: Some(name.into()),
        soft: Some(value),
        hard: Some(value),
    }
}

async fn usage_source(docker: &Docker, id: &str) -> UsageSource {
    let pid = docker
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .ok()
        .and_then(|i| i.state)
        .and_then(|s| s.pid)
        .filter(|&pid| pid > 0);
    // The pid is the engine's view; it names the container's init on this host only if the
    // cgroup it is in carries the container's id.
    pid.and_then(|pid| RunCgroup::of_process(pid as u32))
        .filter(|cgroup| cgroup.path_contains(id) && cgroup.exists())
        .map_or(UsageSource::Api, UsageSource::Cgroup)
}

async fn read_usage(
    docker: &Docker,
    id: &str,
    source: &UsageSource,
) -> Result<UsagePoint, DockerError> {
    match source {
        UsageSource::Cgroup(cgroup) => Ok(UsagePoint::from_cgroup(cgroup)),
        UsageSource::Api => stats_once(docker, id).await,
    }
}

async fn stats_once(docker: &Docker, id: &str) -> Result<UsagePoint, DockerError> {
    let options = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let mut stream = docker.stats(id, Some(options));
    match stream.next().await {
        Some(Ok(stats)) => Ok(UsagePoint::from_response(&stats)),
        Some(Err(source)) => Err(DockerError::Engine {
            action: "read the container's stats",
            source,
        }),
        None => Err(DockerError::Protocol("the engine sent no stats".into())),
    }
}

/// Starts an exec attached to stdout/stderr (and stdin when `stdin`), as `user`.
async fn start_exec(
    docker: &Docker,
    id: &str,
    cmd: Vec<String>,
    stdin: bool,
    user: &str,
) -> Result<(String, StartExecResults), DockerError> {
    let options = CreateExecOptions {
        attach_stdin: Some(stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        cmd: Some(cmd),
        user: Some(user.to_owned()),
        working_dir: Some(WORK_DIR.to_owned()),
        env: Some(vec![
            "LANG=C.UTF-8".into(),
            "LC_ALL=C.UTF-8".into(),
            format!("HOME={WORK_DIR}"),
            "TMPDIR=/tmp".into(),
        ]),
        ..Default::default()
    };
    let created = docker
        .create_exec(id, options)
        .await
        .map_err(engine_error("create an exec"))?;
    let started = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: Some(64 * 1024),
            }),
        )
        .await
        .map_err(engine_error("start an exec"))?;
    Ok((created.id, started))
}

async fn kill_sandbox_processes(docker: &Docker, id: &str) -> Result<i64, DockerError> {
    let cmd = vec![
        "python3".to_owned(),
        "-I".into(),
        "-S".into(),
        "-c".into(),
        KILL_SCRIPT.into(),
    ];
    let (_, started) = start_exec(docker, id, cmd, false, SANDBOX_USER).await?;
    let StartExecResults::Attached { mut output, .. } = started else {
        return Err(DockerError::Protocol("the kill exec did not attach".into()));
    };
    let mut text = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = output.next().await {
            if let LogOutput::StdOut { message } = chunk {
                text.extend_from_slice(&message);
            }
        }
    };
    if tokio::time::timeout(KILL_GRACE, read).await.is_err() {
        return Err(DockerError::Protocol(
            "killing the sandbox's processes did not finish in time".into(),
        ));
    }
    String::from_utf8_lossy(&text)
        .trim()
        .parse()
        .map_err(|_| DockerError::Protocol("killing the sandbox's processes failed".into()))
}

/// Stops a run's processes; for a persistent container a failing kill exec (e.g. a fork bomb
/// holding every pid) is retried with a few pids of headroom.
async fn stop_run(
    docker: &Docker,
    id: &str,
    mode: KillMode,
    source: &UsageSource,
    outcome: &mut ExecOutcome,
) {
    if let Ok(stats) = read_usage(docker, id, source).await {
        outcome.cpu_ns_at_stop = Some(stats.cpu_total_ns);
        outcome.sampled_peak_bytes = outcome.sampled_peak_bytes.max(stats.memory_bytes).max(
            if mode == KillMode::Container {
                stats.max_memory_bytes.unwrap_or(0)
            } else {
                0
            },
        );
    }
    match mode {
        KillMode::Container => {
            let _ = docker
                .kill_container(
                    id,
                    Some(
                        bollard::query_parameters::KillContainerOptionsBuilder::new()
                            .signal("SIGKILL")
                            .build(),
                    ),
                )
                .await;
        }
        KillMode::SandboxProcesses => {
            if let Ok(n) = kill_sandbox_processes(docker, id).await {
                outcome.oom_total_after_kill = Some(n);
                return;
            }
            let Ok(inspect) = docker
                .inspect_container(
                    id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
            else {
                return;
            };
            let pids = inspect.host_config.and_then(|h| h.pids_limit).unwrap_or(0);
            let bump = ContainerUpdateBody {
                pids_limit: Some(pids + 16),
                ..Default::default()
            };
            if docker.update_container(id, bump).await.is_ok() {
                if let Ok(n) = kill_sandbox_processes(docker, id).await {
                    outcome.oom_total_after_kill = Some(n);
                }
                let restore = ContainerUpdateBody {
                    pids_limit: Some(pids),
                    ..Default::default()
                };
                let _ = docker.update_container(id, restore).await;
            }
        }
    }
}

async fn execute(
    docker: &Docker,
    id: &str,
    spec: &ExecSpec<'_>,
    wrapper: &[String],
    nonce: &str,
) -> Result<ExecOutcome, DockerError> {
    let (exec_id, started) = start_exec(docker, id, wrapper.to_vec(), true, WRAPPER_USER).await?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err(DockerError::Protocol("the exec did not attach".into()));
    };
    let begun = Instant::now();
    // The code and its stdin go in on their own task: a run that never reads its stdin must
    // not block the output from being read.
    let mut payload = format!("{nonce} {}\n", spec.code.len()).into_bytes();
    payload.extend_from_slice(spec.code);
    if let Some(stdin) = spec.stdin {
        payload.extend_from_slice(stdin);
    }
    let writer = tokio::spawn(async move {
        let _ = input.write_all(&payload).await;
        let _ = input.shutdown().await;
    });
    // Where usage is read, and the container's CPU time now (in case the run must be
    // stopped before the wrapper can measure it): found alongside the run, not before it.
    let mut probe = Some({
        let (docker, id, given) = (docker.clone(), id.to_owned(), spec.usage.cloned());
        tokio::spawn(async move {
            let source = match given {
                Some(source) => source,
                None => usage_source(&docker, &id).await,
            };
            let cpu = read_usage(&docker, &id, &source)
                .await
                .ok()
                .map(|u| u.cpu_total_ns);
            (source, cpu)
        })
    });
    let sampled = Arc::new(Mutex::new(Sampled::default()));
    let monitor = spec.monitor.map(|interval| {
        let (docker, id, given) = (docker.clone(), id.to_owned(), spec.usage.cloned());
        let into = Arc::clone(&sampled);
        tokio::spawn(async move {
            let source = match given {
                Some(source) => source,
                None => usage_source(&docker, &id).await,
            };
            sample_loop(docker, id, source, interval, begun, into).await
        })
    });

    let mut outcome = ExecOutcome::default();
    let stderr_cap = spec.output_cap + FRAME_CAP;
    let deadline = tokio::time::Instant::from_std(begun + spec.timeout);
    let mut kill_deadline: Option<tokio::time::Instant> = None;
    loop {
        let until = match (kill_deadline, spec.cancel) {
            (Some(at), _) => at,
            (None, Some(_)) => deadline.min(tokio::time::Instant::now() + CANCEL_POLL),
            (None, None) => deadline,
        };
        let next = tokio::time::timeout_at(until, output.next()).await;
        let stop = match next {
            Ok(Some(Ok(LogOutput::StdOut { message }))) => {
                let room = spec.output_cap.saturating_sub(outcome.stdout.len());
                outcome
                    .stdout
                    .extend_from_slice(&message[..message.len().min(room)]);
                (message.len() > room).then(|| {
                    outcome.stdout_truncated = true;
                    Stop::StdoutCap
                })
            }
            Ok(Some(Ok(LogOutput::StdErr { message }))) => {
                let room = stderr_cap.saturating_sub(outcome.stderr.len());
                outcome
                    .stderr
                    .extend_from_slice(&message[..message.len().min(room)]);
                (message.len() > room).then_some(Stop::StderrCap)
            }
            Ok(Some(Ok(_))) => None,
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) if kill_deadline.is_some() => break,
            Err(_) if spec.cancel.is_some_and(Cancel::is_cancelled) => Some(Stop::Cancelled),
            Err(_) if tokio::time::Instant::now() < deadline => None,
            Err(_) => Some(Stop::Timeout),
        };
        if let Some(stop) = stop
            && outcome.stop.is_none()
        {
            outcome.stop = Some(stop);
            outcome.duration = begun.elapsed();
            let (source, cpu_at_start) = match probe.take() {
                Some(probe) => probe.await.unwrap_or((UsageSource::Api, None)),
                None => (UsageSource::Api, None),
            };
            outcome.cpu_ns_at_start = cpu_at_start;
            stop_run(docker, id, spec.kill, &source, &mut outcome).await;
            kill_deadline = Some(tokio::time::Instant::now() + KILL_GRACE);
        }
    }
    if outcome.stop.is_none() {
        outcome.duration = begun.elapsed();
    }
    writer.abort();
    if let Some(probe) = probe.take() {
        probe.abort();
    }
    if let Some(monitor) = monitor {
        monitor.abort();
        let _ = monitor.await;
        if let Ok(mut sampled) = sampled.lock() {
            outcome.samples = std::mem::take(&mut sampled.samples);
            outcome.sampled_peak_bytes = outcome.sampled_peak_bytes.max(sampled.peak_bytes);
        }
    }
    if let Ok(inspect) = docker.inspect_exec(&exec_id).await {
        outcome.exit_code = inspect.exit_code.filter(|_| inspect.running != Some(true));
    }
    Ok(outcome)
}

/// What the sampler has seen so far; read after the sampler is stopped.
#[derive(Default)]
struct Sampled {
    samples: Vec<Sample>,
    peak_bytes: u64,
}

/// Samples the container's stats every `interval` until aborted.
async fn sample_loop(
    docker: Docker,
    id: String,
    source: UsageSource,
    interval: Duration,
    begun: Instant,
    into: Arc<Mutex<Sampled>>,
) {
    let mut previous: Option<UsagePoint> = None;
    loop {
        tokio::time::sleep(interval).await;
        let Ok(point) = read_usage(&docker, &id, &source).await else {
            return;
        };
        let Ok(mut sampled) = into.lock() else { return };
        sampled.peak_bytes = sampled.peak_bytes.max(point.memory_bytes);
        if let Some(before) = &previous
            && sampled.samples.len() < 100_000
        {
            sampled.samples.push(Sample {
                timestamp_ms: point.at.duration_since(begun).as_secs_f64() * 1000.0,
                cpu_percent: point.cpu_percent_since(before),
                memory_mb: point.memory_bytes as f64 / (1024.0 * 1024.0),
                pids: point.pids,
            });
        }
        previous = Some(point);
    }
}
