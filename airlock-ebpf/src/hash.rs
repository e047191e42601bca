//! Hashing words for the walk, in BPF global functions: the verifier checks
//! each once, for any arguments, instead of once per call site and path.

use airlock_common::kernel::{basename_start, siphash13, HashKey, WordInfo, WORD_BUF};

/// A fixed-size byte buffer, so that a pointer to it has a size the
/// verifier knows when it checks a global function on its own.
#[repr(C)]
pub struct Word {
    bytes: [u8; WORD_BUF],
}

/// Keyed hash of `word[start..len]`.
///
/// # Safety
/// `word` is null or points to a readable `Word`.
#[no_mangle]
#[inline(never)]
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

/// Where the basename of `word[..len]` starts.
///
/// # Safety
/// As for `airlock_hash`.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn airlock_basename(word: *const Word, len: u64) -> u64 {
    // SAFETY: as in `airlock_hash`.
    let Some(word) = (unsafe { word.as_ref() }) else {
        return 0;
    };
    let bytes = &word.bytes;
    basename_start(len as usize & (WORD_BUF - 1), |i| bytes[i & (WORD_BUF - 1)]) as u64
}

/// Where the basename of `buf[..len]` starts.
#[inline(always)]
pub fn basename_of(buf: &[u8; WORD_BUF], len: usize) -> usize {
    // SAFETY: `buf` is a readable WORD_BUF-byte buffer, the layout of `Word`.
    unsafe { airlock_basename((buf as *const [u8; WORD_BUF]).cast(), len as u64) as usize }
}

/// Keyed hash of `buf[start..len]`.
#[inline(always)]
pub fn hash_buf(key: &HashKey, buf: &[u8; WORD_BUF], start: usize, len: usize) -> u64 {
    // SAFETY: as in `basename_of`.
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

/// `WordInfo::describe` of `word[..len]` (of what was seen, when the word
/// was too long to read whole) into `out`.
///
/// # Safety
/// `word` is null or points to a readable `Word`; `out` is null or points
/// to a `WordInfo` no one else uses meanwhile.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn airlock_describe(
    word: *const Word,
    len: u64,
    too_long: u64,
    out: *mut WordInfo,
) -> u64 {
    // SAFETY: the caller passes null or valid pointers (and the verifier
    // checks every caller's arguments against the sizes of the types).
    let (Some(word), Some(out)) = (unsafe { word.as_ref() }, unsafe { out.as_mut() }) else {
        return 0;
    };
    let bytes = &word.bytes;
    out.describe(len as usize & (WORD_BUF - 1), too_long != 0, |i| {
        bytes[i & (WORD_BUF - 1)]
    });
    0
}

/// Describes `buf[..len]` into `out`.
#[inline(always)]
pub fn describe_buf(buf: &[u8; WORD_BUF], len: usize, too_long: bool, out: &mut WordInfo) {
    // SAFETY: `buf` is a readable WORD_BUF-byte buffer, the layout of
    // `Word`; `out` is an exclusive reference.
    unsafe {
        airlock_describe(
            (buf as *const [u8; WORD_BUF]).cast(),
            len as u64,
            too_long as u64,
            out,
        )
    };
}
