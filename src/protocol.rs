//! The wire between code-exec's processes: everything two sides of a process boundary must
//! agree on, and nothing else. The fd numbers and hidden-mode arguments a helper is started
//! with, the configs that cross on fd 6 (typed JSON, never argv), the status events a helper
//! sends the host, the single bytes that mean "go", "kill" and "ready", the helpers' own exit
//! codes, the init's exit-status record and the zygote's messages. Both ends of every message
//! are written against these types; no other module spells a byte, an fd number or a code.
//!
//! Read by every process (see `crate::process` for who talks to whom, and when).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::cgroup::RunCgroup;
use crate::runner::Invocation;
use crate::sys;

/// The fds a helper process (`__supervise`, `__sandbox`, or one forked by the zygote) finds
/// in place at start. 0–2 are the code's stdin, stdout and stderr.
pub(crate) mod fds {
    use std::os::fd::RawFd;

    /// The runner's report channel, passed on to the interpreter (see `runner.py`).
    pub(crate) const REPORT: RawFd = 3;
    /// The helper's status channel: JSON lines of [`StatusEvent`](super::StatusEvent).
    pub(crate) const STATUS: RawFd = 4;
    /// The control channel: [`KILL`](super::KILL) or its end means "kill the run now".
    pub(crate) const CONTROL: RawFd = 5;
    /// The config, read once at start (see [`read_config`](super::read_config)).
    pub(crate) const CONFIG: RawFd = 6;
    /// The zygote's end of its `SOCK_SEQPACKET` socket (the zygote only).
    pub(crate) const ZYGOTE_SOCKET: RawFd = 3;
    /// The sealed copy of the binary a hidden-mode process is exec'd from (`/proc/self/fd/7`,
    /// so that its `/proc/self/exe` names no host file); the process closes it at start.
    pub(crate) const EXEC: RawFd = 7;
    /// The fds of one run as the zygote receives them, in this order, and where its helper
    /// finds them.
    pub(crate) const RUN: [RawFd; 6] = [0, 1, 2, REPORT, STATUS, CONTROL];
    /// The lowest number a source fd is moved to before it is placed at its target, so that
    /// moving sources cannot clobber one another.
    pub(crate) const HIGH: RawFd = 10;
}

/// The hidden modes of the `code-exec` binary: `code-exec MODE`, the config on fd 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HiddenMode {
    /// The `none` backend's supervisor.
    Supervise,
    /// The native sandbox's helper, started cold.
    Sandbox,
    /// The zygote native runs fork from.
    Zygote,
    /// The holder of an unprivileged persistent sandbox's `/work` (see `process/work_holder.rs`).
    WorkHolder,
}

impl HiddenMode {
    pub(crate) const ALL: [HiddenMode; 4] = [
        HiddenMode::Supervise,
        HiddenMode::Sandbox,
        HiddenMode::Zygote,
        HiddenMode::WorkHolder,
    ];

    /// The first argument that selects this mode.
    pub(crate) fn arg(self) -> &'static str {
        match self {
            HiddenMode::Supervise => "__supervise",
            HiddenMode::Sandbox => "__sandbox",
            HiddenMode::Zygote => "__zygote",
            HiddenMode::WorkHolder => "__work_holder",
        }
    }

    pub(crate) fn from_arg(arg: &str) -> Option<HiddenMode> {
        HiddenMode::ALL.into_iter().find(|mode| mode.arg() == arg)
    }
}

/// Exit codes of our own processes (never the code's: its status travels in
/// [`StatusEvent::Exit`] or in [`encode_status`]'s record).
pub(crate) mod exit_code {
    /// A helper found no status channel: nobody can hear it.
    pub(crate) const NO_STATUS_CHANNEL: i32 = 101;
    /// A helper failed and said why on its status channel ([`StatusEvent::Failed`](super::StatusEvent)).
    pub(crate) const SETUP_FAILED: i32 = 102;
    /// A helper forked by the zygote could not put its fds in place.
    pub(crate) const FORKED_FDS_FAILED: i32 = 103;
    /// The code's process could not start the interpreter (exec failed).
    pub(crate) const EXEC_FAILED: i32 = 127;
    /// The interpreter could not flush its streams at exit (what CPython itself returns).
    pub(crate) const FLUSH_FAILED: i32 = 120;
}

