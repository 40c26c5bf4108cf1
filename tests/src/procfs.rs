//! A process's CPU time and memory, from /proc (Linux).

use std::sync::OnceLock;
use std::time::Duration;

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`).
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        crate::output_within(
            std::process::Command::new("getconf").arg("CLK_TCK"),
            Duration::from_secs(10),
        )
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
    })
}

/// User plus system CPU time `pid` has used so far (all its threads), in
/// seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat: {stat}"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime); `after` starts at 3.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i - 3)
            .ok_or_else(|| anyhow::anyhow!("short /proc/{pid}/stat: {stat}"))?
            .parse()?)
    };
    Ok((ticks(14)? + ticks(15)?) as f64 / ticks_per_second())
}

/// Resident memory of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// `VmHWM`, the peak of `VmRSS`, KiB.
    pub peak_kib: u64,
}

/// `pid`'s resident memory now, and its peak.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no {key} in /proc/{pid}/status"))
    };
    Ok(Memory {
        rss_kib: kib("VmRSS:")?,
        peak_kib: kib("VmHWM:")?,
    })
}

/// The system's load averages over 1, 5 and 15 minutes, as /proc prints
/// them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The most files this process may open (`RLIMIT_NOFILE`, soft).
pub fn open_files_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let pid = std::process::id();
        // Burn a little CPU so that the count can move.
        let mut x = 0u64;
        for i in 0..10_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        let m = memory(pid).unwrap();
        assert!(m.rss_kib > 0 && m.peak_kib >= m.rss_kib, "{m:?}");
        assert!(open_files_limit().unwrap() > 0);
        assert_eq!(load_average().split(' ').count(), 3);
    }
}
