//! Live grants, exactly as airlock-totp signed them: issued by
//! `grant_issued`, ended by a revocation or an expiry.
//!
//! A grant enters only through its signature: a stored or replayed grant
//! that does not verify against the pinned key is never held, so an edited
//! state file or log cannot widen or extend one.

use std::collections::BTreeMap;

use airlock_common::dbus::{AirlockError, GrantInfo, GrantRequest};
use airlock_common::event::Event;
use airlock_common::grant::{GrantBody, SignedGrant};

#[derive(Debug, Default)]
pub struct Grants {
    live: BTreeMap<String, (SignedGrant, GrantBody)>,
}

impl Grants {
    /// Verifies each stored grant against `key`; returns the grants and why
    /// each one that did not verify was dropped.
    pub fn from_snapshot(stored: Vec<SignedGrant>, key: Option<&[u8]>) -> (Grants, Vec<String>) {
        let mut grants = Grants::default();
        let mut rejected = Vec::new();
        for signed in stored {
            match verify(&signed, key) {
                Ok(body) => {
                    grants.live.insert(body.grant_id.clone(), (signed, body));
                }
                Err(reason) => rejected.push(reason),
            }
        }
        (grants, rejected)
    }

    pub fn snapshot(&self) -> Vec<SignedGrant> {
        self.live
            .values()
            .map(|(signed, _)| signed.clone())
            .collect()
    }

    /// Applies a recorded event; `key` is the pinned grant-verification key.
    /// Returns whether anything changed.
    pub fn apply(&mut self, event: &Event, key: Option<&[u8]>) -> bool {
        match event {
            Event::GrantIssued {
                grant_id,
                signed: Some(signed),
                ..
            } => {
                if self.live.contains_key(grant_id) {
                    return false;
                }
                match verify(signed, key) {
                    Ok(body) if body.grant_id == *grant_id => {
                        self.live.insert(grant_id.clone(), (signed.clone(), body));
                        true
                    }
                    Ok(_) => {
                        tracing::error!("grant_issued {grant_id} carries another grant; ignored");
                        false
                    }
                    Err(reason) => {
                        tracing::error!(
                            "grant_issued {grant_id} does not verify ({reason}); ignored"
                        );
                        false
                    }
                }
            }
            Event::GrantRevoked { grant_id, .. } | Event::GrantExpired { grant_id } => {
                self.live.remove(grant_id).is_some()
            }
            _ => false,
        }
    }

    pub fn get(&self, id: &str) -> Option<&GrantBody> {
        self.live.get(id).map(|(_, body)| body)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.live.contains_key(id)
    }

    pub fn bodies(&self) -> impl Iterator<Item = &GrantBody> {
        self.live.values().map(|(_, body)| body)
    }

    pub fn ids(&self) -> Vec<String> {
        self.live.keys().cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.live.len()
    }

    /// Grants live at `now`, each as signed and as read.
    pub fn live(&self, now: i64) -> impl Iterator<Item = (&SignedGrant, &GrantBody)> {
        self.live
            .values()
            .filter(move |(_, b)| b.is_live(now))
            .map(|(signed, body)| (signed, body))
    }

    /// Live grants whose subject is `session`, each as signed and as read.
    pub fn of_session(&self, session: &str, now: i64) -> Vec<(&SignedGrant, &GrantBody)> {
        self.live
            .values()
            .filter(|(_, b)| b.is_live(now) && b.subject.session.as_deref() == Some(session))
            .map(|(signed, body)| (signed, body))
            .collect()
    }

    /// Grants whose time ran out at `now`.
    pub fn expired(&self, now: i64) -> Vec<String> {
        self.bodies()
            .filter(|b| b.expires_at <= now)
            .map(|b| b.grant_id.clone())
            .collect()
    }
}

/// How a grant is shown to people.
pub fn info(body: &GrantBody) -> GrantInfo {
    GrantInfo {
        id: body.grant_id.clone(),
        request_id: body.request_id.clone(),
        scope: body.scope.to_string(),
        access: body.access,
        subject_uid: body.subject.uid,
        session: body.subject.session.clone().into(),
        not_before: body.not_before,
        expires_at: body.expires_at,
    }
}

/// Checks a grant handed in against the pinned key and returns its body.
pub fn verify_signed(signed: &SignedGrant, key: Option<&[u8]>) -> Result<GrantBody, AirlockError> {
    let key = key.ok_or_else(|| {
        AirlockError::Unavailable("no grant-verification key is pinned yet".into())
    })?;
    signed.verify(key).map_err(|e| {
        tracing::warn!("refused a grant that does not verify with the pinned key: {e}");
        AirlockError::AccessDenied(format!(
            "the grant does not verify with airlock-totp's pinned key: {e}"
        ))
    })
}

/// Checks that a verified grant body is exactly what was asked for,
/// starting about `now`.
pub fn check_fits(
    body: GrantBody,
    asked: &GrantRequest,
    now: i64,
) -> Result<GrantBody, AirlockError> {
    let matches = body.request_id == asked.request_id
        && body.subject.uid == asked.subject_uid
        && body.subject.session == *asked.session
        && body.scope.to_string() == asked.scope
        && body.access == asked.access
        && (body.expires_at - body.not_before) as u64 == asked.ttl_secs
        && (body.not_before - now).abs() <= 60;
    if !matches {
        return Err(AirlockError::InvalidArgument(format!(
            "grant {} does not fit pending request {}: its subject, session or scope differ, \
             or it is not current",
            body.grant_id, body.request_id
        )));
    }
    Ok(body)
}

fn verify(signed: &SignedGrant, key: Option<&[u8]>) -> Result<GrantBody, String> {
    match key {
        Some(key) => signed.verify(key).map_err(|e| e.to_string()),
        None => Err("no grant-verification key is pinned".to_string()),
    }
}
