//! airlock-enforcer: the only Airlock process with BPF capabilities.
//!
//! Loads the eBPF programs (BPF LSM when the kernel has it, the exec-commit
//! kill otherwise, and says which), pins them so that enforcement survives
//! the daemon, drops every capability it no longer needs, and serves
//! `org.airlock.Enforcer1` to the gateway: sessions' policies go into kernel
//! maps, kernel events go to the gateway's audit log.

mod btf;
mod cgroup;
mod cli;
mod events;
mod grants;
mod identity;
mod loader;
mod local_addrs;
mod message;
mod offsets;
mod procfd;
mod scope;
mod service;
mod sessions;
mod supervisor;
mod system_bus;
mod totp_key;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_common::dbus::Gateway1Proxy;
use airlock_common::names;
use airlock_daemon::bus::{self, Service};
use airlock_daemon::lock::MutexExt;
use anyhow::Context;
use caps::{CapSet, Capability};
use clap::Parser;

use crate::cli::Args;
use tokio::signal::unix::{signal, SignalKind};

use crate::loader::{boot_ns, Mode};
use crate::sessions::Sessions;
use crate::totp_key::TotpKey;

/// What the enforcer keeps after loading: signalling and reading other
/// users' processes (to hold and continue them, and to write messages into
/// their stderr), and writing root-owned cgroup files.
const KEPT: [Capability; 4] = [
    Capability::CAP_KILL,
    Capability::CAP_SYS_PTRACE,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
];

fn drop_capabilities() -> anyhow::Result<()> {
    let kept: caps::CapsHashSet = KEPT.into_iter().collect();
    // The bounding set first: shrinking it needs CAP_SETPCAP, which the
    // permitted set loses below.
    for cap in caps::read(None, CapSet::Bounding)? {
        if !kept.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .with_context(|| format!("dropping {cap} from the bounding set"))?;
        }
    }
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        caps::set(None, set, &kept).with_context(|| format!("dropping {set:?} capabilities"))?;
    }
    Ok(())
}

/// Hands the heap memory freed once loading is done (chiefly aya's parsed
/// copy of the kernel BTF, some 17 MiB) back to the kernel: glibc keeps freed
/// memory for reuse, and the enforcer never needs that much again.
fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory; it has no
    // preconditions and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn main() -> anyhow::Result<()> {
    airlock_daemon::logging::init();
    let args = Args::parse();
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "airlock-enforcer must run as root (it drops to a few capabilities once loaded)"
    );
    // Our parsed kernel BTF holds some 7 MiB; only the offsets outlive this
    // block.
    let offsets = {
        let btf = btf::Btf::from_sys_fs()?;
        offsets::resolve(&btf).context("resolving kernel struct offsets from BTF")?
    };
    let kernel = loader::load(&args.pin_dir, &offsets)?;
    return_freed_memory();
    let mode = kernel.mode.clone();
    match &mode {
        Mode::Lsm => tracing::info!("enforcing: {}", mode.describe()),
        Mode::Degraded { .. } => tracing::warn!("{}", mode.describe()),
    }
    if args.check {
        println!("{}: {}", mode.enforcement(), mode.describe());
        return Ok(());
    }
    anyhow::ensure!(
        !args.cgroup_dir.is_empty() && !args.cgroup_dir.contains(['/', '.']),
        "--cgroup-dir is one directory name"
    );
    // Under systemd the sessions are its scopes; elsewhere the enforcer's
    // own cgroups.
    let cgroups = if scope::systemd_booted() {
        tracing::info!(
            "systemd is the init system: sessions are scopes in {}",
            cgroup::SLICE
        );
        cgroup::Cgroups::systemd()?
    } else {
        cgroup::Cgroups::open(&args.cgroup_dir)?
    };
    drop_capabilities()?;
    let uid_of = |name: &str| {
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    };
    let gateway_uid = uid_of(&args.gateway_user);
    let totp_uid = uid_of(&args.totp_user);
    if totp_uid.is_none() {
        tracing::error!(
            "there is no user {}: no grant can be checked, so none is installed",
            args.totp_user
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Sessions also reach the credential proxy: its socket (`proxy.socket`)
    // and its loopback port (`proxy.listen`) while the proxy's user listens
    // there.
    let proxy = airlock_common::config::Config::load(&args.config)
        .map(|c| c.proxy)
        .unwrap_or_else(|e| {
            tracing::warn!("{e}; assuming the proxy's default socket and port");
            Default::default()
        });
    let service_ports = proxy_port(&proxy.listen, uid_of(names::PROXY_USER));
    runtime.block_on(serve(
        Sessions::new(kernel, cgroups),
        mode,
        (gateway_uid, totp_uid),
        (proxy.socket, service_ports),
    ))
}

/// The proxy's loopback port and its user's uid, for `AL_SERVICE_PORTS`;
/// none (and a warning) when either is missing.
fn proxy_port(listen: &str, proxy_uid: Option<u32>) -> BTreeMap<u16, u32> {
    let Some(uid) = proxy_uid else {
        tracing::warn!(
            "there is no user {}: sessions may not reach the proxy's port",
            names::PROXY_USER
        );
        return BTreeMap::new();
    };
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() => BTreeMap::from([(addr.port(), uid)]),
        Ok(addr) => {
            tracing::warn!("proxy.listen {addr} is not loopback: sessions may not reach it");
            BTreeMap::new()
        }
        Err(e) => {
            tracing::warn!("proxy.listen {listen:?}: {e}; sessions may not reach it");
            BTreeMap::new()
        }
    }
}

