//! The runner compiled ahead, per interpreter: a `.pyc` of `runner.py` that a cold
//! interpreter runs as its script (`python3 -I -u /proc/self/fd/N …`) instead of compiling the
//! runner's source from `-c` at every start (about a millisecond of each cold run). Made once
//! by the interpreter itself (`marshal`, its own magic number), kept in a private directory of
//! this user (the run directories' base for root, `$TMPDIR/code-exec-cache-<uid>` otherwise,
//! 0700 and refused if someone else's or a link) under a name that digests the runner and the
//! identity of the interpreter's binary (its path, device, inode, size, mtime), so that a
//! changed runner or interpreter makes a new one. Runs in the host process.
//!
//! The file is trusted as the runner is: it runs before the code and writes the report's
//! first records. Only this user can write it, and it is handed to the code's process as a
//! sealed in-memory copy (the runner closes it before the code starts).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use super::workspace;
use crate::interpreter::Interpreter;
use crate::lock::lock;
use crate::runner::RUNNER;

/// Compiles the runner read from stdin into a `.pyc` on stdout: the interpreter's magic
/// number, a zero flags word and eight zero bytes (PEP 552's layout since 3.7), then the
/// marshalled code object. Its file name is `<string>`, as for `-c` code.
const COMPILE: &str = "import sys, marshal, importlib.util as u\n\
    code = compile(sys.stdin.buffer.read(), '<string>', 'exec', dont_inherit=True)\n\
    sys.stdout.buffer.write(u.MAGIC_NUMBER + bytes(12) + marshal.dumps(code))\n";

/// Where the compiled runner of `interpreter` is, made now if it is missing; `None` when it
/// cannot be made here (an interpreter before 3.7, whose `.pyc` header differs, or no private
/// directory): cold runs then pass the runner's source as before.
pub(crate) fn compiled_runner(interpreter: &Interpreter) -> Option<PathBuf> {
    static MADE: OnceLock<Mutex<HashMap<PathBuf, Option<PathBuf>>>> = OnceLock::new();
    let made = MADE.get_or_init(|| Mutex::new(HashMap::new()));
    let program = interpreter.program().to_owned();
    if let Some(known) = lock(made).get(&program) {
        return known.clone();
    }
    let found = find_or_make(interpreter);
    lock(made).insert(program, found.clone());
    found
}

fn find_or_make(interpreter: &Interpreter) -> Option<PathBuf> {
    let version = interpreter.version();
    if (version.major, version.minor) < (3, 7) {
        return None;
    }
    let dir = cache_dir().ok()?;
    let path = dir.join(format!("runner-{:016x}.pyc", key(interpreter)?));
    if is_our_file(&path) {
        return Some(path);
    }
    let compiled = compile_with(interpreter)?;
    write_atomically(&dir, &path, &compiled).ok()?;
    Some(path)
}

/// The private directory the compiled runners live in.
fn cache_dir() -> std::io::Result<PathBuf> {
    let uid = crate::sys::effective_uid();
    if uid == 0 {
        workspace::base()
    } else {
        workspace::private_base(&std::env::temp_dir().join(format!("code-exec-cache-{uid}")))
    }
}

/// A digest of the runner's text and of what identifies the interpreter's binary.
fn key(interpreter: &Interpreter) -> Option<u64> {
    let binary = std::fs::metadata(interpreter.path()).ok()?;
    let mut hasher = DefaultHasher::new();
    RUNNER.hash(&mut hasher);
    // The binary alone decides the bytes (its magic number): every virtual environment of
    // one base shares its file, so their number stays that of the interpreters used.
    interpreter.path().hash(&mut hasher);
    (
        binary.dev(),
        binary.ino(),
        binary.size(),
        binary.mtime(),
        binary.mtime_nsec(),
    )
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// Whether `path` is a regular file of this user that only this user may write (never
/// followed if it is a link).
fn is_our_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| {
        m.file_type().is_file() && m.uid() == crate::sys::effective_uid() && m.mode() & 0o022 == 0
    })
}

fn compile_with(interpreter: &Interpreter) -> Option<Vec<u8>> {
    // Without `site` (-S): a virtual environment's .pth files are code of whoever may write
    // there, and run only inside a sandbox, never on the host.
    let mut child = Command::new(interpreter.program())
        .args(["-I", "-S", "-c", COMPILE])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(RUNNER.as_bytes()).ok()?;
    let output = child.wait_with_output().ok()?;
    (output.status.success() && output.stdout.len() > 16).then_some(output.stdout)
}

/// Writes `bytes` to `path` through a new file in `dir` renamed over it, so that a reader
/// sees the whole file or none.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = tempfile::Builder::new()
        .prefix(".runner-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_runner_is_made_once_and_names_the_interpreter_it_belongs_to() {
        let interpreter = Interpreter::at(Path::new("/usr/bin/python3")).unwrap();
        let Some(path) = compiled_runner(&interpreter) else {
            panic!("no compiled runner for {}", interpreter.path().display());
        };
        assert!(is_our_file(&path), "{}", path.display());
        let bytes = std::fs::read(&path).unwrap();
        // The magic number ends in \r\n (every CPython since 3.0).
        assert_eq!(&bytes[2..4], b"\r\n");
        assert_eq!(compiled_runner(&interpreter), Some(path));
    }
}
