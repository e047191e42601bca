//! The gateway's persistent state: pending requests, live grants and the
//! pinned grant-verification key, in one JSON file replaced atomically.
//!
//! Grants are stored exactly as `airlock-totp` signed them and re-verified on
//! load, so an edited state file cannot widen or extend a grant.

use std::path::{Path, PathBuf};

use airlock_common::fsutil::{replace, Durability};
use airlock_common::grant::{Scope, SignedGrant};

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
