//! What a session masks, found in the user's own view of the file system
//! when it starts: the role's protected paths, and the user's runtime
//! sockets (servers outside the session that would run commands for it).

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use airlock_common::policy::protect::{has_wildcard, is_protected, Base, ProtectPattern};
use nix::unistd::{Uid, User};

/// How a path is masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Unreadable and unchangeable: an empty, read-only, mode-000 directory
    /// or file mounted over it. Credentials.
    Hidden,
    /// An empty directory only this session sees, writable by the user
    /// (`mode`), so the agent can run its own servers there without
    /// reaching the user's. Runtime directories.
    Private { mode: u32 },
    /// `/run/user`: private, with an empty `UID` directory for the user.
    RuntimeRoot,
}

/// One path to mask: canonical (symlinks resolved, so the mask lands on
/// what the agent would reach), existing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub is_dir: bool,
    pub mask: Mask,
}

/// The session user: the masks are about their files.
pub struct SessionUser {
    pub uid: Uid,
    /// From the passwd entry, not `$HOME` (which the caller sets).
    pub home: PathBuf,
}

impl SessionUser {
    pub fn current() -> anyhow::Result<SessionUser> {
        let uid = nix::unistd::getuid();
        let user = User::from_uid(uid)?
            .ok_or_else(|| anyhow::anyhow!("uid {uid} has no passwd entry: no home to protect"))?;
        Ok(SessionUser {
            uid,
            home: user.dir,
        })
    }
}

/// Every target, outermost first, with paths inside another target left
/// out (the outer mask covers them).
pub fn all(user: &SessionUser, protect: &[ProtectPattern]) -> Vec<Target> {
    let mut found: BTreeMap<PathBuf, Target> = BTreeMap::new();
    let mut add = |path: &Path, mask: Mask| {
        let Ok(path) = path.canonicalize() else {
            return;
        };
        let Ok(meta) = std::fs::metadata(&path) else {
            return;
        };
        // Never the root or the home itself: the agent works there.
        if path == Path::new("/") || path == user.home {
            return;
        }
        found.entry(path.clone()).or_insert(Target {
            is_dir: meta.is_dir(),
            path,
            mask,
        });
    };
    for path in protected(protect, &user.home) {
        add(&path, Mask::Hidden);
    }
    for (path, mask) in runtime(user) {
        add(&path, mask);
    }
    // Sorted by path, an ancestor comes before its descendants.
    let mut outer: Vec<Target> = Vec::new();
    for target in found.into_values() {
        let covered = outer
            .iter()
            .any(|o| o.is_dir && target.path.starts_with(&o.path));
        if !covered {
            outer.push(target);
        }
    }
    outer
}

/// The existing paths the list protects: each entry expanded (wildcards
/// against the directory's entries, dot files included), kept when the
/// last entry matching it is not an exclusion.
pub fn protected(list: &[ProtectPattern], home: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for pattern in list.iter().filter(|p| !p.exclude) {
        let base = match pattern.base {
            Base::Home => home.to_path_buf(),
            Base::Root => PathBuf::from("/"),
        };
        let mut level = vec![base];
        for component in &pattern.components {
            level = level
                .iter()
                .flat_map(|dir| expand(dir, component))
                .collect();
        }
        paths.extend(
            level
                .into_iter()
                .filter(|p| is_protected(list, home, p) && p.symlink_metadata().is_ok()),
        );
    }
    paths.sort();
    paths.dedup();
    paths
}

fn expand(dir: &Path, component: &str) -> Vec<PathBuf> {
    if !has_wildcard(component) {
        return vec![dir.join(component)];
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name().to_str().is_some_and(|name| {
                airlock_common::policy::protect::wildcard_match(component, name)
            })
        })
        .map(|e| e.path())
        .collect()
}

/// The user's runtime sockets and their directories, by path: what lets a
/// process outside the session run a command for it. The system bus
/// (`/run/dbus`) stays: airlockctl itself needs it.
fn runtime(user: &SessionUser) -> Vec<(PathBuf, Mask)> {
    let uid = user.uid.as_raw();
    let mut found = Vec::new();
    // systemd's user manager and session bus, gnupg, podman, pipewire...:
    // all of /run/user, so that one appearing later is hidden too.
    found.push((PathBuf::from("/run/user"), Mask::RuntimeRoot));
    // tmux: made here if missing (as tmux itself would), so that a server
    // the user starts later lands where the session cannot see.
    let tmux_dirs = std::iter::once(PathBuf::from("/tmp")).chain(
        std::env::var_os("TMUX_TMPDIR")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute() && d.is_dir()),
    );
    for dir in tmux_dirs {
        let sockets = dir.join(format!("tmux-{uid}"));
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&sockets);
        found.push((sockets, Mask::Private { mode: 0o700 }));
    }
    // screen: the whole socket directory (each user's is inside it).
    for dir in ["/run/screen", "/var/run/screen"] {
        found.push((PathBuf::from(dir), Mask::Private { mode: 0o1777 }));
    }
    if let Some(dir) = std::env::var_os("SCREENDIR").map(PathBuf::from) {
        if dir.is_absolute() {
            found.push((dir, Mask::Private { mode: 0o700 }));
        }
    }
    // The ssh agent: its directory when it is the agent's own (ssh-agent
    // makes one), else the socket itself; and every directory ssh-agent
    // and `ssh -A` make in /tmp for this user, named or not.
    if let Some(socket) = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from) {
        if socket.is_absolute() {
            found.push(ssh_agent_target(user, &socket));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/tmp") {
        for entry in entries.flatten() {
            if !entry.file_name().as_encoded_bytes().starts_with(b"ssh-") {
                continue;
            }
            let owned_dir = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == uid);
            if owned_dir {
                found.push((entry.path(), Mask::Hidden));
            }
        }
    }
    // Container engines run anything asked of them.
    for socket in [
        "/run/docker.sock",
        "/var/run/docker.sock",
        "/run/podman/podman.sock",
    ] {
        found.push((PathBuf::from(socket), Mask::Hidden));
    }
    found
}

fn ssh_agent_target(user: &SessionUser, socket: &Path) -> (PathBuf, Mask) {
    let shared = ["/", "/tmp", "/var/tmp", "/dev/shm", "/run"];
    match socket.parent() {
        Some(dir)
            if !shared.iter().any(|s| dir == Path::new(s))
                && dir != user.home
                && std::fs::metadata(dir).is_ok_and(|m| m.uid() == user.uid.as_raw()) =>
        {
            (dir.to_path_buf(), Mask::Hidden)
        }
        _ => (socket.to_path_buf(), Mask::Hidden),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_paths_expand_in_the_users_home() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        for dir in [".aws", ".ssh", ".config/gh", ".config/other"] {
            std::fs::create_dir_all(h.join(dir)).unwrap();
        }
        for file in [
            ".aws/credentials",
            ".ssh/id_ed25519",
            ".ssh/id_ed25519.pub",
            ".ssh/known_hosts",
            ".ssh/config",
            ".ssh/deploy",
            ".netrc",
            ".bashrc",
        ] {
            std::fs::write(h.join(file), "x").unwrap();
        }
        let list = ProtectPattern::defaults();
        let found: Vec<String> = protected(&list, h)
            .iter()
            .map(|p| p.strip_prefix(h).unwrap().display().to_string())
            .collect();
        assert_eq!(
            found,
            [
                ".aws",
                ".config/gh",
                ".netrc",
                ".ssh/deploy",
                ".ssh/id_ed25519"
            ]
        );
    }
}
