//! What the store costs: encoding and decoding a snapshot, committing a
//! batch of items, subscribing, and the bytes a full history takes.
//!
//! Run with `cargo bench -p fieldbridge-store --bench store`. The database
//! goes to a temporary directory under `$FIELDBRIDGE_BENCH_DIR` (default:
//! the system's temporary directory); put it on the disk you care about
//! (an SD card) to see that disk's sync cost: every commit syncs.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A commit of subscription changes only.
const NO_ITEMS: &[(String, Snapshot)] = &[];

use fieldbridge_core::process::cpu_time;
use fieldbridge_core::{PointId, Quality, Reading, Unit, Value};
use fieldbridge_store::{Change, Limits, Sample, Snapshot, Store, SubscriptionKind, codec, micros};

/// Point names as a user writes them: ~10 characters.
const POINTS: [&str; 10] = [
    "temperature",
    "setpoint",
    "pressure",
    "flow-rate",
    "pump",
    "valve-pos",
    "power",
    "energy",
    "humidity",
    "alarm",
];

/// A device's whole state: 10 points, floats with units, a counter, on/off,
/// read over the last poll (5 s).
fn snapshot(id: u64, seqnr: u64) -> Snapshot {
    let at = UNIX_EPOCH + Duration::from_micros(id);
    let samples = POINTS
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (value, unit) = match *p {
                "pump" | "alarm" => (Value::Bool(seqnr.is_multiple_of(2)), None),
                "energy" => (Value::Int(1_000_000 + seqnr as i64), Some("Wh")),
                "humidity" => (Value::Float(40.0 + (seqnr % 20) as f64 * 0.1), Some("%")),
                _ => (
                    Value::Float(20.0 + i as f64 + (seqnr % 100) as f64 * 0.01),
                    Some("°C"),
                ),
            };
            Sample {
                at: at - Duration::from_millis(37 * i as u64 + (seqnr % 5) * 1000),
                reading: Reading {
                    point: PointId::new(p).expect("valid id"),
                    value,
                    unit: unit.map(|u| Unit(u.into())),
                    quality: Quality::Good,
                },
            }
        })
        .collect();
    Snapshot { id, seqnr, samples }
}

fn open(dir: &Path) -> Store {
    Store::open(dir, &mut |_, _| Vec::new()).expect("open")
}

