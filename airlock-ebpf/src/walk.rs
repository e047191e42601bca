//! Judging an exec: the executable's heads and the command's words, read
//! here, then the shared walk (`Evaluation::judge` in airlock-common, the
//! function the property test checks against `airlockctl policy check`),
//! with its steps in BPF global functions.

use airlock_common::kernel::{
    Evaluation, HashKey, Node, NodeKey, Nodes, SessionInfo, Steps, Verdict, HEAD_ARGV0, MAX_WORDS,
};

use crate::identity::exec_heads;
use crate::maps::{Scratch, NODES, OFFSETS};
use crate::task::{now_ns, Args, Source};

/// The session tries in `AL_NODES`.
pub struct Trie;

impl Nodes for Trie {
    #[inline(always)]
    fn node(&self, key: &NodeKey) -> Option<Node> {
        // SAFETY: the value is copied out at once, before anything could
        // delete the entry; it is plain data.
        unsafe { NODES.get(key).copied() }
    }
}

impl Steps for Trie {
    #[inline(always)]
    fn step(&self, eval: &mut Evaluation, depth: usize) -> bool {
        // SAFETY: `eval` is a valid, exclusive reference.
        unsafe { airlock_step(eval, depth as u64) != 0 }
    }

    #[inline(always)]
    fn advance(&self, eval: &mut Evaluation, word: usize) -> bool {
        // SAFETY: as in `step`.
        unsafe { airlock_advance(eval, word as u64) != 0 }
    }
}

/// `Evaluation::step` over `AL_NODES`; returns 1 if any chain continues.
/// Global: verified once, not once per call site and path; the walk's
/// state stays in `eval`, part of the per-CPU scratch, a map value whose
/// contents the verifier does not track.
///
/// # Safety
/// `eval` is null or points to an `Evaluation` no one else uses meanwhile.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn airlock_step(eval: *mut Evaluation, depth: u64) -> u64 {
    // SAFETY: the caller passes null or an exclusive `Evaluation`.
    let Some(eval) = (unsafe { eval.as_mut() }) else {
        return 0;
    };
    eval.step(depth as usize & (MAX_WORDS - 1), &Trie) as u64
}

/// `Evaluation::advance`; returns 1 if word `i` was hashed and the chains
/// were extended by it. Global, as `airlock_step`.
///
/// # Safety
/// As for `airlock_step`.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn airlock_advance(eval: *mut Evaluation, i: u64) -> u64 {
    // SAFETY: as in `airlock_step`.
    let Some(eval) = (unsafe { eval.as_mut() }) else {
        return 0;
    };
    eval.advance(i as usize & (MAX_WORDS - 1)) as u64
}

/// Judges an exec of `argc` words, read from `source`.
#[inline(always)]
pub fn judge(
    s: &mut Scratch,
    key: HashKey,
    session: &SessionInfo,
    bprm: u64,
    argc: usize,
    source: Source,
) -> Verdict {
    let off = OFFSETS.load();
    let Scratch { reader, eval } = s;
    let mut args = Args {
        r: reader,
        key,
        source,
        argc,
    };
    if let Some(argv0) = args.read_word(0) {
        eval.set_head(HEAD_ARGV0, argv0);
    }
    exec_heads(args.r, eval, &key, &off, session, bprm);
    eval.judge(session, now_ns(), &mut args, &Trie)
}
