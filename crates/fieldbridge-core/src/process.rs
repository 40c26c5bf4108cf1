//! Facts about this process, for the benches' "CPU time per reading" and
//! for logs.

use std::time::Duration;

/// CPU time (user + system) this process has used so far, from
/// `/proc/self/stat`; `None` where there is no procfs.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may
    // itself contain spaces or parentheses.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_time().expect("procfs");
        // Work until 30 ms of CPU time show, for 20 s of wall time at most
        // (a loaded machine may give this thread little of it).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        let mut now = before;
        while now < before + Duration::from_millis(30) {
            assert!(
                std::time::Instant::now() < deadline,
                "cpu_time went from {before:?} to {now:?} in 20 s of busy work"
            );
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            now = cpu_time().expect("procfs");
        }
    }
}
