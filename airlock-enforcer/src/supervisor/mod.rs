//! The seccomp supervisor: without BPF LSM, a process-tree session's execs
//! (and the calls its filter refuses) stop in the kernel until the enforcer
//! answers, so that a refused exec fails with EPERM and the agent reads the
//! same message as under BPF LSM, instead of being killed at exec commit.
//!
//! The session's first process (`airlockctl session-init`) installs a
//! seccomp filter whose user-notification listener reaches us through
//! `airlockctl run` and the gateway. One thread per session answers it:
//!
//! 1. the exec's path and arguments are read from the task, the file is
//!    opened as the kernel would open it, and judged with the same walk
//!    (`judge`) over the session's compiled tables;
//! 2. an allowed exec goes on (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`), as it
//!    would without a supervisor;
//! 3. for a refusal the task must be in the session's cgroup (a listener is
//!    not trusted to be what the caller says it is); it is audited through
//!    the gateway (which files the request for an approve rule), the message
//!    is written into the task's stderr, and the call fails with EPERM (a
//!    task outside the session gets EPERM alone).
//!
//! A refusal is given only if the notification is still valid (the task
//! is still the one that asked); going on needs no such check, since the
//! kernel refuses a stale id and judges nothing for it. What changes between the check and the
//! kernel's own reading (another thread rewriting the path or argv) is
//! judged again by the exec-commit program, which kills a forbidden image:
//! the supervisor is the message, the kernel the guarantee. If the enforcer
//! dies, the listener closes and the session's execs fail with ENOSYS.

mod judge;
mod target;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use airlock_common::dbus::{EnforcementEvent, Gateway1Proxy, RuleSpec};
use airlock_common::enforcement::{EventKind, Outcome, Stage};
use airlock_common::kernel::{
    HashKey, Verdict, ACTION_BLOCK, EVENT_WORDS, EVENT_WORD_LEN, NO_RULE, SESSION_REVOKED,
};
use airlock_daemon::lock::MutexExt;
use anyhow::{anyhow, Context};
use libseccomp::{notify_id_valid, ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags, ScmpSyscall};

use crate::events;
use crate::loader::boot_ns;
use crate::sessions::Sessions;
use target::{ExecCall, Executable, Lookup, Status};

/// Calls the session filter sends here besides the execs, by kind.
const DEBUGGING: [&str; 4] = [
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
];
const NAMESPACES: [&str; 13] = [
    "unshare",
    "chroot",
    "clone",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
];

/// Scripts whose interpreter is a script, as deep as the kernel follows
/// them (`BINPRM_MAX_RECURSION`).
const MAX_INTERPRETERS: usize = 4;

/// What the supervisor needs from the rest of the enforcer.
#[derive(Clone)]
pub struct Supervisor {
    pub sessions: Arc<Mutex<Sessions>>,
    pub gateway: Gateway1Proxy<'static>,
    pub runtime: tokio::runtime::Handle,
}

/// The system calls a notification may be about.
struct Calls {
    execve: ScmpSyscall,
    execveat: ScmpSyscall,
    debugging: Vec<ScmpSyscall>,
    namespaces: Vec<ScmpSyscall>,
}

impl Calls {
    fn new() -> anyhow::Result<Calls> {
        let named = |names: &[&str]| {
            names
                .iter()
                .map(|n| ScmpSyscall::from_name(n).with_context(|| format!("no system call {n}")))
                .collect::<anyhow::Result<Vec<_>>>()
        };
        Ok(Calls {
            execve: ScmpSyscall::from_name("execve")?,
            execveat: ScmpSyscall::from_name("execveat")?,
            debugging: named(&DEBUGGING)?,
            namespaces: named(&NAMESPACES)?,
        })
    }

    fn name(call: ScmpSyscall) -> String {
        call.get_name().unwrap_or_else(|_| "a system call".into())
    }
}

impl Supervisor {
    /// Takes session `id`'s listener and starts answering it.
    pub fn attach(&self, id: &str, listener: OwnedFd) -> anyhow::Result<()> {
        if !target::is_seccomp_listener(&listener) {
            return Err(anyhow!("the descriptor passed is not a seccomp listener"));
        }
        let calls = Calls::new()?;
        let waits_in_recv = sync_wake_up(&listener);
        let key = {
            let mut sessions = self.sessions.locked();
            sessions.take_supervisor(id)?;
            sessions.kernel.key
        };
        let supervisor = self.clone();
        let session = id.to_owned();
        std::thread::Builder::new()
            .name(format!("supervise-{id}"))
            .spawn(move || {
                supervisor.serve(&session, &listener, &calls, key, waits_in_recv);
                tracing::info!("session {session}: its seccomp filter has no task left");
            })
            .context("starting the supervisor thread")?;
        tracing::info!("session {id}: the seccomp supervisor answers its execs");
        Ok(())
    }

