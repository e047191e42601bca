use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use ring::digest;
use serde_json::{json, Map, Value};

use super::record::{seal, GENESIS};
use super::verify::verify_bytes;
use super::*;

/// A log and its head in a temporary directory.
struct Fixture {
    _dir: tempfile::TempDir,
    log: PathBuf,
    head: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            log: dir.path().join("audit.jsonl"),
            head: dir.path().join("audit.head"),
            _dir: dir,
        }
    }

    /// A fixture whose log holds records 1..=n.
    fn with_records(n: u64) -> Fixture {
        let fx = Fixture::new();
        let mut log = fx.open().unwrap();
        for i in 1..=n {
            log.append("access_requested", sample_fields(i)).unwrap();
        }
        fx
    }

    fn open(&self) -> Result<AuditLog, AuditError> {
        AuditLog::open(&self.log, &self.head)
    }

    fn verify(&self) -> VerifyReport {
        let head = read_head(&self.head).unwrap();
        verify(&self.log, head.as_ref()).unwrap()
    }

    fn problem(&self) -> Option<Problem> {
        self.verify().problem
    }

    fn lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write_lines(&self, lines: &[String]) {
        fs::write(
            &self.log,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
    }

    /// Rewrites the log with `edit` applied to its lines.
    fn edit_lines(&self, edit: impl FnOnce(&mut Vec<String>)) {
        let mut lines = self.lines();
        edit(&mut lines);
        self.write_lines(&lines);
    }
}

fn sample_fields(i: u64) -> Map<String, Value> {
    fields(json!({
        "service": (["gmail", "terraform"][(i % 2) as usize]),
        "session": format!("s{}", i % 3),
        "uid": 1000 + i,
        "request_id": format!("req-{i}"),
    }))
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn intact_log_of_100_records_verifies() {
    let fx = Fixture::with_records(100);
    assert_eq!(
        fx.verify(),
        VerifyReport {
            records: 100,
            last_seq: 100,
            problem: None
        }
    );
    let head = read_head(&fx.head).unwrap().unwrap();
    assert_eq!(head.seq, 100);
    let records = read_records(&fx.log).unwrap();
    assert_eq!(head.hash, records[99].hash);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.line, i + 1);
        assert_eq!(r.fields, sample_fields(r.seq));
    }
}

#[test]
fn records_follow_the_documented_format_and_hash() {
    let fx = Fixture::with_records(3);
    let mut prev = GENESIS.to_owned();
    for (i, raw) in fx.lines().iter().enumerate() {
        assert!(
            raw.starts_with(&format!("{{\"seq\":{},\"ts\":\"", i + 1)),
            "{raw}"
        );
        // Recompute the hash exactly as the format is specified, independently of the writer.
        let Value::Object(mut map) = serde_json::from_str::<Value>(raw).unwrap() else {
            panic!("not an object")
        };
        let Some(Value::String(hash)) = map.remove("hash") else {
            panic!("no hash")
        };
        assert_eq!(map["prev"], Value::String(prev.clone()));
        let canonical = serde_json::to_string(&map).unwrap();
        assert!(
            canonical.starts_with("{\"event\":"),
            "keys sorted: {canonical}"
        );
        let digest = digest::digest(&digest::SHA256, format!("{prev}\n{canonical}").as_bytes());
        assert_eq!(hash, hex::encode(digest));
        assert!(parse_rfc3339_ok(map["ts"].as_str().unwrap()));
        prev = hash;
    }
}

fn parse_rfc3339_ok(text: &str) -> bool {
    crate::timefmt::parse_rfc3339(text).is_some() && text.ends_with('Z')
}

#[test]
fn edited_field_is_reported_at_the_record() {
    let fx = Fixture::with_records(100);
    fx.edit_lines(|lines| {
        assert!(lines[39].contains("\"uid\":1040"));
        lines[39] = lines[39].replace("\"uid\":1040", "\"uid\":0");
    });
    assert_eq!(fx.problem(), Some(Problem::Edited { line: 40, seq: 40 }));
}

