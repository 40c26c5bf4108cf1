//! End-to-end benchmark of fieldbridge: simulated devices -> the real
//! `fieldbridge` binary (`FIELDBRIDGE_BIN`, a release build) -> a real
//! Prosody and ejabberd (started here on free loopback ports) -> c2s
//! subscribers that count notifications, the readings (XEP-0323 fields)
//! in them and the bytes they read. Beside it, in the same run and through
//! the same server to the same subscriber, a trivial component floods
//! copies of one of fieldbridge's notifications: the most that server
//! delivers, to compare with.
//!
//! Scenarios (`--scenarios`): `NxP` (N devices of P points, one subscriber
//! of every node, then the baseline), `subscribe` (subscribe IQs/s from many
//! users with subscriptions existing), `scale` (the gateway's memory with
//! many subscribers, each subscribed to 10 nodes and 10 devices' presence).
//! See `--help` and README.md (Benchmarks).
//!
//! Counting is by fields, not notifications, so that the same bench
//! measures a gateway that sends one reading per notification and one that
//! sends a device's whole state in each.

mod args;
mod common;
mod flood;
mod measure;
mod throughput;
mod users;

use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use fieldbridge_e2e::procfs;
use fieldbridge_e2e::raw;
use fieldbridge_e2e::server::{Options, Server, ServerKind};

use crate::args::{Args, Scenario, USAGE};

fn started() -> &'static std::time::Instant {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START.get_or_init(std::time::Instant::now)
}

/// A progress line on stderr; the results go to stdout at the end.
pub fn progress(msg: &str) {
    eprintln!("[{:7.1} s] {msg}", started().elapsed().as_secs_f64());
}