    fn serve(
        &self,
        session: &str,
        listener: &OwnedFd,
        calls: &Calls,
        key: HashKey,
        waits_in_recv: bool,
    ) {
        let fd = listener.as_raw_fd();
        let mut lookup = Lookup::default();
        loop {
            // A kernel that takes SYNC_WAKE_UP (6.6 and later) also ends a
            // waiting receive once no task uses the filter: we wait there,
            // one system call per notification. Older ones would wait in
            // it forever, so we poll first.
            if !waits_in_recv {
                match wait_readable(fd, -1) {
                    Readable::Yes => {}
                    Readable::Interrupted => continue,
                    Readable::Orphaned => return,
                    Readable::Failed => {
                        tracing::error!("session {session}: polling the listener failed");
                        return;
                    }
                }
            }
            let request = match ScmpNotifReq::receive(fd) {
                Ok(request) => request,
                Err(e) => {
                    // ENOENT: the task was killed before we read it, or (when
                    // waiting in the receive) no task is left.
                    if waits_in_recv && matches!(wait_readable(fd, 0), Readable::Orphaned) {
                        return;
                    }
                    if e.errno() != Some(libseccomp::error::SeccompErrno::ENOENT) {
                        tracing::error!("session {session}: reading a notification: {e}");
                    }
                    continue;
                }
            };
            let (answer, continues) = self.answer(session, calls, &key, &request, fd, &mut lookup);
            // A refusal was decided on memory read from the task: it is
            // given only while the id still names that task. Going on needs
            // no such check (a stale id is refused by the kernel, and the
            // exec-commit program judges what runs): one ioctl less per
            // allowed exec.
            if !continues && notify_id_valid(fd, request.id).is_err() {
                continue;
            }
            if let Err(e) = answer.respond(fd) {
                tracing::debug!("session {session}: answering pid {}: {e}", request.pid);
            }
        }
    }

    /// Decides one notification (and, for a refusal, reports it and tells
    /// the agent before answering); says whether the answer lets the call
    /// go on.
    fn answer(
        &self,
        session: &str,
        calls: &Calls,
        key: &HashKey,
        request: &ScmpNotifReq,
        fd: i32,
        lookup: &mut Lookup,
    ) -> (ScmpNotifResp, bool) {
        let refuse =
            ScmpNotifResp::new_error(request.id, -libc::EPERM, ScmpNotifRespFlags::empty());
        let go_on = ScmpNotifResp::new_continue(request.id, ScmpNotifRespFlags::empty());
        let pid = request.pid;
        let call = request.data.syscall;
        let refusal = if call == calls.execve || call == calls.execveat {
            let still_asking = || notify_id_valid(fd, request.id).is_ok();
            let execveat = call == calls.execveat;
            match self.judge_exec(session, key, request, execveat, lookup, &still_asking) {
                // Going on is what the kernel does without a supervisor (the
                // exec-commit program judges it all the same), so it needs
                // no proof that the task is the session's.
                None => return (go_on, true),
                Some(refused) => refused,
            }
        } else {
            let kind = if calls.debugging.contains(&call) {
                EventKind::DebugDenied
            } else if calls.namespaces.contains(&call) {
                EventKind::NamespaceDenied
            } else {
                // Nothing else is sent here: refuse what we do not know.
                tracing::warn!("session {session}: unexpected call {}", Calls::name(call));
                return (refuse, false);
            };
            let event = self.event(session, pid, kind, Calls::name(call), Vec::new(), None);
            (event, None)
        };
        // The listener came from outside: a refusal is reported, and its
        // message written, only for the session's own tasks, and only while
        // the notification still names the task we read.
        let member = self.sessions.locked().cgroup_session_of(pid);
        if member.as_deref() != Some(session) || notify_id_valid(fd, request.id).is_err() {
            tracing::warn!(
                "session {session}: pid {pid} asked through its listener but is not in its \
                 cgroup; refused without a report"
            );
            return (refuse, false);
        }
        let (event, rule) = refusal;
        self.tell(&event, rule.as_ref(), fd, request.id);
        (refuse, false)
    }

