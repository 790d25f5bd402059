//! Process trees seen through `/proc`: the descendants of a process, their CPU time, resident
//! memory and count, the sampling loop that turns those figures into `Sample` events, and
//! the background watchers of a run (its control channel and its sampler). Used by the
//! supervisor (its own tree) and the sandbox helper (the init's tree, when no cgroup counts
//! for it).

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Scope;
use std::time::{Duration, Instant};

use crate::protocol::{self, StatusChannel, StatusEvent};
use crate::sys;

/// What a helper watches while its run goes on, shared with its background threads.
#[derive(Default)]
pub(crate) struct RunWatch {
    /// Set once the run has ended: a late kill or sample is then nothing to do.
    pub(crate) finished: AtomicBool,
    /// The largest memory figure a sample saw.
    pub(crate) peak_sampled: Mutex<u64>,
}

/// How a run is sampled: from `started`, every `interval`, by `measure`, on `status`.
pub(crate) struct Sampling<'a> {
    pub(crate) started: Instant,
    pub(crate) interval_ms: Option<u64>,
    pub(crate) measure: Measure<'a>,
    pub(crate) status: &'a StatusChannel,
}

impl RunWatch {
    /// Starts the run's watchers in `scope`: one ends the run (`kill`) when the control
    /// channel says so or the host is gone, unless it has finished; one samples it, if asked.
    pub(crate) fn spawn<'scope>(
        &'scope self,
        scope: &'scope Scope<'scope, '_>,
        control: OwnedFd,
        kill: impl FnOnce() + Send + 'scope,
        sampling: Sampling<'scope>,
    ) {
        scope.spawn(move || {
            protocol::wait_for_kill(control);
            if !self.finished.load(Ordering::SeqCst) {
                kill();
            }
        });
        if let Some(ms) = sampling.interval_ms {
            let interval = Duration::from_millis(ms.max(1));
            scope.spawn(move || {
                sample_loop(
                    sampling.started,
                    interval,
                    &self.finished,
                    &self.peak_sampled,
                    sampling.measure,
                    sampling.status,
                )
            });
        }
    }

    /// Marks the run finished; returns the sampled peak.
    pub(crate) fn finish(&self) -> u64 {
        self.finished.store(true, Ordering::SeqCst);
        self.peak_sampled.lock().map_or(0, |p| *p)
    }
}

/// Usage of a set of processes: CPU time so far (ns), resident bytes, live processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TreeUsage {
    pub(crate) cpu_time_ns: u64,
    pub(crate) memory_bytes: u64,
    pub(crate) alive: u32,
}

/// Every process below `root`, found through `/proc/<pid>/task/<tid>/children`.
pub(crate) fn descendants_of(root: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut frontier = children_of(root);
    while let Some(pid) = frontier.pop() {
        if seen.insert(pid) {
            found.push(pid);
            frontier.extend(children_of(pid));
        }
    }
    found
}

fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    children
}

/// CPU ticks (own and reaped children's) and resident bytes of one live process.
fn process_usage(pid: u32, page_size: u64) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // A zombie (or dying) process has no memory left to report: it is not counted.
    if matches!(fields.first(), Some(&("Z" | "X" | "x"))) {
        return None;
    }
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime, stime, cutime, cstime are fields 14–17 of stat, 12–15 after the name.
    let ticks = tick(11) + tick(12) + tick(13) + tick(14);
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some((ticks, resident_pages * page_size))
}

/// Usage of `root` and every process below it (CPU time includes reaped children's).
pub(crate) fn tree_usage(root: u32) -> TreeUsage {
    let mut pids = descendants_of(root);
    pids.push(root);
    usage_of(&pids)
}

/// Usage of the processes of `pids` that are alive.
pub(crate) fn usage_of(pids: &[u32]) -> TreeUsage {
    let ticks_per_second = sys::clock_ticks_per_second().max(1);
    let page_size = sys::page_size();
    let (mut ticks, mut usage) = (0u64, TreeUsage::default());
    for &pid in pids {
        if let Some((t, m)) = process_usage(pid, page_size) {
            ticks += t;
            usage.memory_bytes += m;
            usage.alive += 1;
        }
    }
    usage.cpu_time_ns = ticks * 1_000_000_000 / ticks_per_second;
    usage
}

/// What a sample measures.
pub(crate) type Measure<'a> = &'a (dyn Fn() -> TreeUsage + Sync);

/// Sends a resource sample every `interval` until `finished`, with CPU use computed over the
/// time since the previous sample; keeps the largest memory figure in `peak`.
fn sample_loop(
    started: Instant,
    interval: Duration,
    finished: &AtomicBool,
    peak: &Mutex<u64>,
    measure: Measure<'_>,
    status: &StatusChannel,
) {
    // The baseline: a persistent sandbox's cgroup has counted earlier executions too.
    let mut previous: (Instant, u64) = (Instant::now(), measure().cpu_time_ns);
    while !finished.load(Ordering::SeqCst) {
        std::thread::sleep(interval);
        if finished.load(Ordering::SeqCst) {
            break;
        }
        let usage = measure();
        if usage.alive == 0 {
            // Between the main process's exit and the end of the run: nothing to describe.
            continue;
        }
        let now = Instant::now();
        let wall = now.duration_since(previous.0).as_secs_f64();
        let cpu_percent = if wall > 0.0 {
            (usage.cpu_time_ns.saturating_sub(previous.1) as f64 / 1e9 / wall * 100.0).max(0.0)
        } else {
            0.0
        };
        previous = (now, usage.cpu_time_ns);
        if let Ok(mut p) = peak.lock() {
            *p = (*p).max(usage.memory_bytes);
        }
        status.send(&StatusEvent::Sample {
            elapsed_ms: now.duration_since(started).as_secs_f64() * 1000.0,
            cpu_percent,
            memory_bytes: usage.memory_bytes,
            pids: usage.alive,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_counts_its_root_and_its_descendants() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id();
        assert!(descendants_of(me).contains(&child.id()));
        let usage = tree_usage(me);
        assert!(usage.alive >= 2, "{usage:?}");
        assert!(usage.memory_bytes > 0);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!descendants_of(me).contains(&child.id()));
    }
}
