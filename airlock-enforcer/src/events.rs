//! Kernel events: decoding, reporting to the gateway, and telling the agent.
//!
//! A refused exec's task is held (stopped) by the program while the enforcer
//! is alive; the enforcer asks the gateway to audit the event (and, for an
//! approve rule, to file the request), writes the message into the task's
//! standard error and continues it. The task's own "Operation not permitted"
//! then follows the message on the agent's screen.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_common::dbus::{EnforcementEvent, Gateway1Proxy, RuleSpec};
use airlock_common::kernel::{
    self, ExecEvent, EVENT_APPROVAL_REQUIRED, EVENT_BLOCKED, EVENT_CGROUP_WRITE_DENIED,
    EVENT_GRANT_USED, EVENT_MMAP_DENIED, EVENT_SESSION_REVOKED, NO_RULE,
};
use airlock_daemon::lock::MutexExt;
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

use crate::message;
use crate::procfd;
use crate::sessions::Sessions;

/// How long a held task waits, at most, for the gateway's request id.
const GATEWAY_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long writing the message may block on a full pipe.
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);

fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn decode(bytes: &[u8]) -> Option<ExecEvent> {
    if bytes.len() < std::mem::size_of::<ExecEvent>() {
        return None;
    }
    // SAFETY: the buffer holds at least one ExecEvent, written by the
    // program as #[repr(C)] plain data in which every bit pattern is valid;
    // read_unaligned copes with the ring buffer's 8-byte alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<ExecEvent>()) })
}

fn kind_name(kind: u32) -> &'static str {
    match kind {
        EVENT_BLOCKED => "blocked",
        EVENT_APPROVAL_REQUIRED => "approval_required",
        EVENT_GRANT_USED => "grant_used",
        EVENT_SESSION_REVOKED => "session_revoked",
        EVENT_MMAP_DENIED => "mmap_denied",
        EVENT_CGROUP_WRITE_DENIED => "cgroup_write_denied",
        _ => "unknown",
    }
}

fn stage_name(stage: u32) -> &'static str {
    match stage {
        kernel::STAGE_EXEC_CHECK => "exec_check",
        kernel::STAGE_EXEC_COMMIT => "exec_commit",
        kernel::STAGE_MMAP => "mmap",
        kernel::STAGE_FILE_OPEN => "file_open",
        _ => "unknown",
    }
}

fn outcome_name(outcome: u32) -> &'static str {
    match outcome {
        kernel::OUTCOME_REFUSED => "refused",
        kernel::OUTCOME_KILLED => "killed",
        kernel::OUTCOME_ALLOWED => "allowed",
        _ => "unknown",
    }
}

/// An event in the gateway's terms, with the session's rule that decided.
fn translate(raw: &ExecEvent, sessions: &Sessions) -> (EnforcementEvent, Option<RuleSpec>) {
    let (session, rule) = match sessions.rules(raw.session) {
        Some((id, rules)) => (
            id.to_owned(),
            rules.iter().find(|r| r.index == raw.rule).cloned(),
        ),
        None => (format!("#{}", raw.session), None),
    };
    let argv: Vec<String> = raw
        .words
        .iter()
        .take(raw.nwords.min(raw.words.len() as u32) as usize)
        .map(|w| text(w))
        .collect();
    let event = EnforcementEvent {
        session,
        kind: kind_name(raw.kind).into(),
        stage: stage_name(raw.stage).into(),
        outcome: outcome_name(raw.outcome).into(),
        pid: raw.tgid,
        ppid: raw.ppid,
        uid: raw.uid,
        executable: text(&raw.file),
        argv,
        rule: if raw.rule == NO_RULE {
            u32::MAX
        } else {
            raw.rule
        },
        comm: text(&raw.comm),
    };
    (event, rule)
}

/// Reads the ring buffer until the enforcer stops.
pub async fn run(
    ring: RingBuf<MapData>,
    sessions: Arc<Mutex<Sessions>>,
    gateway: Gateway1Proxy<'static>,
) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd lives,
    // and the fd is not closed or registered elsewhere meanwhile.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(|e| e.into_parts().1)?;
    loop {
        let mut guard = ring.readable_mut().await?;
        let ring_buf = guard.get_inner_mut();
        while let Some(item) = ring_buf.next() {
            let Some(raw) = decode(&item) else {
                tracing::error!("short event of {} bytes from the kernel", item.len());
                continue;
            };
            let translated = {
                let sessions = sessions.locked();
                translate(&raw, &sessions)
            };
            tokio::spawn(handle(raw, translated, gateway.clone()));
        }
        guard.clear_ready();
    }
}

async fn handle(
    raw: ExecEvent,
    (event, rule): (EnforcementEvent, Option<RuleSpec>),
    gateway: Gateway1Proxy<'static>,
) {
    tracing::info!(
        "{} {} pid {} in session {}: {:?}",
        event.kind,
        event.outcome,
        event.pid,
        event.session,
        event.argv
    );
    let request = match tokio::time::timeout(
        GATEWAY_TIMEOUT,
        gateway.report_enforcement(event.clone()),
    )
    .await
    {
        Ok(Ok(request)) => request,
        Ok(Err(e)) => {
            tracing::error!("the gateway did not take the event: {e}");
            String::new()
        }
        Err(_) => {
            tracing::error!("the gateway did not answer within {GATEWAY_TIMEOUT:?}");
            String::new()
        }
    };
    if event.kind == "grant_used" {
        return;
    }
    let text = message::render(&event, rule.as_ref(), &request);
    // A held task is the one that failed; a killed task is gone, and its
    // parent shows what happened.
    let target = if event.outcome == "killed" {
        event.ppid
    } else {
        event.pid
    };
    let written = tokio::time::timeout(
        WRITE_TIMEOUT,
        tokio::task::spawn_blocking(move || procfd::write_stderr(target, &text)),
    )
    .await;
    if !matches!(written, Ok(Ok(Ok(())))) {
        tracing::debug!("could not write the message to process {target}");
    }
    if raw.held != 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(raw.tgid as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
}
