#![allow(clippy::unwrap_used)]

use std::time::{Duration, UNIX_EPOCH};

/// A commit of subscription changes only.
const NO_ITEMS: &[(String, Snapshot)] = &[];

use fieldbridge_core::{PointId, Quality, Reading, Unit, Value};

use super::*;

const NOW: u64 = 1_800_000_000_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(NOW)
}

fn no_legacy(node: &str, _: Vec<(u64, String)>) -> Vec<Snapshot> {
    panic!("no legacy table expected, got {node}")
}

fn open(dir: &Path) -> Store {
    Store::open(dir, &mut no_legacy).unwrap()
}

/// A snapshot whose one sample says which item it is.
fn snapshot(id: u64) -> Snapshot {
    Snapshot {
        id,
        seqnr: id % 1000,
        samples: vec![Sample {
            at: UNIX_EPOCH + Duration::from_micros(id) - Duration::from_millis(3),
            reading: Reading {
                point: PointId::new("temperature").unwrap(),
                value: Value::Float(id as f64 / 10.0),
                unit: Some(Unit("°C".into())),
                quality: Quality::Good,
            },
        }],
    }
}

fn batch(node: &str, ids: impl IntoIterator<Item = u64>) -> Vec<(String, Snapshot)> {
    ids.into_iter()
        .map(|id| (node.to_owned(), snapshot(id)))
        .collect()
}

fn ids(items: &[Snapshot]) -> Vec<u64> {
    items.iter().map(|s| s.id).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn default_limits(_: &str) -> Limits {
    Limits::default()
}

fn sub(kind: SubscriptionKind, node: &str, jid: &str) -> Change {
    Change::Subscribe {
        kind,
        node: node.into(),
        jid: jid.into(),
    }
}

fn unsub(kind: SubscriptionKind, node: &str, jid: &str) -> Change {
    Change::Unsubscribe {
        kind,
        node: node.into(),
        jid: jid.into(),
    }
}

#[test]
fn the_store_is_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();
}

#[test]
fn the_directory_and_the_database_are_readable_by_their_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("a/state");
    let s = open(&state);
    s.commit(&batch("boiler", [NOW]), &[], default_limits, now())
        .unwrap();
    drop(s);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    assert_eq!(mode(&state.join(FILE)), 0o600);
    // One an older version left 0644 is closed, and still opens.
    std::fs::set_permissions(state.join(FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = open(&state);
    assert_eq!(mode(&state.join(FILE)), 0o600);
    assert_eq!(s.last("boiler", 5).unwrap().len(), 1);
    assert_eq!(s.path(), state.join(FILE));
    // A directory the user made is theirs: not changed.
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o750)).unwrap();
    drop(open(&mine));
    assert_eq!(mode(&mine), 0o750);
}

#[test]
fn reads_the_last_items_after_an_id_and_by_id_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert_eq!(
        s.last("boiler", 5).unwrap(),
        vec![],
        "unknown node is empty"
    );
    assert_eq!(s.len("boiler").unwrap(), 0);
    s.commit(
        &batch("boiler", (1..=10).map(|i| NOW - 100 + i)),
        &[],
        default_limits,
        now(),
    )
    .unwrap();
    s.commit(&batch("other", [NOW]), &[], default_limits, now())
        .unwrap();
    assert_eq!(
        ids(&s.last("boiler", 3).unwrap()),
        [NOW - 92, NOW - 91, NOW - 90]
    );
    assert_eq!(ids(&s.last("boiler", 0).unwrap()), [0u64; 0]);
    assert_eq!(
        ids(&s.before("boiler", NOW - 95, 2).unwrap()),
        [NOW - 97, NOW - 96]
    );
    assert_eq!(
        ids(&s.after("boiler", NOW - 95, 100).unwrap()),
        (6..=10).map(|i| NOW - 100 + i).collect::<Vec<_>>()
    );
    assert_eq!(s.after("boiler", NOW - 95, 2).unwrap().len(), 2);
    assert_eq!(s.after("boiler", NOW - 95, 0).unwrap().len(), 0);
    assert_eq!(s.after("boiler", u64::MAX, 10).unwrap().len(), 0);
    assert_eq!(s.get("boiler", NOW - 97).unwrap(), Some(snapshot(NOW - 97)));
    assert_eq!(s.get("boiler", 7).unwrap(), None);
    assert_eq!(s.get("nowhere", 7).unwrap(), None);
    assert_eq!(s.len("other").unwrap(), 1);
    // What comes back is what went in, every field of it.
    assert_eq!(s.last("other", 1).unwrap(), vec![snapshot(NOW)]);
}

