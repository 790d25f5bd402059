//! Per-run host directories (`$TMPDIR/code-exec-<pid>-XXXXXX`, mode 0700): the code file, the
//! stdin file, and the mount point of a sandbox's root. Removed when the run ends; those of a
//! caller that crashed carry its dead pid and are reaped by the next backend that starts.
//! Runs in the host process.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const PREFIX: &str = "code-exec-";

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
            .tempdir()?
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

/// Removes the run directories of processes that no longer exist.
pub(crate) fn reap_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && !Path::new(&format!("/proc/{pid}")).exists() {
            // A persistent sandbox's work directory may be a tmpfs mounted on the host.
            crate::sys::mount::unmount(&entry.path().join("work"));
            let _ = crate::sys::remove_tree(&entry.path());
        }
    }
}
