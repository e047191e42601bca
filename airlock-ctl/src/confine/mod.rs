//! The governed session's first process: `airlockctl session-init --control FD
//! PROGRAM ARGV...`.
//!
//! `airlockctl run` forks its child held; once the session is in place the
//! child execs this, so that what confines the agent runs in a fresh,
//! single-threaded process (namespaces and seccomp filters apply to the
//! calling thread, and `unshare(CLONE_NEWUSER)` refuses a multi-threaded
//! caller) that may allocate, report errors and exit cleanly — none of which
//! a child forked from the async front end may do. It then execs the agent.
//! It is not a user command: it is reached only through the held child.
//!
//! `run` tells it how to confine the session over the control socket
//! (`control`), once the session exists; then it installs the session's
//! seccomp filter (`seccomp`) and, without BPF LSM, hands the filter's
//! listener to the enforcer's supervisor through `run` before the agent may
//! start.

mod control;
mod seccomp;

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use anyhow::{anyhow, Context};

pub use control::{Control, ATTACHED};

/// The hidden subcommand's name, dispatched before anything else runs.
pub const SUBCOMMAND: &str = "session-init";
/// Its first argument, before the control socket's fd number.
pub const CONTROL_ARG: &str = "--control";

/// Exit status when the session could not be confined: the agent did not
/// start (the shell's "cannot execute").
const NOT_STARTED: u8 = 126;

/// Runs `session-init` with the arguments after the subcommand's name.
pub fn main(args: Vec<OsString>) -> ExitCode {
    match start(args) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("airlock: the agent was not started: {e:#}");
            ExitCode::from(NOT_STARTED)
        }
    }
}

/// Confines this process, then becomes the agent.
fn start(args: Vec<OsString>) -> anyhow::Result<std::convert::Infallible> {
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
        .ok_or_else(|| anyhow::anyhow!("session-init: no program"))?;
    let program = CString::new(program.as_bytes())?;
    let argv = args
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    confine(&control)?;
    drop(control);
    let error = nix::unistd::execv(&program, &argv).unwrap_err();
    Err(anyhow::anyhow!(
        "{}: {}",
        program.to_string_lossy(),
        std::io::Error::from(error)
    ))
}

/// Confines this process as `run` says: nothing for an unenforced run;
/// otherwise the session's filter, and its listener in the enforcer's
/// hands before anything else may run.
fn confine(control: &Control) -> anyhow::Result<()> {
    let Some(plan) = control.receive_plan()? else {
        return Ok(());
    };
    let listener = seccomp::install(&plan)?;
    let Some(listener) = listener else {
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
