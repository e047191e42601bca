//! Reading the current task, kernel objects and the command's arguments.

use core::ffi::c_void;

use airlock_common::kernel::{
    Command, Evaluation, HashKey, SessionInfo, Steps, WordInfo, EVENT_WORDS, EVENT_WORD_LEN,
    MAX_WORDS, MAX_WORD_LEN, WORD_BUF, WORD_VISIBLE,
};
use aya_ebpf::helpers::generated as h;

use crate::hash::{basename_of, describe_buf, hash_buf, Word};
use crate::maps::{Reader, CGROUPS, UIDS};

/// Reads a value at `base + offset` of a kernel object, zero when it faults.
#[inline(always)]
pub fn kread<T: Copy + Default>(base: u64, offset: u32) -> T {
    let mut value = T::default();
    // SAFETY: bpf_probe_read_kernel checks the source address itself (a bad
    // one reads as an error, not a fault) and writes at most
    // size_of::<T>() bytes into `value`, a local of that size; T is plain
    // data the callers pick (integers), for which any bytes are valid.
    unsafe {
        h::bpf_probe_read_kernel(
            (&mut value as *mut T).cast(),
            core::mem::size_of::<T>() as u32,
            (base + offset as u64) as *const c_void,
        );
    }
    value
}

/// Reads a u64 at `addr` of the current task's user memory, zero when it
/// faults.
#[inline(always)]
pub fn uread_u64(addr: u64) -> u64 {
    let mut value = 0u64;
    // SAFETY: as for `kread`: the helper checks the user address and writes
    // at most 8 bytes into `value`.
    unsafe {
        h::bpf_probe_read_user((&mut value as *mut u64).cast(), 8, addr as *const c_void);
    }
    value
}

/// Reads a NUL-terminated string into `buf`; returns the helper's result:
/// the bytes copied with the NUL (WORD_BUF when the string did not fit),
/// or a negative error.
#[inline(always)]
fn read_str_raw(buf: &mut [u8; WORD_BUF], addr: u64, user: bool) -> i64 {
    // SAFETY: the helpers check the source address and write at most
    // WORD_BUF bytes into `buf`, which has exactly that many.
    unsafe {
        if user {
            h::bpf_probe_read_user_str(buf.as_mut_ptr().cast(), WORD_BUF as u32, addr as _)
        } else {
            h::bpf_probe_read_kernel_str(buf.as_mut_ptr().cast(), WORD_BUF as u32, addr as _)
        }
    }
}

/// Reads a NUL-terminated string into `buf`; returns its length without the
/// NUL, or `None` when it does not fit (longer than MAX_WORD_LEN) or faults.
#[inline(always)]
pub fn read_str(buf: &mut [u8; WORD_BUF], addr: u64, user: bool) -> Option<usize> {
    let n = read_str_raw(buf, addr, user);
    if n <= 0 || n as usize > MAX_WORD_LEN + 1 {
        return None;
    }
    Some(n as usize - 1)
}

/// Chunks of a too-long word `airlock_skip_str` reads at most: argv
/// strings are at most MAX_ARG_STRLEN (32 pages) long.
const SKIP_CHUNKS: u64 = 32 * 4096 / WORD_VISIBLE as u64 + 1;

/// The address just past the NUL of the user string at `addr`, read in
/// chunks through `scratch`; 0 when it faults or is longer than any argv
/// string can be. Global: verified once, as the hashing functions.
///
/// # Safety
/// `scratch` is null or points to a `Word` no one else uses meanwhile.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn airlock_skip_str(scratch: *mut Word, addr: u64) -> u64 {
    // SAFETY: the caller passes null or a valid, exclusive `Word`, which
    // has the layout of a WORD_BUF-byte buffer.
    let Some(buf) = (unsafe { (scratch as *mut [u8; WORD_BUF]).as_mut() }) else {
        return 0;
    };
    let mut at = addr;
    for _ in 0..SKIP_CHUNKS {
        let n = read_str_raw(buf, at, true);
        if n <= 0 {
            return 0;
        }
        if (n as usize) < WORD_BUF {
            return at + n as u64;
        }
        at += WORD_VISIBLE as u64;
    }
    0
}

