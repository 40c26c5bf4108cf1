//! The write audit: who asked to change what, through what, when, and what
//! came of it, for every write attempt (done, failed or refused).
//!
//! Each attempt is an [`Entry`]. [`AuditLog::record`] logs it through
//! `tracing` (target `fieldbridge::audit`, the same fields) and hands it to
//! a writer thread that appends it as one JSON line to `audit.jsonl` in the
//! state directory (mode 0600). The event loop never waits for the disk:
//! the channel is bounded, and an entry that finds it full is counted and
//! logged, not waited for.
//!
//! The file is bounded by rotation: a line that would take `audit.jsonl`
//! past [`MAX_FILE`] first moves it to `audit.1.jsonl` (replacing the one
//! before), so at most about twice [`MAX_FILE`] is kept, the newest entries
//! always. The running gateway holds its store exclusively; this file is
//! what `fieldbridge audit` reads, beside it, with [`read`].
//!
//! An entry's kind is its `action`: `write`, or `ack` (an alarm
//! acknowledged, issue 14), with the same `at`, `who`, `via` and `result`.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::files::MIB;
use crate::value::Value;

/// The audit file in the state directory.
pub const FILE: &str = "audit.jsonl";
/// The one older file kept by rotation.
pub const OLD_FILE: &str = "audit.1.jsonl";
/// Size at which `audit.jsonl` is rotated: about 5000 entries.
pub const MAX_FILE: u64 = MIB;
/// Entries waiting for the writer before new ones are dropped (and counted).
pub const QUEUE: usize = 1024;
/// The `tracing` target of audit entries.
pub const TARGET: &str = "fieldbridge::audit";

/// How a request reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Via {
    /// A chat message (`set <point> <value>`).
    #[serde(rename = "chat")]
    Chat,
    /// An ad-hoc command (XEP-0050 "Set a point").
    #[serde(rename = "adhoc")]
    Adhoc,
    /// A XEP-0325 control `set`.
    #[serde(rename = "xep0325")]
    Xep0325,
    /// A message in the alerts room (`fieldbridge: ack all`).
    #[serde(rename = "room")]
    Room,
}

impl Via {
    /// The name in the file and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Chat => "chat",
            Via::Adhoc => "adhoc",
            Via::Xep0325 => "xep0325",
            Via::Room => "room",
        }
    }
}

/// What was asked for; the `action` field names the kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// A value written to a point.
    Write {
        /// The device, as asked for.
        device: String,
        /// The point, as asked for (an unknown one too).
        point: String,
        /// The value asked for: typed when it was understood, else the
        /// text as sent.
        asked: Value,
    },
    /// An alarm acknowledged: its reminders stop.
    Ack {
        /// The device, as asked for.
        device: String,
        /// The alarm: `boiler/temperature`, `boiler/offline`,
        /// `connection/plc` (the `alerts` node's key).
        alarm: String,
    },
}

/// What came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Done; for a write, the value read back (now in effect).
    Ok {
        /// The value the device holds now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<Value>,
    },
    /// Refused or failed, and why, in the words the requester was given.
    Error {
        /// Why.
        error: String,
    },
}

/// One audited attempt: one JSON line of the audit file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When the outcome was known (RFC 3339, with offset).
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
    /// The requester's bare JID.
    pub who: String,
    /// How the request came.
    pub via: Via,
    /// What was asked.
    #[serde(flatten)]
    pub action: Action,
    /// What came of it.
    #[serde(flatten)]
    pub result: Outcome,
}

impl Entry {
    /// A write attempt, now.
    pub fn write(
        who: impl Into<String>,
        via: Via,
        device: impl Into<String>,
        point: impl Into<String>,
        asked: Value,
        result: Result<Value, String>,
    ) -> Self {
        Self {
            at: SystemTime::now(),
            who: who.into(),
            via,
            action: Action::Write {
                device: device.into(),
                point: point.into(),
                asked,
            },
            result: match result {
                Ok(v) => Outcome::Ok { value: Some(v) },
                Err(error) => Outcome::Error { error },
            },
        }
    }

