//! Loading, attaching and pinning the eBPF programs.
//!
//! Maps and links are pinned under the bpffs directory, so the programs keep
//! enforcing while the enforcer is down (fail closed) and a restarted
//! enforcer picks the same maps up again. On a restart the new links are
//! attached before the old ones are unpinned: there is no moment without a
//! program in place.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use airlock_common::enforcement::EnforcementMode;
use airlock_common::kernel::{
    Config, HashKey, KernelOffsets, ListenerKey, LocalAddr, LocalPortKey, CONFIG_LSM_ACTIVE,
};
use airlock_daemon::state_dir::{self, Sharing};
use anyhow::{anyhow, Context};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSockAddr, Lsm};
use aya::{Ebpf, EbpfLoader};
use ring::rand::{SecureRandom, SystemRandom};

/// The program object, built by build.rs from airlock-ebpf.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/airlock-ebpf.o"));

/// LSM hooks, in attach order.
const LSM_HOOKS: [&str; 8] = [
    "bprm_check_security",
    "mmap_file",
    "file_open",
    "ptrace_access_check",
    "ptrace_traceme",
    "unix_stream_connect",
    "unix_may_send",
    "task_kill",
];
const EXEC_TRACEPOINT: &str = "sched_process_exec";
/// The cgroup socket-address programs (TCP and UDP to this machine).
const INET_PROGRAMS: [&str; 4] = ["connect4", "connect6", "sendmsg4", "sendmsg6"];

/// How the kernel enforces, from strongest to none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// BPF LSM: forbidden execs fail with EPERM.
    Lsm,
    /// No BPF LSM: a forbidden exec is killed at exec commit, before its
    /// first instruction. `reason` says why LSM is unavailable.
    Degraded { reason: String },
}

impl Mode {
    /// The mode in the shared vocabulary, as the gateway and `airlockctl`
    /// name it.
    pub fn enforcement(&self) -> EnforcementMode {
        match self {
            Mode::Lsm => EnforcementMode::Lsm,
            Mode::Degraded { .. } => EnforcementMode::Degraded,
        }
    }

    /// A sentence for status output and the audit log.
    pub fn describe(&self) -> String {
        match self {
            Mode::Lsm => "BPF LSM: forbidden commands fail with EPERM before they run".into(),
            Mode::Degraded { reason } => format!(
                "DEGRADED (seccomp supervisor + exec-commit kill): BPF LSM is unavailable \
                 ({reason}); in sessions started by `airlockctl run` the enforcer's seccomp \
                 supervisor refuses forbidden commands with EPERM before they run, and what \
                 races it (and every forbidden command of a session bound to a user) is killed \
                 at exec commit, before its first instruction, by a tp_btf/sched_process_exec \
                 program. The dynamic-loader and cgroup-escape guards are off. Fix: {}",
                LSM_FIX
            ),
        }
    }
}

/// How to turn BPF LSM on, for messages.
pub const LSM_FIX: &str = "boot with `bpf` in the kernel's LSM list, e.g. add \
    `lsm=lockdown,capability,landlock,yama,apparmor,bpf` to GRUB_CMDLINE_LINUX in \
    /etc/default/grub, run update-grub and reboot (the kernel needs CONFIG_BPF_LSM=y)";

/// The kernel side, loaded and attached.
pub struct Kernel {
    pub mode: Mode,
    pub config: Array<MapData, Config>,
    pub cgroups: HashMap<MapData, u64, airlock_common::kernel::SessionInfo>,
    pub uids: HashMap<MapData, u32, airlock_common::kernel::SessionInfo>,
    pub nodes: HashMap<MapData, airlock_common::kernel::NodeKey, airlock_common::kernel::Node>,
    pub idents: HashMap<MapData, airlock_common::kernel::IdentKey, airlock_common::kernel::Aliases>,
    pub tools: HashMap<MapData, airlock_common::kernel::ToolKey, airlock_common::kernel::Tool>,
    pub options: HashMap<MapData, airlock_common::kernel::OptionKey, u32>,
    pub events: Option<RingBuf<MapData>>,
    pub stats: PerCpuArray<MapData, u64>,
    local_addrs: HashMap<MapData, LocalAddr, u8>,
    pub local_ports: HashMap<MapData, LocalPortKey, u8>,
    bus_sockets: HashMap<MapData, ListenerKey, u8>,
    service_ports: HashMap<MapData, u32, u32>,
    pub key: HashKey,
    // Keeps program fds open for as long as the enforcer runs.
    _ebpf: Ebpf,
}

