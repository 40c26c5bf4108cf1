//! Configuration errors as users read them: `file:line:column: key.path: message`.

use std::fmt;

use super::de::Problem;
use super::tree::Origin;

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// In the file, 1-based.
    File {
        /// The file as given on the command line.
        file: String,
        /// Line.
        line: u64,
        /// Column.
        column: u64,
    },
    /// In an environment variable.
    Env(String),
    /// The file as a whole.
    Whole(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { file, line, column } => write!(f, "{file}:{line}:{column}"),
            Location::Env(var) => write!(f, "environment variable {var}"),
            Location::Whole(file) => f.write_str(file),
        }
    }
}

/// One configuration error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where.
    pub location: Location,
    /// The key path (`devices.boiler.poll`), empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.location, self.path, self.message)
        }
    }
}

/// Every error found, in file order (environment overrides last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    pub(super) fn new(file: &str, problems: Vec<Problem>) -> Self {
        let mut errors: Vec<(u8, u64, u64, ConfigError)> = problems
            .into_iter()
            .map(|p| {
                let (rank, line, column, location) = match p.origin {
                    Origin::File { line, column } => (
                        1,
                        line,
                        column,
                        Location::File {
                            file: file.to_owned(),
                            line,
                            column,
                        },
                    ),
                    Origin::Env(var) => (2, 0, 0, Location::Env(var)),
                    Origin::Nowhere => (0, 0, 0, Location::Whole(file.to_owned())),
                };
                (
                    rank,
                    line,
                    column,
                    ConfigError {
                        location,
                        path: p.path,
                        message: p.message,
                    },
                )
            })
            .collect();
        errors.sort_by(|a, b| (a.0, a.1, a.2, &a.3.path).cmp(&(b.0, b.1, b.2, &b.3.path)));
        errors.dedup_by(|a, b| a.3 == b.3);
        Self(errors.into_iter().map(|e| e.3).collect())
    }

    /// The errors, in order.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are none (never, for a returned error).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        let n = self.0.len();
        write!(f, "{n} problem{} found", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for ConfigErrors {}