#[derive(Default)]
struct Report {
    throughput: Vec<(ServerKind, Scenario, throughput::Outcome)>,
    subscribe: Vec<(ServerKind, users::SubscribeOutcome)>,
    scale: Vec<(ServerKind, users::ScaleOutcome)>,
    setup: Vec<(ServerKind, &'static str, users::Timed)>,
    failures: Vec<String>,
}

fn date() -> String {
    fieldbridge_e2e::output_within(
        std::process::Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        Duration::from_secs(10),
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    .unwrap_or_default()
}

#[tokio::main]
async fn main() -> ExitCode {
    started();
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(bin) = std::env::var_os("FIELDBRIDGE_BIN") else {
        eprintln!(
            "set FIELDBRIDGE_BIN to a release build of fieldbridge: in the repository root,\n  \
             cargo build --locked --release -p fieldbridge\nthen\n  \
             FIELDBRIDGE_BIN=$PWD/target/release/fieldbridge cargo bench --locked --bench e2e\n\
             (in tests/; with CARGO_TARGET_DIR set, the binary is under it)"
        );
        return ExitCode::from(2);
    };
    let bin = std::path::PathBuf::from(bin);
    if args.needs_users() {
        let need = args.users as u64 + 256;
        if procfs::open_files_limit().is_some_and(|n| n < need) {
            eprintln!(
                "{} users need at least {need} open files (ulimit -n {need})",
                args.users
            );
            return ExitCode::from(2);
        }
    }
    let version = fieldbridge_e2e::output_within(
        std::process::Command::new(&bin).arg("--version"),
        Duration::from_secs(10),
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    .unwrap_or_else(|e| format!("(--version failed: {e})"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut header = format!(
        "fieldbridge end-to-end bench\n  \
         binary:    {} ({version})\n  \
         started:   {}, load average {} ({cores} cores)\n  \
         windows:   {:?} after a {:?} warm-up; devices read every {:?}; \
         the baseline keeps {} notifications in flight\n",
        bin.display(),
        date(),
        procfs::load_average(),
        args.duration,
        args.warmup,
        args.poll,
        args.in_flight,
    );
    eprint!("{header}");

    let mut report = Report::default();
    for &kind in &args.servers {
        run_server(kind, &args, &mut report).await;
    }
    header.push_str(&format!(
        "  finished:  {}, load average {}\n",
        date(),
        procfs::load_average()
    ));
    println!("\n{header}");
    print_report(&report, &args);
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_server(kind: ServerKind, args: &Args, report: &mut Report) {
    let name = kind.name();
    progress(&format!("{name}: starting"));
    let options = Options {
        in_band_registration: true,
        info_log: true,
        ..Options::default()
    };
    let mut server = match Server::start_with(kind, &options).await {
        Ok(s) => s,
        Err(e) => {
            report.failures.push(format!("{name}: cannot start: {e}"));
            return;
        }
    };
    if let Err(e) = raw::register(server.c2s_port(), throughput::USER, common::PASSWORD).await {
        report
            .failures
            .push(format!("{name}: cannot register the subscriber: {e}"));
        return;
    }
    for &scenario in &args.scenarios {
        let Scenario::Throughput { devices, points } = scenario else {
            continue;
        };
        progress(&format!(
            "{name} {scenario}: fieldbridge, then the baseline"
        ));
        let deadline = 2 * (args.warmup + args.duration) + Duration::from_secs(300);
        match tokio::time::timeout(deadline, throughput::run(&server, args, devices, points)).await
        {
            Ok(Ok(o)) => {
                progress(&format!(
                    "  {:.0} readings/s delivered, baseline {:.0}",
                    o.fieldbridge.readings_per_sec(),
                    o.baseline.readings_per_sec()
                ));
                report.throughput.push((kind, scenario, o));
            }
            Ok(Err(e)) => report.failures.push(format!("{name} {scenario}: {e:#}")),
            Err(_) => report
                .failures
                .push(format!("{name} {scenario}: not done within {deadline:?}")),
        }
    }
    if args.needs_users()
        && tokio::time::timeout(users::DEADLINE, many_users(&server, args, report))
            .await
            .is_err()
    {
        report.failures.push(format!(
            "{name}: the many-user scenarios did not end within {:?}",
            users::DEADLINE
        ));
    }
    progress(&format!("{name}: stopping"));
    if let Err(e) = server.stop().await {
        report.failures.push(format!("{name}: stopping: {e}"));
    }
}

async fn many_users(server: &Server, args: &Args, report: &mut Report) {
    let kind = server.kind();
    let name = kind.name();
    let mut step = async || -> anyhow::Result<()> {
        progress(&format!("{name}: registering {} users", args.users));
        let t = users::register(server, args.users).await?;
        report.setup.push((kind, "users registered (XEP-0077)", t));
        progress(&format!("{name}: logging {} users in", args.users));
        let (mut clients, t) = users::login(server, args.users).await?;
        report.setup.push((kind, "users logged in (c2s)", t));
        if args.scenarios.contains(&Scenario::Subscribe) {
            progress(&format!("{name} subscribe"));
            let (c, o) = users::subscribe(server, args, clients).await?;
            progress(&format!(
                "  {:.0} subscribes/s with {} existing",
                o.more.rate(),
                o.existing
            ));
            report.subscribe.push((kind, o));
            clients = c;
        }
        if args.scenarios.contains(&Scenario::Scale) {
            progress(&format!("{name} scale"));
            let o = users::scale(server, args, clients).await?;
            progress(&format!(
                "  {:.0} readings/s delivered to {} subscribers",
                o.window.readings_per_sec(),
                o.users
            ));
            report.scale.push((kind, o));
        }
        Ok(())
    };
    if let Err(e) = step().await {
        // What the server said about it (it logs why it closed a session).
        let log = server.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n    ");
        report.failures.push(format!(
            "{name} many users: {e:#}\n  {name}'s log, last lines:\n    {tail}"
        ));
    }
}

fn opt(x: Option<f64>, decimals: usize) -> String {
    x.filter(|v| v.is_finite())
        .map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

fn mib(kib: u64) -> String {
    format!("{:.0}", kib as f64 / 1024.0)
}

fn print_report(r: &Report, args: &Args) {
    if !r.throughput.is_empty() {
        println!(
            "Throughput: every device's node to one c2s subscriber; then the baseline (a bare \
             component flooding copies of one of these notifications) to the same subscriber"
        );
        println!(
            "{:<9} {:<9} {:>10} | {:>10} {:>9} {:>7} {:>8} {:>8} {:>8} | {:>9} {:>10} | {:>7}",
            "server",
            "scenario",
            "offered",
            "readings/s",
            "notif/s",
            "read/",
            "gw CPU",
            "gw CPU/",
            "c2s B/",
            "baseline",
            "baseline",
            "fb/base"
        );
        println!(
            "{:<9} {:<9} {:>10} | {:>10} {:>9} {:>7} {:>8} {:>8} {:>8} | {:>9} {:>10} | {:>7}",
            "",
            "",
            "readings/s",
            "delivered",
            "",
            "notif",
            "µs/read",
            "srv CPU",
            "reading",
            "notif/s",
            "readings/s",
            "readings"
        );
        for (kind, scenario, o) in &r.throughput {
            let (f, b) = (&o.fieldbridge, &o.baseline);
            println!(
                "{:<9} {:<9} {:>10.0} | {:>10.0} {:>9.0} {:>7} {:>8} {:>8} {:>8} | {:>9.0} {:>10.0} | {:>7}",
                kind.name(),
                scenario.to_string(),
                o.offered,
                f.readings_per_sec(),
                f.notifications_per_sec(),
                opt(f.readings_per_notification(), 2),
                opt(f.gateway_us_per_reading(), 1),
                opt(f.gateway_over_server(), 2),
                opt(f.bytes_per_reading(), 0),
                b.notifications_per_sec(),
                b.readings_per_sec(),
                opt(
                    (b.readings_per_sec() > 0.0)
                        .then(|| f.readings_per_sec() / b.readings_per_sec()),
                    3
                ),
            );
        }
        println!();
        println!(
            "{:<9} {:<9} | {:>7} {:>7} {:>7} {:>6} {:>7} | {:>7} {:>7} {:>6} | {:>6} {:>8} {:>8} {:>8}",
            "server",
            "scenario",
            "gw %CPU",
            "srv",
            "bench",
            "gw RSS",
            "missing",
            "base",
            "base",
            "base",
            "notif",
            "fb c2s B",
            "base c2s",
            "read/"
        );
        println!(
            "{:<9} {:<9} | {:>7} {:>7} {:>7} {:>6} {:>7} | {:>7} {:>7} {:>6} | {:>6} {:>8} {:>8} {:>8}",
            "",
            "",
            "",
            "%CPU",
            "%CPU",
            "MiB",
            "%",
            "srv%CPU",
            "bench%",
            "B/read",
            "B sent",
            "/notif",
            "B/notif",
            "notif*"
        );
        for (kind, scenario, o) in &r.throughput {
            let (f, b) = (&o.fieldbridge, &o.baseline);
            let missing = (o.offered > 0.0)
                .then(|| 100.0 * (1.0 - f.readings_per_sec() / o.offered).max(0.0));
            println!(
                "{:<9} {:<9} | {:>7} {:>7} {:>7.0} {:>6} {:>7} | {:>7} {:>7.0} {:>6} | {:>6} {:>8} {:>8} {:>8}",
                kind.name(),
                scenario.to_string(),
                opt(f.gateway_percent(), 0),
                opt(f.server_percent(), 0),
                f.bench_percent(),
                f.gateway_memory.map_or("-".into(), |m| mib(m.rss_kib)),
                opt(missing, 1),
                opt(b.server_percent(), 0),
                b.bench_percent(),
                opt(b.bytes_per_reading(), 0),
                o.template.bytes,
                opt(f.bytes_per_notification(), 0),
                opt(b.bytes_per_notification(), 0),
                o.template.fields,
            );
        }
        println!(
            "  offered: readings/s the devices produce (devices x points / poll); missing: \
             offered readings not delivered in the window.\n  \
             gw CPU/srv CPU: the gateway's CPU time over the server's (prosody's Lua process, \
             ejabberd's beam.smp), from /proc utime+stime.\n  \
             B sent: the copied notification as the baseline sends it; read/notif*: fields in \
             it; c2s bytes include everything the subscriber read."
        );
        for (kind, scenario, o) in &r.throughput {
            for w in [&o.fieldbridge, &o.baseline] {
                if let Some(why) = &w.cut_short {
                    println!("  {} {scenario}: window cut short: {why}", kind.name());
                }
            }
        }
        println!();
    }
    if !r.subscribe.is_empty() {
        println!(
            "Subscribe: {} users at once, each pipelining its pubsub subscribe IQs from its own \
             c2s connection (quiet devices, read once an hour), timed until every result arrived",
            args.users
        );
        println!(
            "{:<9} {:>9} {:>10} {:>12} {:>11} {:>10} | {:>14} {:>10} | {:>7}",
            "server",
            "existing",
            "subscribes",
            "subscribes/s",
            "gw µs/sub",
            "srv µs/sub",
            "from none: /s",
            "gw µs/sub",
            "gw RSS"
        );
        for (kind, o) in &r.subscribe {
            let srv = |t: &users::Timed| t.server_cpu.map(|c| c * 1e6 / t.count as f64);
            println!(
                "{:<9} {:>9} {:>10} {:>12.0} {:>11} {:>10} | {:>14.0} {:>10} | {:>6}M",
                kind.name(),
                o.existing,
                o.more.count,
                o.more.rate(),
                opt(o.more.gateway_us_each(), 0),
                opt(srv(&o.more), 0),
                o.first.rate(),
                opt(o.first.gateway_us_each(), 0),
                o.memory.map_or("-".into(), |m| mib(m.rss_kib)),
            );
        }
        println!();
    }
    if !r.scale.is_empty() {
        println!(
            "Scale: {}x{} devices; {} c2s subscribers, each subscribed to 10 nodes and 10 \
             devices' presence, all reading",
            args.scale_devices, args.scale_points, args.users
        );
        println!(
            "{:<9} {:>6} {:>6} {:>10} | {:>10} {:>9} {:>6} {:>8} {:>8} {:>7} | {:>7} {:>8} {:>7}",
            "server",
            "users",
            "subs",
            "offered",
            "readings/s",
            "notif/s",
            "read/",
            "gw CPU",
            "gw CPU/",
            "c2s B/",
            "gw RSS",
            "gw peak",
            "gw %CPU"
        );
        println!(
            "{:<9} {:>6} {:>6} {:>10} | {:>10} {:>9} {:>6} {:>8} {:>8} {:>7} | {:>7} {:>8} {:>7}",
            "",
            "",
            "",
            "readings/s",
            "delivered",
            "",
            "notif",
            "µs/read",
            "srv CPU",
            "reading",
            "MiB",
            "RSS MiB",
            ""
        );
        for (kind, o) in &r.scale {
            let w = &o.window;
            println!(
                "{:<9} {:>6} {:>6} {:>10.0} | {:>10.0} {:>9.0} {:>6} {:>8} {:>8} {:>7} | {:>7} {:>8} {:>7}",
                kind.name(),
                o.users,
                o.subscriptions,
                o.offered,
                w.readings_per_sec(),
                w.notifications_per_sec(),
                opt(w.readings_per_notification(), 2),
                opt(w.gateway_us_per_reading(), 1),
                opt(w.gateway_over_server(), 2),
                opt(w.bytes_per_reading(), 0),
                w.gateway_memory.map_or("-".into(), |m| mib(m.rss_kib)),
                w.gateway_memory.map_or("-".into(), |m| mib(m.peak_kib)),
                opt(w.gateway_percent(), 0),
            );
            if let Some(why) = &w.cut_short {
                println!("  {}: window cut short: {why}", kind.name());
            }
            println!(
                "  {}: subscribing ({} pubsub + presence, on the quiet gateway): {:.1} s, {:.0}/s",
                kind.name(),
                o.setup.count,
                o.setup.secs,
                o.setup.rate()
            );
        }
        println!(
            "  offered: readings/s the devices produce times their subscribers; c2s bytes \
             include presence."
        );
        println!();
    }
    for (kind, what, t) in &r.setup {
        println!(
            "{}: {} {what} in {:.1} s ({:.0}/s)",
            kind.name(),
            t.count,
            t.secs,
            t.rate()
        );
    }
    if let Some((kind, scenario, o)) = r.throughput.first() {
        println!(
            "\nA notification of {} {scenario}, as the baseline sends it ({} bytes):\n  {}",
            kind.name(),
            o.template.bytes,
            o.template.text(0)
        );
    }
    if !r.failures.is_empty() {
        println!("\nFAILED:");
        for f in &r.failures {
            println!("  {f}");
        }
    }
}
