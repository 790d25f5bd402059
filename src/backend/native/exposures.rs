//! What of the host a native sandbox shows, read-only at the same paths: the system library
//! paths and the interpreter's own directories, each once. Decided on the host when the
//! backend is built; the init binds the result (`sandbox::root`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::interpreter::Interpreter;
use crate::protocol::Exposure;

/// Host paths a Python interpreter commonly needs besides its own directories: the shared
/// libraries, the dynamic linker's cache, the time zones, and the fonts with fontconfig's
/// configuration and cache (matplotlib's font manager runs `fc-list`; without them it warns
/// on stderr) — public files, nothing of a user's (the services and protocols tables are
/// copied into the generated /etc: see `sandbox::root`). `/usr/bin` is exposed so that code
/// can start the usual tools (`sh`, `ls`), read-only like everything else.
const SYSTEM_PATHS: &[&str] = &[
    "/usr/bin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/usr/libx32",
    "/usr/local/bin",
    "/usr/local/lib",
    "/bin",
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/usr/share/zoneinfo",
    "/etc/fonts",
    "/usr/share/fonts",
    "/usr/share/fontconfig",
    "/var/cache/fontconfig",
];

/// Asks the interpreter where its standard library and site-packages are.
const LAYOUT_PROBE: &str = r#"
import json, site, sys, sysconfig
paths = sysconfig.get_paths()
found = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(k)}
found.update(site.getsitepackages())
print(json.dumps(sorted(found)))
"#;

/// What of the host the sandbox shows: system library paths and the interpreter's own
/// directories, each once (paths inside an exposed directory are covered by it).
pub(super) fn exposures_for(interpreter: &Interpreter) -> Result<Vec<Exposure>, String> {
    let mut candidates: Vec<PathBuf> = SYSTEM_PATHS.iter().map(PathBuf::from).collect();
    candidates.push(interpreter.path().to_owned());
    // Every link from the program the sandbox execs to the binary, at its own path: a
    // virtual environment's `bin/python` leads through its base installation's links.
    candidates.extend(links_to_the_binary(interpreter.program()));
    // A virtual environment's packages import inside as they do outside.
    candidates.extend(interpreter.venv().map(Path::to_owned));
    let version = interpreter.version();
    let prefix = interpreter.path().parent().and_then(Path::parent);
    match prefix.and_then(|p| conventional_layout(p, version)) {
        Some(dirs) => candidates.extend(dirs),
        None => candidates.extend(probe_layout(interpreter)?),
    }
    // The interpreter of a virtual environment finds its standard library from the `home`
    // its `pyvenv.cfg` names, at that path (which may differ from the resolved one).
    let home_prefix = interpreter.venv().and_then(venv_home_prefix);
    if let Some(dirs) = home_prefix.and_then(|p| conventional_layout(&p, version)) {
        candidates.extend(dirs);
    }
    Ok(plan_exposures(candidates))
}

/// The symbolic links from `program` to the file they end at, each at its own path, and that
/// file at the path the last link names (not resolving the directories above it).
fn links_to_the_binary(program: &Path) -> Vec<PathBuf> {
    let mut chain = Vec::new();
    let mut path = program.to_owned();
    // As the kernel, give up after 40 links (a loop).
    for _ in 0..40 {
        let Ok(target) = std::fs::read_link(&path) else {
            break;
        };
        let next = match path.parent() {
            Some(parent) if target.is_relative() => parent.join(&target),
            _ => target,
        };
        chain.push(std::mem::replace(&mut path, next));
    }
    chain.push(path);
    chain
}

/// The prefix of a virtual environment's base installation: the parent of the `home`
/// directory its `pyvenv.cfg` names (`home = /opt/python/3.12/bin`).
fn venv_home_prefix(venv: &Path) -> Option<PathBuf> {
    let config = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    let home = config.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "home").then(|| PathBuf::from(value.trim()))
    })?;
    Some(home.parent()?.to_owned())
}