/// Whether `/sys/kernel/security/lsm` lists `bpf` (mounting securityfs
/// first where nothing did).
pub fn lsm_listed() -> Result<bool, String> {
    if !std::path::Path::new("/sys/kernel/security/lsm").exists() {
        let _ = nix::mount::mount(
            Some("securityfs"),
            "/sys/kernel/security",
            Some("securityfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
    }
    match fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(list) => Ok(list.trim().split(',').any(|l| l == "bpf")),
        Err(e) => Err(format!("cannot read /sys/kernel/security/lsm: {e}")),
    }
}

/// Mounts bpffs at `/sys/fs/bpf` if nothing is mounted there (machines
/// without systemd).
fn ensure_bpffs(pin_dir: &Path) -> anyhow::Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    let mounted = mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("bpf"));
    if !mounted {
        fs::create_dir_all("/sys/fs/bpf")?;
        nix::mount::mount(
            Some("bpf"),
            "/sys/fs/bpf",
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .context("mounting bpffs at /sys/fs/bpf")?;
    }
    state_dir::ensure(pin_dir, Sharing::OwnerOnly)
}

fn link_path(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join(format!("link_{name}"))
}

/// Pins `link` at its path, replacing (and so detaching) the link a previous
/// enforcer left there only after the new one is attached.
fn pin_replacing(link: FdLink, path: &Path) -> anyhow::Result<()> {
    let old = path.exists().then(|| PinnedLink::from_pin(path));
    // bpffs refuses names with a dot.
    let tmp = PathBuf::from(format!("{}_new", path.display()));
    let _ = fs::remove_file(&tmp);
    let pinned = link
        .pin(&tmp)
        .with_context(|| format!("pinning {}", tmp.display()))?;
    if let Some(Ok(old)) = old {
        // Dropping the unpinned link detaches the previous program.
        drop(old.unpin());
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
    drop(pinned);
    Ok(())
}

fn attach_lsm(ebpf: &mut Ebpf, btf: &aya::Btf, pin_dir: &Path) -> anyhow::Result<()> {
    for hook in LSM_HOOKS {
        let program: &mut Lsm = ebpf
            .program_mut(hook)
            .ok_or_else(|| anyhow!("the object has no program {hook}"))?
            .try_into()?;
        let started = Instant::now();
        program
            .load(hook, btf)
            .with_context(|| format!("loading lsm/{hook}"))?;
        log_verified(&format!("lsm/{hook}"), program.info().ok(), started);
        let id = program
            .attach()
            .with_context(|| format!("attaching lsm/{hook}"))?;
        let link: FdLink = program.take_link(id)?.into();
        pin_replacing(link, &link_path(pin_dir, hook))?;
    }
    Ok(())
}

fn attach_exec_tracepoint(ebpf: &mut Ebpf, btf: &aya::Btf, pin_dir: &Path) -> anyhow::Result<()> {
    let program: &mut BtfTracePoint = ebpf
        .program_mut(EXEC_TRACEPOINT)
        .ok_or_else(|| anyhow!("the object has no program {EXEC_TRACEPOINT}"))?
        .try_into()?;
    let started = Instant::now();
    program
        .load(EXEC_TRACEPOINT, btf)
        .with_context(|| format!("loading tp_btf/{EXEC_TRACEPOINT}"))?;
    log_verified(
        &format!("tp_btf/{EXEC_TRACEPOINT}"),
        program.info().ok(),
        started,
    );
    let id = program
        .attach()
        .with_context(|| format!("attaching tp_btf/{EXEC_TRACEPOINT}"))?;
    let link: FdLink = program.take_link(id)?.into();
    pin_replacing(link, &link_path(pin_dir, EXEC_TRACEPOINT))
}

/// Logs what the verifier checked of a program and how long loading took:
/// the verifier's work grows with the walk, and under emulation it bounds
/// how fast the enforcer starts.
fn log_verified(name: &str, info: Option<aya::programs::ProgramInfo>, started: Instant) {
    let verified = info.and_then(|i| i.verified_instruction_count());
    tracing::info!(
        "loaded {name} in {} ms ({} instructions verified)",
        started.elapsed().as_millis(),
        verified.map_or_else(|| "unknown".to_owned(), |n| n.to_string())
    );
}

/// Attaches the socket-address programs to the root of the cgroup2
/// hierarchy, where they see every task: those of process-tree sessions
/// (below `airlock/`) and those of bound users, wherever they run. A link
/// there is a multi-attach one: it cannot be displaced from below.
fn attach_inet(ebpf: &mut Ebpf, pin_dir: &Path) -> anyhow::Result<()> {
    let root = crate::cgroup::cgroup2_root()?;
    let cgroup = fs::File::open(&root).with_context(|| format!("opening {}", root.display()))?;
    for name in INET_PROGRAMS {
        let program: &mut CgroupSockAddr = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("the object has no program {name}"))?
            .try_into()?;
        program
            .load()
            .with_context(|| format!("loading cgroup/{name}"))?;
        let id = program
            .attach(&cgroup, CgroupAttachMode::Single)
            .with_context(|| format!("attaching cgroup/{name} to {}", root.display()))?;
        let link: FdLink = program.take_link(id)?.try_into()?;
        pin_replacing(link, &link_path(pin_dir, name))?;
    }
    Ok(())
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("the object has no map {name}"))?;
    T::try_from(map).with_context(|| format!("map {name}"))
}

