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
use airlock_common::enforcement::{EventKind, Outcome, Stage};
use std::net::{Ipv4Addr, Ipv6Addr};

use airlock_common::kernel::{
    ExecEvent, Peer, AF_INET, AF_INET6, AF_UNIX, IPPROTO_TCP, IPPROTO_UDP, NO_RULE, PEER_PATH_LEN,
    PEER_PROCESS,
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

/// What a socket or signal event was refused to reach, for people:
/// `tcp 127.0.0.1:22`, `udp [::1]:53`, `unix /tmp/x/sock`, `unix @name`
/// (abstract), `process 4242 (signal 10)`; "" for other events. Bytes of a
/// Unix address that are not printable ASCII are escaped as `\xNN`.
fn peer_text(peer: &Peer) -> String {
    match (peer.family, peer.protocol) {
        (_, PEER_PROCESS) => format!("process {} (signal {})", peer.pid, peer.port),
        (AF_INET | AF_INET6, protocol) => {
            let transport = match protocol {
                IPPROTO_TCP => "tcp".to_owned(),
                IPPROTO_UDP => "udp".to_owned(),
                other => format!("ip protocol {other}"),
            };
            let host = if peer.family == AF_INET {
                let [a, b, c, d, ..] = peer.addr;
                Ipv4Addr::new(a, b, c, d).to_string()
            } else {
                format!("[{}]", Ipv6Addr::from(peer.addr))
            };
            format!("{transport} {host}:{}", peer.port)
        }
        (AF_UNIX, _) => {
            let path = &peer.path[..(peer.path_len as usize).min(PEER_PATH_LEN)];
            let (prefix, name) = match path.split_first() {
                Some((0, rest)) => ("@", rest),
                _ => ("", path),
            };
            let name = match name.iter().position(|&b| b == 0) {
                // A path ends at its NUL; an abstract name may hold NULs.
                Some(end) if prefix.is_empty() => &name[..end],
                _ => name,
            };
            let escaped: String = name
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        (b as char).to_string()
                    } else {
                        format!("\\x{b:02x}")
                    }
                })
                .collect();
            if escaped.is_empty() {
                "unix (unnamed socket)".into()
            } else {
                format!("unix {prefix}{escaped}")
            }
        }
        _ => String::new(),
    }
}

/// The name of a process's executable, for events the kernel reported
/// without one (socket and signal refusals).
fn executable_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// A code in an event that this build of the enforcer does not know (the
/// eBPF program and the enforcer are out of step).
#[derive(Debug, PartialEq, Eq)]
struct UnknownCode {
    field: &'static str,
    code: u32,
}

impl std::fmt::Display for UnknownCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown event {} code {}", self.field, self.code)
    }
}

fn known<T>(
    field: &'static str,
    code: u32,
    decode: fn(u32) -> Option<T>,
) -> Result<T, UnknownCode> {
    decode(code).ok_or(UnknownCode { field, code })
}

/// An event in the gateway's terms, with the session's rule that decided.
fn translate(
    raw: &ExecEvent,
    sessions: &Sessions,
) -> Result<(EnforcementEvent, Option<RuleSpec>), UnknownCode> {
    let kind = known("kind", raw.kind, EventKind::from_kernel)?;
    let stage = known("stage", raw.stage, Stage::from_kernel)?;
    let outcome = known("outcome", raw.outcome, Outcome::from_kernel)?;
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
    let peer = peer_text(&raw.peer);
    let mut executable = text(&raw.file);
    if executable.is_empty() && !peer.is_empty() {
        executable = executable_of(raw.tgid);
    }
    let event = EnforcementEvent {
        session,
        kind,
        stage,
        outcome,
        pid: raw.tgid,
        ppid: raw.ppid,
        uid: raw.uid,
        executable,
        argv,
        rule: (raw.rule != NO_RULE).then_some(raw.rule).into(),
        comm: text(&raw.comm),
        peer,
    };
    Ok((event, rule))
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
            match translated {
                Ok(translated) => {
                    tokio::spawn(handle(raw, translated, gateway.clone()));
                }
                Err(e) => {
                    // Not reported: the gateway would have to audit a guess.
                    // A held task is still let go, so it does not hang.
                    tracing::error!(
                        "{e} from the kernel (pid {}, session #{}); the event is dropped",
                        raw.tgid,
                        raw.session
                    );
                    release(&raw);
                }
            }
        }
        guard.clear_ready();
    }
}

