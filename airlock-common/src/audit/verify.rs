//! Checking the chain and naming the first place it is damaged.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use super::record::{parse_lines, Line, GENESIS};
use super::{AuditError, Head, RESTART_EVENT};

/// What is wrong with a log, located as precisely as the damage allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Not JSON, a required key missing, or an incomplete last line.
    Malformed { line: usize, message: String },
    /// The record's hash does not match its content (or its bytes are not
    /// the canonical form that was hashed).
    Edited { line: usize, seq: u64 },
    /// `seq` jumped forward and the skipped records appear nowhere later:
    /// records `expected_seq..found_seq` are gone.
    Removed {
        line: usize,
        expected_seq: u64,
        found_seq: u64,
    },
    /// `seq` went backwards or repeated, or jumped forward over a record
    /// that appears later in the file.
    Reordered {
        line: usize,
        expected_seq: u64,
        found_seq: u64,
    },
    /// The record is self-consistent but its `prev` is not the previous
    /// record's hash: it was replaced by a re-hashed one.
    ChainBroken { line: usize, seq: u64 },
    /// The head anchor is ahead of the log: records were cut from the end.
    Truncated { last_seq: u64, head_seq: u64 },
    /// The record at the head anchor's `seq` is not the one it anchored:
    /// the end of the log was cut and rewritten.
    HeadMismatch { line: usize, seq: u64 },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Malformed { line, message } => write!(f, "line {line} is malformed: {message}"),
            Problem::Edited { line, seq } => write!(
                f,
                "record {seq} (line {line}) was edited: its hash does not match its content"
            ),
            Problem::Removed { line, expected_seq, found_seq } => {
                let missing = if found_seq - expected_seq == 1 {
                    format!("record {expected_seq} was removed")
                } else {
                    format!("records {expected_seq} to {} were removed", found_seq - 1)
                };
                write!(
                    f,
                    "{missing}: line {line} holds record {found_seq} where record {expected_seq} was expected"
                )
            }
            Problem::Reordered { line, expected_seq, found_seq } => write!(
                f,
                "records were reordered: line {line} holds record {found_seq} where record {expected_seq} was expected"
            ),
            Problem::ChainBroken { line, seq } => write!(
                f,
                "record {seq} (line {line}) does not link to the record before it: \
                 it was replaced by a record with a recomputed hash"
            ),
            Problem::Truncated { last_seq, head_seq } => write!(
                f,
                "the log was truncated: records {} to {head_seq} were cut from the end; the log ends at record {last_seq} \
                 but its head anchor records {head_seq}",
                last_seq + 1
            ),
            Problem::HeadMismatch { line, seq } => write!(
                f,
                "record {seq} (line {line}) is not the record the head anchor recorded: \
                 the end of the log was rewritten"
            ),
        }
    }
}

/// Result of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Lines that parse as records (all of them when the log is intact).
    pub records: u64,
    /// `seq` of the last line that parses as a record; 0 for an empty log.
    pub last_seq: u64,
    /// The first problem in file order; later damage may hide behind it.
    pub problem: Option<Problem>,
}

/// Verifies the whole chain from the first line. `head` (see
/// [`read_head`](super::read_head)) is what detects records cut from the
/// end; without it a truncated log is indistinguishable from a short one.
/// Errors only for I/O: damage is reported in the [`VerifyReport`]. A
/// missing log with a head is reported as truncated, not as an I/O error.
pub fn verify(path: &Path, head: Option<&Head>) -> Result<VerifyReport, AuditError> {
    let content = match fs::read(path) {
        Ok(content) => content,
        Err(e) if e.kind() == io::ErrorKind::NotFound && head.is_some() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(verify_bytes(&content, head))
}

/// [`verify`] on the file's content (see [`read_log`](super::read_log)).
pub fn verify_bytes(content: &[u8], head: Option<&Head>) -> VerifyReport {
    let lines = parse_lines(content);
    let mut entries = lines.iter().filter_map(|line| line.as_ref().ok());
    VerifyReport {
        records: entries.clone().count() as u64,
        last_seq: entries.next_back().map_or(0, |e| e.record.seq),
        problem: walk(&lines, Start::Beginning, head).map(|finding| finding.problem),
    }
}

/// Where a walk along the chain starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// The first line, linking to the genesis hash: what `verify` checks.
    Beginning,
    /// The `chain_restarted` record at this line index, linking to the last
    /// parseable record before it. Opening the log checks only from the last
    /// restart, because the damage before it has already been acknowledged
    /// (and `verify` keeps reporting it).
    Restart(usize),
}

