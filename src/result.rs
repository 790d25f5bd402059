//! The result contract: what every backend returns for one execution, and its JSON form.
//!
//! Field names and meanings are promises to users (`code-exec run --json`, the HTTP API, the
//! Python package): change them only by adding fields. Runs in the host process.

use serde::Serialize;

use crate::syntax::SyntaxProblem;

/// Why an execution did not succeed. Serialized as the contract's `error_type` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorType {
    /// Rejected before running; nothing ran.
    SyntaxError,
    /// An uncaught Python exception, by its class's qualified name (`ZeroDivisionError`,
    /// `Outer.Inner`, …): the code's own text, which may spell a verdict's name.
    Exception(String),
    /// The code exited with a non-zero status.
    Exit,
    Timeout,
    MemoryLimit,
    OutputLimit,
    /// The caller cancelled the run (e.g. an HTTP client went away); it was killed.
    Cancelled,
    /// Killed by a signal that no limit sent.
    Crash,
    /// The tool itself failed; never used for the code's own faults.
    SandboxError,
}

impl ErrorType {
    pub fn as_str(&self) -> &str {
        match self {
            ErrorType::SyntaxError => "SyntaxError",
            ErrorType::Exception(name) => name,
            ErrorType::Exit => "Exit",
            ErrorType::Timeout => "Timeout",
            ErrorType::MemoryLimit => "MemoryLimit",
            ErrorType::OutputLimit => "OutputLimit",
            ErrorType::Cancelled => "Cancelled",
            ErrorType::Crash => "Crash",
            ErrorType::SandboxError => "SandboxError",
        }
    }
}

/// How the execution ended, decided on the host from evidence the code cannot reach: the
/// result's `verdict`. Unlike `error_type` (which, for an uncaught exception, is the class's
/// qualified name, whatever the code named it), its values are a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Ran and exited with status 0.
    Ok,
    /// An uncaught exception (its name and message are the code's own text).
    Exception,
    /// Exited with a non-zero status.
    Exit,
    /// Did not compile: nothing of it ran.
    SyntaxError,
    Timeout,
    /// The kernel's memory accounting stopped it (an OOM kill in its cgroup or container).
    MemoryLimit,
    OutputLimit,
    /// Killed by a signal that no limit sent.
    Crash,
    /// The tool failed; never the code's doing.
    SandboxError,
    Cancelled,
}

impl Verdict {
    /// Every verdict, in a fixed order (metrics labels, documentation).
    pub const ALL: [Verdict; 10] = [
        Verdict::Ok,
        Verdict::Exception,
        Verdict::Exit,
        Verdict::SyntaxError,
        Verdict::Timeout,
        Verdict::MemoryLimit,
        Verdict::OutputLimit,
        Verdict::Crash,
        Verdict::SandboxError,
        Verdict::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Exception => "exception",
            Verdict::Exit => "exit",
            Verdict::SyntaxError => "syntax_error",
            Verdict::Timeout => "timeout",
            Verdict::MemoryLimit => "memory_limit",
            Verdict::OutputLimit => "output_limit",
            Verdict::Crash => "crash",
            Verdict::SandboxError => "sandbox_error",
            Verdict::Cancelled => "cancelled",
        }
    }

    /// The verdict of an outcome (`None`: success).
    pub fn of(error_type: Option<&ErrorType>) -> Verdict {
        match error_type {
            None => Verdict::Ok,
            Some(ErrorType::Exception(_)) => Verdict::Exception,
            Some(ErrorType::Exit) => Verdict::Exit,
            Some(ErrorType::SyntaxError) => Verdict::SyntaxError,
            Some(ErrorType::Timeout) => Verdict::Timeout,
            Some(ErrorType::MemoryLimit) => Verdict::MemoryLimit,
            Some(ErrorType::OutputLimit) => Verdict::OutputLimit,
            Some(ErrorType::Crash) => Verdict::Crash,
            Some(ErrorType::SandboxError) => Verdict::SandboxError,
            Some(ErrorType::Cancelled) => Verdict::Cancelled,
        }
    }
}

impl Serialize for ErrorType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How one limit is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforced {
    /// For the whole run by a cgroup (or the container engine).
    Cgroup,
    /// From the host side for the whole run (timeout, output caps).
    Host,
    /// Per process only (an rlimit): a run of many processes can exceed it in total.
    PerProcess,
    NotEnforced,
}

/// How each limit of a run is enforced: the result's `limits_enforced`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    pub memory_mb: Enforced,
    pub cpu: Enforced,
    pub pids: Enforced,
    pub timeout: Enforced,
    pub max_output_bytes: Enforced,
}

impl Enforcement {
    /// The limits not enforced for the whole run, by field name.
    pub fn weak(&self) -> Vec<(&'static str, Enforced)> {
        [
            ("memory_mb", self.memory_mb),
            ("cpu", self.cpu),
            ("pids", self.pids),
            ("timeout", self.timeout),
            ("max_output_bytes", self.max_output_bytes),
        ]
        .into_iter()
        .filter(|(_, e)| matches!(e, Enforced::PerProcess | Enforced::NotEnforced))
        .collect()
    }
}

/// One resource sample taken from the host side while the code ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Milliseconds since the execution started.
    pub timestamp_ms: f64,
    pub cpu_percent: f64,
    pub memory_mb: f64,
    pub pids: u32,
}