/// helper → init: the id maps are written; the init may build the sandbox.
pub(crate) const GO: &[u8; 1] = b"g";
/// host → helper, on the control channel: kill the run now (its end means the same).
pub(crate) const KILL: &[u8; 1] = b"k";

/// What the `none` supervisor runs, prepared and validated by the `none` backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SupervisorConfig {
    pub(crate) interpreter: Invocation,
    pub(crate) cwd: PathBuf,
    /// Per-process cap on private writable memory (`RLIMIT_DATA`).
    pub(crate) memory_bytes: Option<u64>,
    /// Send a resource sample this often.
    pub(crate) sample_interval_ms: Option<u64>,
}

/// A host path made visible, read-only, at the same path inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Exposure {
    Dir(PathBuf),
    File(PathBuf),
    /// A symbolic link recreated inside (e.g. `/lib -> usr/lib`).
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
}

/// Everything the sandbox helper needs, prepared and validated by the native backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SandboxConfig {
    pub(crate) interpreter: Invocation,
    /// Host path of the code, read by the helper before it isolates anything.
    pub(crate) code_file: PathBuf,
    /// An empty host directory the new root is mounted on.
    pub(crate) root_dir: PathBuf,
    pub(crate) exposed: Vec<Exposure>,
    /// Host uid and gid the sandbox uid maps to.
    pub(crate) outside_uid: u32,
    pub(crate) outside_gid: u32,
    pub(crate) cgroup: Option<RunCgroup>,
    /// Per-process fallbacks, used when no cgroup enforces memory or pids.
    pub(crate) rlimit_data_bytes: Option<u64>,
    pub(crate) rlimit_nproc: Option<u64>,
    /// Sizes of the private tmpfs mounts.
    pub(crate) tmp_bytes: u64,
    pub(crate) work_bytes: u64,
    /// A host directory to use as `/work` (a persistent sandbox's), instead of a fresh tmpfs.
    pub(crate) work_dir: Option<PathBuf>,
    /// The process holding that directory's tmpfs in namespaces of its own (an unprivileged
    /// persistent sandbox): the helper enters them first, and `outside_uid`/`outside_gid`
    /// are then ids of that user namespace.
    pub(crate) work_holder: Option<WorkHolderRef>,
    pub(crate) sample_interval_ms: Option<u64>,
}

/// One live work holder: its pid and start time (a recycled pid is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WorkHolderRef {
    pub(crate) pid: u32,
    pub(crate) start_ticks: u64,
}

/// The work holder's config (host → holder, on fd 6). It says [`WORK_HOLDER_READY`] on
/// [`fds::STATUS`] once the tmpfs is mounted and lives until [`fds::CONTROL`] ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkHolderConfig {
    pub(crate) work_dir: PathBuf,
    /// Size of the tmpfs.
    pub(crate) bytes: u64,
    /// The host ids the holder's user namespace maps its root to (the caller's own).
    pub(crate) outside_uid: u32,
    pub(crate) outside_gid: u32,
}

/// holder → host, on its status channel: `/work` is mounted.
pub(crate) const WORK_HOLDER_READY: &[u8; 1] = b"W";

/// The zygote's config (host → zygote, on fd 6).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ZygoteConfig {
    /// What a cold run executes (`sys.executable` and the prefix derive from it).
    pub(crate) program: PathBuf,
    pub(crate) library: PathBuf,
    /// `sys.version.split()[0]` of the interpreter: the library must be the same release.
    pub(crate) version: String,
    /// The zygote's environment, which must be the runs' (`os.environ` is read at start-up).
    pub(crate) env: Vec<(String, String)>,
    /// Whether `site` runs in the zygote (everything it reads is as trusted as the
    /// interpreter itself), or in each run, inside the sandbox.
    pub(crate) site_in_zygote: bool,
}