/// Reads a NUL-terminated string's first bytes into `slot`, for an event
/// (truncated, never failing).
#[inline(always)]
pub fn read_prefix<const N: usize>(slot: &mut [u8; N], addr: u64, user: bool) {
    // SAFETY: the helpers check the source address and write at most N
    // bytes into `slot`, which has exactly that many.
    unsafe {
        if user {
            h::bpf_probe_read_user_str(slot.as_mut_ptr().cast(), N as u32, addr as _);
        } else {
            h::bpf_probe_read_kernel_str(slot.as_mut_ptr().cast(), N as u32, addr as _);
        }
    }
}

#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { h::bpf_ktime_get_boot_ns() }
}

/// The current task's `task_struct`, for reads with `kread`.
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { h::bpf_get_current_task() }
}

/// The current task's uid.
#[inline(always)]
pub fn current_uid() -> u32 {
    // SAFETY: a helper without arguments.
    unsafe { h::bpf_get_current_uid_gid() as u32 }
}

/// The session of the current task, if it is governed.
#[inline(always)]
pub fn current_session() -> Option<SessionInfo> {
    // SAFETY: a helper without arguments.
    let cgroup = unsafe { h::bpf_get_current_cgroup_id() };
    // SAFETY: the value is copied out at once, before anything could delete
    // the entry; it is plain data.
    if let Some(session) = unsafe { CGROUPS.get(cgroup) } {
        return Some(*session);
    }
    // SAFETY: as above.
    unsafe { UIDS.get(current_uid()) }.copied()
}

/// Where a command's words come from.
#[derive(Clone, Copy)]
pub enum Source {
    /// The caller's argv array (user memory of the task calling execve).
    UserArray(u64),
    /// The new image's argv strings, back to back from `arg_start` (the
    /// reader's `pos` starts there).
    UserStrings { end: u64 },
    /// Unknown: only the executable can be judged.
    None,
}

impl Source {
    /// Records the source in the reader (see `Reader::source`).
    #[inline(always)]
    pub fn store(self, r: &mut Reader) {
        let (kind, addr) = match self {
            Source::UserArray(argv) => (1, argv),
            Source::UserStrings { end } => (2, end),
            Source::None => (0, 0),
        };
        r.source = kind;
        r.source_addr = addr;
    }

    /// The source recorded in the reader.
    #[inline(always)]
    pub fn of(r: &Reader) -> Source {
        match r.source {
            1 => Source::UserArray(r.source_addr),
            2 => Source::UserStrings { end: r.source_addr },
            _ => Source::None,
        }
    }
}

/// Reads and hashes a command's words.
pub struct Args<'a> {
    pub r: &'a mut Reader,
    pub key: HashKey,
    pub source: Source,
    /// Words the walk may read (1 when the arguments cannot be trusted).
    pub argc: usize,
}

