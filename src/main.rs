//! The `code-exec` command line: `run`, `check`, `doctor`, `serve`, and the hidden modes in
//! which the same binary runs as one of a run's processes (`run_if_requested`, first thing in
//! `main`: see `src/process/`). Runs in the host process. Raw flags are validated here,
//! once, into the library's typed values.
//!
//! Exit status: 0 the code succeeded (or is valid); 1 the code failed; 2 invalid invocation;
//! 3 the tool itself failed (`SandboxError`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use code_execution_tool::limits::{
    CodeBytes, CpuFraction, DiskMb, MemoryMb, OutputBytes, Pids, Timeout,
};
use code_execution_tool::result::ExecutionResult;
use code_execution_tool::{
    BackendKind, CodeExecutionTool, Interpreter, Limits, PythonVersion, SyntaxCheck, ToolError,
    ZygoteMode, syntax,
};

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_SANDBOX: u8 = 3;

#[derive(Parser)]
#[command(
    name = "code-exec",
    version,
    about = "Run untrusted Python code and report exactly what happened"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate, then run Python code under limits.
    Run(Box<RunArgs>),
    /// Check Python syntax without running anything.
    Check(CheckArgs),
    /// Say what this host supports and which backends and limits work here.
    Doctor(DoctorArgs),
    /// Serve the HTTP JSON API (token from CODE_EXEC_TOKEN or --token-file).
    Serve(Box<ServeArgs>),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on; a non-loopback address needs a token.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    listen: String,
    /// A file holding the bearer token (instead of CODE_EXEC_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Executions at once [default: the number of cores].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    max_concurrency: Option<String>,
    /// Requests waiting for a slot before 429 [default: 64].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    max_queue: Option<String>,
    /// Largest request body in bytes [default: 2097152].
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    body_limit: Option<String>,
    /// Connections kept open at once; beyond, a JSON 503 [default: half the open-file limit].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    max_connections: Option<String>,
    /// Seconds a client has to send a request's headers (also idle between requests)
    /// [default: 10].
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    header_timeout: Option<String>,
    /// Seconds a client has to send a request's body [default: 30].
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    body_timeout: Option<String>,
    /// Largest JSON of one result; the code's streams are cut to fit [default: 67108864].
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    max_response_bytes: Option<String>,
    /// Bytes all results being sent at once may take [default: 536870912].
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    response_memory: Option<String>,
    /// Seconds an idle persistent sandbox lives [default: 600].
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    sandbox_ttl: Option<String>,
    /// Backend of requests that do not name one: native, docker or none.
    #[arg(long, default_value = "native")]
    sandbox: String,
    /// Image of the docker backend [default: python:3.11-slim].
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// The Python interpreter of native and none runs, e.g. a virtual environment's
    /// (default: the first real python3 on PATH).
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Native sandboxes kept started ahead, each used once [default: 0].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pool: Option<String>,
    /// Modules the pooled sandboxes import ahead, comma-separated (e.g. numpy,pandas).
    #[arg(long, value_name = "MODULES")]
    preload: Option<String>,
}

