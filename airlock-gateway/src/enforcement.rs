//! Kernel events the enforcer reports: what the audit log records of them,
//! and the request a refused approve-rule command files.

use airlock_common::dbus::{AirlockError, EnforcementEvent};
use airlock_common::enforcement::EventKind;
use airlock_common::event::{Event, KernelEvent};
use airlock_common::grant::Scope;
use airlock_common::policy::PolicySet;
use airlock_common::validate::{check_event_argv, check_event_peer};

use crate::state::sessions::Session;

/// A request the refusal asks for.
pub struct Ask {
    pub scope: Scope,
    pub reason: String,
}

/// The record of `event` in `session` (if the gateway knows it), and for
/// an approve-rule refusal the request to file.
pub fn translate(
    event: &EnforcementEvent,
    session: Option<&Session>,
    set: &PolicySet,
) -> Result<(Event, Option<Ask>), AirlockError> {
    check_event_argv(&event.argv)?;
    check_event_peer(&event.peer)?;
    let rule = session.and_then(|s| {
        set.effective_rules(&s.role)
            .ok()?
            .get(event.rule.map(|i| i as usize)?)
            .map(|r| (r.command.clone(), r.policy_id.clone(), r.source.to_string()))
    });
    let record = Event::kernel(
        event.kind,
        KernelEvent {
            session: event.session.clone(),
            stage: event.stage,
            outcome: event.outcome,
            pid: event.pid,
            ppid: event.ppid,
            uid: event.uid,
            executable: event.executable.clone(),
            argv: event.argv.clone(),
            comm: event.comm.clone(),
            rule: rule.as_ref().map(|r| r.0.clone()),
            policy: rule.as_ref().map(|r| r.1.clone()),
            source: rule.as_ref().map(|r| r.2.clone()),
            peer: (!event.peer.is_empty()).then(|| event.peer.clone()),
        },
    );
    let ask = match (session, event.kind) {
        (Some(session), EventKind::ApprovalRequired) => {
            let command = rule.map(|r| r.0).unwrap_or_else(|| event.argv.join(" "));
            Scope::parse(&format!("command:{command}"))
                .ok()
                .map(|scope| {
                    let reason = format!(
                    "the agent ran `{}` in session {} and the kernel refused it pending approval",
                    event.argv.join(" ").chars().take(200).collect::<String>(),
                    session.id
                );
                    Ask {
                        scope,
                        reason: reason.chars().filter(|c| !c.is_control()).collect(),
                    }
                })
        }
        _ => None,
    };
    Ok((record, ask))
}
