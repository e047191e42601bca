//! The gateway's persistent state: pending requests, live grants, sessions
//! and the pinned grant-verification key, in one JSON file replaced
//! atomically.
//!
//! Grants are stored exactly as `airlock-totp` signed them and re-verified on
//! load, so an edited state file cannot widen or extend a grant.
//!
//! A new request is not written here before its caller gets the id: its
//! fsynced `access_requested` record is enough, and rewriting this file on
//! every request doubled the cost of asking. The snapshot names the last
//! audit record it reflects (`audit_mark`); on load, [`replay_requests`]
//! applies the request records after it.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use airlock_common::audit::{Head, Record};
use airlock_common::fsutil::{replace, Durability};
use airlock_common::grant::{Scope, SignedGrant};
use airlock_common::timefmt;

use crate::sessions::Session;
use serde::{Deserialize, Serialize};

/// A request waiting for a human.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequest {
    pub id: String,
    pub scope: Scope,
    pub reason: String,
    pub requester_uid: u32,
    #[serde(default)]
    pub session: Option<String>,
    pub requested_ttl_secs: u64,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub version: u32,
    /// Standard base64 of the Ed25519 public key learned from `airlock-totp`
    /// on first contact; grants must verify against it.
    #[serde(default)]
    pub signing_key: Option<String>,
    #[serde(default)]
    pub requests: Vec<PendingRequest>,
    #[serde(default)]
    pub grants: Vec<SignedGrant>,
    /// Governed sessions, live and recently ended.
    #[serde(default)]
    pub sessions: Vec<Session>,
    #[serde(default)]
    pub next_session_index: u32,
    /// The newest audit record this snapshot reflects.
    #[serde(default)]
    pub audit_mark: Option<Head>,
}

pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store {
            path: state_dir.join("state.json"),
        }
    }

    pub fn load(&self) -> anyhow::Result<Snapshot> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let snapshot: Snapshot = serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow::anyhow!("{} is not valid gateway state: {e}", self.path.display())
                })?;
                anyhow::ensure!(
                    snapshot.version == 1,
                    "{}: unsupported state version {}",
                    self.path.display(),
                    snapshot.version
                );
                Ok(snapshot)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Snapshot {
                version: 1,
                ..Snapshot::default()
            }),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", self.path.display())),
        }
    }

    pub fn save(&self, snapshot: &Snapshot, durability: Durability) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(snapshot).expect("state always serialises");
        replace(&self.path, &bytes, 0o600, durability)
    }
}

/// What [`replay_requests`] changed.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Pending requests the snapshot did not have.
    pub restored: Vec<String>,
    /// Requests the snapshot had that were decided or expired after it.
    pub settled: Vec<String>,
}

impl Replayed {
    pub fn changed(&self) -> bool {
        !(self.restored.is_empty() && self.settled.is_empty())
    }
}

/// Applies the request lifecycle recorded in `tail` (records after the
/// snapshot's mark, oldest first) to the snapshot's `requests`. Replaying
/// whole histories the snapshot already reflects changes nothing; a part of
/// one (a request without its denial) would revive a decided request, which
/// is why `audit::records_after` never starts inside a damaged stretch.
pub fn replay_requests(
    requests: &mut BTreeMap<String, PendingRequest>,
    tail: &[Record],
    request_ttl_secs: u64,
) -> Replayed {
    let stored: Vec<String> = requests.keys().cloned().collect();
    for record in tail {
        let Some(id) = record.field_str("request_id") else {
            continue;
        };
        match record.event.as_str() {
            "access_requested" if !requests.contains_key(id) => {
                match request_from_record(id, record, request_ttl_secs) {
                    Some(request) => {
                        requests.insert(id.to_owned(), request);
                    }
                    None => tracing::warn!(
                        "audit record {} (access_requested) cannot be replayed; request {id} is lost",
                        record.seq
                    ),
                }
            }
            "request_denied" | "request_expired" | "grant_issued" => {
                requests.remove(id);
            }
            _ => {}
        }
    }
    Replayed {
        restored: requests
            .keys()
            .filter(|id| !stored.contains(id))
            .cloned()
            .collect(),
        settled: stored
            .into_iter()
            .filter(|id| !requests.contains_key(id))
            .collect(),
    }
}

/// Drops the grants that `tail` records as revoked or expired: a revocation
/// whose state file write failed must not be undone by a restart. Returns
/// their ids.
pub fn replay_grant_ends<T>(grants: &mut BTreeMap<String, T>, tail: &[Record]) -> Vec<String> {
    tail.iter()
        .filter(|r| matches!(r.event.as_str(), "grant_revoked" | "grant_expired"))
        .filter_map(|r| r.field_str("grant_id"))
        .filter(|id| grants.remove(*id).is_some())
        .map(str::to_owned)
        .collect()
}

fn request_from_record(id: &str, record: &Record, request_ttl_secs: u64) -> Option<PendingRequest> {
    let fields = &record.fields;
    Some(PendingRequest {
        id: id.to_owned(),
        scope: Scope::parse(record.field_str("scope")?).ok()?,
        reason: record.field_str("reason")?.to_owned(),
        requester_uid: u32::try_from(fields.get("uid")?.as_u64()?).ok()?,
        session: record.field_str("session").map(str::to_owned),
        requested_ttl_secs: fields.get("requested_ttl_secs")?.as_u64()?,
        created_at: record.ts,
        // Records from before `expires_at` was audited: the current setting.
        expires_at: record
            .field_str("expires_at")
            .and_then(timefmt::parse_rfc3339)
            .unwrap_or(record.ts.saturating_add(request_ttl_secs as i64)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &str, fields: serde_json::Value) -> Record {
        Record {
            seq: 1,
            ts: 0,
            event: event.into(),
            fields: fields.as_object().unwrap().clone(),
            prev: String::new(),
            hash: String::new(),
            line: 1,
            raw: String::new(),
        }
    }

    #[test]
    fn revoked_and_expired_grants_in_the_tail_are_dropped() {
        let mut grants: BTreeMap<String, ()> =
            ["g1", "g2", "g3"].map(|g| (g.to_owned(), ())).into();
        let tail = [
            record("grant_revoked", serde_json::json!({"grant_id": "g1"})),
            record("grant_issued", serde_json::json!({"grant_id": "g2"})),
            record("grant_expired", serde_json::json!({"grant_id": "g3"})),
            record("grant_revoked", serde_json::json!({"grant_id": "unknown"})),
        ];
        assert_eq!(replay_grant_ends(&mut grants, &tail), ["g1", "g3"]);
        assert_eq!(grants.keys().collect::<Vec<_>>(), ["g2"]);
    }
}