#[derive(Args)]
struct DoctorArgs {
    /// Print exactly one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct Source {
    /// A file of code, or `-` for standard input.
    #[arg(value_name = "FILE", conflicts_with = "code")]
    file: Option<PathBuf>,
    /// The code itself.
    #[arg(short = 'c', value_name = "CODE")]
    code: Option<String>,
    /// Largest accepted code, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    max_code_size: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    source: Source,
    /// native (the Linux sandbox), none (plain subprocess, trusted code only) or docker.
    #[arg(long, default_value = "native")]
    sandbox: String,
    /// Memory limit in MB [default: 128].
    #[arg(long, value_name = "MB", allow_hyphen_values = true)]
    memory: Option<String>,
    /// CPU limit as a fraction of one core's time [default: 0.5].
    #[arg(long, value_name = "F", allow_hyphen_values = true)]
    cpu: Option<String>,
    /// Wall-clock timeout in seconds [default: 30].
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    timeout: Option<String>,
    /// Maximum processes and threads of the code [default: 64].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pids: Option<String>,
    /// Scratch space in MB: each of /work, /tmp and /dev/shm, and every file
    /// [default: half of --memory].
    #[arg(long, value_name = "MB", allow_hyphen_values = true)]
    disk: Option<String>,
    /// Bytes kept of each of stdout and stderr; more stops the run [default: 1048576].
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    max_output: Option<String>,
    /// A file whose content is the code's standard input (default: empty).
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// The Python interpreter to run (default: the first real python3 on PATH).
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Python version the syntax is checked against (default: the interpreter's).
    #[arg(long, value_name = "X.Y")]
    python_version: Option<String>,
    /// Container image (docker sandbox only) [default: python:3.11-slim].
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Print exactly one JSON object with the result.
    #[arg(long)]
    json: bool,
    /// Refuse to run if any limit cannot be enforced for the whole run here.
    #[arg(long)]
    strict_limits: bool,
    /// Sample CPU and memory while the code runs.
    #[arg(long)]
    monitor: bool,
    /// Put the run's work directory first on sys.path, so that modules the code writes
    /// there import (--sandbox none only; native and docker always do).
    #[arg(long)]
    import_work_dir: bool,
    /// Run through a pre-started sandbox (the server's warm pool path): prepare one, wait
    /// until it is ready, then hand it the code. For testing that path; native only.
    #[arg(long, hide = true)]
    warm: bool,
    /// Fork the run from a zygote (the library's default path) instead of starting cold;
    /// fails when no zygote can start here. For testing that path; native only.
    #[arg(long, hide = true)]
    zygote: bool,
    /// Sampling interval in milliseconds for --monitor [default: 100].
    #[arg(long, value_name = "MS", allow_hyphen_values = true)]
    monitor_interval: Option<String>,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    source: Source,
    /// Python version to check against (default: that of the interpreter that would run it).
    #[arg(long, value_name = "X.Y")]
    python_version: Option<String>,
    /// The interpreter whose version is the default target.
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Print exactly one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    code_execution_tool::run_if_requested();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let outcome = match cli.command {
        Command::Run(args) => run(*args),
        Command::Check(args) => check(args),
        Command::Doctor(args) => doctor(args),
        Command::Serve(args) => serve(*args),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("code-exec: {err:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Flags validated into what the library needs.
struct RunPlan {
    code: Vec<u8>,
    stdin: Option<Vec<u8>>,
    backend: BackendKind,
    limits: Limits,
    python: Option<PathBuf>,
    image: Option<String>,
    target: Option<PythonVersion>,
    monitor: Option<Duration>,
    json: bool,
    strict_limits: bool,
    warm: bool,
    zygote: bool,
    import_work_dir: bool,
}

fn plan_run(args: RunArgs) -> Result<RunPlan> {
    let backend: BackendKind = args
        .sandbox
        .parse()
        .map_err(|e: String| anyhow!("--sandbox: {e}"))?;
    if args.image.is_some() && backend != BackendKind::Docker {
        bail!("--image applies only to --sandbox docker");
    }
    if args.image.as_deref().is_some_and(|i| i.trim().is_empty()) {
        bail!("--image: the image name is empty");
    }
    if args.warm && backend != BackendKind::Native {
        bail!("--warm applies only to --sandbox native");
    }
    if args.zygote && backend != BackendKind::Native {
        bail!("--zygote applies only to --sandbox native");
    }
    if args.import_work_dir && backend != BackendKind::None {
        bail!(
            "--import-work-dir applies only to --sandbox none: {backend} always puts its work directory first on sys.path"
        );
    }
    if args.python.is_some() && backend == BackendKind::Docker {
        bail!(
            "--python does not apply to --sandbox docker: the image's python3 runs the code (choose it with --image)"
        );
    }
    let mut limits = Limits::default();
    if let Some(v) = &args.memory {
        limits.memory_mb = MemoryMb::parse(v).context("--memory")?;
    }
    if let Some(v) = &args.cpu {
        limits.cpu = CpuFraction::parse(v).context("--cpu")?;
    }
    if let Some(v) = &args.timeout {
        limits.timeout = Timeout::parse(v).context("--timeout")?;
    }
    if let Some(v) = &args.pids {
        limits.pids = Pids::parse(v).context("--pids")?;
    }
    if let Some(v) = &args.max_output {
        limits.max_output_bytes = OutputBytes::parse(v).context("--max-output")?;
    }
    if let Some(v) = &args.disk {
        limits.disk_mb = Some(DiskMb::parse(v).context("--disk")?);
    }
    if let Some(v) = &args.source.max_code_size {
        limits.max_code_bytes = CodeBytes::parse(v).context("--max-code-size")?;
    }
    let monitor_interval = match &args.monitor_interval {
        Some(v) => {
            if !args.monitor {
                bail!("--monitor-interval needs --monitor");
            }
            let ms: u64 = v
                .trim()
                .parse()
                .ok()
                .filter(|ms| (1..=60_000).contains(ms))
                .ok_or_else(|| anyhow!("--monitor-interval: {v:?} is not a whole number of milliseconds from 1 to 60000"))?;
            Duration::from_millis(ms)
        }
        None => code_execution_tool::tool::DEFAULT_MONITOR_INTERVAL,
    };
    let stdin = match &args.stdin {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("--stdin {}", path.display()))?)
        }
        None => None,
    };
    let target = parse_target(args.python_version.as_deref())?;
    let code = read_source(&args.source, limits.max_code_bytes.as_usize())?;
    Ok(RunPlan {
        code,
        stdin,
        backend,
        limits,
        python: args.python,
        image: args.image,
        target,
        monitor: args.monitor.then_some(monitor_interval),
        json: args.json,
        strict_limits: args.strict_limits,
        warm: args.warm,
        zygote: args.zygote,
        import_work_dir: args.import_work_dir,
    })
}

fn run(args: RunArgs) -> Result<u8> {
    let plan = plan_run(args)?;
    // A one-shot run starts cold: a zygote pays off only over many runs.
    let zygote = if plan.zygote {
        ZygoteMode::Required
    } else {
        ZygoteMode::Off
    };
    // This process is the helper binary and stays single-threaded until its one run starts:
    // the run's supervisor or sandbox helper is a fork of it, not another exec.
    let mut builder = CodeExecutionTool::builder()
        .backend(plan.backend)
        .limits(plan.limits)
        .strict_limits(plan.strict_limits)
        .helpers_forked_here(true);
    if plan.backend == BackendKind::Native {
        builder = builder.zygote(zygote);
    }
    if plan.import_work_dir {
        builder = builder.import_work_dir(true);
    }
    if let Some(python) = &plan.python {
        builder = builder.python(python);
    }
    if let Some(image) = &plan.image {
        builder = builder.image(image);
    }
    if let Some(target) = plan.target {
        builder = builder.target_version(target);
    }
    if let Some(interval) = plan.monitor {
        builder = builder.monitor_interval(interval);
    }
    if plan.warm {
        builder = builder.warm_pool(1, Vec::new());
    }
    let tool = match builder.build() {
        Ok(tool) => tool,
        // A bad --python or limit is the caller's mistake; anything else is the tool's.
        Err(
            err @ (ToolError::Interpreter(_)
            | ToolError::Limit(_)
            | ToolError::InvalidOption { .. }),
        ) => return Err(err.into()),
        Err(err) => {
            let result = ExecutionResult::sandbox_error(plan.backend.as_str(), err.to_string());
            return Ok(report(&result, plan.json));
        }
    };
    if plan.warm {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while tool.pool_ready() == 0 {
            if std::time::Instant::now() > deadline {
                let result = ExecutionResult::sandbox_error(
                    plan.backend.as_str(),
                    "--warm: no pre-started sandbox became ready within 30 s".into(),
                );
                return Ok(report(&result, plan.json));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let result = tool
        .run(&plan.code, plan.stdin.as_deref(), plan.monitor)
        .map_err(|e| anyhow!(e))?;
    Ok(report(&result, plan.json))
}

/// A whole number in `range` for flag `flag`, or an error naming the flag and the range.
fn whole_number(
    flag: &str,
    value: Option<&String>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64> {
    let Some(text) = value else {
        return Ok(default);
    };
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            anyhow!(
                "{flag}: {text:?} is not a whole number from {} to {}",
                range.start(),
                range.end()
            )
        })
}

fn serve(args: ServeArgs) -> Result<u8> {
    use code_execution_tool::server::{ServerConfig, serve};
    let listen: std::net::SocketAddr = args
        .listen
        .parse()
        .map_err(|e| anyhow!("--listen: {:?} is not ADDRESS:PORT ({e})", args.listen))?;
    let token = match (&args.token_file, std::env::var("CODE_EXEC_TOKEN").ok()) {
        (Some(_), Some(_)) => {
            bail!("give the token either in CODE_EXEC_TOKEN or with --token-file, not both")
        }
        (Some(path), None) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--token-file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        (None, env) => env,
    };
    if token
        .as_deref()
        .is_some_and(|t| t.len() < 16 || t.chars().any(char::is_whitespace))
    {
        bail!("the token must be at least 16 characters, without whitespace");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let default_sandbox: BackendKind = args
        .sandbox
        .parse()
        .map_err(|e: String| anyhow!("--sandbox: {e}"))?;
    if args.image.as_deref().is_some_and(|i| i.trim().is_empty()) {
        bail!("--image: the image name is empty");
    }
    let preload: Vec<String> = match &args.preload {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|m| {
                let m = m.trim();
                let valid = !m.is_empty()
                    && m.split('.').all(|part| {
                        !part.is_empty()
                            && !part.starts_with(|c: char| c.is_ascii_digit())
                            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    });
                if valid {
                    Ok(m.to_owned())
                } else {
                    Err(anyhow!("--preload: {m:?} is not a module name"))
                }
            })
            .collect::<Result<_>>()?,
    };
    if !preload.is_empty() && args.pool.is_none() {
        bail!("--preload needs --pool N");
    }
    let max_response_bytes = whole_number(
        "--max-response-bytes",
        args.max_response_bytes.as_ref(),
        64 << 20,
        1 << 16..=1 << 30,
    )? as usize;
    let response_memory = whole_number(
        "--response-memory",
        args.response_memory.as_ref(),
        (512u64 << 20).max(max_response_bytes as u64),
        1 << 16..=1 << 40,
    )? as usize;
    if response_memory < max_response_bytes {
        bail!(
            "--response-memory ({response_memory}) must be at least --max-response-bytes ({max_response_bytes})"
        );
    }
    // Checked once, here: a server never starts with an interpreter it cannot use.
    let python = args
        .python
        .as_deref()
        .map(code_execution_tool::Interpreter::at)
        .transpose()?;
    let config = ServerConfig {
        listen,
        token,
        python,
        max_concurrency: whole_number(
            "--max-concurrency",
            args.max_concurrency.as_ref(),
            cores,
            1..=1024,
        )? as usize,
        max_queue: whole_number("--max-queue", args.max_queue.as_ref(), 64, 0..=100_000)? as usize,
        body_limit: whole_number(
            "--body-limit",
            args.body_limit.as_ref(),
            2 * 1024 * 1024,
            1024..=64 * 1024 * 1024,
        )? as usize,
        sandbox_ttl: Duration::from_secs(whole_number(
            "--sandbox-ttl",
            args.sandbox_ttl.as_ref(),
            600,
            1..=7 * 24 * 3600,
        )?),
        image: args.image,
        default_sandbox,
        pool: whole_number("--pool", args.pool.as_ref(), 0, 0..=256)? as usize,
        preload,
        max_connections: args
            .max_connections
            .as_ref()
            .map(|n| whole_number("--max-connections", Some(n), 0, 1..=1_000_000))
            .transpose()?
            .map(|n| n as usize),
        header_timeout: Duration::from_secs(whole_number(
            "--header-timeout",
            args.header_timeout.as_ref(),
            10,
            1..=3600,
        )?),
        body_timeout: Duration::from_secs(whole_number(
            "--body-timeout",
            args.body_timeout.as_ref(),
            30,
            1..=3600,
        )?),
        max_response_bytes,
        response_memory,
    };
    serve(config, |addr| {
        println!("code-exec: listening on http://{addr}");
        let _ = std::io::stdout().flush();
    })?;
    Ok(0)
}

/// Prints the result and returns the exit status.
fn report(result: &ExecutionResult, json: bool) -> u8 {
    if json {
        let text = serde_json::to_string(result).unwrap_or_else(|e| {
            format!(r#"{{"success":false,"error":"cannot encode the result: {e}","error_type":"SandboxError"}}"#)
        });
        print_stdout(format!("{text}\n").as_bytes());
    } else {
        print_stdout(result.output.as_bytes());
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(result.stderr.as_bytes());
        if let Some(samples) = &result.monitoring {
            for s in samples {
                let _ = writeln!(
                    err,
                    "code-exec: monitor t={:.0}ms cpu={:.1}% memory={:.1}MB pids={}",
                    s.timestamp_ms, s.cpu_percent, s.memory_mb, s.pids
                );
            }
        }
        if !result.success {
            let kind = result.error_type.as_ref().map_or("Error", |t| t.as_str());
            let detail = result.error.as_deref().unwrap_or("");
            if detail.starts_with(kind) {
                let _ = writeln!(err, "code-exec: {detail}");
            } else {
                let _ = writeln!(err, "code-exec: {kind}: {detail}");
            }
        }
    }
    if result.success {
        0
    } else if result.is_sandbox_error() {
        EXIT_SANDBOX
    } else {
        EXIT_FAILED
    }
}

/// Writes to stdout; a closed stdout (e.g. `| head`) is not an error worth reporting.
fn print_stdout(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|_| out.flush());
}

fn check(args: CheckArgs) -> Result<u8> {
    let max = match &args.source.max_code_size {
        Some(v) => CodeBytes::parse(v).context("--max-code-size")?,
        None => Limits::default().max_code_bytes,
    };
    let target = match parse_target(args.python_version.as_deref())? {
        Some(target) => target,
        None => match &args.python {
            Some(path) => Interpreter::at(path)?.version(),
            // Checking needs no interpreter: without one, use the newest grammar.
            None => Interpreter::discover()
                .map(|i| i.version())
                .unwrap_or(PythonVersion::NEWEST),
        },
    };
    let code = read_source(&args.source, max.as_usize())?;
    let check: SyntaxCheck = syntax::validate(&code, target).into();
    if args.json {
        print_stdout(format!("{}\n", serde_json::to_string(&check)?).as_bytes());
    } else if let Some(error) = &check.error {
        eprintln!("SyntaxError: {error}");
    } else {
        print_stdout(b"valid\n");
    }
    Ok(if check.valid { 0 } else { EXIT_FAILED })
}

fn doctor(args: DoctorArgs) -> Result<u8> {
    let report = code_execution_tool::doctor::diagnose(None);
    if args.json {
        print_stdout(format!("{}\n", serde_json::to_string(&report)?).as_bytes());
    } else {
        print_stdout(report.to_text().as_bytes());
    }
    // Usable when at least the default backend works.
    Ok(if report.backends.iter().any(|b| b.ok) {
        0
    } else {
        EXIT_FAILED
    })
}

fn parse_target(text: Option<&str>) -> Result<Option<PythonVersion>> {
    text.map(|t| {
        PythonVersion::parse(t)
            .filter(|v| v.major == 3 && *v >= PythonVersion::OLDEST && *v <= PythonVersion::NEWEST)
            .ok_or_else(|| {
                anyhow!(
                    "--python-version: {t:?} is not a supported version; allowed: {} to {}",
                    PythonVersion::OLDEST,
                    PythonVersion::NEWEST
                )
            })
    })
    .transpose()
}

/// Reads the code from `-c`, a file or stdin, refusing more than `max` bytes without reading
/// an unbounded amount.
fn read_source(source: &Source, max: usize) -> Result<Vec<u8>> {
    let code = match (&source.code, &source.file) {
        (Some(code), _) => code.clone().into_bytes(),
        (None, Some(path)) if path == Path::new("-") => {
            read_capped(std::io::stdin().lock(), max).context("reading code from standard input")?
        }
        (None, Some(path)) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            read_capped(file, max).with_context(|| format!("cannot read {}", path.display()))?
        }
        (None, None) => bail!("no code given: pass a FILE, `-` for standard input, or -c CODE"),
    };
    if code.len() > max {
        bail!(
            "the code is {} over the limit of {max} bytes (max_code_bytes; raise it with --max-code-size)",
            if code.len() > max + 1 || source.code.is_some() {
                format!("{} bytes,", code.len())
            } else {
                "larger than that,".to_owned()
            }
        );
    }
    Ok(code)
}

fn read_capped(reader: impl Read, max: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader.take(max as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}
