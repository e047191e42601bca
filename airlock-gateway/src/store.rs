//! The state file: a checkpoint of the state, replaced atomically, naming
//! the last audit record it reflects (`audit_mark`). On start the records
//! after the mark are replayed onto it (see `journal`), so the file may lag
//! the log and nothing is lost.
//!
//! Grants are stored exactly as airlock-totp signed them and re-verified on
//! load, so an edited state file cannot widen or extend a grant.

use std::path::{Path, PathBuf};

use airlock_common::audit::Head;
use airlock_common::fsutil::{replace, Durability};
use airlock_common::grant::SignedGrant;
use serde::{Deserialize, Serialize};

use crate::state::integrations::Integrations;
use crate::state::requests::PendingRequest;
use crate::state::sessions::Session;
use crate::state::{decode_key, encode_key, Parts};

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
    /// Third-party enforcers (secrets as SHA-256 only).
    #[serde(default)]
    pub integrations: Integrations,
    /// The newest audit record this snapshot reflects.
    #[serde(default)]
    pub audit_mark: Option<Head>,
}

impl Snapshot {
    pub fn new(parts: Parts, audit_mark: Head) -> Snapshot {
        Snapshot {
            version: 1,
            signing_key: parts.signing_key.as_deref().map(encode_key),
            requests: parts.requests,
            grants: parts.grants,
            sessions: parts.sessions,
            next_session_index: parts.next_session_index,
            integrations: parts.integrations,
            audit_mark: Some(audit_mark),
        }
    }

    /// The state it holds and its mark.
    pub fn into_parts(self) -> anyhow::Result<(Parts, Option<Head>)> {
        let parts = Parts {
            signing_key: self.signing_key.as_deref().map(decode_key).transpose()?,
            requests: self.requests,
            grants: self.grants,
            sessions: self.sessions,
            next_session_index: self.next_session_index,
            integrations: self.integrations,
        };
        Ok((parts, self.audit_mark))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_of_the_first_format_loads() {
        // As the gateway wrote it before events and enums were typed.
        let text = r#"{"version":1,"signing_key":null,"requests":[{"id":"req_a","scope":{"kind":"command","command":"terraform plan"},"reason":"r","requester_uid":1000,"session":null,"requested_ttl_secs":0,"created_at":1,"expires_at":601}],"grants":[],"sessions":[{"id":"ses_a","index":1,"role":"default","uid":1000,"bound_uid":false,"state":"running","created_at":1,"ended_at":0,"search_path":["/usr/bin"],"enforcement":""},{"id":"ses_b","index":2,"role":"default","uid":1000,"state":"exited","created_at":1,"enforcement":"degraded"}],"next_session_index":2,"audit_mark":{"seq":3,"hash":"00"}}"#;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), text).unwrap();
        let (parts, mark) = Store::new(dir.path()).load().unwrap().into_parts().unwrap();
        assert_eq!(parts.requests.len(), 1);
        assert_eq!(
            parts.sessions[0].enforcement,
            airlock_common::enforcement::EnforcementMode::Unknown
        );
        assert_eq!(
            parts.sessions[1].enforcement,
            airlock_common::enforcement::EnforcementMode::Degraded
        );
        assert_eq!(mark.unwrap().seq, 3);
    }
}
