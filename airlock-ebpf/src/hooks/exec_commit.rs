//! `tp_btf/sched_process_exec`: after the exec committed, with the new
//! image's own argv, judges again and kills the task before its first
//! instruction if policy forbids it. Without BPF LSM this is the only
//! enforcement (degraded mode).

use core::ffi::c_void;

use airlock_common::kernel::{
    ACTION_ALLOW, CONFIG_LSM_ACTIVE, EVENT_GRANT_USED, OUTCOME_ALLOWED, OUTCOME_KILLED, SIGKILL,
    STAGE_EXEC_COMMIT,
};
use aya_ebpf::helpers::generated as h;
use aya_ebpf::macros::btf_tracepoint;
use aya_ebpf::programs::BtfTracePointContext;

use crate::maps::{config, scratch, OFFSETS};
use crate::report::{denial_kind, report, Report};
use crate::task::{current_session, current_task, kread, Source};
use crate::walk::judge;

/// Kills the current task: the new image dies before its first instruction.
#[inline(always)]
fn kill_current() {
    // SAFETY: a helper taking a signal number; it signals the current task.
    unsafe { h::bpf_send_signal(SIGKILL) };
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> u32 {
    let Some(session) = current_session() else {
        return 0;
    };
    let Some(s) = scratch() else {
        // The task must not run unjudged.
        kill_current();
        return 0;
    };
    let Some(config) = config() else {
        kill_current();
        return 0;
    };
    let off = OFFSETS.load();
    // BTF arguments of sched_process_exec(p, old_pid, bprm).
    let bprm: u64 = ctx.arg::<*const c_void>(2) as u64;
    let mm: u64 = kread(current_task(), off.task_mm);
    let start: u64 = kread(mm, off.mm_arg_start);
    let end: u64 = kread(mm, off.mm_arg_end);
    let argc: i32 = kread(bprm, off.binprm_argc);
    s.reader.pos = start;
    let verdict = judge(
        s,
        config.key,
        &session,
        bprm,
        argc.max(0) as usize,
        Source::UserStrings { end },
    );
    let lsm_active = config.flags & CONFIG_LSM_ACTIVE != 0;
    if verdict.permits() {
        if !lsm_active && verdict.action != ACTION_ALLOW {
            let used = Report {
                kind: EVENT_GRANT_USED,
                stage: STAGE_EXEC_COMMIT,
                outcome: OUTCOME_ALLOWED,
                session: &session,
                verdict: &verdict,
                hold: false,
            };
            report(&s.reader, used);
        }
        return 0;
    }
    kill_current();
    let killed = Report {
        kind: denial_kind(&session, &verdict),
        stage: STAGE_EXEC_COMMIT,
        outcome: OUTCOME_KILLED,
        session: &session,
        verdict: &verdict,
        hold: false,
    };
    report(&s.reader, killed);
    0
}
