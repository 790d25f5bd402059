//! Per-run host directories (`<base>/code-exec-<pid>-XXXXXX`, mode 0700): the code file, the
//! stdin file, and the mount point of a sandbox's root. Removed when the run ends; those of a
//! caller that crashed carry its dead pid and are reaped by the next backend that starts. The
//! base of a root tool is [`ROOT_BASE`], a root-owned 0700 directory no other user can put
//! anything in; an unprivileged tool's is `$TMPDIR`, where it reaps only directories it owns.
//! Nothing is followed through a link. Runs in the host process.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const PREFIX: &str = "code-exec-";
/// Where a tool running as root keeps its run directories.
pub(crate) const ROOT_BASE: &str = "/run/code-exec";

/// The directory run directories go in: for root, [`ROOT_BASE`] (created 0700; refused if it
/// is a link, or not a directory owned by root); otherwise `$TMPDIR`.
pub(crate) fn base() -> std::io::Result<PathBuf> {
    if crate::sys::effective_uid() != 0 {
        return Ok(std::env::temp_dir());
    }
    private_base(Path::new(ROOT_BASE))
}

/// Makes `base` a private directory of this user (created 0700, made 0700); an error if it is
/// a link or someone else's.
pub(super) fn private_base(base: &Path) -> std::io::Result<PathBuf> {
    match std::fs::DirBuilder::new().mode(0o700).create(base) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = base.symlink_metadata()?;
    if !meta.file_type().is_dir() || meta.uid() != crate::sys::effective_uid() {
        return Err(std::io::Error::other(format!(
            "refusing {} for run directories: it must be a directory of this user, not a \
             link (found uid {}, {:?})",
            base.display(),
            meta.uid(),
            meta.file_type()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(base.to_owned())
}

/// A run's private directory, removed on drop with everything the code left in it (see
/// `sys::remove_tree`: any depth, locked directories, links never followed).
#[derive(Debug)]
pub(crate) struct Workspace {
    dir: PathBuf,
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = crate::sys::remove_tree(&self.dir);
    }
}

impl Workspace {
    pub(crate) fn create() -> std::io::Result<Workspace> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-", std::process::id()))
            .tempdir_in(base()?)?
            .keep();
        let workspace = Workspace { dir };
        std::fs::set_permissions(workspace.path(), std::fs::Permissions::from_mode(0o700))?;
        Ok(workspace)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes the code to `main.py` and returns its path.
    pub(crate) fn write_code(&self, code: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.path().join("main.py");
        std::fs::write(&path, code)?;
        Ok(path)
    }

    /// The code's stdin: a file holding `bytes`, or /dev/null.
    pub(crate) fn stdin(&self, bytes: Option<&[u8]>) -> std::io::Result<File> {
        match bytes {
            Some(bytes) => {
                let path = self.path().join("stdin");
                std::fs::write(&path, bytes)?;
                File::open(&path)
            }
            None => File::open("/dev/null"),
        }
    }

    /// A run directory holding the request's code and stdin, plus an empty subdirectory
    /// `subdir`: returns the directory, the code's path, the subdirectory and the stdin file.
    pub(crate) fn for_request(
        code: &[u8],
        stdin: Option<&[u8]>,
        subdir: &str,
    ) -> std::io::Result<(Workspace, PathBuf, PathBuf, File)> {
        let workspace = Workspace::create()?;
        let code_path = workspace.write_code(code)?;
        let dir = workspace.subdir(subdir)?;
        let stdin = workspace.stdin(stdin)?;
        Ok((workspace, code_path, dir, stdin))
    }

    /// Creates (and returns) a subdirectory.
    pub(crate) fn subdir(&self, name: &str) -> std::io::Result<PathBuf> {
        let path = self.path().join(name);
        std::fs::create_dir(&path)?;
        Ok(path)
    }
}

/// Removes the run directories of processes that no longer exist: real directories (never
/// links) owned by this tool's user, named for a dead pid; a persistent sandbox's `work`
/// mount inside is detached first, never through a link.
pub(crate) fn reap_stale() {
    if let Ok(base) = base() {
        reap_stale_in(&base);
    }
}

fn reap_stale_in(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = crate::sys::effective_uid();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        // `DirEntry::metadata` does not follow a link.
        let ours = entry
            .metadata()
            .is_ok_and(|m| m.file_type().is_dir() && m.uid() == me);
        if ours && !Path::new(&format!("/proc/{pid}")).exists() {
            let work = entry.path().join("work");
            if work
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_dir())
            {
                crate::sys::mount::unmount(&work);
            }
            let _ = crate::sys::remove_tree(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dead_pid() -> u32 {
        (4_000_000u32..)
            .find(|p| !Path::new(&format!("/proc/{p}")).exists())
            .unwrap()
    }

    #[test]
    fn reaps_only_real_directories_of_this_user_and_follows_no_link() {
        let base = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let pid = dead_pid();
        // Ours, dead: removed, and its `work` link is not followed.
        let stale = base.path().join(format!("{PREFIX}{pid}-a"));
        std::fs::create_dir(&stale).unwrap();
        symlink(outside.path(), stale.join("work")).unwrap();
        // A link named like a run directory: left alone, its target untouched.
        let link = base.path().join(format!("{PREFIX}{pid}-b"));
        symlink(outside.path(), &link).unwrap();
        // A live process's: kept.
        let live = base
            .path()
            .join(format!("{PREFIX}{}-c", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        // Someone else's (only root can make one): kept.
        let foreign = base.path().join(format!("{PREFIX}{pid}-d"));
        std::fs::create_dir(&foreign).unwrap();
        let root = crate::sys::effective_uid() == 0;
        if root {
            std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
        }
        reap_stale_in(base.path());
        assert!(!stale.exists());
        assert!(link.symlink_metadata().is_ok());
        assert!(live.exists());
        assert_eq!(foreign.exists(), root);
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn a_private_base_is_made_private_and_a_link_is_refused() {
        let parent = tempfile::tempdir().unwrap();
        let base = parent.path().join("base");
        std::fs::create_dir(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(private_base(&base).unwrap(), base);
        assert_eq!(base.metadata().unwrap().mode() & 0o777, 0o700);
        let link = parent.path().join("link");
        symlink(&base, &link).unwrap();
        let err = private_base(&link).unwrap_err().to_string();
        assert!(err.contains("not a link"), "{err}");
        let fresh = parent.path().join("fresh");
        private_base(&fresh).unwrap();
        assert_eq!(fresh.metadata().unwrap().mode() & 0o777, 0o700);
    }
}