fn random_key() -> anyhow::Result<HashKey> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow!("the kernel's random source failed"))?;
    Ok(HashKey {
        k0: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
        k1: u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes")),
    })
}

/// Loads the programs with `offsets`, reusing maps pinned in `pin_dir`.
/// Tries BPF LSM first and falls back to the exec-commit program alone;
/// fails when not even that loads.
pub fn load(pin_dir: &Path, offsets: &KernelOffsets) -> anyhow::Result<Kernel> {
    ensure_bpffs(pin_dir)?;
    let btf = aya::Btf::from_sys_fs().context(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux); Airlock needs CONFIG_DEBUG_INFO_BTF=y",
    )?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .default_map_pin_directory(pin_dir)
        .override_global("OFFSETS", offsets, true)
        .load(PROGRAM)
        .context("loading the eBPF object")?;

    let mut config: Array<MapData, Config> = take(&mut ebpf, "AL_CONFIG")?;
    let mut current = config.get(&0, 0)?;
    if current.key == HashKey::default() {
        // First start since boot: the hash key stays with the pinned maps.
        current.key = random_key()?;
    }
    // The exec-commit program is attached first, so that a governed exec is
    // judged by something from the moment the maps are shared.
    attach_exec_tracepoint(&mut ebpf, &btf, pin_dir)
        .context("no enforcement mechanism could be attached")?;
    // Every kernel with cgroup v2 runs these (CONFIG_CGROUP_BPF): without
    // them a session could reach the machine's own servers, so they are
    // not optional.
    attach_inet(&mut ebpf, pin_dir).context(
        "the socket guards (cgroup connect/sendmsg programs) could not be attached; \
         the kernel needs CONFIG_CGROUP_BPF=y",
    )?;
    let mode = match attach_lsm(&mut ebpf, &btf, pin_dir) {
        Ok(()) => Mode::Lsm,
        Err(e) => {
            let listed = match lsm_listed() {
                Ok(true) => "`bpf` is in the LSM list but the kernel refused the program".into(),
                Ok(false) => "`bpf` is not in /sys/kernel/security/lsm".to_string(),
                Err(e) => e,
            };
            Mode::Degraded {
                reason: format!("{listed}: {e:#}"),
            }
        }
    };
    if mode == Mode::Lsm {
        current.flags |= CONFIG_LSM_ACTIVE;
    } else {
        current.flags &= !CONFIG_LSM_ACTIVE;
        // Links of an earlier enforcer that could attach LSM are left alone:
        // they still enforce, and never with less than we do.
    }
    config.set(0, current, 0)?;

    Ok(Kernel {
        mode,
        key: current.key,
        cgroups: take(&mut ebpf, "AL_CGROUPS")?,
        uids: take(&mut ebpf, "AL_UIDS")?,
        nodes: take(&mut ebpf, "AL_NODES")?,
        idents: take(&mut ebpf, "AL_IDENTS")?,
        tools: take(&mut ebpf, "AL_TOOLS")?,
        options: take(&mut ebpf, "AL_OPTIONS")?,
        events: Some(take(&mut ebpf, "AL_EVENTS")?),
        stats: take(&mut ebpf, "AL_STATS")?,
        local_addrs: take(&mut ebpf, "AL_LOCAL_ADDRS")?,
        local_ports: take(&mut ebpf, "AL_LOCAL_PORTS")?,
        bus_sockets: take(&mut ebpf, "AL_BUS_SOCKETS")?,
        service_ports: take(&mut ebpf, "AL_SERVICE_PORTS")?,
        config,
        _ebpf: ebpf,
    })
}

