//! The gateway's state, as a fold over its audit log: each part (requests,
//! grants, sessions) applies the recorded events that concern it. Recording
//! an event and replaying it after a crash go through the same `apply`.

pub mod grants;
pub mod integrations;
pub mod requests;
pub mod sessions;

use airlock_common::event::Event;
use airlock_common::grant::SignedGrant;

use self::grants::Grants;
use self::integrations::Integrations;
use self::requests::{PendingRequest, Requests};
use self::sessions::{Session, Sessions};

#[derive(Debug, Default)]
pub struct State {
    pub requests: Requests,
    pub grants: Grants,
    pub sessions: Sessions,
    /// Third-party enforcers: apps, PATs, consent, pairings, exchanges.
    pub integrations: Integrations,
    /// The Ed25519 public key grants must verify against, learned from
    /// airlock-totp on first contact.
    pub signing_key: Option<Vec<u8>>,
    /// Dates the expiry of requests recorded before their expiry was.
    pub request_ttl_secs: u64,
}

/// What the state file holds, besides the audit mark.
pub struct Parts {
    pub signing_key: Option<Vec<u8>>,
    pub requests: Vec<PendingRequest>,
    pub grants: Vec<SignedGrant>,
    pub sessions: Vec<Session>,
    pub next_session_index: u32,
    pub integrations: Integrations,
}

impl State {
    /// Rebuilds the state from a snapshot; grants are verified again.
    /// Returns why each dropped grant was dropped.
    pub fn from_parts(parts: Parts, request_ttl_secs: u64) -> (State, Vec<String>) {
        let (grants, rejected) = Grants::from_snapshot(parts.grants, parts.signing_key.as_deref());
        let state = State {
            requests: Requests::from_snapshot(parts.requests),
            grants,
            sessions: Sessions::from_snapshot(parts.sessions, parts.next_session_index),
            integrations: parts.integrations,
            signing_key: parts.signing_key,
            request_ttl_secs,
        };
        (state, rejected)
    }

    pub fn parts(&self) -> Parts {
        let (sessions, next_session_index) = self.sessions.snapshot();
        Parts {
            signing_key: self.signing_key.clone(),
            requests: self.requests.snapshot(),
            grants: self.grants.snapshot(),
            sessions,
            next_session_index,
            integrations: self.integrations.clone(),
        }
    }

    /// Applies one recorded event at time `ts`. Returns whether the state
    /// changed.
    pub fn apply(&mut self, event: &Event, ts: i64) -> bool {
        if let Event::SigningKeyPinned { key } = event {
            if self.signing_key.is_some() {
                return false;
            }
            return match decode_key(key) {
                Ok(key) => {
                    self.signing_key = Some(key);
                    true
                }
                Err(e) => {
                    tracing::error!("signing_key_pinned holds no usable key ({e}); ignored");
                    false
                }
            };
        }
        let requests = self.requests.apply(event, ts, self.request_ttl_secs);
        let grants = self.grants.apply(event, self.signing_key.as_deref());
        let sessions = self.sessions.apply(event, ts);
        let integrations = self.integrations.apply(event, ts);
        requests || grants || sessions || integrations
    }
}

pub fn encode_key(key: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Decodes a standard-base64 Ed25519 public key and checks its length.
pub fn decode_key(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.decode(text.trim())?;
    anyhow::ensure!(
        key.len() == 32,
        "an Ed25519 public key is 32 bytes, got {}",
        key.len()
    );
    Ok(key)
}