    /// An alarm acknowledged, now (an ack is never refused once it is
    /// audited: refusals are answered, not recorded).
    pub fn ack(
        who: impl Into<String>,
        via: Via,
        device: impl Into<String>,
        alarm: impl Into<String>,
    ) -> Self {
        Self {
            at: SystemTime::now(),
            who: who.into(),
            via,
            action: Action::Ack {
                device: device.into(),
                alarm: alarm.into(),
            },
            result: Outcome::Ok { value: None },
        }
    }

    /// The entry as one line of the file (no newline).
    pub fn to_line(&self) -> String {
        // Only strings, numbers and a time: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Logs the entry with its fields, at `info` when it went through and
    /// at `warn` when it did not.
    fn log(&self) {
        let via = self.via.as_str();
        let (device, point, asked) = match &self.action {
            Action::Write {
                device,
                point,
                asked,
            } => (device, point, asked),
            Action::Ack { device, alarm } => {
                tracing::info!(target: TARGET, action = "ack", who = %self.who, via, device = %device, alarm = %alarm, result = "ok", "alarm acknowledged");
                return;
            }
        };
        match &self.result {
            Outcome::Ok { value } => {
                let value = value.as_ref().map(ToString::to_string).unwrap_or_default();
                tracing::info!(target: TARGET, action = "write", who = %self.who, via, device = %device, point = %point, asked = %asked, result = "ok", value, "write done");
            }
            Outcome::Error { error } => {
                tracing::warn!(target: TARGET, action = "write", who = %self.who, via, device = %device, point = %point, asked = %asked, result = "error", error = %error, "write not done");
            }
        }
    }
}

/// `at` as RFC 3339 with an explicit offset (`+00:00`), read back with any.
mod rfc3339 {
    use std::time::SystemTime;

    use jiff::Timestamp;
    use jiff::tz::Offset;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ts = Timestamp::try_from(*at).map_err(serde::ser::Error::custom)?;
        s.collect_str(&ts.display_with_offset(Offset::UTC))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        let ts: Timestamp = text.parse().map_err(serde::de::Error::custom)?;
        Ok(SystemTime::from(ts))
    }
}

/// Where entries go: the log at once, the file through the writer. Cheap
/// to clone; never blocks.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: Option<mpsc::Sender<Entry>>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    /// A log with no file: entries are only logged (tests, tools).
    pub fn log_only() -> Self {
        Self {
            tx: None,
            dropped: Arc::default(),
        }
    }

    /// A log whose entries are also sent to `tx` (tests read them there).
    pub fn to_channel(tx: mpsc::Sender<Entry>) -> Self {
        Self {
            tx: Some(tx),
            dropped: Arc::default(),
        }
    }

    /// Logs `entry` and queues it for the file; if the writer is behind by
    /// [`QUEUE`] entries, it is counted and logged instead of waited for.
    pub fn record(&self, entry: Entry) {
        entry.log();
        let Some(tx) = &self.tx else {
            return;
        };
        if let Err(e) = tx.try_send(entry) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // The first, then one in a hundred: the log must not flood.
            if dropped == 1 || dropped.is_multiple_of(100) {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "the audit writer is behind",
                    mpsc::error::TrySendError::Closed(_) => "the audit writer stopped",
                };
                tracing::warn!(target: TARGET, dropped, "{why}: an audit entry was not written to {FILE} (it is in this log)");
            }
        }
    }

    /// Entries that did not reach the file.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The writer thread: ends (having written everything queued) once every
/// [`AuditLog`] clone is dropped.
#[derive(Debug)]
pub struct Writer(std::thread::JoinHandle<()>);

impl Writer {
    /// Waits for the writer to write what is queued and end. Call it once
    /// every [`AuditLog`] is gone (else it waits for them).
    pub fn finish(self) {
        if self.0.join().is_err() {
            tracing::error!(target: TARGET, "the audit writer panicked");
        }
    }
}

