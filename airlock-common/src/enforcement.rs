//! The enforcement vocabulary: what the kernel did, where, and with what
//! result, and which mode enforcement runs in. One definition from the
//! kernel's event codes to the audit record's words: the eBPF program writes
//! the `kernel` codes, the enforcer decodes them here once, and the D-Bus
//! structs, the gateway and the audit log carry these enums.

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

use crate::kernel;

/// How the kernel enforces policy on this machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
#[zvariant(signature = "s")]
pub enum EnforcementMode {
    /// BPF LSM: a refused exec fails with EPERM.
    Lsm,
    /// No BPF LSM: a refused exec is killed before its first instruction.
    Degraded,
    /// No BPF LSM, but the session's execs go to the enforcer's seccomp
    /// supervisor first: a refused exec fails with EPERM, and what races the
    /// supervisor is killed at exec commit.
    Supervised,
    /// The agent runs without enforcement (`airlockctl run --unenforced`).
    Unenforced,
    /// The enforcer did not answer.
    #[default]
    Unknown,
}

impl EnforcementMode {
    /// Reads a mode as older state files and records wrote it, where ""
    /// meant not yet known: any word this build does not know is `Unknown`.
    pub fn from_word(word: &str) -> EnforcementMode {
        match word {
            "lsm" => EnforcementMode::Lsm,
            "degraded" => EnforcementMode::Degraded,
            "supervised" => EnforcementMode::Supervised,
            "unenforced" => EnforcementMode::Unenforced,
            _ => EnforcementMode::Unknown,
        }
    }

    /// The mode in a few words, for people.
    pub fn describe(self) -> &'static str {
        match self {
            EnforcementMode::Lsm => "BPF LSM (refused with EPERM)",
            EnforcementMode::Degraded => "degraded (exec-commit kill)",
            EnforcementMode::Supervised => "degraded (seccomp supervisor + exec-commit kill)",
            EnforcementMode::Unenforced => "unenforced",
            EnforcementMode::Unknown => "unknown",
        }
    }

    /// `deserialize_with` for fields older writers left "" or null.
    pub fn deserialize_lenient<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<EnforcementMode, D::Error> {
        let word = Option::<String>::deserialize(d)?.unwrap_or_default();
        Ok(EnforcementMode::from_word(&word))
    }
}

/// What a kernel event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
#[zvariant(signature = "s")]
pub enum EventKind {
    Blocked,
    ApprovalRequired,
    GrantUsed,
    SessionRevoked,
    MmapDenied,
    CgroupWriteDenied,
    /// ptrace, process_vm_readv/writev or pidfd_getfd, in a role that does
    /// not allow debugging.
    DebugDenied,
    /// A new user or mount namespace, setns or a mount operation: what could
    /// undo the session's protections.
    NamespaceDenied,
    /// A connection or datagram to a socket outside the session, on this
    /// machine.
    SocketDenied,
    /// A signal to a process outside the session.
    SignalDenied,
}

/// Where the event was raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
#[zvariant(signature = "s")]
pub enum Stage {
    /// `bprm_check_security` (BPF LSM).
    ExecCheck,
    /// `sched_process_exec`, after the exec committed.
    ExecCommit,
    /// `mmap_file`: the dynamic loader mapping a forbidden executable.
    Mmap,
    /// `file_open`: a write to the session's cgroup files.
    FileOpen,
    /// The enforcer's seccomp supervisor, before the call ran (no BPF LSM).
    Supervisor,
    /// `ptrace_access_check` or `ptrace_traceme` (BPF LSM).
    Ptrace,
    /// The cgroup `connect`/`sendmsg` programs: TCP or UDP to this machine.
    Connect,
    /// `unix_stream_connect`/`unix_may_send` (BPF LSM): a Unix socket.
    UnixConnect,
    /// `task_kill` (BPF LSM).
    Signal,
}

/// What happened to the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
#[zvariant(signature = "s")]
pub enum Outcome {
    /// The call failed with EPERM; the executable did not run.
    Refused,
    /// The new image was killed before its first instruction.
    Killed,
    /// It ran, under a grant.
    Allowed,
}

