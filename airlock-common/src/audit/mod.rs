//! The tamper-evident audit log.
//!
//! An append-only file of JSON lines, one record per event. Each record
//! carries `seq` (1, 2, 3, ...), `prev` (the previous record's hash; 64 zeros
//! for the first) and `hash`, the SHA-256 of `prev`, a newline and the
//! canonical JSON (sorted keys, compact) of the record without `hash`.
//! Editing, removing or reordering records therefore breaks the chain where
//! it happened. Cutting records from the end leaves a valid, shorter chain,
//! so after every append the newest `{"seq","hash"}` is also written to a
//! separate head file; `verify` compares the log against it.
//!
//! Records are fsynced before `append` returns, so an event the gateway acted
//! on is on disk. [`AuditLog::write`] appends without waiting, for callers
//! that wait on [`GroupCommit`] outside their lock, so that one fsync covers
//! every record written meanwhile (see [`commit`]). The head is written after
//! the sync without fsync: after a crash it may lag the log, which is
//! harmless, but never lead it.
//!
//! The gateway is the only writer; `airlockctl` only reads. Since the gateway
//! user could therefore rewrite the whole chain consistently, airlock-totp
//! countersigns its head from time to time (see [`countersign`]).

mod commit;
pub mod countersign;
mod head;
mod record;
mod verify;

#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde_json::{Map, Value};

use crate::timefmt::now_unix;
pub use commit::GroupCommit;
use head::HeadWriter;
pub use head::{read_head, Head};
pub use record::Record;
use record::{last_entry, parse_lines, seal, GENESIS};
pub use verify::{verify, verify_bytes, Problem, VerifyReport};
use verify::{walk, Start};

/// Readable by root and the admin group (`airlockctl audit`), nobody else.
pub(super) const FILE_MODE: u32 = 0o640;

/// Event of the record [`AuditLog::open_after_break`] writes.
pub const RESTART_EVENT: &str = "chain_restarted";

/// Why the audit log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log I/O error: {0}")]
    Io(#[from] io::Error),
    /// The log (or its head anchor) fails verification; the message says where.
    #[error("audit log is damaged: {0}")]
    Corrupt(String),
    /// The event name or fields were rejected; nothing was written.
    #[error("invalid audit event: {0}")]
    InvalidEvent(String),
    /// The record was written and synced, but the head anchor was not
    /// updated. The record stands, so the event happened; the anchor lags
    /// (harmless) and the next append replaces it.
    #[error("audit record {} was written, but its head anchor could not be updated: {error}", record.seq)]
    Anchor {
        record: Box<Record>,
        error: io::Error,
    },
    /// As [`Anchor`](Self::Anchor), for a group commit: the records this
    /// caller waited for are durable, the anchor lags.
    #[error("audit records were synced, but the head anchor could not be updated: {0}")]
    AnchorLags(io::Error),
}

/// The log, open for appending.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    /// Syncs the file and then stores the head anchor.
    commit: GroupCommit,
    /// `seq` and `hash` of the newest record (0 and the genesis hash if none).
    seq: u64,
    hash: String,
    /// Lines in the file, to number the records appended.
    lines: usize,
    /// The file ends in an unterminated fragment, so the next write starts
    /// with a newline to keep the fragment on its own (malformed) line.
    terminate_fragment: bool,
    /// A write or fsync failed, so the file may end in a partial line and
    /// further records could be glued onto it. Reopening re-checks the file.
    failed: bool,
}

impl AuditLog {
    /// Opens (creating if absent) the log at `path` with its head anchor at
    /// `head_path`, checking the chain before continuing it. A broken chain,
    /// a cut last line or a head ahead of the log gives
    /// [`AuditError::Corrupt`], so nothing is silently appended onto damage;
    /// the caller then decides whether to [`open_after_break`](Self::open_after_break).
    /// The chain is checked from the last `chain_restarted` record on: the
    /// damage before it has been acknowledged and `verify` still reports it.
    pub fn open(path: &Path, head_path: &Path) -> Result<AuditLog, AuditError> {
        let head = read_head(head_path)?;
        let (file, content) = open_log_file(path)?;
        let lines = parse_lines(&content);
        if let Some(finding) = walk(&lines, Start::latest(&lines), head.as_ref()) {
            return Err(AuditError::Corrupt(finding.problem.to_string()));
        }
        let log = AuditLog::continuing(file, head_path, &lines, false)?;
        let current = log.head();
        if head.as_ref() == Some(&current) {
            log.commit.head_stored(current.seq);
        } else if log.seq > 0 {
            // The head lagged (a crash after the log's fsync): catch it up.
            log.commit.store_head(&current)?;
        }
        Ok(log)
    }

