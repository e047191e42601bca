//! What the agent reads when the kernel refuses it.
//!
//! The text follows the seed's block message, so that an agent that learnt
//! it recognises it: what was refused, why, that the real executable did not
//! run, and an instruction not to retry or work around it. For commands that
//! need approval it names the request a human must approve.

use airlock_common::dbus::{EnforcementEvent, RuleSpec};
use airlock_common::enforcement::{EventKind, Outcome};
use airlock_common::kernel::RULE_UNMATCHABLE;

/// Renders the message for `event`; `rule` is the deciding rule, if any, and
/// `request` the approval request filed for it, if one could be.
pub fn render(event: &EnforcementEvent, rule: Option<&RuleSpec>, request: Option<&str>) -> String {
    if matches!(
        event.kind,
        EventKind::SocketDenied | EventKind::SignalDenied
    ) {
        return finish(outside_the_session(event));
    }
    let command = if event.argv.is_empty() {
        event.executable.clone()
    } else {
        event.argv.join(" ")
    };
    let mut lines = Vec::new();
    let title = match event.kind {
        EventKind::ApprovalRequired => "APPROVAL REQUIRED",
        EventKind::SessionRevoked => "SESSION REVOKED",
        EventKind::Blocked
        | EventKind::GrantUsed
        | EventKind::MmapDenied
        | EventKind::CgroupWriteDenied
        | EventKind::DebugDenied
        | EventKind::NamespaceDenied => "POLICY BLOCK",
        EventKind::SocketDenied | EventKind::SignalDenied => "POLICY BLOCK",
    };
    lines.push(title.to_owned());
    match event.kind {
        EventKind::MmapDenied => lines.push(format!(
            "file={} (a governed executable may only be run by exec, not loaded by hand)",
            event.executable
        )),
        EventKind::CgroupWriteDenied => lines.push(format!(
            "file={} (a governed process may not change cgroups or leave its session)",
            event.executable
        )),
        EventKind::DebugDenied => lines.push(format!(
            "call={} (this role does not allow debugging: a debugger could change a program \
             after Airlock judged it)",
            event.executable
        )),
        EventKind::NamespaceDenied => lines.push(format!(
            "call={} (a governed process may not create user or mount namespaces or change \
             mounts: they could undo the session's protections)",
            event.executable
        )),
        _ => lines.push(format!("command={command}")),
    }
    let a_call = matches!(
        event.kind,
        EventKind::DebugDenied | EventKind::NamespaceDenied
    );
    if !a_call && event.executable != event.argv.first().map(String::as_str).unwrap_or("") {
        lines.push(format!("executable={}", event.executable));
    }
    match rule {
        Some(rule) => {
            lines.push(format!(
                "rule={} (policy {}, {})",
                rule.command, rule.policy, rule.source
            ));
            if !rule.reason.is_empty() {
                lines.push(format!("reason={}", rule.reason));
            }
        }
        None if event.kind == EventKind::SessionRevoked => {
            lines.push("reason=this governed session was revoked by an administrator".into())
        }
        None if event.rule.0 == Some(RULE_UNMATCHABLE) => lines.push(
            "reason=the kernel cannot match this command against its role's rules within its \
             limits (too many words before a rule's words, too many possible matches, or an \
             option too long to read), so it is refused; see `airlockctl policy check`"
                .into(),
        ),
        None if matches!(event.kind, EventKind::Blocked | EventKind::ApprovalRequired) => {
            lines.push("rule=(the role's default action)".into())
        }
        None => {}
    }
    let not_run = if event.outcome == Outcome::Killed {
        "it was killed before running a single instruction"
    } else if a_call {
        "the call failed with EPERM"
    } else {
        "the real executable was not run"
    };
    if event.kind == EventKind::ApprovalRequired {
        match request {
            None => lines.push(format!(
                "result=blocked until a human approves; {not_run}. Ask for approval with: \
                 airlockctl request --scope 'command:{}' --reason '<why>'",
                rule.map_or(command.as_str(), |r| r.command.as_str())
            )),
            Some(request) => {
                lines.push(format!("request={request}"));
                lines.push(format!(
                    "result=blocked until a human approves; {not_run}. A human approves with: \
                     airlockctl approve {request}"
                ));
            }
        }
        lines.push(format!(
            "ai_instruction=Stop. Tell the user that this command needs their approval{} and \
             wait for them. Do not retry it before they confirm, call the real binary, change \
             PATH, use sudo, run outside the sandbox, or inspect wrappers to bypass Airlock.",
            match request {
                None => String::new(),
                Some(request) => format!(" (request {request})"),
            }
        ));
    } else {
        lines.push(format!("result=blocked; {not_run}."));
        lines.push(
            "ai_instruction=Stop. Do not retry this command, call the real binary, change PATH, \
             use sudo, run outside the sandbox, or inspect wrappers to bypass Airlock."
                .into(),
        );
    }
    finish(lines)
}