#[test]
fn edited_and_rehashed_record_breaks_the_chain_after_it() {
    let fx = Fixture::with_records(100);
    let records = read_records(&fx.log).unwrap();
    let r = &records[39];
    let mut changed = r.fields.clone();
    changed.insert("uid".into(), 0.into());
    let forged = seal(r.seq, r.ts, &r.event, changed, &r.prev, r.line).unwrap();
    fx.edit_lines(|lines| lines[39] = forged.record.raw.clone());
    assert_eq!(
        fx.problem(),
        Some(Problem::ChainBroken { line: 41, seq: 41 })
    );
}

#[test]
fn deleted_record_is_reported_as_removed() {
    let fx = Fixture::with_records(100);
    fx.edit_lines(|lines| {
        lines.remove(39);
    });
    assert_eq!(
        fx.problem(),
        Some(Problem::Removed {
            line: 40,
            expected_seq: 40,
            found_seq: 41
        })
    );
}

#[test]
fn deleted_range_and_deleted_start_are_removed() {
    let fx = Fixture::with_records(20);
    fx.edit_lines(|lines| {
        lines.drain(9..12);
    });
    let problem = fx.problem().unwrap();
    assert_eq!(
        problem,
        Problem::Removed {
            line: 10,
            expected_seq: 10,
            found_seq: 13
        }
    );
    assert!(
        problem
            .to_string()
            .starts_with("records 10 to 12 were removed"),
        "{problem}"
    );

    let fx = Fixture::with_records(5);
    fx.edit_lines(|lines| {
        lines.remove(0);
    });
    assert_eq!(
        fx.problem(),
        Some(Problem::Removed {
            line: 1,
            expected_seq: 1,
            found_seq: 2
        })
    );
}

#[test]
fn swapped_records_are_reordered() {
    let fx = Fixture::with_records(100);
    fx.edit_lines(|lines| lines.swap(39, 40));
    assert_eq!(
        fx.problem(),
        Some(Problem::Reordered {
            line: 40,
            expected_seq: 40,
            found_seq: 41
        })
    );
}

#[test]
fn a_skipped_seq_that_appears_later_is_reordered_not_removed() {
    // Lines hold records [1, 2, 4, 3, 5].
    let fx = Fixture::with_records(5);
    fx.edit_lines(|lines| lines.swap(2, 3));
    assert_eq!(
        fx.problem(),
        Some(Problem::Reordered {
            line: 3,
            expected_seq: 3,
            found_seq: 4
        })
    );
}

#[test]
fn a_repeated_record_is_reordered() {
    let fx = Fixture::with_records(5);
    fx.edit_lines(|lines| {
        let copy = lines[1].clone();
        lines.insert(2, copy);
    });
    assert_eq!(
        fx.problem(),
        Some(Problem::Reordered {
            line: 3,
            expected_seq: 3,
            found_seq: 2
        })
    );
}

#[test]
fn truncated_end_is_caught_by_the_head_only() {
    let fx = Fixture::with_records(100);
    fx.edit_lines(|lines| lines.truncate(97));
    assert_eq!(
        fx.problem(),
        Some(Problem::Truncated {
            last_seq: 97,
            head_seq: 100
        })
    );
    // Without its anchor a shorter chain is still a valid chain.
    assert_eq!(verify(&fx.log, None).unwrap().problem, None);
}

#[test]
fn deleted_log_with_a_head_is_truncated() {
    let fx = Fixture::with_records(3);
    fs::remove_file(&fx.log).unwrap();
    assert_eq!(
        fx.problem(),
        Some(Problem::Truncated {
            last_seq: 0,
            head_seq: 3
        })
    );
    assert!(matches!(verify(&fx.log, None), Err(AuditError::Io(_))));
}

#[test]
fn truncated_and_rewritten_end_mismatches_the_head() {
    let fx = Fixture::with_records(100);
    let forged = Fixture::new();
    let mut lines = fx.lines();
    lines.truncate(97);
    forged.write_lines(&lines);
    let mut log = forged.open().unwrap();
    for _ in 0..3 {
        log.append("service_started", Map::new()).unwrap();
    }
    fs::copy(&forged.log, &fx.log).unwrap();
    assert_eq!(
        fx.problem(),
        Some(Problem::HeadMismatch {
            line: 100,
            seq: 100
        })
    );
}

