//! The sandbox's filesystem: a fresh tmpfs root holding read-only binds of only what the
//! interpreter needs, generated `/etc` files, a fresh `/proc` with sensitive files masked, a
//! tiny `/dev` with its own devpts instance, private size- and inode-limited tmpfs for `/tmp`,
//! `/dev/shm` and `/work`, and the code at `/code/main.py`. Every mount is `nosuid`; all but the device binds `nodev`.
//! Built by the init, in its own mount namespace, before `pivot_root`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{CODE_PATH, SANDBOX_HOSTNAME, SANDBOX_UID, WORK_DIR};
use crate::limits::MAX_CODE_BYTES;
use crate::protocol::{Exposure, SandboxConfig};
use crate::sys::isolation;
use crate::sys::mount::{
    self, ATTR_NODEV, ATTR_NOEXEC, ATTR_NOSUID, ATTR_RDONLY, bind, mount_fs, remount,
};

const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];
/// How many pseudo-terminals a sandbox may hold at once: a few for `pty`, `pexpect` and
/// asyncio's pty pipes, and a small share of the kernel's (`kernel.pty.max`, of which
/// instances other than the host's cannot take the reserved part).
const PTY_MAX: u32 = 64;
/// Files of /proc that reveal or touch the host kernel: hidden behind /dev/null.
const PROC_MASKED_FILES: [&str; 7] = [
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "sysrq-trigger",
    "latency_stats",
    "kallsyms",
];
/// Directories of /proc that configure the host kernel: read-only.
const PROC_READ_ONLY_DIRS: [&str; 5] = ["sys", "bus", "fs", "irq", "acpi"];

