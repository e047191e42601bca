//! Who is calling the proxy.
//!
//! - On the Unix socket, the kernel says: `SO_PEERCRED` gives the uid and
//!   pid of the process that connected (the pid lets the gateway ask the
//!   enforcer which governed session it runs in).
//! - On the loopback port, the connecting socket is a TCP socket of this
//!   machine. The kernel's socket diagnostics (`sock_diag`, what `ss` reads)
//!   look it up by its two ends and give its owner and the cgroup it was
//!   made in (`INET_DIAG_CGROUP_ID`): a governed session is a cgroup, so
//!   the enforcer can tell whether the socket comes from one. One exact
//!   lookup, unprivileged, whatever the number of connections on the
//!   machine.
//!
//! A caller that cannot be identified is refused; one whose cgroup the
//! kernel does not report (an older kernel, or one without cgroup socket
//! data) is known by its uid only, which only a grant for the whole uid
//! covers.

use std::io;
use std::net::{IpAddr, SocketAddr};

pub use airlock_common::credential::bus::CallerIdentity as Caller;
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla as _, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NetlinkAddr};

/// `INET_DIAG_CGROUP_ID` (linux/inet_diag.h): the socket's cgroup, a u64.
const INET_DIAG_CGROUP_ID: u16 = 21;
/// `INET_DIAG_NOCOOKIE`: look the socket up by its addresses alone.
const NO_COOKIE: [u8; 8] = [0xff; 8];
/// The TCP states of a full socket, whose owner the kernel reports: an
/// established connection, or one its caller has begun to close. A
/// `TIME_WAIT` or request mini-socket reports uid 0, so it must never count.
const FULL_SOCKET_STATES: [u8; 3] = [1, 4, 5]; // ESTABLISHED, FIN_WAIT1, FIN_WAIT2
/// One answer: a message header, the diagnostics and a few attributes.
const REPLY_BUFFER: usize = 4096;

/// The caller behind the TCP socket at `peer`, connected to our `local`
/// end, from the kernel's socket table; none if no such socket is
/// established (it closed, or it is not on this machine).
pub fn tcp_caller(peer: SocketAddr, local: SocketAddr) -> io::Result<Option<Caller>> {
    let (peer, local) = (canonical(peer), canonical(local));
    let family = match (peer, local) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => AF_INET,
        (SocketAddr::V6(_), SocketAddr::V6(_)) => AF_INET6,
        _ => return Ok(None),
    };
    // Its source is the caller's end, its destination ours.
    let mut socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    socket_id.source_address = peer.ip();
    socket_id.source_port = peer.port();
    socket_id.destination_address = local.ip();
    socket_id.destination_port = local.port();
    socket_id.cookie = NO_COOKIE;
    let request = InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::ESTABLISHED | StateFlags::FIN_WAIT1 | StateFlags::FIN_WAIT2,
        socket_id,
    };
    let Some(answer) = ask(request)? else {
        return Ok(None);
    };
    Ok(caller_of(&answer, peer, local))
}

/// Sends one lookup and reads its answer: the socket's diagnostics, or none
/// when the kernel has no such socket (ENOENT).
fn ask(request: InetRequest) -> io::Result<Option<InetResponse>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut message = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    message.finalize();
    let mut out = vec![0; message.buffer_len()];
    message.serialize(&mut out);
    socket.send(&out, 0)?;
    let mut reply = vec![0; REPLY_BUFFER];
    let length = socket.recv(&mut &mut reply[..], 0)?;
    let parsed = NetlinkMessage::<SockDiagMessage>::deserialize(&reply[..length])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {e}")))?;
    match parsed.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(answer)) => Ok(Some(*answer)),
        NetlinkPayload::Error(error) => match error.code {
            Some(code) if -code.get() == libc::ENOENT => Ok(None),
            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
            None => Ok(None),
        },
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sock_diag answered {other:?}"),
        )),
    }
}

/// The answer's owner and cgroup, if it is the socket asked about, as a
/// full socket (the kernel answers for the socket it found, in whatever
/// state; anything else is refused).
fn caller_of(answer: &InetResponse, peer: SocketAddr, local: SocketAddr) -> Option<Caller> {
    if !FULL_SOCKET_STATES.contains(&answer.header.state) {
        return None;
    }
    let id = &answer.header.socket_id;
    let found_peer = canonical(SocketAddr::new(id.source_address, id.source_port));
    let found_local = canonical(SocketAddr::new(id.destination_address, id.destination_port));
    if found_peer != peer || found_local != local {
        return None;
    }
    let socket_cgroup = answer
        .nlas
        .iter()
        .find_map(|nla| match nla {
            Nla::Other(other) if other.kind() == INET_DIAG_CGROUP_ID && other.value_len() == 8 => {
                let mut bytes = [0; 8];
                other.emit_value(&mut bytes);
                Some(u64::from_ne_bytes(bytes))
            }
            _ => None,
        })
        .unwrap_or(0);
    Some(Caller {
        uid: answer.header.uid,
        pid: 0,
        socket_cgroup,
    })
}