/// Everything known about one execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionResult {
    pub success: bool,
    /// How it ended; always `Verdict::of(error_type)` (set through [`ExecutionResult::conclude`]).
    pub verdict: Verdict,
    pub output: String,
    pub stderr: String,
    pub error: Option<String>,
    pub error_type: Option<ErrorType>,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub duration_ms: f64,
    pub cpu_time_ms: f64,
    pub peak_memory_mb: f64,
    pub truncated: bool,
    pub backend: String,
    /// Position of a `SyntaxError` (1-based), else null.
    pub line: Option<usize>,
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Vec<Sample>>,
    /// How each limit was enforced (`cgroup`, `host`, `per_process`, `not_enforced`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits_enforced: Option<Enforcement>,
}

impl ExecutionResult {
    /// A result in which nothing ran.
    fn not_run(backend: &str, error_type: ErrorType, error: String) -> Self {
        ExecutionResult {
            success: false,
            verdict: Verdict::of(Some(&error_type)),
            output: String::new(),
            stderr: String::new(),
            error: Some(error),
            error_type: Some(error_type),
            exit_code: None,
            signal: None,
            duration_ms: 0.0,
            cpu_time_ms: 0.0,
            peak_memory_mb: 0.0,
            truncated: false,
            backend: backend.to_owned(),
            line: None,
            column: None,
            monitoring: None,
            limits_enforced: None,
        }
    }

    /// The code was rejected by syntax validation; nothing ran.
    pub fn syntax_error(backend: &str, problem: &SyntaxProblem) -> Self {
        let mut result = Self::not_run(backend, ErrorType::SyntaxError, problem.to_string());
        result.line = Some(problem.line);
        result.column = Some(problem.column);
        result
    }

    /// The tool failed before or while running the code.
    pub fn sandbox_error(backend: &str, message: String) -> Self {
        Self::not_run(backend, ErrorType::SandboxError, message)
    }

    /// Sets the outcome: `error_type`, `error`, and the `success` and `verdict` that follow.
    pub fn conclude(&mut self, error_type: Option<ErrorType>, error: Option<String>) {
        self.success = error_type.is_none();
        self.verdict = Verdict::of(error_type.as_ref());
        self.error_type = error_type;
        self.error = error;
    }

    /// A copy with empty `output` and `stderr` (cheap however large the streams are).
    pub fn clone_without_streams(&self) -> ExecutionResult {
        ExecutionResult {
            output: String::new(),
            stderr: String::new(),
            error: self.error.clone(),
            error_type: self.error_type.clone(),
            signal: self.signal.clone(),
            backend: self.backend.clone(),
            monitoring: self.monitoring.clone(),
            ..*self
        }
    }

    pub fn is_sandbox_error(&self) -> bool {
        self.error_type == Some(ErrorType::SandboxError)
    }
}

/// Name of a signal number (`SIGSEGV`), or `SIG<n>` for one without a common name.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        16 => "SIGSTKFLT",
        17 => "SIGCHLD",
        18 => "SIGCONT",
        19 => "SIGSTOP",
        20 => "SIGTSTP",
        21 => "SIGTTIN",
        22 => "SIGTTOU",
        23 => "SIGURG",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        26 => "SIGVTALRM",
        27 => "SIGPROF",
        28 => "SIGWINCH",
        29 => "SIGIO",
        30 => "SIGPWR",
        31 => "SIGSYS",
        _ => return format!("SIG{signal}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_the_contract_fields() {
        let problem = SyntaxProblem {
            message: "invalid syntax".into(),
            line: 2,
            column: 7,
        };
        let value = serde_json::to_value(ExecutionResult::syntax_error("none", &problem)).unwrap();
        for key in [
            "success",
            "output",
            "stderr",
            "error",
            "error_type",
            "exit_code",
            "signal",
            "duration_ms",
            "cpu_time_ms",
            "peak_memory_mb",
            "truncated",
            "backend",
            "line",
            "column",
        ] {
            assert!(value.get(key).is_some(), "missing {key}");
        }
        assert_eq!(value["error_type"], "SyntaxError");
        assert_eq!(value["verdict"], "syntax_error");
        assert_eq!(value["error"], "invalid syntax (line 2, column 7)");
        assert_eq!(value["line"], 2);
        assert!(value.get("monitoring").is_none());
    }

    #[test]
    fn a_class_named_like_a_verdict_is_an_exception() {
        let mut result = ExecutionResult::sandbox_error("native", String::new());
        for name in ["Timeout", "SandboxError", "SyntaxError", "MemoryLimit"] {
            result.conclude(Some(ErrorType::Exception(name.into())), None);
            let value = serde_json::to_value(&result).unwrap();
            assert_eq!(
                (&value["error_type"], &value["verdict"]),
                (&name.into(), &"exception".into())
            );
            assert!(!result.is_sandbox_error());
        }
        result.conclude(None, None);
        assert!(result.success);
        assert_eq!(result.verdict, Verdict::Ok);
        // Each verdict serializes as its name.
        for verdict in Verdict::ALL {
            assert_eq!(serde_json::to_value(verdict).unwrap(), verdict.as_str());
        }
    }

    #[test]
    fn names_signals() {
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(40), "SIG40");
    }
}
