//! The gateway's recovery: its state is a fold over the audit log, so the
//! state a gateway built live must be the state a restart rebuilds from the
//! log, wherever the last state-file checkpoint fell.
//!
//! Input: a sequence of operations decoded from the bytes — events about a
//! small set of ids (so that they collide: a denial of a request that was
//! never filed, a grant for a settled one, a session ended twice), grants
//! signed by the pinned key or by another, malformed keys, records with
//! names and fields this build does not know, and checkpoints (state-file
//! saves). Each event is recorded through the real journal (append, fsync
//! skipped by tmpfs, apply).
//!
//! Invariants: nothing panics; reopening (the restart) rebuilds exactly the
//! live state; reopening again, after the restart's own checkpoint, changes
//! nothing more.
#![no_main]

use std::fs;
use std::sync::OnceLock;

use airlock_common::audit::AuditLog;
use airlock_common::enforcement::EnforcementMode;
use airlock_common::event::Event;
use airlock_common::fsutil::Durability;
use airlock_common::grant::{Access, GrantBody, Scope, SignedGrant, Subject};
use airlock_common::names;
use airlock_gateway::journal::Journal;
use airlock_gateway::state::{encode_key, State};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair};

const TTL: u64 = 600;

fn keys() -> &'static (Ed25519KeyPair, Ed25519KeyPair) {
    static KEYS: OnceLock<(Ed25519KeyPair, Ed25519KeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap(),
            Ed25519KeyPair::from_seed_unchecked(&[9; 32]).unwrap(),
        )
    })
}

fn id(u: &mut Unstructured, prefix: &str) -> Result<String> {
    Ok(format!("{prefix}_{}", u.int_in_range(0..=3u8)?))
}

fn signed(u: &mut Unstructured, grant_id: &str, request_id: &str) -> Result<SignedGrant> {
    let (pinned, other) = keys();
    let key = if u.ratio(3, 4)? { pinned } else { other };
    let body = GrantBody {
        version: 1,
        grant_id: grant_id.to_owned(),
        request_id: request_id.to_owned(),
        subject: Subject { uid: 1000, session: None },
        scope: Scope::parse("command:terraform plan").unwrap(),
        access: if u.arbitrary()? { Access::Write } else { Access::Read },
        not_before: 0,
        expires_at: i64::from(u.int_in_range(1..=4_000_000_000u32)?),
    };
    let mut grant = SignedGrant::sign_with(&body, |input| key.sign(input).as_ref().to_vec());
    if u.ratio(1, 8)? {
        // A payload edited after signing.
        grant.payload = grant.payload.replace("read", "write");
    }
    Ok(grant)
}

/// One operation: `None` is a checkpoint.
fn operation(u: &mut Unstructured) -> Result<Option<Event>> {
    Ok(Some(match u.int_in_range(0..=12u8)? {
        0 => return Ok(None),
        1 => Event::AccessRequested {
            request_id: id(u, "req")?,
            scope: Scope::parse("command:terraform plan").unwrap(),
            reason: String::new(),
            uid: u.int_in_range(1000..=1001)?,
            session: if u.arbitrary()? { Some(id(u, "ses")?) } else { None },
            requested_ttl_secs: 0,
            expires_at: if u.arbitrary()? { Some(u.int_in_range(0..=i64::from(u32::MAX))?) } else { None },
        },
        2 => Event::RequestDenied { request_id: id(u, "req")?, reason: String::new(), approver_uid: 0 },
        3 => Event::RequestExpired { request_id: id(u, "req")? },
        4 => {
            let (grant_id, request_id) = (id(u, "grt")?, id(u, "req")?);
            let signed = if u.arbitrary()? { Some(signed(u, &grant_id, &request_id)?) } else { None };
            Event::GrantIssued {
                request_id,
                grant_id,
                scope: Scope::parse("command:terraform plan").unwrap(),
                access: Access::Read,
                uid: 1000,
                approver_uid: 0,
                expires_at: 0,
                signed,
            }
        }
        5 => Event::GrantRevoked { grant_id: id(u, "grt")?, by_uid: Some(0), reason: None },
        6 => Event::GrantExpired { grant_id: id(u, "grt")? },
        7 => Event::SigningKeyPinned {
            key: match u.int_in_range(0..=2u8)? {
                0 => encode_key(keys().0.public_key().as_ref()),
                1 => encode_key(keys().1.public_key().as_ref()),
                _ => String::arbitrary_take_rest_safe(u)?,
            },
        },
        8 => Event::SessionStarted {
            session: id(u, "ses")?,
            role: "default".into(),
            uid: 1000,
            bound_uid: u.arbitrary()?,
            enforcement: EnforcementMode::Lsm,
            index: if u.arbitrary()? { Some(u.int_in_range(1..=5)?) } else { None },
            search_path: vec!["/usr/bin".into()],
        },
        9 => Event::SessionExited { session: id(u, "ses")?, by_uid: None },
        10 => Event::SessionRevoked { session: id(u, "ses")?, by_uid: Some(0) },
        11 => Event::SessionStartFailed { session: id(u, "ses")?, error: String::new() },
        _ => Event::PolicyReloaded { message: String::new() },
    }))
}

