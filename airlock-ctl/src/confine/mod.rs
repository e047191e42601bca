//! The governed session's first process: `airlockctl session-init PLAN_FD
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
//! sends down the pipe `PLAN_FD` ([`plan`]): for a session, it enters its
//! own user, mount and pid namespaces ([`namespaces`]), masks the role's
//! protected paths and the user's runtime sockets ([`targets`], [`mask`]),
//! and runs the agent under a minimal PID 1 with its own read-only
//! `/proc` ([`init`]). If any step fails, the agent does not start.

mod init;
mod mask;
mod namespaces;
pub mod plan;
mod targets;

use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use anyhow::{anyhow, Context};

pub use namespaces::restriction;
use plan::Plan;

/// The hidden subcommand's name, dispatched before anything else runs.
pub const SUBCOMMAND: &str = "session-init";

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
    let plan_fd = args
        .next()
        .and_then(|fd| fd.to_str()?.parse().ok())
        .ok_or_else(|| anyhow!("session-init: no plan descriptor"))?;
    let plan = Plan::receive(plan_fd)?;
    let program = args
        .next()
        .ok_or_else(|| anyhow!("session-init: no program"))?;
    let agent = init::Agent {
        program: CString::new(program.as_bytes())?,
        argv: args
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?,
    };
    match plan {
        Plan::Unenforced => match exec_unconfined(&agent)? {},
        Plan::Session { protect } => {
            let user = targets::SessionUser::current()?;
            let targets = targets::all(&user, &protect);
            namespaces::enter(user.uid, nix::unistd::getgid())?;
            mask::apply(&targets, user.uid.as_raw())?;
            init::run(&agent)
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
    match init::run(&agent).context("starting a PID 1 with its own /proc")? {
        0 => Ok(()),
        code => Err(anyhow!("the probe's PID 1 exited with status {code}")),
    }
}