/// The interpreter's directories where a standard installation puts them
/// (`<prefix>/lib/pythonX.Y`, Debian's `<prefix>/lib/python3`, `<prefix>/local/lib/pythonX.Y`),
/// found without starting it; `None` when its standard library is not there.
fn conventional_layout(
    prefix: &Path,
    version: crate::syntax::PythonVersion,
) -> Option<Vec<PathBuf>> {
    let versioned = format!("python{}.{}", version.major, version.minor);
    let stdlib = prefix.join("lib").join(&versioned);
    if !stdlib.join("os.py").is_file() {
        return None;
    }
    let mut dirs = vec![
        stdlib,
        prefix.join("lib64").join(&versioned),
        prefix.join("lib").join("python3"),
        prefix.join("local/lib").join(&versioned),
    ];
    // A shared-library build (pyenv, python.org) loads libpythonX.Y.so from <prefix>/lib
    // (a system prefix's lib directory is exposed whole: no need to list its many entries).
    let lib = prefix.join("lib");
    let exposed_whole = SYSTEM_PATHS.iter().any(|p| Path::new(p) == lib);
    if let Some(entries) = (!exposed_whole)
        .then(|| std::fs::read_dir(&lib).ok())
        .flatten()
    {
        dirs.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("libpython"))
                .map(|e| e.path()),
        );
    }
    Some(dirs)
}

/// Asks the interpreter itself where its standard library and site-packages are, without
/// running `site` (a virtual environment's .pth files run only inside a sandbox).
fn probe_layout(interpreter: &Interpreter) -> Result<Vec<PathBuf>, String> {
    let output = Command::new(interpreter.path())
        .args(["-I", "-S", "-c", LAYOUT_PROBE])
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "cannot ask {} for its layout: {e}",
                interpreter.path().display()
            )
        })?;
    serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "{} did not describe its layout: {e}",
            interpreter.path().display()
        )
    })
}

/// Classifies existing candidates and drops those already covered by an exposed directory.
fn plan_exposures(candidates: Vec<PathBuf>) -> Vec<Exposure> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut others: Vec<Exposure> = Vec::new();
    for path in candidates {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(&path) {
                others.push(Exposure::Symlink { path, target });
            }
        } else if meta.is_dir() {
            dirs.push(path);
        } else if meta.is_file() {
            others.push(Exposure::File(path));
        }
    }
    dirs.sort();
    dirs.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        if !kept.iter().any(|k| dir.starts_with(k)) {
            kept.push(dir);
        }
    }
    let covered = |p: &Path| kept.iter().any(|k| p.starts_with(k) && p != k);
    let mut exposures: Vec<Exposure> = kept.iter().cloned().map(Exposure::Dir).collect();
    for other in others {
        let path = match &other {
            Exposure::File(p) | Exposure::Symlink { path: p, .. } | Exposure::Dir(p) => p,
        };
        if !covered(path) && !exposures.contains(&other) {
            exposures.push(other);
        }
    }
    exposures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposures_are_minimal_and_deduplicated() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        std::fs::create_dir_all(t.join("usr/lib/python3.11")).unwrap();
        std::fs::create_dir_all(t.join("usr/bin")).unwrap();
        std::fs::write(t.join("usr/bin/python3.11"), "").unwrap();
        std::fs::write(t.join("ld.so.cache"), "").unwrap();
        std::os::unix::fs::symlink("usr/lib", t.join("lib")).unwrap();
        let plan = plan_exposures(vec![
            t.join("usr/lib"),
            t.join("usr/lib/python3.11"),
            t.join("usr/bin/python3.11"),
            t.join("usr/bin"),
            t.join("lib"),
            t.join("ld.so.cache"),
            t.join("missing"),
        ]);
        assert_eq!(
            plan,
            vec![
                Exposure::Dir(t.join("usr/bin")),
                Exposure::Dir(t.join("usr/lib")),
                Exposure::Symlink {
                    path: t.join("lib"),
                    target: "usr/lib".into()
                },
                Exposure::File(t.join("ld.so.cache")),
            ]
        );
    }
}
