//! The Rust facade (`CodeExecutionTool`, `CodeExecutor`) as a library user drives it.

mod common;

use std::time::Duration;

use code_execution_tool::{
    BackendKind, CodeExecutionTool, CodeExecutor, CodeExecutorError, ErrorType, ExecuteError,
    ToolError,
};

fn tool() -> CodeExecutionTool {
    CodeExecutionTool::builder()
        .backend(BackendKind::None)
        .supervisor(common::bin())
        .build()
        .expect("build a none-backend tool")
}

#[test]
fn defaults_are_the_documented_ones() {
    let tool = tool();
    let limits = tool.limits();
    assert_eq!(limits.memory_mb.get(), 128);
    assert_eq!(limits.cpu.get(), 0.5);
    assert_eq!(limits.timeout.get(), Duration::from_secs(30));
    assert_eq!(tool.backend(), BackendKind::None);
    assert_eq!(tool.target_version().major, 3);
}

#[test]
fn execute_returns_structured_results() {
    let tool = tool();
    let ok = tool.execute("print(sum(range(10)))").unwrap();
    assert!(ok.success);
    assert_eq!(ok.output, "45\n");
    let bad = tool.execute("x = [1, 2, 3]\nx[10]").unwrap();
    assert!(!bad.success);
    assert_eq!(
        bad.error_type,
        Some(ErrorType::Exception("IndexError".into()))
    );
    assert_eq!(
        bad.error.as_deref(),
        Some("IndexError: list index out of range")
    );
    let syntax = tool.execute("def broken(:\n  pass").unwrap();
    assert_eq!(syntax.error_type, Some(ErrorType::SyntaxError));
    assert_eq!(syntax.line, Some(1));
}

#[test]
fn several_executions_reuse_one_tool() {
    let tool = tool();
    for i in 0..8 {
        let r = tool.execute(&format!("print({i} ** 2)")).unwrap();
        assert!(r.success, "{r:?}");
        assert_eq!(r.output, format!("{}\n", i * i));
    }
}

#[test]
fn execute_with_monitoring_collects_samples() {
    let tool = CodeExecutionTool::builder()
        .backend(BackendKind::None)
        .supervisor(common::bin())
        .monitor_interval(Duration::from_millis(40))
        .build()
        .unwrap();
    let r = tool
        .execute_with_monitoring("import time\nx = bytearray(30 * 1024 * 1024)\ntime.sleep(0.5)")
        .unwrap();
    assert!(r.success, "{r:?}");
    let samples = r.monitoring.expect("samples");
    assert!(samples.len() >= 5, "{samples:?}");
    assert!(
        samples
            .windows(2)
            .all(|w| w[0].timestamp_ms < w[1].timestamp_ms)
    );
    let peak = samples.iter().map(|s| s.memory_mb).fold(0.0, f64::max);
    assert!(peak > 30.0, "a 30 MB buffer should show: {samples:?}");
    assert!(r.peak_memory_mb > 30.0, "{}", r.peak_memory_mb);
    // Without monitoring there are no samples.
    assert!(tool.execute("print(1)").unwrap().monitoring.is_none());
}

#[test]
fn update_limits_validates_then_applies() {
    let mut tool = tool();
    tool.update_limits(64, 0.25).unwrap();
    assert_eq!(tool.limits().memory_mb.get(), 64);
    assert_eq!(tool.limits().cpu.get(), 0.25);
    // The `none` backend caps each process: the interpreter's MemoryError shows the new cap,
    // as the exception it is (the host has no evidence of its own to call it a memory limit).
    let r = tool.execute("x = bytearray(200 * 1024 * 1024)").unwrap();
    assert_eq!(
        r.error_type,
        Some(ErrorType::Exception("MemoryError".into())),
        "{r:?}"
    );
    tool.update_limits(512, 0.5).unwrap();
    let r = tool
        .execute("x = bytearray(200 * 1024 * 1024); print('ok')")
        .unwrap();
    assert!(
        r.success,
        "the raised limit applies to the next execution: {r:?}"
    );

    // A bad value changes nothing, not even the valid half.
    let err = tool.update_limits(0, 0.1).unwrap_err();
    assert_eq!(err.field, "memory_mb");
    let err = tool.update_limits(256, f64::NAN).unwrap_err();
    assert_eq!(err.field, "cpu");
    assert_eq!(tool.limits().memory_mb.get(), 512);
    assert_eq!(tool.limits().cpu.get(), 0.5);
}

#[test]
fn builder_refuses_invalid_limits() {
    let err = CodeExecutionTool::builder()
        .supervisor(common::bin())
        .memory_limit_mb(0)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, ToolError::Limit(ref e) if e.field == "memory_mb"),
        "{err}"
    );
    let err = CodeExecutionTool::builder()
        .supervisor(common::bin())
        .timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, ToolError::Limit(ref e) if e.field == "timeout"),
        "{err}"
    );
    let err = CodeExecutionTool::builder()
        .supervisor(common::bin())
        .cpu_limit(-1.0)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, ToolError::Limit(ref e) if e.field == "cpu"),
        "{err}"
    );
}

#[test]
fn oversized_code_is_refused_before_anything_runs() {
    let tool = tool();
    let code = "#".repeat(2 * 1024 * 1024);
    let err = tool.execute(&code).unwrap_err();
    assert_eq!(
        err,
        ExecuteError::CodeTooLarge {
            size: 2 * 1024 * 1024,
            max: 1024 * 1024
        }
    );
}