impl Start {
    /// The last `chain_restarted` record, or the beginning if there is none.
    pub(super) fn latest(lines: &[Line]) -> Start {
        lines
            .iter()
            .rposition(|line| matches!(line, Ok(e) if e.record.event == RESTART_EVENT))
            .map_or(Start::Beginning, Start::Restart)
    }
}

/// A problem plus the `seq` at which the chain stopped being trustworthy,
/// which a `chain_restarted` record carries as `broken_at_seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Finding {
    pub problem: Problem,
    pub broken_at_seq: u64,
}

/// Walks the chain and returns the first problem, checking per record, in
/// order: it parses, its hash matches its content, its `seq` is the next
/// one, its `prev` is the previous hash, it agrees with the head anchor.
pub(super) fn walk(lines: &[Line], start: Start, head: Option<&Head>) -> Option<Finding> {
    let first = match start {
        Start::Beginning => 0,
        Start::Restart(index) => index,
    };
    let anchor = lines[..first]
        .iter()
        .rev()
        .find_map(|line| line.as_ref().ok());
    let mut expected = anchor.map_or(1, |e| e.record.seq + 1);
    let mut prev = anchor.map_or(GENESIS, |e| e.record.hash.as_str());
    let found = |problem, broken_at_seq| {
        Some(Finding {
            problem,
            broken_at_seq,
        })
    };

    for (index, line) in lines.iter().enumerate().skip(first) {
        let line_no = index + 1;
        let entry = match line {
            Ok(entry) => entry,
            Err(message) => {
                let message = message.clone();
                return found(
                    Problem::Malformed {
                        line: line_no,
                        message,
                    },
                    expected,
                );
            }
        };
        let r = &entry.record;
        if !entry.is_sealed() {
            return found(
                Problem::Edited {
                    line: line_no,
                    seq: r.seq,
                },
                expected,
            );
        }
        if r.seq != expected {
            let missing_later = r.seq > expected
                && !lines[index + 1..]
                    .iter()
                    .any(|later| matches!(later, Ok(e) if e.record.seq == expected));
            let (line, expected_seq, found_seq) = (line_no, expected, r.seq);
            let problem = if missing_later {
                Problem::Removed {
                    line,
                    expected_seq,
                    found_seq,
                }
            } else {
                Problem::Reordered {
                    line,
                    expected_seq,
                    found_seq,
                }
            };
            return found(problem, expected);
        }
        if r.prev != prev {
            return found(
                Problem::ChainBroken {
                    line: line_no,
                    seq: r.seq,
                },
                expected,
            );
        }
        if head.is_some_and(|h| h.seq == r.seq && h.hash != r.hash) {
            return found(
                Problem::HeadMismatch {
                    line: line_no,
                    seq: r.seq,
                },
                expected,
            );
        }
        if r.event == RESTART_EVENT && start == Start::Beginning {
            if let Some(problem) = restart_claim(lines, index) {
                return found(problem, expected);
            }
        }
        expected += 1;
        prev = &r.hash;
    }
    let last_seq = expected - 1;
    match head {
        Some(h) if h.seq > last_seq => found(
            Problem::Truncated {
                last_seq,
                head_seq: h.seq,
            },
            last_seq + 1,
        ),
        _ => None,
    }
}

/// Replays the head check a `chain_restarted` record carries. Restarting
/// rewrites the head file, so without this a truncation repaired by a
/// restart would vanish from `verify`. Only called when every line before
/// `index` verified, so line `k` holds record `k + 1`.
fn restart_claim(lines: &[Line], index: usize) -> Option<Problem> {
    let Ok(entry) = &lines[index] else {
        return None;
    };
    let fields = &entry.record.fields;
    let head_seq = fields.get("head_seq").and_then(|v| v.as_u64())?;
    let head_hash = fields.get("head_hash").and_then(|v| v.as_str())?;
    let last_seq = entry.record.seq - 1;
    if head_seq > last_seq {
        return Some(Problem::Truncated { last_seq, head_seq });
    }
    let anchored = lines
        .get(usize::try_from(head_seq).ok()?.checked_sub(1)?)?
        .as_ref()
        .ok()?;
    (anchored.record.seq == head_seq && anchored.record.hash != head_hash).then_some(
        Problem::HeadMismatch {
            line: anchored.record.line,
            seq: head_seq,
        },
    )
}