impl Args<'_> {
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
                if i != self.r.nread as usize || self.r.pos >= end {
                    return None;
                }
                Some(self.r.pos)
            }
            Source::None => None,
        }
    }

    /// Reads argv[0] and hashes its basename.
    #[inline(always)]
    pub fn read_argv0(&mut self) -> Option<u64> {
        let addr = self.address(0)?;
        self.r.read |= 1;
        read_prefix::<EVENT_WORD_LEN>(&mut self.r.words[0], addr, true);
        let n = read_str_raw(&mut self.r.word, addr, true);
        if let Source::UserStrings { .. } = self.source {
            self.r.pos = self.next_string(addr, n);
            self.r.nread = 1;
        }
        if n <= 0 || n as usize > MAX_WORD_LEN + 1 {
            return None;
        }
        let len = n as usize - 1;
        let start = basename_of(&self.r.word, len);
        Some(hash_buf(&self.key, &self.r.word, start, len))
    }

    /// Where the string after the one at `addr` starts, given the read of
    /// it (`n`, see `read_str_raw`); `end` (nothing more to read) when it
    /// cannot be found.
    #[inline(always)]
    fn next_string(&mut self, addr: u64, n: i64) -> u64 {
        let Source::UserStrings { end } = self.source else {
            return 0;
        };
        if n <= 0 {
            return end;
        }
        if (n as usize) < WORD_BUF {
            return addr + n as u64;
        }
        let scratch = (&mut self.r.word as *mut [u8; WORD_BUF]).cast::<Word>();
        // SAFETY: `scratch` is the reader's word buffer, exclusively ours;
        // the word in it has been described and hashed already.
        match unsafe { airlock_skip_str(scratch, addr + WORD_VISIBLE as u64) } {
            0 => end,
            next => next,
        }
    }

    /// Reads word `i` (`i >= 1`) into the reader's buffer and describes it
    /// into `info`; the caller hashes it.
    #[inline(always)]
    pub fn read_word(&mut self, i: usize, info: &mut WordInfo) -> bool {
        if i == 0 || i >= MAX_WORDS {
            return false;
        }
        let Some(addr) = self.address(i) else {
            return false;
        };
        self.r.read |= 1u32 << i;
        if i < EVENT_WORDS {
            read_prefix::<EVENT_WORD_LEN>(&mut self.r.words[i & (EVENT_WORDS - 1)], addr, true);
        }
        let n = read_str_raw(&mut self.r.word, addr, true);
        if n <= 0 {
            return false;
        }
        let too_long = n as usize > MAX_WORD_LEN + 1;
        let len = (n as usize - 1) & (WORD_BUF - 1);
        describe_buf(&self.r.word, len, too_long, info);
        // Hashed by the caller (`feed`), outside this function's frame.
        info.hashed = 0;
        info.hash = 0;
        if let Source::UserStrings { .. } = self.source {
            // The next word starts after this one's NUL, however long it is.
            self.r.pos = self.next_string(addr, n);
            self.r.nread += 1;
        }
        true
    }
}

impl Command for Args<'_> {
    #[inline(always)]
    fn argc(&self) -> usize {
        self.argc
    }

    #[inline(always)]
    fn read(&mut self, i: usize, word: &mut WordInfo) -> bool {
        self.read_word(i, word)
    }

    /// `Evaluation::feed` in three global functions, each checked once by
    /// the verifier rather than once per word: reading and describing the
    /// word, hashing it (not nested in the first: the combined stack of a
    /// call chain is limited to 512 bytes), and the tool-aware walk (in
    /// `take_word`).
    #[inline(always)]
    fn feed<S: Steps + ?Sized>(&mut self, eval: &mut Evaluation, i: usize, steps: &S) -> bool {
        // SAFETY: the reader and the word are the scratch's own parts,
        // exclusive references for the program's run.
        let read = unsafe { airlock_read(self.r, &mut eval.word, i as u64) } != 0;
        if read && eval.word.too_long == 0 {
            let len = eval.word.seen as usize;
            eval.word.hash = hash_buf(&self.key, &self.r.word, 0, len);
            eval.word.hashed = 1;
        }
        eval.take_word(read, i, steps)
    }
}

/// Reads word `i` of `reader`'s source into its buffer and describes it
/// into `word` (unhashed); 1 if it could be read. Global: the verifier
/// checks it once, not once per word.
///
/// # Safety
/// `reader` and `word` are null or point to a `Reader` and a `WordInfo` no
/// one else uses meanwhile.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn airlock_read(reader: *mut Reader, word: *mut WordInfo, i: u64) -> u64 {
    // SAFETY: the caller passes null or valid, exclusive pointers.
    let (Some(r), Some(word)) = (unsafe { reader.as_mut() }, unsafe { word.as_mut() }) else {
        return 0;
    };
    let source = Source::of(r);
    let mut args = Args {
        r,
        key: HashKey::default(),
        source,
        argc: MAX_WORDS,
    };
    args.read_word(i as usize & (MAX_WORDS - 1), word) as u64
}