/// Starts the writer for `dir/audit.jsonl` (the directory must exist).
pub fn spawn(dir: &Path) -> std::io::Result<(AuditLog, Writer)> {
    let mut file = AuditFile::open(dir, MAX_FILE)?;
    let (tx, mut rx) = mpsc::channel::<Entry>(QUEUE);
    let thread = std::thread::Builder::new()
        .name("fieldbridge-audit".into())
        .spawn(move || {
            let mut failing = false;
            while let Some(entry) = rx.blocking_recv() {
                match file.append(&entry.to_line()) {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::error!(target: TARGET, error = %e, file = %file.path.display(), "cannot write the audit file (entries stay in this log)");
                    }
                    Err(_) => {}
                }
            }
        })?;
    Ok((AuditLog::to_channel(tx), Writer(thread)))
}

/// The audit file being appended to, rotated at a size.
#[derive(Debug)]
pub struct AuditFile {
    path: PathBuf,
    old: PathBuf,
    max: u64,
    file: Option<File>,
    size: u64,
}

impl AuditFile {
    /// Opens (creates, 0600) `dir/audit.jsonl` for appending, rotating at
    /// `max` bytes. A last line that a crash cut short is ended first, so
    /// that the next entry starts a line of its own.
    pub fn open(dir: &Path, max: u64) -> std::io::Result<Self> {
        let mut f = Self {
            path: dir.join(FILE),
            old: dir.join(OLD_FILE),
            max,
            file: None,
            size: 0,
        };
        f.reopen()?;
        Ok(f)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        let size = file.metadata()?.len();
        if size > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(size - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    /// Appends `line` and a newline (one write), rotating first if the
    /// file would grow past the limit.
    pub fn append(&mut self, line: &str) -> std::io::Result<()> {
        let len = u64::try_from(line.len())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        if self.file.is_none() {
            self.reopen()?;
        }
        if self.size > 0 && self.size.saturating_add(len) > self.max {
            self.file = None;
            std::fs::rename(&self.path, &self.old)?;
            self.reopen()?;
        }
        let Some(file) = &mut self.file else {
            return Err(std::io::Error::other("the audit file is not open"));
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        if let Err(e) = file.write_all(&bytes) {
            // Reopened on the next entry (the file may have been removed).
            self.file = None;
            return Err(e);
        }
        self.size = self.size.saturating_add(len);
        Ok(())
    }
}

/// A line of an audit file that is not an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// The file.
    pub file: PathBuf,
    /// Its line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub error: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: not an audit entry ({}); skipped",
            self.file.display(),
            self.line,
            self.error
        )
    }
}

/// What [`read`] found.
#[derive(Debug, Default)]
pub struct Found {
    /// The entries, oldest first.
    pub entries: Vec<Entry>,
    /// Lines that are not entries.
    pub bad: Vec<BadLine>,
}

/// Most an audit file is read: far more than rotation lets it grow.
const READ_LIMIT: u64 = 16 * MIB;

/// The entries in `dir` (the rotated file, then the current one), oldest
/// first, those at or after `since` only when given. Missing files are no
/// entries; a line that is not an entry is reported and skipped.
pub fn read(dir: &Path, since: Option<SystemTime>) -> Result<Found, crate::files::FileError> {
    let mut found = Found::default();
    for path in [dir.join(OLD_FILE), dir.join(FILE)] {
        if !path.exists() {
            continue;
        }
        let bytes = crate::files::read_limited(&path, READ_LIMIT)?;
        for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let bad = |error: String| BadLine {
                file: path.clone(),
                line: n + 1,
                error,
            };
            let entry = std::str::from_utf8(line)
                .map_err(|_| bad("not UTF-8".to_owned()))
                .and_then(|text| {
                    serde_json::from_str::<Entry>(text).map_err(|e| bad(e.to_string()))
                });
            match entry {
                Ok(e) if since.is_none_or(|s| e.at >= s) => found.entries.push(e),
                Ok(_) => {}
                Err(b) => found.bad.push(b),
            }
        }
    }
    Ok(found)
}

