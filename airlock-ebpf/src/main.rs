//! Airlock's kernel side.
//!
//! Programs, all scoped to governed sessions (a cgroup, or a uid bound to a
//! session); every other task returns at the first map lookup:
//!
//! - `lsm/bprm_check_security`: judges the file the kernel is about to run
//!   (its name, inode and content, not `argv[0]` alone) with the arguments
//!   the caller passed, and refuses with EPERM. When the arguments cannot be
//!   trusted to be the ones the new image will get (a script interpreter, a
//!   racing thread), only decisions that do not depend on them are taken here.
//! - `tp_btf/sched_process_exec`: after the exec committed, with the new
//!   image's own argv, judges again and kills the task before its first
//!   instruction if policy forbids it. Without BPF LSM this is the only
//!   enforcement (degraded mode).
//! - `lsm/mmap_file`: refuses executable mappings of a governed binary outside
//!   its own exec (the dynamic loader run by hand).
//! - `lsm/file_open`: refuses governed tasks writing to cgroup files, so that
//!   no task (root included) moves itself out of its session.
//!
//! Kernel struct members are read at offsets the loader resolved from the
//! running kernel's BTF (`OFFSETS`), so one object runs on many kernels.

#![no_std]
#![no_main]

use core::ffi::c_void;

use airlock_common::kernel::{
    basename_start, siphash13, Aliases, Config, ExecEvent, HashKey, IdentKey, KernelOffsets, Node,
    NodeKey, Nodes, SessionInfo, Verdict, Walk, ACTION_BLOCK, BINPRM_BUF, CONFIG_LSM_ACTIVE,
    EVENT_APPROVAL_REQUIRED, EVENT_BLOCKED, EVENT_CGROUP_WRITE_DENIED, EVENT_GRANT_USED,
    EVENT_MMAP_DENIED, EVENT_NAME_LEN, EVENT_SESSION_REVOKED, EVENT_WORDS, EVENT_WORD_LEN,
    HEAD_ARGV0, HEAD_CONTENT_ALIASES, HEAD_FILE_NAME, HEAD_INODE_ALIASES, HEAD_INVOKED_AS,
    IDENT_CONTENT, IDENT_INODE, MAX_ALIASES, MAX_HEADS, MAX_WORDS, MAX_WORD_LEN, NO_RULE,
    OUTCOME_ALLOWED, OUTCOME_KILLED, OUTCOME_REFUSED, SESSION_REVOKED, SIGKILL, SIGSTOP,
    STAGE_EXEC_CHECK, STAGE_EXEC_COMMIT, STAGE_FILE_OPEN, STAGE_MMAP, WORD_BUF,
};
use aya_ebpf::bindings::BPF_F_NO_PREALLOC;
use aya_ebpf::helpers::generated as h;
use aya_ebpf::macros::{btf_tracepoint, lsm, map};
use aya_ebpf::maps::{Array, HashMap, PerCpuArray, RingBuf};
use aya_ebpf::programs::{BtfTracePointContext, LsmContext};
use aya_ebpf::Global;

const EPERM: i32 = 1;
/// The verdict of a refusal no rule made (revoked session, loader, cgroup).
const REFUSED: Verdict = Verdict {
    action: ACTION_BLOCK,
    rule: NO_RULE,
    granted: false,
};
const PROT_EXEC: u64 = 4;
const FMODE_WRITE: u32 = 2;
const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
/// x86_64 syscall numbers and `struct pt_regs` slots (stable ABI).
const NR_EXECVE: u64 = 59;
const NR_EXECVEAT: u64 = 322;
const REGS_DX: usize = 12 * 8;
const REGS_SI: usize = 13 * 8;
const REGS_ORIG_AX: usize = 15 * 8;

#[no_mangle]
static OFFSETS: Global<KernelOffsets> = Global::new(unsafe { core::mem::zeroed() });

