//! `code-exec serve` driven over real loopback HTTP: every route and error status, auth, the
//! queue under a flood, client disconnects, sandbox expiry and shutdown, with the host checked
//! afterwards (no process, cgroup, run directory or mount left behind).

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn execute(server: &Server, body: Value) -> Reply {
    server.call("POST", "/v1/execute", Some(&body))
}

// ---- routes --------------------------------------------------------------------------------

native_test!(execute_answers_the_cli_contract_whatever_the_code_did, {
    let server = Server::start(&[], &[]);
    let r = server.call("GET", "/healthz", None);
    assert_eq!(r.status, 200);
    let r = execute(
        &server,
        json!({"code": "print(input()[::-1])", "stdin": "olleh\n"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(
        (v["success"].clone(), v["output"].clone()),
        (json!(true), json!("hello\n"))
    );
    assert_eq!(v["backend"], "native");
    for key in [
        "error",
        "error_type",
        "exit_code",
        "signal",
        "duration_ms",
        "cpu_time_ms",
        "peak_memory_mb",
        "truncated",
        "line",
        "column",
        "stderr",
        "limits_enforced",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    let v = execute(&server, json!({"code": "def f(:"})).json();
    assert_eq!(
        (v["error_type"].clone(), v["line"].clone()),
        (json!("SyntaxError"), json!(1))
    );
    let v = execute(&server, json!({"code": "1/0"})).json();
    assert_eq!(v["error_type"], "ZeroDivisionError");
    let v = execute(
        &server,
        json!({"code": "while True: pass", "limits": {"timeout_s": 0.5, "cpu": 1}}),
    )
    .json();
    assert_eq!(v["error_type"], "Timeout", "{v}");
    let v = execute(&server, json!({"code": "print(1)", "sandbox": "none"})).json();
    assert_eq!(v["backend"], "none");
    let doc = server.call("GET", "/openapi.json", None).json();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/v1/sandboxes/{id}/limits"]["patch"].is_object());
    let metrics = server.call("GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    for name in [
        "code_exec_http_responses_total{status=\"200\"}",
        "code_exec_executions_total{outcome=\"ok\"} 2",
        "code_exec_executions_total{outcome=\"timeout\"} 1",
        "code_exec_execution_seconds_bucket{le=\"+Inf\"} 5",
        "code_exec_queue_depth 0",
        "code_exec_sandboxes_live 0",
    ] {
        assert!(
            metrics.body.contains(name),
            "{name} missing:\n{}",
            metrics.body
        );
    }
    let r = server.call("GET", "/v2/nothing", None);
    assert_eq!(r.status, 404);
    assert!(r.error().contains("no such route"));
    let r = server.call("GET", "/v1/execute", None);
    assert_eq!(r.status, 405);
    assert!(!r.error().is_empty());
});

native_test!(bad_requests_are_4xx_with_a_message_naming_the_field, {
    let server = Server::start(&["--body-limit", "4096"], &[]);
    let raw = |body: &str| http(server.addr, "POST", "/v1/execute", &[], Some(body));
    let cases: &[(&str, &str)] = &[
        ("{", "malformed JSON"),
        ("[1]", "JSON object"),
        ("{}", "code: required"),
        (r#"{"code": 5}"#, "code: expected a string"),
        (r#"{"code": "1", "sandbox": "vm"}"#, "sandbox:"),
        (
            r#"{"code": "1", "limits": {"disk_mb": 0}}"#,
            "limits.disk_mb",
        ),
        (
            r#"{"code": "1", "limits": {"memory_mb": -5}}"#,
            "limits.memory_mb",
        ),
        (
            r#"{"code": "1", "limits": {"cpu": "lots"}}"#,
            "limits.cpu: expected a number",
        ),
        (
            r#"{"code": "1", "limits": {"timeout_s": 0}}"#,
            "limits.timeout_s",
        ),
        (r#"{"code": "1", "limits": {"pids": 1e9}}"#, "limits.pids"),
        (
            r#"{"code": "1", "limits": {"max_output_bytes": 0}}"#,
            "limits.max_output_bytes",
        ),
        (
            r#"{"code": "1", "limits": {"memory": 64}}"#,
            "unknown field \"memory\"",
        ),
        (
            r#"{"code": "1", "timeout": 5}"#,
            "unknown field \"timeout\"",
        ),
    ];
    for (body, needle) in cases {
        let r = raw(body);
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert!(
            r.error().contains(needle),
            "{body}: {:?} lacks {needle:?}",
            r.error()
        );
    }
    // Over the body cap: refused from the declared length, before the body is sent.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{{\"code\": \""
    )
    .unwrap();
    let r = read_reply(stream);
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.error().contains("over the server's limit"));
    // Code over the code-size cap but within the body cap is a 400 naming `code`.
    let server = Server::start(&[], &[]);
    let big = "#".repeat(1024 * 1024 + 1);
    let r = execute(&server, json!({"code": big}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.error().starts_with("code:"), "{}", r.error());
    // Unknown sandboxes are 404 on every route.
    for (method, path, body) in [
        (
            "POST",
            "/v1/sandboxes/nope/execute",
            Some(json!({"code": "1"})),
        ),
        ("GET", "/v1/sandboxes/nope/usage", None),
        (
            "PATCH",
            "/v1/sandboxes/nope/limits",
            Some(json!({"cpu": 1})),
        ),
        ("DELETE", "/v1/sandboxes/nope", None),
    ] {
        let r = server.call(method, path, body.as_ref());
        assert_eq!(r.status, 404, "{method} {path}: {r:?}");
        assert!(r.error().contains("nope"));
    }
});

// A server started by a service manager that ignores SIGINT and blocks signals: its runs,
// from the warm pool and the zygote, start with the defaults (issue 18, item 7).
native_test!(the_servers_signal_dispositions_and_mask_stay_out_of_runs, {
    let server = Server::start_under_ignored_signals(&[]);
    for round in 0..3 {
        let r = execute(&server, json!({"code": PRINT_SIGNALS}));
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        assert_eq!(v["success"], true, "round {round}: {v}");
        assert_eq!(v["output"], DEFAULT_SIGNALS, "round {round}: {v}");
    }
});

// `serve --python` (issue 18, item 10): a virtual environment's interpreter for native and
// `none` runs, checked once at start.
native_test!(serve_python_runs_a_virtual_environments_packages, {
    let (_dir, python) = venv_with_package();
    let mut args = vec!["--python", python.to_str().unwrap()];
    // The pool's sandboxes too, where it can run (it needs cgroups).
    if cgroups_available() {
        args.extend(["--pool", "1"]);
    }
    let server = Server::start(&args, &[]);
    for sandbox in ["native", "none", "native"] {
        let r = execute(
            &server,
            json!({"code": "import sys, venvpkg\nprint(venvpkg.MARK, sys.prefix == sys.base_prefix)", "sandbox": sandbox}),
        );
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        assert_eq!(v["output"], "42 False\n", "{sandbox}: {v}");
    }
    let bad = code_exec(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--python",
        "/nonexistent/python3",
    ]);
    assert_eq!(bad.status, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--python /nonexistent/python3"),
        "{}",
        bad.stderr
    );
});

#[test]
fn an_unavailable_backend_is_503() {
    let server = Server::start(&[], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    let r = execute(&server, json!({"code": "print(1)", "sandbox": "docker"}));
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.error().contains("start Docker"), "{}", r.error());
    let r = server.call("POST", "/v1/sandboxes", Some(&json!({"sandbox": "docker"})));
    assert_eq!(r.status, 503, "{r:?}");
    let r = server.call("POST", "/v1/sandboxes", Some(&json!({"sandbox": "none"})));
    assert_eq!(
        r.status, 400,
        "the none backend has no persistent sandboxes: {r:?}"
    );
}

// ---- auth ----------------------------------------------------------------------------------

#[test]
fn a_token_guards_every_route_but_healthz() {
    let token = "s3cret-token-0123456789";
    let server = Server::start(&[], &[("CODE_EXEC_TOKEN", token)]);
    let bearer = format!("Bearer {token}");
    assert_eq!(http(server.addr, "GET", "/healthz", &[], None).status, 200);
    for (method, path) in [
        ("POST", "/v1/execute"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/sandboxes"),
        ("DELETE", "/v1/sandboxes/x"),
    ] {
        let none = http(server.addr, method, path, &[], Some("{}"));
        assert_eq!(none.status, 401, "{method} {path}");
        assert!(none.error().contains("token"));
        assert_eq!(
            none.headers.get("www-authenticate").map(String::as_str),
            Some("Bearer")
        );
        let wrong = http(
            server.addr,
            method,
            path,
            &[("Authorization", "Bearer nope")],
            Some("{}"),
        );
        assert_eq!(wrong.status, 401, "{method} {path}");
    }
    let ok = http(
        server.addr,
        "POST",
        "/v1/execute",
        &[("Authorization", &bearer)],
        Some(r#"{"code": "print(2)", "sandbox": "none"}"#),
    );
    assert_eq!(
        (ok.status, ok.json()["output"].clone()),
        (200, json!("2\n"))
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let server = Server::start(&["--token-file", file.to_str().unwrap()], &[]);
    assert_eq!(http(server.addr, "GET", "/metrics", &[], None).status, 401);
    assert_eq!(
        http(
            server.addr,
            "GET",
            "/metrics",
            &[("Authorization", &bearer)],
            None
        )
        .status,
        200
    );
}

#[test]
fn no_token_means_loopback_only() {
    let run = Command::new(bin())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("CODE_EXEC_TOKEN")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("without a token"),
        "{run:?}"
    );
    let run = Command::new(bin())
        .args(["serve", "--max-concurrency", "0"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("--max-concurrency"));
}

// ---- persistent sandboxes --------------------------------------------------------------------

native_test!(sandbox_lifecycle_over_http, {
    let server = Server::start(&[], &[]);
    let created = server.call(
        "POST",
        "/v1/sandboxes",
        Some(&json!({"limits": {"memory_mb": 96, "timeout_s": 10}})),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let run = |code: &str| {
        server.call(
            "POST",
            &format!("/v1/sandboxes/{id}/execute"),
            Some(&json!({"code": code})),
        )
    };
    assert_eq!(run("open('/work/kept', 'w').write('yes')").status, 200);
    let r = run("print(open('/work/kept').read())").json();
    assert_eq!(r["output"], "yes\n", "{r}");
    let r = server.call(
        "POST",
        &format!("/v1/sandboxes/{id}/execute"),
        Some(&json!({"code": "1", "limits": {}})),
    );
    assert_eq!(
        r.status, 400,
        "a sandbox's limits change through PATCH: {r:?}"
    );
    let usage = server
        .call("GET", &format!("/v1/sandboxes/{id}/usage"), None)
        .json();
    for key in [
        "cpu_percent",
        "memory_mb",
        "peak_memory_mb",
        "cpu_time_ms",
        "pids",
    ] {
        assert!(usage[key].is_number(), "{key}: {usage}");
    }
    assert!(usage["cpu_time_ms"].as_f64().unwrap() > 0.0, "{usage}");
    let patched = server.call(
        "PATCH",
        &format!("/v1/sandboxes/{id}/limits"),
        Some(&json!({"memory_mb": 256, "cpu": 1, "pids": 32})),
    );
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(
        patched.json(),
        // The scratch space stays what the sandbox was made with: half of its 96 MB.
        json!({"memory_mb": 256, "cpu": 1.0, "pids": 32, "timeout_s": 10.0, "max_output_bytes": 1048576, "disk_mb": 48})
    );
    let bad = server.call(
        "PATCH",
        &format!("/v1/sandboxes/{id}/limits"),
        Some(&json!({"memory_mb": 1})),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("memory_mb"));
    let r = run("x = bytearray(150 * 1024 * 1024)\nprint('fits')").json();
    assert_eq!(r["output"], "fits\n", "the raised limit holds: {r}");
    let metrics = server.call("GET", "/metrics", None).body;
    assert!(metrics.contains("code_exec_sandboxes_live 1"), "{metrics}");
    assert_eq!(
        server
            .call("DELETE", &format!("/v1/sandboxes/{id}"), None)
            .status,
        204
    );
    assert_eq!(
        server
            .call("DELETE", &format!("/v1/sandboxes/{id}"), None)
            .status,
        404
    );
    assert_eq!(run("1").status, 404);
    server.assert_no_cgroups();
    assert_host_clean("codeexec_server_lifecycle");
});

native_test!(idle_sandboxes_expire, {
    let server = Server::start(&["--sandbox-ttl", "1"], &[]);
    let id = server.call("POST", "/v1/sandboxes", None).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = server.call("GET", &format!("/v1/sandboxes/{id}/usage"), None);
        if r.status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "the idle sandbox never expired");
        // Reading usage counts as use: wait past the TTL between looks.
        std::thread::sleep(Duration::from_millis(2500));
    }
    assert!(
        server
            .call("GET", "/metrics", None)
            .body
            .contains("code_exec_sandboxes_expired_total 1")
    );
    server.assert_no_cgroups();
    assert_host_clean("codeexec_server_expiry");
});

// ---- load, disconnects, shutdown -------------------------------------------------------------

native_test!(a_flood_gets_429s_never_5xx_and_leaves_nothing, {
    let server = Server::start(&["--max-concurrency", "1", "--max-queue", "2"], &[]);
    let tag = marker("flood");
    let code =
        format!("import sys, time\nsys.argv.append('{tag}')\ntime.sleep(0.5)\nprint('done')");
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|_| s.spawn(|| execute(&server, json!({"code": code}))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(ok + busy.len(), 12, "only 200s and 429s: {replies:?}");
    assert!(
        ok >= 3,
        "the running one and the queued ones complete: {ok}"
    );
    assert!(!busy.is_empty(), "a queue of 2 cannot hold 11 waiters");
    for r in &busy {
        assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
        assert!(r.error().contains("busy"));
    }
    for r in replies.iter().filter(|r| r.status == 200) {
        assert_eq!(r.json()["output"], "done\n");
    }
    let metrics = server.call("GET", "/metrics", None).body;
    assert!(metrics.contains("code_exec_queue_depth 0"), "{metrics}");
    assert!(
        metrics.contains("code_exec_http_responses_total{status=\"429\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("status=\"5"), "{metrics}");
    assert_host_clean(&tag);
});

native_test!(
    a_client_that_disconnects_does_not_leave_its_sandbox_running,
    {
        let server = Server::start(&[], &[]);
        let tag = marker("disconnect");
        let body = json!({"code": format!(
        "import subprocess, time\nsubprocess.Popen(['{tag}', '300'], executable='/bin/sleep')\ntime.sleep(300)"
    )})
    .to_string();
        let mut stream = TcpStream::connect(server.addr).unwrap();
        write!(
        stream,
        "POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_with(&tag).is_empty() {
            assert!(Instant::now() < deadline, "the execution never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(stream);
        assert_host_clean(&tag);
        let metrics = server.call("GET", "/metrics", None).body;
        assert!(metrics.contains("code_exec_cancelled_total 1"), "{metrics}");
    }
);

native_test!(shutdown_cancels_what_runs_and_removes_every_sandbox, {
    let mut server = Server::start(&[], &[]);
    let tag = marker("shutdown");
    let id = server.call("POST", "/v1/sandboxes", None).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let addr = server.addr;
    let code = format!(
        "import subprocess, time\nsubprocess.Popen(['{tag}', '300'], executable='/bin/sleep')\ntime.sleep(300)"
    );
    let running = std::thread::spawn(move || {
        http(
            addr,
            "POST",
            &format!("/v1/sandboxes/{id}/execute"),
            &[],
            Some(&json!({"code": code}).to_string()),
        )
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(&tag).is_empty() {
        assert!(Instant::now() < deadline, "the execution never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = server.pid();
    // The server's zygote (its runs fork from it) must end with it too.
    let zygotes: Vec<u32> = processes_with("__zygote")
        .into_iter()
        .filter(|&p| parent_of(p) == Some(pid))
        .collect();
    assert_eq!(
        zygotes.len(),
        1,
        "the server forks its runs from one zygote"
    );
    let stopped = Instant::now();
    assert_eq!(server.stop(), 0);
    assert!(stopped.elapsed() < Duration::from_secs(10));
    let reply = running.join().unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["error_type"], "Cancelled");
    assert_host_clean(&tag);
    let deadline = Instant::now() + Duration::from_secs(3);
    while zygotes
        .iter()
        .any(|z| std::path::Path::new(&format!("/proc/{z}")).exists())
    {
        assert!(Instant::now() < deadline, "the zygote outlived the server");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        cgroups_named(&format!("code-exec-{pid}-")).is_empty(),
        "{}",
        cgroups_named(&format!("code-exec-{pid}-"))
    );
});

// ---- the warm pool ---------------------------------------------------------------------------

native_test!(the_warm_pool_serves_isolated_single_use_sandboxes, {
    if !cgroups_or_skip("the_warm_pool_serves_isolated_single_use_sandboxes") {
        return;
    }
    let secret = marker("POOLSECRET");
    let mut server = Server::start(
        &["--pool", "2", "--preload", "json,sqlite3"],
        &[("CODE_EXEC_TEST_SECRET", &secret)],
    );
    let wait_for_pool = |server: &Server| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server
            .call("GET", "/metrics", None)
            .body
            .contains("code_exec_pool_size 2")
        {
            assert!(Instant::now() < deadline, "the pool never filled");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let probe = format!(
        "import os, sys\nprint('--pooled' in sys.orig_argv, 'json' in sys.modules, 'sqlite3' in sys.modules)\nprint(os.getuid(), os.path.exists('/tmp/mark'), '{secret}' in repr(dict(os.environ)))\nopen('/tmp/mark', 'w').write('x')\nprint(input())"
    );
    for round in 0..3 {
        // Served by the pool only when a sandbox is ready (else cold, which this checks not).
        wait_for_pool(&server);
        let v = execute(&server, json!({"code": probe, "stdin": "in\n"})).json();
        assert_eq!(
            v["output"], "True True True\n1000 False False\nin\n",
            "round {round}: pooled, preloaded, unprivileged, fresh, no secret: {v}"
        );
        assert!(v["cpu_time_ms"].as_f64().unwrap() < 200.0, "{v}");
    }
    // The request's limits hold in a pooled sandbox.
    wait_for_pool(&server);
    let v = execute(
        &server,
        json!({"code": "x = []\nwhile True: x.append(bytearray(10 << 20))", "limits": {"memory_mb": 64}}),
    )
    .json();
    assert_eq!(v["error_type"], "MemoryLimit", "{v}");
    // A scratch space other than the pooled sandboxes' (their filesystems were made for
    // theirs) is held all the same: the run goes cold rather than to the pool.
    wait_for_pool(&server);
    let v = execute(
        &server,
        json!({"code": "import errno\ntry:\n    open('/work/big', 'wb').write(b'x' * (12 << 20)); print('WROTE')\nexcept OSError as e:\n    print(errno.errorcode[e.errno], '--pooled' in __import__('sys').orig_argv)", "limits": {"disk_mb": 8}}),
    )
    .json();
    assert!(
        v["output"] == "ENOSPC False\n" || v["output"] == "EFBIG False\n",
        "{v}"
    );
    // And a pooled sandbox holds its own: the default, half of 128 MB.
    wait_for_pool(&server);
    let v = execute(
        &server,
        json!({"code": "import errno\nn = 0\ntry:\n    while True:\n        with open('/work/f%d' % n, 'wb') as f: f.write(b'x' * (1 << 20))\n        n += 1\nexcept OSError as e:\n    print(errno.errorcode[e.errno], n <= 64, '--pooled' in __import__('sys').orig_argv)"}),
    )
    .json();
    assert_eq!(v["output"], "ENOSPC True True\n", "{v}");
    // Its /code holds the code and nothing else the code would make there.
    wait_for_pool(&server);
    let v = execute(
        &server,
        json!({"code": "import errno\ntry:\n    open('/code/other.py', 'w'); print('MADE')\nexcept OSError as e:\n    print(errno.errorcode[e.errno], open('/code/main.py').read().startswith('import errno'))"}),
    )
    .json();
    assert_eq!(v["output"], "ENOSPC True\n", "{v}");
    wait_for_pool(&server);
    let v = execute(
        &server,
        json!({"code": "import os\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            import time; time.sleep(30)\n        n += 1\nexcept OSError:\n    print('capped', n < 16)", "limits": {"pids": 8, "timeout_s": 10}}),
    )
    .json();
    assert_eq!(v["output"], "capped True\n", "{v}");
    wait_for_pool(&server);
    let tag = marker("pooltimeout");
    let v = execute(
        &server,
        json!({"code": format!("import subprocess\nsubprocess.Popen(['{tag}', '300'], executable='/bin/sleep', start_new_session=True)\nwhile True: pass"), "limits": {"timeout_s": 1}}),
    )
    .json();
    assert_eq!(v["error_type"], "Timeout", "{v}");
    assert!(v["duration_ms"].as_f64().unwrap() < 3000.0, "{v}");
    assert_no_survivors(&tag);
    // A request the pool cannot serve (more memory than its sandboxes were sized for) runs
    // cold, with the same result contract.
    let v = execute(
        &server,
        json!({"code": "import sys\nprint('--pooled' in sys.orig_argv)", "limits": {"memory_mb": 512}}),
    )
    .json();
    assert_eq!(v["output"], "False\n", "{v}");
    let pid = server.pid();
    assert_eq!(server.stop(), 0);
    assert!(
        cgroups_named(&format!("code-exec-{pid}-")).is_empty(),
        "the pool's sandboxes outlived the server"
    );
    assert_host_clean(&tag);
});

native_test!(
    a_killed_server_leaves_nothing_the_next_start_does_not_reap,
    {
        if !cgroups_or_skip("a_killed_server_leaves_nothing_the_next_start_does_not_reap") {
            return;
        }
        let mut server = Server::start(&["--pool", "1"], &[]);
        let created = server.call("POST", "/v1/sandboxes", None);
        assert_eq!(created.status, 201);
        let id = created.json()["id"].as_str().unwrap().to_owned();
        let r = server.call(
            "POST",
            &format!("/v1/sandboxes/{id}/execute"),
            Some(&json!({"code": "open('/work/f', 'w').write('x' * 100000)"})),
        );
        assert_eq!(r.status, 200);
        let pid = server.pid();
        assert!(
            !cgroups_named(&format!("code-exec-{pid}-")).is_empty(),
            "the sandbox and the pool have cgroups while the server lives"
        );
        // SIGKILL: no chance to clean up.
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        let _ = server.stop();
        // Any next start of the native backend reaps what the dead server left.
        let (v, status) = run_native("print('next')", &[]);
        assert_eq!(status, 0, "{v}");
        assert!(
            cgroups_named(&format!("code-exec-{pid}-")).is_empty(),
            "cgroups of the killed server: {}",
            cgroups_named(&format!("code-exec-{pid}-"))
        );
        assert_host_clean("codeexec_killed_server");
    }
);

/// The parent pid of `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

// ---- hardening (issue 12, the server) --------------------------------------------------------

/// Two `"code"` keys: a proxy that checks the first would see another program than the one
/// that runs. Duplicate keys anywhere in a body are refused, naming the key.
#[test]
fn duplicate_json_keys_are_refused_naming_the_key() {
    let server = Server::start(&[], &[]);
    let raw = |path: &str, body: &str| http(server.addr, "POST", path, &[], Some(body));
    let cases = [
        (
            "/v1/execute",
            r#"{"code": "print('checked')", "code": "print('ran')"}"#,
            "\"code\"",
        ),
        (
            "/v1/execute",
            r#"{"code": "1", "limits": {"memory_mb": 64, "memory_mb": 4096}}"#,
            "\"memory_mb\"",
        ),
        (
            "/v1/sandboxes",
            r#"{"sandbox": "none", "sandbox": "native"}"#,
            "\"sandbox\"",
        ),
    ];
    for (path, body, key) in cases {
        let r = raw(path, body);
        assert_eq!(r.status, 400, "{body}: {r:?}");
        let error = r.error();
        assert!(
            error.contains("duplicate") && error.contains(key),
            "{body}: {error:?} does not name {key}"
        );
    }
    let r = server.call("PATCH", "/v1/sandboxes/nope/limits", None);
    assert_eq!(r.status, 404, "{r:?}");
}

/// Every error is JSON, also where the router itself refuses a path (an id that is not
/// UTF-8 once percent-decoded).
#[test]
fn an_undecodable_sandbox_id_is_a_json_400() {
    let server = Server::start(&[], &[]);
    for (method, path) in [
        ("GET", "/v1/sandboxes/%FF%FE/usage"),
        ("DELETE", "/v1/sandboxes/%C0"),
        ("POST", "/v1/sandboxes/%FF/execute"),
        ("PATCH", "/v1/sandboxes/%FF/limits"),
    ] {
        let r = http(server.addr, method, path, &[], Some("{}"));
        assert_eq!(r.status, 400, "{method} {path}: {r:?}");
        assert!(
            r.headers
                .get("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{method} {path}: {r:?}"
        );
        assert!(r.error().contains("sandbox id"), "{method} {path}: {r:?}");
    }
}

// Concurrent first requests for a backend build it once: one tool, so one zygote ever (a
// second one, built and then dropped, is seen while the burst runs).
native_test!(concurrent_first_requests_build_one_backend, {
    let server = Server::start(&[], &[]);
    let addr = server.addr;
    let server_pid = server.pid();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                seen.extend(
                    processes_with("__zygote")
                        .into_iter()
                        .filter(|&pid| parent_of(pid) == Some(server_pid)),
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            seen
        })
    };
    let requests: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                http(
                    addr,
                    "POST",
                    "/v1/execute",
                    &[],
                    Some(&json!({"code": "print(1)"}).to_string()),
                )
            })
        })
        .collect();
    for request in requests {
        let r = request.join().unwrap();
        assert_eq!(r.status, 200, "{r:?}");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = watcher.join().unwrap();
    assert_eq!(seen.len(), 1, "zygotes started by the server: {seen:?}");
    let zygotes: Vec<u32> = processes_with("__zygote")
        .into_iter()
        .filter(|&pid| parent_of(pid) == Some(server.pid()))
        .collect();
    assert_eq!(zygotes.len(), 1, "zygotes of the server: {zygotes:?}");
});

// The metrics' outcome labels come from the host's verdict, a fixed set: a user exception
// class named like a verdict is counted as an exception, and class names (any number of them)
// never become label values.
native_test!(metrics_outcomes_cannot_be_forged_by_class_names, {
    let server = Server::start(&[], &[]);
    for name in [
        "Timeout",
        "MemoryLimit",
        "SandboxError",
        "Custom1",
        "Custom2",
    ] {
        let code = format!("class {name}(Exception): pass\nraise {name}('forged')");
        let v = execute(&server, json!({"code": code})).json();
        assert_eq!(v["error_type"], name, "{v}");
        assert_eq!(v["verdict"], "exception", "{v}");
    }
    let metrics = server.call("GET", "/metrics", None).body;
    assert!(
        metrics.contains("code_exec_executions_total{outcome=\"exception\"} 5"),
        "{metrics}"
    );
    for name in [
        "Timeout",
        "MemoryLimit",
        "SandboxError",
        "Custom1",
        "Custom2",
    ] {
        assert!(
            !metrics.contains(&format!("outcome=\"{name}\"")),
            "{name} became a label:\n{metrics}"
        );
    }
});

// Slowloris: half-sent requests (headers never finished, or a body never finished), more of
// them than the server has file descriptors, must neither hold the server nor keep their
// connections: beyond the connection cap they get a JSON 503 at once, the others are closed
// when their header or body read times out, and an authenticated request is then served.
// Before, every fd stayed held, the authenticated request timed out and no slow connection
// was closed.
native_test!(half_sent_requests_cannot_starve_the_server, {
    let token = "slowloris-token-0123456789";
    let server = Server::start_with_fd_limit(
        256,
        &["--header-timeout", "1", "--body-timeout", "1"],
        &[("CODE_EXEC_TOKEN", token)],
    );
    let mut slow = Vec::new();
    for i in 0..400 {
        let Ok(mut stream) = TcpStream::connect(server.addr) else {
            continue;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let half = if i % 2 == 0 {
            "POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".to_string()
        } else {
            format!(
                "POST /v1/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"code\":"
            )
        };
        let _ = stream.write_all(half.as_bytes());
        slow.push(stream);
    }
    assert!(slow.len() > 256, "only {} connections opened", slow.len());
    // Every slow connection is answered or closed by the server, well within a few seconds.
    let started = Instant::now();
    let (mut refused, mut timed_out, mut closed) = (0, 0, 0);
    for mut stream in slow {
        let mut reply = Vec::new();
        match stream.read_to_end(&mut reply) {
            Ok(_) => {}
            Err(e) => panic!(
                "a slow connection stayed open: {e} after {:?}",
                started.elapsed()
            ),
        }
        let text = String::from_utf8_lossy(&reply);
        if text.starts_with("HTTP/1.1 503") {
            assert!(text.contains("{\"error\":"), "{text}");
            refused += 1;
        } else if text.starts_with("HTTP/1.1 408") {
            timed_out += 1;
        } else {
            assert!(text.is_empty(), "{text}");
            closed += 1;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert!(refused > 0, "no connection was refused beyond the cap");
    assert!(timed_out + closed > 0);
    // The server is free again: an authenticated request is served.
    let r = http(
        server.addr,
        "POST",
        "/v1/execute",
        &[("Authorization", &format!("Bearer {token}"))],
        Some(&json!({"code": "print(1)"}).to_string()),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["output"], "1\n");
});

// DELETE of a sandbox while an execution runs in it ends that execution at once (whatever
// limits the host gives: as uid 65534 there is no cgroup), and the execution's answer says
// `cancelled`. Before, DELETE returned at once and the code ran on until its timeout.
native_test!(deleting_a_sandbox_cancels_its_running_execution, {
    let server = Server::start(&[], &[]);
    let created = server.call(
        "POST",
        "/v1/sandboxes",
        Some(&json!({"limits": {"timeout_s": 60}})),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let tag = marker("delete_running");
    let code = format!(
        "import subprocess, time\nsubprocess.Popen(['{tag}', '300'], executable='/bin/sleep')\nwhile True: time.sleep(0.01)"
    );
    std::thread::scope(|s| {
        let running = s.spawn(|| {
            server.call(
                "POST",
                &format!("/v1/sandboxes/{id}/execute"),
                Some(&json!({"code": code})),
            )
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_with(&tag).is_empty() {
            assert!(Instant::now() < deadline, "the code never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let asked = Instant::now();
        let deleted = server.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
        assert_eq!(deleted.status, 204, "{deleted:?}");
        let r = running.join().unwrap();
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["verdict"], "cancelled", "{r:?}");
    });
    assert_no_survivors(&tag);
});

// Output amplification: two streams of control bytes escape to six times their size in JSON.
// A response may cost at most --max-response-bytes (its streams are cut to fit, `truncated`
// says so) and the server's memory stays bounded. Before, 2 × 4 MiB of control bytes became a
// ~48 MiB response and the server's resident set grew by more than that.
native_test!(a_response_cannot_amplify_control_bytes_without_bound, {
    let server = Server::start(&["--max-response-bytes", "2097152"], &[]);
    let rss_kb = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    let warm = execute(&server, json!({"code": "print(1)"}));
    assert_eq!(warm.status, 200);
    let before = rss_kb(server.pid());
    let code = "import os\nos.write(1, b'\\x01' * (4 << 20))\nos.write(2, b'\\x02' * (4 << 20))";
    let r = execute(
        &server,
        json!({"code": code, "limits": {"max_output_bytes": 8 << 20}}),
    );
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(300)]);
    assert!(r.body.len() <= 2 << 20, "a {} byte response", r.body.len());
    let v = r.json();
    assert_eq!(v["verdict"], "ok", "{}", &r.body[..300]);
    assert_eq!(v["truncated"], true);
    assert!(
        v["output"].as_str().unwrap().len() > 100_000,
        "the cut keeps what fits"
    );
    let grown_mb = (rss_kb(server.pid()) - before) / 1024;
    assert!(
        grown_mb < 40,
        "the server grew by {grown_mb} MB for one response"
    );
});