fn finish(lines: Vec<String>) -> String {
    let mut text: String = lines
        .iter()
        .map(|l| format!("airlock: {}\n", sanitize(l)))
        .collect();
    text.truncate(4000);
    text
}

/// The lines for a connection, datagram or signal that would have reached
/// a process outside the session.
fn outside_the_session(event: &EnforcementEvent) -> Vec<String> {
    let (what, hint) = if event.kind == EventKind::SignalDenied {
        (
            format!("signal={} (outside this session)", event.peer),
            "the session's own processes may be signalled; no other",
        )
    } else if event.peer.starts_with("unix") {
        (
            format!(
                "connection={} (a socket created outside this session)",
                event.peer
            ),
            "the session's own sockets and the system bus are reachable; no other Unix socket",
        )
    } else {
        (
            format!(
                "connection={} (a listener on this machine outside this session)",
                event.peer
            ),
            "the session's own servers are reachable on this machine, and the ports its role \
             lists in allow_local_ports",
        )
    };
    vec![
        "POLICY BLOCK".into(),
        what,
        format!("process={} (pid {})", event.executable, event.pid),
        "reason=A governed session may not reach processes outside it (ssh to this machine, a \
         local daemon, a tmux or screen server): they would run commands for it that Airlock \
         does not judge."
            .into(),
        format!("result=refused with EPERM; {hint}."),
        "ai_instruction=Stop. Do not retry through another address, port, socket or tool. If \
         the task needs this service, tell the user: an administrator can allow a port for \
         the role (allow_local_ports)."
            .into(),
    ]
}

