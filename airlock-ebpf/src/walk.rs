//! Judging an exec: the executable's heads and the command's words, read
//! here, then the shared walk (`Evaluation::judge` in airlock-common, the
//! function the property test checks against `airlockctl policy check`),
//! with its steps in BPF global functions.

use airlock_common::kernel::{
    Evaluation, HashKey, Node, NodeKey, Nodes, OptionKey, SessionInfo, Steps, Tool, ToolKey,
    Verdict, HEAD_ARGV0, HEAD_SLOTS, MAX_POSITIONS, MAX_WORDS,
};

use crate::identity::exec_heads;
use crate::maps::{Scratch, NODES, OFFSETS, OPTIONS, TOOLS};
use crate::task::{now_ns, Args, Source};

/// The session tries in `AL_NODES`, and the grammars in `AL_TOOLS` and
/// `AL_OPTIONS`.
pub struct Trie;

impl Nodes for Trie {
    #[inline(always)]
    fn node(&self, key: &NodeKey) -> Option<Node> {
        // SAFETY: the value is copied out at once, before anything could
        // delete the entry; it is plain data.
        unsafe { NODES.get(key).copied() }
    }

    #[inline(always)]
    fn tool(&self, key: &ToolKey) -> Option<Tool> {
        // SAFETY: as in `node`.
        unsafe { TOOLS.get(key).copied() }
    }

    #[inline(always)]
    fn takes_value(&self, key: &OptionKey) -> bool {
        // SAFETY: a presence test; the value is not read.
        unsafe { OPTIONS.get(key) }.is_some()
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

    #[inline(always)]
    fn start(&self, eval: &mut Evaluation, head: usize) {
        // SAFETY: as in `step`.
        unsafe { airlock_start(eval, head as u64) };
    }

    #[inline(always)]
    fn aware(&self, eval: &mut Evaluation) {
        // SAFETY: as in `step`.
        unsafe { airlock_aware(eval) };
    }

    #[inline(always)]
    fn classify(&self, eval: &mut Evaluation, head: usize) {
        // SAFETY: as in `step`.
        unsafe { airlock_classify(eval, head as u64) };
    }

    #[inline(always)]
    fn visit(&self, eval: &mut Evaluation, slot: usize) {
        // SAFETY: as in `step`.
        unsafe { airlock_visit(eval, slot as u64) };
    }

    #[inline(always)]
    fn settle(&self, eval: &mut Evaluation, born: usize) {
        // SAFETY: as in `step`.
        unsafe { airlock_settle(eval, born as u64) };
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

/// `Evaluation::aware_word`: the word just read, fed to every tool-aware
/// partial match. Global, as `airlock_step`; its parts are global too.
///
/// # Safety
/// As for `airlock_step`.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn airlock_aware(eval: *mut Evaluation) -> u64 {
    // SAFETY: as in `airlock_step`.
    let Some(eval) = (unsafe { eval.as_mut() }) else {
        return 0;
    };
    eval.aware_word(&Trie);
    0
}

/// `Evaluation::start_position`: a partial match at head `h`'s root.
///
/// # Safety
/// As for `airlock_step`.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn airlock_start(eval: *mut Evaluation, h: u64) -> u64 {
    // SAFETY: as in `airlock_step`.
    let Some(eval) = (unsafe { eval.as_mut() }) else {
        return 0;
    };
    eval.start_position(h as usize & (HEAD_SLOTS - 1), &Trie);
    0
}

/// `Evaluation::classify`: the word under head `h`'s grammar.
///
/// # Safety
/// As for `airlock_step`.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn airlock_classify(eval: *mut Evaluation, h: u64) -> u64 {
    // SAFETY: as in `airlock_step`.
    let Some(eval) = (unsafe { eval.as_mut() }) else {
        return 0;
    };
    eval.classify(h as usize & (HEAD_SLOTS - 1), &Trie);
    0
}

/// `Evaluation::visit`: partial match `s` sees the word.
///
/// # Safety
/// As for `airlock_step`.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn airlock_visit(eval: *mut Evaluation, s: u64) -> u64 {
    // SAFETY: as in `airlock_step`.
    let Some(eval) = (unsafe { eval.as_mut() }) else {
        return 0;
    };
    eval.visit(s as usize & (MAX_POSITIONS - 1), &Trie);
    0
}

/// `Evaluation::settle`: adds the partial match born `k`-th.
///
/// # Safety
/// As for `airlock_step`.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn airlock_settle(eval: *mut Evaluation, k: u64) -> u64 {
    // SAFETY: as in `airlock_step`.
    let Some(eval) = (unsafe { eval.as_mut() }) else {
        return 0;
    };
    eval.settle(k as usize & (MAX_POSITIONS - 1));
    0
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
    source.store(reader);
    let mut args = Args {
        r: reader,
        key,
        source,
        argc,
    };
    if let Some(argv0) = args.read_argv0() {
        eval.set_head(HEAD_ARGV0, argv0);
    }
    exec_heads(args.r, eval, &key, &off, session, bprm);
    eval.judge(session, now_ns(), &mut args, &Trie)
}
