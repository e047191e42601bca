//! `cgroup/connect4`, `connect6`, `sendmsg4`, `sendmsg6`: a governed task
//! may not reach, over TCP or UDP, a process on this machine outside its
//! session (`ssh localhost`, a local daemon on 127.0.0.1, the machine's
//! own addresses).
//!
//! Attached to the root of the cgroup2 hierarchy, so they see every task;
//! others return at the first map lookup. For a destination that reaches
//! this machine (loopback, `0.0.0.0`/`::`, broadcast and multicast, an
//! interface address the enforcer registered) the program looks the
//! listening socket up itself and lets the call through only if it belongs
//! to the session (an agent's own dev server on localhost:3000), or is
//! Airlock's own service on its port (the credential proxy), or the role
//! allows the port. Otherwise the call fails with EPERM and the enforcer is
//! told. A TCP connection to a port where the lookup finds nothing fails
//! with ECONNREFUSED, what the caller would see anyway: the lookup does not
//! see listeners bound to a device (`SO_BINDTODEVICE`), which may not be
//! reached either.

use airlock_common::kernel::{
    LocalAddr, LocalPortKey, SessionInfo, AF_INET, AF_INET6, DNS_PORT, STAGE_CONNECT,
};
use aya_ebpf::bindings::{bpf_sock_tuple, BPF_F_CURRENT_NETNS};
use aya_ebpf::helpers::generated as h;
use aya_ebpf::macros::cgroup_sock_addr;
use aya_ebpf::programs::SockAddrContext;
use aya_ebpf::EbpfContext;

use crate::maps::{LOCAL_ADDRS, LOCAL_PORTS, OFFSETS, SERVICE_PORTS};
use crate::socket::{
    listeners_in_session, listeners_owned_by, peer, report_socket, socket_address,
};
use crate::task::current_session;

/// What the programs return: 1 lets the call through, 0 fails it with
/// EPERM.
const ALLOW: i32 = 1;
const REFUSE: i32 = 0;
const ECONNREFUSED: i32 = 111;

const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const IPPROTO_ICMP: u32 = 1;
const IPPROTO_UDP: u32 = 17;
const IPPROTO_ICMPV6: u32 = 58;
const IPPROTO_UDPLITE: u32 = 136;

/// Sizes of `bpf_sock_tuple`'s IPv4 and IPv6 forms: the lookup helpers
/// choose the family by it.
const TUPLE_V4: u32 = 12;
const TUPLE_V6: u32 = 36;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    let Some(session) = current_session() else {
        return ALLOW;
    };
    judge(&ctx, &session, Dest::v4(ip4(&ctx)), port(&ctx))
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    let Some(session) = current_session() else {
        return ALLOW;
    };
    judge(&ctx, &session, Dest::v4(ip4(&ctx)), port(&ctx))
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    let Some(session) = current_session() else {
        return ALLOW;
    };
    judge(&ctx, &session, Dest::v6(ip6(&ctx)), port(&ctx))
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    let Some(session) = current_session() else {
        return ALLOW;
    };
    judge(&ctx, &session, Dest::v6(ip6(&ctx)), port(&ctx))
}

/// The destination address, as the lookup wants it: an IPv4 address (also
/// for an IPv4-mapped IPv6 one, which connects over IPv4) or an IPv6 one,
/// in network byte order.
#[derive(Clone, Copy)]
enum Dest {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Dest {
    #[inline(always)]
    fn v4(addr: u32) -> Dest {
        Dest::V4(addr.to_ne_bytes())
    }

    #[inline(always)]
    fn v6(words: [u32; 4]) -> Dest {
        let mut bytes = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            let word = words[i].to_ne_bytes();
            bytes[4 * i] = word[0];
            bytes[4 * i + 1] = word[1];
            bytes[4 * i + 2] = word[2];
            bytes[4 * i + 3] = word[3];
            i += 1;
        }
        let mapped = bytes[..10].iter().all(|&b| b == 0) && bytes[10] == 0xff && bytes[11] == 0xff;
        if mapped {
            Dest::V4([bytes[12], bytes[13], bytes[14], bytes[15]])
        } else {
            Dest::V6(bytes)
        }
    }

