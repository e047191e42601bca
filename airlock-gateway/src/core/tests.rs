use std::path::PathBuf;
use std::time::Duration;

use airlock_common::{audit, names};
use serde_json::{json, Value};

use airlock_common::grant::GrantBody;

use super::*;
use crate::store::Snapshot;

/// A gateway's directories; `open` is a gateway (re)start.
pub(super) struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    pub(super) fn new() -> Dirs {
        let root = tempfile::tempdir().unwrap();
        for dir in ["policies", "state", "audit"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        Dirs { root }
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    pub(super) fn open(&self) -> Core {
        let times = GatewayTimes {
            request_ttl: Duration::from_secs(600),
            default_grant_ttl: Duration::from_secs(3600),
            max_grant_ttl: Duration::from_secs(8 * 3600),
        };
        Core::open(
            &self.path("policies"),
            &self.path("state"),
            &self.path("audit"),
            times,
            20,
            "default",
        )
        .unwrap()
    }

    fn stored_requests(&self) -> Vec<String> {
        let text = std::fs::read(self.path("state/state.json")).unwrap_or_default();
        if text.is_empty() {
            return Vec::new();
        }
        let snapshot: Snapshot = serde_json::from_slice(&text).unwrap();
        snapshot.requests.into_iter().map(|r| r.id).collect()
    }

    fn audit_verifies(&self) -> bool {
        let head = audit::read_head(&self.path("audit").join(names::AUDIT_HEAD_FILE)).unwrap();
        let log = self.path("audit").join(names::AUDIT_LOG_FILE);
        audit::verify(&log, head.as_ref())
            .unwrap()
            .problem
            .is_none()
    }
}

fn ask(core: &mut Core, reason: &str, now: i64) -> String {
    core.request_approval(1000, None, "command:terraform plan", reason, 0, now)
        .unwrap()
        .id
}

fn pending(core: &Core) -> Vec<String> {
    core.list_requests(0, true)
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[test]
fn requests_filed_before_a_crash_are_restored_from_the_audit_log() {
    let dirs = Dirs::new();
    let now = timefmt::now_unix();
    let mut core = dirs.open();
    let kept = ask(&mut core, "keep me", now);
    let denied = ask(&mut core, "deny me", now);
    core.deny(&denied, "no", 0).unwrap();
    let late = ask(&mut core, "filed last", now);
    // The deny saved the state file; the last request is only audited.
    assert_eq!(dirs.stored_requests(), vec![kept.clone()]);
    drop(core); // a crash: nothing more is written

    let core = dirs.open();
    let mut expected = vec![kept.clone(), late.clone()];
    expected.sort();
    assert_eq!(pending(&core), expected);
    let restored = core.get_request(&late, 0, true).unwrap();
    assert_eq!(restored.reason, "filed last");
    assert_eq!(restored.requester_uid, 1000);
    assert_eq!(restored.scope, "command:terraform plan");
    assert_eq!(restored.expires_at, now + 600);
    assert!(dirs.audit_verifies());
}

#[test]
fn the_state_file_catches_up_on_the_next_tick_and_on_shutdown() {
    let dirs = Dirs::new();
    let now = timefmt::now_unix();
    let mut core = dirs.open();
    let first = ask(&mut core, "one", now);
    assert!(dirs.stored_requests().is_empty());
    core.expire(now).unwrap();
    assert_eq!(dirs.stored_requests(), vec![first.clone()]);
    let second = ask(&mut core, "two", now);
    core.save_state();
    let mut expected = vec![first, second];
    expected.sort();
    let mut stored = dirs.stored_requests();
    stored.sort();
    assert_eq!(stored, expected);
    // A restart then has nothing to replay and restores nothing twice.
    drop(core);
    assert_eq!(pending(&dirs.open()), expected);
}

#[test]
fn a_state_file_without_a_mark_replays_the_whole_log_to_the_same_result() {
    let dirs = Dirs::new();
    let now = timefmt::now_unix();
    let mut core = dirs.open();
    let kept = ask(&mut core, "keep", now);
    for reason in ["a", "b"] {
        let id = ask(&mut core, reason, now);
        core.deny(&id, "no", 0).unwrap();
    }
    core.save_state();
    drop(core);
    // A state file written before the mark existed.
    let path = dirs.path("state/state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state.as_object_mut().unwrap().remove("audit_mark").unwrap();
    std::fs::write(&path, state.to_string()).unwrap();
    assert_eq!(pending(&dirs.open()), vec![kept]);
}

/// Rewrites the audit log without the records from the first `event` on.
fn cut_log_at(dirs: &Dirs, event: &str) {
    let path = dirs.path("audit").join(names::AUDIT_LOG_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text
        .lines()
        .position(|l| l.contains(&format!("\"event\":\"{event}\"")))
        .unwrap();
    let kept: String = text.lines().take(at).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, kept).unwrap();
}

#[test]
fn a_request_whose_denial_was_cut_from_the_log_is_not_revived() {
    let dirs = Dirs::new();
    let now = timefmt::now_unix();
    let mut core = dirs.open();
    let denied = ask(&mut core, "deny me", now);
    core.deny(&denied, "no", 0).unwrap();
    drop(core);
    // The state file's mark is the denial; cutting it leaves the
    // request's record without its end.
    cut_log_at(&dirs, "request_denied");
    let core = dirs.open();
    assert!(pending(&core).is_empty(), "a denied request came back");
    assert!(!dirs.audit_verifies(), "the cut stays visible");
}

#[test]
fn only_records_after_the_mark_are_replayed() {
    let dirs = Dirs::new();
    let now = timefmt::now_unix();
    let mut core = dirs.open();
    let saved = ask(&mut core, "saved", now);
    core.save_state();
    let unsaved = ask(&mut core, "unsaved", now);
    drop(core);
    // The state file says `saved` is settled; its record is before the
    // mark, so replay must leave it settled.
    let path = dirs.path("state/state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["requests"] = json!([]);
    std::fs::write(&path, state.to_string()).unwrap();
    let core = dirs.open();
    assert_eq!(pending(&core), vec![unsaved]);
    assert!(core.get_request(&saved, 0, true).is_err());
}

#[test]
fn a_restored_request_that_expired_meanwhile_expires_with_its_record() {
    let dirs = Dirs::new();
    let long_ago = timefmt::now_unix() - 3600;
    let mut core = dirs.open();
    let stale = ask(&mut core, "old", long_ago);
    drop(core);
    let mut core = dirs.open();
    assert_eq!(pending(&core), vec![stale.clone()]);
    core.expire(timefmt::now_unix()).unwrap();
    assert!(pending(&core).is_empty());
    let records = audit::read_records(&dirs.path("audit").join(names::AUDIT_LOG_FILE)).unwrap();
    assert!(records
        .iter()
        .any(|r| r.event == "request_expired" && r.field_str("request_id") == Some(&stale)));
    drop(core);
    assert!(pending(&dirs.open()).is_empty());
}

// ---- sessions ------------------------------------------------------------

fn shipped_core(dir: &std::path::Path) -> Core {
    let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let times = airlock_common::config::Config::parse("")
        .unwrap()
        .gateway
        .times()
        .unwrap();
    Core::open(&policies, dir, dir, times, 32, "default").unwrap()
}

fn audited(dir: &std::path::Path, event: &str) -> usize {
    std::fs::read_to_string(dir.join(airlock_common::names::AUDIT_LOG_FILE))
        .unwrap()
        .matches(&format!("\"event\":\"{event}\""))
        .count()
}

#[test]
fn a_session_ends_once_and_a_revoked_one_stays_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = shipped_core(dir.path());
    let a = core
        .create_session(1000, None, false, Vec::new(), 1)
        .unwrap();
    core.session_started(&a.id, EnforcementMode::Lsm).unwrap();
    core.end_session(&a.id, SessionState::Exited, None, 5)
        .unwrap();
    core.end_session(&a.id, SessionState::Exited, None, 6)
        .unwrap();
    assert_eq!(audited(dir.path(), "session_exited"), 1);
    assert!(matches!(
        core.end_session(&a.id, SessionState::Revoked, Some(0), 7),
        Err(AirlockError::Conflict(_))
    ));

    let b = core
        .create_session(1000, None, false, Vec::new(), 1)
        .unwrap();
    core.session_started(&b.id, EnforcementMode::Lsm).unwrap();
    core.end_session(&b.id, SessionState::Revoked, Some(0), 8)
        .unwrap();
    core.end_session(&b.id, SessionState::Exited, None, 9)
        .unwrap();
    assert_eq!(core.session(&b.id).unwrap().state, SessionState::Revoked);
    assert_eq!(core.session(&b.id).unwrap().ended_at, 9);
    assert_eq!(audited(dir.path(), "session_revoked"), 1);
    assert_eq!(audited(dir.path(), "session_exited"), 1);
}

#[test]
fn a_session_that_ended_while_starting_is_not_revived() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = shipped_core(dir.path());
    let a = core
        .create_session(1000, None, false, Vec::new(), 1)
        .unwrap();
    // Revoked between the enforcer taking it and the gateway hearing so.
    core.end_session(&a.id, SessionState::Revoked, Some(0), 2)
        .unwrap();
    let started = core.session_started(&a.id, EnforcementMode::Lsm).unwrap();
    assert_eq!(started.state, SessionState::Revoked);
    assert_eq!(core.session(&a.id).unwrap().state, SessionState::Revoked);
    assert_eq!(audited(dir.path(), "session_started"), 0);
    assert!(core.check_live_session(&a.id).is_err());
}

// ---- replay: the state is a fold over the log ----------------------------

/// Signs grants as airlock-totp would, with a throwaway key.
struct Signer {
    key: ring::signature::Ed25519KeyPair,
}

impl Signer {
    fn new() -> Signer {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Signer {
            key: ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
        }
    }

    fn public_b64(&self) -> String {
        use ring::signature::KeyPair;
        crate::state::encode_key(self.key.public_key().as_ref())
    }

    /// Signs exactly what the gateway asked for.
    fn sign(&self, asked: &GrantRequest, now: i64) -> SignedGrantWire {
        let body = GrantBody {
            version: 1,
            grant_id: ids::new_id("grt"),
            request_id: asked.request_id.clone(),
            subject: airlock_common::grant::Subject {
                uid: asked.subject_uid,
                session: (*asked.session).clone(),
            },
            scope: Scope::parse(&asked.scope).unwrap(),
            access: asked.access,
            not_before: now,
            expires_at: now + asked.ttl_secs as i64,
        };
        let signed = SignedGrant::sign_with(&body, |input| self.key.sign(input).as_ref().to_vec());
        SignedGrantWire {
            payload: signed.payload,
            signature: signed.signature,
        }
    }
}

/// Files a request and approves it with `signer`; returns the grant id.
fn approve_one(core: &mut Core, signer: &Signer, now: i64) -> String {
    core.pin_signing_key(&signer.public_b64()).unwrap();
    let id = ask(core, "approve me", now);
    let asked = core.prepare_approval(&id, 600, false).unwrap();
    core.record_grant(signer.sign(&asked, now), 0, now)
        .unwrap()
        .id
}

fn live_grants(core: &Core) -> Vec<String> {
    core.list_grants(0, true, timefmt::now_unix())
        .into_iter()
        .map(|g| g.id)
        .collect()
}

#[test]
fn a_grant_whose_state_save_was_lost_is_restored_from_its_record() {
    let dirs = Dirs::new();
    let now = timefmt::now_unix();
    let signer = Signer::new();
    let mut core = dirs.open();
    core.pin_signing_key(&signer.public_b64()).unwrap();
    core.save_state();
    let before = std::fs::read(dirs.path("state/state.json")).unwrap();
    let grant = approve_one(&mut core, &signer, now);
    drop(core);
    // A crash between the record and the state file: the file is as it was.
    std::fs::write(dirs.path("state/state.json"), before).unwrap();
    let core = dirs.open();
    assert_eq!(live_grants(&core), vec![grant]);
    assert!(pending(&core).is_empty(), "the approved request came back");
    assert!(dirs.audit_verifies());
}

#[test]
fn revoked_and_expired_grants_in_the_tail_stay_ended() {
    let dirs = Dirs::new();
    let now = timefmt::now_unix();
    let signer = Signer::new();
    let mut core = dirs.open();
    let revoked = approve_one(&mut core, &signer, now);
    let kept = approve_one(&mut core, &signer, now);
    let expiring = approve_one(&mut core, &signer, now);
    core.save_state();
    let saved = std::fs::read(dirs.path("state/state.json")).unwrap();
    core.revoke(&revoked, 0).unwrap();
    // Only `expiring` has run out by then (600 s after issue).
    let later = now + 599;
    assert!(core.expire(later).unwrap().is_empty());
    core.record(
        Event::GrantExpired {
            grant_id: expiring.clone(),
        },
        later,
    )
    .unwrap();
    drop(core);
    std::fs::write(dirs.path("state/state.json"), saved).unwrap();
    assert_eq!(live_grants(&dirs.open()), vec![kept]);
}

#[test]
fn a_grant_record_that_does_not_verify_is_not_restored() {
    let dirs = Dirs::new();
    let now = timefmt::now_unix();
    let signer = Signer::new();
    let mut core = dirs.open();
    core.pin_signing_key(&signer.public_b64()).unwrap();
    let id = ask(&mut core, "forge me", now);
    let asked = core.prepare_approval(&id, 600, true).unwrap();
    // Someone who can write the gateway's files appends a well-formed,
    // correctly chained record with a grant signed by another key.
    let forged = Signer::new().sign(&asked, now);
    let body: GrantBody = serde_json::from_str(&forged.payload).unwrap();
    core.record(
        Event::GrantIssued {
            request_id: id.clone(),
            grant_id: body.grant_id.clone(),
            scope: body.scope.clone(),
            access: body.access,
            uid: 1000,
            approver_uid: 0,
            expires_at: body.expires_at,
            signed: Some(SignedGrant {
                payload: forged.payload,
                signature: forged.signature,
            }),
        },
        now,
    )
    .unwrap();
    assert!(live_grants(&core).is_empty());
    drop(core);
    assert!(live_grants(&dirs.open()).is_empty());
}

#[test]
fn a_session_whose_state_save_was_lost_is_restored_from_its_record() {
    let dirs = Dirs::new();
    std::fs::write(
        dirs.path("policies/roles.toml"),
        "[[role]]\nid = \"default\"\ndefault_action = \"allow\"\n",
    )
    .unwrap();
    let mut core = dirs.open();
    // Nothing to save yet: no state file, the whole log is the state.
    core.save_state();
    assert!(!dirs.path("state/state.json").exists());
    let session = core
        .create_session(1000, None, false, vec!["/usr/bin".into()], 1)
        .unwrap();
    core.session_started(&session.id, EnforcementMode::Degraded)
        .unwrap();
    drop(core);
    std::fs::remove_file(dirs.path("state/state.json")).unwrap();
    let mut core = dirs.open();
    let restored = core.session(&session.id).unwrap().clone();
    assert_eq!(restored.state, SessionState::Running);
    assert_eq!(restored.index, session.index);
    assert_eq!(restored.search_path, ["/usr/bin"]);
    assert_eq!(restored.enforcement, EnforcementMode::Degraded);
    // A new session does not reuse the restored one's kernel index.
    let next = core
        .create_session(1000, None, false, Vec::new(), 2)
        .unwrap();
    assert_ne!(next.index, session.index);
}

#[test]
fn a_signed_grant_is_recorded_only_if_it_fits_a_pending_request() {
    let dirs = Dirs::new();
    let now = timefmt::now_unix();
    let signer = Signer::new();
    let mut core = dirs.open();
    core.pin_signing_key(&signer.public_b64()).unwrap();
    let id = ask(&mut core, "fit me", now);
    let asked = core.prepare_approval(&id, 600, false).unwrap();
    let refused = |core: &mut Core, request: GrantRequest| {
        core.record_grant(signer.sign(&request, now), 0, now)
            .unwrap_err()
    };
    // Another subject, session or scope than the request's: refused.
    for other in [
        GrantRequest {
            subject_uid: 0,
            ..asked.clone()
        },
        GrantRequest {
            session: Some("ses-other".to_owned()).into(),
            ..asked.clone()
        },
        GrantRequest {
            scope: "services:gmail".into(),
            ..asked.clone()
        },
        GrantRequest {
            ttl_secs: 9 * 3600,
            ..asked.clone()
        },
    ] {
        let error = refused(&mut core, other);
        assert!(
            matches!(error, AirlockError::InvalidArgument(_)),
            "{error:?}"
        );
    }
    // Signed by another key, or for a request that is not pending.
    let forged = Signer::new().sign(&asked, now);
    assert!(matches!(
        core.record_grant(forged, 0, now),
        Err(AirlockError::AccessDenied(_))
    ));
    let unknown = GrantRequest {
        request_id: "req-unknown".into(),
        ..asked.clone()
    };
    assert!(matches!(
        refused(&mut core, unknown),
        AirlockError::Conflict(_)
    ));
    assert!(live_grants(&core).is_empty());
    // The access and lifetime the approver chose (within the maximum) fit.
    let chosen = GrantRequest {
        access: Access::Write,
        ttl_secs: 1200,
        ..asked
    };
    let grant = core
        .record_grant(signer.sign(&chosen, now), 0, now)
        .unwrap();
    assert_eq!(
        (grant.access, grant.expires_at - grant.not_before),
        (Access::Write, 1200)
    );
    // It answered the request: the same grant again finds nothing pending.
    assert!(matches!(
        refused(&mut core, chosen),
        AirlockError::Conflict(_)
    ));
}

#[test]
fn totp_reports_become_their_events() {
    let dirs = Dirs::new();
    let now = timefmt::now_unix();
    let mut core = dirs.open();
    let report = |outcome, request: Option<&str>, grant: Option<&str>| TotpReport {
        outcome,
        by_uid: 1001,
        request_id: request.map(str::to_owned).into(),
        grant_id: grant.map(str::to_owned).into(),
        error: Some("InvalidCode".to_owned()).into(),
        message: "invalid TOTP code".into(),
    };
    core.record_totp_report(
        report(TotpOutcome::Signed, Some("req-1"), Some("grt-1")),
        now,
    )
    .unwrap();
    core.record_totp_report(report(TotpOutcome::Failed, Some("req-1"), None), now)
        .unwrap();
    core.record_totp_report(report(TotpOutcome::EnrolmentForced, None, None), now)
        .unwrap();
    assert!(matches!(
        core.record_totp_report(report(TotpOutcome::Signed, Some("req-1"), None), now),
        Err(AirlockError::InvalidArgument(_))
    ));
    assert!(matches!(
        core.record_totp_report(report(TotpOutcome::Failed, Some("../x"), None), now),
        Err(AirlockError::InvalidArgument(_))
    ));
    let log = std::fs::read_to_string(dirs.path("audit").join(names::AUDIT_LOG_FILE)).unwrap();
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let named = |event: &str| records.iter().find(|r| r["event"] == event).cloned();
    let signed = named("totp_verified").unwrap();
    assert_eq!(
        (
            &signed["grant_id"],
            &signed["approver_uid"],
            &signed["service"]
        ),
        (&json!("grt-1"), &json!(1001), &json!("totp"))
    );
    assert_eq!(named("totp_failed").unwrap()["error"], "InvalidCode");
    assert_eq!(named("totp_enrolment_started").unwrap()["forced"], true);
    assert!(dirs.audit_verifies());
}

#[test]
fn a_log_of_the_first_format_replays_and_verifies() {
    // Records exactly as the gateway wrote them before events were typed,
    // and no state file: the restart replays the whole log.
    let dirs = Dirs::new();
    let log = dirs.path("audit").join(names::AUDIT_LOG_FILE);
    let head = dirs.path("audit").join(names::AUDIT_HEAD_FILE);
    let mut audit = audit::AuditLog::open(&log, &head).unwrap();
    let record = |audit: &mut audit::AuditLog, event: &str, fields: Value| {
        audit
            .append(event, fields.as_object().unwrap().clone())
            .unwrap();
    };
    record(
        &mut audit,
        "policy_reload_failed",
        json!({"service": "gateway", "message": "invalid"}),
    );
    record(
        &mut audit,
        "access_requested",
        json!({"service": "gateway", "request_id": "req-old", "scope": "command:terraform plan", "reason": "old", "uid": 1000, "session": null, "requested_ttl_secs": 0}),
    );
    record(
        &mut audit,
        "access_requested",
        json!({"service": "gateway", "request_id": "req-gone", "scope": "command:terraform plan", "reason": "gone", "uid": 1000, "session": null, "requested_ttl_secs": 0}),
    );
    record(
        &mut audit,
        "request_denied",
        json!({"service": "gateway", "request_id": "req-gone", "reason": "no", "approver_uid": 0}),
    );
    record(
        &mut audit,
        "totp_failed",
        json!({"service": "totp", "request_id": "", "approver_uid": 0, "error": "InvalidCode", "message": "wrong"}),
    );
    drop(audit);
    let core = dirs.open();
    assert_eq!(pending(&core), vec!["req-old".to_owned()]);
    // Recorded before expiries were: dated from its record by the setting.
    let old = core.get_request("req-old", 0, true).unwrap();
    assert_eq!(old.expires_at, old.created_at + 600);
    drop(core);
    assert!(dirs.audit_verifies());
}

#[test]
fn a_sessions_spec_carries_its_command_grants_exactly_as_signed() {
    let dirs = Dirs::new();
    std::fs::write(
        dirs.path("policies/roles.toml"),
        "[[role]]\nid = \"default\"\ndefault_action = \"allow\"\n",
    )
    .unwrap();
    let now = timefmt::now_unix();
    let signer = Signer::new();
    let mut core = dirs.open();
    core.pin_signing_key(&signer.public_b64()).unwrap();
    let session = core
        .create_session(1000, None, false, Vec::new(), now)
        .unwrap();
    core.session_started(&session.id, EnforcementMode::Degraded)
        .unwrap();
    let mut signed = Vec::new();
    for (session, scope) in [
        (Some(session.id.clone()), "command:terraform plan"),
        (Some(session.id.clone()), "services:gmail"),
        (Some("ses-other".to_owned()), "command:terraform plan"),
        (None, "command:terraform plan"),
    ] {
        let id = core
            .request_approval(1000, session, scope, "spec me", 0, now)
            .unwrap()
            .id;
        let asked = core.prepare_approval(&id, 600, false).unwrap();
        let grant = signer.sign(&asked, now);
        core.record_grant(grant.clone(), 0, now).unwrap();
        signed.push(grant);
    }
    // Only the session's own command grant, byte for byte: the enforcer
    // verifies the signature over exactly this payload.
    let spec = core.session_spec(core.session(&session.id).unwrap(), now);
    assert_eq!(spec.grants, [signed[0].clone()]);
}