#[map(name = "AL_CONFIG")]
static CONFIG: Array<Config> = Array::pinned(1, 0);
#[map(name = "AL_CGROUPS")]
static CGROUPS: HashMap<u64, SessionInfo> = HashMap::pinned(4096, 0);
#[map(name = "AL_UIDS")]
static UIDS: HashMap<u32, SessionInfo> = HashMap::pinned(1024, 0);
#[map(name = "AL_NODES")]
static NODES: HashMap<NodeKey, Node> = HashMap::pinned(1 << 18, BPF_F_NO_PREALLOC);
#[map(name = "AL_IDENTS")]
static IDENTS: HashMap<IdentKey, Aliases> = HashMap::pinned(1 << 14, BPF_F_NO_PREALLOC);
#[map(name = "AL_EVENTS")]
static EVENTS: RingBuf = RingBuf::pinned(1 << 20, 0);
/// Per-CPU counters: [0] events lost because the ring buffer was full.
#[map(name = "AL_STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::pinned(4, 0);
#[map(name = "AL_SCRATCH")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Working memory (the BPF stack is 512 bytes).
#[repr(C)]
pub struct Scratch {
    word: [u8; WORD_BUF],
    binprm: [u8; BINPRM_BUF],
    /// The first bytes of each word read, for the event.
    words: [[u8; EVENT_WORD_LEN]; EVENT_WORDS],
    file: [u8; EVENT_NAME_LEN],
    heads: [u64; MAX_HEADS],
    hashes: [u64; MAX_WORDS],
    /// Bit i: word i was read; `hashed`: and it can match a rule word.
    read: u32,
    hashed: u32,
    /// Words read so far, for sequential sources.
    nread: u32,
    _pad: u32,
    /// Next word's address, for sequential sources.
    pos: u64,
    /// Inputs and state of the walk.
    session: SessionInfo,
    now: u64,
    walk: Walk,
}

struct Trie;

impl Nodes for Trie {
    #[inline(always)]
    fn node(&self, key: &NodeKey) -> Option<Node> {
        // SAFETY: the value is copied out at once; the map holds plain data.
        unsafe { NODES.get(key).copied() }
    }
}

/// Reads a value at `base + offset` of a kernel object, zero when it faults.
#[inline(always)]
fn kread<T: Copy + Default>(base: u64, offset: u32) -> T {
    let mut value = T::default();
    // SAFETY: bpf_probe_read_kernel checks the source address and writes at
    // most size_of::<T>() bytes into `value`.
    unsafe {
        h::bpf_probe_read_kernel(
            (&mut value as *mut T).cast(),
            core::mem::size_of::<T>() as u32,
            (base + offset as u64) as *const c_void,
        );
    }
    value
}

#[inline(always)]
fn uread_u64(addr: u64) -> u64 {
    let mut value = 0u64;
    // SAFETY: as for `kread`, from user memory of the current task.
    unsafe {
        h::bpf_probe_read_user((&mut value as *mut u64).cast(), 8, addr as *const c_void);
    }
    value
}

#[inline(always)]
fn scratch() -> Option<&'static mut Scratch> {
    // SAFETY: per-CPU storage; BPF programs are not preempted on a CPU while
    // they run, so nothing else uses this entry meanwhile.
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn config() -> Option<Config> {
    CONFIG.get(0).copied()
}

/// The session of the current task, if it is governed.
#[inline(always)]
fn current_session() -> Option<SessionInfo> {
    // SAFETY: helpers without pointer arguments.
    let cgroup = unsafe { h::bpf_get_current_cgroup_id() };
    // SAFETY: values are copied out at once.
    if let Some(session) = unsafe { CGROUPS.get(cgroup) } {
        return Some(*session);
    }
    let uid = unsafe { h::bpf_get_current_uid_gid() } as u32;
    unsafe { UIDS.get(uid) }.copied()
}

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: no arguments.
    unsafe { h::bpf_ktime_get_boot_ns() }
}

/// Reads a NUL-terminated string into `buf`; returns its length without the
/// NUL, or `None` when it does not fit (longer than MAX_WORD_LEN) or faults.
#[inline(always)]
fn read_str(buf: &mut [u8; WORD_BUF], addr: u64, user: bool) -> Option<usize> {
    // SAFETY: the helpers write at most WORD_BUF bytes into `buf`.
    let n = unsafe {
        if user {
            h::bpf_probe_read_user_str(buf.as_mut_ptr().cast(), WORD_BUF as u32, addr as _)
        } else {
            h::bpf_probe_read_kernel_str(buf.as_mut_ptr().cast(), WORD_BUF as u32, addr as _)
        }
    };
    if n <= 0 || n as usize > MAX_WORD_LEN + 1 {
        return None;
    }
    Some(n as usize - 1)
}

