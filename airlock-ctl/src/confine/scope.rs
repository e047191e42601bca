//! Landlock scopes: from the session's first process on, no task of the
//! session may connect to an abstract Unix socket created outside it (a
//! server of the same user bound to `@name`) or send a signal to a process
//! outside it (Landlock ABI 6, Linux 6.12). Both follow every child and
//! cannot be lifted. On older kernels the enforcer's BPF LSM hooks
//! (`unix_stream_connect`, `unix_may_send`, `task_kill`) do the same where
//! BPF LSM runs; `airlockctl doctor` says which layer is in force.
//!
//! Restricting itself sets `no_new_privs`, as the kernel requires of a
//! process without `CAP_SYS_ADMIN`: set-uid programs (`sudo`) gain no
//! privileges inside a session.

use anyhow::anyhow;
use landlock::{Access, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetStatus, Scope, ABI};

/// Whether the scopes are in force after [`restrict`].
#[derive(Debug, PartialEq, Eq)]
pub enum Scoped {
    /// Abstract Unix sockets and signals are scoped to the session.
    Yes,
    /// This kernel's Landlock has no scopes (ABI < 6) or no Landlock.
    Unsupported,
}

/// Scopes this process and all it will start to the session.
pub fn restrict() -> anyhow::Result<Scoped> {
    let status = Ruleset::default()
        // Best effort only in the sense that an older ABI is reported, not
        // an error; the status is checked below.
        .set_compatibility(CompatLevel::BestEffort)
        .scope(Scope::from_all(ABI::V6))
        .and_then(|ruleset| ruleset.create())
        .and_then(|ruleset| ruleset.restrict_self())
        .map_err(|e| anyhow!("Landlock: {e}"))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(Scoped::Yes),
        RulesetStatus::NotEnforced => Ok(Scoped::Unsupported),
        RulesetStatus::PartiallyEnforced => Err(anyhow!(
            "Landlock enforced only some of the session's scopes ({:?})",
            status.landlock
        )),
    }
}

/// The Landlock ABI this kernel offers (0: none), for `airlockctl doctor`.
pub fn kernel_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: landlock_create_ruleset with a null attribute pointer, size 0
    // and the VERSION flag only returns the ABI version (or an error); it
    // reads and writes no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi.max(0)
}

/// The first ABI with the abstract-socket and signal scopes.
pub const SCOPES_ABI: i64 = 6;
