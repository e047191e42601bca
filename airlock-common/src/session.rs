//! A governed session's lifecycle, as every process names it.

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
#[zvariant(signature = "s")]
pub enum SessionState {
    /// Created, its process not yet under enforcement.
    Ready,
    Running,
    Exited,
    Revoked,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Ready => "ready",
            SessionState::Running => "running",
            SessionState::Exited => "exited",
            SessionState::Revoked => "revoked",
        }
    }

    /// Whether the kernel may still hold state for it.
    pub fn is_live(self) -> bool {
        matches!(self, SessionState::Ready | SessionState::Running)
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