/// A fixed-size byte buffer, so that a pointer to it has a size the
/// verifier knows when it checks `airlock_hash` on its own.
#[repr(C)]
pub struct Word {
    bytes: [u8; WORD_BUF],
}

/// Keyed hash of `word[start..len]`. A global function: the verifier checks
/// it once, for any arguments, instead of once per call on every path,
/// which keeps the programs far below the verifier's instruction budget.
#[no_mangle]
#[inline(never)]
///
/// # Safety
/// `word` is null or points to a readable `Word`.
pub unsafe extern "C" fn airlock_hash(
    word: *const Word,
    start: u64,
    len: u64,
    k0: u64,
    k1: u64,
) -> u64 {
    // SAFETY: the caller passes null or a valid `Word` (and the verifier
    // checks every caller's argument against the size of `Word`).
    let Some(word) = (unsafe { word.as_ref() }) else {
        return 0;
    };
    let bytes = &word.bytes;
    let key = HashKey { k0, k1 };
    siphash13(
        &key,
        start as usize & (WORD_BUF - 1),
        len as usize & (2 * WORD_BUF - 1),
        |i| bytes[i & (WORD_BUF - 1)],
    )
}

/// Where the basename of `word[..len]` starts; global, as `airlock_hash`.
#[no_mangle]
#[inline(never)]
///
/// # Safety
/// As for `airlock_hash`.
pub unsafe extern "C" fn airlock_basename(word: *const Word, len: u64) -> u64 {
    // SAFETY: as in `airlock_hash`.
    let Some(word) = (unsafe { word.as_ref() }) else {
        return 0;
    };
    let bytes = &word.bytes;
    basename_start(len as usize & (WORD_BUF - 1), |i| bytes[i & (WORD_BUF - 1)]) as u64
}

#[inline(always)]
fn basename_of(buf: &[u8; WORD_BUF], len: usize) -> usize {
    // SAFETY: `buf` is a valid WORD_BUF-byte buffer.
    unsafe { airlock_basename((buf as *const [u8; WORD_BUF]).cast(), len as u64) as usize }
}

/// One depth of the walk for every head (see `Walk::step`); returns 1 if
/// any chain continues. Global: verified once, not once per call site and
/// path; the walk's state stays in `s`, a map value the verifier does not
/// track.
#[no_mangle]
#[inline(never)]
///
/// # Safety
/// `s` is null or points to a `Scratch` no one else uses meanwhile.
pub unsafe extern "C" fn airlock_step(s: *mut Scratch, depth: u64) -> u64 {
    // SAFETY: the caller passes null or its per-CPU scratch.
    let Some(s) = (unsafe { s.as_mut() }) else {
        return 0;
    };
    let (session, now) = (s.session.index, s.now);
    s.walk
        .step(session, depth as usize & (MAX_WORDS - 1), &Trie, now) as u64
}

/// Extends the walk's chains by word `i`'s hash; global, as `airlock_step`.
#[no_mangle]
#[inline(never)]
///
/// # Safety
/// As for `airlock_step`.
pub unsafe extern "C" fn airlock_advance(s: *mut Scratch, i: u64) -> u64 {
    // SAFETY: as in `airlock_step`.
    let Some(s) = (unsafe { s.as_mut() }) else {
        return 0;
    };
    let i = i as usize & (MAX_WORDS - 1);
    if s.hashed & (1u32 << i) == 0 {
        return 0;
    }
    let word = s.hashes[i];
    s.walk.advance(word);
    1
}

#[inline(always)]
fn hash_buf(key: &HashKey, buf: &[u8; WORD_BUF], start: usize, len: usize) -> u64 {
    // SAFETY: `buf` is a valid WORD_BUF-byte buffer.
    unsafe {
        airlock_hash(
            (buf as *const [u8; WORD_BUF]).cast(),
            start as u64,
            len as u64,
            key.k0,
            key.k1,
        )
    }
}

/// Keeps the first bytes of word `i` for the event.
#[inline(always)]
fn keep_word(s: &mut Scratch, i: usize, addr: u64, user: bool) {
    if i < EVENT_WORDS {
        let slot = &mut s.words[i & (EVENT_WORDS - 1)];
        // SAFETY: writes at most EVENT_WORD_LEN bytes into the slot.
        unsafe {
            if user {
                h::bpf_probe_read_user_str(
                    slot.as_mut_ptr().cast(),
                    EVENT_WORD_LEN as u32,
                    addr as _,
                );
            } else {
                h::bpf_probe_read_kernel_str(
                    slot.as_mut_ptr().cast(),
                    EVENT_WORD_LEN as u32,
                    addr as _,
                );
            }
        }
    }
}

