//! The contract between the enforcer and its eBPF program.
//!
//! Everything here is `no_std` plain data: map keys and values, the event
//! record, the kernel struct offsets the loader looks up in BTF, and the
//! policy evaluation itself. The eBPF program and the userspace tests run the
//! very same [`Evaluation::judge`], so "the kernel decides what `airlockctl
//! policy check` decides" is a property test, not a hope.
//!
//! A session's policy is compiled into a hash trie. Every rule (and every
//! grant) is a list of words; its prefixes become [`NodeKey`]s whose hash
//! chains the words with a keyed SipHash-1-3 (the key is random per
//! installation and readable only by root, so an agent cannot craft an
//! argument whose hash collides with a rule's). Walking a command costs one
//! map lookup per word, whatever the number of rules.
//!
//! Block and approve rules (and grants) are also matched *tool-aware*
//! ([`aware`]): the options of the command, and for a tool not in the
//! grammar table its other arguments too, may be skipped. The grammar of
//! each rule head (which options take a value) is in [`Tool`]s and
//! [`OptionKey`]s beside the trie.

mod aware;
#[cfg(feature = "std")]
pub mod compile;
#[cfg(feature = "std")]
pub mod identity;
mod shape;
#[cfg(test)]
mod tests;
mod walk;

pub use aware::{
    Aware, Position, CLASS_OPERAND, CLASS_OPTION_VALUE, CLASS_SKIPPABLE, CLASS_VALUE, HEAD_SLOTS,
};
pub use shape::{WordInfo, SHAPE_END, SHAPE_LONG, SHAPE_OPERAND, SHAPE_SHORT};
pub use walk::{Command, Evaluation, Nodes, Steps, Verdict, Walk};

/// Reads `place` as memory the compiler may not keep in a register.
#[inline(always)]
pub(crate) fn volatile<T: Copy>(place: &T) -> T {
    // SAFETY: `place` is a reference, so it is valid, aligned and
    // initialised for a read of `T`.
    unsafe { core::ptr::read_volatile(place) }
}

/// Writes `place` as memory the compiler may not keep in a register.
#[inline(always)]
pub(crate) fn set<T: Copy>(place: &mut T, value: T) {
    // SAFETY: `place` is an exclusive reference, so it is valid and aligned
    // for a write of `T`; `T: Copy` has no destructor to skip.
    unsafe { core::ptr::write_volatile(place, value) }
}

/// Most words (executable plus arguments) in a rule or a grant.
pub const MAX_WORDS: usize = 16;
/// Bytes read for one word, including its NUL.
pub const WORD_BUF: usize = 256;
/// Longest word a rule may hold; longer arguments match no rule word. One
/// less than fits in [`WORD_BUF`] with its NUL, so that a read that fills the
/// buffer means "too long" rather than "exactly this long".
pub const MAX_WORD_LEN: usize = WORD_BUF - 2;
/// Rule heads one executable file can be known by through its identity.
pub const MAX_ALIASES: usize = 4;
/// Names an executable is judged by: `argv[0]`, the real file's name, the
/// path it was invoked by, and the aliases of its inode and its content,
/// each in a fixed slot (see `HEAD_*`).
pub const MAX_HEADS: usize = 3 + 2 * MAX_ALIASES;
pub const HEAD_ARGV0: usize = 0;
pub const HEAD_FILE_NAME: usize = 1;
pub const HEAD_INVOKED_AS: usize = 2;
pub const HEAD_INODE_ALIASES: usize = 3;
pub const HEAD_CONTENT_ALIASES: usize = 3 + MAX_ALIASES;
/// `BINPRM_BUF_SIZE`: the first bytes of the file the kernel has read.
pub const BINPRM_BUF: usize = 256;
/// Bytes of a word the kernel sees when it is too long to read whole (the
/// buffer less its NUL): what a too-long option is classified by.
pub const WORD_VISIBLE: usize = WORD_BUF - 1;
/// Partial matches the tool-aware walk follows at once. A command that
/// would keep more alive is refused ([`RULE_UNMATCHABLE`]).
pub const MAX_POSITIONS: usize = 16;

