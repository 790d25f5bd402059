//! The verdict: how every backend turns what happened to a run into the result's `verdict`,
//! `error_type` and `error`. Only evidence the code cannot reach decides it: limits seen from
//! outside first (the kernel's OOM kill, the caller's cancel, the timeout, an output cap),
//! then the runner's compile failure if the code never started, then the exit status the
//! kernel gave. What the runner says after the code started (the code can write there too)
//! only names an exception and its message. Runs on the host, for `none`, `native` and
//! `docker`.

use std::time::Duration;

use super::{BackendKind, ExecutionRequest};
use crate::limits::Limits;
use crate::protocol::report::{self, RunnerReport};
use crate::result::{ErrorType, ExecutionResult, signal_name};

/// What the host saw happen, in the order it decides the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    Timeout,
    Cancelled,
    OutputLimit(Stream),
}

/// One of the code's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// How the run ended, as the helper (or the container engine) told it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exit {
    pub(crate) code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) cpu_time_ms: f64,
    pub(crate) peak_memory_bytes: u64,
    pub(crate) memory_limit_hit: bool,
    pub(crate) duration: Duration,
}

/// The messages of limits seen from outside, shared by every backend.
pub(crate) fn timeout_message(limits: &Limits) -> String {
    format!(
        "execution timed out after {} s",
        limits.timeout.get().as_secs_f64()
    )
}

pub(crate) fn output_limit_message(stream: Stream, limits: &Limits) -> String {
    format!(
        "{} exceeded the output limit of {} bytes",
        stream.name(),
        limits.max_output_bytes
    )
}

pub(crate) fn memory_limit_message(limits: &Limits) -> String {
    format!(
        "the memory limit of {} MB was exceeded (killed by the kernel's OOM killer)",
        limits.memory_mb
    )
}

/// The exit status the runner gives an uncaught exception and a failed compile.
const RUNNER_FAILURE_STATUS: i32 = 1;

