//! `lsm/ptrace_access_check` and `lsm/ptrace_traceme`: a governed task may
//! not debug (attach to, seize or read and write the memory of another
//! process: `ptrace`, `process_vm_readv`/`writev`, `/proc/PID/mem`,
//! `pidfd_getfd`) nor ask to be traced, unless its role allows debugging:
//! a debugger could change a program after its exec was judged.
//!
//! Only attaching counts (`PTRACE_MODE_ATTACH`): reading another process's
//! status (`ps`, `/proc/PID/environ`) stays possible.

use airlock_common::kernel::{
    Verdict, EVENT_DEBUG_DENIED, OUTCOME_REFUSED, SESSION_ALLOW_DEBUGGING, STAGE_PTRACE,
};
use aya_ebpf::macros::lsm;
use aya_ebpf::programs::LsmContext;

use super::EPERM;
use crate::maps::{config, scratch};
use crate::report::{report, Report};
use crate::task::{current_session, now_ns};

const PTRACE_MODE_ATTACH: u32 = 0x02;

/// Refuses for a governed task whose role does not allow debugging.
#[inline(always)]
fn refuse_debugging() -> i32 {
    let Some(session) = current_session() else {
        return 0;
    };
    if session.flags & SESSION_ALLOW_DEBUGGING != 0 {
        return 0;
    }
    if let (Some(config), Some(s)) = (config(), scratch()) {
        // What was refused, in the event's file name.
        for (i, b) in b"ptrace\0".iter().enumerate() {
            s.reader.file[i] = *b;
        }
        let refused = Report {
            kind: EVENT_DEBUG_DENIED,
            stage: STAGE_PTRACE,
            outcome: OUTCOME_REFUSED,
            session: &session,
            verdict: &Verdict::REFUSED,
            hold: config.holder_alive_until_ns > now_ns(),
        };
        report(&s.reader, refused);
    }
    -EPERM
}

#[lsm(hook = "ptrace_access_check")]
pub fn ptrace_access_check(ctx: LsmContext) -> i32 {
    // (struct task_struct *child, unsigned int mode, int ret)
    let previous: i32 = ctx.arg(2);
    if previous != 0 {
        return previous;
    }
    let mode: u32 = ctx.arg(1);
    if mode & PTRACE_MODE_ATTACH == 0 {
        return 0;
    }
    refuse_debugging()
}

#[lsm(hook = "ptrace_traceme")]
pub fn ptrace_traceme(ctx: LsmContext) -> i32 {
    // (struct task_struct *parent, int ret)
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    refuse_debugging()
}