    /// Opens a log that [`open`](Self::open) refuses and appends a
    /// `chain_restarted` record linking to the last parseable record, with
    /// `reason`, `broken_at_seq` and the old head (`head_seq`, `head_hash`),
    /// so the gateway can keep auditing. The damage stays in the file and
    /// `verify` keeps reporting it first; the old head in the record keeps a
    /// truncation visible even though the head file moves on. If the log
    /// opens cleanly after all, nothing is appended.
    pub fn open_after_break(
        path: &Path,
        head_path: &Path,
        reason: &str,
    ) -> Result<AuditLog, AuditError> {
        let (head, head_unreadable) = match read_head(head_path) {
            Ok(head) => (head, false),
            Err(AuditError::Corrupt(_)) => (None, true),
            Err(e) => return Err(e),
        };
        let (file, content) = open_log_file(path)?;
        let lines = parse_lines(&content);
        let finding = walk(&lines, Start::latest(&lines), head.as_ref());
        if finding.is_none() && !head_unreadable {
            return AuditLog::open(path, head_path);
        }
        let ends_in_fragment = !content.is_empty() && !content.ends_with(b"\n");
        let mut log = AuditLog::continuing(file, head_path, &lines, ends_in_fragment)?;
        let broken_at_seq = finding.map_or(log.seq + 1, |f| f.broken_at_seq);
        let mut fields = Map::new();
        fields.insert("reason".into(), reason.into());
        fields.insert("broken_at_seq".into(), broken_at_seq.into());
        if let Some(head) = head {
            fields.insert("head_seq".into(), head.seq.into());
            fields.insert("head_hash".into(), head.hash.into());
        }
        log.append(RESTART_EVENT, fields)?;
        Ok(log)
    }

    /// Continues after the last parseable record in `lines`.
    fn continuing(
        file: File,
        head_path: &Path,
        lines: &[record::Line],
        terminate_fragment: bool,
    ) -> io::Result<AuditLog> {
        let last = last_entry(lines);
        let seq = last.map_or(0, |e| e.record.seq);
        let hash = last.map_or_else(|| GENESIS.to_owned(), |e| e.record.hash.clone());
        let commit = GroupCommit::new(
            file.try_clone()?,
            Head {
                seq,
                hash: hash.clone(),
            },
            HeadWriter::new(head_path),
        );
        Ok(AuditLog {
            file,
            commit,
            seq,
            hash,
            lines: lines.len(),
            terminate_fragment,
            failed: false,
        })
    }

    /// The handle to wait on for records [`write`](Self::write) appended.
    pub fn group_commit(&self) -> GroupCommit {
        self.commit.clone()
    }

    /// Appends one record and fsyncs it before returning it. Rejected
    /// events (bad name, reserved field keys) write nothing. A failure to
    /// update the head after the fsync is [`AuditError::Anchor`], which
    /// carries the record: it was written all the same.
    pub fn append(
        &mut self,
        event: &str,
        fields: Map<String, Value>,
    ) -> Result<Record, AuditError> {
        let record = self.write(event, fields)?;
        match self.commit.wait_durable(record.seq) {
            Ok(()) => Ok(record),
            Err(AuditError::AnchorLags(error)) => Err(AuditError::Anchor {
                record: Box::new(record),
                error,
            }),
            Err(e) => Err(e),
        }
    }

