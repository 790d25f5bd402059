//! Resource limits of an execution, validated once at the edge into typed values.
//!
//! Every constructor refuses an out-of-range, zero, negative, NaN or unparsable value with an
//! error that names the field and the allowed range; nothing is ever clamped silently.
//! Runs in the host process, at the edge (CLI flags, HTTP bodies, builders).

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

/// A limit value that was refused, naming the field and the range it must be in.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("invalid {field}: {reason}; allowed: {allowed}")]
pub struct LimitError {
    /// The field's name as the JSON contract spells it (`memory_mb`, `cpu`, …).
    pub field: &'static str,
    pub reason: String,
    pub allowed: String,
}

/// One limit's admissible range, as shown to users in errors and documentation.
struct Range {
    field: &'static str,
    min: f64,
    max: f64,
    unit: &'static str,
}

impl Range {
    fn describe(&self) -> String {
        format!("{} to {}{}", trim(self.min), trim(self.max), self.unit)
    }

    fn refuse(&self, reason: String) -> LimitError {
        LimitError {
            field: self.field,
            reason,
            allowed: self.describe(),
        }
    }

    /// Parses text as a number of this range (integers only when `integer`).
    fn parse(&self, text: &str, integer: bool) -> Result<f64, LimitError> {
        let trimmed = text.trim();
        let value: f64 = if integer {
            trimmed
                .parse::<u64>()
                .map(|v| v as f64)
                .or_else(|_| {
                    // Give a precise reason for negatives and fractions.
                    trimmed.parse::<f64>().map_err(|_| ())
                })
                .map_err(|_| self.refuse(format!("{text:?} is not a whole number")))?
        } else {
            trimmed
                .parse::<f64>()
                .map_err(|_| self.refuse(format!("{text:?} is not a number")))?
        };
        if integer && value.fract() != 0.0 {
            return Err(self.refuse(format!("{text} is not a whole number")));
        }
        self.check(value)
    }

    fn check(&self, value: f64) -> Result<f64, LimitError> {
        if value.is_nan() {
            return Err(self.refuse("NaN is not a value".into()));
        }
        if value < self.min || value > self.max {
            return Err(self.refuse(format!("{} is out of range", trim(value))));
        }
        Ok(value)
    }
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn host_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(1024 * 1024)
}

fn host_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

fn memory_range() -> Range {
    Range {
        field: "memory_mb",
        min: 8.0,
        max: host_memory_mb().max(8) as f64,
        unit: " MB (the host's memory)",
    }
}
fn cpu_range() -> Range {
    Range {
        field: "cpu",
        min: 0.01,
        max: host_cpus(),
        unit: " cores (fraction of one core's time; at most the host's core count)",
    }
}
const TIMEOUT_RANGE: Range = Range {
    field: "timeout",
    min: 0.001,
    max: 86_400.0,
    unit: " seconds",
};
const PIDS_RANGE: Range = Range {
    field: "pids",
    min: 1.0,
    max: 32_768.0,
    unit: " processes",
};
const OUTPUT_RANGE: Range = Range {
    field: "max_output_bytes",
    min: 1.0,
    max: 256.0 * 1024.0 * 1024.0,
    unit: " bytes per stream",
};
const DISK_RANGE: Range = Range {
    field: "disk_mb",
    min: 1.0,
    max: 1_048_576.0,
    unit: " MB (each of /work, /tmp and /dev/shm)",
};
/// The largest code any execution may carry (the top of `max_code_bytes`).
pub const MAX_CODE_BYTES: u64 = 16 * 1024 * 1024;
const CODE_RANGE: Range = Range {
    field: "max_code_bytes",
    min: 1.0,
    max: MAX_CODE_BYTES as f64,
    unit: " bytes",
};

/// Memory limit in MiB ("MB" in the contract, as in the original tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MemoryMb(u64);
/// CPU limit as a fraction of one core's time (2.0 = two full cores).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct CpuFraction(f64);
/// Wall-clock limit of one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timeout(Duration);
/// Maximum number of the code's processes and threads alive at once, its main process
/// included; the sandbox's own (its init, docker's wrapper) come on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Pids(u32);
/// Cap on the bytes kept of each of stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OutputBytes(u64);
/// Scratch space in MiB: each of the sandbox's `/work`, `/tmp` and `/dev/shm` holds at most
/// this much, and no file the code writes grows beyond it (`EFBIG`; a full filesystem is
/// `ENOSPC`, which the code can catch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DiskMb(u64);
/// Cap on the size of the submitted source code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CodeBytes(u64);