/// Opens a host path without following a final symlink, for binding later through
/// `/proc/self/fd` (the lookup happens now, with the init's original host identity).
fn open_path(path: &Path) -> std::io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
    Ok(OwnedFd::from(file))
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A path inside the new root, relative to it (the init works from the root's directory).
fn inside(path: &Path) -> PathBuf {
    Path::new(".").join(path.strip_prefix("/").unwrap_or(path))
}

fn write_file(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(content)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// Builds the root in the init's own mount namespace, step by step, then pivots into it.
pub(crate) fn build(config: &SandboxConfig, code: &[u8]) -> std::io::Result<()> {
    mount::make_all_private()?;
    mount_root_tmpfs(config, code.len())?;
    let sources = HostSources::open(config)?;
    std::env::set_current_dir(&config.root_dir)?;
    become_sandbox_user()?;
    mount_private_filesystems(config, &sources)?;
    bind_exposures(config, &sources)?;
    write_etc()?;
    mount_proc(&sources)?;
    mount_dev(config, &sources)?;
    write_code(config, code)?;
    pivot_and_seal()
}

/// The read-only flags of every bind of host paths.
const READ_ONLY: u64 = ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV;

/// The new root: a small tmpfs owned by the sandbox user.
fn mount_root_tmpfs(config: &SandboxConfig, code_bytes: usize) -> std::io::Result<()> {
    let root_size = code_bytes as u64 + 4 * 1024 * 1024;
    mount_fs(
        "tmpfs",
        &config.root_dir,
        libc::MS_NOSUID | libc::MS_NODEV,
        &format!("size={root_size},nr_inodes=4096,mode=755,uid={SANDBOX_UID},gid={SANDBOX_UID}"),
    )
}

/// Every host path the root binds, opened while the init still has its original host
/// identity (and never through a final symlink).
struct HostSources<'a> {
    exposed: Vec<(&'a Exposure, OwnedFd)>,
    work: Option<OwnedFd>,
    devices: Vec<(&'static str, OwnedFd)>,
}

impl<'a> HostSources<'a> {
    fn open(config: &'a SandboxConfig) -> std::io::Result<HostSources<'a>> {
        let mut exposed = Vec::new();
        for exposure in &config.exposed {
            if let Exposure::Dir(path) | Exposure::File(path) = exposure {
                exposed.push((exposure, open_path(path)?));
            }
        }
        let work = config.work_dir.as_deref().map(open_path).transpose()?;
        let devices = DEVICES
            .iter()
            .map(|d| Ok((*d, open_path(&Path::new("/dev").join(d))?)))
            .collect::<std::io::Result<_>>()?;
        Ok(HostSources {
            exposed,
            work,
            devices,
        })
    }

    fn null(&self) -> &OwnedFd {
        &self.devices[0].1
    }
}

/// From here on the init is the sandbox uid (mapped, so it can create files), keeping its
/// capabilities inside the user namespace until the root is finished.
fn become_sandbox_user() -> std::io::Result<()> {
    isolation::keep_capabilities_across_setuid()?;
    isolation::become_user(SANDBOX_UID, SANDBOX_UID)
}

/// A private, size- and inode-limited tmpfs at `dir` (relative to the new root).
fn private_tmpfs(dir: &str, bytes: u64, mode: &str, flags: libc::c_ulong) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    mount_fs(
        "tmpfs",
        Path::new(dir),
        libc::MS_NOSUID | libc::MS_NODEV | flags,
        &format!("size={bytes},nr_inodes=16384,mode={mode},uid={SANDBOX_UID},gid={SANDBOX_UID}"),
    )
}

/// `/tmp` and `/work` first: an exposed path below one of them (a virtual environment in
/// /tmp, say) is then bound on top, not hidden underneath.
fn mount_private_filesystems(
    config: &SandboxConfig,
    sources: &HostSources<'_>,
) -> std::io::Result<()> {
    private_tmpfs("tmp", config.tmp_bytes, "1777", 0)?;
    let work = WORK_DIR.trim_start_matches('/');
    match &sources.work {
        // A persistent sandbox's work directory (owned by the sandbox's host uid).
        Some(fd) => {
            std::fs::create_dir_all(work)?;
            bind(&fd_path(fd), Path::new(work), ATTR_NOSUID | ATTR_NODEV)
        }
        None => private_tmpfs(work, config.work_bytes, "700", 0),
    }
}

/// The exposed host directories and files, read-only at their own paths; then the symlinks.
fn bind_exposures(config: &SandboxConfig, sources: &HostSources<'_>) -> std::io::Result<()> {
    for (exposure, fd) in &sources.exposed {
        match exposure {
            Exposure::Dir(path) => {
                let target = inside(path);
                std::fs::create_dir_all(&target)?;
                bind(&fd_path(fd), &target, READ_ONLY)?;
            }
            Exposure::File(path) => {
                let target = inside(path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                File::create(&target)?;
                bind(&fd_path(fd), &target, READ_ONLY)?;
            }
            Exposure::Symlink { .. } => {}
        }
    }
    for exposure in &config.exposed {
        if let Exposure::Symlink { path, target } = exposure {
            let link = inside(path);
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::os::unix::fs::symlink(target, &link)?;
        }
    }
    Ok(())
}

/// /proc for the new PID namespace, with the host-revealing parts masked.
fn mount_proc(sources: &HostSources<'_>) -> std::io::Result<()> {
    std::fs::create_dir_all("proc")?;
    mount_fs(
        "proc",
        Path::new("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    )?;
    for name in PROC_MASKED_FILES {
        let target = Path::new("proc").join(name);
        if target.exists() {
            bind(&fd_path(sources.null()), &target, READ_ONLY | ATTR_NOEXEC)?;
        }
    }
    for name in PROC_READ_ONLY_DIRS {
        let target = Path::new("proc").join(name);
        if target.is_dir() {
            bind(&target, &target, READ_ONLY | ATTR_NOEXEC)?;
        }
    }
    Ok(())
}

/// A tiny /dev: the harmless devices, bound from the host (a tmpfs made in a user namespace
/// cannot hold working device nodes), the usual links, and a private /dev/shm.
fn mount_dev(config: &SandboxConfig, sources: &HostSources<'_>) -> std::io::Result<()> {
    std::fs::create_dir_all("dev")?;
    mount_fs(
        "tmpfs",
        Path::new("dev"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        &format!("size=64k,nr_inodes=64,mode=755,uid={SANDBOX_UID},gid={SANDBOX_UID}"),
    )?;
    for (name, fd) in &sources.devices {
        let target = Path::new("dev").join(name);
        File::create(&target)?;
        bind(&fd_path(fd), &target, ATTR_NOSUID | ATTR_NOEXEC)?;
    }
    mount_private_devpts()?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, Path::new("dev").join(link))?;
    }
    private_tmpfs("dev/shm", config.tmp_bytes, "1777", libc::MS_NOEXEC)
}

/// Pseudo-terminals the sandbox's own: a new devpts instance (none of the host's terminals
/// in it), its `ptmx` open to the sandbox user, and at most [`PTY_MAX`] of them at a time.
fn mount_private_devpts() -> std::io::Result<()> {
    std::fs::create_dir_all("dev/pts")?;
    mount_fs(
        "devpts",
        Path::new("dev/pts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        &format!("newinstance,ptmxmode=0666,mode=0620,max={PTY_MAX}"),
    )
}

/// The code, read-only, at [`CODE_PATH`]. A pre-started sandbox's code arrives later, through
/// the runner, which writes it there itself (mode 0444): its `/code` is a small tmpfs of the
/// sandbox user's, the one place of the root that stays writable.
fn write_code(config: &SandboxConfig, code: &[u8]) -> std::io::Result<()> {
    let code_path = inside(Path::new(CODE_PATH));
    let Some(parent) = code_path.parent() else {
        return Err(std::io::Error::other("the code's path has no directory"));
    };
    std::fs::create_dir_all(parent)?;
    if config.interpreter.runner.pooled.is_some() {
        // The largest code a request may carry; two inodes, the directory and main.py, so
        // that the code can make no other file there (main.py itself, its own, it could
        // grow back to this size: bounded, and counted by the memory cgroup).
        let bytes = MAX_CODE_BYTES + 64 * 1024;
        return mount_fs(
            "tmpfs",
            parent,
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            &format!("size={bytes},nr_inodes=2,mode=755,uid={SANDBOX_UID},gid={SANDBOX_UID}"),
        );
    }
    write_file(&code_path, code, 0o444)
}

/// Into the new root, the old one detached; `/` and `/dev` read-only.
fn pivot_and_seal() -> std::io::Result<()> {
    mount::pivot_to_cwd()?;
    std::env::set_current_dir("/")?;
    remount(
        Path::new("/dev"),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
    )?;
    remount(
        Path::new("/"),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
    )
}

/// Name-service tables a host without network still answers from (`getservbyname`,
/// `getaddrinfo(host, "https")`, `getprotobyname`): the host's, copied (a copy costs less
/// than a bind, and its teardown, per run).
const HOST_TABLES: [&str; 2] = ["services", "protocols"];
/// The most of each that is copied.
const HOST_TABLE_CAP: u64 = 1 << 20;

/// Minimal generated /etc: who the sandbox user is, its hostname, name resolution that knows
/// only loopback, and copies of the host's services and protocols tables when it has them.
fn write_etc() -> std::io::Result<()> {
    std::fs::create_dir_all("etc")?;
    for name in HOST_TABLES {
        // Read through the host's root, still reachable before the pivot; a missing table
        // stays missing, as on the host.
        let Ok(host) = File::open(Path::new("/etc").join(name)) else {
            continue;
        };
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(host, HOST_TABLE_CAP), &mut content)?;
        write_file(&Path::new("etc").join(name), &content, 0o644)?;
    }
    let files: [(&str, String); 6] = [
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:/work:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
        ),
        (
            "group",
            format!("root:x:0:\nsandbox:x:{SANDBOX_UID}:\nnogroup:x:65534:\n"),
        ),
        ("hostname", format!("{SANDBOX_HOSTNAME}\n")),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost {SANDBOX_HOSTNAME}\n::1\tlocalhost ip6-localhost\n"),
        ),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files\nservices: files\nprotocols: files\nnetworks: files\n".into(),
        ),
        ("resolv.conf", String::new()),
    ];
    for (name, content) in files {
        let target = Path::new("etc").join(name);
        // A host file of the same name may have been exposed (e.g. ld.so.cache is, these are
        // not); never write through a bind.
        if !target.exists() {
            write_file(&target, content.as_bytes(), 0o644)?;
        }
    }
    Ok(())
}
