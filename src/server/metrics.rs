//! The server's Prometheus metrics: requests by outcome, executions by verdict, a latency
//! histogram, cancellations and expiries; gauges are read at render time.
//! Runs in the host process (`code-exec serve`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;

use crate::lock::lock;
use crate::result::ExecutionResult;
use crate::tool::ExecuteError;

/// Upper bounds of the execution latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Counts {
    responses: BTreeMap<u16, u64>,
    executions: BTreeMap<String, u64>,
    latency_buckets: [u64; BUCKETS.len()],
    latency_count: u64,
    latency_sum: f64,
    cancelled: u64,
    expired: u64,
    unauthorized: u64,
}

#[derive(Default)]
pub struct Metrics(Mutex<Counts>);

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut lock(&self.0));
    }

    pub fn answered(&self, status: StatusCode) {
        self.with(|c| *c.responses.entry(status.as_u16()).or_default() += 1);
    }

    pub fn unauthorized(&self) {
        self.with(|c| {
            c.unauthorized += 1;
            *c.responses.entry(401).or_default() += 1;
        });
    }

    pub fn cancelled(&self) {
        self.with(|c| c.cancelled += 1);
    }

    pub fn expired(&self, n: usize) {
        self.with(|c| c.expired += n as u64);
    }

    /// One finished execution: its outcome and latency. Outcomes are the host's verdicts (a
    /// fixed set: an uncaught exception is `exception` whatever its class is called, so the
    /// code can neither pass for a verdict nor mint label values) and `refused`.
    pub fn executed(&self, result: &Result<ExecutionResult, ExecuteError>, took: Duration) {
        let outcome = match result {
            Ok(r) => r.verdict.as_str(),
            Err(_) => "refused",
        }
        .to_owned();
        let seconds = took.as_secs_f64();
        self.with(|c| {
            *c.executions.entry(outcome).or_default() += 1;
            for (bucket, bound) in c.latency_buckets.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            c.latency_count += 1;
            c.latency_sum += seconds;
        });
    }

    /// The Prometheus text exposition.
    pub fn render(
        &self,
        queue_depth: usize,
        running: usize,
        sandboxes_live: usize,
        pool_ready: usize,
    ) -> String {
        let c = lock(&self.0);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP code_exec_http_responses_total HTTP responses by status code."
        );
        let _ = writeln!(out, "# TYPE code_exec_http_responses_total counter");
        for (status, n) in &c.responses {
            let _ = writeln!(
                out,
                "code_exec_http_responses_total{{status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP code_exec_executions_total Executions by outcome (success, exception, or the verdict)."
        );
        let _ = writeln!(out, "# TYPE code_exec_executions_total counter");
        for (outcome, n) in &c.executions {
            let _ = writeln!(
                out,
                "code_exec_executions_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP code_exec_execution_seconds Wall time of executions, admission to result."
        );
        let _ = writeln!(out, "# TYPE code_exec_execution_seconds histogram");
        for (bound, n) in BUCKETS.iter().zip(c.latency_buckets) {
            let _ = writeln!(
                out,
                "code_exec_execution_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "code_exec_execution_seconds_bucket{{le=\"+Inf\"}} {}",
            c.latency_count
        );
        let _ = writeln!(out, "code_exec_execution_seconds_sum {}", c.latency_sum);
        let _ = writeln!(out, "code_exec_execution_seconds_count {}", c.latency_count);
        let gauges = [
            (
                "code_exec_queue_depth",
                "Requests waiting for an execution slot.",
                queue_depth as u64,
            ),
            (
                "code_exec_executions_running",
                "Executions running now.",
                running as u64,
            ),
            (
                "code_exec_sandboxes_live",
                "Persistent sandboxes alive.",
                sandboxes_live as u64,
            ),
            (
                "code_exec_pool_size",
                "Pre-started sandboxes ready in the warm pool.",
                pool_ready as u64,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let counters = [
            (
                "code_exec_cancelled_total",
                "Executions cancelled because their client went away or the server stopped.",
                c.cancelled,
            ),
            (
                "code_exec_sandboxes_expired_total",
                "Persistent sandboxes removed after their idle TTL.",
                c.expired,
            ),
            (
                "code_exec_unauthorized_total",
                "Requests refused for a missing or wrong token.",
                c.unauthorized,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        out
    }
}
