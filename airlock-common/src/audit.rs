//! The tamper-evident audit log: append-only JSON lines, hash-chained.
//!
//! Each record carries `seq`, the previous record's hash (`prev`) and its own
//! `hash` = SHA-256(prev + "\n" + canonical JSON of the record without
//! `hash`). Records are fsync'd before `append` returns. A head anchor
//! (`{"seq","hash"}`) beside the log lets `verify` notice records cut off the
//! end, which the chain alone cannot show. The anchor is replaced after the
//! log is synced, so after a crash it may lag the log, never lead it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::timefmt::{now_unix, parse_rfc3339, rfc3339};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const RESERVED: [&str; 5] = ["seq", "ts", "event", "prev", "hash"];
const LOG_MODE: u32 = 0o640;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log I/O: {0}")]
    Io(#[from] io::Error),
    #[error("audit log is damaged: {0}")]
    Corrupt(String),
    #[error("invalid audit event: {0}")]
    InvalidEvent(String),
}

/// The last record's position in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// One parsed record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub ts: i64,
    pub event: String,
    /// Event fields only (the reserved keys are in the fields above).
    pub fields: Map<String, Value>,
    pub prev: String,
    pub hash: String,
    /// 1-based line in the file.
    pub line: usize,
    pub raw: String,
}

impl Record {
    pub fn field_str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    fn parse(raw: &str, line: usize) -> Result<Record, String> {
        let mut object: Map<String, Value> =
            serde_json::from_str(raw).map_err(|e| format!("not a JSON object: {e}"))?;
        let mut take_str = |key: &str| match object.remove(key) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(format!("missing or non-string {key:?}")),
        };
        let ts = take_str("ts")?;
        let event = take_str("event")?;
        let prev = take_str("prev")?;
        let hash = take_str("hash")?;
        let seq = object
            .remove("seq")
            .and_then(|v| v.as_u64())
            .ok_or("missing or non-integer \"seq\"")?;
        let ts = parse_rfc3339(&ts).ok_or("\"ts\" is not an RFC 3339 time")?;
        Ok(Record {
            seq,
            ts,
            event,
            fields: object,
            prev,
            hash,
            line,
            raw: raw.to_string(),
        })
    }

    /// The hash this record's content and `prev` call for.
    fn expected_hash(&self) -> String {
        let mut object = self.fields.clone();
        object.insert("seq".into(), self.seq.into());
        object.insert("ts".into(), rfc3339(self.ts).into());
        object.insert("event".into(), self.event.clone().into());
        object.insert("prev".into(), self.prev.clone().into());
        chain_hash(&self.prev, &object)
    }
}

fn chain_hash(prev: &str, object_without_hash: &Map<String, Value>) -> String {
    let canonical = serde_json::to_string(object_without_hash).expect("JSON maps serialise");
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(b"\n");
    ctx.update(canonical.as_bytes());
    hex::encode(ctx.finish())
}

/// Lines of the log, with a flag for an unterminated last line (a write cut
/// short or a truncation in the middle of a record).
fn read_lines(path: &Path) -> io::Result<(Vec<String>, bool)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(e),
    };
    let unterminated = !text.is_empty() && !text.ends_with('\n');
    Ok((text.lines().map(str::to_string).collect(), unterminated))
}

/// Reads every record for display. An unparseable line is an error naming it.
pub fn read_records(path: &Path) -> Result<Vec<Record>, AuditError> {
    let (lines, _) = read_lines(path)?;
    lines
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            Record::parse(raw, i + 1)
                .map_err(|e| AuditError::Corrupt(format!("line {}: {e}", i + 1)))
        })
        .collect()
}

