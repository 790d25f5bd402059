//! Finding the Python interpreter that runs the code: a real executable, never a shell script
//! or a version-manager shim (a shim forks a shell, breaks under a small pids limit, and may
//! pick another interpreter than the one the syntax was checked for). Runs in the host process.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use thiserror::Error;

use crate::syntax::PythonVersion;

#[derive(Debug, Error)]
pub enum InterpreterError {
    #[error(
        "no Python interpreter found: looked for an executable python3 on PATH and in /usr/bin, /usr/local/bin (shims and scripts are skipped); pass --python PATH"
    )]
    NotFound,
    #[error("--python {path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
}

/// A resolved interpreter: a canonical path to an executable binary, its version, and — when
/// it was named through a virtual environment (`venv/bin/python`) — that environment, so
/// the code imports the environment's packages as it would outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    path: PathBuf,
    version: PythonVersion,
    venv: Option<PathBuf>,
    program: PathBuf,
}

impl Interpreter {
    /// The interpreter at `path` (symlinks resolved). Refuses scripts and shims.
    pub fn at(path: &Path) -> Result<Interpreter, InterpreterError> {
        let unusable = |reason: String| InterpreterError::Unusable {
            path: path.to_owned(),
            reason,
        };
        let canonical = std::fs::canonicalize(path).map_err(|e| unusable(e.to_string()))?;
        if !is_executable_binary(&canonical) {
            return Err(unusable(
                "not an executable binary (a shell script or shim cannot be used: point at the real interpreter)".into(),
            ));
        }
        let version = version_of(&canonical).map_err(unusable)?;
        let venv = virtual_environment(path);
        let program = match (&venv, path.file_name()) {
            (Some(root), Some(name)) => root.join("bin").join(name),
            _ => canonical.clone(),
        };
        Ok(Interpreter {
            path: canonical,
            version,
            venv,
            program,
        })
    }

    /// The first real `python3` on `PATH`, then in the usual system places.
    pub fn discover() -> Result<Interpreter, InterpreterError> {
        static DISCOVERED: OnceLock<Option<Interpreter>> = OnceLock::new();
        DISCOVERED
            .get_or_init(|| {
                let path_dirs = std::env::var_os("PATH")
                    .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                    .unwrap_or_default();
                path_dirs
                    .into_iter()
                    .chain(["/usr/bin".into(), "/usr/local/bin".into()])
                    .map(|dir| dir.join("python3"))
                    .find_map(|candidate| Interpreter::at(&candidate).ok())
            })
            .clone()
            .ok_or(InterpreterError::NotFound)
    }

    /// The real executable (symlinks resolved).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The virtual environment the interpreter was named through, if any.
    pub fn venv(&self) -> Option<&Path> {
        self.venv.as_deref()
    }

    /// What to execute: inside a virtual environment, its `bin/python` (Python finds the
    /// environment from the path it was started as); else the real executable.
    pub fn program(&self) -> &Path {
        &self.program
    }

    pub fn version(&self) -> PythonVersion {
        self.version
    }
}

/// The virtual environment `path` belongs to: the directory holding `pyvenv.cfg` above the
/// `bin/` directory that `path` sits in (without resolving the interpreter's own symlink).
fn virtual_environment(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    let bin = absolute.parent()?;
    // The environment's directory itself may be reached through symlinks: resolve those.
    let root = std::fs::canonicalize(bin.parent()?).ok()?;
    root.join("pyvenv.cfg").is_file().then_some(root)
}

/// An ELF file with an execute bit: what `execve` runs without an interpreter line.
fn is_executable_binary(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return false;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The interpreter's version: from a `python3.N` file name when there is one (free), else by
/// asking it once per process.
fn version_of(path: &Path) -> Result<PythonVersion, String> {
    if let Some(version) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("python"))
        .and_then(PythonVersion::parse)
    {
        return Ok(version);
    }
    static ASKED: OnceLock<Mutex<HashMap<PathBuf, PythonVersion>>> = OnceLock::new();
    let cache = ASKED.get_or_init(Default::default);
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(path).copied()) {
        return Ok(v);
    }
    let output = Command::new(path)
        .args([
            "-I",
            "-S",
            "-c",
            "import sys; print('%d.%d' % sys.version_info[:2])",
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = PythonVersion::parse(&text)
        .filter(|v| v.major == 3)
        .ok_or_else(|| format!("not a Python 3 interpreter (it printed {:?})", text.trim()))?;
    if let Ok(mut c) = cache.lock() {
        c.insert(path.to_owned(), version);
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("python3");
        std::fs::write(&shim, "#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = Interpreter::at(&shim).unwrap_err();
        assert!(err.to_string().contains("shim"), "{err}");
        assert!(Interpreter::at(Path::new("/nonexistent/python3")).is_err());
    }

    #[test]
    fn discovers_a_real_interpreter() {
        let interp = Interpreter::discover().expect("a python3 is installed on this machine");
        assert!(is_executable_binary(interp.path()));
        assert_eq!(interp.version().major, 3);
    }
}
