use serde_json::json;

use super::*;
use crate::audit::AuditLog;

/// Appends `(event, fields)` pairs to a fresh log and reads them back.
fn through_a_log(entries: &[(String, Map<String, Value>)]) -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    let (log, head) = (dir.path().join("audit.log"), dir.path().join("head"));
    let mut audit = AuditLog::open(&log, &head).unwrap();
    for (name, fields) in entries {
        audit.append(name, fields.clone()).unwrap();
    }
    crate::audit::read_records(&log).unwrap()
}

fn fields(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn kernel_event() -> KernelEvent {
    KernelEvent {
        session: "ses_a".into(),
        stage: Stage::ExecCheck,
        outcome: Outcome::Refused,
        pid: 10,
        ppid: 9,
        uid: 1000,
        executable: "terraform".into(),
        argv: vec!["terraform".into(), "apply".into()],
        comm: "sh".into(),
        rule: Some("terraform apply".into()),
        policy: Some("infra-mutation-block".into()),
        source: None,
        peer: None,
    }
}

fn socket_event() -> KernelEvent {
    KernelEvent {
        stage: Stage::Connect,
        executable: "python3".into(),
        argv: Vec::new(),
        rule: None,
        policy: None,
        peer: Some("tcp 127.0.0.1:22".into()),
        ..kernel_event()
    }
}

fn one_of_each() -> Vec<Event> {
    let command = Scope::parse("command:terraform plan").unwrap();
    let failure = TotpFailure {
        request_id: Some("req_a".into()),
        approver_uid: 0,
        error: "InvalidCode".into(),
        message: "wrong code".into(),
    };
    vec![
        Event::AccessRequested {
            request_id: "req_a".into(),
            scope: command.clone(),
            reason: "plan".into(),
            uid: 1000,
            session: Some("ses_a".into()),
            requested_ttl_secs: 0,
            expires_at: Some(1_790_000_600),
        },
        Event::RequestDenied {
            request_id: "req_a".into(),
            reason: "no".into(),
            approver_uid: 0,
        },
        Event::RequestExpired {
            request_id: "req_a".into(),
        },
        Event::GrantIssued {
            request_id: "req_a".into(),
            grant_id: "grt_a".into(),
            scope: Scope::parse("services:gmail,github").unwrap(),
            access: Access::Write,
            uid: 1000,
            approver_uid: 0,
            expires_at: 1_790_003_600,
            signed: Some(SignedGrant {
                payload: "e30".into(),
                signature: "c2ln".into(),
            }),
        },
        Event::GrantRevoked {
            grant_id: "grt_a".into(),
            by_uid: Some(0),
            reason: None,
        },
        Event::GrantExpired {
            grant_id: "grt_a".into(),
        },
        Event::GrantRejected {
            reason: "bad".into(),
        },
        Event::SigningKeyPinned { key: "a2V5".into() },
        Event::SessionStarted {
            session: "ses_a".into(),
            role: "default".into(),
            uid: 1000,
            bound_uid: false,
            enforcement: EnforcementMode::Lsm,
            index: Some(3),
            search_path: vec!["/usr/bin".into()],
        },
        Event::SessionStartFailed {
            session: "ses_a".into(),
            error: "gone".into(),
        },
        Event::SessionExited {
            session: "ses_a".into(),
            by_uid: None,
        },
        Event::SessionRevoked {
            session: "ses_a".into(),
            by_uid: Some(1001),
        },
        Event::SessionRefused {
            session: "ses_a".into(),
            uid: 1000,
            role: "default".into(),
            stage: "session_start".into(),
            reason: "nested".into(),
        },
        Event::SessionUnenforced {
            uid: 1000,
            role: "default".into(),
            reason: "testing".into(),
        },
        Event::kernel(EventKind::Blocked, kernel_event()),
        Event::kernel(EventKind::ApprovalRequired, kernel_event()),
        Event::kernel(EventKind::GrantUsed, kernel_event()),
        Event::kernel(EventKind::SessionRevoked, kernel_event()),
        Event::kernel(EventKind::MmapDenied, kernel_event()),
        Event::kernel(EventKind::CgroupWriteDenied, kernel_event()),
        Event::kernel(EventKind::SocketDenied, socket_event()),
        Event::kernel(
            EventKind::SignalDenied,
            KernelEvent {
                stage: Stage::Signal,
                peer: Some("process 4242 (signal 10)".into()),
                ..socket_event()
            },
        ),
        Event::EnforcementMode {
            mode: EnforcementMode::Degraded,
            detail: "no BPF LSM".into(),
            fix: Some("add bpf to lsm=".into()),
        },
        Event::PolicyReloaded {
            message: "loaded".into(),
        },
        Event::PolicyReloadFailed {
            errors: "a.toml:3: bad".into(),
        },
        Event::TotpVerified {
            request_id: "req_a".into(),
            approver_uid: 0,
            grant_id: None,
        },
        Event::TotpVerified {
            request_id: "req_a".into(),
            approver_uid: 1001,
            grant_id: Some("grt_a".into()),
        },
        Event::TotpFailed(failure.clone()),
        Event::TotpLocked(TotpFailure {
            request_id: None,
            ..failure
        }),
        Event::TotpEnrolmentStarted {
            by_uid: 0,
            forced: true,
        },
        Event::TotpEnrolled { by_uid: 0 },
        Event::ServiceStarted {
            grants: 1,
            pending_requests: 2,
            restored_requests: vec!["req_b".into()],
        },
    ]
}

#[test]
fn every_event_reads_back_from_the_log_as_it_was_recorded() {
    let events = one_of_each();
    let entries: Vec<_> = events.iter().map(|e| e.to_record().unwrap()).collect();
    let records = through_a_log(&entries);
    assert_eq!(records.len(), events.len());
    for (record, event) in records.iter().zip(&events) {
        assert_eq!(
            &Event::from_record(record).unwrap(),
            event,
            "{}",
            record.raw
        );
        assert_eq!(record.field_str("service"), Some(event.service().as_str()));
    }
}

#[test]
fn the_kernel_events_keep_their_record_names() {
    let names: Vec<String> = [
        EventKind::Blocked,
        EventKind::ApprovalRequired,
        EventKind::GrantUsed,
        EventKind::SessionRevoked,
        EventKind::MmapDenied,
        EventKind::CgroupWriteDenied,
        EventKind::SocketDenied,
        EventKind::SignalDenied,
    ]
    .into_iter()
    .map(|kind| Event::kernel(kind, kernel_event()).to_record().unwrap().0)
    .collect();
    assert_eq!(
        names,
        [
            "exec_blocked",
            "exec_approval_required",
            "exec_granted",
            "exec_session_revoked",
            "exec_mmap_denied",
            "cgroup_write_denied",
            "socket_denied",
            "signal_denied"
        ]
    );
}

/// Records exactly as the gateway wrote them before events were typed
/// (the `json!` bodies of that code, field for field).
fn records_in_the_first_format() -> Vec<(String, Map<String, Value>)> {
    [
        ("policy_reload_failed", json!({"service": "gateway", "message": "policy set is invalid"})),
        ("policy_reloaded", json!({"service": "gateway", "message": "loaded 3 policies and 2 roles"})),
        ("service_started", json!({"service": "gateway", "grants": 0, "pending_requests": 0, "restored_requests": []})),
        // Before `expires_at` was audited.
        ("access_requested", json!({"service": "gateway", "request_id": "req_old", "scope": "command:terraform plan", "reason": "plan", "uid": 1000, "session": null, "requested_ttl_secs": 0})),
        ("access_requested", json!({"service": "gateway", "request_id": "req_new", "scope": "command:terraform plan", "reason": "plan", "uid": 1000, "session": "ses_a", "requested_ttl_secs": 60, "expires_at": "2026-11-22T20:04:13Z"})),
        ("totp_failed", json!({"service": "totp", "request_id": "", "approver_uid": 0, "error": "InvalidCode", "message": "wrong"})),
        ("totp_verified", json!({"service": "totp", "request_id": "req_new", "approver_uid": 0})),
        ("grant_issued", json!({"service": "gateway", "request_id": "req_new", "grant_id": "grt_a", "scope": "command:terraform plan", "access": "read", "uid": 1000, "approver_uid": 0, "expires_at": "2026-11-22T21:04:13Z"})),
        ("grant_revoked", json!({"service": "gateway", "grant_id": "grt_a", "reason": "the gateway state could not be saved"})),
        ("grant_revoked", json!({"service": "gateway", "grant_id": "grt_b", "by_uid": 0})),
        ("request_denied", json!({"service": "gateway", "request_id": "req_old", "reason": "no", "approver_uid": 0})),
        ("session_started", json!({"service": "gateway", "session": "ses_a", "role": "default", "uid": 1000, "bound_uid": false, "enforcement": ""})),
        ("exec_blocked", json!({"service": "enforcer", "session": "ses_a", "stage": "exec_check", "outcome": "refused", "pid": 4, "ppid": 3, "uid": 1000, "executable": "terraform", "argv": ["terraform", "apply"], "comm": "sh", "rule": null, "policy": null, "source": null})),
        ("enforcement_mode", json!({"service": "enforcer", "mode": "degraded", "detail": "d", "fix": "f"})),
        ("session_exited", json!({"service": "gateway", "session": "ses_a", "by_uid": null})),
        ("totp_enrolment_started", json!({"service": "totp", "by_uid": 0, "forced": true})),
        ("signing_key_pinned", json!({"service": "gateway", "key": "a2V5"})),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), fields(value)))
    .collect()
}