/// One line on a helper's status channel (helper → host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum StatusEvent {
    Started {
        pid: u32,
    },
    Sample {
        elapsed_ms: f64,
        cpu_percent: f64,
        memory_bytes: u64,
        pids: u32,
    },
    Exit {
        code: Option<i32>,
        signal: Option<i32>,
        cpu_time_ms: f64,
        peak_memory_bytes: u64,
        /// The memory limit killed something (cgroup OOM events).
        #[serde(default)]
        memory_limit_hit: bool,
    },
    Failed {
        message: String,
    },
}

impl StatusEvent {
    /// The `Exit` event for the code's main process's `status` (`None`: lost track of it).
    pub(crate) fn exit(
        status: Option<sys::ExitStatus>,
        cpu_time: std::time::Duration,
        peak_memory_bytes: u64,
        memory_limit_hit: bool,
    ) -> StatusEvent {
        let (code, signal) = match status {
            Some(sys::ExitStatus::Code(c)) => (Some(c), None),
            Some(sys::ExitStatus::Signal(s)) => (None, Some(s)),
            None => (None, None),
        };
        StatusEvent::Exit {
            code,
            signal,
            cpu_time_ms: cpu_time.as_secs_f64() * 1000.0,
            peak_memory_bytes,
            memory_limit_hit,
        }
    }

    /// One line as the host reads it; `None` for anything that is not an event.
    pub(crate) fn parse(line: &str) -> Option<StatusEvent> {
        serde_json::from_str(line).ok()
    }
}

/// The sending end of the status channel (fd 4), shareable between threads.
#[derive(Clone)]
pub(crate) struct StatusChannel(Arc<Mutex<File>>);

impl StatusChannel {
    /// Takes over the inherited status fd; `None` when it is missing (nobody can hear us).
    pub(crate) fn take() -> Option<StatusChannel> {
        // SAFETY: fd 4 was placed for this process alone by whoever started it, and only this
        // function takes it, once, at the helper's start.
        let fd = unsafe { sys::take_inherited_fd(fds::STATUS) }.ok()?;
        Some(StatusChannel(Arc::new(Mutex::new(File::from(fd)))))
    }

    pub(crate) fn send(&self, event: &StatusEvent) {
        if let (Ok(mut line), Ok(mut out)) = (serde_json::to_vec(event), self.0.lock()) {
            line.push(b'\n');
            let _ = out.write_all(&line);
        }
    }
}

/// A config as the fd a helper is started with (numbered [`fds::HIGH`] or more,
/// close-on-exec): an unlinked file, not argv, which anyone can read (including, through
/// `/proc/1/cmdline`, the sandboxed code).
pub(crate) fn config_fd(config_json: &str) -> std::io::Result<OwnedFd> {
    let mut file = tempfile::tempfile()?;
    file.write_all(config_json.as_bytes())?;
    file.seek(std::io::SeekFrom::Start(0))?;
    sys::dup_at_least(file.as_fd(), fds::HIGH)
}

/// The config on fd 6, read once at a helper's start (empty when there is none).
pub(crate) fn read_config() -> String {
    let mut config = String::new();
    // SAFETY: fd 6 was placed for this process alone by whoever started it, and only this
    // function takes it, once, before the hidden mode runs.
    if let Ok(fd) = unsafe { sys::take_inherited_fd(fds::CONFIG) } {
        let _ = File::from(fd).read_to_string(&mut config);
    }
    config
}

/// The largest compiled runner read (the runner's `.pyc` is a few KiB).
const COMPILED_RUNNER_CAP: u64 = 1 << 20;

/// Reads the compiled runner the host named (`Invocation::compiled_runner`), never through a
/// link; `None` if it cannot be read, and the interpreter then compiles the runner's source.
pub(crate) fn read_compiled_runner(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let mut bytes = Vec::new();
    file.take(COMPILED_RUNNER_CAP)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// Points this process's copies of the code's streams (fds 0–2 and the report channel) at
/// `/dev/null`: a helper that holds none lets them reach EOF as soon as the last process of
/// the run is gone.
pub(crate) fn release_code_streams() {
    for fd in [0, 1, 2, fds::REPORT] {
        let _ = sys::point_at_dev_null(fd);
    }
}

/// Blocks until the control channel says "kill" ([`KILL`], any byte) or ends (the host is
/// gone): both mean the run must end now.
pub(crate) fn wait_for_kill(control: OwnedFd) {
    let mut control = File::from(control);
    let mut byte = [0u8; 1];
    loop {
        match control.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            _ => return,
        }
    }
}

