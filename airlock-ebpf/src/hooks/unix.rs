//! `lsm/unix_stream_connect`, `lsm/unix_may_send`: a governed task may not
//! connect to, or send a datagram to, a Unix socket created outside its
//! session (a tmux or screen server, an editor's server, any daemon of the
//! same user), whether it is bound to a path anywhere or to an abstract
//! name. The listeners the enforcer registered (the system bus, which
//! `airlockctl` needs) stay reachable.

use core::ffi::c_void;

use airlock_common::kernel::{
    ListenerKey, Peer, SessionInfo, AF_UNIX, PEER_PATH_LEN, STAGE_UNIX_CONNECT,
};
use aya_ebpf::helpers::generated as h;
use aya_ebpf::macros::lsm;
use aya_ebpf::programs::LsmContext;

use super::EPERM;
use crate::maps::{BUS_SOCKETS, OFFSETS};
use crate::socket::{in_session, peer, report_socket};
use crate::task::{current_session, kread};

/// `sizeof(sa_family_t)`: `unix_address.len` counts it before the path.
const FAMILY_LEN: i32 = 2;

#[lsm(hook = "unix_stream_connect")]
pub fn unix_stream_connect(ctx: LsmContext) -> i32 {
    // (sock, other, newsk, ret): `other` is the listening socket.
    let previous: i32 = ctx.arg(3);
    if previous != 0 {
        return previous;
    }
    let Some(session) = current_session() else {
        return 0;
    };
    judge(&session, ctx.arg::<*const c_void>(1) as u64)
}

#[lsm(hook = "unix_may_send")]
pub fn unix_may_send(ctx: LsmContext) -> i32 {
    // (sock, other, ret), both `struct socket`.
    let previous: i32 = ctx.arg(2);
    if previous != 0 {
        return previous;
    }
    let Some(session) = current_session() else {
        return 0;
    };
    let other = ctx.arg::<*const c_void>(1) as u64;
    let off = OFFSETS.load();
    judge(&session, kread(other, off.socket_sk))
}

/// Refuses a governed task reaching the Unix socket `other` (a `struct
/// sock`, the embedded head of a `unix_sock`) unless it is the session's
/// own or a registered listener.
#[inline(always)]
fn judge(session: &SessionInfo, other: u64) -> i32 {
    let off = OFFSETS.load();
    if in_session(&off, other, session) || registered(other) {
        return 0;
    }
    let mut refused = peer(AF_UNIX, 0, 0);
    address(other, &mut refused);
    report_socket(STAGE_UNIX_CONNECT, session, &refused);
    -EPERM
}

/// Whether `other` is a listener the enforcer registered, by its socket's
/// inode number (not by a path the agent could re-point).
#[inline(always)]
fn registered(other: u64) -> bool {
    let off = OFFSETS.load();
    let socket: u64 = kread(other, off.sock_socket);
    if socket == 0 {
        return false;
    }
    let key = ListenerKey {
        ino: kread(socket + off.socket_inode as u64, off.inode_ino),
    };
    // SAFETY: a presence test; the value is not read.
    unsafe { BUS_SOCKETS.get(key) }.is_some()
}

/// The address `other` is bound to (`sun_path`, or an abstract name after a
/// NUL byte), for the event.
#[inline(always)]
fn address(other: u64, peer: &mut Peer) {
    let off = OFFSETS.load();
    let addr: u64 = kread(other, off.unix_addr);
    if addr == 0 {
        return;
    }
    let len: i32 = kread(addr, off.unix_address_len);
    let mut n = len - FAMILY_LEN;
    if n <= 0 {
        return;
    }
    if n > PEER_PATH_LEN as i32 {
        n = PEER_PATH_LEN as i32;
    }
    let n = n as u32 & 0x7f;
    if n as usize > PEER_PATH_LEN {
        return;
    }
    peer.path_len = n as u16;
    // SAFETY: the helper checks the source address and writes at most `n`
    // (at most PEER_PATH_LEN) bytes into `peer.path`, which has that many.
    unsafe {
        h::bpf_probe_read_kernel(
            peer.path.as_mut_ptr().cast(),
            n,
            (addr + off.unix_address_name as u64 + FAMILY_LEN as u64) as *const c_void,
        );
    }
}