#[test]
fn a_lagging_head_is_fine_and_caught_up_on_open() {
    let fx = Fixture::with_records(5);
    let lagging = fs::read(&fx.head).unwrap();
    fx.open()
        .unwrap()
        .append("service_started", Map::new())
        .unwrap();
    fs::write(&fx.head, lagging).unwrap();
    assert_eq!(fx.problem(), None);
    let log = fx.open().unwrap();
    assert_eq!(read_head(&fx.head).unwrap(), Some(log.head()));
    assert_eq!(log.head().seq, 6);
}

#[test]
fn cut_last_line_is_malformed() {
    let fx = Fixture::with_records(100);
    let content = fs::read(&fx.log).unwrap();
    let last_line_start = content[..content.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let cut = last_line_start + (content.len() - last_line_start) / 2;
    fs::write(&fx.log, &content[..cut]).unwrap();
    assert!(
        matches!(fx.problem(), Some(Problem::Malformed { line: 100, .. })),
        "{:?}",
        fx.problem()
    );
    // A complete record without its newline is still an interrupted write.
    fs::write(&fx.log, &content[..content.len() - 1]).unwrap();
    assert!(matches!(
        fx.problem(),
        Some(Problem::Malformed { line: 100, .. })
    ));
}

#[test]
fn garbage_and_empty_lines_are_malformed() {
    let fx = Fixture::with_records(5);
    fx.edit_lines(|lines| lines[2] = "not json".into());
    assert!(matches!(
        fx.problem(),
        Some(Problem::Malformed { line: 3, .. })
    ));
    fx.edit_lines(|lines| lines[2] = String::new());
    assert_eq!(
        fx.problem(),
        Some(Problem::Malformed {
            line: 3,
            message: "empty line".into()
        })
    );
    let err = read_records(&fx.log).unwrap_err();
    assert!(err.to_string().contains("line 3"), "{err}");
}

#[test]
fn a_missing_key_is_malformed() {
    let fx = Fixture::with_records(3);
    fx.edit_lines(|lines| {
        let mut value: Value = serde_json::from_str(&lines[1]).unwrap();
        value.as_object_mut().unwrap().remove("prev");
        lines[1] = value.to_string();
    });
    assert_eq!(
        fx.problem(),
        Some(Problem::Malformed {
            line: 2,
            message: "\"prev\" is missing".into()
        })
    );
}

#[test]
fn reformatted_but_equal_json_is_still_an_edit() {
    let fx = Fixture::with_records(3);
    fx.edit_lines(|lines| lines[1] = lines[1].replacen(",\"ts\"", ", \"ts\"", 1));
    assert_eq!(fx.problem(), Some(Problem::Edited { line: 2, seq: 2 }));
}

#[test]
fn reopening_continues_the_chain() {
    let fx = Fixture::with_records(5);
    let mut log = fx.open().unwrap();
    assert_eq!(log.head().seq, 5);
    let record = log
        .append("grant_issued", fields(json!({"grant_id": "g1"})))
        .unwrap();
    assert_eq!((record.seq, record.line), (6, 6));
    assert_eq!(record.field_str("grant_id"), Some("g1"));
    drop(log);
    let mut log = fx.open().unwrap();
    log.append("grant_revoked", fields(json!({"grant_id": "g1"})))
        .unwrap();
    assert_eq!(
        fx.verify(),
        VerifyReport {
            records: 7,
            last_seq: 7,
            problem: None
        }
    );
    assert_eq!(read_head(&fx.head).unwrap(), Some(log.head()));
    assert_eq!(read_records(&fx.log).unwrap()[6].raw, fx.lines()[6]);
}

#[test]
fn empty_log_has_a_genesis_head() {
    let fx = Fixture::new();
    let log = fx.open().unwrap();
    assert_eq!(
        log.head(),
        Head {
            seq: 0,
            hash: GENESIS.into()
        }
    );
    assert_eq!(read_head(&fx.head).unwrap(), None);
    assert_eq!(
        fx.verify(),
        VerifyReport {
            records: 0,
            last_seq: 0,
            problem: None
        }
    );
}

#[test]
fn reserved_keys_and_bad_names_are_rejected_without_writing() {
    let fx = Fixture::with_records(2);
    let before = (fs::read(&fx.log).unwrap(), fs::read(&fx.head).unwrap());
    let mut log = fx.open().unwrap();
    for key in ["seq", "ts", "event", "prev", "hash"] {
        let err = log
            .append("access_requested", fields(json!({ key: "x" })))
            .unwrap_err();
        assert!(matches!(err, AuditError::InvalidEvent(_)), "{key}: {err}");
        assert!(err.to_string().contains(key), "{err}");
    }
    for name in ["", "Grant", "grant-issued", "grant issued", &"a".repeat(65)] {
        assert!(matches!(
            log.append(name, Map::new()),
            Err(AuditError::InvalidEvent(_))
        ));
    }
    assert_eq!(
        (fs::read(&fx.log).unwrap(), fs::read(&fx.head).unwrap()),
        before
    );
    assert_eq!(log.append(&"a".repeat(64), Map::new()).unwrap().seq, 3);
}

#[test]
fn open_refuses_a_damaged_log() {
    let fx = Fixture::with_records(10);
    fx.edit_lines(|lines| lines[3] = lines[3].replace("req-4", "req-x"));
    let Err(AuditError::Corrupt(message)) = fx.open() else {
        panic!("opened a damaged log")
    };
    assert!(
        message.contains("record 4 (line 4) was edited"),
        "{message}"
    );

    let fx = Fixture::with_records(10);
    fx.edit_lines(|lines| lines.truncate(8));
    assert!(matches!(fx.open(), Err(AuditError::Corrupt(_))));

    let fx = Fixture::with_records(2);
    fs::write(&fx.head, "{not json").unwrap();
    assert!(matches!(fx.open(), Err(AuditError::Corrupt(_))));
}

#[test]
fn restart_after_an_edit_keeps_the_edit_visible() {
    let fx = Fixture::with_records(100);
    fx.edit_lines(|lines| lines[39] = lines[39].replace("\"uid\":1040", "\"uid\":0"));
    let reason = match fx.open() {
        Err(AuditError::Corrupt(reason)) => reason,
        other => panic!("{other:?}"),
    };
    let old_tip = read_records(&fx.log).unwrap()[99].clone();

    let mut log = AuditLog::open_after_break(&fx.log, &fx.head, &reason).unwrap();
    let records = read_records(&fx.log).unwrap();
    let restart = &records[100];
    assert_eq!(restart.event, "chain_restarted");
    assert_eq!((restart.seq, restart.line), (101, 101));
    assert_eq!(restart.prev, old_tip.hash);
    assert_eq!(restart.field_str("reason"), Some(reason.as_str()));
    assert_eq!(restart.fields["broken_at_seq"], json!(40));
    assert_eq!(restart.fields["head_seq"], json!(100));
    assert_eq!(log.head().hash, restart.hash);

    log.append("service_started", Map::new()).unwrap();
    drop(log);
    assert_eq!(fx.problem(), Some(Problem::Edited { line: 40, seq: 40 }));
    // The damage is acknowledged: the gateway can reopen without restarting again.
    let mut log = fx.open().unwrap();
    assert_eq!(log.append("service_started", Map::new()).unwrap().seq, 103);
    assert_eq!(fx.problem(), Some(Problem::Edited { line: 40, seq: 40 }));
}

#[test]
fn restart_after_a_cut_line_links_to_the_last_whole_record() {
    let fx = Fixture::with_records(10);
    let content = fs::read(&fx.log).unwrap();
    fs::write(&fx.log, &content[..content.len() - 20]).unwrap();
    let mut log = AuditLog::open_after_break(&fx.log, &fx.head, "cut").unwrap();
    log.append("service_started", Map::new()).unwrap();

    let lines = fx.lines();
    assert_eq!(lines.len(), 12, "the fragment keeps its own line");
    let report = fx.verify();
    assert!(
        matches!(report.problem, Some(Problem::Malformed { line: 10, .. })),
        "{report:?}"
    );
    let nine = &read_records_lenient(&fx.log)[8];
    let restart = &read_records_lenient(&fx.log)[9];
    assert_eq!(restart.event, "chain_restarted");
    assert_eq!((restart.seq, restart.line), (10, 11));
    assert_eq!(restart.prev, nine.hash);
    assert_eq!(restart.fields["broken_at_seq"], json!(10));
    assert!(fx.open().is_ok());
}

/// The parseable records, skipping damaged lines.
fn read_records_lenient(path: &Path) -> Vec<Record> {
    super::record::parse_lines(&fs::read(path).unwrap())
        .into_iter()
        .filter_map(|line| line.ok().map(|entry| entry.record))
        .collect()
}

#[test]
fn restart_after_truncation_keeps_the_truncation_visible() {
    let fx = Fixture::with_records(100);
    fx.edit_lines(|lines| lines.truncate(97));
    let mut log = AuditLog::open_after_break(&fx.log, &fx.head, "truncated").unwrap();
    assert_eq!(log.head().seq, 98);
    log.append("service_started", Map::new()).unwrap();
    assert_eq!(read_head(&fx.head).unwrap().unwrap().seq, 99);
    assert_eq!(
        fx.problem(),
        Some(Problem::Truncated {
            last_seq: 97,
            head_seq: 100
        })
    );
    assert!(fx.open().is_ok());
}

#[test]
fn restart_after_an_unreadable_head_replaces_it() {
    let fx = Fixture::with_records(3);
    fs::write(&fx.head, "{not json").unwrap();
    let log = AuditLog::open_after_break(&fx.log, &fx.head, "head unreadable").unwrap();
    assert_eq!(log.head().seq, 4);
    let restart = read_records(&fx.log).unwrap().pop().unwrap();
    assert_eq!(restart.event, "chain_restarted");
    assert_eq!(restart.fields["broken_at_seq"], json!(4));
    assert!(!restart.fields.contains_key("head_seq"));
    assert_eq!(read_head(&fx.head).unwrap(), Some(log.head()));
    assert!(fx.open().is_ok());
}

#[test]
fn restart_on_an_intact_log_writes_nothing() {
    let fx = Fixture::with_records(3);
    let before = fs::read(&fx.log).unwrap();
    let log = AuditLog::open_after_break(&fx.log, &fx.head, "spurious").unwrap();
    assert_eq!(log.head().seq, 3);
    assert_eq!(fs::read(&fx.log).unwrap(), before);
}

#[test]
fn files_are_created_mode_0640() {
    let fx = Fixture::with_records(1);
    assert_eq!(mode(&fx.log), 0o640);
    assert_eq!(mode(&fx.head), 0o640);
    let dir = fx.log.parent().unwrap();
    assert_eq!(fs::read_dir(dir).unwrap().count(), 2, "no temp file left");
}

#[test]
fn ordinary_float_fields_verify() {
    let fx = Fixture::new();
    let mut log = fx.open().unwrap();
    for x in [0.1, 1.0 / 3.0, 1e300, -2.5e-308, 123_456.789] {
        log.append("policy_decision", fields(json!({ "score": x })))
            .unwrap();
    }
    assert_eq!(fx.problem(), None);
}

#[test]
fn filter_matches_since_service_and_session() {
    let record = |ts: i64, service: &str, session: &str| Record {
        seq: 1,
        ts,
        event: "access_requested".into(),
        fields: fields(json!({"service": service, "session": session})),
        prev: GENESIS.into(),
        hash: GENESIS.into(),
        line: 1,
        raw: String::new(),
    };
    let r = record(1_000, "gmail", "s1");
    assert!(Filter::default().matches(&r));
    let since = |t| Filter {
        since: Some(t),
        ..Filter::default()
    };
    assert!(since(1_000).matches(&r));
    assert!(!since(1_001).matches(&r));
    let service = |s: &str| Filter {
        service: Some(s.into()),
        ..Filter::default()
    };
    assert!(service("gmail").matches(&r));
    assert!(!service("gmai").matches(&r));
    let session = |s: &str| Filter {
        session: Some(s.into()),
        ..Filter::default()
    };
    assert!(session("s1").matches(&r));
    assert!(!session("s2").matches(&r));
    let all = Filter {
        since: Some(500),
        service: Some("gmail".into()),
        session: Some("s2".into()),
    };
    assert!(!all.matches(&r));
    assert!(all.matches(&record(600, "gmail", "s2")));
    let mut untagged = r.clone();
    untagged.fields.clear();
    assert!(!service("gmail").matches(&untagged));
}

#[test]
fn problems_read_as_sentences() {
    let cases = [
        (
            Problem::Edited { line: 17, seq: 17 },
            "record 17 (line 17) was edited: its hash does not match its content",
        ),
        (
            Problem::Removed {
                line: 40,
                expected_seq: 40,
                found_seq: 41,
            },
            "record 40 was removed: line 40 holds record 41 where record 40 was expected",
        ),
        (
            Problem::Truncated {
                last_seq: 97,
                head_seq: 100,
            },
            "the log was truncated: records 98 to 100 were cut from the end; the log ends at \
             record 97 but its head anchor records 100",
        ),
    ];
    for (problem, text) in cases {
        assert_eq!(problem.to_string(), text);
    }
}

/// The line number a problem points at, if it names one.
fn problem_line(problem: &Problem) -> Option<usize> {
    match problem {
        Problem::Malformed { line, .. }
        | Problem::Edited { line, .. }
        | Problem::Removed { line, .. }
        | Problem::Reordered { line, .. }
        | Problem::ChainBroken { line, .. }
        | Problem::HeadMismatch { line, .. } => Some(*line),
        Problem::Truncated { .. } => None,
    }
}

fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(Value::from),
    ]
}