    /// Appends one record to the file without syncing it: the caller must
    /// [`GroupCommit::wait_durable`] for its `seq` before acting on it
    /// anywhere outside this process. Rejected events write nothing.
    pub fn write(&mut self, event: &str, fields: Map<String, Value>) -> Result<Record, AuditError> {
        if self.failed || self.commit.has_failed() {
            return Err(AuditError::Io(io::Error::other(
                "an earlier write to the audit log failed; reopen the log to re-check it",
            )));
        }
        let line = self.lines + 1;
        let entry = seal(self.seq + 1, now_unix(), event, fields, &self.hash, line)?;
        let raw = &entry.record.raw;
        let mut bytes = Vec::with_capacity(raw.len() + 2);
        if self.terminate_fragment {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(raw.as_bytes());
        bytes.push(b'\n');
        // One write_all on an O_APPEND file: the line lands whole at the end.
        if let Err(e) = self.file.write_all(&bytes) {
            self.failed = true;
            return Err(e.into());
        }
        self.terminate_fragment = false;
        self.lines = line;
        self.seq = entry.record.seq;
        self.hash.clone_from(&entry.record.hash);
        self.commit.written(&self.head())?;
        Ok(entry.record)
    }

    /// The newest record's `seq` and `hash` (0 and 64 zeros when empty).
    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// Opens the log for appending, creating it with [`FILE_MODE`], and reads
/// its current content.
fn open_log_file(path: &Path) -> Result<(File, Vec<u8>), AuditError> {
    let file = create_or_open(OpenOptions::new().append(true), path)?;
    let content = fs::read(path)?;
    Ok((file, content))
}

/// Opens `path` with `options`, creating it with exactly [`FILE_MODE`]
/// (the umask is not allowed to take away the admin group's read access).
fn create_or_open(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    match options.clone().create_new(true).mode(FILE_MODE).open(path) {
        Ok(file) => {
            file.set_permissions(Permissions::from_mode(FILE_MODE))?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options.open(path),
        Err(e) => Err(e),
    }
}

/// Reads the log's bytes once, for a reader that verifies them and then
/// uses the same bytes: only a regular file, not followed through a
/// symlink, since whoever can write the log's directory could otherwise
/// serve one content to the check and another to the reader (a FIFO).
pub fn read_log(path: &Path) -> Result<Vec<u8>, AuditError> {
    use std::io::Read;
    let mut file = OpenOptions::new()
        .read(true)
        // Non-blocking, so that a FIFO is refused rather than waited on.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(AuditError::Corrupt(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mut content = Vec::new();
    file.read_to_end(&mut content)?;
    Ok(content)
}

/// Reads all records for display, without verifying the chain. Every line
/// must parse: an unparseable one is an error naming it, rather than being
/// skipped where nobody would notice.
pub fn read_records(path: &Path) -> Result<Vec<Record>, AuditError> {
    parse_records(&read_log(path)?)
}

/// [`read_records`] on bytes already read (see [`read_log`]).
pub fn parse_records(content: &[u8]) -> Result<Vec<Record>, AuditError> {
    parse_lines(content)
        .into_iter()
        .enumerate()
        .map(|(index, line)| {
            line.map(|entry| entry.record)
                .map_err(|message| AuditError::Corrupt(format!("line {}: {message}", index + 1)))
        })
        .collect()
}

/// Where [`records_after`] started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// After the record the mark names.
    AtMark,
    /// No mark was given (state from before marks): from the first record,
    /// or after the newest `chain_restarted` record.
    FromStart,
    /// The mark is not in the log (records were cut or edited and the chain
    /// restarted): after the newest `chain_restarted` record, or nowhere.
    AfterRestart,
}

/// The sealed records after the one `mark` names, oldest first: what a
/// state snapshot taken at `mark` does not reflect yet. Lines that do not
/// parse or whose hash does not match their content are skipped (`verify`
/// reports them): nobody but the gateway should be able to add state here.
///
/// A mark that is not in the log means the log lost or changed records
/// after it. What happened there is unknown, so nothing before the newest
/// `chain_restarted` record is returned: replaying part of a history (a
/// request without its cut-off denial) would revive decided requests.
pub fn records_after(
    path: &Path,
    mark: Option<&Head>,
) -> Result<(Vec<Record>, Resumed), AuditError> {
    let content = match fs::read(path) {
        Ok(content) => content,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok((Vec::new(), Resumed::FromStart))
        }
        Err(e) => return Err(e.into()),
    };
    let mut records: Vec<Record> = parse_lines(&content)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.is_sealed())
        .map(|entry| entry.record)
        .collect();
    let after_restart = records
        .iter()
        .rposition(|r| r.event == RESTART_EVENT)
        .map(|at| at + 1);
    let (start, resumed) = match mark {
        None => (after_restart.unwrap_or(0), Resumed::FromStart),
        Some(mark) => match records
            .iter()
            .rposition(|r| r.seq == mark.seq && r.hash == mark.hash)
        {
            Some(at) => (at + 1, Resumed::AtMark),
            None => (
                after_restart.unwrap_or(records.len()),
                Resumed::AfterRestart,
            ),
        },
    };
    records.drain(..start);
    Ok((records, resumed))
}

/// Which records `airlockctl audit` shows; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Records at or after this Unix time.
    pub since: Option<i64>,
    /// Records whose `service` field (the daemon: `gateway`, `totp`,
    /// `enforcer`) or `credential` field (a credential service: `gmail`) is
    /// exactly this.
    pub service: Option<String>,
    /// Records whose `session` field is exactly this.
    pub session: Option<String>,
}

impl Filter {
    pub fn matches(&self, r: &Record) -> bool {
        self.since.is_none_or(|since| r.ts >= since)
            && self.service.as_deref().is_none_or(|s| {
                r.field_str("service") == Some(s) || r.field_str("credential") == Some(s)
            })
            && self
                .session
                .as_deref()
                .is_none_or(|s| r.field_str("session") == Some(s))
    }
}
