//! What `airlockctl run` tells `session-init` once the gateway answered:
//! sent over the control socket ([`super::control`]), never through its
//! argv or environment (those are fixed before the session exists).

use airlock_common::dbus::Confinement;
use airlock_common::policy::protect::ProtectPattern;
use serde::{Deserialize, Serialize};

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
        /// The seccomp filter and whether the enforcer supervises execs.
        confinement: Confinement,
    },
}
