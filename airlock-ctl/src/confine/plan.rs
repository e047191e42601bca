//! What `airlockctl run` tells `session-init` once the gateway answered:
//! sent through the pipe that holds the child, never through its argv or
//! environment (those are fixed before the session exists).

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use airlock_common::policy::protect::ProtectPattern;
use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

/// Largest plan accepted: far above any role's list.
const MAX_PLAN_LEN: u64 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// `--unenforced` without a session: the agent runs as it would
    /// without Airlock (the audit log says so).
    Unenforced,
    /// A governed session: confine, then run the agent.
    Session {
        /// The role's protect list from the gateway's answer.
        protect: Vec<ProtectPattern>,
    },
}

impl Plan {
    /// Sends the plan down the pipe and closes it. A `session-init` that
    /// died first (its error is on the terminal) is not an error here:
    /// its exit status says what happened.
    pub fn send(&self, pipe: OwnedFd) {
        let text = serde_json::to_vec(self).expect("a plan serialises");
        let _ = std::fs::File::from(pipe).write_all(&text);
    }

    /// Reads the plan from `fd` (inherited from `airlockctl run`) to its end
    /// and closes it, so the agent does not inherit it.
    pub fn receive(fd: RawFd) -> anyhow::Result<Plan> {
        // The descriptor must be the inherited pipe, not one the agent's
        // caller happens to have open at that number.
        let stat = nix::sys::stat::fstat(fd).context("the plan descriptor")?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return Err(anyhow!("descriptor {fd} is not the plan pipe"));
        }
        // SAFETY: `fd` was handed to this process for it alone (its number
        // is in our argv, put there by `airlockctl run`), and nothing else
        // in this fresh process uses it.
        let pipe = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut text = Vec::new();
        pipe.take(MAX_PLAN_LEN)
            .read_to_end(&mut text)
            .context("reading the session plan")?;
        serde_json::from_slice(&text).context("the session plan from airlockctl run")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_survives_the_pipe() {
        let plan = Plan::Session {
            protect: vec!["~/.aws".parse().unwrap(), "!~/.ssh/*.pub".parse().unwrap()],
        };
        let (read, write) = nix::unistd::pipe().unwrap();
        plan.send(write);
        let raw = std::os::fd::IntoRawFd::into_raw_fd(read);
        assert_eq!(Plan::receive(raw).unwrap(), plan);
    }
}
