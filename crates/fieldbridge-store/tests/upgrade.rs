//! Upgrading a state directory that the previous version (1d394b4) really
//! wrote: `tests/fixtures/v0-state` (see its README for how it was made).
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use fieldbridge_core::{PointId, Quality, Reading, Value};
use fieldbridge_store::{
    Change, FILE, Limits, Sample, Snapshot, Store, StoreError, SubscriptionKind, Subscriptions,
};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0-state")
}

/// A copy of the fixture directory, as git checked it out (0644 files).
fn copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["history.redb", "subscriptions.json"] {
        std::fs::copy(fixture().join(name), dir.path().join(name)).unwrap();
    }
    dir
}

/// `items.tsv`: node → [(id, payload)], in the order written.
fn expected_items() -> BTreeMap<String, Vec<(u64, String)>> {
    let text = std::fs::read_to_string(fixture().join("items.tsv")).unwrap();
    let mut items: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (node, id, payload) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        items
            .entry(node.to_owned())
            .or_default()
            .push((id.parse().unwrap(), payload.to_owned()));
    }
    items
}

/// Stands in for the XMPP side's conversion (this crate reads no XML): the
/// payload is kept whole as a text sample, so that the test can see that
/// every item came through unchanged; the sequence number is taken from
/// the text.
fn fake(id: u64, payload: &str) -> Snapshot {
    let seqnr = payload
        .split("seqnr='")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    Snapshot {
        id,
        seqnr,
        samples: vec![Sample {
            at: UNIX_EPOCH + Duration::from_micros(id),
            reading: Reading {
                point: PointId::new("payload").unwrap(),
                value: Value::Text(payload.to_owned()),
                unit: None,
                quality: Quality::Good,
            },
        }],
    }
}

/// A `legacy` conversion that records what it was given.
struct Legacy {
    calls: Vec<(String, Vec<(u64, String)>)>,
}

impl Legacy {
    fn new() -> Self {
        Self { calls: Vec::new() }
    }

    fn open(&mut self, dir: &Path) -> Result<Store, StoreError> {
        Store::open(dir, &mut |node, items| {
            self.calls.push((node.to_owned(), items.clone()));
            items.iter().map(|(id, p)| fake(*id, p)).collect()
        })
    }
}

fn expected_subscriptions() -> Subscriptions {
    let mut s = Subscriptions::default();
    for (device, jid) in [
        ("boiler", "alice@example.org"),
        ("boiler", "bob@example.org"),
        ("kitchen-plug", "alice@example.org"),
    ] {
        s.presence
            .entry(device.into())
            .or_default()
            .insert(jid.into());
    }
    for (node, jid) in [
        ("boiler", "alice@example.org/phone"),
        ("boiler", "carol@example.net"),
        ("kitchen-plug", "bob@example.org/laptop"),
    ] {
        s.pubsub.entry(node.into()).or_default().insert(jid.into());
    }
    s
}

