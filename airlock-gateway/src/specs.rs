//! What the enforcer is told about a session: the role's rules as in force
//! now, and the session's live command grants as airlock-totp signed them.

use airlock_common::dbus::{RuleSpec, SessionSpec, SignedGrantWire, ToolSpec};
use airlock_common::grant::Scope;
use airlock_common::policy::{Action, PolicySet};
use airlock_common::session::SessionState;

use crate::state::grants::Grants;
use crate::state::sessions::Session;

pub fn session_spec(session: &Session, set: &PolicySet, grants: &Grants, now: i64) -> SessionSpec {
    let rules: Vec<RuleSpec> = set
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
    let role = set.role(&session.role);
    let default_action = role.map(|r| r.default_action).unwrap_or(Action::Block);
    let allow_debugging = role.is_some_and(|r| r.allow_debugging);
    let allow_local_ports = role
        .map(|r| r.allow_local_ports.clone())
        .unwrap_or_default();
    // Each grant goes exactly as airlock-totp signed it: the enforcer checks
    // the signature itself and takes the command and deadline from it. Every
    // grant held here has its signature (one recorded without, by an older
    // gateway, was never restored), so none is left out for want of one.
    let live: Vec<_> = grants
        .of_session(&session.id, now)
        .into_iter()
        .filter_map(|(signed, body)| match &body.scope {
            Scope::Command { command } => Some((signed, command.as_str())),
            Scope::Services { .. } => None,
        })
        .collect();
    let tools = tool_specs(
        set,
        rules
            .iter()
            .map(|r| r.command.as_str())
            .chain(live.iter().map(|(_, command)| *command)),
    );
    let grants = live
        .into_iter()
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
        allow_debugging,
        tools,
        allow_local_ports,
    }
}

/// The grammars of the tools these commands' heads name, each once.
fn tool_specs<'a>(set: &PolicySet, commands: impl Iterator<Item = &'a str>) -> Vec<ToolSpec> {
    let mut tools: Vec<ToolSpec> = Vec::new();
    for command in commands {
        let Some(head) = command.split_whitespace().next() else {
            continue;
        };
        let Some(grammar) = set.grammar_of_head(head) else {
            continue;
        };
        if tools.iter().all(|t| t.name != grammar.name) {
            tools.push(ToolSpec {
                name: grammar.name.clone(),
                style: grammar.style.as_str().to_owned(),
                value_options: grammar.value_options.clone(),
            });
        }
    }
    tools
}
