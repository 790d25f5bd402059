//! The sandbox's filesystem: a fresh tmpfs root holding read-only binds of only what the
//! interpreter needs, generated `/etc` files, a fresh `/proc` with sensitive files masked, a
//! tiny `/dev`, private size- and inode-limited tmpfs for `/tmp`, `/dev/shm` and `/work`, and
//! the code at `/code/main.py`. Every mount is `nosuid`; all but the device binds `nodev`.
//! Runs in the init, in its own mount namespace, before `pivot_root`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{CODE_PATH, Exposure, SANDBOX_HOSTNAME, SANDBOX_UID, SandboxConfig};
use crate::sys::isolation;
use crate::sys::mount::{
    self, ATTR_NODEV, ATTR_NOEXEC, ATTR_NOSUID, ATTR_RDONLY, bind, mount_fs, remount,
};

const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];
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

pub(super) fn build(config: &SandboxConfig, code: &[u8]) -> std::io::Result<()> {
    mount::make_all_private()?;
    let root_size = code.len() as u64 + 4 * 1024 * 1024;
    mount_fs(
        "tmpfs",
        &config.root_dir,
        libc::MS_NOSUID | libc::MS_NODEV,
        &format!("size={root_size},nr_inodes=4096,mode=755,uid={SANDBOX_UID},gid={SANDBOX_UID}"),
    )?;
    // Open every source while the init still has its original host identity.
    let mut sources = Vec::new();
    for exposure in &config.exposed {
        if let Exposure::Dir(path) | Exposure::File(path) = exposure {
            sources.push((exposure, open_path(path)?));
        }
    }
    let work_source = config.work_dir.as_deref().map(open_path).transpose()?;
    let devices: Vec<(&str, OwnedFd)> = DEVICES
        .iter()
        .map(|d| Ok((*d, open_path(&Path::new("/dev").join(d))?)))
        .collect::<std::io::Result<_>>()?;
    std::env::set_current_dir(&config.root_dir)?;

    // From here on the init is the sandbox uid (mapped, so it can create files), keeping its
    // capabilities inside the user namespace until the root is finished.
    isolation::keep_capabilities_across_setuid()?;
    isolation::become_user(SANDBOX_UID, SANDBOX_UID)?;

    let read_only = ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV;
    // The private filesystems first: an exposed path below one of them (a virtual
    // environment in /tmp, say) is then bound on top, not hidden underneath.
    let private_tmpfs = |dir: &str, bytes: u64, mode: &str, flags: libc::c_ulong| {
        std::fs::create_dir_all(dir)?;
        mount_fs(
            "tmpfs",
            Path::new(dir),
            libc::MS_NOSUID | libc::MS_NODEV | flags,
            &format!(
                "size={bytes},nr_inodes=16384,mode={mode},uid={SANDBOX_UID},gid={SANDBOX_UID}"
            ),
        )
    };
    private_tmpfs("tmp", config.tmp_bytes, "1777", 0)?;
    let work = super::WORK_DIR.trim_start_matches('/');
    match &work_source {
        // A persistent sandbox's work directory (owned by the sandbox's host uid).
        Some(fd) => {
            std::fs::create_dir_all(work)?;
            bind(&fd_path(fd), Path::new(work), ATTR_NOSUID | ATTR_NODEV)?;
        }
        None => private_tmpfs(work, config.work_bytes, "700", 0)?,
    }

    for (exposure, fd) in &sources {
        match exposure {
            Exposure::Dir(path) => {
                let target = inside(path);
                std::fs::create_dir_all(&target)?;
                bind(&fd_path(fd), &target, read_only)?;
            }
            Exposure::File(path) => {
                let target = inside(path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                File::create(&target)?;
                bind(&fd_path(fd), &target, read_only)?;
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
    write_etc()?;

    // /proc for the new PID namespace, with the host-revealing parts masked.
    std::fs::create_dir_all("proc")?;
    mount_fs(
        "proc",
        Path::new("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    )?;
    let null = &devices[0].1;
    for name in PROC_MASKED_FILES {
        let target = Path::new("proc").join(name);
        if target.exists() {
            bind(&fd_path(null), &target, read_only | ATTR_NOEXEC)?;
        }
    }
    for name in PROC_READ_ONLY_DIRS {
        let target = Path::new("proc").join(name);
        if target.is_dir() {
            bind(&target, &target, read_only | ATTR_NOEXEC)?;
        }
    }

    // A tiny /dev: the harmless devices, bound from the host (a tmpfs made in a user
    // namespace cannot hold working device nodes), and a private /dev/shm.
    std::fs::create_dir_all("dev")?;
    mount_fs(
        "tmpfs",
        Path::new("dev"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        &format!("size=64k,nr_inodes=64,mode=755,uid={SANDBOX_UID},gid={SANDBOX_UID}"),
    )?;
    for (name, fd) in &devices {
        let target = Path::new("dev").join(name);
        File::create(&target)?;
        bind(&fd_path(fd), &target, ATTR_NOSUID | ATTR_NOEXEC)?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, Path::new("dev").join(link))?;
    }
    private_tmpfs("dev/shm", config.tmp_bytes, "1777", libc::MS_NOEXEC)?;

    let code_path = inside(Path::new(CODE_PATH));
    if let Some(parent) = code_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_file(&code_path, code, 0o444)?;

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

/// Minimal generated /etc: who the sandbox user is, its hostname, and name resolution that
/// knows only loopback.
fn write_etc() -> std::io::Result<()> {
    std::fs::create_dir_all("etc")?;
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
            "passwd: files\ngroup: files\nhosts: files\n".into(),
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