#[test]
fn trims_to_the_count_and_age_limits() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let limits = |node: &str| Limits {
        max_items: match node {
            "small" => 3,
            "none" => 0,
            _ => 1000,
        },
        max_age: Duration::from_secs(60),
    };
    s.commit(
        &batch("small", (0..10).map(|i| NOW - i)),
        &[],
        limits,
        now(),
    )
    .unwrap();
    assert_eq!(
        ids(&s.last("small", 100).unwrap()),
        [NOW - 2, NOW - 1, NOW],
        "the newest three"
    );
    s.commit(&batch("small", [NOW + 1]), &[], limits, now())
        .unwrap();
    assert_eq!(ids(&s.last("small", 100).unwrap()), [NOW - 1, NOW, NOW + 1]);

    let old = NOW - 61_000_000;
    s.commit(
        &batch("aged", [old, old + 1, NOW - 1, NOW]),
        &[],
        limits,
        now(),
    )
    .unwrap();
    assert_eq!(
        ids(&s.last("aged", 100).unwrap()),
        [NOW - 1, NOW],
        "older than a minute dropped"
    );

    s.commit(&batch("none", [NOW - 1, NOW]), &[], limits, now())
        .unwrap();
    assert_eq!(s.len("none").unwrap(), 0, "max_items 0 keeps nothing");

    // Only nodes that got items are trimmed.
    let tighter = |_: &str| Limits {
        max_items: 1,
        max_age: Duration::from_secs(60),
    };
    s.commit(&batch("other", [NOW]), &[], tighter, now())
        .unwrap();
    assert_eq!(s.len("small").unwrap(), 3);
}

#[test]
fn survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.commit(
            &batch("boiler", [NOW - 1, NOW]),
            &[sub(
                SubscriptionKind::Presence,
                "boiler",
                "alice@example.org",
            )],
            default_limits,
            now(),
        )
        .unwrap();
    }
    let s = open(dir.path());
    assert_eq!(s.len("boiler").unwrap(), 2);
    assert_eq!(s.subscriptions().unwrap().presence["boiler"].len(), 1);
}

#[test]
fn a_damaged_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE), b"not a database at all, just text").unwrap();
    let e = Store::open(dir.path(), &mut no_legacy).unwrap_err();
    assert_eq!(e.path(), dir.path().join(FILE));
    let e = e.to_string();
    assert!(e.starts_with("state database "), "{e}");
    assert!(e.contains(FILE), "{e}");
}

#[test]
fn subscription_changes_are_applied_in_order_with_the_items() {
    use SubscriptionKind::{Presence, Pubsub};
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert_eq!(s.subscriptions().unwrap(), Subscriptions::default());
    s.commit(
        NO_ITEMS,
        &[
            sub(Presence, "boiler", "alice@example.org"),
            sub(Presence, "boiler", "bob@example.org"),
            sub(Pubsub, "boiler", "alice@example.org/phone"),
            sub(Pubsub, "boiler", "alice@example.org/phone"),
            sub(Pubsub, "pump", "carol@example.net"),
            // Subscribed and gone again in the same batch: gone.
            sub(Presence, "pump", "mallory@example.com"),
            unsub(Presence, "pump", "mallory@example.com"),
            // Gone and back: there.
            unsub(Pubsub, "pump", "carol@example.net"),
            sub(Pubsub, "pump", "carol@example.net"),
            // Not subscribed: nothing to do.
            unsub(Presence, "boiler", "nobody@example.org"),
        ],
        default_limits,
        now(),
    )
    .unwrap();
    // The kinds are apart: a presence unsubscribe leaves the pubsub one.
    s.commit(
        &batch("boiler", [NOW]),
        &[
            unsub(Presence, "boiler", "bob@example.org"),
            unsub(Presence, "boiler", "alice@example.org/phone"),
        ],
        default_limits,
        now(),
    )
    .unwrap();
    let mut want = Subscriptions::default();
    want.presence
        .entry("boiler".into())
        .or_default()
        .insert("alice@example.org".into());
    want.pubsub
        .entry("boiler".into())
        .or_default()
        .insert("alice@example.org/phone".into());
    want.pubsub
        .entry("pump".into())
        .or_default()
        .insert("carol@example.net".into());
    assert_eq!(s.subscriptions().unwrap(), want);
    assert_eq!(s.len("boiler").unwrap(), 1);
    drop(s);
    assert_eq!(open(dir.path()).subscriptions().unwrap(), want);
}