/// Node and verdict actions, weakest first (as in the policy engine).
pub const ACTION_NONE: u8 = 0;
pub const ACTION_ALLOW: u8 = 1;
pub const ACTION_APPROVE: u8 = 2;
pub const ACTION_BLOCK: u8 = 3;

/// No rule decided: the role's default action applied.
pub const NO_RULE: u32 = u32::MAX;
/// The verdict's "rule" when a command was refused because the kernel
/// cannot match it within its limits: a block or approve rule could still
/// match past the words it reads, more than [`MAX_POSITIONS`] partial
/// matches were alive at once, or an option was too long to classify.
pub const RULE_UNMATCHABLE: u32 = u32::MAX - 1;

/// [`Tool::style`]: `-abc` is a cluster of short options, `--name` a long
/// one (getopt, cobra, argparse).
pub const STYLE_GNU: u32 = 0;
/// [`Tool::style`]: `-name` and `--name` are the same long option; no
/// clusters (Go's `flag` package: terraform).
pub const STYLE_GO: u32 = 1;

/// [`SessionInfo::flags`]: the session was revoked; nothing may start in it.
pub const SESSION_REVOKED: u32 = 1;
/// [`SessionInfo::flags`]: the role allows debugging (ptrace and its kin).
pub const SESSION_ALLOW_DEBUGGING: u32 = 2;

/// [`Config::flags`]: the LSM hooks are attached (so the exec-commit hook
/// only reports what they could not see).
pub const CONFIG_LSM_ACTIVE: u64 = 1;

/// Signals the program sends.
pub const SIGKILL: u32 = 9;
pub const SIGSTOP: u32 = 19;

/// How long after the enforcer's last heartbeat the program still holds a
/// refused task for it (the enforcer beats every second).
pub const HEARTBEAT_VALIDITY_NS: u64 = 3_000_000_000;

/// [`IdentKey::kind`]
pub const IDENT_INODE: u32 = 1;
pub const IDENT_CONTENT: u32 = 2;

/// Event kinds.
pub const EVENT_BLOCKED: u32 = 1;
pub const EVENT_APPROVAL_REQUIRED: u32 = 2;
pub const EVENT_GRANT_USED: u32 = 3;
pub const EVENT_SESSION_REVOKED: u32 = 4;
pub const EVENT_MMAP_DENIED: u32 = 5;
pub const EVENT_CGROUP_WRITE_DENIED: u32 = 6;
pub const EVENT_DEBUG_DENIED: u32 = 7;
pub const EVENT_NAMESPACE_DENIED: u32 = 8;
/// A connection to (or datagram for) a socket outside the session.
pub const EVENT_SOCKET_DENIED: u32 = 9;
/// A signal to a process outside the session.
pub const EVENT_SIGNAL_DENIED: u32 = 10;

/// Where the event was raised.
pub const STAGE_EXEC_CHECK: u32 = 1;
pub const STAGE_EXEC_COMMIT: u32 = 2;
pub const STAGE_MMAP: u32 = 3;
pub const STAGE_FILE_OPEN: u32 = 4;
/// Not a program: the enforcer's seccomp supervisor (degraded mode).
pub const STAGE_SUPERVISOR: u32 = 5;
/// `ptrace_access_check` and `ptrace_traceme`.
pub const STAGE_PTRACE: u32 = 6;
/// The cgroup `connect4`/`connect6`/`sendmsg4`/`sendmsg6` programs.
pub const STAGE_CONNECT: u32 = 7;
/// `lsm/unix_stream_connect` and `lsm/unix_may_send`.
pub const STAGE_UNIX_CONNECT: u32 = 8;
/// `lsm/task_kill`.
pub const STAGE_SIGNAL: u32 = 9;

/// [`ExecEvent::outcome`]
/// The exec failed with EPERM; the real executable was not run.
pub const OUTCOME_REFUSED: u32 = 1;
/// The new image was killed before its first instruction.
pub const OUTCOME_KILLED: u32 = 2;
/// It ran, under a grant.
pub const OUTCOME_ALLOWED: u32 = 3;