/// The code's exit status as the init sends it to the helper: kind (0 exited, 1 signalled)
/// and value, little-endian.
pub(crate) fn encode_status(status: sys::ExitStatus) -> [u8; 8] {
    let (kind, value) = match status {
        sys::ExitStatus::Code(c) => (0i32, c),
        sys::ExitStatus::Signal(s) => (1i32, s),
    };
    let mut raw = [0u8; 8];
    raw[..4].copy_from_slice(&kind.to_le_bytes());
    raw[4..].copy_from_slice(&value.to_le_bytes());
    raw
}

/// The inverse of [`encode_status`]; `None` for a record it cannot have written.
pub(crate) fn decode_status(raw: [u8; 8]) -> Option<sys::ExitStatus> {
    let kind = i32::from_le_bytes(raw[..4].try_into().ok()?);
    let value = i32::from_le_bytes(raw[4..].try_into().ok()?);
    match kind {
        0 => Some(sys::ExitStatus::Code(value)),
        1 => Some(sys::ExitStatus::Signal(value)),
        _ => None,
    }
}

/// The zygote's socket (`SOCK_SEQPACKET`, one message each). Host → zygote: the
/// [`SandboxConfig`] JSON with the run's six fds ([`fds::RUN`]). Zygote → host: one
/// [`ZygoteReply`].
pub(crate) mod zygote {
    /// The largest message either side accepts.
    pub(crate) const MAX_REQUEST: usize = 1 << 20;
    pub(crate) const MAX_REPLY: usize = 16 * 1024;
    /// How long the zygote may take to start, and to answer a fork request.
    pub(crate) const START_TIMEOUT_MS: i32 = 30_000;
    pub(crate) const FORK_TIMEOUT_MS: i32 = 10_000;

    /// What the zygote answers: `R` once ready (after start), `P<pid>` with the helper's pidfd
    /// (after a fork request), or `E<why>`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum ZygoteReply {
        Ready,
        Forked { pid: u32 },
        Error(String),
    }

    impl ZygoteReply {
        pub(crate) fn encode(&self) -> Vec<u8> {
            match self {
                ZygoteReply::Ready => b"R".to_vec(),
                ZygoteReply::Forked { pid } => format!("P{pid}").into_bytes(),
                ZygoteReply::Error(why) => format!("E{why}").into_bytes(),
            }
        }

        /// Any message that is not `R` or a well-formed `P<pid>` is an error, with its text.
        pub(crate) fn decode(message: &[u8]) -> ZygoteReply {
            if message == b"R" {
                return ZygoteReply::Ready;
            }
            if let Some(pid) = message
                .strip_prefix(b"P")
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|p| p.parse().ok())
            {
                return ZygoteReply::Forked { pid };
            }
            let text = message.strip_prefix(b"E").unwrap_or(message);
            ZygoteReply::Error(String::from_utf8_lossy(text).into_owned())
        }
    }
}

/// The runner's report channel (runner → host; `runner.py` writes it): what the runner says
/// while nothing of the user's has run, then what it says after, which the code can forge.
///
/// The wire: an optional [`READY`] (a pre-started sandbox), then either one [`COMPILE`] frame
/// (the code did not compile: nothing of it ran) or [`STARTED`] (the user's code runs from
/// here), then at most the runner's [`EXCEPTION`] or [`EXIT_MESSAGE`] frame. A frame is its
/// kind byte, the payload's length in decimal, `\n`, and the payload `name NUL line NUL column
/// NUL message`. The runner holds the channel's only copy, but once the code runs it can write
/// there too: the host takes what follows [`STARTED`] only as the text of an exception (the
/// last well-formed frame), never as a verdict, and a compile frame counts only before it.
pub(crate) mod report {
    /// Imports done, waiting for the code (pre-started sandboxes).
    pub(crate) const READY: &[u8; 1] = b"R";
    /// The user's code starts now.
    pub(crate) const STARTED: u8 = b'S';
    /// The code did not compile (written before [`STARTED`], never after).
    pub(crate) const COMPILE: u8 = b'C';
    /// An uncaught exception: its class's qualified name and its `str()`.
    pub(crate) const EXCEPTION: u8 = b'E';
    /// `sys.exit` with a value that is not an int: the value's `str()`.
    pub(crate) const EXIT_MESSAGE: u8 = b'X';
    /// The longest payload a frame may carry.
    const MAX_PAYLOAD: usize = 4 * 65536;
    /// The longest class name (200 characters of up to 4 bytes).
    const MAX_NAME_BYTES: usize = 800;