/// Where a command's words come from.
#[derive(Clone, Copy)]
enum Source {
    /// The caller's argv array (user memory of the task calling execve).
    UserArray(u64),
    /// The new image's argv strings, back to back from `arg_start`.
    UserStrings { end: u64 },
    /// Unknown: only the executable can be judged.
    None,
}

/// Reads and hashes a command's words into the scratch.
struct Cmd<'a> {
    s: &'a mut Scratch,
    key: HashKey,
    source: Source,
}

impl Cmd<'_> {
    /// Address of word `i`, reading words in order for string sources.
    #[inline(always)]
    fn address(&mut self, i: usize) -> Option<u64> {
        match self.source {
            Source::UserArray(argv) => {
                let ptr = uread_u64(argv + 8 * i as u64);
                (ptr != 0).then_some(ptr)
            }
            Source::UserStrings { end } => {
                // Words are read strictly in order: `pos` is word `nread`.
                if i != self.s.nread as usize || self.s.pos >= end {
                    return None;
                }
                Some(self.s.pos)
            }
            Source::None => None,
        }
    }

    /// Reads and hashes word `i` (0 is argv[0], hashed from its basename).
    #[inline(always)]
    fn read_word(&mut self, i: usize) -> Option<u64> {
        if i >= MAX_WORDS {
            return None;
        }
        let bit = 1u32 << i;
        if self.s.read & bit != 0 {
            return (self.s.hashed & bit != 0).then(|| self.s.hashes[i & (MAX_WORDS - 1)]);
        }
        let addr = self.address(i)?;
        self.s.read |= bit;
        keep_word(self.s, i, addr, true);
        let len = read_str(&mut self.s.word, addr, true);
        if let Source::UserStrings { .. } = self.source {
            // The next word starts after this one's NUL; a word too long to
            // read ends the walk (it can equal no rule word anyway).
            let len = len?;
            self.s.pos = addr + len as u64 + 1;
            self.s.nread += 1;
        }
        let len = len?;
        let start = if i == 0 {
            basename_of(&self.s.word, len)
        } else {
            0
        };
        let hash = hash_buf(&self.key, &self.s.word, start, len);
        self.s.hashes[i & (MAX_WORDS - 1)] = hash;
        self.s.hashed |= bit;
        Some(hash)
    }
}

/// Fills the head slots from `first` with the heads an identity stands for;
/// returns their validity bits.
#[inline(always)]
fn add_aliases(s: &mut Scratch, first: usize, key: &IdentKey) -> u32 {
    // SAFETY: copied out at once.
    let Some(aliases) = (unsafe { IDENTS.get(key) }).copied() else {
        return 0;
    };
    let mut valid = 0;
    for i in 0..MAX_ALIASES {
        s.heads[(first + i) % MAX_HEADS] = aliases.heads[i];
        // Branch-free `i < count`, as everywhere the verifier walks.
        let present = ((i as i64 - aliases.count as i64) >> 63) as u32 & 1;
        valid |= present << (first + i);
    }
    valid
}

/// Identity of a `struct file`: (device, inode) and size.
#[inline(always)]
fn file_identity(off: &KernelOffsets, file: u64) -> (u64, u64, u64) {
    let inode: u64 = kread(file, off.file_inode);
    let ino: u64 = kread(inode, off.inode_ino);
    let sb: u64 = kread(inode, off.inode_sb);
    let dev: u32 = kread(sb, off.sb_dev);
    let size: i64 = kread(inode, off.inode_size);
    (dev as u64, ino, size as u64)
}

/// Name of a `struct file`'s dentry into `s.word`; returns its hash.
#[inline(always)]
fn file_name_hash(s: &mut Scratch, key: &HashKey, off: &KernelOffsets, file: u64) -> Option<u64> {
    let dentry: u64 = kread(file, off.file_dentry);
    let name: u64 = kread(dentry, off.dentry_name);
    // SAFETY: writes at most EVENT_NAME_LEN bytes into the slot.
    unsafe {
        h::bpf_probe_read_kernel_str(s.file.as_mut_ptr().cast(), EVENT_NAME_LEN as u32, name as _);
    }
    let len = read_str(&mut s.word, name, false)?;
    Some(hash_buf(key, &s.word, 0, len))
}

