//! The files a configuration names (secrets, passwords, certificates), read
//! safely, and the gateway's private state directory.
//!
//! A path in a configuration may name anything: `/dev/zero` (endless), a
//! FIFO (opening it waits for a writer, for ever), a directory, or a log
//! file given by mistake. [`read_limited`] refuses everything that is not a
//! regular file *before* opening it, and reads at most `limit` bytes, so
//! that a wrong path is a clear error at once rather than a hang or a
//! gigabyte in memory.

use std::fmt;
use std::fs::FileType;
use std::io::Read as _;
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _};
use std::path::{Path, PathBuf};

/// One kibibyte, for limits.
pub const KIB: u64 = 1024;
/// One mebibyte, for limits.
pub const MIB: u64 = 1024 * KIB;

/// Why a named file was not read.
#[derive(Debug)]
pub enum Problem {
    /// The system refused (missing, not allowed, ...).
    Io(std::io::Error),
    /// Not a regular file: what it is instead ("a FIFO", "a directory", ...).
    NotRegular(&'static str),
    /// Larger than the limit (in bytes).
    TooLarge(u64),
    /// Text was expected and the bytes are not UTF-8.
    NotText,
}

/// A file that [`read_limited`] or [`read_text_limited`] did not read, with
/// its path. The message names the path and what is wrong with it.
#[derive(Debug)]
pub struct FileError {
    path: PathBuf,
    problem: Problem,
}

impl FileError {
    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is wrong.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            Problem::Io(e) => write!(f, "cannot read {path}: {e}"),
            Problem::NotRegular(what) => write!(f, "{path} is {what}, not a regular file"),
            Problem::TooLarge(limit) => write!(f, "{path} is larger than {}", size(*limit)),
            Problem::NotText => write!(f, "{path} is not UTF-8 text"),
        }
    }
}

// The message already says everything, the io::Error included: no source,
// so that `{:#}` chains do not repeat it.
impl std::error::Error for FileError {}

/// `limit` for people: "4 KiB", "1 MiB", "100 bytes".
pub fn size(limit: u64) -> String {
    if limit >= MIB && limit.is_multiple_of(MIB) {
        format!("{} MiB", limit / MIB)
    } else if limit >= KIB && limit.is_multiple_of(KIB) {
        format!("{} KiB", limit / KIB)
    } else {
        format!("{limit} bytes")
    }
}

fn not_regular(t: FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("a special file")
    }
}

/// Reads the regular file at `path` (symbolic links followed), refusing
/// anything else, and anything larger than `limit` bytes.
///
/// The type is checked before opening, so a FIFO is refused without
/// waiting for a writer, and again on the open file, in case the name was
/// replaced meanwhile; at most `limit + 1` bytes are ever read.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let fail = |problem| FileError {
        path: path.to_owned(),
        problem,
    };
    let regular =
        |t: FileType| not_regular(t).map_or(Ok(()), |w| Err(fail(Problem::NotRegular(w))));
    let meta = std::fs::metadata(path).map_err(|e| fail(Problem::Io(e)))?;
    regular(meta.file_type())?;
    if meta.len() > limit {
        return Err(fail(Problem::TooLarge(limit)));
    }
    let file = std::fs::File::open(path).map_err(|e| fail(Problem::Io(e)))?;
    let meta = file.metadata().map_err(|e| fail(Problem::Io(e)))?;
    regular(meta.file_type())?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| fail(Problem::Io(e)))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(fail(Problem::TooLarge(limit)));
    }
    Ok(bytes)
}

/// [`read_limited`], for a file that must be UTF-8 text.
pub fn read_text_limited(path: &Path, limit: u64) -> Result<String, FileError> {
    let bytes = read_limited(path, limit)?;
    String::from_utf8(bytes).map_err(|_| FileError {
        path: path.to_owned(),
        problem: Problem::NotText,
    })
}

