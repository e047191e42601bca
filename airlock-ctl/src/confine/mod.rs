//! The governed session's first process: `airlockctl session-init --control FD
//! PROGRAM ARGV...`.
//!
//! `airlockctl run` forks its child held; once the session is in place the
//! child execs this, so that what confines the agent runs in a fresh,
//! single-threaded process (namespaces and seccomp filters apply to the
//! calling thread, and `unshare(CLONE_NEWUSER)` refuses a multi-threaded
//! caller) that may allocate, report errors and exit cleanly — none of which
//! a child forked from the async front end may do. It is not a user
//! command: it is reached only through the held child.
//!
//! What it does comes from the gateway's answer, which `airlockctl run`
//! sends over the control socket ([`control`], [`plan`]) once the session
//! exists: for a session, it enters its own user, mount and pid namespaces
//! ([`namespaces`]), masks the role's protected paths and the user's
//! runtime sockets ([`targets`], [`mask`]), and starts a minimal PID 1 with
//! its own read-only `/proc` ([`init`]), which scopes the session with
//! Landlock ([`scope`]: abstract Unix sockets and signals outside the
//! session are out of reach), installs the session's seccomp filter
//! ([`seccomp`]) — and, without BPF LSM, hands the filter's listener to the
//! enforcer's supervisor through `run` — before it forks the agent. If any
//! step fails, the agent does not start.

mod control;
mod seccomp;

mod init;
mod mask;
mod namespaces;
pub mod plan;
pub mod scope;
mod targets;

use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use anyhow::{anyhow, Context};

pub use control::{Control, ATTACHED};
pub use namespaces::restriction;
pub use plan::Plan;

/// The hidden subcommand's name, dispatched before anything else runs.
pub const SUBCOMMAND: &str = "session-init";
/// Its first argument, before the control socket's fd number.
pub const CONTROL_ARG: &str = "--control";

/// `session-init PROBE`: builds a session's namespaces and `/proc` and
/// exits, for `airlockctl doctor`.
pub const PROBE: &str = "--probe";

/// Exit status when the session could not be confined: the agent did not
/// start (the shell's "cannot execute").
const NOT_STARTED: u8 = 126;

/// Runs `session-init` with the arguments after the subcommand's name.
pub fn main(args: Vec<OsString>) -> ExitCode {
    if args.first().is_some_and(|a| a == PROBE) {
        return match probe() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match start(args) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("airlock: the agent was not started: {e:#}");
            ExitCode::from(NOT_STARTED)
        }
    }
}

/// Confines the session, then runs the agent; returns its exit status.
fn start(args: Vec<OsString>) -> anyhow::Result<i32> {
    let mut args = args.into_iter();
    if args.next().as_deref() != Some(std::ffi::OsStr::new(CONTROL_ARG)) {
        return Err(anyhow!(
            "session-init: no control socket (it is started by `airlockctl run` only)"
        ));
    }
    let fd: i32 = args
        .next()
        .and_then(|fd| fd.to_str()?.parse().ok())
        .ok_or_else(|| anyhow!("session-init: {CONTROL_ARG} needs a file descriptor number"))?;
    let control = Control::inherited(fd)?;
    let program = args
        .next()
        .ok_or_else(|| anyhow!("session-init: no program"))?;
    let agent = init::Agent {
        program: CString::new(program.as_bytes())?,
        argv: args
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?,
    };
    match control.receive_plan()? {
        Plan::Unenforced => {
            drop(control);
            match exec_unconfined(&agent)? {}
        }
        Plan::Session {
            protect,
            confinement,
        } => {
            let user = targets::SessionUser::current()?;
            let targets = targets::all(&user, &protect);
            namespaces::enter(user.uid, nix::unistd::getgid())?;
            mask::apply(&targets, user.uid.as_raw())?;
            init::run(&agent, || {
                // Unsupported (a kernel before Landlock ABI 6) is not an
                // error: BPF LSM covers the same where it runs, and
                // `airlockctl doctor` names the layer in force.
                scope::restrict()?;
                filter(&control, &confinement)
            })
        }
    }
}

/// `--unenforced`: the agent runs as it would without Airlock.
fn exec_unconfined(agent: &init::Agent) -> anyhow::Result<Infallible> {
    // SAFETY: installing SIG_DFL runs no handler code. airlockctl (a Rust
    // program) ignores SIGPIPE; the agent must not inherit that.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let error = nix::unistd::execv(&agent.program, &agent.argv).unwrap_err();
    Err(anyhow!(
        "{}: {}",
        agent.program.to_string_lossy(),
        std::io::Error::from(error)
    ))
}

/// What a session needs of the kernel, tried for real: the namespaces and
/// PID 1's read-only `/proc`.
fn probe() -> anyhow::Result<()> {
    let user = targets::SessionUser::current()?;
    namespaces::enter(user.uid, nix::unistd::getgid())?;
    let agent = init::Agent {
        program: CString::new("/bin/true")?,
        argv: vec![CString::new("true")?],
    };
    match init::run(&agent, || Ok(())).context("starting a PID 1 with its own /proc")? {
        0 => Ok(()),
        code => Err(anyhow!("the probe's PID 1 exited with status {code}")),
    }
}

/// Installs the session's seccomp filter and, when the enforcer supervises
/// the session's execs, puts the filter's listener in its hands before
/// anything else may run.
fn filter(
    control: &Control,
    confinement: &airlock_common::dbus::Confinement,
) -> anyhow::Result<()> {
    let Some(listener) = seccomp::install(confinement)? else {
        return Ok(());
    };
    control.send("listener", Some(&listener))?;
    // Our copy must go: the enforcer's is the only one that may answer.
    drop(listener);
    let (answer, _) = control
        .receive()
        .context("waiting for the enforcer's seccomp supervisor")?;
    if answer != ATTACHED {
        return Err(anyhow!(
            "the enforcer's seccomp supervisor did not take this session ({answer}); without it \
             the agent would run unsupervised, so it was not started (`airlockctl doctor`)"
        ));
    }
    Ok(())
}