/// A log of 1..12 records with arbitrary fields, built in memory.
fn generated_log() -> impl Strategy<Value = Vec<u8>> {
    let record = (
        "[a-z_]{1,12}",
        prop::collection::btree_map("[a-z_]{1,8}", field_value(), 0..5),
        0i64..4_000_000_000,
    );
    prop::collection::vec(record, 1..12).prop_map(|records| {
        let mut prev = GENESIS.to_owned();
        let mut content = Vec::new();
        for (index, (event, map, ts)) in records.into_iter().enumerate() {
            let fields: Map<String, Value> = map
                .into_iter()
                .filter(|(k, _)| !record::RESERVED.contains(&k.as_str()))
                .collect();
            let entry = seal(index as u64 + 1, ts, &event, fields, &prev, index + 1).unwrap();
            content.extend_from_slice(entry.record.raw.as_bytes());
            content.push(b'\n');
            prev = entry.record.hash;
        }
        content
    })
}

proptest! {
    /// Floats may not survive a JSON round trip; `append` must then refuse
    /// them rather than write a record that fails verification.
    #[test]
    fn float_fields_never_break_the_chain(bits in any::<u64>()) {
        let x = f64::from_bits(bits);
        prop_assume!(x.is_finite());
        match seal(1, 0, "policy_decision", fields(json!({ "score": x })), GENESIS, 1) {
            Ok(entry) => {
                let content = format!("{}\n", entry.record.raw);
                prop_assert_eq!(verify_bytes(content.as_bytes(), None).problem, None);
            }
            Err(e) => prop_assert!(matches!(e, AuditError::InvalidEvent(_)), "{}", e),
        }
    }

    #[test]
    fn any_single_byte_change_is_detected(
        content in generated_log(),
        pick in any::<prop::sample::Index>(),
        delta in 1u8..=255,
    ) {
        prop_assert_eq!(verify_bytes(&content, None).problem, None);
        let at = pick.index(content.len());
        let mut changed = content.clone();
        changed[at] = changed[at].wrapping_add(delta);
        let line = content[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        let report = verify_bytes(&changed, None);
        let problem = report.problem.expect("a changed byte went unnoticed");
        // The damage is pinned to the changed record (a newline turned into
        // something else merges that record with the next one).
        prop_assert_eq!(problem_line(&problem), Some(line), "{}", problem);
    }
}

// ---- the head anchor's two slots ------------------------------------------

/// A second name for the head file: it sees later heads only if they are
/// written into the same file rather than replacing it.
fn head_alias(fx: &Fixture) -> PathBuf {
    let alias = fx.head.with_file_name("alias");
    fs::hard_link(&fx.head, &alias).unwrap();
    alias
}

#[test]
fn appends_update_the_head_in_place() {
    let fx = Fixture::with_records(3);
    let alias = head_alias(&fx);
    let mut log = fx.open().unwrap();
    log.append("service_started", Map::new()).unwrap();
    log.append("service_started", Map::new()).unwrap();
    assert_eq!(read_head(&alias).unwrap(), Some(log.head()));
    assert_eq!(log.head().seq, 5);
}

#[test]
fn a_group_commit_batch_updates_the_head_in_place() {
    // One sync covers records 4 to 6: the head jumps from 3 to 6 and must
    // still be written into the same file (a rename is flushed by ext4).
    let fx = Fixture::with_records(3);
    let alias = head_alias(&fx);
    let mut log = fx.open().unwrap();
    let commit = log.group_commit();
    let syncs = commit.syncs();
    let mut last = 0;
    for _ in 0..3 {
        last = log.write("service_started", Map::new()).unwrap().seq;
    }
    commit.wait_durable(last).unwrap();
    assert_eq!(commit.syncs(), syncs + 1, "one sync for the batch");
    assert_eq!(read_head(&alias).unwrap(), Some(log.head()));
    assert_eq!(log.head().seq, 6);
    // Both slots stay whole: tearing the newest leaves an older head.
    assert_eq!(fs::metadata(&alias).unwrap().len(), 320);
}

#[test]
fn a_head_file_swapped_by_someone_else_is_replaced_not_patched() {
    // Record 6 sits in slot 0 of a file the writer did not write; patching
    // slot 1 with record 5 would leave that stale 6 in force.
    let fx = Fixture::with_records(4);
    let other = Fixture::with_records(6);
    let mut log = fx.open().unwrap();
    let swapped = fx.head.with_file_name("swapped");
    fs::copy(&other.head, &swapped).unwrap();
    fs::rename(&swapped, &fx.head).unwrap();
    log.append("service_started", Map::new()).unwrap();
    assert_eq!(read_head(&fx.head).unwrap(), Some(log.head()));
}

/// Overwrites the slot holding `seq`'s head with a half-written copy of a
/// later head, as a crash or a concurrent reader could see it.
fn tear_slot(fx: &Fixture, torn_from: &[u8]) {
    let mut bytes = fs::read(&fx.head).unwrap();
    let (slot_len, newest_slot) = (bytes.len() / 2, 1);
    let at = newest_slot * slot_len;
    bytes[at..at + 20].copy_from_slice(&torn_from[..20]);
    fs::write(&fx.head, bytes).unwrap();
}

#[test]
fn a_torn_slot_leaves_the_head_one_record_behind() {
    // Record 5 is in slot 1 and record 4 in slot 0.
    let fx = Fixture::with_records(5);
    let other = Fixture::with_records(7);
    tear_slot(&fx, &fs::read(&other.head).unwrap()[160..]);
    assert_eq!(read_head(&fx.head).unwrap().unwrap().seq, 4);
    assert_eq!(fx.problem(), None, "a lagging head is not damage");
    // Both slots torn: unreadable, and said so.
    let mut bytes = fs::read(&fx.head).unwrap();
    bytes[10] ^= 1;
    fs::write(&fx.head, bytes).unwrap();
    assert!(matches!(read_head(&fx.head), Err(AuditError::Corrupt(_))));
}

#[test]
fn a_head_from_before_the_slots_is_read_and_replaced() {
    let fx = Fixture::with_records(2);
    let head = read_head(&fx.head).unwrap().unwrap();
    fs::write(&fx.head, serde_json::to_string(&head).unwrap() + "\n").unwrap();
    assert_eq!(read_head(&fx.head).unwrap(), Some(head));
    let mut log = fx.open().unwrap();
    log.append("service_started", Map::new()).unwrap();
    assert_eq!(read_head(&fx.head).unwrap(), Some(log.head()));
    assert_eq!(fs::metadata(&fx.head).unwrap().len(), 320);
}

#[test]
fn a_head_that_moves_back_after_a_break_is_not_hidden_by_the_old_slot() {
    // Slots hold 6 and 5; the log is cut to 3, so the restart record is 4
    // and must not lose to the stale 5 in the other slot.
    let fx = Fixture::with_records(6);
    fx.edit_lines(|lines| lines.truncate(3));
    let log = AuditLog::open_after_break(&fx.log, &fx.head, "truncated").unwrap();
    assert_eq!(log.head().seq, 4);
    assert_eq!(read_head(&fx.head).unwrap(), Some(log.head()));
}

#[test]
fn the_log_is_read_only_from_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    // A FIFO could serve one content to the chain check and another to the
    // countersignature check; a symlink could point anywhere.
    nix_free_mkfifo(&log);
    assert!(matches!(read_log(&log), Err(AuditError::Corrupt(_))));
    std::fs::remove_file(&log).unwrap();
    let real = dir.path().join("real");
    std::fs::write(&real, b"").unwrap();
    std::os::unix::fs::symlink(&real, &log).unwrap();
    assert!(read_log(&log).is_err());
    std::fs::remove_file(&log).unwrap();
    std::fs::write(&log, b"x\n").unwrap();
    assert_eq!(read_log(&log).unwrap(), b"x\n");
}