/// Fills the head slots of the executable of `bprm` other than argv[0]'s:
/// the real file's name, the name it was invoked by, and the aliases of its
/// inode and its content. Returns their validity bits.
#[inline(always)]
fn exec_heads(
    s: &mut Scratch,
    key: &HashKey,
    off: &KernelOffsets,
    session: &SessionInfo,
    bprm: u64,
) -> u32 {
    let mut valid = 0;
    let file: u64 = kread(bprm, off.binprm_file);
    if let Some(hash) = file_name_hash(s, key, off, file) {
        s.heads[HEAD_FILE_NAME] = hash;
        valid |= 1 << HEAD_FILE_NAME;
    }
    // The path it was invoked by (the script's, for an interpreter).
    let filename: u64 = kread(bprm, off.binprm_filename);
    if let Some(len) = read_str(&mut s.word, filename, false) {
        let start = basename_of(&s.word, len);
        s.heads[HEAD_INVOKED_AS] = hash_buf(key, &s.word, start, len);
        valid |= 1 << HEAD_INVOKED_AS;
    }
    let (dev, ino, size) = file_identity(off, file);
    let by_inode = IdentKey {
        session: session.index,
        kind: IDENT_INODE,
        a: dev,
        b: ino,
    };
    valid |= add_aliases(s, HEAD_INODE_ALIASES, &by_inode);
    // SAFETY: copies BINPRM_BUF bytes of bprm->buf into scratch.
    unsafe {
        h::bpf_probe_read_kernel(
            s.binprm.as_mut_ptr().cast(),
            BINPRM_BUF as u32,
            (bprm + off.binprm_buf as u64) as *const c_void,
        );
    }
    let content = hash_buf(key, &s.binprm, 0, BINPRM_BUF);
    let by_content = IdentKey {
        session: session.index,
        kind: IDENT_CONTENT,
        a: size,
        b: content,
    };
    valid |= add_aliases(s, HEAD_CONTENT_ALIASES, &by_content);
    valid
}

#[inline(always)]
fn reset(s: &mut Scratch) {
    s.read = 0;
    s.hashed = 0;
    s.nread = 0;
    s.pos = 0;
    s.file[0] = 0;
    for i in 0..EVENT_WORDS {
        s.words[i][0] = 0;
    }
}

/// Reports through the ring buffer; returns whether the record was queued.
#[inline(always)]
fn report(
    s: &Scratch,
    kind: u32,
    stage: u32,
    outcome: u32,
    session: &SessionInfo,
    verdict: &Verdict,
    hold: bool,
) -> bool {
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        if let Some(lost) = STATS.get_ptr_mut(0) {
            // SAFETY: per-CPU counter.
            unsafe { *lost += 1 };
        }
        return false;
    };
    let event = entry.as_mut_ptr();
    let off = OFFSETS.load();
    // SAFETY: `event` points to a reserved record of the right size; every
    // field is written before it is submitted.
    unsafe {
        let pid_tgid = h::bpf_get_current_pid_tgid();
        let task = h::bpf_get_current_task();
        let parent: u64 = kread(task, off.task_real_parent);
        (*event).kind = kind;
        (*event).stage = stage;
        (*event).outcome = outcome;
        (*event).session = session.index;
        (*event).rule = verdict.rule;
        (*event).pid = pid_tgid as u32;
        (*event).tgid = (pid_tgid >> 32) as u32;
        (*event).ppid = kread::<i32>(parent, off.task_tgid) as u32;
        (*event).uid = h::bpf_get_current_uid_gid() as u32;
        (*event).action = verdict.action as u32;
        (*event).held = hold as u32;
        (*event).nwords = s.read.count_ones();
        (*event).time_ns = now_ns();
        h::bpf_get_current_comm((*event).comm.as_mut_ptr().cast(), 16);
        h::bpf_probe_read_kernel(
            (*event).file.as_mut_ptr().cast(),
            EVENT_NAME_LEN as u32,
            s.file.as_ptr().cast(),
        );
        h::bpf_probe_read_kernel(
            (*event).words.as_mut_ptr().cast(),
            (EVENT_WORDS * EVENT_WORD_LEN) as u32,
            s.words.as_ptr().cast(),
        );
    }
    if hold {
        // SAFETY: signals the current task, which is about to return from a
        // failed execve: it stops before running another instruction and
        // the enforcer continues it once its message is written.
        unsafe { h::bpf_send_signal(SIGSTOP) };
    }
    entry.submit(0);
    true
}