/// One table per code: the kernel's number and the enum, both ways.
macro_rules! kernel_codes {
    ($ty:ident { $($variant:ident = $code:path),+ $(,)? }) => {
        impl $ty {
            /// Decodes the code the eBPF program wrote; `None` for a code
            /// this build does not know.
            pub fn from_kernel(code: u32) -> Option<$ty> {
                match code {
                    $(c if c == $code => Some($ty::$variant),)+
                    _ => None,
                }
            }

            /// The code the eBPF program uses.
            pub fn kernel_code(self) -> u32 {
                match self {
                    $($ty::$variant => $code,)+
                }
            }
        }
    };
}

kernel_codes!(EventKind {
    Blocked = kernel::EVENT_BLOCKED,
    ApprovalRequired = kernel::EVENT_APPROVAL_REQUIRED,
    GrantUsed = kernel::EVENT_GRANT_USED,
    SessionRevoked = kernel::EVENT_SESSION_REVOKED,
    MmapDenied = kernel::EVENT_MMAP_DENIED,
    CgroupWriteDenied = kernel::EVENT_CGROUP_WRITE_DENIED,
    DebugDenied = kernel::EVENT_DEBUG_DENIED,
    NamespaceDenied = kernel::EVENT_NAMESPACE_DENIED,
    SocketDenied = kernel::EVENT_SOCKET_DENIED,
    SignalDenied = kernel::EVENT_SIGNAL_DENIED,
});

kernel_codes!(Stage {
    ExecCheck = kernel::STAGE_EXEC_CHECK,
    ExecCommit = kernel::STAGE_EXEC_COMMIT,
    Mmap = kernel::STAGE_MMAP,
    FileOpen = kernel::STAGE_FILE_OPEN,
    Supervisor = kernel::STAGE_SUPERVISOR,
    Ptrace = kernel::STAGE_PTRACE,
    Connect = kernel::STAGE_CONNECT,
    UnixConnect = kernel::STAGE_UNIX_CONNECT,
    Signal = kernel::STAGE_SIGNAL,
});

kernel_codes!(Outcome {
    Refused = kernel::OUTCOME_REFUSED,
    Killed = kernel::OUTCOME_KILLED,
    Allowed = kernel::OUTCOME_ALLOWED,
});

/// The words the audit log and `airlockctl` show, as serde writes them.
macro_rules! words {
    ($ty:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $word,)+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words!(EnforcementMode {
    Lsm = "lsm",
    Degraded = "degraded",
    Supervised = "supervised",
    Unenforced = "unenforced",
    Unknown = "unknown",
});

words!(EventKind {
    Blocked = "blocked",
    ApprovalRequired = "approval_required",
    GrantUsed = "grant_used",
    SessionRevoked = "session_revoked",
    MmapDenied = "mmap_denied",
    CgroupWriteDenied = "cgroup_write_denied",
    DebugDenied = "debug_denied",
    NamespaceDenied = "namespace_denied",
    SocketDenied = "socket_denied",
    SignalDenied = "signal_denied",
});

words!(Stage {
    ExecCheck = "exec_check",
    ExecCommit = "exec_commit",
    Mmap = "mmap",
    FileOpen = "file_open",
    Supervisor = "supervisor",
    Ptrace = "ptrace",
    Connect = "connect",
    UnixConnect = "unix_connect",
    Signal = "signal",
});

words!(Outcome {
    Refused = "refused",
    Killed = "killed",
    Allowed = "allowed",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_is_what_serde_writes_and_every_code_round_trips() {
        fn same<T: Serialize + Copy>(value: T, word: &str) {
            assert_eq!(serde_json::to_value(value).unwrap(), word);
        }
        for mode in [
            EnforcementMode::Lsm,
            EnforcementMode::Degraded,
            EnforcementMode::Supervised,
            EnforcementMode::Unenforced,
            EnforcementMode::Unknown,
        ] {
            same(mode, mode.as_str());
        }
        for code in 0..16 {
            if let Some(kind) = EventKind::from_kernel(code) {
                assert_eq!(kind.kernel_code(), code);
                same(kind, kind.as_str());
            }
            if let Some(stage) = Stage::from_kernel(code) {
                assert_eq!(stage.kernel_code(), code);
                same(stage, stage.as_str());
            }
            if let Some(outcome) = Outcome::from_kernel(code) {
                assert_eq!(outcome.kernel_code(), code);
                same(outcome, outcome.as_str());
            }
        }
        assert_eq!(EventKind::from_kernel(0), None);
    }
}
