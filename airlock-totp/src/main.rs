//! airlock-totp: the only holder of the TOTP secret and the grant-signing key.
//!
//! Runs as its own Unix user with a private state directory. An approver's
//! `airlockctl` sends it the code together with the grant request it showed;
//! only if the code is valid does it sign exactly that request. The gateway
//! never sees a code.

#![forbid(unsafe_code)]

mod cli;

use airlock_common::config::Config;
use airlock_common::dbus::Gateway1Proxy;
use airlock_common::names;
use airlock_common::timefmt::parse_duration;
use airlock_daemon::bus::{self, Service};
use airlock_daemon::confine;
use airlock_daemon::state_dir::{self, Sharing};
use airlock_totp::audit_head::AuditHeads;
use airlock_totp::authenticator::{Authenticator, TotpConfig};
use airlock_totp::decision::DecisionSigner;
use airlock_totp::keys::{Kek, KeyService};
use airlock_totp::service::{Signers, TotpService};
use airlock_totp::signer::GrantSigner;
use anyhow::Context;
use clap::Parser;

use crate::cli::Args;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> anyhow::Result<()> {
    airlock_daemon::logging::init();
    let args = Args::parse();
    let config = Config::load(&args.config).map_err(anyhow::Error::msg)?.totp;
    let state_dir = args.state_dir.unwrap_or(config.state_dir.clone());
    // The secret lives here: nobody else may even list the directory.
    state_dir::ensure(&state_dir, Sharing::OwnerOnly)?;
    // Its configuration to read; the secret, the key and the audit heads
    // to write, nothing else.
    let plan = confine::Plan {
        read: vec![args.config.clone()],
        write: vec![state_dir.clone()],
    };
    confine::enter("airlock-totp", &plan, args.confinement_selftest.as_deref())?;
    let gateway_uid = nix::unistd::User::from_name(&config.gateway_user)?
        .map(|u| u.uid.as_raw())
        .with_context(|| format!("no user {:?} (totp.gateway_user)", config.gateway_user))?;
    let max_ttl = parse_duration(&config.max_grant_ttl).map_err(anyhow::Error::msg)?;

    let authenticator = Authenticator::open(
        &state_dir,
        TotpConfig {
            period_secs: config.period_secs,
            issuer: config.issuer.clone(),
            account: hostname(),
        },
    )?;
    let signer = GrantSigner::open_or_create(&state_dir)?;
    let decisions = DecisionSigner::open_or_create(&state_dir)?;
    let audit_heads = AuditHeads::open(&state_dir)?;
    let kek = Kek::open_or_create(&state_dir)?;
    let public_key = signer.public_key().to_vec();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let conn = bus::connect().await?;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
        let gateway = Gateway1Proxy::new(&conn).await?;
        let service = TotpService::new(
            authenticator,
            audit_heads,
            Signers {
                grants: signer,
                decisions,
            },
            max_ttl.as_secs(),
            gateway_uid,
            dbus.clone(),
            gateway.clone(),
        );
        // Keys1 beside Totp1, before the name is owned: callers see both.
        let keys = KeyService::new(
            kek,
            public_key,
            service.authenticator_handle(),
            gateway_uid,
            dbus.clone(),
            gateway,
        );
        conn.object_server()
            .at(names::TOTP_OBJECT_PATH, keys)
            .await?;
        bus::serve(
            &conn,
            Service {
                bus_name: names::TOTP_BUS_NAME,
                object_path: names::TOTP_OBJECT_PATH,
                object: service,
            },
        )
        .await?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("stopping");
        bus::notify_stopping();
        anyhow::Ok(())
    })
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}