#[test]
fn records_written_before_events_were_typed_still_parse() {
    let records = through_a_log(&records_in_the_first_format());
    let events: Vec<Event> = records
        .iter()
        .map(|r| Event::from_record(r).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert!(!events.iter().any(|e| matches!(e, Event::Other)));
    assert!(matches!(
        &events[0],
        Event::PolicyReloadFailed { errors } if errors == "policy set is invalid"
    ));
    assert!(matches!(
        &events[3],
        Event::AccessRequested {
            expires_at: None,
            session: None,
            ..
        }
    ));
    assert!(matches!(
        &events[4],
        Event::AccessRequested {
            expires_at: Some(_),
            session: Some(_),
            ..
        }
    ));
    assert!(matches!(
        &events[5],
        Event::TotpFailed(TotpFailure {
            request_id: None,
            ..
        })
    ));
    assert!(matches!(
        &events[7],
        Event::GrantIssued { signed: None, .. }
    ));
    assert!(matches!(
        &events[11],
        Event::SessionStarted {
            enforcement: EnforcementMode::Unknown,
            index: None,
            ..
        }
    ));
    assert!(matches!(
        &events[12],
        Event::ExecBlocked(KernelEvent { rule: None, .. })
    ));
}

#[test]
fn an_unknown_event_is_other_and_a_known_one_with_wrong_fields_is_an_error() {
    let records = through_a_log(&[
        (
            "chain_restarted".to_owned(),
            fields(json!({"reason": "cut"})),
        ),
        ("grant_expired".to_owned(), fields(json!({"grant": 3}))),
    ]);
    assert_eq!(Event::from_record(&records[0]), Ok(Event::Other));
    let error = Event::from_record(&records[1]).unwrap_err();
    assert!(error.contains("grant_expired"), "{error}");
    assert_eq!(Event::Other.to_record(), None);
}
