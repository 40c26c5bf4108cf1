//! Everything fieldbridge keeps beyond a restart, typed, in one embedded
//! [redb](https://docs.rs/redb) database: `<state dir>/state.redb`.
//!
//! The store owns two things:
//!
//! - the **item history** of every pubsub node: each item is a
//!   [`Snapshot`], the device's whole state when it was published (its
//!   [`Sample`]s, not XML: stanzas are built when sent);
//! - the **subscriptions**: who subscribed to which device's presence and
//!   to which pubsub node.
//!
//! ## How data flows
//!
//! At start the gateway opens the store ([`Store::open`], which also
//! upgrades what the previous version left), reads the subscriptions once
//! ([`Store::subscriptions`]) and resumes each node from its last item
//! ([`Store::last`]). While running, it collects published items and
//! subscription changes in memory and hands them, in batches, to
//! [`Store::commit`] on a blocking task, never on the event loop: one
//! transaction, one disk sync, for a whole batch of items *and* the
//! subscription changes made meanwhile, so they cannot disagree after a
//! crash. Subscribers that missed items, and requests for older ones, are
//! range reads ([`Store::after`], [`Store::before`], [`Store::get`]).
//!
//! ## Tables
//!
//! - `items:<node>`: item id (`u64`) → record (bytes, see [`codec`]). Item
//!   ids are microseconds since the epoch, strictly increasing per node, so
//!   table order is publication order.
//! - `fieldbridge:subscriptions`: `(kind, node, jid) → ()`, one key per
//!   subscription.
//! - `fieldbridge:meta`: `"schema" → u64`, the layout version of the file.
//!
//! Every name holds a `:`, which a node id (`[a-z0-9._-]`) never does, so
//! none can collide with the previous version's tables, which were named by
//! the bare node id; [`Store::open`] moves those into `items:<node>`.
//!
//! ## Durability
//!
//! Every commit is durable when it returns (redb's default: it syncs the
//! file). A sync costs ~0.1 ms on a fast disk and milliseconds on an SD
//! card, which is why the gateway batches, off the event loop: one commit
//! for whatever accumulated meanwhile, items and subscription changes.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition,
};

pub mod codec;
mod error;
mod subscriptions;
mod upgrade;

pub use error::StoreError;
pub use fieldbridge_core::Sample;
pub use subscriptions::{Change, SubscriptionKind, Subscriptions};
pub use upgrade::{IMPORTED_SUFFIX, LEGACY_FILE, LEGACY_SUBSCRIPTIONS};

/// The database file in the state directory.
pub const FILE: &str = "state.redb";

/// Memory redb may use to cache pages (its default is 1 GiB, which a
/// gateway on a Pi fills with its history). Reads are of the newest items
/// and the kernel keeps the file's recent pages anyway.
const CACHE: usize = 4 * 1024 * 1024;

/// One published item: the device's whole state when it was published.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The item id: microseconds since the Unix epoch, strictly increasing
    /// per node (the XMPP side nudges equal times apart).
    pub id: u64,
    /// The XEP-0323 sequence number the item was published with.
    pub seqnr: u64,
    /// Every point of the device, each with the time it was read at.
    pub samples: Vec<Sample>,
}

/// How much history a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At most this many items; the oldest go first.
    pub max_items: u64,
    /// Items older than this are dropped.
    pub max_age: Duration,
}

