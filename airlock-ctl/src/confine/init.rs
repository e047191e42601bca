//! The session's pid namespace: a minimal init as its PID 1, the agent as
//! its child.
//!
//! `session-init` forks PID 1 of the new pid namespace; PID 1 mounts the
//! namespace's own procfs on `/proc`, read-only, and forks the agent. So
//! the agent sees only the session's processes in `/proc` (no
//! `/proc/PID/root` or `/proc/PID/cwd` of a process outside, whose view has
//! no masks), and cannot open `/proc/PID/mem` for writing. Both `session-init`
//! and PID 1 forward SIGTERM and SIGHUP to their child, ignore SIGINT and
//! SIGQUIT (the terminal sends those to the agent directly, as to
//! airlockctl), and exit with the agent's status (128 + signal if it was
//! killed). When the agent exits, PID 1 exits and the kernel ends what the
//! agent left running in the namespace.

use std::ffi::CString;

use anyhow::Context;
use nix::mount::{mount, MsFlags};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// The program the session runs, and how it starts.
pub struct Agent {
    pub program: CString,
    pub argv: Vec<CString>,
}

/// Exit status when the agent could not be started.
const NOT_STARTED: i32 = 126;

/// Signals the supervisors wait for instead of handling.
fn waited() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Runs `agent` as the child of a new PID 1 and returns its exit status
/// once it has ended. Call it right after entering the pid namespace.
/// `prepare` runs in PID 1 once its `/proc` is mounted, before the agent
/// is forked: the last step of confinement (the seccomp filter, which
/// forbids mounting), inherited by the agent.
pub fn run(agent: &Agent, prepare: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<i32> {
    let mut mask = SigSet::empty();
    signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited()), Some(&mut mask))?;
    let inherited = Inherited {
        mask,
        terminal: ignore_terminal_signals()?,
    };
    // SAFETY: this process is single-threaded (a fresh exec, no runtime),
    // so the child may do anything the parent could.
    match unsafe { fork() }.context("forking the session's PID 1")? {
        ForkResult::Child => {
            let code = pid_one(agent, &inherited, prepare).unwrap_or_else(|e| {
                eprintln!("airlock: the agent was not started: {e:#}");
                NOT_STARTED
            });
            std::process::exit(code)
        }
        ForkResult::Parent { child } => supervise(child),
    }
}

/// The signal state `session-init` started with, for the agent.
struct Inherited {
    mask: SigSet,
    /// SIGINT's and SIGQUIT's dispositions (the caller may ignore them).
    terminal: Vec<(Signal, SigAction)>,
}

/// Ignores SIGINT and SIGQUIT; returns what they were.
fn ignore_terminal_signals() -> nix::Result<Vec<(Signal, SigAction)>> {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    [Signal::SIGINT, Signal::SIGQUIT]
        .into_iter()
        // SAFETY: installing SIG_IGN runs no handler code.
        .map(|signal| Ok((signal, unsafe { signal::sigaction(signal, &ignore) }?)))
        .collect()
}

/// PID 1 of the session's pid namespace.
fn pid_one(
    agent: &Agent,
    inherited: &Inherited,
    prepare: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<i32> {
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .context("mounting the session's /proc")?;
    prepare()?;
    // SAFETY: still single-threaded; the child only resets its signal
    // state and execs (or reports why it could not).
    match unsafe { fork() }.context("forking the agent")? {
        ForkResult::Child => {
            let error = exec(agent, inherited);
            eprintln!(
                "airlock: the agent was not started: {}: {error}",
                agent.program.to_string_lossy()
            );
            std::process::exit(NOT_STARTED)
        }
        ForkResult::Parent { child } => supervise(child),
    }
}

/// Becomes the agent, with the signal state `airlockctl run` was started
/// with: nothing blocked or ignored that the caller did not block or
/// ignore. SIGPIPE is reset to its default: airlockctl (a Rust program)
/// ignores it, whatever its caller did.
fn exec(agent: &Agent, inherited: &Inherited) -> std::io::Error {
    for (signal, action) in &inherited.terminal {
        // SAFETY: restores a disposition this process had, either SIG_DFL
        // or SIG_IGN (it installs no handlers; exec resets those anyway).
        let _ = unsafe { signal::sigaction(*signal, action) };
    }
    // SAFETY: installing SIG_DFL runs no handler code.
    let _ = unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    if let Err(e) = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&inherited.mask), None) {
        return e.into();
    }
    // The seccomp filter is already in place: PID 1 installed it (`run`'s
    // `prepare`) after mounting `/proc` and before forking this process.
    let error = nix::unistd::execv(&agent.program, &agent.argv).unwrap_err();
    error.into()
}

/// Waits for `child`, forwarding SIGTERM and SIGHUP to it and reaping any
/// other child (orphans, for PID 1); returns its exit status.
fn supervise(child: Pid) -> anyhow::Result<i32> {
    let signals = SignalFd::with_flags(&waited(), SfdFlags::SFD_CLOEXEC)?;
    loop {
        // Reap first: the child may have ended before the fd existed.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return Ok(code),
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                    return Ok(128 + signal as i32)
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(e) => return Err(e).context("waiting for the agent"),
            }
        }
        let Some(info) = signals.read_signal()? else {
            continue;
        };
        if let Ok(signal @ (Signal::SIGTERM | Signal::SIGHUP)) =
            Signal::try_from(info.ssi_signo as i32)
        {
            let _ = signal::kill(child, signal);
        }
    }
}
