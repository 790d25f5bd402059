//! The runner's interface: the script that runs the user's code inside the interpreter
//! (`runner.py`), how the interpreter is invoked to run it (flags, argv, environment), typed.
//! The host builds an [`Invocation`]; the `none` supervisor and the sandbox's code process
//! execute it, and the code process forked from the zygote replays it in the interpreter it
//! inherited (same `sys.argv`, same `sys.orig_argv`). Nothing reads these arguments by index.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The runner script (see its header for the report record it writes).
pub(crate) const RUNNER: &str = include_str!("runner.py");

/// The interpreter's own flags before the runner: isolated mode, unbuffered streams.
const INTERPRETER_FLAGS: [&str; 2] = ["-I", "-u"];
/// The flag before the runner's source (when it is not run compiled ahead).
const SOURCE_FLAG: &str = "-c";
/// Where the interpreter finds the compiled runner: this and its fd number (the runner
/// recognizes it in `sys.argv[0]` and closes that fd).
const COMPILED_RUNNER_PATH: &str = "/proc/self/fd/";
/// The runner's flag for a pre-started sandbox (followed by the modules to import ahead).
const POOLED_FLAG: &str = "--pooled";

/// What the runner is told: where the code is, and whether it waits for it (pre-started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunnerArgs {
    /// The fd the runner writes its report to (the protocol's report channel).
    pub(crate) report_fd: RawFd,
    /// The code file the runner compiles (its name in tracebacks).
    pub(crate) code_path: String,
    /// A directory put first on `sys.path` before the code runs, as `python -c` puts the
    /// working directory: a sandbox's own work directory, so that files the code writes there
    /// import. `None` for `none`, whose directory is the host's.
    pub(crate) import_dir: Option<String>,
    /// `Some(modules)`: a pre-started sandbox, which imports `modules`, says it is ready and
    /// reads its code from stdin.
    pub(crate) pooled: Option<Vec<String>>,
}

/// How the interpreter is started to run the runner: `program -I -u -c RUNNER <report fd>
/// <code path> <import dir or ""> [--pooled MODULE...]`, with exactly `env` (the code never travels in argv).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Invocation {
    pub(crate) program: PathBuf,
    pub(crate) runner: RunnerArgs,
    pub(crate) env: Vec<(String, String)>,
    /// The runner compiled ahead for this interpreter (a `.pyc` on the host, see
    /// `backend::runner_cache`): the process that starts the interpreter hands it over as a
    /// file, which the interpreter runs as its script instead of compiling the source.
    #[serde(default)]
    pub(crate) compiled_runner: Option<PathBuf>,
}

impl Invocation {
    pub(crate) fn new(program: &Path, runner: RunnerArgs, env: Vec<(String, String)>) -> Self {
        Invocation {
            program: program.to_owned(),
            runner,
            env,
            compiled_runner: None,
        }
    }

    /// The same, started with the runner compiled ahead at `pyc` (see `compiled_runner`).
    pub(crate) fn with_compiled_runner(mut self, pyc: Option<PathBuf>) -> Self {
        self.compiled_runner = pyc;
        self
    }

    /// The runner's own arguments: what `sys.argv[1:]` holds when it starts.
    fn runner_args(&self) -> Vec<String> {
        let mut args = vec![
            self.runner.report_fd.to_string(),
            self.runner.code_path.clone(),
            self.runner.import_dir.clone().unwrap_or_default(),
        ];
        if let Some(modules) = &self.runner.pooled {
            args.push(POOLED_FLAG.into());
            args.extend(modules.iter().cloned());
        }
        args
    }

    /// The arguments after the program, as `execve` receives them, with the runner's source
    /// after `-c`.
    pub(crate) fn args(&self) -> Vec<String> {
        self.args_with_runner_at(None)
    }

    /// The same, or with the compiled runner run as the script from `fd` of the interpreter's
    /// process (`/proc/self/fd/N`, which the runner closes first thing).
    pub(crate) fn args_with_runner_at(&self, fd: Option<RawFd>) -> Vec<String> {
        let mut args: Vec<String> = INTERPRETER_FLAGS.iter().map(|f| f.to_string()).collect();
        match fd {
            Some(fd) => args.push(format!("{COMPILED_RUNNER_PATH}{fd}")),
            None => args.extend([SOURCE_FLAG.into(), RUNNER.into()]),
        }
        args.extend(self.runner_args());
        args
    }

    /// `sys.argv` as the interpreter sets it for `-c` code: `-c`, then the runner's arguments.
    pub(crate) fn sys_argv(&self) -> Vec<String> {
        std::iter::once(SOURCE_FLAG.to_string())
            .chain(self.runner_args())
            .collect()
    }

    /// `sys.orig_argv`: the whole command line, program first.
    pub(crate) fn orig_argv(&self) -> Vec<String> {
        std::iter::once(self.program.to_string_lossy().into_owned())
            .chain(self.args())
            .collect()
    }
}

/// The only environment that reaches the code.
pub(crate) fn code_environment(home: &str, tmp: &str) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("LC_ALL".into(), "C.UTF-8".into()),
        ("HOME".into(), home.into()),
        ("TMPDIR".into(), tmp.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_the_interpreter_flags_the_runner_and_its_arguments() {
        let invocation = Invocation::new(
            Path::new("/usr/bin/python3"),
            RunnerArgs {
                report_fd: 3,
                code_path: "/code/main.py".into(),
                import_dir: Some("/work".into()),
                pooled: Some(vec!["numpy".into()]),
            },
            code_environment("/work", "/tmp"),
        );
        let args = invocation.args();
        assert_eq!(&args[..3], ["-I", "-u", "-c"]);
        assert_eq!(args[3], RUNNER);
        assert_eq!(
            &args[4..],
            ["3", "/code/main.py", "/work", "--pooled", "numpy"]
        );
        assert_eq!(
            invocation.sys_argv(),
            ["-c", "3", "/code/main.py", "/work", "--pooled", "numpy"]
        );
        let orig = invocation.orig_argv();
        assert_eq!(orig[0], "/usr/bin/python3");
        assert_eq!(orig[1..], args[..]);
    }
}
