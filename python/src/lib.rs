//! The native core of the `code_execution_tool` Python package: a thin PyO3 layer over the Rust
//! library. It validates nothing itself (the library's typed limits do, and their errors become
//! `ValueError` naming the field), hands results back as JSON text for the Python side to turn
//! into dicts, and releases the GIL while code runs.

use std::path::PathBuf;

use code_execution_tool::limits::{LimitError, Timeout};
use code_execution_tool::{BackendKind, CodeExecutionTool, SandboxExecutor, ToolError};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

create_exception!(
    _native,
    BackendUnavailableError,
    PyException,
    "The requested backend cannot run here (no user namespaces, no Docker Engine, a missing image...); the message says what to do."
);

fn limit_error(e: &LimitError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn tool_error(e: ToolError) -> PyErr {
    match e {
        ToolError::Limit(limit) => limit_error(&limit),
        ToolError::EmptyImage => PyValueError::new_err("image: the image name is empty"),
        other => BackendUnavailableError::new_err(other.to_string()),
    }
}

fn json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| PyException::new_err(format!("cannot encode: {e}")))
}

/// A configured tool: one backend and its limits.
#[pyclass(module = "code_execution_tool._native")]
struct Tool {
    tool: CodeExecutionTool,
}

#[pymethods]
impl Tool {
    #[new]
    #[pyo3(signature = (backend, memory_mb, cpu, timeout_s, image=None, supervisor=None, disk_mb=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        backend: &str,
        memory_mb: u64,
        cpu: f64,
        timeout_s: f64,
        image: Option<String>,
        supervisor: Option<PathBuf>,
        disk_mb: Option<u64>,
    ) -> PyResult<Tool> {
        let kind: BackendKind = backend
            .parse()
            .map_err(|e: String| PyValueError::new_err(format!("backend: {e}")))?;
        let timeout = Timeout::from_secs_f64(timeout_s).map_err(|e| limit_error(&e))?;
        let mut builder = CodeExecutionTool::builder()
            .backend(kind)
            .memory_limit_mb(memory_mb)
            .cpu_limit(cpu)
            .timeout(timeout.get());
        if let Some(image) = image {
            builder = builder.image(image);
        }
        if let Some(path) = supervisor {
            builder = builder.supervisor(path);
        }
        if let Some(mb) = disk_mb {
            builder = builder.disk_limit_mb(mb);
        }
        // Connecting to an engine or probing the host may take a while: without the GIL.
        let tool = py.allow_threads(|| builder.build()).map_err(tool_error)?;
        Ok(Tool { tool })
    }

    /// Runs `code`; the result as JSON text.
    #[pyo3(signature = (code, monitor=false, stdin=None))]
    fn execute(
        &self,
        py: Python<'_>,
        code: &str,
        monitor: bool,
        stdin: Option<&str>,
    ) -> PyResult<String> {
        let tool = self.tool.clone();
        let interval = monitor.then_some(code_execution_tool::tool::DEFAULT_MONITOR_INTERVAL);
        let result = py
            .allow_threads(|| tool.run(code.as_bytes(), stdin.map(str::as_bytes), interval))
            .map_err(|e| PyValueError::new_err(format!("code: {e}")))?;
        json(&result)
    }

    /// `{"valid", "error", "line", "column"}` as JSON text.
    fn validate_syntax(&self, code: &str) -> PyResult<String> {
        let check: code_execution_tool::SyntaxCheck = self.tool.validate_syntax(code).into();
        json(&check)
    }

    /// Changes memory and CPU of later executions; on error nothing changes.
    fn update_limits(&mut self, memory_mb: u64, cpu: f64) -> PyResult<()> {
        self.tool
            .update_limits(memory_mb, cpu)
            .map_err(|e| limit_error(&e))
    }

    /// Changes the timeout of later executions.
    fn set_timeout(&mut self, timeout_s: f64) -> PyResult<()> {
        let timeout = Timeout::from_secs_f64(timeout_s).map_err(|e| limit_error(&e))?;
        let mut limits = *self.tool.limits();
        limits.timeout = timeout;
        self.tool.set_limits(limits);
        Ok(())
    }

    /// The limits in force, as JSON text.
    fn limits(&self) -> PyResult<String> {
        json(self.tool.limits())
    }

    fn backend(&self) -> &'static str {
        self.tool.backend().as_str()
    }

    /// A persistent sandbox with this tool's limits.
    fn create_sandbox(&self, py: Python<'_>) -> PyResult<Sandbox> {
        let tool = self.tool.clone();
        let sandbox = py
            .allow_threads(|| tool.create_sandbox())
            .map_err(tool_error)?;
        Ok(Sandbox {
            sandbox: Some(sandbox),
        })
    }
}

/// A persistent sandbox (a container with the docker backend).
#[pyclass(module = "code_execution_tool._native")]
struct Sandbox {
    sandbox: Option<SandboxExecutor>,
}

impl Sandbox {
    fn live(&self) -> PyResult<&SandboxExecutor> {
        self.sandbox.as_ref().ok_or_else(|| {
            BackendUnavailableError::new_err("this sandbox was cleaned up; create a new one")
        })
    }
}

#[pymethods]
impl Sandbox {
    /// Runs `code` in the sandbox; the result as JSON text.
    #[pyo3(signature = (code, stdin=None))]
    fn execute(&self, py: Python<'_>, code: &str, stdin: Option<&str>) -> PyResult<String> {
        let sandbox = self.live()?;
        let result = py
            .allow_threads(|| sandbox.run(code.as_bytes(), stdin.map(str::as_bytes), None))
            .map_err(|e| PyValueError::new_err(format!("code: {e}")))?;
        json(&result)
    }

    /// `{"cpu_percent", "memory_mb", "peak_memory_mb", "cpu_time_ms", "pids"}` as JSON text.
    fn usage(&self, py: Python<'_>) -> PyResult<String> {
        let sandbox = self.live()?;
        let usage = py.allow_threads(|| sandbox.get_resource_usage());
        json(&usage)
    }

    /// Changes memory and CPU live; the limits now in force as JSON text.
    fn update_limits(&self, py: Python<'_>, memory_mb: u64, cpu: f64) -> PyResult<String> {
        let sandbox = self.live()?;
        let limits = py
            .allow_threads(|| sandbox.update_limits(memory_mb, cpu))
            .map_err(tool_error)?;
        json(&limits)
    }

    /// The container's id (docker), else None.
    fn container_id(&self) -> Option<String> {
        self.sandbox
            .as_ref()
            .and_then(|s| s.container_id().map(str::to_owned))
    }

    fn exists(&self, py: Python<'_>) -> bool {
        match &self.sandbox {
            Some(sandbox) => py.allow_threads(|| sandbox.exists()),
            None => false,
        }
    }

    /// Removes the sandbox now (also done when the object is collected).
    fn cleanup(&mut self, py: Python<'_>) {
        if let Some(sandbox) = self.sandbox.take() {
            py.allow_threads(move || {
                sandbox.cleanup();
                drop(sandbox);
            });
        }
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Tool>()?;
    m.add_class::<Sandbox>()?;
    m.add(
        "BackendUnavailableError",
        m.py().get_type::<BackendUnavailableError>(),
    )?;
    m.add(
        "DEFAULT_IMAGE",
        code_execution_tool::backend::docker::DEFAULT_IMAGE,
    )?;
    Ok(())
}
