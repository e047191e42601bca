//! The system bus stays reachable from sessions (`airlockctl` inside one
//! talks to the gateway over it), and so does the credential proxy's socket
//! (an agent's MCP server or `curl --unix-socket` reach services through
//! it): their listening sockets are registered, by the socket's inode
//! number, in the map the Unix socket hooks read. Nothing else a session
//! connects to by path is allowed under BPF LSM.
//!
//! The listener is found through the process serving it, not by a path
//! string a session could imitate: connecting to the bus's socket file
//! names (`SO_PEERCRED`) the process that called `listen` on it, the bus
//! daemon (or the init system that holds it for socket activation). Of the
//! listening sockets that process holds, those bound to the bus's path are
//! the bus. A restarted bus (a new socket file) is found again on the next
//! heartbeat.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use airlock_common::kernel::ListenerKey;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// Where the system bus listens when `DBUS_SYSTEM_BUS_ADDRESS` is unset.
const DEFAULT_SOCKET: &str = "/run/dbus/system_bus_socket";

/// The socket files of the bus the enforcer itself uses: the `unix:path=`
/// entries of `DBUS_SYSTEM_BUS_ADDRESS`, or the default socket. (An
/// abstract address has no file; sessions cannot reach such a bus under BPF
/// LSM, and the enforcer says so.)
pub fn socket_paths(address: Option<&str>) -> Vec<PathBuf> {
    let Some(address) = address else {
        return vec![PathBuf::from(DEFAULT_SOCKET)];
    };
    address
        .split(';')
        .filter_map(|entry| entry.strip_prefix("unix:"))
        .filter_map(|params| {
            params
                .split(',')
                .find_map(|kv| kv.strip_prefix("path="))
                .map(unescape)
        })
        .map(PathBuf::from)
        .collect()
}

/// D-Bus addresses escape bytes as `%XX`.
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `__SO_ACCEPTCON` in `/proc/net/unix`'s flags: a listening socket.
const LISTENING: u64 = 0x0001_0000;

/// A socket sessions may reach: what it is (for messages) and its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedSocket {
    pub what: &'static str,
    pub path: PathBuf,
}

/// The listening sockets of the allowed services and what they were found
/// from.
#[derive(Default)]
pub struct AllowedSockets {
    sockets: Vec<AllowedSocket>,
    /// (device, inode, change time) of each socket file when last found.
    files: Vec<Option<(u64, u64, i64)>>,
}

impl AllowedSockets {
    pub fn new(sockets: Vec<AllowedSocket>) -> AllowedSockets {
        AllowedSockets {
            sockets,
            files: Vec::new(),
        }
    }

    /// The listeners, if the socket files changed since the last call (or
    /// this is the first); `None` when nothing changed.
    pub fn refresh(&mut self) -> Option<BTreeSet<ListenerKey>> {
        let files: Vec<_> = self
            .sockets
            .iter()
            .map(|s| {
                std::fs::metadata(&s.path)
                    .ok()
                    .map(|m| (m.dev(), m.ino(), m.ctime()))
            })
            .collect();
        if !self.files.is_empty() && files == self.files {
            return None;
        }
        self.files = files;
        let mut found = BTreeSet::new();
        for (socket, file) in self.sockets.iter().zip(&self.files) {
            match listeners_of(&socket.path) {
                Ok(keys) => found.extend(keys),
                // Not running (yet): found on a later heartbeat.
                Err(_) if file.is_none() => tracing::info!(
                    "no {} socket at {} yet: sessions reach it once it listens",
                    socket.what,
                    socket.path.display()
                ),
                Err(e) => tracing::warn!(
                    "the {} at {}: {e:#}; sessions cannot reach it under BPF LSM",
                    socket.what,
                    socket.path.display()
                ),
            }
        }
        Some(found)
    }
}