impl Default for Limits {
    /// 10,000 items and 7 days.
    ///
    /// An item is a device's whole state, published when something changed
    /// (at most once a poll) and at least every 10 minutes. A device polled
    /// every 5 s whose values keep moving publishes 17,280 items a day, so
    /// 10,000 items are its last ~14 hours; a quiet one (heartbeats only,
    /// 1,008 a week) keeps its full week, and so does one that changes
    /// about once a minute. Either way a subscriber can
    /// catch up after a long outage.
    ///
    /// Cost on disk, measured (`cargo bench -p fieldbridge-store`): a
    /// 10-point snapshot (point names of ~10 characters, units, mostly
    /// floats) is a ~240-byte record (see [`codec`]). In the file an item
    /// takes ~630-670 bytes: redb's B-tree leaf pages are about half full
    /// when filled by appends (~455 bytes an item), and the file keeps the
    /// pages that trimming frees for reuse. A device with a full history is
    /// therefore ~6.5 MB: 10 devices ~65 MB, 100 devices ~0.65 GB of SD
    /// card. Lower `devices.<id>.history.max_items` for a card that is small.
    fn default() -> Self {
        Self {
            max_items: 10_000,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

type Records<'a> = TableDefinition<'a, u64, &'static [u8]>;

/// The table of a node's items.
fn items_table(node: &str) -> String {
    format!("items:{node}")
}

/// The state of every node and subscriber: see the crate documentation.
///
/// `Send + Sync`: share it in an `Arc`; reads run in parallel, commits one
/// at a time (redb serializes write transactions).
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
    /// Nodes with an unreadable record already logged: one warning per
    /// node, not one per read of a damaged range.
    warned: Mutex<HashSet<String>>,
}

impl Store {
    /// Opens (or creates) the state in `dir`, upgrading what an older
    /// version left there (see *Upgrade* below).
    ///
    /// `dir` is created readable by the gateway's user only (0700) if it
    /// does not exist; the file is 0600 (it holds every reading and every
    /// subscriber), and one left readable by others is made so.
    ///
    /// `legacy` turns one node's old XML items `(id, payload)`, oldest
    /// first, into snapshots: this crate does not read XML. What it returns
    /// is stored as it is (ids included), untrimmed: the node's next commit
    /// trims it to its limits.
    ///
    /// # Upgrade
    ///
    /// - If `state.redb` does not exist but the previous version's
    ///   `history.redb` does, it is renamed to `state.redb`.
    /// - Every table of the previous version (`item id → XML`, named by the
    ///   node id) is read, converted by `legacy`, written to
    ///   `items:<node>` and deleted.
    /// - The previous version's `subscriptions.json`, if there is one, is
    ///   imported.
    ///
    /// All of it in one write transaction: a crash leaves the old state or
    /// the new one. After the commit `subscriptions.json` is renamed to
    /// `subscriptions.json.imported`, kept as a backup (the store no longer
    /// reads it, and nothing deletes it); should the process die between
    /// the commit and the rename, the next open imports it again, which
    /// changes nothing, as nothing was committed in between. Opening an
    /// upgraded store again changes nothing. A damaged `subscriptions.json` is an error naming
    /// it, and nothing is upgraded until it is repaired or moved away.
    #[expect(
        clippy::type_complexity,
        reason = "the agreed signature; a named alias would hide what `legacy` is given"
    )]
    pub fn open(
        dir: &Path,
        legacy: &mut dyn FnMut(&str, Vec<(u64, String)>) -> Vec<Snapshot>,
    ) -> Result<Store, StoreError> {
        fieldbridge_core::files::create_private_dir(dir)
            .map_err(StoreError::io("create the state directory", dir))?;
        let path = dir.join(FILE);
        upgrade::adopt_legacy_file(dir, &path)?;
        let fail = |e: std::io::Error| StoreError::db(&path, e);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(fail)?;
        let mode = file.metadata().map_err(fail)?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7700))
                .map_err(fail)?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE)
            .create_file(file)
            .map_err(|e| StoreError::db(&path, e))?;
        let store = Store {
            db,
            path,
            warned: Mutex::new(HashSet::new()),
        };
        upgrade::run(&store, dir, legacy)?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::db(&self.path, e)
    }

    /// Every subscription (read once, at start).
    pub fn subscriptions(&self) -> Result<Subscriptions, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = match txn.open_table(subscriptions::TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Subscriptions::default()),
            Err(e) => return Err(self.error(e)),
        };
        let mut subs = Subscriptions::default();
        let mut unknown = 0u64;
        for entry in table.iter().map_err(|e| self.error(e))? {
            let (key, ()) = entry
                .map_err(|e| self.error(e))
                .map(|(k, v)| (k, v.value()))?;
            let (code, node, jid) = key.value();
            match SubscriptionKind::from_code(code) {
                Some(kind) => {
                    subs.of_kind(kind)
                        .entry(node.to_owned())
                        .or_default()
                        .insert(jid.to_owned());
                }
                None => unknown += 1,
            }
        }
        if unknown > 0 {
            tracing::warn!(
                path = %self.path.display(),
                count = unknown,
                "subscriptions of a kind this version does not know (a newer version wrote them); ignored"
            );
        }
        Ok(subs)
    }

    /// Stores `items` (node, snapshot) and applies `changes` (in order) in
    /// ONE transaction, then trims every node that got items to
    /// `limits(node)` as of `now`, in the same transaction.
    ///
    /// Nothing to do is no transaction at all.
    pub fn commit<N: AsRef<str>, S: std::borrow::Borrow<Snapshot>>(
        &self,
        items: &[(N, S)],
        changes: &[Change],
        limits: impl Fn(&str) -> Limits,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        if items.is_empty() && changes.is_empty() {
            return Ok(());
        }
        // Per node, in the order given: one table open per node, not per item.
        let mut order: Vec<(&str, Vec<&Snapshot>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (node, snapshot) in items {
            let node = node.as_ref();
            let i = *index.entry(node).or_insert_with(|| {
                order.push((node, Vec::new()));
                order.len() - 1
            });
            order[i].1.push(snapshot.borrow());
        }
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let mut buf = Vec::with_capacity(512);
        for (node, snapshots) in order {
            let name = items_table(node);
            let mut t = txn
                .open_table(Records::new(&name))
                .map_err(|e| self.error(e))?;
            for s in snapshots {
                buf.clear();
                codec::encode(s, &mut buf);
                t.insert(s.id, buf.as_slice()).map_err(|e| self.error(e))?;
            }
            trim(&mut t, limits(node), now).map_err(|e| self.error(e))?;
        }
        if !changes.is_empty() {
            let mut t = txn
                .open_table(subscriptions::TABLE)
                .map_err(|e| self.error(e))?;
            for change in changes {
                match change {
                    Change::Subscribe { kind, node, jid } => {
                        t.insert((kind.code(), node.as_str(), jid.as_str()), ())
                            .map_err(|e| self.error(e))?;
                    }
                    Change::Unsubscribe { kind, node, jid } => {
                        t.remove((kind.code(), node.as_str(), jid.as_str()))
                            .map_err(|e| self.error(e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }

    fn read<T>(
        &self,
        node: &str,
        f: impl FnOnce(&ReadOnlyTable<u64, &'static [u8]>) -> Result<T, redb::StorageError>,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let name = items_table(node);
        match txn.open_table(Records::new(&name)) {
            Ok(t) => f(&t).map(Some).map_err(|e| self.error(e)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// The record of item `id` of `node`, decoded; `None` if it cannot be
    /// (logged once per node, so that one damaged record neither fails a
    /// whole range read nor floods the log).
    fn decoded(&self, node: &str, id: u64, bytes: &[u8]) -> Option<Snapshot> {
        match codec::decode(id, bytes) {
            Ok(s) => Some(s),
            Err(error) => {
                let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
                if warned.insert(node.to_owned()) {
                    tracing::warn!(
                        path = %self.path.display(),
                        node,
                        item = id,
                        %error,
                        "unreadable item in the history, skipped (further ones of this node are skipped silently)"
                    );
                }
                None
            }
        }
    }

    /// The newest `n` items of `node`, oldest first.
    pub fn last(&self, node: &str, n: usize) -> Result<Vec<Snapshot>, StoreError> {
        self.before(node, u64::MAX, n)
    }

    /// The newest `n` items of `node` published before `id`, oldest first.
    pub fn before(&self, node: &str, id: u64, n: usize) -> Result<Vec<Snapshot>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let items = self.read(node, |t| {
            let mut out = Vec::with_capacity(n.min(1024));
            for entry in t.range(..id)?.rev() {
                let (k, v) = entry?;
                if let Some(s) = self.decoded(node, k.value(), v.value()) {
                    out.push(s);
                    if out.len() == n {
                        break;
                    }
                }
            }
            out.reverse();
            Ok(out)
        })?;
        Ok(items.unwrap_or_default())
    }

    /// The items of `node` published after `id`, oldest first, at most `max`.
    pub fn after(&self, node: &str, id: u64, max: usize) -> Result<Vec<Snapshot>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let items = self.read(node, |t| {
            let mut out = Vec::with_capacity(max.min(1024));
            for entry in t.range::<u64>((Bound::Excluded(id), Bound::Unbounded))? {
                let (k, v) = entry?;
                if let Some(s) = self.decoded(node, k.value(), v.value()) {
                    out.push(s);
                    if out.len() == max {
                        break;
                    }
                }
            }
            Ok(out)
        })?;
        Ok(items.unwrap_or_default())
    }

    /// One item of `node` by id (`None` if there is none, or it cannot be
    /// read: logged).
    pub fn get(&self, node: &str, id: u64) -> Result<Option<Snapshot>, StoreError> {
        Ok(self
            .read(node, |t| {
                Ok(t.get(id)?.and_then(|v| self.decoded(node, id, v.value())))
            })?
            .flatten())
    }

    /// How many items `node` holds (unreadable ones included).
    pub fn len(&self, node: &str) -> Result<u64, StoreError> {
        Ok(self.read(node, |t| t.len())?.unwrap_or(0))
    }
}

/// Drops the oldest items of `t` beyond `limits.max_items` and those older
/// than `limits.max_age` before `now`.
fn trim(
    t: &mut Table<u64, &'static [u8]>,
    limits: Limits,
    now: SystemTime,
) -> Result<(), redb::StorageError> {
    let max_age = u64::try_from(limits.max_age.as_micros()).unwrap_or(u64::MAX);
    let oldest_kept = micros(now).saturating_sub(max_age);
    let mut excess = t.len()?.saturating_sub(limits.max_items);
    // One pop at a time: measured faster here than `retain_in` or
    // `extract_from_if` over the range (8.5 against 12-13 ms for a
    // 1000-item commit to full nodes, `cargo bench`).
    loop {
        let first = t.first()?.map(|(k, _)| k.value());
        match first {
            Some(id) if excess > 0 || id < oldest_kept => {
                t.pop_first()?;
                excess = excess.saturating_sub(1);
            }
            _ => return Ok(()),
        }
    }
}

/// Microseconds since the Unix epoch: the item id of a reading at `t`.
pub fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