/// Every node's items as they should be after the upgrade.
fn check_items(store: &Store) {
    for (node, items) in expected_items() {
        let want: Vec<Snapshot> = items.iter().map(|(id, p)| fake(*id, p)).collect();
        assert_eq!(store.len(&node).unwrap(), want.len() as u64, "{node}");
        assert_eq!(store.last(&node, 100).unwrap(), want, "{node}");
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_previous_versions_state_is_upgraded_once() {
    let dir = copy();
    let json = std::fs::read(dir.path().join("subscriptions.json")).unwrap();
    let mut legacy = Legacy::new();
    let store = legacy.open(dir.path()).unwrap();

    // Each node's old items were handed over once, oldest first, as stored.
    let expected = expected_items();
    let given: BTreeMap<String, Vec<(u64, String)>> = legacy.calls.iter().cloned().collect();
    assert_eq!(legacy.calls.len(), 2, "one call per node");
    assert_eq!(given, expected);
    assert_eq!(expected["boiler"].len(), 5);
    assert_eq!(expected["kitchen-plug"].len(), 3);

    check_items(&store);
    assert_eq!(store.subscriptions().unwrap(), expected_subscriptions());

    // The files: history.redb became state.redb (private); the json is
    // kept, renamed, byte for byte.
    assert_eq!(store.path(), dir.path().join(FILE));
    assert!(!dir.path().join("history.redb").exists());
    assert_eq!(mode(&dir.path().join(FILE)), 0o600);
    assert!(!dir.path().join("subscriptions.json").exists());
    assert_eq!(
        std::fs::read(dir.path().join("subscriptions.json.imported")).unwrap(),
        json
    );

    // The upgraded store works as a new one.
    let next = expected["boiler"].last().unwrap().0 + 1;
    let now = UNIX_EPOCH + Duration::from_micros(next);
    store
        .commit(
            &[("boiler".to_owned(), fake(next, "seqnr='6'"))],
            &[Change::Unsubscribe {
                kind: SubscriptionKind::Presence,
                node: "boiler".into(),
                jid: "bob@example.org".into(),
            }],
            |_| Limits::default(),
            now,
        )
        .unwrap();
    assert_eq!(store.len("boiler").unwrap(), 6);
    drop(store);

    // Opening again is a no-op: nothing converted, nothing imported again
    // (bob stays unsubscribed), nothing lost.
    let mut again = Legacy::new();
    let store = again.open(dir.path()).unwrap();
    assert!(again.calls.is_empty());
    assert_eq!(store.len("boiler").unwrap(), 6);
    assert_eq!(store.len("kitchen-plug").unwrap(), 3);
    let mut want = expected_subscriptions();
    want.presence
        .get_mut("boiler")
        .unwrap()
        .remove("bob@example.org");
    assert_eq!(store.subscriptions().unwrap(), want);
}

#[test]
fn a_crash_during_the_upgrade_leaves_the_old_state() {
    let dir = copy();
    // The conversion of the second node fails hard, after the first one's
    // items were written in the transaction.
    let result = std::panic::catch_unwind(|| {
        let mut n = 0;
        Store::open(dir.path(), &mut |_, items| {
            n += 1;
            assert!(n < 2, "simulated crash");
            items.iter().map(|(id, p)| fake(*id, p)).collect()
        })
    });
    assert!(result.is_err());
    assert!(
        dir.path().join("subscriptions.json").exists(),
        "not imported"
    );

    // Nothing of it was committed: the next start upgrades everything.
    let mut legacy = Legacy::new();
    let store = legacy.open(dir.path()).unwrap();
    assert_eq!(legacy.calls.len(), 2);
    check_items(&store);
    assert_eq!(store.subscriptions().unwrap(), expected_subscriptions());
}

#[test]
fn a_damaged_subscriptions_file_stops_the_upgrade_and_is_named() {
    let dir = copy();
    let json = dir.path().join("subscriptions.json");
    std::fs::write(&json, b"{\"presence\": {\"boiler\": [").unwrap();
    let mut legacy = Legacy::new();
    let e = legacy.open(dir.path()).unwrap_err();
    assert_eq!(e.path(), json);
    let msg = e.to_string();
    assert!(msg.contains("subscriptions.json is damaged"), "{msg}");
    assert!(
        legacy.calls.is_empty(),
        "nothing converted before the file was read"
    );

    // Repaired (here: both keys are optional), the upgrade goes through.
    std::fs::write(&json, b"{\"pubsub\": {\"boiler\": [\"dave@example.org\"]}}").unwrap();
    let store = legacy.open(dir.path()).unwrap();
    check_items(&store);
    let subs = store.subscriptions().unwrap();
    assert!(subs.presence.is_empty());
    assert_eq!(subs.pubsub["boiler"].len(), 1);
}

#[test]
fn only_the_history_or_only_the_subscriptions_upgrade_alone() {
    let dir = copy();
    std::fs::remove_file(dir.path().join("subscriptions.json")).unwrap();
    let store = Legacy::new().open(dir.path()).unwrap();
    check_items(&store);
    assert_eq!(store.subscriptions().unwrap(), Subscriptions::default());
    drop(store);

    let dir = copy();
    std::fs::remove_file(dir.path().join("history.redb")).unwrap();
    let mut legacy = Legacy::new();
    let store = legacy.open(dir.path()).unwrap();
    assert!(legacy.calls.is_empty());
    assert_eq!(store.subscriptions().unwrap(), expected_subscriptions());
    assert!(dir.path().join("subscriptions.json.imported").exists());
}

#[test]
fn an_existing_state_database_wins_over_an_old_history_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut legacy = Legacy::new();
    drop(legacy.open(dir.path()).unwrap());
    std::fs::copy(
        fixture().join("history.redb"),
        dir.path().join("history.redb"),
    )
    .unwrap();
    let store = legacy.open(dir.path()).unwrap();
    assert!(legacy.calls.is_empty());
    assert_eq!(store.len("boiler").unwrap(), 0);
    assert!(dir.path().join("history.redb").exists(), "left alone");
}
