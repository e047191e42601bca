//! airlock-gateway: owns policy, approval requests, grants and the audit log.
//!
//! Runs as its own Unix user and serves `org.airlock.Gateway1` on the system
//! bus. It cannot mint grants: those are signed by `airlock-totp` after a
//! valid code, and the gateway only verifies and stores them.

#![forbid(unsafe_code)]

mod cli;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_common::config::Config;
use airlock_common::credential::bus::Keys1Proxy;
use airlock_common::dbus::{Enforcer1Proxy, Totp1Proxy};
use airlock_common::names;
use airlock_common::timefmt::now_unix;
use airlock_daemon::bus::{self, Service};
use airlock_daemon::confine;
use airlock_daemon::lock::MutexExt;
use airlock_daemon::state_dir::{self, Sharing};
use clap::Parser;

use crate::cli::Args;
use futures_util::StreamExt;
use tokio::signal::unix::{signal, SignalKind};

use airlock_gateway::caller::Callers;
use airlock_gateway::core::Core;
use airlock_gateway::countersign::Countersigner;
use airlock_gateway::credentials::cache::InjectionCache;
use airlock_gateway::credentials::service::{CredentialsService, Peers};
use airlock_gateway::credentials::services::Services;
use airlock_gateway::credentials::CredentialStore;
use airlock_gateway::service::{push_session, sync_enforcer, Gateway};

fn main() -> anyhow::Result<()> {
    airlock_daemon::logging::init();
    let args = Args::parse();
    let config = Config::load(&args.config).map_err(anyhow::Error::msg)?;
    let gw = config.gateway;
    let times = gw.times().map_err(anyhow::Error::msg)?;
    let policy_dir = args.policy_dir.unwrap_or(gw.policy_dir);
    let state_dir = args.state_dir.unwrap_or(gw.state_dir);
    let audit_dir = args.audit_dir.unwrap_or(gw.audit_dir);
    state_dir::ensure(&state_dir, Sharing::OwnerOnly)?;
    state_dir::ensure(&audit_dir, Sharing::GroupReadable)?;
    // Configuration, policies and service definitions to read (again on
    // SIGHUP); state and the audit log to write.
    let plan = confine::Plan {
        read: vec![
            args.config.clone(),
            policy_dir.clone(),
            gw.services_dir.clone(),
        ],
        write: vec![state_dir.clone(), audit_dir.clone()],
    };
    confine::enter(
        "airlock-gateway",
        &plan,
        args.confinement_selftest.as_deref(),
    )?;

    let mut core = Core::open(
        &policy_dir,
        &state_dir,
        &audit_dir,
        times,
        gw.max_pending_per_user,
        &gw.default_role,
    )?;
    core.max_open_exchanges_per_user = gw.max_open_exchanges_per_user;
    let credentials = CredentialStore::open(&state_dir)?;
    let services = Arc::new(Services::load(gw.services_dir.clone()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(Arc::new(Mutex::new(core)), credentials, services))
}

async fn serve(
    core: Arc<Mutex<Core>>,
    credentials: CredentialStore,
    services: Arc<Services>,
) -> anyhow::Result<()> {
    let conn = bus::connect().await?;
    let totp = Totp1Proxy::new(&conn).await?;
    let enforcer = Enforcer1Proxy::new(&conn).await?;
    let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
    let callers = Arc::new(Callers::default());
    let gateway = Gateway::new(
        core.clone(),
        totp.clone(),
        enforcer.clone(),
        dbus.clone(),
        callers.clone(),
    );
    if let Err(e) = gateway.pin_signing_key().await {
        tracing::warn!(
            "cannot learn the grant-signing key from airlock-totp yet ({}); will retry at the first approval",
            e.message()
        );
    }
    // Credentials1 beside Gateway1, before the name is owned.
    let injections = Arc::new(InjectionCache::default());
    let credentials = CredentialsService::new(
        credentials,
        core.clone(),
        services.clone(),
        injections.clone(),
        Peers {
            keys: Keys1Proxy::new(&conn).await?,
            enforcer: enforcer.clone(),
            dbus: dbus.clone(),
            callers: callers.clone(),
        },
    );
    conn.object_server()
        .at(names::GATEWAY_OBJECT_PATH, credentials)
        .await?;
    bus::serve(
        &conn,
        Service {
            bus_name: names::GATEWAY_BUS_NAME,
            object_path: names::GATEWAY_OBJECT_PATH,
            object: gateway,
        },
    )
    .await?;

    // Sessions go to the enforcer now and whenever it (re)appears.
    let present = dbus
        .name_has_owner(names::ENFORCER_BUS_NAME.try_into()?)
        .await
        .unwrap_or(false);
    callers.set_enforcer_present(present);
    sync_enforcer(&core, &enforcer).await;
    let mut enforcer_appeared = dbus
        .receive_name_owner_changed_with_args(&[(0, names::ENFORCER_BUS_NAME)])
        .await?;
    // Every connection that leaves: its cached credentials go with it.
    let mut departures = dbus.receive_name_owner_changed().await?;

    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut countersigner = Countersigner::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                core.locked().record_repeats(now_unix(), false);
                let touched = core.locked().expire(now_unix());
                match touched {
                    Ok(sessions) => {
                        // The kernel already stopped honouring the expired
                        // grants; this removes them from its maps.
                        for id in sessions {
                            let _ = push_session(&core, &enforcer, &id).await;
                        }
                    }
                    Err(e) => tracing::error!("expiring requests and grants failed: {}", e.message()),
                }
                countersigner.tick(&core, &totp).await;
                // A revoked grant's injections leave memory (it stopped
                // serving at once: each request looks its grant up).
                let now = now_unix();
                {
                    let core = core.locked();
                    injections.retain(now, |grant| core.grant_is_live(grant, now));
                }
            }
            Some(change) = departures.next() => {
                if let Ok(args) = change.args() {
                    if args.new_owner().is_none() {
                        callers.forget(args.name().as_str());
                    }
                }
            }
            Some(change) = enforcer_appeared.next() => {
                let present = change.args().is_ok_and(|a| a.new_owner().is_some());
                callers.set_enforcer_present(present);
                if present {
                    tracing::info!("airlock-enforcer appeared on the bus");
                    sync_enforcer(&core, &enforcer).await;
                } else {
                    tracing::warn!("airlock-enforcer left the bus; its pinned programs keep enforcing");
                }
            }
            _ = hangup.recv() => {
                services.reload();
                let reloaded = core.locked().reload_policy();
                match reloaded {
                    Ok(message) => {
                        tracing::info!("SIGHUP: {message}");
                        sync_enforcer(&core, &enforcer).await;
                    }
                    Err(e) => tracing::error!("SIGHUP: {}", e.message()),
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("stopping");
    core.locked().record_repeats(now_unix(), true);
    // A failure is logged inside; nothing is lost, the audit log holds it.
    core.locked().save_state();
    bus::notify_stopping();
    Ok(())
}
