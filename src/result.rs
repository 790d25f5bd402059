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
    /// An uncaught Python exception, by class name (`ZeroDivisionError`, `KeyboardInterrupt`, …).
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
        assert_eq!(value["error"], "invalid syntax (line 2, column 7)");
        assert_eq!(value["line"], 2);
        assert!(value.get("monitoring").is_none());
    }

    #[test]
    fn names_signals() {
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(40), "SIG40");
    }
}
