//! The session's own user, mount and pid namespaces.
//!
//! `session-init` (running as the session user) creates a user namespace
//! that maps only that user's own uid and gid to themselves, and mount and
//! pid namespaces owned by it. Inside, it holds every capability, so it can
//! mount the masks; the agent it execs later runs as a non-root uid and so
//! holds none, and cannot remove them. If the agent makes a nested user and
//! mount namespace, the kernel copies these mounts *locked* (`MNT_LOCKED`):
//! they can be neither unmounted nor bind-mounted without what they cover.

use std::path::Path;

use anyhow::anyhow;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{Gid, Uid};

/// Enters new user, mount and pid namespaces, mapping `uid` and `gid` to
/// themselves, with no mount propagation back to the parent namespace. The
/// pid namespace takes effect for the children forked after this.
pub fn enter(uid: Uid, gid: Gid) -> anyhow::Result<()> {
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)
        .map_err(|e| {
            unavailable(&format!(
                "unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID): {e}"
            ))
        })?;
    // An unprivileged process may map only its own ids, and its gid only
    // once setgroups(2) is denied (the agent keeps its groups, it can just
    // not change them).
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("{uid} {uid} 1\n"))?;
    write_proc("/proc/self/gid_map", &format!("{gid} {gid} 1\n"))?;
    // Nothing mounted here shows outside; what the host mounts later still
    // arrives.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| unavailable(&format!("making / a slave mount: {e}")))?;
    Ok(())
}

fn write_proc(path: &str, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| unavailable(&format!("writing {path}: {e}")))
}

/// An error for a step the kernel refused, naming the setting to blame
/// when one is known.
pub fn unavailable(step: &str) -> anyhow::Error {
    match restriction() {
        Some(why) => anyhow!("{why}\n(the step that failed: {step})"),
        None => anyhow!(
            "the session's namespaces could not be created: {step}. Governed sessions need \
             unprivileged user namespaces; `airlockctl doctor` checks them"
        ),
    }
}

/// Why this kernel refuses unprivileged user namespaces, if a setting
/// says so, with the fix.
pub fn restriction() -> Option<String> {
    let read = |path: &str| {
        std::fs::read_to_string(Path::new(path))
            .ok()
            .map(|s| s.trim().to_owned())
    };
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some(
            "user namespaces are disabled (sysctl user.max_user_namespaces = 0). Governed \
             sessions need them to mask credentials and runtime sockets. Fix: \
             `sysctl -w user.max_user_namespaces=15000` and the same line in /etc/sysctl.d/"
                .into(),
        );
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some(
            "unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone \
             = 0). Governed sessions need them to mask credentials and runtime sockets. Fix: \
             `sysctl -w kernel.unprivileged_userns_clone=1` and the same line in /etc/sysctl.d/"
                .into(),
        );
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Some(
            "AppArmor restricts unprivileged user namespaces (sysctl \
             kernel.apparmor_restrict_unprivileged_userns = 1). Governed sessions need them to \
             mask credentials and runtime sockets. Fix: an AppArmor profile for airlockctl \
             that allows `userns,` (see docs/kernel.md), or \
             `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
                .into(),
        );
    }
    None
}