    /// One frame's payload.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Frame {
        pub(crate) name: String,
        pub(crate) line: usize,
        pub(crate) column: usize,
        pub(crate) message: String,
    }

    /// What the channel carried, by how far the runner got.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum RunnerReport {
        /// The runner did not reach the user's code: `Some` when it says the code did not
        /// compile (trustworthy: nothing of the user's had run when it was written).
        NotStarted(Option<Frame>),
        /// The user's code ran. What followed is untrusted text: the kind and payload of the
        /// last well-formed exception or exit-message frame.
        Started(Option<(u8, Frame)>),
    }

    impl RunnerReport {
        pub(crate) fn parse(bytes: &[u8]) -> RunnerReport {
            let rest = bytes.strip_prefix(READY.as_slice()).unwrap_or(bytes);
            match rest.first() {
                Some(&STARTED) => {
                    // The code may have written anything here: take the last frame that
                    // parses, looking past bytes that do not.
                    let mut last = None;
                    let mut rest = &rest[1..];
                    while !rest.is_empty() {
                        match next_frame(rest) {
                            Some((kind, frame, after)) => {
                                if matches!(kind, EXCEPTION | EXIT_MESSAGE) {
                                    last = Some((kind, frame));
                                }
                                rest = after;
                            }
                            None => rest = &rest[1..],
                        }
                    }
                    RunnerReport::Started(last)
                }
                Some(&COMPILE) => {
                    RunnerReport::NotStarted(next_frame(rest).and_then(|(kind, frame, after)| {
                        (kind == COMPILE && after.is_empty()).then_some(frame)
                    }))
                }
                _ => RunnerReport::NotStarted(None),
            }
        }
    }

    /// The frame at the start of `bytes` and what follows it; `None` if there is none.
    fn next_frame(bytes: &[u8]) -> Option<(u8, Frame, &[u8])> {
        let (&kind, rest) = bytes.split_first()?;
        let newline = rest.iter().take(8).position(|&b| b == b'\n')?;
        let digits = std::str::from_utf8(&rest[..newline]).ok()?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let length: usize = digits.parse().ok()?;
        let payload = rest.get(newline + 1..newline + 1 + length)?;
        if length > MAX_PAYLOAD {
            return None;
        }
        let frame = parse_payload(payload)?;
        Some((kind, frame, &rest[newline + 1 + length..]))
    }

    /// `name NUL line NUL column NUL message`; `None` unless the name is one a Python class
    /// can have as its qualified name (identifier characters, dots, `<locals>`). The name is
    /// checked first, within a bounded prefix, so that scanning junk stays linear.
    fn parse_payload(payload: &[u8]) -> Option<Frame> {
        let name_end = payload
            .iter()
            .take(MAX_NAME_BYTES + 1)
            .position(|&b| b == 0)?;
        let name = std::str::from_utf8(&payload[..name_end]).ok()?;
        let valid_name = !name.is_empty()
            && name.chars().count() <= 200
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '<' | '>'));
        if !valid_name {
            return None;
        }
        let text = String::from_utf8_lossy(&payload[name_end + 1..]);
        let mut parts = text.splitn(3, '\0');
        let line = parts.next()?.parse().unwrap_or(0);
        let column = parts.next()?.parse().unwrap_or(0);
        let message = parts.next()?.to_owned();
        Some(Frame {
            name: name.to_owned(),
            line,
            column,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::zygote::ZygoteReply;
    use super::*;

    #[test]
    fn exit_status_records_round_trip() {
        for status in [
            sys::ExitStatus::Code(0),
            sys::ExitStatus::Code(255),
            sys::ExitStatus::Signal(9),
        ] {
            assert_eq!(decode_status(encode_status(status)), Some(status));
        }
        let mut bad = encode_status(sys::ExitStatus::Code(1));
        bad[0] = 7;
        assert_eq!(decode_status(bad), None);
    }

    #[test]
    fn zygote_replies_round_trip_and_anything_else_is_an_error() {
        for reply in [
            ZygoteReply::Ready,
            ZygoteReply::Forked { pid: 4242 },
            ZygoteReply::Error("no libpython".into()),
        ] {
            assert_eq!(ZygoteReply::decode(&reply.encode()), reply);
        }
        assert_eq!(
            ZygoteReply::decode(b"Pnot-a-pid"),
            ZygoteReply::Error("Pnot-a-pid".into())
        );
        assert_eq!(ZygoteReply::decode(b"?"), ZygoteReply::Error("?".into()));
    }

    #[test]
    fn hidden_modes_are_found_by_their_argument() {
        for mode in HiddenMode::ALL {
            assert_eq!(HiddenMode::from_arg(mode.arg()), Some(mode));
        }
        assert_eq!(HiddenMode::from_arg("run"), None);
    }

    #[test]
    fn the_runner_writes_the_markers_and_frames_the_host_reads() {
        let byte = |b: u8| format!("b\"{}\"", b as char);
        for wire in [
            format!("write(fd, {})", byte(report::READY[0])),
            format!("write(fd, {})", byte(report::STARTED)),
            format!("report({}, ", byte(report::COMPILE)),
            format!("report({}, ", byte(report::EXCEPTION)),
            format!("report({}, ", byte(report::EXIT_MESSAGE)),
            "b\"%s%d\\n%s\" % (kind, len_(payload), payload)".to_string(),
            "\"%s\\0%d\\0%d\\0%s\" % (name,".to_string(),
        ] {
            assert!(
                crate::runner::RUNNER.contains(&wire),
                "runner.py lacks {wire}"
            );
        }
    }

    mod fuzz_report {
        use super::super::report::{self, RunnerReport};
        use proptest::prelude::*;

        fn frame(kind: u8, name: &str, message: &str) -> Vec<u8> {
            let payload = format!("{name}\0{}\0{}\0{message}", 0, 0);
            let mut bytes = vec![kind];
            bytes.extend(format!("{}\n", payload.len()).into_bytes());
            bytes.extend(payload.into_bytes());
            bytes
        }

        proptest! {
            // Whatever the code writes after the start marker, the report never says that
            // nothing ran, and parsing never panics.
            #[test]
            fn fuzz_nothing_after_the_start_marker_says_syntax(junk in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let mut bytes = b"S".to_vec();
                bytes.extend(&junk);
                prop_assert!(matches!(RunnerReport::parse(&bytes), RunnerReport::Started(_)));
                let mut pooled = b"RS".to_vec();
                pooled.extend(&junk);
                prop_assert!(matches!(RunnerReport::parse(&pooled), RunnerReport::Started(_)));
            }

            #[test]
            fn fuzz_any_bytes_parse(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let _ = RunnerReport::parse(&bytes);
            }

            // The runner's own last frame is found behind any junk that cannot itself hold a
            // frame header (no newline): junk with frames in it can swallow it, which only
            // hides the code's own exception text.
            #[test]
            fn fuzz_the_last_frame_is_found_behind_junk(
                junk in proptest::collection::vec(any::<u8>().prop_map(|b| if b == b'\n' { b' ' } else { b }), 0..2048),
                name in "[A-Za-z_][A-Za-z0-9_.]{0,40}",
                message in any::<String>(),
            ) {
                let mut bytes = b"S".to_vec();
                bytes.extend(&junk);
                bytes.extend(frame(report::EXCEPTION, &name, &message));
                match RunnerReport::parse(&bytes) {
                    RunnerReport::Started(Some((kind, f))) => {
                        prop_assert_eq!(kind, report::EXCEPTION);
                        prop_assert_eq!(f.name, name);
                        prop_assert_eq!(f.message, message);
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            }
        }
    }

    #[test]
    fn a_report_says_syntax_only_before_the_code_starts() {
        use report::{Frame, RunnerReport};
        let frame = |kind: u8, payload: &str| {
            let mut bytes = vec![kind];
            bytes.extend(format!("{}\n{payload}", payload.len()).into_bytes());
            bytes
        };
        let compile = frame(b'C', "SyntaxError\x002\x005\x00invalid syntax");
        let expected = Frame {
            name: "SyntaxError".into(),
            line: 2,
            column: 5,
            message: "invalid syntax".into(),
        };
        assert_eq!(
            RunnerReport::parse(&compile),
            RunnerReport::NotStarted(Some(expected.clone()))
        );
        let pooled = [b"R".as_slice(), &compile].concat();
        assert_eq!(
            RunnerReport::parse(&pooled),
            RunnerReport::NotStarted(Some(expected.clone()))
        );
        // After the start marker a compile frame is only text, and not an exception's.
        let forged = [b"S".as_slice(), &compile].concat();
        assert_eq!(RunnerReport::parse(&forged), RunnerReport::Started(None));
        // A compile frame followed by anything is not the runner's.
        let trailing = [compile.as_slice(), b"S"].concat();
        assert_eq!(
            RunnerReport::parse(&trailing),
            RunnerReport::NotStarted(None)
        );
        // The last well-formed exception frame is taken; a broken frame ends the reading.
        let e1 = frame(b'E', "MemoryError\x000\x000\x00forged");
        let e2 = frame(b'E', "ValueError\x000\x000\x00real");
        let both = [b"S".as_slice(), &e1, &e2].concat();
        match RunnerReport::parse(&both) {
            RunnerReport::Started(Some((b'E', f))) => assert_eq!(f.name, "ValueError"),
            other => panic!("{other:?}"),
        }
        // Junk between frames is looked past; a frame the junk swallows is lost (the code
        // can hide its own exception's text, and no more).
        let junk = [b"S".as_slice(), b"E", &e1, b"run\0x", &e2, b"E9\n"].concat();
        match RunnerReport::parse(&junk) {
            RunnerReport::Started(Some((b'E', f))) => assert_eq!(f.name, "ValueError"),
            other => panic!("{other:?}"),
        }
        let prefix = "Forged\x000\x000\x00";
        let swallower = format!("E{}\n{prefix}", prefix.len() + e2.len());
        let swallowed = [b"S".as_slice(), swallower.as_bytes(), &e2].concat();
        match RunnerReport::parse(&swallowed) {
            RunnerReport::Started(Some((b'E', f))) => assert_eq!(f.name, "Forged"),
            other => panic!("{other:?}"),
        }
        let nested = [
            b"S".as_slice(),
            &frame(b'E', "f.<locals>.Err\x000\x000\x00m"),
        ]
        .concat();
        assert!(matches!(
            RunnerReport::parse(&nested),
            RunnerReport::Started(Some(_))
        ));
        let bad_name = [b"S".as_slice(), &frame(b'E', "Bad Name\x000\x000\x00m")].concat();
        assert_eq!(RunnerReport::parse(&bad_name), RunnerReport::Started(None));
        for junk in [&b""[..], b"R", b"x", b"C", b"C5\nab", b"Cz\n", b"E3\nabc"] {
            assert_eq!(
                RunnerReport::parse(junk),
                RunnerReport::NotStarted(None),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn status_events_cross_as_json_lines() {
        let event = StatusEvent::Exit {
            code: Some(3),
            signal: None,
            cpu_time_ms: 1.5,
            peak_memory_bytes: 4096,
            memory_limit_hit: true,
        };
        let line = serde_json::to_string(&event).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(StatusEvent::parse(&line), Some(event));
        assert_eq!(StatusEvent::parse("not json"), None);
    }
}