    /// The event for a refused exec, or `None` when it may go on.
    fn judge_exec(
        &self,
        session: &str,
        key: &HashKey,
        request: &ScmpNotifReq,
        execveat: bool,
        lookup: &mut Lookup,
        still_asking: &dyn Fn() -> bool,
    ) -> Option<(EnforcementEvent, Option<RuleSpec>)> {
        let pid = request.pid;
        // Unreadable: the kernel reads the same memory and fails the exec.
        let mut call = ExecCall::read(pid, execveat, &request.data.args)?;
        let mut exe = Executable::open(pid, &call, lookup, still_asking)?;
        // A script is judged, then what the kernel runs for it (its
        // interpreter, argv rewritten), as the exec-commit program will.
        let mut depth = 0;
        let (verdict, rule, revoked) = loop {
            let judged = {
                let sessions = self.sessions.locked();
                let tables = sessions.tables(session)?;
                judge::judge(&tables, key, &call, &exe, boot_ns()).map(|verdict| {
                    // The rule is looked up (a scan of the role's rules,
                    // 10,000 in the benchmark) only for a refusal's
                    // message: an allowed exec, most of them with no rule
                    // at all, does not pay for it.
                    let rule = (!verdict.permits())
                        .then(|| tables.rules.iter().find(|r| r.index == verdict.rule))
                        .flatten()
                        .cloned();
                    (verdict, rule, tables.info.flags & SESSION_REVOKED != 0)
                })
            };
            if let Some(refused) = judged.filter(|(verdict, ..)| !verdict.permits()) {
                break refused;
            }
            let (interpreter, argument) = target::shebang(&exe.head)?;
            depth += 1;
            if depth > MAX_INTERPRETERS {
                return None;
            }
            let next = call.interpreted(interpreter.clone(), argument);
            let opened = ExecCall {
                path: interpreter,
                dirfd: None,
                empty_path: false,
                argv: Vec::new(),
                argc: 0,
                argv_readable: false,
            };
            exe = Executable::open(pid, &opened, lookup, still_asking)?;
            call = next;
        };
        let kind = denial_kind(&verdict, revoked);
        let argv = call
            .argv
            .iter()
            .take(EVENT_WORDS)
            .map(|w| event_text(w.as_deref().unwrap_or_default(), EVENT_WORD_LEN))
            .collect();
        let executable = event_text(&exe.name, airlock_common::kernel::EVENT_NAME_LEN);
        let event = self.event(session, pid, kind, executable, argv, Some(verdict.rule));
        Some((event, rule))
    }

    fn event(
        &self,
        session: &str,
        pid: u32,
        kind: EventKind,
        executable: String,
        argv: Vec<String>,
        rule: Option<u32>,
    ) -> EnforcementEvent {
        let status = Status::read(pid);
        EnforcementEvent {
            session: session.to_owned(),
            kind,
            stage: Stage::Supervisor,
            outcome: Outcome::Refused,
            pid: status.as_ref().map_or(pid, |s| s.tgid),
            ppid: status.as_ref().map_or(0, |s| s.ppid),
            uid: status.as_ref().map_or(0, |s| s.uid),
            executable,
            argv,
            rule: rule.filter(|&r| r != NO_RULE).into(),
            comm: target::comm(pid),
            peer: String::new(),
        }
    }

    /// Audits the refusal (filing the request of an approve rule) and
    /// writes the message into the task's stderr while it still waits in
    /// the call.
    fn tell(&self, event: &EnforcementEvent, rule: Option<&RuleSpec>, fd: i32, id: u64) {
        let gateway = self.gateway.clone();
        let event = event.clone();
        let rule = rule.cloned();
        self.runtime.block_on(async move {
            let request = events::report(&gateway, &event).await;
            if notify_id_valid(fd, id).is_ok() {
                events::write_message(&event, rule.as_ref(), request.as_deref(), event.pid).await;
            }
        });
    }
}

/// `SECCOMP_IOCTL_NOTIF_SET_FLAGS`: `_IOW('!', 4, __u64)`.
const SECCOMP_IOCTL_NOTIF_SET_FLAGS: libc::c_ulong = 0x4008_2104;
const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

/// Asks the kernel (6.6 and later) to hand the CPU straight from the
/// waiting task to the supervisor and back, as a synchronous call, instead
/// of waking each on whichever CPU is free: the exec waits anyway, and on a
/// busy machine each wake-up could otherwise wait for a time slice. Older
/// kernels refuse the flag and only lose that speed. Says whether the
/// kernel took it.
fn sync_wake_up(listener: &OwnedFd) -> bool {
    // SAFETY: an ioctl on a seccomp listener we own, with an integer flag
    // word the kernel reads by value.
    let set = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            SECCOMP_IOCTL_NOTIF_SET_FLAGS as _,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        )
    };
    if set != 0 {
        tracing::debug!(
            "the kernel does not hand over the CPU synchronously to the supervisor: {}",
            std::io::Error::last_os_error()
        );
    }
    set == 0
}

enum Readable {
    Yes,
    Interrupted,
    /// No task uses the filter any more (POLLHUP).
    Orphaned,
    Failed,
}

/// Polls the listener for `timeout` ms (-1: until something happens).
fn wait_readable(fd: i32, timeout: i32) -> Readable {
    let mut poll = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one pollfd, ours for the call.
    let ready = unsafe { libc::poll(poll.as_mut_ptr(), 1, timeout) };
    if ready < 0 {
        return if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            Readable::Interrupted
        } else {
            Readable::Failed
        };
    }
    if poll[0].revents & libc::POLLIN != 0 || ready == 0 {
        Readable::Yes
    } else {
        Readable::Orphaned
    }
}

fn denial_kind(verdict: &Verdict, revoked: bool) -> EventKind {
    if revoked {
        EventKind::SessionRevoked
    } else if verdict.action == ACTION_BLOCK {
        EventKind::Blocked
    } else {
        EventKind::ApprovalRequired
    }
}

/// A word as the kernel's event carries it: at most `len - 1` bytes.
fn event_text(bytes: &[u8], len: usize) -> String {
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(len - 1)]).into_owned();
    while text.len() > len - 1 {
        text.pop();
    }
    text
}
