//! Session cgroups (cgroup v2).
//!
//! Each process-tree session gets a cgroup owned by root and not writable by
//! the agent, so neither the agent nor its children can move out of it or
//! create sub-cgroups; the kernel program finds the session by the cgroup's
//! id (its inode number). Without systemd the enforcer makes them itself,
//! `<cgroup2>/airlock/<session id>`. Under systemd, which owns the cgroup
//! tree, each session is a transient scope unit systemd creates and
//! delegates, `<cgroup2>/airlock.slice/airlock-session-<id>.scope`
//! (scope.rs), so the two never fight over it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};

/// The cgroup v2 mount point (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_root() -> anyhow::Result<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    for line in info.lines() {
        // ... mount-point ... - fstype source options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2") {
            if let Some(point) = left.split_whitespace().nth(4) {
                return Ok(PathBuf::from(point));
            }
        }
    }
    bail!("no cgroup2 file system is mounted; governed sessions need cgroup v2")
}

pub struct Cgroups {
    base: PathBuf,
    /// `base` as `/proc/PID/cgroup` names it (below the cgroup2 root).
    listed_as: PathBuf,
    layout: Layout,
}

/// Who makes the session cgroups, and so how they are named.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layout {
    /// The enforcer: `<base>/<session id>`.
    Own,
    /// systemd: `airlock.slice/airlock-session-<id>.scope`.
    SystemdScopes,
}

/// The slice systemd puts session scopes in.
pub const SLICE: &str = "airlock.slice";
const SCOPE_PREFIX: &str = "airlock-session-";
const SCOPE_SUFFIX: &str = ".scope";

/// The scope unit of a session.
pub fn scope_unit(session: &str) -> String {
    format!("{SCOPE_PREFIX}{session}{SCOPE_SUFFIX}")
}

impl Cgroups {
    /// Opens (creating it if needed) `name` under the cgroup2 mount, the
    /// parent of all session cgroups.
    pub fn open(name: &str) -> anyhow::Result<Cgroups> {
        let base = cgroup2_root()?.join(name);
        if !base.exists() {
            fs::create_dir(&base).with_context(|| format!("creating {}", base.display()))?;
        }
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755))?;
        Ok(Cgroups {
            base,
            listed_as: Path::new("/").join(name),
            layout: Layout::Own,
        })
    }

    /// The session cgroups are systemd's scopes in [`SLICE`] (which systemd
    /// creates with the first of them).
    pub fn systemd() -> anyhow::Result<Cgroups> {
        Ok(Cgroups {
            base: cgroup2_root()?.join(SLICE),
            listed_as: Path::new("/").join(SLICE),
            layout: Layout::SystemdScopes,
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn path(&self, session: &str) -> PathBuf {
        match self.layout {
            Layout::Own => self.base.join(session),
            Layout::SystemdScopes => self.base.join(scope_unit(session)),
        }
    }

    /// Creates the session's cgroup (under systemd: finds the scope systemd
    /// made); returns its id.
    pub fn create(&self, session: &str) -> anyhow::Result<u64> {
        let path = self.path(session);
        if self.layout == Layout::SystemdScopes {
            anyhow::ensure!(
                path.is_dir(),
                "systemd has no scope {} for the session",
                scope_unit(session)
            );
            return self.id(session);
        }
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        self.id(session)
    }

    pub fn id(&self, session: &str) -> anyhow::Result<u64> {
        let path = self.path(session);
        Ok(fs::metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .ino())
    }

    pub fn exists(&self, session: &str) -> bool {
        self.path(session).is_dir()
    }

    /// Moves process `pid` (and, from then on, all its descendants) in.
    pub fn add_process(&self, session: &str, pid: u32) -> anyhow::Result<()> {
        let procs = self.path(session).join("cgroup.procs");
        fs::OpenOptions::new()
            .write(true)
            .open(&procs)
            .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
            .with_context(|| format!("moving process {pid} into {}", procs.display()))
    }

    /// Whether any process is left in the session.
    pub fn populated(&self, session: &str) -> bool {
        let events = self.path(session).join("cgroup.events");
        fs::read_to_string(events)
            .map(|text| text.lines().any(|l| l == "populated 1"))
            .unwrap_or(false)
    }

    /// Kills every process of the session.
    pub fn kill(&self, session: &str) -> anyhow::Result<()> {
        let path = self.path(session);
        if fs::write(path.join("cgroup.kill"), b"1").is_ok() {
            return Ok(());
        }
        // Kernels before 5.14 have no cgroup.kill: kill what is listed until
        // nothing is left (new children land in the same cgroup).
        for _ in 0..100 {
            let procs = fs::read_to_string(path.join("cgroup.procs"))?;
            let pids: Vec<i32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
            if pids.is_empty() {
                return Ok(());
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        Err(anyhow!("processes keep appearing in {}", path.display()))
    }

    /// Removes an empty session cgroup (systemd removes its scopes itself
    /// once they are empty).
    pub fn remove(&self, session: &str) {
        if self.layout == Layout::Own {
            let _ = fs::remove_dir(self.path(session));
        }
    }

    /// The session a process is in, by its cgroup path.
    pub fn session_of(&self, pid: u32) -> Option<String> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .and_then(|path| {
                Path::new(path)
                    .strip_prefix(&self.listed_as)
                    .ok()
                    .map(Path::to_path_buf)
            })
            .and_then(|rest| {
                rest.components()
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
            })
            .and_then(|dir| match self.layout {
                Layout::Own => Some(dir),
                Layout::SystemdScopes => dir
                    .strip_prefix(SCOPE_PREFIX)
                    .and_then(|d| d.strip_suffix(SCOPE_SUFFIX))
                    .map(str::to_owned),
            })
    }
}

/// The process a pidfd refers to, from `/proc/self/fdinfo`.
pub fn pid_of_pidfd(fd: i32) -> anyhow::Result<u32> {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    let pid: i64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .ok_or_else(|| anyhow!("the file descriptor passed is not a pidfd"))?
        .trim()
        .parse()?;
    if pid <= 0 {
        bail!("the process behind the pidfd has exited");
    }
    Ok(pid as u32)
}

/// The real uid of a process.
pub fn uid_of(pid: u32) -> anyhow::Result<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("cannot read the uid of process {pid}"))
}
