//! What the enforcer is told about a session: the role's rules as in force
//! now, and the session's live command grants as airlock-totp signed them.

use airlock_common::dbus::{RuleSpec, SessionSpec, SignedGrantWire};
use airlock_common::grant::Scope;
use airlock_common::policy::{Action, PolicySet};
use airlock_common::session::SessionState;

use crate::state::grants::Grants;
use crate::state::sessions::Session;

pub fn session_spec(session: &Session, set: &PolicySet, grants: &Grants, now: i64) -> SessionSpec {
    let rules = set
        .effective_rules(&session.role)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, rule)| RuleSpec {
            index: index as u32,
            action: rule.action,
            command: rule.command.clone(),
            policy: rule.policy_id.clone(),
            source: rule.source.to_string(),
            reason: rule.reason.clone().unwrap_or_default(),
        })
        .collect();
    // A role that vanished in a reload blocks everything: fail closed.
    let default_action = set
        .role(&session.role)
        .map(|r| r.default_action)
        .unwrap_or(Action::Block);
    let allow_local_ports = set
        .role(&session.role)
        .map(|r| r.allow_local_ports.clone())
        .unwrap_or_default();
    // Each grant goes exactly as airlock-totp signed it: the enforcer checks
    // the signature itself and takes the command and deadline from it. Every
    // grant held here has its signature (one recorded without, by an older
    // gateway, was never restored), so none is left out for want of one.
    let grants = grants
        .of_session(&session.id, now)
        .into_iter()
        .filter(|(_, body)| matches!(body.scope, Scope::Command { .. }))
        .map(|(signed, _)| SignedGrantWire::from(signed.clone()))
        .collect();
    SessionSpec {
        id: session.id.clone(),
        index: session.index,
        role: session.role.clone(),
        uid: session.uid,
        bound_uid: session.bound_uid,
        default_action,
        rules,
        grants,
        search_path: session.search_path.clone(),
        revoked: session.state == SessionState::Revoked,
        allow_local_ports,
    }
}