pub fn read_head(head_path: &Path) -> Result<Option<Head>, AuditError> {
    match std::fs::read(head_path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AuditError::Corrupt(format!("{}: {e}", head_path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The first thing wrong with a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Not JSON, missing fields, or an incomplete last line.
    Malformed { line: usize, message: String },
    /// The record's hash does not match its content.
    Edited { line: usize, seq: u64 },
    /// `seq` jumped forward: the records in between are gone.
    Removed {
        line: usize,
        expected_seq: u64,
        found_seq: u64,
    },
    /// `seq` went backwards or the missing record appears later.
    Reordered {
        line: usize,
        expected_seq: u64,
        found_seq: u64,
    },
    /// `prev` does not name the previous record though the record is
    /// self-consistent (rewritten with a recomputed hash).
    ChainBroken { line: usize, seq: u64 },
    /// The head anchor is ahead of the log's last record.
    Truncated { last_seq: u64, head_seq: u64 },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Malformed { line, message } => {
                write!(f, "line {line} is not a valid record ({message})")
            }
            Problem::Edited { line, seq } => write!(
                f,
                "record {seq} (line {line}) was edited: its hash does not match its content"
            ),
            Problem::Removed {
                line,
                expected_seq,
                found_seq,
            } => write!(
                f,
                "record {expected_seq} was removed: line {line} holds record {found_seq} where record {expected_seq} belongs"
            ),
            Problem::Reordered {
                line,
                expected_seq,
                found_seq,
            } => write!(
                f,
                "records were reordered: line {line} holds record {found_seq} where record {expected_seq} belongs"
            ),
            Problem::ChainBroken { line, seq } => write!(
                f,
                "record {seq} (line {line}) was rewritten: it does not link to the record before it"
            ),
            Problem::Truncated { last_seq, head_seq } => write!(
                f,
                "the log was truncated: it ends at record {last_seq} but the head anchor records {head_seq}; records {}..={head_seq} were removed",
                last_seq + 1
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    pub last_seq: u64,
    /// The first problem found, if any.
    pub problem: Option<Problem>,
}

/// A `chain_restarted` record legitimately links to the last parseable record
/// before damage; verification reports the damage itself first anyway.
fn check_chain(lines: &[String], unterminated: bool) -> (u64, u64, Option<Problem>, Option<Head>) {
    let mut expected_seq = 1;
    let mut prev_hash = GENESIS.to_string();
    let mut count = 0;
    let mut last = None;
    let seqs: Vec<Option<u64>> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v.get("seq").and_then(Value::as_u64))
        })
        .collect();
    for (i, raw) in lines.iter().enumerate() {
        let line = i + 1;
        if unterminated && line == lines.len() {
            let problem = Problem::Malformed {
                line,
                message: "incomplete last record (the log was cut)".into(),
            };
            return (count, expected_seq - 1, Some(problem), last);
        }
        let record = match Record::parse(raw, line) {
            Ok(r) => r,
            Err(message) => {
                return (
                    count,
                    expected_seq - 1,
                    Some(Problem::Malformed { line, message }),
                    last,
                )
            }
        };
        if record.hash != record.expected_hash() {
            let problem = Problem::Edited {
                line,
                seq: record.seq,
            };
            return (count, expected_seq - 1, Some(problem), last);
        }
        if record.seq != expected_seq {
            let missing_later = seqs[i + 1..].contains(&Some(expected_seq));
            let problem = if record.seq < expected_seq || missing_later {
                Problem::Reordered {
                    line,
                    expected_seq,
                    found_seq: record.seq,
                }
            } else {
                Problem::Removed {
                    line,
                    expected_seq,
                    found_seq: record.seq,
                }
            };
            return (count, expected_seq - 1, Some(problem), last);
        }
        if record.prev != prev_hash {
            let problem = Problem::ChainBroken {
                line,
                seq: record.seq,
            };
            return (count, expected_seq - 1, Some(problem), last);
        }
        count += 1;
        expected_seq += 1;
        prev_hash = record.hash.clone();
        last = Some(Head {
            seq: record.seq,
            hash: record.hash,
        });
    }
    (count, expected_seq - 1, None, last)
}

/// Verifies the whole chain, and with `head` that nothing was cut off the end.
pub fn verify(path: &Path, head: Option<&Head>) -> Result<VerifyReport, AuditError> {
    let (lines, unterminated) = read_lines(path)?;
    let (records, last_seq, problem, _) = check_chain(&lines, unterminated);
    let truncated = match head {
        Some(h) if h.seq > last_seq => Some(Problem::Truncated {
            last_seq,
            head_seq: h.seq,
        }),
        _ => None,
    };
    let problem = problem.or(truncated);
    Ok(VerifyReport {
        records,
        last_seq,
        problem,
    })
}

/// Filter for `airlockctl audit`.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since: Option<i64>,
    pub service: Option<String>,
    pub session: Option<String>,
}

impl Filter {
    pub fn matches(&self, r: &Record) -> bool {
        self.since.is_none_or(|t| r.ts >= t)
            && self
                .service
                .as_deref()
                .is_none_or(|s| r.field_str("service") == Some(s))
            && self
                .session
                .as_deref()
                .is_none_or(|s| r.field_str("session") == Some(s))
    }
}

/// An open log, positioned at the end of its chain.
pub struct AuditLog {
    file: File,
    head_path: PathBuf,
    head: Head,
}

impl AuditLog {
    /// Opens (creating if absent) the log. A log whose chain does not verify
    /// is refused with `Corrupt`: appending would hide where it broke.
    pub fn open(path: &Path, head_path: &Path) -> Result<AuditLog, AuditError> {
        let (lines, unterminated) = read_lines(path)?;
        let (_, _, problem, last) = check_chain(&lines, unterminated);
        if let Some(problem) = problem {
            return Err(AuditError::Corrupt(problem.to_string()));
        }
        Self::open_at(path, head_path, last)
    }

