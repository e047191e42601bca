//! Which governed session this airlock-mcp runs in, if any.
//!
//! The enforcer puts a session's processes in a cgroup named for it
//! (`<base>/<session id>`, or systemd's `airlock-session-<id>.scope`), so
//! the session is the live session of ours whose id names a component of
//! our own cgroup path. Another session of the same user is not ours: an
//! agent outside every session is told to name a role, not given one.
//! (Advisory: the gateway and the kernel decide from the caller's cgroup
//! themselves; this only picks the role a policy question is asked under.)

use airlock_common::dbus::SessionRecord;

/// Our cgroup v2 path, from `/proc/self/cgroup` (`0::PATH`).
fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// The session among `sessions` whose cgroup `cgroup` is in.
pub fn in_cgroup<'s>(sessions: &'s [SessionRecord], cgroup: &str) -> Option<&'s SessionRecord> {
    let names: Vec<&str> = cgroup
        .split('/')
        .map(|c| {
            c.strip_prefix("airlock-session-")
                .and_then(|c| c.strip_suffix(".scope"))
                .unwrap_or(c)
        })
        .collect();
    sessions
        .iter()
        .find(|s| s.ended_at.is_none() && names.contains(&s.id.as_str()))
}

/// The session this process runs in.
pub fn own(sessions: &[SessionRecord]) -> Option<&SessionRecord> {
    in_cgroup(sessions, &own_cgroup()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_common::enforcement::EnforcementMode;
    use airlock_common::session::SessionState;

    fn session(id: &str) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            role: format!("role-of-{id}"),
            uid: 1000,
            bound_uid: false,
            state: SessionState::Running,
            created_at: 0,
            ended_at: None.into(),
            enforcement: EnforcementMode::Unknown,
            protect: Vec::new(),
        }
    }

    #[test]
    fn the_session_is_the_one_our_cgroup_names() {
        let sessions = [session("ses-aaa"), session("ses-bbb")];
        let own = |cg: &str| in_cgroup(&sessions, cg).map(|s| s.id.clone());
        assert_eq!(own("/airlock/ses-bbb").as_deref(), Some("ses-bbb"));
        assert_eq!(own("/airlock/ses-bbb/child").as_deref(), Some("ses-bbb"));
        assert_eq!(
            own("/airlock.slice/airlock-session-ses-aaa.scope").as_deref(),
            Some("ses-aaa")
        );
        // Outside every session: none, even though the user has two.
        assert_eq!(own("/user.slice/user-1000.slice/session-3.scope"), None);
        assert_eq!(own("/"), None);
        // A name that only contains an id is not it.
        assert_eq!(own("/airlock/xses-aaa"), None);
    }
}