/// [`Peer::family`]
pub const AF_UNIX: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// [`Peer::protocol`]
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;
/// [`Peer::protocol`] of a signal event: the peer is a process.
pub const PEER_PROCESS: u16 = 0xffff;
/// The port the local DNS stub listens on (systemd-resolved's 127.0.0.53,
/// dnsmasq): always reachable from a session.
pub const DNS_PORT: u16 = 53;
/// Bytes of a Unix socket's address kept in an event (`sun_path`'s size).
pub const PEER_PATH_LEN: usize = 108;

pub const EVENT_WORDS: usize = 8;
pub const EVENT_WORD_LEN: usize = 64;
pub const EVENT_NAME_LEN: usize = 64;

/// The 128-bit SipHash key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashKey {
    pub k0: u64,
    pub k1: u64,
}

/// Global settings, entry 0 of the `CONFIG` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    pub key: HashKey,
    pub flags: u64,
    /// `bpf_ktime_get_boot_ns` until which the enforcer is known to be
    /// reading events. Tasks are held (stopped) for the enforcer to write its
    /// message only while it is alive, so a dead enforcer never leaves a task
    /// stopped.
    pub holder_alive_until_ns: u64,
}

/// A governed session, found by cgroup id or by uid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// Small number naming the session in [`NodeKey`] and [`IdentKey`].
    pub index: u32,
    pub flags: u32,
    /// Action for commands no rule matches.
    pub default_action: u32,
    /// Words after the executable that any rule or grant of the session
    /// names: arguments past this are never read.
    pub max_depth: u32,
}

/// One prefix of a rule or grant: `hash` chains its words.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeKey {
    pub session: u32,
    /// 0 for the executable alone, 1 with the first argument, ...
    pub depth: u32,
    pub hash: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// The strongest action of the rules that end here, or `ACTION_NONE`.
    pub action: u8,
    /// Whether a longer rule or grant continues from here.
    pub has_children: u8,
    /// Whether a longer block or approve rule, or grant, continues from
    /// here: the tool-aware walk follows only those.
    pub aware: u8,
    pub _pad: u8,
    /// Load-order index of the rule that set `action` (the first among
    /// equally strong ones), `NO_RULE` for none.
    pub rule: u32,
    /// A grant ends here, live until this `bpf_ktime_get_boot_ns`; 0 for none.
    pub grant_until_ns: u64,
}

/// An executable file known to the session's policy: by inode
/// (`a` = device, `b` = inode) or by content (`a` = size, `b` = keyed hash of
/// its first [`BINPRM_BUF`] bytes), so hard links, copies and memfds of a
/// governed binary are judged as the binary itself.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentKey {
    pub session: u32,
    pub kind: u32,
    pub a: u64,
    pub b: u64,
}

/// The rule heads an identity stands for, as head hashes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Aliases {
    pub count: u32,
    pub _pad: u32,
    pub heads: [u64; MAX_ALIASES],
}

/// A rule head's grammar in a session, found by the head's hash.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ToolKey {
    pub session: u32,
    pub _pad: u32,
    pub head: u64,
}

/// How a tool's options are written, and which short options take a value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tool {
    /// `STYLE_GNU` or `STYLE_GO`.
    pub style: u32,
    pub _pad: u32,
    /// Bit `c` (of 256): the short option `-c` takes a value (GNU style).
    pub short_values: [u64; 4],
}

/// A long option that takes a value (`--name`; for a Go-style tool `-name`
/// and `--name` each have one): `option` chains the head's hash with the
/// option word's hash. Present means "takes a value".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OptionKey {
    pub session: u32,
    pub _pad: u32,
    pub option: u64,
}

