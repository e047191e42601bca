//! Whose a socket is, and reporting what a session was refused to reach.
//!
//! A socket belongs to the session of the task that created it: the kernel
//! keeps that task's cgroup in `sk_cgrp_data` (and its uid in `sk_uid`, for
//! sessions that bind a user), so a listener started outside a session is
//! told apart from the session's own, whatever port or path it uses.

use core::ffi::c_void;

use airlock_common::kernel::{
    ExecEvent, KernelOffsets, Peer, SessionInfo, EVENT_SOCKET_DENIED, NO_RULE, OUTCOME_REFUSED,
};
use aya_ebpf::helpers::generated as h;

use crate::maps::{CGROUPS, EVENTS, STATS, UIDS};
use crate::task::{current_uid, kread, now_ns};

/// Members of an `SO_REUSEPORT` group looked at; a larger group is refused
/// (the kernel would pick any one of them for the connection).
const MAX_GROUP: u32 = 8;

/// The session a kernel `struct sock` belongs to, if any.
#[inline(always)]
pub fn socket_session(off: &KernelOffsets, sk: u64) -> Option<SessionInfo> {
    let cgroup: u64 = kread(sk, off.sock_cgroup);
    let kn: u64 = kread(cgroup, off.cgroup_kn);
    let id: u64 = kread(kn, off.kernfs_node_id);
    // SAFETY: the value is copied out at once, before anything could delete
    // the entry; it is plain data.
    if let Some(session) = unsafe { CGROUPS.get(id) } {
        return Some(*session);
    }
    let uid: u32 = kread(sk, off.sock_uid);
    // SAFETY: as above.
    unsafe { UIDS.get(uid) }.copied()
}

/// Whether `sk` belongs to `session`.
#[inline(always)]
pub fn in_session(off: &KernelOffsets, sk: u64, session: &SessionInfo) -> bool {
    socket_session(off, sk).is_some_and(|s| s.index == session.index)
}

/// Whether every socket that may take a connection addressed to the
/// listener `sk` belongs to `session`: `sk` itself and, if it is in an
/// `SO_REUSEPORT` group (which any socket of the same uid may join), every
/// member of the group.
#[inline(always)]
pub fn listeners_in_session(off: &KernelOffsets, sk: u64, session: &SessionInfo) -> bool {
    every_listener(off, sk, |member| in_session(off, member, session))
}

/// Whether every socket that may take a connection addressed to the
/// listener `sk` (as above) is owned by `uid`.
#[inline(always)]
pub fn listeners_owned_by(off: &KernelOffsets, sk: u64, uid: u32) -> bool {
    every_listener(off, sk, |member| kread::<u32>(member, off.sock_uid) == uid)
}

/// Whether `sk` and every member of its `SO_REUSEPORT` group pass `test`.
#[inline(always)]
fn every_listener(off: &KernelOffsets, sk: u64, test: impl Fn(u64) -> bool) -> bool {
    if !test(sk) {
        return false;
    }
    let group: u64 = kread(sk, off.sock_reuseport_cb);
    if group == 0 {
        return true;
    }
    let members = kread::<u16>(group, off.reuseport_num_socks) as u32;
    if members > MAX_GROUP {
        return false;
    }
    let mut i = 0;
    while i < MAX_GROUP {
        if i < members {
            let member: u64 = kread(group, off.reuseport_socks + 8 * i);
            if !test(member) {
                return false;
            }
        }
        i += 1;
    }
    true
}

/// Reports a refused connection, datagram or signal through the ring
/// buffer (the task is not held: these programs cannot stop it).
#[inline(always)]
pub fn report_peer(kind: u32, stage: u32, session: &SessionInfo, peer: &Peer) {
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        if let Some(lost) = STATS.get_ptr_mut(0) {
            // SAFETY: `lost` points to this CPU's entry of a per-CPU array,
            // valid for the program's run; a plain counter.
            unsafe { *lost += 1 };
        }
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points to a reserved record of the right size and
    // alignment, ours until it is submitted; every field the enforcer reads
    // is written before that (the words and the file name are empty). The
    // comm helper writes at most 16 bytes into a 16-byte array.
    unsafe {
        let pid_tgid = h::bpf_get_current_pid_tgid();
        (*event).kind = kind;
        (*event).stage = stage;
        (*event).outcome = OUTCOME_REFUSED;
        (*event).session = session.index;
        (*event).rule = NO_RULE;
        (*event).pid = pid_tgid as u32;
        (*event).tgid = (pid_tgid >> 32) as u32;
        (*event).ppid = 0;
        (*event).uid = current_uid();
        (*event).action = 0;
        (*event).held = 0;
        (*event).nwords = 0;
        (*event).time_ns = now_ns();
        h::bpf_get_current_comm((*event).comm.as_mut_ptr().cast(), 16);
        (*event).file[0] = 0;
        (*event).peer = *peer;
    }
    entry.submit(0);
}

/// An empty peer, for the callers to fill.
#[inline(always)]
pub fn peer(family: u16, protocol: u16, port: u16) -> Peer {
    Peer {
        family,
        protocol,
        port,
        path_len: 0,
        pid: 0,
        _pad: 0,
        addr: [0; 16],
        path: [0; airlock_common::kernel::PEER_PATH_LEN],
        _pad2: [0; 4],
    }
}

/// The `EVENT_SOCKET_DENIED` report of a refused socket operation.
#[inline(always)]
pub fn report_socket(stage: u32, session: &SessionInfo, peer: &Peer) {
    report_peer(EVENT_SOCKET_DENIED, stage, session, peer);
}

/// The kernel address behind a socket pointer the verifier hands out
/// (`bpf_sk_lookup_*`): it forbids arithmetic on such pointers, so they
/// cannot be given to [`kread`] directly. Reading the pointer's own stack
/// slot with `bpf_probe_read_kernel` yields it as a plain number (allowed
/// for a program loaded with `CAP_PERFMON`, which the enforcer has).
#[inline(always)]
pub fn socket_address<T>(sk: *mut T) -> u64 {
    let mut address = 0u64;
    // SAFETY: the helper copies the 8 bytes of `sk` (a local on this
    // program's stack) into `address`, a local of that size. Nothing is
    // dereferenced.
    unsafe {
        h::bpf_probe_read_kernel(
            (&mut address as *mut u64).cast(),
            8,
            (&sk as *const *mut T).cast::<c_void>(),
        );
    }
    address
}