#[test]
fn docker_builder_input_is_validated_before_any_engine_call() {
    let err = CodeExecutionTool::builder()
        .backend(BackendKind::Docker)
        .image("  ")
        .build()
        .unwrap_err();
    assert!(matches!(err, ToolError::EmptyImage), "{err}");
    let err = CodeExecutionTool::builder()
        .backend(BackendKind::Docker)
        .memory_limit_mb(0)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("memory_mb"), "{err}");
    let none = CodeExecutionTool::new(BackendKind::None).unwrap();
    assert!(matches!(
        none.create_sandbox().unwrap_err(),
        ToolError::NoPersistentSandboxes(BackendKind::None)
    ));
}

/// Options that do not fit the backend or each other are refused by name, before any backend
/// is connected, reaped or started (docker is never reached: these pass with no engine).
#[test]
fn builder_options_that_do_not_fit_are_refused_by_name() {
    use code_execution_tool::ZygoteMode;
    let refused = |builder: code_execution_tool::ToolBuilder, option: &str| match builder.build() {
        Err(ToolError::InvalidOption {
            option: named,
            reason,
        }) => {
            assert_eq!(named, option, "{reason}");
            assert!(!reason.is_empty());
        }
        Err(other) => panic!("{option}: expected InvalidOption, got {other}"),
        Ok(tool) => panic!("{option}: built {tool:?}"),
    };
    let docker = || CodeExecutionTool::builder().backend(BackendKind::Docker);
    let none = || {
        CodeExecutionTool::builder()
            .backend(BackendKind::None)
            .supervisor(common::bin())
    };
    refused(docker().warm_pool(2, Vec::new()), "warm_pool");
    refused(none().warm_pool(1, Vec::new()), "warm_pool");
    refused(docker().zygote(ZygoteMode::Off), "zygote");
    refused(none().zygote(ZygoteMode::Required), "zygote");
    refused(docker().python("/usr/bin/python3"), "python");
    refused(
        CodeExecutionTool::builder().warm_pool(1, vec!["os; import x".into()]),
        "preload",
    );
    refused(
        CodeExecutionTool::builder().warm_pool(1, vec!["1numpy".into()]),
        "preload",
    );
    refused(
        CodeExecutionTool::builder().warm_pool(0, vec!["numpy".into()]),
        "preload",
    );
    refused(none().monitor_interval(Duration::ZERO), "monitor_interval");
    refused(docker().import_work_dir(true), "import_work_dir");
    refused(
        CodeExecutionTool::builder().import_work_dir(true),
        "import_work_dir",
    );
    // And the same options where they fit build (the none backend needs no kernel feature).
    let tool = none()
        .monitor_interval(Duration::from_millis(1))
        .import_work_dir(true)
        .build()
        .unwrap();
    assert_eq!(tool.backend(), BackendKind::None);
    let imported = tool
        .execute("open('written.py', 'w').write('X = 5')\nimport written\nprint(written.X)")
        .unwrap();
    assert_eq!(imported.output, "5\n", "{imported:?}");
}

#[test]
fn code_executor_validates_and_runs() {
    // CodeExecutor::new finds the supervisor on its own (beside the test binary).
    let executor = CodeExecutor::new().expect("the supervisor is found next to the test binary");
    let check = executor.validate_syntax("for i in range(3):\n    print(i)\n");
    assert!(check.valid);
    assert_eq!(check.error, None);
    let check = executor.validate_syntax("for i in range(3)\n    print(i)\n");
    assert!(!check.valid);
    assert_eq!(check.line, Some(1));
    assert!(check.error.unwrap().contains("line 1"));

    let r = executor
        .execute("print('fast')", Duration::from_secs(5))
        .unwrap();
    assert_eq!(r.output, "fast\n");
    let r = executor
        .execute("import time; time.sleep(30)", Duration::from_millis(500))
        .unwrap();
    assert_eq!(r.error_type, Some(ErrorType::Timeout));
    assert!(r.duration_ms < 10_000.0, "{}", r.duration_ms);
    let err = executor.execute("print(1)", Duration::ZERO).unwrap_err();
    assert!(matches!(err, CodeExecutorError::Limit(ref e) if e.field == "timeout"));
}

#[test]
fn results_serialize_to_the_cli_contract() {
    let r = tool().execute("print('json')").unwrap();
    let value = serde_json::to_value(&r).unwrap();
    assert_eq!(value["success"], true);
    assert_eq!(value["output"], "json\n");
    assert_eq!(value["error_type"], serde_json::Value::Null);
    assert_eq!(value["backend"], "none");
}

#[test]
fn a_cancelled_execution_stops_with_cancelled() {
    let tool = CodeExecutionTool::new(BackendKind::None).unwrap();
    let cancel = code_execution_tool::Cancel::new();
    let started = std::time::Instant::now();
    let result = std::thread::scope(|s| {
        let running = s.spawn(|| {
            tool.run_cancellable(
                b"import time\ntime.sleep(60)",
                None,
                None,
                Some(cancel.clone()),
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
        running.join().unwrap().unwrap()
    });
    assert_eq!(
        result.error_type.as_ref().map(|e| e.as_str()),
        Some("Cancelled"),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        result.error.as_deref(),
        Some("the execution was cancelled by its caller")
    );
}
