//! One measurement window: what the subscribers counted, and the CPU time
//! and memory of the processes, from its start to its end.

use std::time::Duration;

use fieldbridge_e2e::count::{Counters, Counts};
use fieldbridge_e2e::procfs::{self, Memory};
use tokio::time::Instant;

/// A gateway or server past this much resident memory ends the window
/// early, so that an unbounded queue cannot take the machine down.
pub const RSS_LIMIT_KIB: u64 = 4 << 20;

/// The processes measured.
#[derive(Debug, Clone, Copy)]
pub struct Pids {
    pub gateway: Option<u32>,
    pub server: Option<u32>,
}

/// What one window saw.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub secs: f64,
    pub counts: Counts,
    /// CPU seconds used in the window.
    pub gateway_cpu: Option<f64>,
    pub server_cpu: Option<f64>,
    pub bench_cpu: f64,
    /// The gateway's memory at the end.
    pub gateway_memory: Option<Memory>,
    /// Why the window ended early, if it did.
    pub cut_short: Option<String>,
}

fn cpu(pid: Option<u32>) -> anyhow::Result<Option<f64>> {
    pid.map(procfs::cpu_seconds).transpose()
}

impl Window {
    pub fn rate(&self, n: u64) -> f64 {
        n as f64 / self.secs
    }
    pub fn readings_per_sec(&self) -> f64 {
        self.rate(self.counts.readings)
    }
    pub fn notifications_per_sec(&self) -> f64 {
        self.rate(self.counts.messages)
    }
    fn per(&self, x: f64, n: u64) -> Option<f64> {
        (n > 0).then(|| x / n as f64)
    }
    pub fn readings_per_notification(&self) -> Option<f64> {
        self.per(self.counts.readings as f64, self.counts.messages)
    }
    pub fn bytes_per_reading(&self) -> Option<f64> {
        self.per(self.counts.bytes as f64, self.counts.readings)
    }
    pub fn bytes_per_notification(&self) -> Option<f64> {
        self.per(self.counts.bytes as f64, self.counts.messages)
    }
    /// Gateway CPU µs per delivered reading.
    pub fn gateway_us_per_reading(&self) -> Option<f64> {
        self.per(self.gateway_cpu? * 1e6, self.counts.readings)
    }
    pub fn gateway_over_server(&self) -> Option<f64> {
        let (gateway, server) = (self.gateway_cpu?, self.server_cpu?);
        (server > 0.0).then(|| gateway / server)
    }
    /// Share of one core, in percent.
    pub fn server_percent(&self) -> Option<f64> {
        Some(self.server_cpu? / self.secs * 100.0)
    }
    pub fn gateway_percent(&self) -> Option<f64> {
        Some(self.gateway_cpu? / self.secs * 100.0)
    }
    pub fn bench_percent(&self) -> f64 {
        self.bench_cpu / self.secs * 100.0
    }
}

/// Waits for a pause in what the subscribers receive: the devices are all
/// read at the same instant, so readings arrive in one burst per poll, and
/// a window that starts between two bursts and lasts whole polls counts
/// whole bursts. Without a pause within two polls (a gateway or server
/// that never catches up: a steady flow, whose edges do not matter) it
/// returns `false`.
async fn between_bursts(counters: &Counters, poll: Duration) -> bool {
    let pause = (poll / 5).clamp(Duration::from_millis(20), Duration::from_millis(200));
    let deadline = Instant::now() + 2 * poll + Duration::from_secs(1);
    let mut last = counters.counts().bytes;
    let mut since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let bytes = counters.counts().bytes;
        if bytes != last {
            (last, since) = (bytes, Instant::now());
        } else if since.elapsed() >= pause {
            return true;
        }
    }
    false
}

/// [`measure`] for what devices read every `poll` produce: from a pause
/// between two bursts, for `length` rounded to whole polls.
pub async fn measure_polled(
    counters: &Counters,
    pids: Pids,
    length: Duration,
    poll: Duration,
) -> anyhow::Result<Window> {
    let polls = (length.as_secs_f64() / poll.as_secs_f64()).round().max(1.0);
    between_bursts(counters, poll).await;
    measure(counters, pids, poll.mul_f64(polls)).await
}

/// Measures for `length` (less if the gateway outgrows [`RSS_LIMIT_KIB`]).
/// Fails if a subscriber's connection closed before or during it.
pub async fn measure(counters: &Counters, pids: Pids, length: Duration) -> anyhow::Result<Window> {
    let closed = counters.closed();
    anyhow::ensure!(
        closed == 0,
        "{closed} subscriber connection(s) closed before the window"
    );
    let bench = std::process::id();
    let c0 = counters.counts();
    let (g0, s0, b0) = (
        cpu(pids.gateway)?,
        cpu(pids.server)?,
        procfs::cpu_seconds(bench)?,
    );
    let t0 = Instant::now();
    let end = t0 + length;
    let mut cut_short = None;
    // Sampling the gateway's memory, not waiting for anything: the window
    // is a fixed length.
    while Instant::now() < end {
        tokio::time::sleep_until(end.min(Instant::now() + Duration::from_millis(250))).await;
        for (name, pid) in [("gateway", pids.gateway), ("server", pids.server)] {
            let Some(pid) = pid else { continue };
            let m = procfs::memory(pid)?;
            if m.rss_kib > RSS_LIMIT_KIB {
                cut_short = Some(format!(
                    "{name} RSS {} MiB > {} MiB after {:.1} s",
                    m.rss_kib >> 10,
                    RSS_LIMIT_KIB >> 10,
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
        if cut_short.is_some() {
            break;
        }
    }
    let c1 = counters.counts();
    let (g1, s1, b1) = (
        cpu(pids.gateway)?,
        cpu(pids.server)?,
        procfs::cpu_seconds(bench)?,
    );
    let secs = t0.elapsed().as_secs_f64();
    let closed = counters.closed();
    anyhow::ensure!(
        closed == 0,
        "{closed} subscriber connection(s) closed during the window"
    );
    Ok(Window {
        secs,
        counts: c1 - c0,
        gateway_cpu: g1.zip(g0).map(|(a, b)| a - b),
        server_cpu: s1.zip(s0).map(|(a, b)| a - b),
        bench_cpu: b1 - b0,
        gateway_memory: pids.gateway.map(procfs::memory).transpose()?,
        cut_short,
    })
}