impl Kernel {
    /// Tells the programs that the enforcer is reading events until
    /// `until_ns` (boot clock), so tasks may be held for its messages.
    pub fn heartbeat(&mut self, until_ns: u64) -> anyhow::Result<()> {
        let mut config = self.config.get(&0, 0)?;
        config.holder_alive_until_ns = until_ns;
        self.config.set(0, config, 0)?;
        Ok(())
    }

    /// Makes the map of this machine's addresses equal to `addrs`: new ones
    /// first, then the ones gone. Returns whether anything changed.
    pub fn set_local_addrs(&mut self, addrs: &BTreeSet<LocalAddr>) -> anyhow::Result<bool> {
        set_keys(
            &mut self.local_addrs,
            addrs,
            "the local address map is full",
        )
    }

    /// Makes the map of listeners every session may reach (the system
    /// bus) equal to `listeners`. Returns whether anything changed.
    pub fn set_bus_sockets(&mut self, listeners: &BTreeSet<ListenerKey>) -> anyhow::Result<bool> {
        set_keys(
            &mut self.bus_sockets,
            listeners,
            "the bus socket map is full",
        )
    }

    /// Makes the map of Airlock's own service ports equal to `ports` (port
    /// to the uid its listener must have): sessions reach a listener there
    /// only if it is that uid's.
    pub fn set_service_ports(&mut self, ports: &BTreeMap<u16, u32>) -> anyhow::Result<()> {
        let wanted: BTreeMap<u32, u32> = ports.iter().map(|(&p, &uid)| (p as u32, uid)).collect();
        let present: BTreeSet<u32> = self.service_ports.keys().collect::<Result<_, _>>()?;
        for (port, uid) in &wanted {
            self.service_ports
                .insert(port, uid, 0)
                .context("the service port map is full")?;
        }
        for stale in present.iter().filter(|p| !wanted.contains_key(p)) {
            let _ = self.service_ports.remove(stale);
        }
        Ok(())
    }

    /// Events the program could not queue because the ring buffer was full.
    pub fn events_lost(&self) -> u64 {
        self.stats
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }
}

/// Makes the keys of a presence map equal to `wanted` (kept entries are
/// not touched, so no lookup ever misses one).
fn set_keys<K: aya::Pod + Ord>(
    map: &mut HashMap<MapData, K, u8>,
    wanted: &BTreeSet<K>,
    full: &'static str,
) -> anyhow::Result<bool> {
    let present: BTreeSet<K> = map.keys().collect::<Result<_, _>>()?;
    for key in wanted.difference(&present) {
        map.insert(key, 1, 0).context(full)?;
    }
    for key in present.difference(wanted) {
        let _ = map.remove(key);
    }
    Ok(present != *wanted)
}

/// Nanoseconds on the boot clock, which `bpf_ktime_get_boot_ns` reads.
pub fn boot_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .expect("CLOCK_BOOTTIME is always available on Linux");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}