#[test]
fn a_failed_commit_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // Two write transactions cannot be open at once; a commit that finds
    // one open waits, so instead make the commit itself fail: a node name
    // that is a table of another type.
    {
        let txn = s.db.begin_write().unwrap();
        txn.open_table(TableDefinition::<u64, u64>::new("items:broken"))
            .unwrap();
        txn.commit().unwrap();
    }
    let mut items = batch("boiler", [NOW]);
    items.extend(batch("broken", [NOW]));
    let e = s
        .commit(
            &items,
            &[sub(
                SubscriptionKind::Presence,
                "boiler",
                "alice@example.org",
            )],
            default_limits,
            now(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("items:broken"), "{e}");
    assert_eq!(s.len("boiler").unwrap(), 0);
    assert_eq!(s.subscriptions().unwrap(), Subscriptions::default());
}

#[test]
fn an_unreadable_record_is_skipped_not_a_failed_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.commit(
        &batch("boiler", (1..=6).map(|i| NOW + i)),
        &[],
        default_limits,
        now(),
    )
    .unwrap();
    {
        let txn = s.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(Records::new("items:boiler")).unwrap();
            t.insert(NOW + 3, &[0xff, 1, 2][..]).unwrap(); // an unknown format
            t.insert(NOW + 5, &[codec::FORMAT, 1][..]).unwrap(); // truncated
        }
        txn.commit().unwrap();
    }
    assert_eq!(
        ids(&s.last("boiler", 10).unwrap()),
        [NOW + 1, NOW + 2, NOW + 4, NOW + 6]
    );
    // Still n items when n readable ones exist.
    assert_eq!(
        ids(&s.last("boiler", 3).unwrap()),
        [NOW + 2, NOW + 4, NOW + 6]
    );
    assert_eq!(
        ids(&s.before("boiler", NOW + 6, 2).unwrap()),
        [NOW + 2, NOW + 4]
    );
    assert_eq!(
        ids(&s.after("boiler", NOW + 1, 2).unwrap()),
        [NOW + 2, NOW + 4]
    );
    assert_eq!(s.get("boiler", NOW + 3).unwrap(), None);
    assert_eq!(s.get("boiler", NOW + 4).unwrap(), Some(snapshot(NOW + 4)));
    assert_eq!(s.len("boiler").unwrap(), 6);
    assert!(
        s.warned.lock().unwrap().contains("boiler"),
        "logged once for the node"
    );
}

#[test]
fn a_database_of_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        let txn = s.db.begin_write().unwrap();
        txn.open_table(TableDefinition::<&str, u64>::new("fieldbridge:meta"))
            .unwrap()
            .insert("schema", 2)
            .unwrap();
        txn.commit().unwrap();
    }
    let e = Store::open(dir.path(), &mut no_legacy)
        .unwrap_err()
        .to_string();
    assert!(e.contains("newer fieldbridge (schema 2"), "{e}");
    assert!(e.contains(FILE), "{e}");
}

#[test]
fn nothing_to_commit_is_no_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // With a write transaction open elsewhere, a commit that had to write
    // would wait for ever; one with nothing to write returns.
    let txn = s.db.begin_write().unwrap();
    s.commit(NO_ITEMS, &[], default_limits, now()).unwrap();
    drop(txn);
}
