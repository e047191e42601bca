//! What the tool-aware walk needs to know of one argument word, computed
//! once when the word is read: its hash, whether it is written as an
//! option, and the bytes of a cluster of short options.
//!
//! The eBPF program computes it from the word's buffer in a BPF global
//! function, the property test from the argument string, both with
//! [`WordInfo::describe`].

use super::{hash_word, set, volatile, HashKey, MAX_WORD_LEN, WORD_BUF, WORD_VISIBLE};

/// An operand: anything not written as an option (`-` alone included).
pub const SHAPE_OPERAND: u8 = 0;
/// `--`, the end of options.
pub const SHAPE_END: u8 = 1;
/// `--name` or `--name=value`.
pub const SHAPE_LONG: u8 = 2;
/// `-x…`: a cluster of short options (GNU style), a single-dash long option
/// (Go style).
pub const SHAPE_SHORT: u8 = 3;

/// One argument word, described.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WordInfo {
    /// Keyed hash of the word; valid when `hashed` is 1.
    pub hash: u64,
    /// The bytes after the leading `-` but the last one seen, as a set of
    /// 256 bits: the short options a cluster names before its last one.
    pub letters: [u64; 4],
    /// The word was at most `MAX_WORD_LEN` bytes and `hash` is its hash.
    pub hashed: u8,
    /// Longer than `MAX_WORD_LEN` bytes: only its first [`WORD_VISIBLE`]
    /// bytes were seen.
    pub too_long: u8,
    /// `SHAPE_*`.
    pub shape: u8,
    /// An `=` follows the leading `-` (among the bytes seen).
    pub has_eq: u8,
    /// The last byte seen (the word's last when it was read whole).
    pub last: u8,
    /// Bytes seen: the word's length, or [`WORD_VISIBLE`] when too long.
    pub seen: u8,
    pub _pad: [u8; 2],
}

impl WordInfo {
    /// Describes and hashes argument word `bytes` as the eBPF program reads
    /// it: into a buffer of [`WORD_BUF`] bytes, of which a word longer than
    /// [`MAX_WORD_LEN`] fills [`WORD_VISIBLE`]. For userspace judges of the
    /// same walk (the seccomp supervisor, the property test); `bytes` may
    /// be cut after `WORD_VISIBLE` bytes, the rest is never seen.
    #[inline]
    pub fn read(&mut self, key: &HashKey, bytes: &[u8]) {
        let too_long = bytes.len() > MAX_WORD_LEN;
        let mut buf = [0u8; WORD_BUF];
        let n = bytes.len().min(WORD_VISIBLE);
        buf[..n].copy_from_slice(&bytes[..n]);
        // What an earlier, longer word left in the program's buffer must not
        // count: fill past the NUL with a byte that would.
        buf[n + 1..].fill(b'=');
        self.describe(bytes.len(), too_long, |j| buf[j % WORD_BUF]);
        self.hashed = !too_long as u8;
        self.hash = if too_long { 0 } else { hash_word(key, bytes) };
    }

    /// Describes a word of `len` bytes (for a word too long to read whole,
    /// the [`WORD_VISIBLE`] bytes seen), fetched with `byte_at`; the hash is
    /// the caller's. Bytes past what was seen may be fetched but do not
    /// count.
    ///
    /// For the verifier: one loop over the bytes, whose bound it reloads
    /// from memory in every iteration and whose results it writes there
    /// (volatile, so that the compiler keeps neither in a register). What
    /// one iteration learns of the bound is then forgotten by the next, so
    /// every path through the loop ends in the same state and the loop is
    /// checked once per byte; a bound kept in a register made the 6.1
    /// verifier follow each iteration's outcomes separately.
    #[inline(always)]
    pub fn describe(&mut self, len: usize, too_long: bool, byte_at: impl Fn(usize) -> u8) {
        let seen = if too_long {
            WORD_VISIBLE
        } else {
            len.min(WORD_VISIBLE)
        };
        let (b0, b1) = (byte_at(0), byte_at(1));
        self.shape = if seen < 2 || b0 != b'-' {
            SHAPE_OPERAND
        } else if b1 != b'-' {
            SHAPE_SHORT
        } else if seen == 2 {
            SHAPE_END
        } else {
            SHAPE_LONG
        };
        self.too_long = too_long as u8;
        for group in 0..4 {
            set(&mut self.letters[group], 0);
        }
        set(&mut self.has_eq, 0);
        set(&mut self.seen, seen as u8);
        set(&mut self.last, if seen == 1 { b0 } else { 0 });
        for j in 1..WORD_BUF - 1 {
            let seen = volatile(&self.seen) as usize;
            if j >= seen {
                break;
            }
            let b = byte_at(j);
            if b == b'=' {
                set(&mut self.has_eq, 1);
            }
            // Cluster letters: all bytes after the dash but the last seen.
            if j + 1 < seen {
                let group = &mut self.letters[(b >> 6) as usize & 3];
                let with = volatile(group) | (1u64 << (b & 63));
                set(group, with);
            }
            if j + 1 == seen {
                set(&mut self.last, b);
            }
        }
    }