/// Decides the verdict: limits seen from outside first, then a compile failure (only if the
/// code never started), then the exit status; the runner's later text only names exceptions.
pub(crate) fn verdict(
    backend: BackendKind,
    exit: &Exit,
    stop: Option<StopReason>,
    report: &RunnerReport,
    request: &ExecutionRequest<'_>,
) -> ExecutionResult {
    let mut result = ExecutionResult::sandbox_error(backend.as_str(), String::new());
    result.exit_code = exit.code;
    result.signal = exit.signal.map(signal_name);
    result.duration_ms = exit.duration.as_secs_f64() * 1000.0;
    result.cpu_time_ms = exit.cpu_time_ms;
    result.peak_memory_mb = exit.peak_memory_bytes as f64 / (1024.0 * 1024.0);
    let limits = &request.limits;
    let failed_like_the_runner = exit.signal.is_none() && exit.code == Some(RUNNER_FAILURE_STATUS);
    let (error_type, error) = match (stop, report) {
        // An OOM kill is the root cause of whatever followed it (often a hang, then a timeout).
        _ if exit.memory_limit_hit => (
            Some(ErrorType::MemoryLimit),
            Some(memory_limit_message(limits)),
        ),
        (Some(StopReason::Cancelled), _) => (
            Some(ErrorType::Cancelled),
            Some("the execution was cancelled by its caller".into()),
        ),
        (Some(StopReason::Timeout), _) => (Some(ErrorType::Timeout), Some(timeout_message(limits))),
        (Some(StopReason::OutputLimit(stream)), _) => (
            Some(ErrorType::OutputLimit),
            Some(output_limit_message(stream, limits)),
        ),
        (None, RunnerReport::NotStarted(Some(r))) if failed_like_the_runner => {
            result.line = (r.line > 0).then_some(r.line);
            result.column = (r.column > 0).then_some(r.column);
            let message = if r.name == "SyntaxError"
                || r.name == "IndentationError"
                || r.name == "TabError"
            {
                format!("{} (line {}, column {})", r.message, r.line, r.column)
            } else {
                format!(
                    "the interpreter could not compile the code: {}: {}",
                    r.name, r.message
                )
            };
            (Some(ErrorType::SyntaxError), Some(message))
        }
        (None, RunnerReport::Started(Some((report::EXCEPTION, r)))) if failed_like_the_runner => (
            Some(ErrorType::Exception(r.name.clone())),
            Some(if r.message.is_empty() {
                r.name.clone()
            } else {
                format!("{}: {}", r.name, r.message)
            }),
        ),
        _ => match (exit.code, exit.signal) {
            (_, Some(signal)) => (
                Some(ErrorType::Crash),
                Some(format!("killed by signal {}", signal_name(signal))),
            ),
            (Some(0), None) => (None, None),
            (Some(code), None) => {
                let detail = match report {
                    RunnerReport::Started(Some((report::EXIT_MESSAGE, r)))
                        if failed_like_the_runner =>
                    {
                        format!(": {}", r.message)
                    }
                    _ => String::new(),
                };
                (
                    Some(ErrorType::Exit),
                    Some(format!("exited with status {code}{detail}")),
                )
            }
            (None, None) => (
                Some(ErrorType::SandboxError),
                Some("the supervisor lost track of the main process".into()),
            ),
        },
    };
    result.conclude(error_type, error);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: Option<i32>, signal: Option<i32>, oom: bool) -> Exit {
        Exit {
            code,
            signal,
            cpu_time_ms: 1.0,
            peak_memory_bytes: 2 * 1024 * 1024,
            memory_limit_hit: oom,
            duration: Duration::from_millis(5),
        }
    }

    /// The runner's report: `started` (the `S` marker) then a frame of `kind`.
    fn record(kind: &str, name: &str, line: usize, column: usize, message: &str) -> Vec<u8> {
        let payload = format!("{name}\0{line}\0{column}\0{message}");
        let frame = format!("C{}\n{payload}", payload.len());
        match kind {
            "compile" => frame.into_bytes(),
            "run" => format!("SE{}", &frame[1..]).into_bytes(),
            "exit" => format!("SX{}", &frame[1..]).into_bytes(),
            _ => unreachable!(),
        }
    }

    /// One row: what happened, and the verdict and message that must follow.
    struct Case {
        what: &'static str,
        exit: Exit,
        stop: Option<StopReason>,
        report: Option<Vec<u8>>,
        error_type: Option<&'static str>,
        error: Option<&'static str>,
    }

    #[test]
    fn every_outcome_gets_its_verdict() {
        let limits = Limits::default();
        let request = ExecutionRequest {
            code: b"",
            stdin: None,
            limits,
            monitor: None,
            cancel: None,
        };
        let timeout = timeout_message(&limits);
        let memory = memory_limit_message(&limits);
        let stdout_cap = output_limit_message(Stream::Stdout, &limits);
        let stderr_cap = output_limit_message(Stream::Stderr, &limits);
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let cases = [
            Case {
                what: "a clean exit",
                exit: exit(Some(0), None, false),
                stop: None,
                report: None,
                error_type: None,
                error: None,
            },
            Case {
                what: "a non-zero exit",
                exit: exit(Some(3), None, false),
                stop: None,
                report: None,
                error_type: Some("Exit"),
                error: Some("exited with status 3"),
            },
            Case {
                what: "sys.exit with a message",
                exit: exit(Some(1), None, false),
                stop: None,
                report: Some(record("exit", "SystemExit", 0, 0, "bye")),
                error_type: Some("Exit"),
                error: Some("exited with status 1: bye"),
            },
            Case {
                what: "an uncaught exception",
                exit: exit(Some(1), None, false),
                stop: None,
                report: Some(record("run", "ValueError", 0, 0, "bad")),
                error_type: Some("ValueError"),
                error: Some("ValueError: bad"),
            },
            Case {
                what: "an exception without a message",
                exit: exit(Some(1), None, false),
                stop: None,
                report: Some(record("run", "KeyboardInterrupt", 0, 0, "")),
                error_type: Some("KeyboardInterrupt"),
                error: Some("KeyboardInterrupt"),
            },
            Case {
                what: "a MemoryError (no kernel evidence: an exception like any other)",
                exit: exit(Some(1), None, false),
                stop: None,
                report: Some(record("run", "MemoryError", 0, 0, "")),
                error_type: Some("MemoryError"),
                error: Some("MemoryError"),
            },
            Case {
                what: "an exception record from a run that exited 0",
                exit: exit(Some(0), None, false),
                stop: None,
                report: Some(record("run", "ValueError", 0, 0, "forged")),
                error_type: None,
                error: None,
            },
            Case {
                what: "an exception record from a run that exited 3",
                exit: exit(Some(3), None, false),
                stop: None,
                report: Some(record("run", "ValueError", 0, 0, "forged")),
                error_type: Some("Exit"),
                error: Some("exited with status 3"),
            },
            Case {
                what: "a compile record from a run that exited 0",
                exit: exit(Some(0), None, false),
                stop: None,
                report: Some(record("compile", "SyntaxError", 1, 1, "forged")),
                error_type: None,
                error: None,
            },
            Case {
                what: "a compile record after the code started",
                exit: exit(Some(1), None, false),
                stop: None,
                report: Some(
                    [
                        b"S".as_slice(),
                        &record("compile", "SyntaxError", 1, 1, "forged"),
                    ]
                    .concat(),
                ),
                error_type: Some("Exit"),
                error: Some("exited with status 1"),
            },
            Case {
                what: "an OOM kill beats the exception it caused",
                exit: exit(Some(1), None, true),
                stop: None,
                report: Some(record("run", "MemoryError", 0, 0, "")),
                error_type: Some("MemoryLimit"),
                error: Some(leak(memory.clone())),
            },
            Case {
                what: "a compile-time SyntaxError",
                exit: exit(Some(1), None, false),
                stop: None,
                report: Some(record("compile", "SyntaxError", 2, 5, "invalid syntax")),
                error_type: Some("SyntaxError"),
                error: Some("invalid syntax (line 2, column 5)"),
            },
            Case {
                what: "another compile failure",
                exit: exit(Some(1), None, false),
                stop: None,
                report: Some(record("compile", "RecursionError", 0, 0, "too deep")),
                error_type: Some("SyntaxError"),
                error: Some("the interpreter could not compile the code: RecursionError: too deep"),
            },
            Case {
                what: "a record whose name is not an identifier",
                exit: exit(Some(1), None, false),
                stop: None,
                report: Some(record("run", "Bad Name", 0, 0, "x")),
                error_type: Some("Exit"),
                error: Some("exited with status 1"),
            },
            Case {
                what: "a signal nothing sent",
                exit: exit(None, Some(libc::SIGSEGV), false),
                stop: None,
                report: None,
                error_type: Some("Crash"),
                error: Some("killed by signal SIGSEGV"),
            },
            Case {
                what: "a lost main process",
                exit: exit(None, None, false),
                stop: None,
                report: None,
                error_type: Some("SandboxError"),
                error: Some("the supervisor lost track of the main process"),
            },
            Case {
                what: "the timeout",
                exit: exit(None, Some(libc::SIGKILL), false),
                stop: Some(StopReason::Timeout),
                report: None,
                error_type: Some("Timeout"),
                error: Some(leak(timeout.clone())),
            },
            Case {
                what: "the timeout beats the runner's report",
                exit: exit(Some(1), None, false),
                stop: Some(StopReason::Timeout),
                report: Some(record("run", "ValueError", 0, 0, "late")),
                error_type: Some("Timeout"),
                error: Some(leak(timeout)),
            },
            Case {
                what: "a cancel",
                exit: exit(None, Some(libc::SIGKILL), false),
                stop: Some(StopReason::Cancelled),
                report: None,
                error_type: Some("Cancelled"),
                error: Some("the execution was cancelled by its caller"),
            },
            Case {
                what: "the stdout cap",
                exit: exit(None, Some(libc::SIGKILL), false),
                stop: Some(StopReason::OutputLimit(Stream::Stdout)),
                report: None,
                error_type: Some("OutputLimit"),
                error: Some(leak(stdout_cap)),
            },
            Case {
                what: "the stderr cap",
                exit: exit(None, Some(libc::SIGKILL), false),
                stop: Some(StopReason::OutputLimit(Stream::Stderr)),
                report: None,
                error_type: Some("OutputLimit"),
                error: Some(leak(stderr_cap)),
            },
            Case {
                what: "an OOM kill beats the timeout it caused",
                exit: exit(None, Some(libc::SIGKILL), true),
                stop: Some(StopReason::Timeout),
                report: None,
                error_type: Some("MemoryLimit"),
                error: Some(leak(memory)),
            },
        ];
        for case in &cases {
            let report = RunnerReport::parse(case.report.as_deref().unwrap_or_default());
            let result = verdict(
                BackendKind::Native,
                &case.exit,
                case.stop,
                &report,
                &request,
            );
            assert_eq!(
                result.error_type.as_ref().map(ErrorType::as_str),
                case.error_type,
                "{}",
                case.what
            );
            assert_eq!(result.error.as_deref(), case.error, "{}", case.what);
            assert_eq!(result.success, case.error_type.is_none(), "{}", case.what);
            assert_eq!(
                result.verdict,
                crate::result::Verdict::of(result.error_type.as_ref()),
                "{}",
                case.what
            );
            assert_eq!(result.exit_code, case.exit.code, "{}", case.what);
            assert_eq!(result.backend, "native");
            assert_eq!(result.peak_memory_mb, 2.0);
        }
        // The compile case carries its position; the others none.
        let report = RunnerReport::parse(&record("compile", "SyntaxError", 2, 5, "x"));
        let result = verdict(
            BackendKind::None,
            &exit(Some(1), None, false),
            None,
            &report,
            &request,
        );
        assert_eq!((result.line, result.column), (Some(2), Some(5)));
    }
}