macro_rules! integer_limit {
    ($ty:ident, $inner:ty, $range:expr) => {
        impl $ty {
            pub fn new(value: u64) -> Result<Self, LimitError> {
                $range.check(value as f64).map(|v| $ty(v as $inner))
            }
            pub fn parse(text: &str) -> Result<Self, LimitError> {
                $range.parse(text, true).map(|v| $ty(v as $inner))
            }
            pub fn get(self) -> $inner {
                self.0
            }
            /// The admissible range, for help texts.
            pub fn allowed() -> String {
                $range.describe()
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

integer_limit!(MemoryMb, u64, memory_range());
integer_limit!(Pids, u32, PIDS_RANGE);
integer_limit!(OutputBytes, u64, OUTPUT_RANGE);
integer_limit!(CodeBytes, u64, CODE_RANGE);
integer_limit!(DiskMb, u64, DISK_RANGE);

impl DiskMb {
    pub fn bytes(self) -> u64 {
        self.0 * 1024 * 1024
    }
}

impl MemoryMb {
    pub fn bytes(self) -> u64 {
        self.0 * 1024 * 1024
    }
}

impl CpuFraction {
    pub fn new(value: f64) -> Result<Self, LimitError> {
        cpu_range().check(value).map(CpuFraction)
    }
    pub fn parse(text: &str) -> Result<Self, LimitError> {
        cpu_range().parse(text, false).map(CpuFraction)
    }
    pub fn get(self) -> f64 {
        self.0
    }
    pub fn allowed() -> String {
        cpu_range().describe()
    }
}

impl fmt::Display for CpuFraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Timeout {
    pub fn from_secs_f64(seconds: f64) -> Result<Self, LimitError> {
        TIMEOUT_RANGE
            .check(seconds)
            .map(|v| Timeout(Duration::from_secs_f64(v)))
    }
    pub fn new(duration: Duration) -> Result<Self, LimitError> {
        Self::from_secs_f64(duration.as_secs_f64())
    }
    pub fn parse(text: &str) -> Result<Self, LimitError> {
        TIMEOUT_RANGE
            .parse(text, false)
            .map(|v| Timeout(Duration::from_secs_f64(v)))
    }
    pub fn get(self) -> Duration {
        self.0
    }
    pub fn allowed() -> String {
        TIMEOUT_RANGE.describe()
    }
}

impl Serialize for Timeout {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0.as_secs_f64())
    }
}

impl OutputBytes {
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl CodeBytes {
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

/// All limits of one execution. Built from valid parts only; `Default` gives the documented
/// defaults: 128 MB, 0.5 CPU, 30 s, 64 pids, 1 MiB per output stream, 1 MiB of code, scratch
/// space half the memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    pub memory_mb: MemoryMb,
    pub cpu: CpuFraction,
    #[serde(rename = "timeout_s")]
    pub timeout: Timeout,
    pub pids: Pids,
    pub max_output_bytes: OutputBytes,
    pub max_code_bytes: CodeBytes,
    /// Scratch space; `None`: half the memory limit (see [`Limits::disk`]).
    #[serde(skip)]
    pub disk_mb: Option<DiskMb>,
}

impl Limits {
    /// The scratch space in force: as set, else half the memory limit, so that a program
    /// filling one of its filesystems meets `ENOSPC` before the memory limit (tmpfs pages
    /// are memory).
    pub fn disk(&self) -> DiskMb {
        self.disk_mb
            .unwrap_or(DiskMb((self.memory_mb.get() / 2).max(1)))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: MemoryMb(128),
            // A host with a single core still admits 0.5.
            cpu: CpuFraction(0.5),
            timeout: Timeout(Duration::from_secs(30)),
            pids: Pids(64),
            max_output_bytes: OutputBytes(1024 * 1024),
            max_code_bytes: CodeBytes(1024 * 1024),
            disk_mb: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let l = Limits::default();
        assert_eq!(l.memory_mb.get(), 128);
        assert_eq!(l.cpu.get(), 0.5);
        assert_eq!(l.timeout.get(), Duration::from_secs(30));
        assert_eq!(l.pids.get(), 64);
        assert_eq!(l.max_output_bytes.get(), 1 << 20);
        assert_eq!(l.max_code_bytes.get(), 1 << 20);
        assert_eq!(l.disk().get(), 64, "half the memory limit");
        let small = Limits {
            memory_mb: MemoryMb::new(9).unwrap(),
            ..l
        };
        assert_eq!(small.disk().get(), 4);
        let set = Limits {
            disk_mb: Some(DiskMb::parse("1000").unwrap()),
            ..l
        };
        assert_eq!(
            set.disk().bytes(),
            1000 << 20,
            "above the memory limit is allowed"
        );
        let err = DiskMb::parse("0").unwrap_err();
        assert_eq!(err.field, "disk_mb");
        assert!(DiskMb::parse("1048577").is_err());
    }

    #[test]
    fn refuses_bad_values_naming_the_field() {
        for text in ["0", "-5", "abc", "", "1.5", "NaN", "99999999999"] {
            let err = MemoryMb::parse(text).unwrap_err();
            assert_eq!(err.field, "memory_mb", "{text}");
            assert!(err.to_string().contains("memory_mb"), "{err}");
            assert!(err.to_string().contains("allowed: 8 to"), "{err}");
        }
        for text in ["0", "-1", "nan", "inf", "x", "1000"] {
            let err = CpuFraction::parse(text).unwrap_err();
            assert_eq!(err.field, "cpu", "{text}: {err}");
        }
        assert_eq!(CpuFraction::new(f64::NAN).unwrap_err().field, "cpu");
        for text in ["0", "-1", "NaN", "1e9", "soon"] {
            assert_eq!(Timeout::parse(text).unwrap_err().field, "timeout", "{text}");
        }
        assert_eq!(Pids::parse("0").unwrap_err().field, "pids");
        assert_eq!(Pids::parse("65").unwrap().get(), 65);
        assert_eq!(
            OutputBytes::parse("0").unwrap_err().field,
            "max_output_bytes"
        );
        assert_eq!(CodeBytes::parse("-3").unwrap_err().field, "max_code_bytes");
    }

    #[test]
    fn accepts_values_in_range() {
        assert_eq!(MemoryMb::parse(" 256 ").unwrap().bytes(), 256 << 20);
        assert_eq!(CpuFraction::parse("0.25").unwrap().get(), 0.25);
        assert_eq!(
            Timeout::parse("1.5").unwrap().get(),
            Duration::from_millis(1500)
        );
        let err = CpuFraction::parse("1000").unwrap_err();
        assert!(err.allowed.contains("core"), "{err}");
    }
}