fn nix_free_mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn one_sync_makes_a_batch_durable_and_the_head_follows_it() {
    let fx = Fixture::with_records(1);
    let mut log = fx.open().unwrap();
    let commit = log.group_commit();
    let before = commit.syncs();
    for i in 2..=50 {
        log.write("access_requested", sample_fields(i)).unwrap();
    }
    // Written, not yet synced: the anchor must not lead the durable log.
    assert_eq!(read_head(&fx.head).unwrap().unwrap().seq, 1);
    assert_eq!(commit.durable_seq(), 1);
    commit.wait_durable(50).unwrap();
    assert_eq!(commit.syncs(), before + 1, "one fsync for the batch");
    // An earlier record of the batch is already durable: no further sync.
    commit.wait_durable(20).unwrap();
    assert_eq!(commit.syncs(), before + 1);
    assert_eq!(read_head(&fx.head).unwrap().unwrap(), log.head());
    let report = verify(&fx.log, read_head(&fx.head).unwrap().as_ref()).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    assert_eq!(report.records, 50);
}

#[test]
fn concurrent_writers_each_wait_for_their_own_record_and_the_chain_holds() {
    use std::sync::{Arc, Mutex};
    const THREADS: u64 = 8;
    const EACH: u64 = 40;
    let fx = Fixture::new();
    let log = Arc::new(Mutex::new(fx.open().unwrap()));
    let commit = log.lock().unwrap().group_commit();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (log, commit) = (log.clone(), commit.clone());
            scope.spawn(move || {
                for i in 0..EACH {
                    // Written under the lock (the chain's order), synced
                    // outside it.
                    let seq = log
                        .lock()
                        .unwrap()
                        .write("access_requested", sample_fields(t * EACH + i))
                        .unwrap()
                        .seq;
                    commit.wait_durable(seq).unwrap();
                    assert!(commit.durable_seq() >= seq);
                }
            });
        }
    });
    assert_eq!(commit.durable_seq(), THREADS * EACH);
    assert!(commit.syncs() <= THREADS * EACH);
    let report = verify(&fx.log, read_head(&fx.head).unwrap().as_ref()).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    assert_eq!(report.records, THREADS * EACH);
    assert_eq!(read_head(&fx.head).unwrap().unwrap().seq, THREADS * EACH);
}