/// The listening sockets bound to `path` that the process which listens
/// on it holds.
fn listeners_of(path: &Path) -> anyhow::Result<BTreeSet<ListenerKey>> {
    use anyhow::Context;
    let probe = UnixStream::connect(path).context("connecting")?;
    let server = getsockopt(&probe, PeerCredentials)
        .context("asking who listens")?
        .pid();
    drop(probe);
    let mut held = BTreeSet::new();
    let fds = std::fs::read_dir(format!("/proc/{server}/fd"))
        .with_context(|| format!("listing the descriptors of process {server}"))?;
    for fd in fds.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if let Some(ino) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok())
        {
            held.insert(ino);
        }
    }
    let names: Vec<String> = [Some(path.to_path_buf()), path.canonicalize().ok()]
        .into_iter()
        .flatten()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let table = std::fs::read_to_string("/proc/net/unix").context("reading /proc/net/unix")?;
    let keys: BTreeSet<ListenerKey> = listening(&table)
        .filter(|(ino, name)| held.contains(ino) && names.iter().any(|n| n == name))
        .map(|(ino, _)| ListenerKey { ino })
        .collect();
    anyhow::ensure!(
        !keys.is_empty(),
        "process {server} holds no listening socket bound to it"
    );
    Ok(keys)
}

/// (inode, path) of each listening socket in `/proc/net/unix`'s format:
/// `Num RefCount Protocol Flags Type St Inode Path`.
fn listening(table: &str) -> impl Iterator<Item = (u64, &str)> {
    table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = u64::from_str_radix(fields.get(3)?, 16).ok()?;
        let ino = fields.get(6)?.parse().ok()?;
        (flags & LISTENING != 0).then_some((ino, *fields.get(7)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bus_socket_is_read_from_the_address() {
        assert_eq!(socket_paths(None), [PathBuf::from(DEFAULT_SOCKET)]);
        assert_eq!(
            socket_paths(Some("unix:path=/tmp/t/bus,guid=0123")),
            [PathBuf::from("/tmp/t/bus")]
        );
        assert_eq!(
            socket_paths(Some("unix:abstract=/tmp/x;unix:guid=1,path=/run/a%20b")),
            [PathBuf::from("/run/a b")]
        );
        assert!(socket_paths(Some("tcp:host=localhost,port=1")).is_empty());
    }

    #[test]
    fn listening_sockets_are_read_from_proc_net_unix() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
                     0000000000000000: 00000002 00000000 00010000 0001 01 20155 /run/dbus/system_bus_socket\n\
                     0000000000000000: 00000003 00000000 00000000 0001 03 31337 /run/dbus/system_bus_socket\n\
                     0000000000000000: 00000002 00000000 00010000 0001 01 4242 @/tmp/.X11-unix/X0\n\
                     0000000000000000: 00000002 00000000 00010000 0001 01 77\n";
        let found: Vec<(u64, &str)> = listening(table).collect();
        assert_eq!(
            found,
            [
                (20155, "/run/dbus/system_bus_socket"),
                (4242, "@/tmp/.X11-unix/X0")
            ]
        );
    }

    #[test]
    fn the_listener_is_found_through_the_process_that_listens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let keys = listeners_of(&path).unwrap();
        let own = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&listener)
        ))
        .unwrap();
        let ino: u64 = own.to_str().unwrap()[8..]
            .trim_end_matches(']')
            .parse()
            .unwrap();
        assert_eq!(keys, BTreeSet::from([ListenerKey { ino }]));
        let mut bus = AllowedSockets::new(vec![AllowedSocket {
            what: "system bus",
            path: path.clone(),
        }]);
        assert_eq!(bus.refresh(), Some(keys));
        assert_eq!(bus.refresh(), None, "unchanged");
        drop(listener);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(bus.refresh(), Some(BTreeSet::new()));
    }

    #[test]
    fn every_allowed_socket_is_registered() {
        let dir = tempfile::tempdir().unwrap();
        let (bus, proxy) = (dir.path().join("bus"), dir.path().join("proxy.sock"));
        let _bus = std::os::unix::net::UnixListener::bind(&bus).unwrap();
        let mut allowed = AllowedSockets::new(vec![
            AllowedSocket {
                what: "system bus",
                path: bus.clone(),
            },
            AllowedSocket {
                what: "credential proxy",
                path: proxy.clone(),
            },
        ]);
        let only_bus = listeners_of(&bus).unwrap();
        assert_eq!(allowed.refresh(), Some(only_bus.clone()));
        // The proxy starts later: its listener joins on the next refresh.
        let _proxy = std::os::unix::net::UnixListener::bind(&proxy).unwrap();
        let both = allowed.refresh().expect("the proxy's socket appeared");
        assert_eq!(both.len(), 2);
        assert!(both.is_superset(&only_bus));
        assert!(both.is_superset(&listeners_of(&proxy).unwrap()));
    }
}
