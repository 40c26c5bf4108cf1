//! What fieldbridge keeps on disk beyond a restart: the item history of
//! every pubsub node, in one embedded [redb](https://docs.rs/redb) database
//! in the state directory.
//!
//! Each node is a table of `item id → payload`. Item ids are the reading
//! time in microseconds, strictly increasing per node, so the table order
//! is publication order: "the last n", "everything after the item I have"
//! and "this item" are range reads. Appends come in batches (one
//! transaction for many items) so that a fast device costs one disk commit
//! per batch, not per reading; each batch also trims its nodes to their
//! [`Limits`].
//!
//! The payload is opaque here (the XMPP crate stores the item's XML).

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// The database file in the state directory.
pub const FILE: &str = "history.redb";

/// How much history a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At most this many items; the oldest go first.
    pub max_items: u64,
    /// Items older than this are dropped.
    pub max_age: Duration,
}

impl Default for Limits {
    /// 1,000 items and a week: a few hundred kilobytes per device, enough
    /// for a subscriber to catch up after a long outage.
    fn default() -> Self {
        Self {
            max_items: 1000,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// One stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its id: microseconds since the Unix epoch, unique and increasing per node.
    pub id: u64,
    /// What was published.
    pub payload: String,
}

/// A failure of the history database, with the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("history database {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    #[source]
    source: redb::Error,
}

/// The history of every node.
#[derive(Debug)]
pub struct History {
    db: Database,
    path: PathBuf,
}

fn table(node: &str) -> TableDefinition<'_, u64, &'static str> {
    TableDefinition::new(node)
}

impl History {
    /// Opens (or creates) the history in `dir`.
    ///
    /// The file is readable by the gateway's user only (mode 0600: it holds
    /// every reading); one left readable by others by an older version is
    /// made so.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(FILE);
        let fail = |e: redb::Error| StoreError {
            path: path.clone(),
            source: e,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| fail(e.into()))?;
        let mode = file
            .metadata()
            .map_err(|e| fail(e.into()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7700))
                .map_err(|e| fail(e.into()))?;
        }
        let db = Database::builder()
            .create_file(file)
            .map_err(|e| fail(e.into()))?;
        Ok(Self { db, path })
    }

    fn error(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    /// Stores `items` (node, item) in one transaction and trims every node
    /// it touched to `limits(node)`, as of `now`.
    pub fn append(
        &self,
        items: &[(String, Item)],
        limits: impl Fn(&str) -> Limits,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let mut touched: Vec<&str> = Vec::new();
        for (node, item) in items {
            let mut t = txn.open_table(table(node)).map_err(|e| self.error(e))?;
            t.insert(item.id, item.payload.as_str())
                .map_err(|e| self.error(e))?;
            if !touched.contains(&node.as_str()) {
                touched.push(node);
            }
        }
        let now_micros = micros(now);
        for node in touched {
            let limit = limits(node);
            let oldest_kept = now_micros
                .saturating_sub(u64::try_from(limit.max_age.as_micros()).unwrap_or(u64::MAX));
            let mut t = txn.open_table(table(node)).map_err(|e| self.error(e))?;
            loop {
                let len = t.len().map_err(|e| self.error(e))?;
                let first = t
                    .first()
                    .map_err(|e| self.error(e))?
                    .map(|(k, _)| k.value());
                match first {
                    Some(id) if len > limit.max_items || id < oldest_kept => {
                        t.pop_first().map_err(|e| self.error(e))?;
                    }
                    _ => break,
                }
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }

    fn read<T>(
        &self,
        node: &str,
        f: impl FnOnce(redb::ReadOnlyTable<u64, &'static str>) -> Result<T, redb::StorageError>,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        match txn.open_table(table(node)) {
            Ok(t) => f(t).map(Some).map_err(|e| self.error(e)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// The newest `n` items of `node`, oldest first.
    pub fn last(&self, node: &str, n: usize) -> Result<Vec<Item>, StoreError> {
        self.before(node, u64::MAX, n)
    }

    /// The newest `n` items of `node` published before `id`, oldest first.
    pub fn before(&self, node: &str, id: u64, n: usize) -> Result<Vec<Item>, StoreError> {
        let items = self.read(node, |t| {
            let mut out = t
                .range(..id)?
                .rev()
                .take(n)
                .map(|r| r.map(|(k, v)| item(k.value(), v.value())))
                .collect::<Result<Vec<_>, _>>()?;
            out.reverse();
            Ok(out)
        })?;
        Ok(items.unwrap_or_default())
    }

    /// The items of `node` published after `id`, oldest first, at most `max`.
    pub fn after(&self, node: &str, id: u64, max: usize) -> Result<Vec<Item>, StoreError> {
        let items = self.read(node, |t| {
            t.range(id.saturating_add(1)..)?
                .take(max)
                .map(|r| r.map(|(k, v)| item(k.value(), v.value())))
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(items.unwrap_or_default())
    }

    /// One item of `node` by id.
    pub fn get(&self, node: &str, id: u64) -> Result<Option<Item>, StoreError> {
        Ok(self
            .read(node, |t| Ok(t.get(id)?.map(|v| item(id, v.value()))))?
            .flatten())
    }

    /// How many items `node` holds.
    pub fn len(&self, node: &str) -> Result<u64, StoreError> {
        Ok(self.read(node, |t| t.len())?.unwrap_or(0))
    }
}

fn item(id: u64, payload: &str) -> Item {
    Item {
        id,
        payload: payload.to_owned(),
    }
}

/// Microseconds since the Unix epoch: the item id of a reading at `t`.
pub fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn batch(node: &str, ids: impl IntoIterator<Item = u64>) -> Vec<(String, Item)> {
        ids.into_iter()
            .map(|id| (node.to_owned(), item(id, &format!("p{id}"))))
            .collect()
    }

    const NOW: u64 = 1_800_000_000_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(NOW)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_database_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        h.append(&batch("boiler", [NOW]), |_| Limits::default(), now())
            .unwrap();
        drop(h);
        assert_eq!(mode(&dir.path().join(FILE)), 0o600);
        // One an older version left 0644 is closed, and still opens.
        std::fs::set_permissions(
            dir.path().join(FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let h = History::open(dir.path()).unwrap();
        assert_eq!(mode(&dir.path().join(FILE)), 0o600);
        assert_eq!(h.last("boiler", 5).unwrap().len(), 1);
    }

    #[test]
    fn reads_the_last_items_after_an_id_and_by_id_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        assert_eq!(
            h.last("boiler", 5).unwrap(),
            vec![],
            "unknown node is empty"
        );
        h.append(
            &batch("boiler", (1..=10).map(|i| NOW - 100 + i)),
            |_| Limits::default(),
            now(),
        )
        .unwrap();
        h.append(&batch("other", [NOW]), |_| Limits::default(), now())
            .unwrap();
        let last: Vec<u64> = h.last("boiler", 3).unwrap().iter().map(|i| i.id).collect();
        assert_eq!(last, [NOW - 92, NOW - 91, NOW - 90]);
        let before: Vec<u64> = h
            .before("boiler", NOW - 95, 2)
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(before, [NOW - 97, NOW - 96]);
        let after: Vec<u64> = h
            .after("boiler", NOW - 95, 100)
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(after, (6..=10).map(|i| NOW - 100 + i).collect::<Vec<_>>());
        assert_eq!(h.after("boiler", NOW - 95, 2).unwrap().len(), 2);
        assert_eq!(
            h.get("boiler", NOW - 97).unwrap().map(|i| i.payload),
            Some(format!("p{}", NOW - 97))
        );
        assert_eq!(h.get("boiler", 7).unwrap(), None);
        assert_eq!(h.len("other").unwrap(), 1);
    }

    #[test]
    fn trims_to_the_count_and_age_limits() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        let limits = |node: &str| Limits {
            max_items: if node == "small" { 3 } else { 1000 },
            max_age: Duration::from_secs(60),
        };
        h.append(&batch("small", (0..10).map(|i| NOW - i)), limits, now())
            .unwrap();
        let kept: Vec<u64> = h.last("small", 100).unwrap().iter().map(|i| i.id).collect();
        assert_eq!(kept, [NOW - 2, NOW - 1, NOW], "the newest three");

        let old = NOW - 61_000_000;
        h.append(&batch("aged", [old, old + 1, NOW - 1, NOW]), limits, now())
            .unwrap();
        let kept: Vec<u64> = h.last("aged", 100).unwrap().iter().map(|i| i.id).collect();
        assert_eq!(kept, [NOW - 1, NOW], "older than a minute dropped");
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let h = History::open(dir.path()).unwrap();
            h.append(
                &batch("boiler", [NOW - 1, NOW]),
                |_| Limits::default(),
                now(),
            )
            .unwrap();
        }
        let h = History::open(dir.path()).unwrap();
        assert_eq!(h.len("boiler").unwrap(), 2);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"not a database at all, just text").unwrap();
        let e = History::open(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("history database "), "{e}");
        assert!(e.contains(FILE), "{e}");
    }
}