    /// Opens a log whose chain is broken and appends a `chain_restarted`
    /// record linked to the last parseable record. `verify` keeps reporting
    /// the original damage.
    pub fn open_after_break(
        path: &Path,
        head_path: &Path,
        reason: &str,
    ) -> Result<AuditLog, AuditError> {
        let (lines, _) = read_lines(path)?;
        let last = lines
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, raw)| Record::parse(raw, i + 1).ok());
        let broken_at = last.as_ref().map_or(1, |r| r.seq + 1);
        if !lines.is_empty() && !std::fs::read(path)?.ends_with(b"\n") {
            // Terminate a cut line so the new record starts on its own line.
            OpenOptions::new()
                .append(true)
                .open(path)?
                .write_all(b"\n")?;
        }
        let last = last.map(|r| Head {
            seq: r.seq,
            hash: r.hash,
        });
        let mut log = Self::open_at(path, head_path, last)?;
        let mut fields = Map::new();
        fields.insert("service".into(), "audit".into());
        fields.insert("reason".into(), reason.into());
        fields.insert("broken_at_seq".into(), broken_at.into());
        log.append("chain_restarted", fields)?;
        Ok(log)
    }

    fn open_at(path: &Path, head_path: &Path, last: Option<Head>) -> Result<AuditLog, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(LOG_MODE)
            .open(path)?;
        Ok(AuditLog {
            file,
            head_path: head_path.to_path_buf(),
            head: last.unwrap_or(Head {
                seq: 0,
                hash: GENESIS.into(),
            }),
        })
    }

    pub fn head(&self) -> Head {
        self.head.clone()
    }

    /// Appends one record and fsyncs it before returning.
    pub fn append(
        &mut self,
        event: &str,
        fields: Map<String, Value>,
    ) -> Result<Record, AuditError> {
        if event.is_empty()
            || event.len() > 64
            || !event.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(AuditError::InvalidEvent(format!(
                "bad event name {event:?}"
            )));
        }
        if let Some(key) = RESERVED.iter().find(|k| fields.contains_key(**k)) {
            return Err(AuditError::InvalidEvent(format!(
                "field {key:?} is reserved"
            )));
        }
        let seq = self.head.seq + 1;
        let ts = now_unix();
        let mut object = fields.clone();
        object.insert("seq".into(), seq.into());
        object.insert("ts".into(), rfc3339(ts).into());
        object.insert("event".into(), event.into());
        object.insert("prev".into(), self.head.hash.clone().into());
        let hash = chain_hash(&self.head.hash, &object);
        object.insert("hash".into(), hash.clone().into());
        let mut line = serde_json::to_string(&object).expect("JSON maps serialise");
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()?;
        let record = Record {
            seq,
            ts,
            event: event.into(),
            fields,
            prev: self.head.hash.clone(),
            hash: hash.clone(),
            line: 0,
            raw: line.trim_end().into(),
        };
        self.head = Head { seq, hash };
        self.write_head()?;
        Ok(record)
    }

    fn write_head(&self) -> io::Result<()> {
        let tmp = self.head_path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(LOG_MODE)
            .open(&tmp)?;
        file.write_all(&serde_json::to_vec(&self.head).expect("heads serialise"))?;
        drop(file);
        std::fs::rename(&tmp, &self.head_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    fn fields(i: u64) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "service".into(),
            if i.is_multiple_of(2) {
                "gateway"
            } else {
                "totp"
            }
            .into(),
        );
        m.insert("session".into(), format!("s{}", i % 3).into());
        m.insert("n".into(), i.into());
        m
    }

    fn log_with(n: u64) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let head = dir.path().join("audit.head");
        let mut log = AuditLog::open(&path, &head).unwrap();
        for i in 1..=n {
            log.append("policy_decision", fields(i)).unwrap();
        }
        (dir, path, head)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    fn problem(path: &Path, head: &Path) -> Option<Problem> {
        verify(path, read_head(head).unwrap().as_ref())
            .unwrap()
            .problem
    }

    #[test]
    fn intact_log_verifies_and_reopen_continues_the_chain() {
        let (_d, path, head) = log_with(100);
        let report = verify(&path, read_head(&head).unwrap().as_ref()).unwrap();
        assert_eq!(
            (report.records, report.last_seq, report.problem),
            (100, 100, None)
        );
        let mut log = AuditLog::open(&path, &head).unwrap();
        assert_eq!(log.append("grant_issued", Map::new()).unwrap().seq, 101);
        assert_eq!(problem(&path, &head), None);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn an_edited_record_is_named() {
        let (_d, path, head) = log_with(100);
        let mut l = lines(&path);
        l[39] = l[39].replace("\"n\":40", "\"n\":41");
        write_lines(&path, &l);
        assert_eq!(
            problem(&path, &head),
            Some(Problem::Edited { line: 40, seq: 40 })
        );
        assert!(matches!(
            AuditLog::open(&path, &head),
            Err(AuditError::Corrupt(_))
        ));
    }

    #[test]
    fn removed_reordered_truncated_and_cut_logs_are_detected() {
        let (_d, path, head) = log_with(100);
        let original = lines(&path);

        let mut removed = original.clone();
        removed.remove(39);
        write_lines(&path, &removed);
        assert_eq!(
            problem(&path, &head),
            Some(Problem::Removed {
                line: 40,
                expected_seq: 40,
                found_seq: 41
            })
        );

        let mut swapped = original.clone();
        swapped.swap(39, 40);
        write_lines(&path, &swapped);
        assert_eq!(
            problem(&path, &head),
            Some(Problem::Reordered {
                line: 40,
                expected_seq: 40,
                found_seq: 41
            })
        );

        write_lines(&path, &original[..97]);
        assert_eq!(
            problem(&path, &head),
            Some(Problem::Truncated {
                last_seq: 97,
                head_seq: 100
            })
        );

        let mut text = original.join("\n");
        text.truncate(text.len() - 10);
        std::fs::write(&path, text).unwrap();
        assert!(matches!(
            problem(&path, &head),
            Some(Problem::Malformed { line: 100, .. })
        ));
    }

    #[test]
    fn a_rewritten_record_with_a_fresh_hash_breaks_the_chain() {
        let (_d, path, head) = log_with(10);
        let mut l = lines(&path);
        let mut r = Record::parse(&l[4], 5).unwrap();
        r.fields.insert("n".into(), 999.into());
        r.prev = GENESIS.into();
        let mut obj = r.fields.clone();
        obj.insert("seq".into(), r.seq.into());
        obj.insert("ts".into(), rfc3339(r.ts).into());
        obj.insert("event".into(), r.event.clone().into());
        obj.insert("prev".into(), r.prev.clone().into());
        let hash = chain_hash(&r.prev, &obj);
        obj.insert("hash".into(), hash.into());
        l[4] = serde_json::to_string(&obj).unwrap();
        write_lines(&path, &l);
        assert_eq!(
            problem(&path, &head),
            Some(Problem::ChainBroken { line: 5, seq: 5 })
        );
    }

    #[test]
    fn reserved_fields_are_refused_and_nothing_is_written() {
        let (_d, path, head) = log_with(3);
        let mut log = AuditLog::open(&path, &head).unwrap();
        let mut f = Map::new();
        f.insert("seq".into(), 1.into());
        assert!(matches!(
            log.append("x", f),
            Err(AuditError::InvalidEvent(_))
        ));
        assert!(matches!(
            log.append("Bad-Name", Map::new()),
            Err(AuditError::InvalidEvent(_))
        ));
        assert_eq!(lines(&path).len(), 3);
    }

    #[test]
    fn open_after_break_restarts_but_keeps_the_damage_visible() {
        let (_d, path, head) = log_with(10);
        let mut l = lines(&path);
        l[2] = l[2].replace("\"n\":3", "\"n\":4");
        write_lines(&path, &l);
        let mut log = AuditLog::open_after_break(&path, &head, "edited").unwrap();
        log.append("service_started", Map::new()).unwrap();
        assert_eq!(
            problem(&path, &head),
            Some(Problem::Edited { line: 3, seq: 3 })
        );
        let records = read_records(&path).unwrap();
        assert_eq!(records[10].event, "chain_restarted");
        assert_eq!(records[10].seq, 11);
    }

    #[test]
    fn filters_select_by_time_service_and_session() {
        let (_d, path, _head) = log_with(9);
        let records = read_records(&path).unwrap();
        let by_service = Filter {
            service: Some("totp".into()),
            ..Filter::default()
        };
        assert_eq!(records.iter().filter(|r| by_service.matches(r)).count(), 5);
        let by_session = Filter {
            session: Some("s0".into()),
            ..Filter::default()
        };
        assert_eq!(records.iter().filter(|r| by_session.matches(r)).count(), 3);
        let future = Filter {
            since: Some(now_unix() + 3600),
            ..Filter::default()
        };
        assert_eq!(records.iter().filter(|r| future.matches(r)).count(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_byte_change_in_a_record_is_detected(record in 0usize..20, offset in 0usize..200, byte in 0u8..128) {
            let (_d, path, head) = log_with(20);
            let mut l = lines(&path);
            let mut bytes = l[record].clone().into_bytes();
            let at = offset % bytes.len();
            prop_assume!(bytes[at] != byte);
            bytes[at] = byte;
            l[record] = String::from_utf8_lossy(&bytes).into_owned();
            write_lines(&path, &l);
            prop_assert!(problem(&path, &head).is_some());
        }
    }
}
