//! Which live grant lets a caller use a service's credential.

use airlock_common::grant::{GrantBody, Scope, SignedGrant};

use super::Core;

/// A grant that covers the caller, as signed (for airlock-totp) and read.
pub struct Covering {
    pub signed: SignedGrant,
    pub body: GrantBody,
}

impl Core {
    /// Live grants for `service` whose subject is `uid` and, for a grant
    /// bound to a session, that session: `session` is the caller's, none
    /// when it runs in none or cannot be told. Write grants first, then
    /// the longest-lived.
    pub fn service_grants(
        &self,
        service: &str,
        uid: u32,
        session: Option<&str>,
        now: i64,
    ) -> Vec<Covering> {
        let mut found: Vec<Covering> = self
            .journal
            .state()
            .grants
            .live(now)
            .filter(|(_, body)| {
                body.subject.uid == uid
                    && body
                        .subject
                        .session
                        .as_deref()
                        .is_none_or(|bound| Some(bound) == session)
                    && matches!(&body.scope, Scope::Services { services } if services.iter().any(|s| s == service))
            })
            .map(|(signed, body)| Covering {
                signed: signed.clone(),
                body: body.clone(),
            })
            .collect();
        found.sort_by_key(|c| {
            (
                c.body.access != airlock_common::grant::Access::Write,
                -c.body.expires_at,
            )
        });
        found
    }

    /// Whether grant `grant_id` is live at `now`.
    pub fn grant_is_live(&self, grant_id: &str, now: i64) -> bool {
        self.journal
            .state()
            .grants
            .live(now)
            .any(|(_, body)| body.grant_id == grant_id)
    }

    /// Whether `uid` holds any live grant for `service` bound to a session
    /// (so the caller's session is worth asking the enforcer about).
    pub fn has_session_bound_service_grant(&self, service: &str, uid: u32, now: i64) -> bool {
        self.journal.state().grants.live(now).any(|(_, body)| {
            body.subject.uid == uid
                && body.subject.session.is_some()
                && matches!(&body.scope, Scope::Services { services } if services.iter().any(|s| s == service))
        })
    }
}
