//! `lsm/task_kill`: a governed task may not signal a process outside its
//! session (Landlock's signal scope does this on kernels that have it).

use core::ffi::c_void;

use airlock_common::kernel::{SessionInfo, EVENT_SIGNAL_DENIED, PEER_PROCESS, STAGE_SIGNAL};
use aya_ebpf::macros::lsm;
use aya_ebpf::programs::LsmContext;

use super::EPERM;
use crate::maps::{CGROUPS, OFFSETS, UIDS};
use crate::socket::{peer, report_peer};
use crate::task::{current_session, kread};

#[lsm(hook = "task_kill")]
pub fn task_kill(ctx: LsmContext) -> i32 {
    // (p, info, sig, cred, ret)
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        return previous;
    }
    let Some(session) = current_session() else {
        return 0;
    };
    let signal: i32 = ctx.arg(2);
    // Signal 0 only asks whether the process exists.
    if signal == 0 {
        return 0;
    }
    let target = ctx.arg::<*const c_void>(0) as u64;
    if task_session(target).is_some_and(|s| s.index == session.index) {
        return 0;
    }
    let off = OFFSETS.load();
    let mut refused = peer(0, PEER_PROCESS, signal as u16);
    refused.pid = kread::<i32>(target, off.task_tgid) as u32;
    report_peer(EVENT_SIGNAL_DENIED, STAGE_SIGNAL, &session, &refused);
    -EPERM
}

/// The session of a `task_struct`: by its cgroup (v2), or its uid for a
/// bound user, as for the current task.
#[inline(always)]
fn task_session(task: u64) -> Option<SessionInfo> {
    let off = OFFSETS.load();
    let css_set: u64 = kread(task, off.task_cgroups);
    let cgroup: u64 = kread(css_set, off.css_set_dfl_cgrp);
    let kn: u64 = kread(cgroup, off.cgroup_kn);
    let id: u64 = kread(kn, off.kernfs_node_id);
    // SAFETY: the value is copied out at once, before anything could delete
    // the entry; it is plain data.
    if let Some(session) = unsafe { CGROUPS.get(id) } {
        return Some(*session);
    }
    let cred: u64 = kread(task, off.task_real_cred);
    let uid: u32 = kread(cred, off.cred_uid);
    // SAFETY: as above.
    unsafe { UIDS.get(uid) }.copied()
}