fn denial_kind(session: &SessionInfo, verdict: &Verdict) -> u32 {
    if session.flags & SESSION_REVOKED != 0 {
        EVENT_SESSION_REVOKED
    } else if verdict.action == ACTION_BLOCK {
        EVENT_BLOCKED
    } else {
        EVENT_APPROVAL_REQUIRED
    }
}

/// Judges an exec of `argc` words, read from `source`.
#[inline(always)]
fn judge(
    s: &mut Scratch,
    key: HashKey,
    session: &SessionInfo,
    bprm: u64,
    argc: usize,
    source: Source,
) -> Verdict {
    let off = OFFSETS.load();
    let mut cmd = Cmd { s, key, source };
    let mut valid = 0;
    if let Some(argv0) = cmd.read_word(0) {
        cmd.s.heads[HEAD_ARGV0] = argv0;
        valid |= 1 << HEAD_ARGV0;
    }
    valid |= exec_heads(cmd.s, &key, &off, session, bprm);
    let heads = cmd.s.heads;
    if session.flags & SESSION_REVOKED != 0 {
        return REFUSED;
    }
    // Fast path: an executable no rule names needs no argument read.
    let mut named = false;
    for (h, head) in heads.iter().enumerate() {
        if valid & (1 << h) == 0 {
            continue;
        }
        let key = NodeKey {
            session: session.index,
            depth: 0,
            hash: *head,
        };
        if Trie.node(&key).is_some() {
            named = true;
            break;
        }
    }
    if named {
        // Hash the arguments any rule can reach, in order, before walking:
        // one short loop keeps the verifier's work linear.
        let depth = (session.max_depth as usize).min(MAX_WORDS - 1);
        for i in 1..MAX_WORDS {
            if i > depth || i >= argc || cmd.read_word(i).is_none() {
                break;
            }
        }
    }
    let s = cmd.s;
    s.session = *session;
    s.now = now_ns();
    s.walk.start(&heads, valid);
    for depth in 0..MAX_WORDS {
        // SAFETY: `s` is this CPU's scratch, used by nothing else meanwhile.
        if unsafe { airlock_step(s, depth as u64) } == 0 || depth + 1 >= argc {
            break;
        }
        // SAFETY: as above.
        if unsafe { airlock_advance(s, depth as u64 + 1) } == 0 {
            break;
        }
    }
    s.walk.verdict(session.default_action)
}

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
    reset(s);
    let off = OFFSETS.load();
    let bprm: u64 = ctx.arg::<*const c_void>(0) as u64;
    let argc: i32 = kread(bprm, off.binprm_argc);
    let argc = argc.max(0) as usize;

    // The caller's argv, if this bprm still matches it: not for a script's
    // interpreter (argv was rewritten) and only for execve/execveat.
    // SAFETY: the helpers take the current task's BTF pointer.
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
        if verdict.action != airlock_common::kernel::ACTION_ALLOW {
            report(
                s,
                EVENT_GRANT_USED,
                STAGE_EXEC_CHECK,
                OUTCOME_ALLOWED,
                &session,
                &verdict,
                false,
            );
        }
        return 0;
    }
    // Without trustworthy arguments only a rule that blocks the executable
    // itself is certain; the exec-commit hook judges the rest.
    if !consistent && !(verdict.action == ACTION_BLOCK && verdict.rule != NO_RULE) {
        return 0;
    }
    let hold = config.holder_alive_until_ns > now_ns();
    report(
        s,
        denial_kind(&session, &verdict),
        STAGE_EXEC_CHECK,
        OUTCOME_REFUSED,
        &session,
        &verdict,
        hold,
    );
    -EPERM
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> u32 {
    let Some(session) = current_session() else {
        return 0;
    };
    let Some(s) = scratch() else {
        // SAFETY: kills the current task, which must not run unjudged.
        unsafe { h::bpf_send_signal(SIGKILL) };
        return 0;
    };
    let Some(config) = config() else {
        unsafe { h::bpf_send_signal(SIGKILL) };
        return 0;
    };
    reset(s);
    let off = OFFSETS.load();
    // SAFETY: BTF arguments of sched_process_exec(p, old_pid, bprm).
    let bprm: u64 = ctx.arg::<*const c_void>(2) as u64;
    let task = unsafe { h::bpf_get_current_task() };
    let mm: u64 = kread(task, off.task_mm);
    let start: u64 = kread(mm, off.mm_arg_start);
    let end: u64 = kread(mm, off.mm_arg_end);
    let argc: i32 = kread(bprm, off.binprm_argc);
    s.pos = start;
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
        if !lsm_active && verdict.action != airlock_common::kernel::ACTION_ALLOW {
            report(
                s,
                EVENT_GRANT_USED,
                STAGE_EXEC_COMMIT,
                OUTCOME_ALLOWED,
                &session,
                &verdict,
                false,
            );
        }
        return 0;
    }
    // SAFETY: SIGKILL to the current task: the new image dies before its
    // first instruction.
    unsafe { h::bpf_send_signal(SIGKILL) };
    report(
        s,
        denial_kind(&session, &verdict),
        STAGE_EXEC_COMMIT,
        OUTCOME_KILLED,
        &session,
        &verdict,
        false,
    );
    0
}

