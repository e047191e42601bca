//! Reading the current task, kernel objects and the command's arguments.

use core::ffi::c_void;

use airlock_common::kernel::{
    Command, HashKey, SessionInfo, EVENT_WORDS, EVENT_WORD_LEN, MAX_WORDS, MAX_WORD_LEN, WORD_BUF,
};
use aya_ebpf::helpers::generated as h;

use crate::hash::{basename_of, hash_buf};
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

/// Reads a NUL-terminated string into `buf`; returns its length without the
/// NUL, or `None` when it does not fit (longer than MAX_WORD_LEN) or faults.
#[inline(always)]
pub fn read_str(buf: &mut [u8; WORD_BUF], addr: u64, user: bool) -> Option<usize> {
    // SAFETY: the helpers check the source address and write at most
    // WORD_BUF bytes into `buf`, which has exactly that many.
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

    /// Reads and hashes word `i` (0 is argv[0], hashed from its basename).
    #[inline(always)]
    pub fn read_word(&mut self, i: usize) -> Option<u64> {
        if i >= MAX_WORDS {
            return None;
        }
        let addr = self.address(i)?;
        self.r.read |= 1u32 << i;
        if i < EVENT_WORDS {
            read_prefix::<EVENT_WORD_LEN>(&mut self.r.words[i & (EVENT_WORDS - 1)], addr, true);
        }
        let len = read_str(&mut self.r.word, addr, true);
        if let Source::UserStrings { .. } = self.source {
            // The next word starts after this one's NUL; a word too long to
            // read ends the walk (it can equal no rule word anyway).
            let len = len?;
            self.r.pos = addr + len as u64 + 1;
            self.r.nread += 1;
        }
        let len = len?;
        let start = if i == 0 {
            basename_of(&self.r.word, len)
        } else {
            0
        };
        Some(hash_buf(&self.key, &self.r.word, start, len))
    }
}

impl Command for Args<'_> {
    #[inline(always)]
    fn argc(&self) -> usize {
        self.argc
    }

    #[inline(always)]
    fn word_hash(&mut self, i: usize) -> Option<u64> {
        self.read_word(i)
    }
}