    /// Whether a packet to this address is delivered on this machine (it
    /// may also leave it: broadcast and multicast).
    #[inline(always)]
    fn reaches_this_machine(&self) -> bool {
        let mut key = LocalAddr { addr: [0; 16] };
        match *self {
            Dest::V4(a) => {
                // 127/8 loopback, 0/8 ("this host"), 224/4 multicast,
                // the limited broadcast.
                if a[0] == 127 || a[0] == 0 || a[0] & 0xf0 == 0xe0 || a == [255; 4] {
                    return true;
                }
                key.addr[10] = 0xff;
                key.addr[11] = 0xff;
                key.addr[12] = a[0];
                key.addr[13] = a[1];
                key.addr[14] = a[2];
                key.addr[15] = a[3];
            }
            Dest::V6(a) => {
                let zero_prefix = a[..15].iter().all(|&b| b == 0);
                // `::1`, `::` (which connects to loopback), ff00::/8.
                if (zero_prefix && a[15] <= 1) || a[0] == 0xff {
                    return true;
                }
                key.addr = a;
            }
        }
        // SAFETY: a presence test; the value is not read.
        unsafe { LOCAL_ADDRS.get(key) }.is_some()
    }

    fn family(&self) -> u16 {
        match self {
            Dest::V4(_) => AF_INET,
            Dest::V6(_) => AF_INET6,
        }
    }
}

/// What the socket speaks, for the lookup.
enum Transport {
    Tcp,
    Udp,
    /// Ping sockets: nothing listens for them.
    Icmp,
    /// Anything else to this machine is refused.
    Other,
}

#[inline(always)]
fn transport(ctx: &SockAddrContext) -> (Transport, u16) {
    // SAFETY: `sock_addr` is the context the kernel passed; the fields are
    // read with 4-byte loads, the only width the verifier allows for them.
    let (kind, protocol) = unsafe {
        (
            core::ptr::read_volatile(&(*ctx.sock_addr).type_),
            core::ptr::read_volatile(&(*ctx.sock_addr).protocol),
        )
    };
    let transport = match (kind, protocol) {
        (SOCK_STREAM, _) => Transport::Tcp,
        (SOCK_DGRAM, IPPROTO_UDP | IPPROTO_UDPLITE) => Transport::Udp,
        (SOCK_DGRAM, IPPROTO_ICMP | IPPROTO_ICMPV6) => Transport::Icmp,
        _ => Transport::Other,
    };
    (transport, protocol as u16)
}

#[inline(always)]
fn ip4(ctx: &SockAddrContext) -> u32 {
    // SAFETY: as in `transport`; only the IPv4 programs call this.
    unsafe { core::ptr::read_volatile(&(*ctx.sock_addr).user_ip4) }
}

#[inline(always)]
fn ip6(ctx: &SockAddrContext) -> [u32; 4] {
    // SAFETY: as in `transport`; only the IPv6 programs call this.
    unsafe {
        let a = &(*ctx.sock_addr).user_ip6;
        [
            core::ptr::read_volatile(&a[0]),
            core::ptr::read_volatile(&a[1]),
            core::ptr::read_volatile(&a[2]),
            core::ptr::read_volatile(&a[3]),
        ]
    }
}

/// The destination port, network byte order.
#[inline(always)]
fn port(ctx: &SockAddrContext) -> u16 {
    // SAFETY: as in `transport`.
    unsafe { core::ptr::read_volatile(&(*ctx.sock_addr).user_port) as u16 }
}

