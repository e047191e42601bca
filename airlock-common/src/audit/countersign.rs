//! airlock-totp's countersignatures of the chain head.
//!
//! The gateway user writes the log and its head anchor, so it could rewrite
//! history and recompute every hash. airlock-totp therefore signs the head
//! (`seq` and `hash`) from time to time with a key only it holds, each
//! signature also naming the head it signed before, and keeps the latest in
//! its own state. The gateway stores each countersignature in the log as an
//! `audit_countersigned` record. A consistent rewrite then shows: a record
//! airlock-totp countersigned (or named as the previous head) no longer has
//! the hash it signed, or the log ends before it. Only records after the
//! latest countersignature can be rewritten unnoticed.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::Record;
use crate::dbus::HeadSignature;

/// Event of the record holding a countersignature.
pub const COUNTERSIGN_EVENT: &str = "audit_countersigned";
/// Domain separation: a head signature is never a grant signature.
const CONTEXT: &[u8] = b"airlock-audit-head-v1\0";

/// The bytes airlock-totp signs for a head.
pub fn signing_input(seq: u64, hash: &str, prev_seq: u64, prev_hash: &str) -> Vec<u8> {
    let mut input = CONTEXT.to_vec();
    input.extend_from_slice(format!("{seq}\0{hash}\0{prev_seq}\0{prev_hash}").as_bytes());
    input
}

/// airlock-totp's public key as `Totp1.PublicKey` gives it (standard base64
/// of the raw 32 bytes).
pub fn decode_public_key(text: &str) -> Result<Vec<u8>, String> {
    let key = B64.decode(text.trim()).map_err(|e| e.to_string())?;
    if key.len() != 32 {
        return Err(format!(
            "an Ed25519 public key is 32 bytes, got {}",
            key.len()
        ));
    }
    Ok(key)
}

/// Whether `signature` is airlock-totp's over `head`, with the raw 32-byte
/// Ed25519 public key.
pub fn verifies(head: &HeadSignature, public_key: &[u8]) -> bool {
    let Ok(signature) = B64.decode(&head.signature) else {
        return false;
    };
    let input = signing_input(head.seq, &head.hash, head.prev_seq, &head.prev_hash);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(&input, &signature)
        .is_ok()
}

/// A countersignature as an `audit_countersigned` record holds it.
pub fn from_record(record: &Record) -> Option<HeadSignature> {
    let number = |key: &str| record.fields.get(key).and_then(|v| v.as_u64());
    Some(HeadSignature {
        seq: number("head_seq")?,
        hash: record.field_str("head_hash")?.to_owned(),
        prev_seq: number("prev_head_seq")?,
        prev_hash: record.field_str("prev_head_hash")?.to_owned(),
        signature: record.field_str("signature")?.to_owned(),
    })
}

/// What a countersignature check found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CountersignProblem {
    /// An `audit_countersigned` record whose signature is not airlock-totp's.
    Forged { line: usize, last_good: u64 },
    /// Record `seq` is not the record airlock-totp countersigned.
    Rewritten { seq: u64, last_good: u64 },
    /// airlock-totp countersigned record `seq`, but the log ends before it.
    Cut {
        seq: u64,
        last_seq: u64,
        last_good: u64,
    },
}

impl CountersignProblem {
    /// The first record that may be rewritten: the one after the last good
    /// countersignature.
    pub fn first_suspect(&self) -> u64 {
        match self {
            CountersignProblem::Forged { last_good, .. }
            | CountersignProblem::Rewritten { last_good, .. }
            | CountersignProblem::Cut { last_good, .. } => last_good + 1,
        }
    }
}

impl fmt::Display for CountersignProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.first_suspect();
        match self {
            CountersignProblem::Forged { line, .. } => write!(
                f,
                "the countersignature on line {line} is not airlock-totp's"
            )?,
            CountersignProblem::Rewritten { seq, .. } => write!(
                f,
                "record {seq} is not the record airlock-totp countersigned: the log was \
                 rewritten and its hashes recomputed"
            )?,
            CountersignProblem::Cut { seq, last_seq, .. } => write!(
                f,
                "airlock-totp countersigned record {seq}, but the log ends at record {last_seq}"
            )?,
        }
        write!(
            f,
            "; the first record after the last good countersignature is record {first}"
        )
    }
}