/// Bytes-to-string without failing on the rest of the input.
trait TakeRest {
    fn arbitrary_take_rest_safe(u: &mut Unstructured) -> Result<String>;
}

impl TakeRest for String {
    fn arbitrary_take_rest_safe(u: &mut Unstructured) -> Result<String> {
        let len = u.int_in_range(0..=48usize)?;
        Ok(String::from_utf8_lossy(u.bytes(len.min(u.len()))?).into_owned())
    }
}

/// What a restart must rebuild. Times are left out: live, an event applies
/// at the caller's `now`; replayed, at its record's timestamp (so do the
/// expiries of requests recorded without one).
fn essence(state: &State) -> String {
    let mut requests: Vec<_> = state
        .requests
        .iter()
        .map(|r| (r.id.clone(), r.requester_uid, r.session.clone()))
        .collect();
    requests.sort();
    let (sessions, _) = state.sessions.snapshot();
    let sessions: Vec<_> = sessions
        .iter()
        .map(|s| (s.id.clone(), s.index, s.uid, s.bound_uid, s.state, s.search_path.clone()))
        .collect();
    format!(
        "key {:?}\nrequests {requests:?}\ngrants {:?}\nsessions {sessions:?}",
        state.signing_key,
        state.grants.ids()
    )
}

fuzz_target!(|data: &[u8]| {
    let dir = airlock_fuzz::scratch("replay");
    let (state_dir, audit_dir) = (dir.join("state"), dir.join("audit"));
    for d in [&state_dir, &audit_dir] {
        let _ = fs::remove_dir_all(d);
        fs::create_dir_all(d).unwrap();
    }
    let mut u = Unstructured::new(data);
    let foreign_tail: bool = u.arbitrary().unwrap_or(false);
    let (mut journal, _) = Journal::open(&state_dir, &audit_dir, TTL).expect("a fresh journal opens");
    while !u.is_empty() {
        match operation(&mut u) {
            Ok(Some(event)) => {
                journal.record(event, 1_800_000_000).expect("recording on tmpfs works");
            }
            Ok(None) => journal.save(Durability::ProcessCrash),
            Err(_) => break,
        }
    }
    let live = essence(journal.state());
    drop(journal);
    if foreign_tail {
        // A record this build does not know (a newer build's): ignored.
        let log = audit_dir.join(names::AUDIT_LOG_FILE);
        let head = audit_dir.join(names::AUDIT_HEAD_FILE);
        let mut audit = AuditLog::open(&log, &head).unwrap();
        let mut fields = serde_json::Map::new();
        fields.insert("request_id".into(), "req_0".into());
        audit.append("request_reconsidered", fields).unwrap();
    }

    let (mut restarted, _) = Journal::open(&state_dir, &audit_dir, TTL).expect("the journal reopens");
    let rebuilt = essence(restarted.state());
    assert_eq!(live, rebuilt, "a restart rebuilt another state");
    restarted.save(Durability::ProcessCrash);
    drop(restarted);
    let (again, _) = Journal::open(&state_dir, &audit_dir, TTL).expect("the journal reopens");
    assert_eq!(rebuilt, essence(again.state()), "a second restart changed the state");
});
