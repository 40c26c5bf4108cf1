//! What can go wrong, always with the file it concerns.

use std::path::{Path, PathBuf};

use fieldbridge_core::files::FileError;

/// A failure of the state store. Every message names the file or directory
/// concerned, so that an operator knows what to look at (or move away).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written (a damaged file,
    /// a full disk, another process holding it).
    #[error("state database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: redb::Error,
    },
    /// A file system operation on the state directory failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("create the state directory").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the system reported.
        #[source]
        source: std::io::Error,
    },
    /// The previous version's `subscriptions.json` could not be read (its
    /// message names the file).
    #[error(transparent)]
    File(#[from] FileError),
    /// The previous version's `subscriptions.json` is not what it wrote.
    #[error("{path} is damaged ({source}); move it away to start afresh")]
    Damaged {
        /// The subscriptions file.
        path: PathBuf,
        /// Where the JSON went wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The database was written by a newer fieldbridge, whose layout this
    /// version does not know: refused rather than half understood.
    #[error(
        "state database {path} was written by a newer fieldbridge (schema {found}, this \
         version knows schema {known} at most); run that version, or move the file away \
         to start afresh"
    )]
    Newer {
        /// The database file.
        path: PathBuf,
        /// The schema found in the file.
        found: u64,
        /// The newest schema this version knows.
        known: u64,
    },
}

impl StoreError {
    /// The file or directory concerned.
    pub fn path(&self) -> &Path {
        match self {
            StoreError::Database { path, .. }
            | StoreError::Io { path, .. }
            | StoreError::Damaged { path, .. }
            | StoreError::Newer { path, .. } => path,
            StoreError::File(e) => e.path(),
        }
    }

    pub(crate) fn db(path: &Path, e: impl Into<redb::Error>) -> Self {
        StoreError::Database {
            path: path.to_owned(),
            source: e.into(),
        }
    }

    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        move |source| StoreError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}