/// Strips control characters an agent-chosen argument could carry into the
/// terminal (escape sequences, carriage returns).
fn sanitize(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use airlock_common::enforcement::Stage;
    use airlock_common::policy::Action;

    fn event(kind: EventKind, outcome: Outcome) -> EnforcementEvent {
        EnforcementEvent {
            session: "ses-1".into(),
            kind,
            stage: Stage::ExecCheck,
            outcome,
            pid: 10,
            ppid: 9,
            uid: 1000,
            executable: "terraform".into(),
            argv: vec!["terraform".into(), "apply".into()],
            rule: Some(0).into(),
            comm: "bash".into(),
            peer: String::new(),
        }
    }

    fn rule(action: Action, command: &str) -> RuleSpec {
        RuleSpec {
            index: 0,
            action,
            command: command.into(),
            policy: "infra-mutation-block".into(),
            source: "/etc/airlock/policies.d/x.toml:10".into(),
            reason: "Direct changes are blocked.".into(),
        }
    }

    #[test]
    fn a_block_reads_like_the_seed_message() {
        let text = render(
            &event(EventKind::Blocked, Outcome::Refused),
            Some(&rule(Action::Block, "terraform apply")),
            None,
        );
        assert!(text.starts_with("airlock: POLICY BLOCK\n"), "{text}");
        assert!(text.contains("airlock: command=terraform apply\n"));
        assert!(text.contains(
            "airlock: rule=terraform apply (policy infra-mutation-block, /etc/airlock/policies.d/x.toml:10)"
        ));
        assert!(text.contains("airlock: result=blocked; the real executable was not run.\n"));
        assert!(text.contains("airlock: ai_instruction=Stop. Do not retry this command"));
    }

    #[test]
    fn an_approval_names_the_request() {
        let mut e = event(EventKind::ApprovalRequired, Outcome::Refused);
        e.argv = vec!["terraform".into(), "plan".into()];
        let text = render(
            &e,
            Some(&rule(Action::Approve, "terraform plan")),
            Some("req-42"),
        );
        assert!(text.starts_with("airlock: APPROVAL REQUIRED\n"), "{text}");
        assert!(text.contains("airlock: request=req-42\n"));
        assert!(text.contains("airlockctl approve req-42"));
        let without = render(&e, Some(&rule(Action::Approve, "terraform plan")), None);
        assert!(without.contains("airlockctl request --scope 'command:terraform plan'"));
    }

    #[test]
    fn a_refused_call_names_it_and_why() {
        let mut e = event(EventKind::DebugDenied, Outcome::Refused);
        e.executable = "ptrace".into();
        e.argv = Vec::new();
        e.rule = None.into();
        let text = render(&e, None, None);
        assert!(text.starts_with("airlock: POLICY BLOCK\n"), "{text}");
        assert!(text.contains("airlock: call=ptrace (this role does not allow debugging"));
        assert!(text.contains("airlock: result=blocked; the call failed with EPERM.\n"));
        assert!(!text.contains("executable="), "{text}");
        e.kind = EventKind::NamespaceDenied;
        e.executable = "unshare".into();
        assert!(render(&e, None, None).contains("call=unshare (a governed process may not"));
    }

    #[test]
    fn a_refused_connection_names_what_it_would_have_reached() {
        let mut e = event(EventKind::SocketDenied, Outcome::Refused);
        e.executable = "python3".into();
        e.argv = Vec::new();
        e.peer = "tcp 127.0.0.1:22".into();
        let text = render(&e, None, None);
        assert!(text.starts_with("airlock: POLICY BLOCK\n"), "{text}");
        assert!(text.contains(
            "airlock: connection=tcp 127.0.0.1:22 (a listener on this machine outside this session)\n"
        ));
        assert!(text.contains("airlock: process=python3 (pid 10)\n"));
        assert!(text.contains("allow_local_ports"));
        e.peer = "unix /tmp/t\x1b[2J".into();
        let text = render(&e, None, None);
        assert!(text.contains("connection=unix /tmp/t?[2J (a socket created outside"));
        e.kind = EventKind::SignalDenied;
        e.peer = "process 7 (signal 15)".into();
        let text = render(&e, None, None);
        assert!(text.contains("airlock: signal=process 7 (signal 15) (outside this session)\n"));
    }

    #[test]
    fn killed_commands_and_hostile_arguments() {
        let mut e = event(EventKind::Blocked, Outcome::Killed);
        e.argv = vec!["terraform".into(), "apply\x1b[2J\r".into()];
        let text = render(&e, None, None);
        assert!(text.contains("killed before running a single instruction"));
        assert!(!text.contains('\x1b') && !text.contains('\r'));
        assert!(text.contains("rule=(the role's default action)"));
    }

    #[test]
    fn a_command_beyond_the_kernels_limits_says_so() {
        let mut e = event(EventKind::Blocked, Outcome::Refused);
        e.rule = Some(RULE_UNMATCHABLE).into();
        let text = render(&e, None, None);
        assert!(text.starts_with("airlock: POLICY BLOCK\n"), "{text}");
        assert!(text.contains("cannot match this command"), "{text}");
        assert!(text.contains("airlockctl policy check"), "{text}");
        assert!(!text.contains("role's default action"), "{text}");
    }
}