#[inline(always)]
fn judge(ctx: &SockAddrContext, session: &SessionInfo, dest: Dest, net_port: u16) -> i32 {
    if !dest.reaches_this_machine() {
        return ALLOW;
    }
    let host_port = u16::from_be(net_port);
    let allowed = LocalPortKey {
        session: session.index,
        port: host_port as u32,
    };
    // SAFETY: a presence test; the value is not read.
    if host_port == DNS_PORT || unsafe { LOCAL_PORTS.get(allowed) }.is_some() {
        return ALLOW;
    }
    let (transport, protocol) = transport(ctx);
    let tcp = matches!(transport, Transport::Tcp);
    let outside = match transport {
        Transport::Icmp => false,
        Transport::Other => true,
        Transport::Tcp | Transport::Udp => match listener(ctx, session, dest, net_port, tcp) {
            Listener::Session | Listener::Airlock => false,
            Listener::Outside => true,
            // A datagram to a port nobody bound is simply lost.
            Listener::None if !tcp => false,
            Listener::None => {
                // SAFETY: a helper taking an errno; the connect fails with it.
                unsafe { h::bpf_set_retval(-ECONNREFUSED) };
                return REFUSE;
            }
        },
    };
    if !outside {
        return ALLOW;
    }
    let mut refused = peer(dest.family(), protocol, host_port);
    match dest {
        Dest::V4(a) => refused.addr[..4].copy_from_slice(&a),
        Dest::V6(a) => refused.addr = a,
    }
    report_socket(STAGE_CONNECT, session, &refused);
    REFUSE
}

/// Whose is the socket that would take a connection or datagram.
enum Listener {
    /// The session's own (with all of its `SO_REUSEPORT` group).
    Session,
    /// Airlock's own service on its port (`AL_SERVICE_PORTS`), with all of
    /// its group.
    Airlock,
    Outside,
    /// None the lookup can see.
    None,
}

/// The socket listening for `dest`:`net_port`.
#[inline(always)]
fn listener(
    ctx: &SockAddrContext,
    session: &SessionInfo,
    dest: Dest,
    net_port: u16,
    tcp: bool,
) -> Listener {
    // SAFETY: bpf_sock_tuple is plain integers, for which zeroes are valid.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let size = match dest {
        Dest::V4(a) => {
            tuple.__bindgen_anon_1.ipv4.daddr = u32::from_ne_bytes(a);
            tuple.__bindgen_anon_1.ipv4.dport = net_port;
            TUPLE_V4
        }
        Dest::V6(a) => {
            let mut words = [0u32; 4];
            let mut i = 0;
            while i < 4 {
                words[i] = u32::from_ne_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]]);
                i += 1;
            }
            tuple.__bindgen_anon_1.ipv6.daddr = words;
            tuple.__bindgen_anon_1.ipv6.dport = net_port;
            TUPLE_V6
        }
    };
    let netns = BPF_F_CURRENT_NETNS as u64;
    // SAFETY: the helpers take the program's context, a tuple on the stack
    // of at least `size` initialised bytes, and return a referenced socket
    // or null; a socket found is released below on every path.
    let sk = unsafe {
        if tcp {
            h::bpf_sk_lookup_tcp(ctx.as_ptr(), &mut tuple, size, netns, 0)
        } else {
            h::bpf_sk_lookup_udp(ctx.as_ptr(), &mut tuple, size, netns, 0)
        }
    };
    if sk.is_null() {
        return Listener::None;
    }
    let off = OFFSETS.load();
    let address = socket_address(sk);
    let found = if listeners_in_session(&off, address, session) {
        Listener::Session
    } else {
        let port = u16::from_be(net_port) as u32;
        // SAFETY: the value is copied out at once; it is plain data.
        match unsafe { SERVICE_PORTS.get(port) }.copied() {
            Some(owner) if listeners_owned_by(&off, address, owner) => Listener::Airlock,
            _ => Listener::Outside,
        }
    };
    // SAFETY: `sk` came from a lookup helper and is released once.
    unsafe { h::bpf_sk_release(sk.cast()) };
    found
}