/// An IPv4-mapped IPv6 address as its IPv4 address (a dual-stack listener
/// sees IPv4 callers that way; their sockets are IPv4 ones).
fn canonical(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), address.port()),
            None => address,
        },
        IpAddr::V4(_) => address,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// This process's cgroup id: the inode of its cgroup v2 directory.
    fn own_cgroup() -> u64 {
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        std::fs::metadata(format!("/sys/fs/cgroup{path}"))
            .unwrap()
            .ino()
    }

    fn own_uid() -> u32 {
        std::fs::metadata("/proc/self").unwrap().uid()
    }

    /// A listener, a client connected to it, the accepted end (kept open:
    /// once it closes, the client's socket is in CLOSE_WAIT) and the
    /// client's address.
    fn connected(at: &str) -> (TcpListener, TcpStream, TcpStream, SocketAddr) {
        let listener = TcpListener::bind(at).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        (listener, client, server, peer)
    }

    #[test]
    fn a_real_connection_names_its_owner_and_cgroup() {
        let (listener, _client, _server, peer) = connected("127.0.0.1:0");
        let caller = tcp_caller(peer, listener.local_addr().unwrap()).unwrap();
        assert_eq!(
            caller,
            Some(Caller {
                uid: own_uid(),
                pid: 0,
                socket_cgroup: own_cgroup(),
            })
        );
    }

    #[test]
    fn an_ipv6_connection_is_found_too() {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            return; // no IPv6 loopback on this machine
        };
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        let caller = tcp_caller(peer, listener.local_addr().unwrap()).unwrap();
        assert_eq!(caller.map(|c| c.uid), Some(own_uid()));
        assert_eq!(caller.map(|c| c.socket_cgroup), Some(own_cgroup()));
        drop(client);
    }

    #[test]
    fn no_socket_no_caller() {
        let (listener, client, server, peer) = connected("127.0.0.1:0");
        let local = listener.local_addr().unwrap();
        // Another port on the caller's side: no such connection.
        let elsewhere = SocketAddr::new(peer.ip(), peer.port().wrapping_add(1).max(1));
        assert_eq!(tcp_caller(elsewhere, local).unwrap(), None);
        // Once our end closes, the caller's socket (CLOSE_WAIT) counts no
        // more; once it closes too, there is none.
        assert!(tcp_caller(peer, local).unwrap().is_some());
        drop(server);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(tcp_caller(peer, local).unwrap(), None);
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(tcp_caller(peer, local).unwrap(), None);
        // Mixed families name no socket.
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(tcp_caller(v6, local).unwrap(), None);
    }

    #[test]
    fn only_a_full_socket_that_is_the_one_asked_about_counts() {
        let (listener, _client, _server, peer) = connected("127.0.0.1:0");
        let local = listener.local_addr().unwrap();
        let mut socket_id = SocketId::new_v4();
        socket_id.source_address = peer.ip();
        socket_id.source_port = peer.port();
        socket_id.destination_address = local.ip();
        socket_id.destination_port = local.port();
        let request = InetRequest {
            family: AF_INET,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: SocketId {
                cookie: NO_COOKIE,
                ..socket_id
            },
        };
        let real = ask(request).unwrap().expect("the kernel knows the socket");
        assert!(caller_of(&real, peer, local).is_some());
        // Once the server end closes, the client's socket is in CLOSE_WAIT,
        // and a TIME_WAIT socket reports uid 0: neither is a caller.
        let mut closed = real.clone();
        closed.header.state = 6;
        assert_eq!(caller_of(&closed, peer, local), None);
        // An answer for another socket is not this caller's.
        let mut other = real.clone();
        other.header.socket_id.source_port = peer.port().wrapping_add(1);
        assert_eq!(caller_of(&other, peer, local), None);
    }

    #[test]
    fn a_mapped_address_is_its_ipv4_address() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        assert_eq!(canonical(mapped), "127.0.0.1:40000".parse().unwrap());
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