/// `--since`: a duration back from `now` (`1h`, `30m`, `2d`) or a time
/// (RFC 3339 with offset, `2026-12-01T10:00:00+01:00`).
pub fn parse_since(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(d) = crate::duration::parse(text) {
        return now
            .checked_sub(d)
            .ok_or_else(|| format!("{text:?} reaches back too far"));
    }
    text.trim().parse::<Timestamp>().map(SystemTime::from).map_err(|_| {
        format!("{text:?} is neither a duration (1h, 30m, 2d) nor a time with offset (2026-12-01T10:00:00+01:00)")
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::Duration;

    use super::*;

    fn entry(n: i64) -> Entry {
        let mut e = Entry::write(
            "alice@example.org",
            Via::Chat,
            "boiler",
            "setpoint",
            Value::Int(n),
            Ok(Value::Int(n)),
        );
        e.at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_615_387 + n as u64);
        e
    }

    #[test]
    fn an_ack_is_one_line_with_its_alarm() {
        let mut e = Entry::ack(
            "alice@example.org",
            Via::Room,
            "boiler",
            "boiler/temperature",
        );
        e.at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_615_387);
        let line = e.to_line();
        assert_eq!(
            line,
            r#"{"at":"2026-11-25T14:03:07+00:00","who":"alice@example.org","via":"room","action":"ack","device":"boiler","alarm":"boiler/temperature","result":"ok"}"#
        );
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), e);
    }

    #[test]
    fn an_entry_is_one_line_of_stable_fields() {
        let mut e = Entry::write(
            "alice@example.org",
            Via::Adhoc,
            "boiler",
            "setpoint",
            Value::Float(65.5),
            Ok(Value::Float(65.0)),
        );
        e.at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_615_387_250);
        let line = e.to_line();
        assert_eq!(
            line,
            r#"{"at":"2026-11-25T14:03:07.25+00:00","who":"alice@example.org","via":"adhoc","action":"write","device":"boiler","point":"setpoint","asked":65.5,"result":"ok","value":65.0}"#
        );
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), e);
        let refused = Entry::write(
            "bob@example.org",
            Via::Xep0325,
            "boiler",
            "pump",
            Value::Text("maybe".into()),
            Err("You may not change this device.".into()),
        );
        let line = refused.to_line();
        assert!(
            line.ends_with(r#""via":"xep0325","action":"write","device":"boiler","point":"pump","asked":"maybe","result":"error","error":"You may not change this device."}"#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), refused);
    }

    #[test]
    fn appended_lines_are_read_back_oldest_first_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = AuditFile::open(dir.path(), MAX_FILE).unwrap();
        for n in 0..3 {
            file.append(&entry(n).to_line()).unwrap();
        }
        let found = read(dir.path(), None).unwrap();
        assert_eq!(found.entries, vec![entry(0), entry(1), entry(2)]);
        assert!(found.bad.is_empty());
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn rotation_keeps_one_old_file_and_bounds_the_total() {
        let dir = tempfile::tempdir().unwrap();
        // Lines of one length (two-digit numbers); room for 10 per file.
        let line_len = entry(10).to_line().len() as u64 + 1;
        let max = line_len * 10;
        let mut file = AuditFile::open(dir.path(), max).unwrap();
        for n in 10..45 {
            file.append(&entry(n).to_line()).unwrap();
        }
        let current = std::fs::metadata(dir.path().join(FILE)).unwrap().len();
        let old = std::fs::metadata(dir.path().join(OLD_FILE)).unwrap().len();
        assert!(current <= max && old <= max, "{current} {old}");
        let found = read(dir.path(), None).unwrap();
        // The newest 15 (the old file holds 30..40, the current 40..45),
        // still oldest first.
        let want: Vec<Entry> = (30..45).map(entry).collect();
        assert_eq!(found.entries, want);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_corrupt_line_is_reported_with_its_number_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let good = entry(1).to_line();
        let text = format!("{good}\nnot json\n{{\"at\":\"yesterday\"}}\n\u{0}\n{good}\n");
        std::fs::write(dir.path().join(FILE), text).unwrap();
        std::fs::write(dir.path().join(OLD_FILE), [0xff, b'\n']).unwrap();
        let found = read(dir.path(), None).unwrap();
        assert_eq!(found.entries, vec![entry(1), entry(1)]);
        let at: Vec<(String, usize)> = found
            .bad
            .iter()
            .map(|b| {
                let name = b.file.file_name().unwrap().to_string_lossy().into_owned();
                (name, b.line)
            })
            .collect();
        assert_eq!(
            at,
            [
                (OLD_FILE.to_owned(), 1),
                (FILE.to_owned(), 2),
                (FILE.to_owned(), 3),
                (FILE.to_owned(), 4)
            ]
        );
        assert_eq!(found.bad[0].error, "not UTF-8");
        let shown = found.bad[1].to_string();
        assert!(
            shown.starts_with(&format!(
                "{}:2: not an audit entry (",
                found.bad[1].file.display()
            )),
            "{shown}"
        );
    }

    #[test]
    fn a_line_cut_short_by_a_crash_does_not_swallow_the_next_entry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), r#"{"at":"2026-"#).unwrap();
        let mut file = AuditFile::open(dir.path(), MAX_FILE).unwrap();
        file.append(&entry(2).to_line()).unwrap();
        let found = read(dir.path(), None).unwrap();
        assert_eq!(found.entries, vec![entry(2)]);
        assert_eq!(found.bad.len(), 1);
        assert_eq!(found.bad[0].line, 1);
    }

    #[test]
    fn since_keeps_the_entries_at_or_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = AuditFile::open(dir.path(), MAX_FILE).unwrap();
        for n in 0..5 {
            file.append(&entry(n).to_line()).unwrap();
        }
        let since = entry(3).at;
        let found = read(dir.path(), Some(since)).unwrap();
        assert_eq!(found.entries, vec![entry(3), entry(4)]);
        let now = entry(4).at;
        let an_hour = parse_since("1h", now).unwrap();
        assert_eq!(an_hour, now - Duration::from_secs(3600));
        let two_seconds = parse_since("2s", now).unwrap();
        assert_eq!(
            read(dir.path(), Some(two_seconds)).unwrap().entries.len(),
            3
        );
        assert_eq!(
            parse_since("2026-11-25T15:03:10+01:00", now).unwrap(),
            entry(3).at
        );
        assert!(parse_since("lately", now).unwrap_err().contains("lately"));
    }

    #[test]
    fn no_file_is_no_entries() {
        let dir = tempfile::tempdir().unwrap();
        let found = read(dir.path(), None).unwrap();
        assert!(found.entries.is_empty() && found.bad.is_empty());
    }

    #[tokio::test]
    async fn the_writer_writes_what_was_recorded_and_ends_when_the_log_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (log, writer) = spawn(dir.path()).unwrap();
        let clone = log.clone();
        log.record(entry(1));
        clone.record(entry(2));
        drop((log, clone));
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
        let found = read(dir.path(), None).unwrap();
        assert_eq!(found.entries, vec![entry(1), entry(2)]);
    }

    #[test]
    fn a_full_queue_counts_instead_of_waiting() {
        let (tx, mut rx) = mpsc::channel(1);
        let log = AuditLog::to_channel(tx);
        log.record(entry(1));
        log.record(entry(2));
        log.record(entry(3));
        assert_eq!(log.dropped(), 2);
        assert_eq!(rx.try_recv().unwrap(), entry(1));
    }
}
