//! Writing to another process's standard error, safely.
//!
//! Reopening `/proc/PID/fd/2` as root would open whatever file that is with
//! root's rights: an agent that made its stderr a read-only descriptor of
//! `/etc/passwd` would have the enforcer write into it. `pidfd_getfd(2)`
//! instead duplicates the agent's own open file description, with the access
//! mode the agent had: a read-only descriptor stays read-only.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_getfd(pidfd: &OwnedFd, target: i32) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_getfd takes a pidfd, a fd number in that process and
    // flags, and returns a new fd in ours or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above, a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Writes `text` to file descriptor 2 of process `pid` as that process
/// could have. Blocks while a pipe is full; callers run it off the event
/// loop with a time limit.
pub fn write_stderr(pid: u32, text: &str) -> std::io::Result<()> {
    let pidfd = pidfd_open(pid)?;
    let fd = pidfd_getfd(&pidfd, 2)?;
    File::from(fd).write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Command, Stdio};

    #[test]
    fn writes_into_the_childs_stderr_pipe_but_not_through_a_read_only_fd() {
        // A child whose stderr is a pipe we read.
        let mut child = Command::new("sleep")
            .arg("5")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        write_stderr(child.id(), "airlock: hello\n").unwrap();
        let mut pipe = child.stderr.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let mut text = String::new();
        pipe.read_to_string(&mut text).unwrap();
        assert_eq!(text, "airlock: hello\n");

        // A child whose stderr is a read-only file: the write must fail and
        // the file stay as it was.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("precious");
        std::fs::write(&path, "original\n").unwrap();
        let mut child = Command::new("sleep")
            .arg("5")
            .stderr(File::open(&path).unwrap())
            .spawn()
            .unwrap();
        let result = write_stderr(child.id(), "overwritten\n");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(result.is_err(), "a read-only stderr must not be written");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "original\n");
    }
}