fn scratch() -> tempfile::TempDir {
    let base =
        std::env::var_os("FIELDBRIDGE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    tempfile::tempdir_in(base).expect("temporary directory")
}

fn file_size(store: &Store) -> u64 {
    std::fs::metadata(store.path()).expect("stat").len()
}

/// Wall and CPU time of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (wall, cpu) = (Instant::now(), cpu_time());
    let out = f();
    let cpu = match (cpu, cpu_time()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    (out, wall.elapsed(), cpu)
}

fn per(d: Duration, n: usize) -> String {
    let ns = d.as_nanos() as f64 / n as f64;
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn rate(d: Duration, n: usize) -> String {
    format!("{:.0}/s", n as f64 / d.as_secs_f64())
}

fn codec_bench() {
    const N: usize = 1_000_000;
    let s = snapshot(1_795_582_800_123_456, 12_345);
    let mut buf = Vec::with_capacity(512);
    codec::encode(&s, &mut buf);
    assert_eq!(codec::decode(s.id, &buf).expect("decodes"), s);
    println!("record of a 10-point snapshot: {} bytes", buf.len());

    let ((), enc, _) = timed(|| {
        for _ in 0..N {
            buf.clear();
            codec::encode(black_box(&s), &mut buf);
            black_box(&buf);
        }
    });
    let ((), dec, _) = timed(|| {
        for _ in 0..N {
            black_box(codec::decode(s.id, black_box(&buf)).expect("decodes"));
        }
    });
    println!(
        "encode: {} a snapshot ({}), decode: {} ({})",
        per(enc, N),
        rate(enc, N),
        per(dec, N),
        rate(dec, N)
    );
}

/// The bytes in the file against the bytes of data: redb's B-tree pages
/// are about half full when filled by appends, and the file keeps the pages
/// freed by trimming (and by copy-on-write) for reuse.
fn print_space(store: &Store, items: u64) {
    // A second handle on the same file is refused while the store has it:
    // read the numbers through a copy.
    let copy = tempfile::NamedTempFile::new().expect("temporary file");
    std::fs::copy(store.path(), copy.path()).expect("copy");
    let db = redb::Database::open(copy.path()).expect("open the copy");
    let txn = db.begin_write().expect("transaction");
    let stats = txn.stats().expect("stats");
    let pages = stats.leaf_pages() * stats.page_size() as u64;
    println!(
        "  an item: {} bytes of data in {} bytes of B-tree leaf pages; free pages in the file: {:.1} MB",
        stats.stored_bytes() / items,
        pages / items,
        file_size(store).saturating_sub(pages) as f64 / 1e6,
    );
}

fn commit_bench() {
    const NODES: usize = 10;
    const BATCH: usize = 1000;
    let dir = scratch();
    let store = open(dir.path());
    let limits = |_: &str| Limits::default();
    let start = micros(SystemTime::now());
    let mut next = 0u64;
    // `from`: the sequence number of the batch's first item on each node.
    let batch = |from: u64| -> Vec<(String, Snapshot)> {
        (0..BATCH)
            .map(|i| {
                let node = format!("device-{}", i % NODES);
                let seq = from + (i / NODES) as u64;
                (node, snapshot(start + seq * 1000, seq))
            })
            .collect()
    };

    // Until every node holds its 10,000 items, then on with trimming.
    let fill = 10_000 * NODES / BATCH;
    let mut timings = Vec::new();
    for _ in 0..fill + 20 {
        let items = batch(next);
        next += (BATCH / NODES) as u64;
        let now = UNIX_EPOCH + Duration::from_micros(start + next * 1000);
        let ((), wall, cpu) = timed(|| store.commit(&items, &[], limits, now).expect("commit"));
        timings.push((wall, cpu));
    }
    let report = |label: &str, t: &[(Duration, Duration)]| {
        let wall: Duration = t.iter().map(|t| t.0).sum();
        let cpu: Duration = t.iter().map(|t| t.1).sum();
        println!(
            "commit of {BATCH} items over {NODES} nodes, {label}: {} wall ({} CPU) a commit, {} items",
            per(wall, t.len()),
            per(cpu, t.len()),
            rate(wall, t.len() * BATCH),
        );
    };
    report("nodes filling", &timings[..fill]);
    report("nodes full (trimming)", &timings[fill..]);
    assert_eq!(store.len("device-0").expect("len"), 10_000);
    let size = file_size(&store);
    println!(
        "file with {NODES} full nodes ({} items): {:.1} MB, {} bytes an item",
        10_000 * NODES,
        size as f64 / 1e6,
        size / (10_000 * NODES) as u64
    );

    print_space(&store, 10_000 * NODES as u64);

    const READS: usize = 1000;
    let ((), wall, _) = timed(|| {
        for i in 0..READS {
            black_box(
                store
                    .last(&format!("device-{}", i % NODES), 1)
                    .expect("last"),
            );
        }
    });
    println!("last(node, 1): {}", per(wall, READS));
    let from = start + (next - 200) * 1000;
    let ((), wall, _) = timed(|| {
        for i in 0..READS / 10 {
            let got = store
                .after(&format!("device-{}", i % NODES), from, 100)
                .expect("after");
            assert_eq!(got.len(), 100);
            black_box(got);
        }
    });
    println!("after(node, id, 100): {}", per(wall, READS / 10));
}

/// One device on its own, its items committed a few at a time as the
/// gateway does, until its history is full and then as much again: what a
/// device costs on disk in the long run.
fn device_space_bench() {
    const PER_COMMIT: usize = 10;
    let dir = scratch();
    let store = open(dir.path());
    let start = micros(SystemTime::now());
    let max = Limits::default().max_items;
    let mut seq = 0u64;
    while seq < 2 * max {
        let items: Vec<(String, Snapshot)> = (0..PER_COMMIT as u64)
            .map(|k| {
                (
                    "boiler".into(),
                    snapshot(start + (seq + k) * 5_000_000, seq + k),
                )
            })
            .collect();
        seq += PER_COMMIT as u64;
        let now = UNIX_EPOCH + Duration::from_micros(start + seq * 5_000_000);
        store
            .commit(&items, &[], |_| Limits::default(), now)
            .expect("commit");
    }
    assert_eq!(store.len("boiler").expect("len"), max);
    let size = file_size(&store);
    println!(
        "one device, full history ({max} items, {PER_COMMIT} a commit): file {:.1} MB, {} bytes an item",
        size as f64 / 1e6,
        size / max
    );
    print_space(&store, max);
}

fn subscription_bench() {
    const EXISTING: usize = 10_000;
    const ONE_BY_ONE: usize = 300;
    let dir = scratch();
    let store = open(dir.path());
    let change = |i: usize| Change::Subscribe {
        kind: if i.is_multiple_of(2) {
            SubscriptionKind::Presence
        } else {
            SubscriptionKind::Pubsub
        },
        node: format!("device-{}", i % 100),
        jid: format!("user{i}@example.org/phone"),
    };
    let existing: Vec<Change> = (0..EXISTING).map(change).collect();
    let now = SystemTime::now();
    let ((), wall, _) = timed(|| {
        store
            .commit(NO_ITEMS, &existing, |_| Limits::default(), now)
            .expect("commit")
    });
    println!("{EXISTING} subscriptions in one commit: {}", per(wall, 1));

    let ((), wall, cpu) = timed(|| {
        for i in EXISTING..EXISTING + ONE_BY_ONE {
            store
                .commit(NO_ITEMS, &[change(i)], |_| Limits::default(), now)
                .expect("commit");
        }
    });
    println!(
        "subscribe, one commit each, with {EXISTING} existing: {} wall ({} CPU) a commit, {}",
        per(wall, ONE_BY_ONE),
        per(cpu, ONE_BY_ONE),
        rate(wall, ONE_BY_ONE)
    );
    let (subs, wall, _) = timed(|| store.subscriptions().expect("subscriptions"));
    assert_eq!(
        subs.presence
            .values()
            .chain(subs.pubsub.values())
            .map(|s| s.len())
            .sum::<usize>(),
        EXISTING + ONE_BY_ONE
    );
    println!(
        "subscriptions() with {}: {}",
        EXISTING + ONE_BY_ONE,
        per(wall, 1)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: run
    // for real in the first case only, as a quick smoke test otherwise.
    if !std::env::args().any(|a| a == "--bench") {
        let dir = scratch();
        let store = open(dir.path());
        let s = snapshot(micros(SystemTime::now()), 1);
        store
            .commit(
                &[("device-0".to_owned(), s.clone())],
                &[],
                |_| Limits::default(),
                SystemTime::now(),
            )
            .expect("commit");
        assert_eq!(store.last("device-0", 1).expect("last"), vec![s]);
        return;
    }
    println!(
        "database in {}",
        scratch()
            .path()
            .parent()
            .map_or_else(String::new, |p| p.display().to_string())
    );
    codec_bench();
    commit_bench();
    device_space_bench();
    subscription_bench();
}
