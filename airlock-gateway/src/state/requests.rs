//! Requests waiting for a human: filed by `access_requested`, settled by a
//! denial, an expiry or the grant that answers them.

use std::collections::BTreeMap;

use airlock_common::config::GatewayTimes;
use airlock_common::dbus::{AirlockError, GrantRequest, RequestInfo};
use airlock_common::event::Event;
use airlock_common::grant::{Access, Scope};
use airlock_common::timefmt;
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

impl PendingRequest {
    pub fn info(&self) -> RequestInfo {
        RequestInfo {
            id: self.id.clone(),
            scope: self.scope.to_string(),
            reason: self.reason.clone(),
            requester_uid: self.requester_uid,
            session: self.session.clone().into(),
            requested_ttl_secs: self.requested_ttl_secs,
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }

    /// What airlock-totp is asked to sign for approving it: `ttl_secs` 0
    /// means the requested lifetime, or the default; never over the maximum.
    pub fn grant_request(
        &self,
        ttl_secs: u64,
        access: Access,
        times: &GatewayTimes,
    ) -> Result<GrantRequest, AirlockError> {
        let max = times.max_grant_ttl.as_secs();
        let ttl = match (ttl_secs, self.requested_ttl_secs) {
            (0, 0) => times.default_grant_ttl.as_secs(),
            (0, asked) => asked,
            (given, _) => given,
        };
        if ttl > max {
            return Err(AirlockError::InvalidArgument(format!(
                "ttl {} exceeds the maximum of {}",
                timefmt::format_secs(ttl),
                timefmt::format_secs(max)
            )));
        }
        Ok(GrantRequest {
            request_id: self.id.clone(),
            subject_uid: self.requester_uid,
            session: self.session.clone().into(),
            scope: self.scope.to_string(),
            access,
            ttl_secs: ttl,
        })
    }
}

#[derive(Debug, Default)]
pub struct Requests {
    pending: BTreeMap<String, PendingRequest>,
}

impl Requests {
    pub fn from_snapshot(requests: Vec<PendingRequest>) -> Requests {
        Requests {
            pending: requests.into_iter().map(|r| (r.id.clone(), r)).collect(),
        }
    }

    pub fn snapshot(&self) -> Vec<PendingRequest> {
        self.pending.values().cloned().collect()
    }

    /// Applies a recorded event at time `ts`. `request_ttl_secs` dates the
    /// expiry of requests recorded before their expiry was. Returns whether
    /// anything changed.
    pub fn apply(&mut self, event: &Event, ts: i64, request_ttl_secs: u64) -> bool {
        match event {
            Event::AccessRequested {
                request_id,
                scope,
                reason,
                uid,
                session,
                requested_ttl_secs,
                expires_at,
            } => {
                if self.pending.contains_key(request_id) {
                    return false;
                }
                let request = PendingRequest {
                    id: request_id.clone(),
                    scope: scope.clone(),
                    reason: reason.clone(),
                    requester_uid: *uid,
                    session: session.clone(),
                    requested_ttl_secs: *requested_ttl_secs,
                    created_at: ts,
                    expires_at: expires_at
                        .unwrap_or_else(|| ts.saturating_add(request_ttl_secs as i64)),
                };
                self.pending.insert(request_id.clone(), request);
                true
            }
            Event::RequestDenied { request_id, .. }
            | Event::RequestExpired { request_id }
            | Event::GrantIssued { request_id, .. } => self.pending.remove(request_id).is_some(),
            _ => false,
        }
    }

    pub fn get(&self, id: &str) -> Option<&PendingRequest> {
        self.pending.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.pending.contains_key(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &PendingRequest> {
        self.pending.values()
    }

    pub fn ids(&self) -> Vec<String> {
        self.pending.keys().cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.pending.len()
    }

    /// How many requests `uid` has pending.
    pub fn pending_of(&self, uid: u32) -> usize {
        self.iter().filter(|r| r.requester_uid == uid).count()
    }

    /// A pending request of `session` for exactly `scope`, to reuse when
    /// the kernel refuses the same command again.
    pub fn pending_for(&self, session: &str, scope: &Scope) -> Option<&PendingRequest> {
        self.iter()
            .find(|r| r.session.as_deref() == Some(session) && r.scope == *scope)
    }

    /// Requests whose time ran out at `now`.
    pub fn expired(&self, now: i64) -> Vec<String> {
        self.iter()
            .filter(|r| r.expires_at <= now)
            .map(|r| r.id.clone())
            .collect()
    }
}
