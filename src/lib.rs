//! code-exec: run untrusted Python code and say exactly what happened.
//!
//! The crate validates Python syntax in-process (parse-only), runs the code through a
//! [`Backend`](backend::Backend) under validated [`Limits`](limits::Limits), and returns an
//! [`ExecutionResult`](result::ExecutionResult) whose JSON form is the public contract.
//!
//! ```no_run
//! use code_execution_tool::{BackendKind, CodeExecutionTool};
//! let tool = CodeExecutionTool::new(BackendKind::None).unwrap();
//! let result = tool.execute("print(6 * 7)").unwrap();
//! assert_eq!(result.output, "42\n");
//! ```

pub mod backend;
pub(crate) mod cgroup;
pub mod doctor;
pub mod interpreter;
pub mod limits;
mod lock;
pub(crate) mod process;
pub(crate) mod protocol;
pub mod result;
pub(crate) mod runner;
pub(crate) mod sandbox;
pub mod server;
pub mod syntax;
mod sys;
mod token;
pub mod tool;

pub use backend::helper::RunError;
pub use backend::native::{NativeError, ZygoteError, ZygoteInfo, ZygoteMode};
pub use backend::{
    Backend, BackendKind, Cancel, Enforced, Enforcement, ExecutionRequest, SandboxUsage,
};
pub use cgroup::CgroupError;
pub use interpreter::{Interpreter, InterpreterError};
pub use limits::{LimitError, Limits};
pub use process::run_if_requested;
pub use result::{ErrorType, ExecutionResult, Sample, Verdict};
pub use syntax::{PythonVersion, SyntaxCheck, SyntaxProblem};
pub use tool::{
    CodeExecutionTool, CodeExecutor, CodeExecutorError, ExecuteError, RunOptions, SandboxExecutor,
    ToolBuilder, ToolError,
};
