//! Who is calling the proxy.
//!
//! - On the Unix socket, the kernel says: `SO_PEERCRED` gives the uid and
//!   pid of the process that connected (the pid lets the gateway ask the
//!   enforcer which governed session it runs in).
//! - On the loopback port, the connecting socket is a TCP socket of this
//!   machine: its entry in `/proc/net/tcp` (or `tcp6`), the one whose local
//!   end is the peer's address and whose remote end is ours, names the uid
//!   that owns it. No pid is known, so only a grant for the whole uid (not
//!   one bound to a session) covers a TCP caller.
//!
//! A caller that cannot be identified is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An identified caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    /// 0 when unknown (loopback TCP).
    pub pid: u32,
}

/// The owner of the TCP socket at `peer` connected to `local` (both on this
/// machine), from the kernel's socket tables.
pub fn tcp_owner(peer: SocketAddr, local: SocketAddr) -> std::io::Result<Option<u32>> {
    let table = match peer {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table)?;
    Ok(find_owner(&text, peer, local))
}

/// The uid column of the established entry from `peer` to `local`.
fn find_owner(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    const ESTABLISHED: &str = "01";
    table.lines().skip(1).find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        if columns.len() < 8 || columns[3] != ESTABLISHED {
            return None;
        }
        let from = parse_endpoint(columns[1])?;
        let to = parse_endpoint(columns[2])?;
        (same(from, peer) && same(to, local)).then(|| columns[7].parse().ok())?
    })
}

/// Equal, counting an IPv4-mapped IPv6 address as its IPv4 address.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the address
/// is the kernel's words in host byte order, the port is plain hex.
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = address.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_as_the_kernel_writes_them() {
        // Little-endian, as on x86-64 and arm64.
        assert_eq!(
            parse_endpoint("0100007F:1D3C"),
            Some("127.0.0.1:7484".parse().unwrap())
        );
        assert_eq!(
            parse_endpoint("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_endpoint("zz:1"), None);
        assert_eq!(parse_endpoint("0100007F"), None);
    }

    #[test]
    fn the_connecting_sockets_owner_is_found_and_nothing_else() {
        let table = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1D3C 00000000:0000 0A 00000000:00000000 00:00000000 00000000   995        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1D3C 01 00000000:00000000 00:00000000 00000000  1001        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1D3C 0100007F:9C40 01 00000000:00000000 00:00000000 00000000   995        0 3 1 0000000000000000 20 4 30 10 -1
";
        let local = "127.0.0.1:7484".parse().unwrap();
        assert_eq!(
            find_owner(table, "127.0.0.1:40000".parse().unwrap(), local),
            Some(1001)
        );
        assert_eq!(
            find_owner(table, "127.0.0.1:40001".parse().unwrap(), local),
            None
        );
        assert_eq!(
            find_owner(table, "[::ffff:127.0.0.1]:40000".parse().unwrap(), local),
            Some(1001)
        );
    }

    #[test]
    fn a_real_connection_is_owned_by_this_process_user() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let owner = tcp_owner(peer, listener.local_addr().unwrap()).unwrap();
        assert_eq!(owner, Some(nix_uid()));
    }

    fn nix_uid() -> u32 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    }
}