/// Byte offsets of the kernel struct members the program reads, resolved
/// from the running kernel's BTF by the loader.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub binprm_file: u32,
    pub binprm_argc: u32,
    pub binprm_filename: u32,
    pub binprm_buf: u32,
    pub file_inode: u32,
    pub file_dentry: u32,
    pub file_mode: u32,
    pub dentry_name: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub inode_size: u32,
    pub sb_dev: u32,
    pub sb_magic: u32,
    pub task_mm: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_exe_file: u32,
    /// `sock.sk_cgrp_data.cgroup`: the cgroup of the task that created it.
    pub sock_cgroup: u32,
    /// `sock.sk_uid`: the uid that created it.
    pub sock_uid: u32,
    pub sock_reuseport_cb: u32,
    pub reuseport_num_socks: u32,
    pub reuseport_socks: u32,
    pub socket_sk: u32,
    /// `sock.sk_socket`: its `struct socket`.
    pub sock_socket: u32,
    /// From a `struct socket` to the inode it is allocated with
    /// (`socket_alloc.vfs_inode` less `socket_alloc.socket`).
    pub socket_inode: u32,
    pub unix_addr: u32,
    pub unix_address_len: u32,
    pub unix_address_name: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub task_real_cred: u32,
    pub cred_uid: u32,
}

/// What the program reports through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub kind: u32,
    pub stage: u32,
    pub outcome: u32,
    pub session: u32,
    pub rule: u32,
    pub pid: u32,
    pub tgid: u32,
    /// The parent process, whose output the agent sees when its child was
    /// killed.
    pub ppid: u32,
    pub uid: u32,
    /// The action that decided (`ACTION_*`).
    pub action: u32,
    /// Non-zero when the task was stopped (SIGSTOP) so that the enforcer can
    /// write its message before the task reports the failure; the enforcer
    /// continues it.
    pub held: u32,
    /// Words in `words` (the command as far as it was read).
    pub nwords: u32,
    pub time_ns: u64,
    pub comm: [u8; 16],
    /// Name of the real executable (or mapped/opened file).
    pub file: [u8; EVENT_NAME_LEN],
    pub words: [[u8; EVENT_WORD_LEN]; EVENT_WORDS],
    /// What a socket or signal event was refused to reach (zero otherwise).
    pub peer: Peer,
}

/// The other end of a refused connection, datagram or signal.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// `AF_INET`, `AF_INET6` or `AF_UNIX`; 0 for none.
    pub family: u16,
    /// `IPPROTO_TCP`, `IPPROTO_UDP` (or another protocol number) for an IP
    /// peer; [`PEER_PROCESS`] for a signal's target.
    pub protocol: u16,
    /// Host byte order; the signal's number for a signal event.
    pub port: u16,
    /// Bytes of `path` that hold the Unix address (`sun_path`; an abstract
    /// name starts with a NUL byte).
    pub path_len: u16,
    /// The signal's target process.
    pub pid: u32,
    pub _pad: u32,
    /// The IP address, network byte order (an IPv4 one in the first four
    /// bytes).
    pub addr: [u8; 16],
    pub path: [u8; PEER_PATH_LEN],
    pub _pad2: [u8; 4],
}

/// A destination address that reaches this machine: one of its interface
/// addresses (or their broadcast addresses), IPv4 ones in IPv4-mapped IPv6
/// form (`::ffff:a.b.c.d`). Loopback, `0.0.0.0`, `::` and multicast are
/// recognised by the program itself.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalAddr {
    pub addr: [u8; 16],
}

/// A port on this machine a session may reach whoever listens there (the
/// role's `allow_local_ports`, and DNS).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalPortKey {
    pub session: u32,
    /// Host byte order.
    pub port: u32,
}

/// A listening Unix socket every session may connect to (the system
/// bus), by the inode number of the socket itself (sockfs; what
/// `/proc/net/unix` and `socket:[N]` show).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerKey {
    pub ino: u64,
}

/// Eight bytes from `pos`, little-endian.
#[inline(always)]
fn load8(pos: usize, byte_at: &impl Fn(usize) -> u8) -> u64 {
    let mut m = 0u64;
    for j in 0..8 {
        m |= (byte_at(pos + j) as u64) << (8 * j);
    }
    m
}