async fn serve(
    mut sessions: Sessions,
    mode: Mode,
    (gateway_uid, totp_uid): (Option<u32>, Option<u32>),
    (proxy_socket, service_ports): (std::path::PathBuf, BTreeMap<u16, u32>),
) -> anyhow::Result<()> {
    let ring = sessions
        .kernel
        .events
        .take()
        .expect("the ring buffer is taken once");
    // The machine's addresses and the system bus's socket are in the maps
    // before the first session can start.
    let address_changes = local_addrs::Changes::subscribe()?;
    sessions.kernel.set_local_addrs(&local_addrs::current()?)?;
    sessions.kernel.set_service_ports(&service_ports)?;
    let bus_paths =
        system_bus::socket_paths(std::env::var("DBUS_SYSTEM_BUS_ADDRESS").ok().as_deref());
    if bus_paths.is_empty() {
        tracing::warn!(
            "the system bus address names no socket file: under BPF LSM, sessions cannot reach it"
        );
    }
    let allowed = bus_paths
        .into_iter()
        .map(|path| system_bus::AllowedSocket {
            what: "system bus",
            path,
        })
        .chain(std::iter::once(system_bus::AllowedSocket {
            what: "credential proxy",
            path: proxy_socket,
        }))
        .collect();
    let mut bus = system_bus::AllowedSockets::new(allowed);
    if let Some(listeners) = bus.refresh() {
        sessions.kernel.set_bus_sockets(&listeners)?;
    }
    let sessions = Arc::new(Mutex::new(sessions));
    let addresses = tokio::spawn(local_addrs::watch(address_changes, sessions.clone()));
    let conn = bus::connect().await?;
    let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
    let gateway = Gateway1Proxy::new(&conn).await?;
    let totp_key = Arc::new(TotpKey::new(conn.clone(), dbus.clone(), totp_uid));
    let layout = sessions.locked().cgroups_layout();
    let scopes = match layout {
        cgroup::Layout::SystemdScopes => Some(scope::Scopes::connect().await?),
        cgroup::Layout::Own => None,
    };
    // Enforcement does not wait for airlock-totp: until it gives its key,
    // sessions are governed and no grant is installed.
    tokio::spawn({
        let (totp_key, sessions) = (totp_key.clone(), sessions.clone());
        async move {
            let learned = |key: &[u8]| sessions.locked().recheck_grants(key);
            if let Err(e) = totp_key.watch(learned).await {
                tracing::error!("stopped watching for airlock-totp: {e}");
            }
        }
    });
    bus::serve(
        &conn,
        Service {
            bus_name: names::ENFORCER_BUS_NAME,
            object_path: names::ENFORCER_OBJECT_PATH,
            object: service::Enforcer::new(
                supervisor::Supervisor {
                    sessions: sessions.clone(),
                    gateway: gateway.clone(),
                    runtime: tokio::runtime::Handle::current(),
                },
                totp_key,
                mode,
                dbus,
                gateway_uid,
                scopes,
            ),
        },
    )
    .await?;
    let events = tokio::spawn(events::run(ring, sessions.clone(), gateway.clone()));

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let exited = {
                    let mut sessions = sessions.locked();
                    if let Err(e) = sessions
                        .kernel
                        .heartbeat(boot_ns() + airlock_common::kernel::HEARTBEAT_VALIDITY_NS) {
                        tracing::error!("heartbeat: {e:#}");
                    }
                    // A restarted bus has a new socket file.
                    if let Some(listeners) = bus.refresh() {
                        match sessions.kernel.set_bus_sockets(&listeners) {
                            Ok(true) => tracing::info!(
                                "the listening sockets sessions may reach changed (system bus, \
                                 credential proxy): {} registered",
                                listeners.len()
                            ),
                            Ok(false) => {}
                            Err(e) => tracing::error!("registering the system bus socket: {e:#}"),
                        }
                    }
                    sessions.reap_exited()
                };
                for id in exited {
                    tracing::info!("session {id} exited");
                    if let Err(e) = gateway.session_exited(&id).await {
                        tracing::warn!("cannot tell the gateway that {id} exited: {e}");
                    }
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
        if events.is_finished() {
            anyhow::bail!("the kernel event reader stopped");
        }
        if addresses.is_finished() {
            anyhow::bail!("the watch on this machine's addresses stopped");
        }
    }
    // The pinned programs keep enforcing; tasks are no longer held for
    // messages once the heartbeat lapses.
    let _ = sessions.locked().kernel.heartbeat(0);
    tracing::info!("stopping; the pinned programs stay in force");
    bus::notify_stopping();
    Ok(())
}
