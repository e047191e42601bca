//! Reporting to the enforcer through the ring buffer.

use airlock_common::kernel::{
    ExecEvent, SessionInfo, Verdict, ACTION_BLOCK, EVENT_APPROVAL_REQUIRED, EVENT_BLOCKED,
    EVENT_NAME_LEN, EVENT_SESSION_REVOKED, EVENT_WORDS, EVENT_WORD_LEN, SESSION_REVOKED, SIGSTOP,
};
use aya_ebpf::helpers::generated as h;

use crate::maps::{Reader, EVENTS, OFFSETS, STATS};
use crate::task::{current_task, current_uid, kread, now_ns};

/// What is reported, besides the task and the words read.
pub struct Report<'a> {
    pub kind: u32,
    pub stage: u32,
    pub outcome: u32,
    pub session: &'a SessionInfo,
    pub verdict: &'a Verdict,
    /// Stop the task (SIGSTOP) for the enforcer to write its message.
    pub hold: bool,
}

/// Reports through the ring buffer; returns whether the record was queued.
#[inline(always)]
pub fn report(r: &Reader, what: Report) -> bool {
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        if let Some(lost) = STATS.get_ptr_mut(0) {
            // SAFETY: `lost` points to this CPU's entry of a per-CPU array,
            // valid for the program's run; a plain counter.
            unsafe { *lost += 1 };
        }
        return false;
    };
    let event = entry.as_mut_ptr();
    let off = OFFSETS.load();
    let parent: u64 = kread(current_task(), off.task_real_parent);
    // SAFETY: `event` points to a reserved record of the right size and
    // alignment, ours until it is submitted; every field is written before
    // that. The helpers write at most the sizes given into its arrays, and
    // read the reader's buffers, which hold at least as many bytes.
    unsafe {
        let pid_tgid = h::bpf_get_current_pid_tgid();
        (*event).kind = what.kind;
        (*event).stage = what.stage;
        (*event).outcome = what.outcome;
        (*event).session = what.session.index;
        (*event).rule = what.verdict.rule;
        (*event).pid = pid_tgid as u32;
        (*event).tgid = (pid_tgid >> 32) as u32;
        (*event).ppid = kread::<i32>(parent, off.task_tgid) as u32;
        (*event).uid = current_uid();
        (*event).action = what.verdict.action as u32;
        (*event).held = what.hold as u32;
        (*event).nwords = r.read.count_ones();
        (*event).time_ns = now_ns();
        h::bpf_get_current_comm((*event).comm.as_mut_ptr().cast(), 16);
        h::bpf_probe_read_kernel(
            (*event).file.as_mut_ptr().cast(),
            EVENT_NAME_LEN as u32,
            r.file.as_ptr().cast(),
        );
        h::bpf_probe_read_kernel(
            (*event).words.as_mut_ptr().cast(),
            (EVENT_WORDS * EVENT_WORD_LEN) as u32,
            r.words.as_ptr().cast(),
        );
    }
    if what.hold {
        // SAFETY: a helper taking a signal number. It signals the current
        // task, which is about to return from a failed execve: it stops
        // before running another instruction and the enforcer continues it
        // once its message is written.
        unsafe { h::bpf_send_signal(SIGSTOP) };
    }
    entry.submit(0);
    true
}

/// The event kind of a refusal.
pub fn denial_kind(session: &SessionInfo, verdict: &Verdict) -> u32 {
    if session.flags & SESSION_REVOKED != 0 {
        EVENT_SESSION_REVOKED
    } else if verdict.action == ACTION_BLOCK {
        EVENT_BLOCKED
    } else {
        EVENT_APPROVAL_REQUIRED
    }
}
