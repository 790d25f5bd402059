//! The host uid and gid a sandbox's user maps to, and what RLIMIT_NPROC would count for one.
//! Host side, decided per run (or per persistent sandbox).

/// The first uid of the range sandboxes map to when the tool runs as root: far above any
/// account, so that nothing on the host is owned by a sandbox's uid.
const HOST_UID_BASE: u32 = 2_000_000_000;
const HOST_UID_RANGE: u32 = 100_000_000;

/// The host uid and gid the sandbox's user maps to: a fresh one from a high range when we run
/// as root (so no host file and no other sandbox shares it), else our own (the only one an
/// unprivileged user may map).
pub(super) fn host_ids(run: u64) -> (u32, u32) {
    let euid = crate::sys::effective_uid();
    if euid != 0 {
        return (euid, crate::sys::effective_gid());
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = (u64::from(std::process::id()) << 20) ^ run ^ nanos;
    let id = HOST_UID_BASE + (mix(seed) % u64::from(HOST_UID_RANGE)) as u32;
    (id, id)
}

/// How many processes and threads the host uid `uid` runs now (what RLIMIT_NPROC counts).
pub(super) fn processes_of(uid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|status| {
            status.lines().any(|l| {
                l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid.to_string())
            })
        })
        .map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(1)
        })
        .sum()
}

/// A small integer hash (splitmix64's finaliser) to spread uids over the range.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_are_spread_over_a_high_range_for_root() {
        if crate::sys::effective_uid() != 0 {
            assert_eq!(host_ids(1).0, crate::sys::effective_uid());
            return;
        }
        let a = host_ids(1).0;
        assert!((HOST_UID_BASE..HOST_UID_BASE + HOST_UID_RANGE).contains(&a));
    }
}