/// Result of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountersignReport {
    /// Countersignatures checked (in the log, plus airlock-totp's latest).
    pub checked: usize,
    /// The highest record covered by a good countersignature; 0 for none.
    pub last_good: u64,
    pub problem: Option<CountersignProblem>,
}

/// Checks every countersignature in `records` (a log whose chain verified)
/// and then `latest`, airlock-totp's own latest (asked of it, so removing
/// records from the log does not hide a countersignature).
pub fn check(
    records: &[Record],
    public_key: &[u8],
    latest: Option<&HeadSignature>,
) -> CountersignReport {
    let hashes: HashMap<u64, &str> = records.iter().map(|r| (r.seq, r.hash.as_str())).collect();
    let last_seq = records.last().map_or(0, |r| r.seq);
    let mut report = CountersignReport {
        checked: 0,
        last_good: 0,
        problem: None,
    };
    let in_log = records
        .iter()
        .filter(|r| r.event == COUNTERSIGN_EVENT)
        .map(|r| (Some(r.line), from_record(r)));
    let live = latest.map(|head| (None, Some(head.clone())));
    for (line, head) in in_log.chain(live) {
        report.checked += 1;
        let Some(head) = head.filter(|head| verifies(head, public_key)) else {
            report.problem = Some(CountersignProblem::Forged {
                line: line.unwrap_or(0),
                last_good: report.last_good,
            });
            return report;
        };
        // The head it names as the one before, then the head signed: both
        // are airlock-totp's word.
        for (seq, hash) in [(head.prev_seq, &head.prev_hash), (head.seq, &head.hash)] {
            if seq == 0 {
                continue;
            }
            let last_good = report.last_good;
            match hashes.get(&seq) {
                Some(found) if *found == hash.as_str() => {
                    report.last_good = last_good.max(seq);
                }
                Some(_) => {
                    report.problem = Some(CountersignProblem::Rewritten { seq, last_good });
                    return report;
                }
                None => {
                    report.problem = Some(CountersignProblem::Cut {
                        seq,
                        last_seq,
                        last_good,
                    });
                    return report;
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{read_records, AuditLog};
    use base64::Engine;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use serde_json::{Map, Value};

    struct Totp {
        key: Ed25519KeyPair,
        latest: Option<HeadSignature>,
    }

    impl Totp {
        fn new() -> Totp {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
            Totp {
                key: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
                latest: None,
            }
        }

        fn public(&self) -> Vec<u8> {
            self.key.public_key().as_ref().to_vec()
        }

        /// As airlock-totp does: chained to the head signed before.
        fn countersign(&mut self, seq: u64, hash: &str) -> HeadSignature {
            let (prev_seq, prev_hash) = self
                .latest
                .as_ref()
                .map_or((0, String::new()), |h| (h.seq, h.hash.clone()));
            let input = signing_input(seq, hash, prev_seq, &prev_hash);
            let head = HeadSignature {
                seq,
                hash: hash.to_owned(),
                prev_seq,
                prev_hash,
                signature: B64.encode(self.key.sign(&input).as_ref()),
            };
            self.latest = Some(head.clone());
            head
        }
    }

    fn fields(head: &HeadSignature) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("head_seq".into(), head.seq.into());
        fields.insert("head_hash".into(), head.hash.clone().into());
        fields.insert("prev_head_seq".into(), head.prev_seq.into());
        fields.insert("prev_head_hash".into(), head.prev_hash.clone().into());
        fields.insert("signature".into(), head.signature.clone().into());
        fields
    }

    fn note(n: u64) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("n".into(), n.into());
        fields
    }

    /// Ten notes, with a countersignature after the 4th and the 8th.
    fn write_log(dir: &std::path::Path, totp: &mut Totp) -> Vec<Record> {
        let mut log = AuditLog::open(&dir.join("log"), &dir.join("head")).unwrap();
        for n in 1..=10 {
            log.append("note", note(n)).unwrap();
            if n == 4 || n == 8 {
                let head = log.head();
                let signed = totp.countersign(head.seq, &head.hash);
                log.append(COUNTERSIGN_EVENT, fields(&signed)).unwrap();
            }
        }
        read_records(&dir.join("log")).unwrap()
    }

    /// Rewrites the log as the gateway user could: every record again, with
    /// its own time, `edit` applied and all hashes recomputed;
    /// `keep_countersignatures` copies those records verbatim, or drops them.
    fn rewrite(
        records: &[Record],
        dir: &std::path::Path,
        edit: u64,
        keep_countersignatures: bool,
    ) -> Vec<Record> {
        use crate::audit::record::{seal, GENESIS};
        let mut prev = GENESIS.to_owned();
        let mut text = String::new();
        let mut seq = 0;
        for r in records {
            if r.event == COUNTERSIGN_EVENT && !keep_countersignatures {
                continue;
            }
            let mut fields = r.fields.clone();
            if r.seq == edit {
                fields.insert("n".into(), 999.into());
            }
            seq += 1;
            let entry = seal(seq, r.ts, &r.event, fields, &prev, seq as usize).unwrap();
            text.push_str(&entry.record.raw);
            text.push('\n');
            prev = entry.record.hash;
        }
        std::fs::write(dir.join("log"), text).unwrap();
        let rewritten = read_records(&dir.join("log")).unwrap();
        let report = crate::audit::verify(&dir.join("log"), None).unwrap();
        assert_eq!(report.problem, None, "the rewrite is not consistent");
        rewritten
    }

    #[test]
    fn an_untouched_log_passes() {
        let dir = tempfile::tempdir().unwrap();
        let mut totp = Totp::new();
        let records = write_log(dir.path(), &mut totp);
        let report = check(&records, &totp.public(), totp.latest.as_ref());
        assert_eq!(report.problem, None);
        // Two in the log and the live latest (the second again).
        assert_eq!((report.checked, report.last_good), (3, 9));
        assert_eq!(check(&records, &totp.public(), None).problem, None);
    }

    #[test]
    fn a_consistent_rewrite_is_caught_and_located() {
        let dir = tempfile::tempdir().unwrap();
        let mut totp = Totp::new();
        let records = write_log(dir.path(), &mut totp);
        // Record 7 (note 6, after the first countersignature at record 4).
        for keep in [true, false] {
            let out = tempfile::tempdir().unwrap();
            let rewritten = rewrite(&records, out.path(), 7, keep);
            let report = check(&rewritten, &totp.public(), totp.latest.as_ref());
            let problem = report.problem.expect("the rewrite went unnoticed");
            if keep {
                assert_eq!(
                    problem,
                    CountersignProblem::Rewritten {
                        seq: 9,
                        last_good: 4
                    }
                );
                assert_eq!(problem.first_suspect(), 5);
                assert!(problem
                    .to_string()
                    .contains("first record after the last good countersignature is record 5"));
            } else {
                // Dropping the countersignatures does not help: airlock-totp
                // names its latest head, whose seq now holds another record.
                assert!(
                    matches!(problem, CountersignProblem::Rewritten { seq: 9, .. }),
                    "{problem:?}"
                );
            }
        }
        // Before the first countersignature everything after it is suspect.
        let out = tempfile::tempdir().unwrap();
        let rewritten = rewrite(&records, out.path(), 2, true);
        let problem = check(&rewritten, &totp.public(), totp.latest.as_ref())
            .problem
            .unwrap();
        assert_eq!(problem.first_suspect(), 1);
    }

    #[test]
    fn forged_and_cut_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut totp = Totp::new();
        let records = write_log(dir.path(), &mut totp);
        let other = Totp::new();
        let problem = check(&records, &other.public(), None).problem.unwrap();
        assert_eq!(
            problem,
            CountersignProblem::Forged {
                line: 5,
                last_good: 0
            }
        );
        // The log cut (and its head rewritten) before airlock-totp's latest.
        let cut: Vec<Record> = records.iter().filter(|r| r.seq <= 6).cloned().collect();
        let problem = check(&cut, &totp.public(), totp.latest.as_ref())
            .problem
            .unwrap();
        assert_eq!(
            problem,
            CountersignProblem::Cut {
                seq: 9,
                last_seq: 6,
                last_good: 4
            }
        );
    }
}