/// Asks the gateway to audit `event`; returns the request it filed (or
/// reused) for an approve rule.
pub async fn report(gateway: &Gateway1Proxy<'static>, event: &EnforcementEvent) -> Option<String> {
    tracing::info!(
        "{} {} pid {} in session {}: {:?}",
        event.kind,
        event.outcome,
        event.pid,
        event.session,
        event.argv
    );
    match tokio::time::timeout(GATEWAY_TIMEOUT, gateway.report_enforcement(event.clone())).await {
        Ok(Ok(request)) => Option::<String>::from(request),
        Ok(Err(e)) => {
            tracing::error!("the gateway did not take the event: {e}");
            None
        }
        Err(_) => {
            tracing::error!("the gateway did not answer within {GATEWAY_TIMEOUT:?}");
            None
        }
    }
}

/// Writes the agent's message for `event` into the stderr of process
/// `target`.
pub async fn write_message(
    event: &EnforcementEvent,
    rule: Option<&RuleSpec>,
    request: Option<&str>,
    target: u32,
) {
    let text = message::render(event, rule, request);
    let written = tokio::time::timeout(
        WRITE_TIMEOUT,
        tokio::task::spawn_blocking(move || procfd::write_stderr(target, &text)),
    )
    .await;
    if !matches!(written, Ok(Ok(Ok(())))) {
        tracing::debug!("could not write the message to process {target}");
    }
}

async fn handle(
    raw: ExecEvent,
    (event, rule): (EnforcementEvent, Option<RuleSpec>),
    gateway: Gateway1Proxy<'static>,
) {
    let request = report(&gateway, &event).await;
    if event.kind == EventKind::GrantUsed {
        return;
    }
    // A held task is the one that failed; a killed task is gone, and its
    // parent shows what happened.
    let target = match event.outcome {
        Outcome::Killed => event.ppid,
        Outcome::Refused | Outcome::Allowed => event.pid,
    };
    write_message(&event, rule.as_ref(), request.as_deref(), target).await;
    release(&raw);
}

/// Continues the task the program held for this event, if it held one.
fn release(raw: &ExecEvent) {
    if raw.held != 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(raw.tgid as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(family: u16, protocol: u16, port: u16, addr: &[u8], path: &[u8]) -> Peer {
        let mut peer = Peer {
            family,
            protocol,
            port,
            path_len: path.len() as u16,
            pid: 4242,
            _pad: 0,
            addr: [0; 16],
            path: [0; PEER_PATH_LEN],
            _pad2: [0; 4],
        };
        peer.addr[..addr.len()].copy_from_slice(addr);
        peer.path[..path.len()].copy_from_slice(path);
        peer
    }

    #[test]
    fn peers_are_named_as_people_write_them() {
        let v6: Ipv6Addr = "fd00::2".parse().unwrap();
        for (p, text) in [
            (
                peer(AF_INET, 6, 22, &[127, 0, 0, 1], b""),
                "tcp 127.0.0.1:22",
            ),
            (
                peer(AF_INET6, 17, 53, &v6.octets(), b""),
                "udp [fd00::2]:53",
            ),
            (
                peer(AF_INET, 132, 9, &[10, 0, 0, 1], b""),
                "ip protocol 132 10.0.0.1:9",
            ),
            (
                peer(AF_UNIX, 0, 0, b"", b"/tmp/x/sock\0\0"),
                "unix /tmp/x/sock",
            ),
            (
                peer(AF_UNIX, 0, 0, b"", b"\0tmux\x1b[2J"),
                "unix @tmux\\x1b[2J",
            ),
            (peer(AF_UNIX, 0, 0, b"", b""), "unix (unnamed socket)"),
            (
                peer(0, PEER_PROCESS, 10, b"", b""),
                "process 4242 (signal 10)",
            ),
            (peer(0, 0, 0, b"", b""), ""),
        ] {
            assert_eq!(peer_text(&p), text);
        }
    }

    #[test]
    fn an_unknown_code_is_named_not_guessed() {
        let blocked = EventKind::Blocked.kernel_code();
        assert_eq!(
            known("kind", blocked, EventKind::from_kernel),
            Ok(EventKind::Blocked)
        );
        let unknown = known("stage", 99, Stage::from_kernel).unwrap_err();
        assert_eq!(unknown.to_string(), "unknown event stage code 99");
    }
}
