//! The work holder: `code-exec __work_holder` (config on fd 6), one per persistent sandbox of
//! an unprivileged tool, which cannot mount anything on the host. It enters a user namespace
//! of its own (its root is the caller's uid) and a mount namespace, mounts a size- and
//! inode-limited tmpfs on the sandbox's work directory there, says so, and lives until its
//! control channel ends: the tmpfs, and so `/work`, lives as long as it does. Each execution's
//! helper enters these namespaces before it builds the sandbox, so `/work` is bounded in total
//! and nothing of it reaches the host's disk. Runs in the holder.

use std::io::Write;

use crate::protocol::{self, WorkHolderConfig, exit_code, fds};
use crate::sys::{self, isolation};

pub(crate) fn main(config_json: &str) -> i32 {
    // SAFETY: fds 4 and 5 were placed by the host for this process alone.
    let taken = unsafe {
        (
            sys::take_inherited_fd(fds::STATUS),
            sys::take_inherited_fd(fds::CONTROL),
        )
    };
    let (Ok(status), Ok(control)) = taken else {
        return exit_code::NO_STATUS_CHANNEL;
    };
    let mut status = std::fs::File::from(status);
    let config = match serde_json::from_str::<WorkHolderConfig>(config_json) {
        Ok(config) => config,
        Err(e) => {
            let _ = write!(status, "bad work holder config: {e}");
            return exit_code::SETUP_FAILED;
        }
    };
    if let Err(e) = hold(&config) {
        let _ = write!(status, "holding the work directory: {e}");
        return exit_code::SETUP_FAILED;
    }
    if status.write_all(protocol::WORK_HOLDER_READY).is_err() {
        return exit_code::NO_STATUS_CHANNEL;
    }
    drop(status);
    protocol::wait_for_kill(control);
    0
}

/// Its steps: a user namespace whose root is the caller, a mount namespace, the tmpfs.
fn hold(config: &WorkHolderConfig) -> std::io::Result<()> {
    isolation::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS)?;
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write(
        "/proc/self/uid_map",
        format!("0 {} 1\n", config.outside_uid),
    )?;
    std::fs::write(
        "/proc/self/gid_map",
        format!("0 {} 1\n", config.outside_gid),
    )?;
    sys::mount::mount_fs(
        "tmpfs",
        &config.work_dir,
        libc::MS_NOSUID | libc::MS_NODEV,
        &format!("size={},nr_inodes=16384,mode=700,uid=0,gid=0", config.bytes),
    )
}
