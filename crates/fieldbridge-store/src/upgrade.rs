//! Moving what the previous version left in the state directory into the
//! typed store, once, atomically.
//!
//! The previous version (before schema 1) kept `history.redb`, one table per
//! node named by the bare node id, `item id → XML payload`, and
//! `subscriptions.json`, rewritten on every change.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use crate::subscriptions::{self, Subscriptions};
use crate::{Records, Snapshot, Store, StoreError, codec, items_table};

/// The previous version's database file, renamed to [`FILE`](crate::FILE)
/// on upgrade.
pub const LEGACY_FILE: &str = "history.redb";

/// The previous version's subscriptions file, imported on upgrade.
pub const LEGACY_SUBSCRIPTIONS: &str = "subscriptions.json";

/// What is appended to [`LEGACY_SUBSCRIPTIONS`] once imported: the file is
/// kept, renamed, as a backup of what was imported.
pub const IMPORTED_SUFFIX: &str = ".imported";

/// The layout this version writes. 0 (no meta table) is a new file or the
/// previous version's.
pub(crate) const SCHEMA: u64 = 1;

const META: TableDefinition<'static, &str, u64> = TableDefinition::new("fieldbridge:meta");
const SCHEMA_KEY: &str = "schema";

/// The subscriptions file can name thousands of subscribers; anything much
/// larger than that is not one the previous version wrote.
const MAX_SUBSCRIPTIONS_FILE: u64 = 64 * fieldbridge_core::files::MIB;

/// Renames the previous version's `history.redb` to `state.redb` if there is
/// no `state.redb` yet. If both exist, `state.redb` is the current state and
/// `history.redb` is left alone.
pub(crate) fn adopt_legacy_file(dir: &Path, path: &Path) -> Result<(), StoreError> {
    let old = dir.join(LEGACY_FILE);
    let exists = |p: &Path| {
        p.try_exists()
            .map_err(StoreError::io("look for the state database", p))
    };
    if !exists(path)? && exists(&old)? {
        std::fs::rename(&old, path).map_err(StoreError::io("rename to state.redb", &old))?;
        sync_dir(dir)?;
        tracing::info!(from = %old.display(), to = %path.display(), "the previous version's history database is now the state database");
    }
    Ok(())
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("sync the state directory", dir))
}

/// Upgrades the open `store` in place: see [`Store::open`].
#[expect(
    clippy::type_complexity,
    reason = "the agreed signature; a named alias would hide what `legacy` is given"
)]
pub(crate) fn run(
    store: &Store,
    dir: &Path,
    legacy: &mut dyn FnMut(&str, Vec<(u64, String)>) -> Vec<Snapshot>,
) -> Result<(), StoreError> {
    let json = dir.join(LEGACY_SUBSCRIPTIONS);
    let has_json = json
        .try_exists()
        .map_err(StoreError::io("look for", &json))?;
    let (schema, tables) = {
        let txn = store.db.begin_read().map_err(|e| store.error(e))?;
        let schema = match txn.open_table(META) {
            Ok(t) => t
                .get(SCHEMA_KEY)
                .map_err(|e| store.error(e))?
                .map_or(0, |v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(store.error(e)),
        };
        let tables: Vec<String> = txn
            .list_tables()
            .map_err(|e| store.error(e))?
            .map(|t| t.name().to_owned())
            .filter(|name| !name.contains(':'))
            .collect();
        (schema, tables)
    };
    if schema > SCHEMA {
        return Err(StoreError::Newer {
            path: store.path.clone(),
            found: schema,
            known: SCHEMA,
        });
    }
    if schema == SCHEMA && tables.is_empty() && !has_json {
        return Ok(());
    }
    // Read (and refuse a damaged file) before anything is changed.
    let imported = if has_json {
        let bytes = fieldbridge_core::files::read_limited(&json, MAX_SUBSCRIPTIONS_FILE)?;
        let subs: Subscriptions =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Damaged {
                path: json.clone(),
                source,
            })?;
        Some(subs)
    } else {
        None
    };

    let txn = store.db.begin_write().map_err(|e| store.error(e))?;
    let mut moved = 0usize;
    let mut buf = Vec::with_capacity(512);
    for node in &tables {
        let old = TableDefinition::<u64, &str>::new(node);
        let items = {
            let t = txn.open_table(old).map_err(|e| store.error(e))?;
            t.iter()
                .map_err(|e| store.error(e))?
                .map(|entry| entry.map(|(k, v)| (k.value(), v.value().to_owned())))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| store.error(e))?
        };
        let count = items.len();
        let snapshots = legacy(node, items);
        {
            let name = items_table(node);
            let mut t = txn
                .open_table(Records::new(&name))
                .map_err(|e| store.error(e))?;
            for s in &snapshots {
                buf.clear();
                codec::encode(s, &mut buf);
                t.insert(s.id, buf.as_slice()).map_err(|e| store.error(e))?;
            }
        }
        txn.delete_table(old).map_err(|e| store.error(e))?;
        tracing::info!(node = %node, items = count, kept = snapshots.len(), "history of the previous version upgraded");
        moved += snapshots.len();
    }
    {
        // Created even when empty, so that readers find it.
        let mut t = txn
            .open_table(subscriptions::TABLE)
            .map_err(|e| store.error(e))?;
        for (kind, node, jid) in imported.iter().flat_map(Subscriptions::entries) {
            t.insert((kind.code(), node, jid), ())
                .map_err(|e| store.error(e))?;
        }
        let mut meta = txn.open_table(META).map_err(|e| store.error(e))?;
        meta.insert(SCHEMA_KEY, SCHEMA)
            .map_err(|e| store.error(e))?;
    }
    txn.commit().map_err(|e| store.error(e))?;

    if has_json {
        let backup = dir.join(format!("{LEGACY_SUBSCRIPTIONS}{IMPORTED_SUFFIX}"));
        // Renamed so that it is imported once only: an import after later
        // unsubscribes would bring those subscribers back.
        std::fs::rename(&json, &backup).map_err(StoreError::io(
            "rename the imported subscriptions file",
            &json,
        ))?;
        sync_dir(dir)?;
        let count = imported.iter().flat_map(Subscriptions::entries).count();
        tracing::info!(from = %json.display(), to = %backup.display(), subscriptions = count, "subscriptions of the previous version imported");
    }
    if !tables.is_empty() {
        tracing::info!(path = %store.path.display(), nodes = tables.len(), items = moved, "state database upgraded to schema {SCHEMA}");
    }
    Ok(())
}
