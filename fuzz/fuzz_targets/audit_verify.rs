//! The audit log reader and verifier on arbitrary files.
//!
//! Input: the head anchor's bytes, a NUL, then the log's bytes (no NUL: no
//! head file). Both are written to files in a scratch directory (tmpfs when
//! there is one), because the log is read and appended through paths.
//!
//! Invariants: `verify` never fails on content; a log that verifies reads
//! back whole and consistent, `records_after` resumes at its head, and it
//! opens, takes an append and verifies again (the round trip). A damaged log
//! taken over by `open_after_break` keeps reporting its damage.
#![no_main]

use std::fs;

use airlock_common::audit::{
    read_head, read_records, records_after, verify, AuditError, AuditLog, Head, Resumed,
    RESTART_EVENT,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Map;

fuzz_target!(|data: &[u8]| {
    let (head_bytes, log_bytes) = match data.iter().position(|&b| b == 0) {
        Some(at) => (Some(&data[..at]), &data[at + 1..]),
        None => (None, data),
    };
    let dir = airlock_fuzz::scratch("audit");
    let log = dir.join("audit.log");
    let head_path = dir.join("audit.head");
    let _ = fs::remove_file(&head_path);
    if let Some(bytes) = head_bytes {
        fs::write(&head_path, bytes).unwrap();
    }
    fs::write(&log, log_bytes).unwrap();

    let (head, head_readable) = match read_head(&head_path) {
        Ok(head) => (head, true),
        Err(AuditError::Corrupt(_)) => (None, false),
        Err(e) => panic!("reading the head failed for I/O: {e}"),
    };
    let report = verify(&log, head.as_ref()).expect("verify only fails for I/O");
    let lines = log_bytes.split(|&b| b == b'\n').count() as u64;
    assert!(report.records <= lines, "{report:?}");

    if report.problem.is_none() {
        let records = read_records(&log).expect("a log that verifies reads back");
        assert_eq!(records.len() as u64, report.records);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.seq, i as u64 + 1, "a verified log counts from 1");
        }
        let last = records.last();
        assert_eq!(last.map_or(0, |r| r.seq), report.last_seq);
        if let Some(h) = &head {
            assert!(h.seq <= report.last_seq, "head {h:?} ahead of {report:?}");
        }
        let (all, resumed) = records_after(&log, None).unwrap();
        assert_eq!(resumed, Resumed::FromStart);
        let restart = records.iter().rposition(|r| r.event == RESTART_EVENT);
        assert_eq!(all, records[restart.map_or(0, |at| at + 1)..]);
        if let Some(last) = last {
            let mark = Head {
                seq: last.seq,
                hash: last.hash.clone(),
            };
            assert_eq!(records_after(&log, Some(&mark)).unwrap(), (vec![], Resumed::AtMark));
        }

        if !head_readable {
            // `open` refuses an unreadable head; the gateway then restarts.
            return;
        }
        // The round trip: it opens, takes one more record and still verifies.
        let mut opened = AuditLog::open(&log, &head_path)
            .unwrap_or_else(|e| panic!("a log that verifies does not open: {e}"));
        opened.append("fuzz_checked", Map::new()).unwrap();
        drop(opened);
        let head = read_head(&head_path).unwrap().expect("an append writes the head");
        let again = verify(&log, Some(&head)).unwrap();
        assert_eq!(again.problem, None, "after one append");
        assert_eq!(again.records, report.records + 1);
        assert_eq!(head.seq, report.last_seq + 1);
    } else if let Ok(mut taken_over) = AuditLog::open_after_break(&log, &head_path, "fuzz") {
        // The damage stays visible after the chain restarts.
        taken_over.append("fuzz_checked", Map::new()).unwrap();
        drop(taken_over);
        let head = read_head(&head_path).unwrap();
        let again = verify(&log, head.as_ref()).unwrap();
        assert!(again.problem.is_some(), "{report:?} vanished after a restart");
    }
});
