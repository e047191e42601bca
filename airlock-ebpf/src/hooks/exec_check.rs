//! `lsm/bprm_check_security`: judges the file the kernel is about to run
//! with the arguments the caller passed, and refuses with EPERM.

use core::ffi::c_void;

use airlock_common::kernel::{
    ACTION_ALLOW, ACTION_BLOCK, EVENT_GRANT_USED, NO_RULE, OUTCOME_ALLOWED, OUTCOME_REFUSED,
    STAGE_EXEC_CHECK,
};
use aya_ebpf::helpers::generated as h;
use aya_ebpf::macros::lsm;
use aya_ebpf::programs::LsmContext;

use super::EPERM;
use crate::maps::{config, scratch, OFFSETS};
use crate::report::{denial_kind, report, Report};
use crate::task::{current_session, kread, now_ns, uread_u64, Source};
use crate::walk::judge;

/// x86_64 syscall numbers and `struct pt_regs` slots (stable ABI).
const NR_EXECVE: u64 = 59;
const NR_EXECVEAT: u64 = 322;
const REGS_DX: usize = 12 * 8;
const REGS_SI: usize = 13 * 8;
const REGS_ORIG_AX: usize = 15 * 8;

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let Some(session) = current_session() else {
        return 0;
    };
    let (Some(config), Some(s)) = (config(), scratch()) else {
        // Fail closed: a governed task is never let through unjudged.
        return -EPERM;
    };
    let off = OFFSETS.load();
    let bprm: u64 = ctx.arg::<*const c_void>(0) as u64;
    let argc: i32 = kread(bprm, off.binprm_argc);
    let argc = argc.max(0) as usize;

    // The caller's argv, if this bprm still matches it: not for a script's
    // interpreter (argv was rewritten) and only for execve/execveat.
    // SAFETY: helpers without pointer arguments but the current task's BTF
    // pointer, which bpf_get_current_task_btf returns.
    let regs = unsafe { h::bpf_task_pt_regs(h::bpf_get_current_task_btf()) } as u64;
    let nr: u64 = kread(regs, REGS_ORIG_AX as u32);
    let argv = match nr {
        NR_EXECVE => kread::<u64>(regs, REGS_SI as u32),
        NR_EXECVEAT => kread::<u64>(regs, REGS_DX as u32),
        _ => 0,
    };
    let consistent = argv != 0
        && argc > 0
        && uread_u64(argv + 8 * (argc as u64 - 1)) != 0
        && uread_u64(argv + 8 * argc as u64) == 0;
    let (source, argc_seen) = if consistent {
        (Source::UserArray(argv), argc)
    } else {
        (Source::None, 1)
    };
    let verdict = judge(s, config.key, &session, bprm, argc_seen, source);
    if verdict.permits() {
        if verdict.action != ACTION_ALLOW {
            let used = Report {
                kind: EVENT_GRANT_USED,
                stage: STAGE_EXEC_CHECK,
                outcome: OUTCOME_ALLOWED,
                session: &session,
                verdict: &verdict,
                hold: false,
            };
            report(&s.reader, used);
        }
        return 0;
    }
    // Without trustworthy arguments only a rule that blocks the executable
    // itself is certain; the exec-commit hook judges the rest.
    if !consistent && !(verdict.action == ACTION_BLOCK && verdict.rule != NO_RULE) {
        return 0;
    }
    let refused = Report {
        kind: denial_kind(&session, &verdict),
        stage: STAGE_EXEC_CHECK,
        outcome: OUTCOME_REFUSED,
        session: &session,
        verdict: &verdict,
        hold: config.holder_alive_until_ns > now_ns(),
    };
    report(&s.reader, refused);
    -EPERM
}
