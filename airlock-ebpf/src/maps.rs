//! The maps the enforcer shares with the programs (pinned under
//! /sys/fs/bpf/airlock), the kernel offsets it fills in at load, and the
//! per-CPU working memory.

use airlock_common::kernel::{
    Aliases, Config, Evaluation, IdentKey, KernelOffsets, ListenerKey, LocalAddr, LocalPortKey,
    Node, NodeKey, OptionKey, SessionInfo, Tool, ToolKey, BINPRM_BUF, EVENT_NAME_LEN, EVENT_WORDS,
    EVENT_WORD_LEN, WORD_BUF,
};
use aya_ebpf::bindings::BPF_F_NO_PREALLOC;
use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, HashMap, PerCpuArray, RingBuf};
use aya_ebpf::Global;

/// Resolved by the loader from the running kernel's BTF.
#[no_mangle]
// SAFETY: KernelOffsets is plain u32s, for which all zeroes is a valid value.
pub static OFFSETS: Global<KernelOffsets> = Global::new(unsafe { core::mem::zeroed() });

#[map(name = "AL_CONFIG")]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);
#[map(name = "AL_CGROUPS")]
pub static CGROUPS: HashMap<u64, SessionInfo> = HashMap::pinned(4096, 0);
#[map(name = "AL_UIDS")]
pub static UIDS: HashMap<u32, SessionInfo> = HashMap::pinned(1024, 0);
#[map(name = "AL_NODES")]
pub static NODES: HashMap<NodeKey, Node> = HashMap::pinned(1 << 18, BPF_F_NO_PREALLOC);
#[map(name = "AL_IDENTS")]
pub static IDENTS: HashMap<IdentKey, Aliases> = HashMap::pinned(1 << 14, BPF_F_NO_PREALLOC);
/// The grammars of the sessions' rule heads.
#[map(name = "AL_TOOLS")]
pub static TOOLS: HashMap<ToolKey, Tool> = HashMap::pinned(1 << 14, BPF_F_NO_PREALLOC);
/// Their long options that take a value (the value is unused).
#[map(name = "AL_OPTIONS")]
pub static OPTIONS: HashMap<OptionKey, u32> = HashMap::pinned(1 << 16, BPF_F_NO_PREALLOC);
/// This machine's interface and broadcast addresses (kept current by the
/// enforcer).
#[map(name = "AL_LOCAL_ADDRS")]
pub static LOCAL_ADDRS: HashMap<LocalAddr, u8> = HashMap::pinned(4096, 0);
/// Ports on this machine each session may reach (its role's
/// `allow_local_ports`).
#[map(name = "AL_LOCAL_PORTS")]
pub static LOCAL_PORTS: HashMap<LocalPortKey, u8> = HashMap::pinned(1 << 14, BPF_F_NO_PREALLOC);
/// Ports on this machine every session may reach when whoever listens
/// there is Airlock's own service (the credential proxy's `proxy.listen`):
/// port (host byte order) to the uid that must own every listener on it.
/// While the service is down, a listener of anyone else is refused.
#[map(name = "AL_SERVICE_PORTS")]
pub static SERVICE_PORTS: HashMap<u32, u32> = HashMap::pinned(16, 0);
/// Listening Unix sockets every session may connect to (the system bus).
#[map(name = "AL_BUS_SOCKETS")]
pub static BUS_SOCKETS: HashMap<ListenerKey, u8> = HashMap::pinned(64, 0);
#[map(name = "AL_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::pinned(1 << 20, 0);
/// Per-CPU counters: [0] events lost because the ring buffer was full.
#[map(name = "AL_STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::pinned(4, 0);
#[map(name = "AL_SCRATCH")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Working memory (the BPF stack is 512 bytes).
#[repr(C)]
pub struct Scratch {
    pub reader: Reader,
    /// Heads, word hashes and the walk's state.
    pub eval: Evaluation,
}

/// What reading a command and its executable leaves behind.
#[repr(C)]
pub struct Reader {
    pub word: [u8; WORD_BUF],
    pub binprm: [u8; BINPRM_BUF],
    /// The first bytes of each word read, for the event.
    pub words: [[u8; EVENT_WORD_LEN]; EVENT_WORDS],
    pub file: [u8; EVENT_NAME_LEN],
    /// Bit i: word i was read.
    pub read: u32,
    /// Words read so far, for sequential sources.
    pub nread: u32,
    /// Next word's address, for sequential sources.
    pub pos: u64,
    /// Where the words come from (`task::Source`), here so that the global
    /// function reading a word finds it: its kind and address.
    pub source: u32,
    pub source_addr: u64,
}

impl Scratch {
    /// Forgets what an earlier program run left.
    #[inline(always)]
    pub fn reset(&mut self) {
        let r = &mut self.reader;
        r.read = 0;
        r.nread = 0;
        r.pos = 0;
        r.file[0] = 0;
        for i in 0..EVENT_WORDS {
            r.words[i][0] = 0;
        }
        self.eval.clear();
    }
}

/// This CPU's scratch, reset.
#[inline(always)]
pub fn scratch() -> Option<&'static mut Scratch> {
    let s = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: the pointer is to this CPU's entry of a per-CPU map, valid and
    // aligned for the program's run, and plain integers, for which any bytes
    // are valid. Each program takes the scratch once, so within a run no
    // other reference exists. Runs do not migrate between CPUs, and on this
    // CPU no other run uses the entry meanwhile as long as this one is not
    // preempted: tp_btf programs run with preemption disabled, LSM programs
    // only with migration disabled, which a kernel with full preemption
    // (CONFIG_PREEMPT, preempt=full) can preempt. Debian's default
    // (voluntary) cannot.
    let s = unsafe { &mut *s };
    s.reset();
    Some(s)
}

#[inline(always)]
pub fn config() -> Option<Config> {
    CONFIG.get(0).copied()
}
