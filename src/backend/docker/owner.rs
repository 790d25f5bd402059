//! Who created a container: host name, boot id, pid and the pid's start time, written into a
//! label so that a later start can tell a live owner from a crashed one (pids are reused; the
//! start time and boot id make the identity unique). Runs in the host process.

use std::fmt;

/// The identity of the process that created a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    host: String,
    boot_id: String,
    pid: u32,
    start_ticks: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            host: host_name(),
            boot_id: boot_id(),
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    /// Parses a label value written by [`Display`](fmt::Display).
    pub fn parse(text: &str) -> Option<Owner> {
        let mut parts = text.rsplitn(4, '/');
        let start_ticks = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let boot_id = parts.next()?.to_owned();
        let host = parts.next()?.to_owned();
        Some(Owner {
            host,
            boot_id,
            pid,
            start_ticks,
        })
    }

    /// Whether `other` (an owner written by a process on this host) no longer exists. Owners
    /// on other hosts sharing the engine are never judged.
    pub fn outlived(&self, other: &Owner) -> bool {
        if other.host != self.host {
            return false;
        }
        if other.boot_id != self.boot_id {
            return true;
        }
        other.pid != self.pid && start_ticks(other.pid) != Some(other.start_ticks)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.host, self.boot_id, self.pid, self.start_ticks
        )
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace('/', "_"))
        .unwrap_or_default()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|b| b.trim().to_owned())
        .unwrap_or_default()
}

fn start_ticks(pid: u32) -> Option<u64> {
    crate::sys::process_start_ticks(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_label_form() {
        let me = Owner::current();
        assert!(me.start_ticks > 0);
        assert_eq!(Owner::parse(&me.to_string()), Some(me.clone()));
        assert!(!me.outlived(&me));
    }

    #[test]
    fn a_dead_or_recycled_owner_is_outlived() {
        let me = Owner::current();
        let mut other = me.clone();
        other.pid = 1;
        other.start_ticks = u64::MAX;
        assert!(me.outlived(&other), "pid 1 never started at that time");
        let mut rebooted = me.clone();
        rebooted.boot_id = "another-boot".into();
        rebooted.pid = 1;
        assert!(me.outlived(&rebooted));
        let mut elsewhere = other.clone();
        elsewhere.host = "another-host".into();
        assert!(
            !me.outlived(&elsewhere),
            "other hosts' containers are left alone"
        );
        let mut alive = me.clone();
        alive.pid = 1;
        alive.start_ticks = start_ticks(1).unwrap();
        assert!(!me.outlived(&alive));
        assert_eq!(Owner::parse("garbage"), None);
    }
}
