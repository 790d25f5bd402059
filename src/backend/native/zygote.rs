//! The host's handle on the zygote (see `crate::process::zygote` for the zygote itself):
//! finding a shared libpython of the interpreter's release, deciding whether `site` may run in
//! the zygote, starting it, asking it to fork a run's helper, and ending it with the tool.
//! Runs in the host process.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use thiserror::Error;

use crate::backend::helper::{ForkHelper, ForkedHelper, HiddenModeCommand, RunError};
use crate::interpreter::Interpreter;
use crate::lock::lock;
use crate::protocol::zygote::{FORK_TIMEOUT_MS, MAX_REPLY, START_TIMEOUT_MS, ZygoteReply};
use crate::protocol::{HiddenMode, ZygoteConfig, fds};
use crate::runner::code_environment;
use crate::sandbox::WORK_DIR;
use crate::sys;
use crate::sys::fdpass;

/// Why a zygote could not start (runs then start cold, unless the zygote was required).
#[derive(Debug, Error)]
pub enum ZygoteError {
    #[error("no shared libpython{version} next to {interpreter}")]
    NoLibpython {
        version: String,
        interpreter: PathBuf,
    },
    #[error("{} did not describe itself: {reason}", program.display())]
    Describe { program: PathBuf, reason: String },
    #[error("cannot set up the zygote's channels: {0}")]
    Channel(#[source] std::io::Error),
    #[error("cannot encode the zygote's config: {0}")]
    Config(#[source] serde_json::Error),
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// What the zygote said (its `E<why>`), or that it said nothing in time.
    #[error("{0}")]
    Refused(String),
}

/// The host's handle on a running zygote. Dropping it ends the zygote.
#[derive(Debug)]
pub(super) struct Zygote {
    socket: Mutex<OwnedFd>,
    process: Mutex<Child>,
    library: PathBuf,
    site_in_zygote: bool,
}

/// One sealed copy of each helper binary per host process, shared by its zygotes.
fn sealed_copy_of(helper: &Path) -> std::io::Result<Arc<OwnedFd>> {
    static COPIES: OnceLock<Mutex<HashMap<PathBuf, Arc<OwnedFd>>>> = OnceLock::new();
    let mut copies = lock(COPIES.get_or_init(Default::default));
    if let Some(copy) = copies.get(helper) {
        return Ok(Arc::clone(copy));
    }
    let copy = Arc::new(sys::memfd::sealed_copy(helper)?);
    copies.insert(helper.to_owned(), Arc::clone(&copy));
    Ok(copy)
}

impl Zygote {
    /// Starts a zygote for `interpreter`; an error says why this host cannot have one (no
    /// shared libpython of the same release, for instance), and runs then start cold.
    pub(super) fn start(helper: &Path, interpreter: &Interpreter) -> Result<Zygote, ZygoteError> {
        let library = find_libpython(interpreter).ok_or_else(|| ZygoteError::NoLibpython {
            version: interpreter.version().to_string(),
            interpreter: interpreter.path().to_owned(),
        })?;
        let (version, site_dirs) = describe(interpreter)?;
        let config = ZygoteConfig {
            program: interpreter.program().to_owned(),
            version,
            library: library.clone(),
            env: code_environment(WORK_DIR, "/tmp"),
            site_in_zygote: site_is_trusted(interpreter, &site_dirs).is_ok(),
        };
        let json = serde_json::to_string(&config).map_err(ZygoteError::Config)?;
        let (host_end, zygote_end) = fdpass::seqpacket_pair().map_err(ZygoteError::Channel)?;
        let placed = [(zygote_end.as_fd(), fds::ZYGOTE_SOCKET)];
        // Code forked from the zygote sees the zygote's /proc/self/exe: a sealed copy, never
        // the host's binary (which a per-user install's code could chmod through it).
        let sealed = sealed_copy_of(helper).map_err(|source| ZygoteError::Spawn {
            program: helper.to_owned(),
            source,
        })?;
        let mut hidden =
            HiddenModeCommand::from_sealed_copy(sealed.as_fd(), HiddenMode::Zygote, &placed, &json)
                .map_err(ZygoteError::Channel)?;
        hidden
            .command
            .envs(config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = hidden.spawn().map_err(|source| ZygoteError::Spawn {
            program: helper.to_owned(),
            source,
        })?;
        drop(zygote_end);
        let ready = match receive_reply(host_end.as_fd(), START_TIMEOUT_MS) {
            Ok((ZygoteReply::Ready, _)) => Ok(()),
            Ok((ZygoteReply::Error(why), _)) => Err(ZygoteError::Refused(why)),
            Ok((ZygoteReply::Forked { .. }, _)) => Err(ZygoteError::Refused(
                "the zygote answered out of turn".into(),
            )),
            Err(why) => Err(ZygoteError::Refused(why)),
        };
        if let Err(why) = ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(why);
        }
        Ok(Zygote {
            socket: Mutex::new(host_end),
            process: Mutex::new(child),
            library,
            site_in_zygote: config.site_in_zygote,
        })
    }

    /// The libpython the zygote runs.
    pub(super) fn library(&self) -> &Path {
        &self.library
    }

    /// Whether `site` ran in the zygote (else each run runs it, inside its sandbox).
    pub(super) fn site_in_zygote(&self) -> bool {
        self.site_in_zygote
    }
}

impl ForkHelper for Zygote {
    /// Has the zygote fork a helper for one run with its six fds (see `protocol::zygote`).
    fn fork_helper(
        &self,
        config_json: &str,
        run_fds: &[RawFd; 6],
    ) -> Result<ForkedHelper, RunError> {
        let socket = lock(&self.socket);
        fdpass::send_with_fds(socket.as_fd(), config_json.as_bytes(), run_fds)
            .map_err(|e| RunError::Zygote(format!("the zygote is gone: {e}")))?;
        match receive_reply(socket.as_fd(), FORK_TIMEOUT_MS).map_err(RunError::Zygote)? {
            (ZygoteReply::Forked { pid }, Some(pidfd)) => Ok(ForkedHelper { pid, pidfd }),
            (ZygoteReply::Forked { .. }, None) => Err(RunError::Zygote(
                "the zygote sent a pid without its pidfd".into(),
            )),
            (ZygoteReply::Error(why), _) => Err(RunError::Zygote(why)),
            (ZygoteReply::Ready, _) => {
                Err(RunError::Zygote("the zygote answered out of turn".into()))
            }
        }
    }
}

/// Waits up to `timeout_ms` for the zygote's next reply, with the fd it carries, if any.
fn receive_reply(
    socket: BorrowedFd<'_>,
    timeout_ms: i32,
) -> Result<(ZygoteReply, Option<OwnedFd>), String> {
    if !fdpass::poll_readable(socket, timeout_ms).map_err(|e| e.to_string())? {
        return Err(format!(
            "the zygote did not answer within {} s",
            timeout_ms / 1000
        ));
    }
    let mut reply = [0u8; MAX_REPLY];
    match fdpass::recv_with_fds(socket, &mut reply) {
        Ok(Some((n, mut fds))) => Ok((ZygoteReply::decode(&reply[..n]), fds.pop())),
        Ok(None) => Err("the zygote ended".into()),
        Err(e) => Err(e.to_string()),
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        let mut child = lock(&self.process);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The shared libpython of the interpreter's installation: beside it in `<prefix>/lib` (a
/// `--enable-shared` build), or in the multiarch directory of a distribution's `/usr`.
fn find_libpython(interpreter: &Interpreter) -> Option<PathBuf> {
    let prefix = interpreter.path().parent()?.parent()?;
    let version = interpreter.version();
    // Releases before 3.8 carry the `m` ABI flag of pymalloc in the name.
    let names = [
        format!("libpython{version}.so.1.0"),
        format!("libpython{version}m.so.1.0"),
    ];
    names
        .iter()
        .flat_map(|name| {
            [
                prefix.join("lib").join(name),
                prefix.join("lib/x86_64-linux-gnu").join(name),
            ]
        })
        .find(|candidate| candidate.is_file())
}

/// Whether `site` may run in the zygote, outside any sandbox: only if everything it reads —
/// the directories on the interpreter's path and its site directories, the `.pth` files and
/// `sitecustomize`/`usercustomize` modules in them, a virtual environment's `pyvenv.cfg` —
/// belongs to root or to this user and is writable by nobody else, i.e. is as trusted as the
/// interpreter the host runs anyway. Otherwise each run runs `site` inside its sandbox.
fn site_is_trusted(interpreter: &Interpreter, dirs: &[PathBuf]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = sys::effective_uid();
    let check = |path: &Path| -> Result<(), String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if (meta.uid() == 0 || meta.uid() == me) && meta.mode() & 0o022 == 0 {
            Ok(())
        } else {
            Err(format!(
                "{} is owned by uid {} with mode {:o}",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ))
        }
    };
    if let Some(venv) = interpreter.venv() {
        check(venv)?;
        check(&venv.join("pyvenv.cfg"))?;
    }
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        check(dir)?;
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".pth")
                || name.starts_with("sitecustomize")
                || name.starts_with("usercustomize")
            {
                check(&entry.path())?;
            }
        }
    }
    Ok(())
}

/// What the interpreter says of itself without running `site`: its release
/// (`sys.version.split()[0]`) and the directories `site` would read (its path and site
/// directories; for a virtual environment, the environment's too).
fn describe(interpreter: &Interpreter) -> Result<(String, Vec<PathBuf>), ZygoteError> {
    const PROBE: &str = "import json, site, sys\n\
        print(json.dumps([sys.version.split()[0], sys.path + site.getsitepackages()]))";
    let program = interpreter.program();
    let out = Command::new(program)
        .args(["-I", "-S", "-c", PROBE])
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| ZygoteError::Describe {
            program: program.to_owned(),
            reason: e.to_string(),
        })?;
    let (release, mut dirs): (String, Vec<PathBuf>) =
        serde_json::from_slice(&out.stdout).map_err(|e| ZygoteError::Describe {
            program: program.to_owned(),
            reason: e.to_string(),
        })?;
    if let Some(venv) = interpreter.venv() {
        let version = interpreter.version();
        dirs.push(
            venv.join("lib")
                .join(format!("python{}.{}", version.major, version.minor))
                .join("site-packages"),
        );
    }
    Ok((release, dirs))
}