    /// Whether one of the short options in `set` (a `Tool::short_values`)
    /// is among the cluster's letters before its last one.
    #[inline(always)]
    pub fn names_before_last(&self, set: &[u64; 4]) -> bool {
        (self.letters[0] & set[0])
            | (self.letters[1] & set[1])
            | (self.letters[2] & set[2])
            | (self.letters[3] & set[3])
            != 0
    }
}

/// Whether `set` (a `Tool::short_values`) holds byte `b`.
#[inline(always)]
pub fn holds(set: &[u64; 4], b: u8) -> bool {
    (set[(b >> 6) as usize & 3] >> (b & 63)) & 1 != 0
}

#[cfg(test)]
mod tests {
    use super::super::MAX_WORD_LEN;
    use super::*;

    fn describe(word: &str) -> WordInfo {
        let bytes = word.as_bytes();
        let too_long = bytes.len() > MAX_WORD_LEN;
        let mut info = WordInfo::default();
        // Bytes past the word are noise the description must ignore.
        info.describe(bytes.len(), too_long, |i| {
            if too_long && i >= WORD_VISIBLE {
                b'='
            } else {
                bytes.get(i).copied().unwrap_or(b'=')
            }
        });
        info
    }

    fn set(chars: &str) -> [u64; 4] {
        bytes_set(chars.as_bytes())
    }

    fn bytes_set(bytes: &[u8]) -> [u64; 4] {
        let mut set = [0u64; 4];
        for &b in bytes {
            set[(b >> 6) as usize] |= 1 << (b & 63);
        }
        set
    }

    #[test]
    fn shapes() {
        for (word, shape) in [
            ("", SHAPE_OPERAND),
            ("-", SHAPE_OPERAND),
            ("apply", SHAPE_OPERAND),
            ("a-b", SHAPE_OPERAND),
            ("--", SHAPE_END),
            ("---", SHAPE_LONG),
            ("--context", SHAPE_LONG),
            ("--context=prod", SHAPE_LONG),
            ("-n", SHAPE_SHORT),
            ("-chdir=x", SHAPE_SHORT),
            ("-nprod", SHAPE_SHORT),
        ] {
            assert_eq!(describe(word).shape, shape, "{word:?}");
        }
        let long = format!("-{}", "a".repeat(300));
        assert_eq!(describe(&long).shape, SHAPE_SHORT);
        assert_eq!(describe(&"x".repeat(300)).shape, SHAPE_OPERAND);
    }

    #[test]
    fn equals_sign_and_last_byte() {
        assert_eq!(describe("--context=prod").has_eq, 1);
        assert_eq!(describe("-chdir=.").has_eq, 1);
        assert_eq!(describe("--context").has_eq, 0);
        assert_eq!(describe("a").has_eq, 0);
        assert_eq!(describe("=").has_eq, 0, "byte 0 does not count");
        assert_eq!(describe("-n").last, b'n');
        assert_eq!(describe("-abc").last, b'c');
        let long = format!("--{}=x", "a".repeat(300));
        assert_eq!(describe(&long).has_eq, 0, "the `=` is past what was seen");
        assert_eq!(describe(&long).seen as usize, WORD_VISIBLE);
    }

    #[test]
    fn cluster_letters_exclude_the_last_byte() {
        let info = describe("-abn");
        assert!(info.names_before_last(&set("a")));
        assert!(info.names_before_last(&set("b")));
        assert!(!info.names_before_last(&set("n")), "n is last");
        assert!(
            !info.names_before_last(&set("-")),
            "the dash is not a letter"
        );
        assert!(describe("-nprod").names_before_last(&set("n")));
        assert!(!describe("-n").names_before_last(&set("n")));
        let long = format!("-{}n", "a".repeat(300));
        assert!(describe(&long).names_before_last(&set("a")));
        assert!(
            !describe(&long).names_before_last(&set("n")),
            "n was not seen"
        );
        // Bytes past ASCII are letters too (`é` is 0xc3 0xa9).
        let high = describe("-éx");
        assert!(high.names_before_last(&bytes_set(&[0xa9])));
        assert!(high.names_before_last(&bytes_set(&[0xc3])));
        assert!(!high.names_before_last(&bytes_set(b"x")));
        assert!(holds(&set("n"), b'n') && !holds(&set("n"), b'm'));
    }
}
