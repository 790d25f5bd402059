//! The executions running in one persistent sandbox (native or docker): cleanup raises the
//! sandbox's closing flag, which cancels them, and waits until they have ended, so that
//! nothing the code started outlives a cleanup whatever limits the host gives, and each such
//! execution reports `Cancelled`. Host side.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::{Cancel, ExecutionRequest};
use crate::lock::lock;

/// How long cleanup waits for cancelled executions to end (their kill is bounded far below).
const CANCELLED_RUN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub(crate) struct SandboxRuns {
    closing: Cancel,
    running: Mutex<usize>,
    idle: Condvar,
}

/// One execution's place among its sandbox's runs; leaving it (drop) may wake a cleanup.
pub(crate) struct Entered<'a> {
    runs: &'a SandboxRuns,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut running = lock(&self.runs.running);
        *running -= 1;
        self.runs.idle.notify_all();
    }
}

impl SandboxRuns {
    /// Admits one execution unless the sandbox is closing: returns its place and `request`
    /// with a cancel flag that the caller's cancel and the sandbox's cleanup both raise.
    pub(crate) fn enter<'r>(
        &self,
        request: &ExecutionRequest<'r>,
    ) -> Option<(Entered<'_>, ExecutionRequest<'r>)> {
        let mut running = lock(&self.running);
        if self.closing.is_cancelled() {
            return None;
        }
        *running += 1;
        let cancel = match &request.cancel {
            Some(theirs) => theirs.or(&self.closing),
            None => self.closing.clone(),
        };
        let request = ExecutionRequest {
            code: request.code,
            stdin: request.stdin,
            limits: request.limits,
            monitor: request.monitor,
            cancel: Some(cancel),
        };
        Some((Entered { runs: self }, request))
    }

    /// Cancels every running execution and waits (bounded) until they have all ended; no
    /// execution is admitted afterwards.
    pub(crate) fn close(&self) {
        let running = {
            let running = lock(&self.running);
            self.closing.cancel();
            running
        };
        let _ = self
            .idle
            .wait_timeout_while(running, CANCELLED_RUN_GRACE, |n| *n > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    #[test]
    fn closing_cancels_running_executions_and_admits_no_more() {
        let runs = SandboxRuns::default();
        let theirs = Cancel::new();
        let request = ExecutionRequest {
            code: b"",
            stdin: None,
            limits: Limits::default(),
            monitor: None,
            cancel: Some(theirs.clone()),
        };
        let (entered, inside) = runs.enter(&request).unwrap();
        let flag = inside.cancel.clone().unwrap();
        assert!(!flag.is_cancelled());
        std::thread::scope(|s| {
            let closer = s.spawn(|| runs.close());
            while !flag.is_cancelled() {
                std::thread::yield_now();
            }
            assert!(
                !theirs.is_cancelled(),
                "the caller's own flag is not raised"
            );
            drop(entered);
            closer.join().unwrap();
        });
        assert!(runs.enter(&request).is_none());
        // The caller's own cancel still reaches an execution.
        let other = SandboxRuns::default();
        let (_entered, inside) = other.enter(&request).unwrap();
        theirs.cancel();
        assert!(inside.cancel.unwrap().is_cancelled());
    }
}