/// Calls `f` for blocks `0..count` (at most 32), unrolled: the BPF
/// verifier walks a loop's iterations one state at a time and gives up on
/// branches inside them, while straight-line code is checked once. Each
/// block's test leaves for the end, so a word costs its own length, not
/// [`WORD_BUF`]'s (most words are a few bytes: 32 rounds each were most of
/// an exec's judging, in the kernel and in the supervisor).
#[inline(always)]
fn each_block(count: u64, mut f: impl FnMut(u64)) {
    macro_rules! calls {
        ($($n:literal)*) => {
            'blocks: {
                $(
                    if $n >= count {
                        break 'blocks;
                    }
                    f($n);
                )*
            }
        };
    }
    calls!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
}

/// All ones when `a < b`, zero otherwise, without a branch (BPF has no
/// conditional move; a branch inside a block's work would double the
/// verifier's paths at every block, where `each_block`'s own exits only
/// add one path each).
#[inline(always)]
fn lt_mask(a: u64, b: u64) -> u64 {
    ((a as i64).wrapping_sub(b as i64) >> 63) as u64
}

/// Index just past the last `/` of the first `len` bytes: where `argv[0]`'s
/// basename starts. Branch-free within the first `len` bytes, 8 at a time.
#[inline(always)]
pub fn basename_start(len: usize, byte_at: impl Fn(usize) -> u8) -> usize {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const SLASHES: u64 = 0x2f2f_2f2f_2f2f_2f2f;
    let len = len as u64;
    let mut start = 0u64;
    each_block(len.div_ceil(8), |block| {
        let base = block * 8;
        // Exact per-byte zero test of v = bytes ^ '/': the top bit of each
        // byte of `found` is set where the byte is '/'.
        let v = load8(base as usize, &byte_at) ^ SLASHES;
        let found = !(((v & LOW7) + LOW7) | v | LOW7);
        // Only bytes before `len` count: `valid` of the 8 (0 to 8).
        let remaining = (len as i64).wrapping_sub(base as i64);
        let remaining = (remaining & !(remaining >> 63)) as u64;
        let full = !lt_mask(remaining, 8);
        let mask = ((1u64 << ((8 * remaining) & 63)).wrapping_sub(1)) | full;
        let found = found & mask;
        let any = ((found | found.wrapping_neg()) as i64 >> 63) as u64;
        let last = (63u64.wrapping_sub(found.leading_zeros() as u64)) / 8;
        start = ((base + last + 1) & any) | (start & !any);
    });
    start as usize
}