/// Creates `dir` and its missing parents readable by the gateway's user
/// only (mode 0700: it holds subscribers' addresses and readings). A
/// directory that already exists is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::{Duration, Instant};

    /// A fresh directory under the system's temporary directory, removed
    /// when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "fieldbridge-files-{name}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_regular_file_within_the_limit_is_read() {
        let dir = Scratch::new("ok");
        let path = dir.0.join("secret");
        std::fs::write(&path, b"s3cret\n").unwrap();
        assert_eq!(read_limited(&path, 7).unwrap(), b"s3cret\n");
        assert_eq!(read_text_limited(&path, 4 * KIB).unwrap(), "s3cret\n");
        // Through a symbolic link too.
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read_limited(&link, 7).unwrap(), b"s3cret\n");
    }

    #[test]
    fn a_file_larger_than_the_limit_is_refused() {
        let dir = Scratch::new("big");
        let path = dir.0.join("secret");
        std::fs::write(&path, vec![b'x'; 4097]).unwrap();
        let err = read_limited(&path, 4 * KIB).unwrap_err();
        assert!(matches!(err.problem(), Problem::TooLarge(4096)), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("{} is larger than 4 KiB", path.display())
        );
    }

    #[test]
    fn the_limit_holds_when_the_size_is_not_known_in_advance() {
        // Files in /proc are regular, say they are empty, and are not: only
        // the bounded read stops them.
        let path = Path::new("/proc/self/mountinfo");
        assert_eq!(std::fs::metadata(path).unwrap().len(), 0);
        let err = read_limited(path, 16).unwrap_err();
        assert!(matches!(err.problem(), Problem::TooLarge(16)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "/proc/self/mountinfo is larger than 16 bytes"
        );
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = Scratch::new("fifo");
        let path = dir.0.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo failed");
        // Opening a FIFO for reading would wait for a writer: the answer must
        // not. Run it on a thread so that a regression fails instead of hanging.
        let (tx, rx) = std::sync::mpsc::channel();
        let probe = path.clone();
        let started = Instant::now();
        std::thread::spawn(move || {
            let _ = tx.send(read_limited(&probe, 4 * KIB).map_err(|e| e.to_string()));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(2))
            .expect("reading a FIFO did not return within 2 s");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            got.unwrap_err(),
            format!("{} is a FIFO, not a regular file", path.display())
        );
    }

    #[test]
    fn dev_zero_is_refused() {
        let err = read_limited(Path::new("/dev/zero"), 4 * KIB).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/zero is a character device, not a regular file"
        );
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = Scratch::new("dir");
        let err = read_limited(&dir.0, 4 * KIB).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is a directory, not a regular file", dir.0.display())
        );
    }

    #[test]
    fn a_missing_file_names_the_path_and_the_reason() {
        let dir = Scratch::new("missing");
        let path = dir.0.join("nothing-here");
        let err = read_limited(&path, 4 * KIB).unwrap_err();
        assert!(
            matches!(err.problem(), Problem::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
        );
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read {}: No such file or directory (os error 2)",
                path.display()
            )
        );
    }

    #[test]
    fn text_must_be_utf8() {
        let dir = Scratch::new("text");
        let path = dir.0.join("secret");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let err = read_text_limited(&path, 4 * KIB).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is not UTF-8 text", path.display())
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(4 * KIB), "4 KiB");
        assert_eq!(size(MIB), "1 MiB");
        assert_eq!(size(1536), "1536 bytes");
        assert_eq!(size(100), "100 bytes");
    }

    #[test]
    fn the_private_dir_is_0700_and_an_existing_one_is_left_alone() {
        let dir = Scratch::new("private");
        let state = dir.0.join("a/b/state");
        create_private_dir(&state).unwrap();
        for d in [&state, &dir.0.join("a")] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        let mine = dir.0.join("mine");
        std::fs::create_dir(&mine).unwrap();
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o750)).unwrap();
        create_private_dir(&mine).unwrap();
        let mode = std::fs::metadata(&mine).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o750);
    }
}
