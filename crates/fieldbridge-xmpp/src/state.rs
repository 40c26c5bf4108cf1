//! What must survive a restart: who subscribed to what.
//!
//! Kept as one small JSON file in the state directory, replaced atomically
//! (write a temporary file, then rename) so that a power cut leaves either
//! the old or the new version, never half of one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const FILE: &str = "subscriptions.json";

/// Subscribers per device (presence) and per node (pubsub).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriptions {
    /// Bare JIDs subscribed to each device's presence, by device id.
    #[serde(default)]
    pub presence: BTreeMap<String, BTreeSet<String>>,
    /// JIDs (as given in the subscribe request) subscribed to each node.
    #[serde(default)]
    pub pubsub: BTreeMap<String, BTreeSet<String>>,
}

/// The subscriptions file in a state directory.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The store in `dir` (created when first saved).
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join(FILE),
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Creates the state directory if it does not exist yet (mode 0700; an
    /// existing one is left as it is).
    pub fn create_dir(&self) -> std::io::Result<()> {
        fieldbridge_core::files::create_private_dir(self.dir())
    }

    /// Loads what was saved; nothing saved yet is an empty set.
    pub fn load(&self) -> std::io::Result<Subscriptions> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} is damaged ({e}); move it away to start afresh",
                        self.path.display()
                    ),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Subscriptions::default()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the saved state atomically. The file is readable by the
    /// gateway's user only (mode 0600: it names every subscriber).
    pub fn save(&self, subs: &Subscriptions) -> std::io::Result<()> {
        self.create_dir()?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // The mode applies to a new file only: one left by a crash of an
        // older version may be wider.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(&serde_json::to_vec_pretty(subs).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("nested"));
        assert_eq!(store.load().unwrap(), Subscriptions::default());
        let mut subs = Subscriptions::default();
        subs.presence
            .entry("boiler".into())
            .or_default()
            .insert("alice@example.org".into());
        subs.pubsub
            .entry("boiler".into())
            .or_default()
            .insert("alice@example.org/phone".into());
        store.save(&subs).unwrap();
        assert_eq!(Store::new(&dir.path().join("nested")).load().unwrap(), subs);
    }

    #[test]
    fn the_directory_and_the_file_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = Store::new(&state);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // A stale temporary file, world-readable, from an older version.
        store.create_dir().unwrap();
        assert_eq!(mode(&state), 0o700);
        let tmp = state.join("subscriptions.json.tmp");
        std::fs::write(&tmp, b"{}").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        store.save(&Subscriptions::default()).unwrap();
        assert_eq!(mode(&state.join(FILE)), 0o600);
        assert!(!tmp.exists());
        // A directory the user made is theirs: not changed.
        let mine = dir.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o750)).unwrap();
        Store::new(&mine).save(&Subscriptions::default()).unwrap();
        assert_eq!(mode(&mine), 0o750);
        assert_eq!(mode(&mine.join(FILE)), 0o600);
    }

    #[test]
    fn a_damaged_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let err = Store::new(dir.path()).load().unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