/// Keyed SipHash-1-3 of bytes `start..len` (at most [`WORD_BUF`] of them,
/// `start <= len`), each fetched with `byte_at`; the tail's bytes at or
/// past `len` are fetched but do not count. One round per whole 8 bytes.
#[inline(always)]
pub fn siphash13(key: &HashKey, start: usize, len: usize, byte_at: impl Fn(usize) -> u8) -> u64 {
    let mut v0 = key.k0 ^ 0x736f_6d65_7073_6575;
    let mut v1 = key.k1 ^ 0x646f_7261_6e64_6f6d;
    let mut v2 = key.k0 ^ 0x6c79_6765_6e65_7261;
    let mut v3 = key.k1 ^ 0x7465_6462_7974_6573;
    // Callers keep `len - start <= WORD_BUF`; the mask only keeps a broken
    // caller from indexing far (a `min` would be a branch).
    let n = (len.wrapping_sub(start) & (2 * WORD_BUF - 1)) as u64;
    let blocks = n / 8;
    each_block(blocks, |block| {
        let m = load8(start + 8 * block as usize, &byte_at);
        v3 ^= m;
        sipround(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= m;
    });
    let tail = n & 7;
    let m = load8(start + 8 * blocks as usize, &byte_at) & ((1u64 << (8 * tail)) - 1);
    let b = m | ((n & 0xff) << 56);
    v3 ^= b;
    sipround(&mut v0, &mut v1, &mut v2, &mut v3);
    v0 ^= b;
    v2 ^= 0xff;
    sipround(&mut v0, &mut v1, &mut v2, &mut v3);
    sipround(&mut v0, &mut v1, &mut v2, &mut v3);
    sipround(&mut v0, &mut v1, &mut v2, &mut v3);
    v0 ^ v1 ^ v2 ^ v3
}

#[inline(always)]
fn sipround(v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64) {
    *v0 = v0.wrapping_add(*v1);
    *v1 = v1.rotate_left(13);
    *v1 ^= *v0;
    *v0 = v0.rotate_left(32);
    *v2 = v2.wrapping_add(*v3);
    *v3 = v3.rotate_left(16);
    *v3 ^= *v2;
    *v0 = v0.wrapping_add(*v3);
    *v3 = v3.rotate_left(21);
    *v3 ^= *v0;
    *v2 = v2.wrapping_add(*v1);
    *v1 = v1.rotate_left(17);
    *v1 ^= *v2;
    *v2 = v2.rotate_left(32);
}

/// The hash of a prefix one word longer. Unkeyed mixing is enough here: both
/// inputs are already keyed hashes.
#[inline(always)]
pub fn chain(prefix: u64, word: u64) -> u64 {
    let mut v0 = prefix ^ 0x736f_6d65_7073_6575;
    let mut v1 = word ^ 0x646f_7261_6e64_6f6d;
    let mut v2 = prefix ^ 0x6c79_6765_6e65_7261;
    let mut v3 = word ^ 0x7465_6462_7974_6573;
    sipround(&mut v0, &mut v1, &mut v2, &mut v3);
    sipround(&mut v0, &mut v1, &mut v2, &mut v3);
    v2 ^= 0xff;
    sipround(&mut v0, &mut v1, &mut v2, &mut v3);
    sipround(&mut v0, &mut v1, &mut v2, &mut v3);
    v0 ^ v1 ^ v2 ^ v3
}

/// Hash of a whole word held in memory (userspace side of [`siphash13`]).
pub fn hash_word(key: &HashKey, word: &[u8]) -> u64 {
    siphash13(key, 0, word.len().min(WORD_BUF), |i| {
        word.get(i).copied().unwrap_or(0)
    })
}

/// The loader copies these to and from BPF maps byte for byte.
#[cfg(feature = "aya")]
mod pod {
    use super::*;

    // Each type is #[repr(C)] plain data of integers with no implicit
    // padding (padding is spelled out as `_pad` fields), so every bit
    // pattern is a valid value and no byte is left uninitialised.

    // SAFETY: as above: a HashKey and two u64s.
    unsafe impl aya::Pod for Config {}
    // SAFETY: as above: four u32s.
    unsafe impl aya::Pod for SessionInfo {}
    // SAFETY: as above: two u32s and a u64.
    unsafe impl aya::Pod for NodeKey {}
    // SAFETY: as above: u8s, a u32 and a u64, with `_pad` filling the gap.
    unsafe impl aya::Pod for Node {}
    // SAFETY: as above: two u32s and a u64.
    unsafe impl aya::Pod for ToolKey {}
    // SAFETY: as above: two u32s and an array of u64s.
    unsafe impl aya::Pod for Tool {}
    // SAFETY: as above: two u32s and a u64.
    unsafe impl aya::Pod for OptionKey {}
    // SAFETY: as above: two u32s and two u64s.
    unsafe impl aya::Pod for IdentKey {}
    // SAFETY: as above: two u32s and an array of u64s.
    unsafe impl aya::Pod for Aliases {}
    // SAFETY: as above: u32s only.
    unsafe impl aya::Pod for KernelOffsets {}
    // SAFETY: as above: an array of bytes.
    unsafe impl aya::Pod for LocalAddr {}
    // SAFETY: as above: two u32s.
    unsafe impl aya::Pod for LocalPortKey {}
    // SAFETY: as above: a u64.
    unsafe impl aya::Pod for ListenerKey {}
}
