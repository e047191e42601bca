//! The governed session's first process: `airlockctl session-init PROGRAM
//! ARGV...`.
//!
//! `airlockctl run` forks its child held; once the session is in place the
//! child execs this, so that what confines the agent runs in a fresh,
//! single-threaded process (namespaces and seccomp filters apply to the
//! calling thread, and `unshare(CLONE_NEWUSER)` refuses a multi-threaded
//! caller) that may allocate, report errors and exit cleanly — none of which
//! a child forked from the async front end may do. It then execs the agent.
//! It is not a user command: it is reached only through the held child.
//!
//! Before it execs the agent it scopes the session with Landlock
//! (`scope`): abstract Unix sockets and signals outside the session are out
//! of reach.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

pub mod scope;

/// The hidden subcommand's name, dispatched before anything else runs.
pub const SUBCOMMAND: &str = "session-init";

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
    let program = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("session-init: no program"))?;
    let program = CString::new(program.as_bytes())?;
    let argv = args
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    // Unsupported (an older kernel) is not an error: BPF LSM covers the
    // same there, and `airlockctl doctor` names the layer in force.
    scope::restrict()?;
    let error = nix::unistd::execv(&program, &argv).unwrap_err();
    Err(anyhow::anyhow!(
        "{}: {}",
        program.to_string_lossy(),
        std::io::Error::from(error)
    ))
}