#[lsm(hook = "mmap_file")]
pub fn mmap_file(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        return previous;
    }
    let prot: u64 = ctx.arg(2);
    let file = ctx.arg::<*const c_void>(0) as u64;
    if prot & PROT_EXEC == 0 || file == 0 {
        return 0;
    }
    let Some(session) = current_session() else {
        return 0;
    };
    let (Some(config), Some(s)) = (config(), scratch()) else {
        return -EPERM;
    };
    reset(s);
    let off = OFFSETS.load();
    // The image's own mapping during its exec is judged by the exec hooks.
    let task = unsafe { h::bpf_get_current_task() };
    let mm: u64 = kread(task, off.task_mm);
    let exe: u64 = kread(mm, off.mm_exe_file);
    let inode: u64 = kread(file, off.file_inode);
    if exe != 0 && kread::<u64>(exe, off.file_inode) == inode {
        return 0;
    }
    let (dev, ino, _) = file_identity(&off, file);
    let key = IdentKey {
        session: session.index,
        kind: IDENT_INODE,
        a: dev,
        b: ino,
    };
    // A governed binary by inode, or by name. (Tested one after the other:
    // combining the two lookups lets LLVM OR two map pointers, which the
    // verifier refuses.)
    // SAFETY: presence test only.
    if unsafe { IDENTS.get(key) }.is_none() {
        let Some(hash) = file_name_hash(s, &config.key, &off, file) else {
            return 0;
        };
        let head = NodeKey {
            session: session.index,
            depth: 0,
            hash,
        };
        if Trie.node(&head).is_none() {
            return 0;
        }
    } else {
        file_name_hash(s, &config.key, &off, file);
    }
    report(
        s,
        EVENT_MMAP_DENIED,
        STAGE_MMAP,
        OUTCOME_REFUSED,
        &session,
        &REFUSED,
        false,
    );
    -EPERM
}

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let Some(session) = current_session() else {
        return 0;
    };
    let off = OFFSETS.load();
    let file = ctx.arg::<*const c_void>(0) as u64;
    let mode: u32 = kread(file, off.file_mode);
    if mode & FMODE_WRITE == 0 {
        return 0;
    }
    let inode: u64 = kread(file, off.file_inode);
    let sb: u64 = kread(inode, off.inode_sb);
    let magic: u64 = kread(sb, off.sb_magic);
    if magic != CGROUP2_SUPER_MAGIC && magic != CGROUP_SUPER_MAGIC {
        return 0;
    }
    if let (Some(config), Some(s)) = (config(), scratch()) {
        reset(s);
        file_name_hash(s, &config.key, &off, file);
        report(
            s,
            EVENT_CGROUP_WRITE_DENIED,
            STAGE_FILE_OPEN,
            OUTCOME_REFUSED,
            &session,
            &REFUSED,
            false,
        );
    }
    -EPERM
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any reachable loop; code is written so
    // that no panic path survives optimisation.
    unsafe { core::hint::unreachable_unchecked() }
}
