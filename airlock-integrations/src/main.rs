//! airlock-integrations: the Integrations Gateway HTTP API that third-party
//! enforcers (IDE plugins, agent plugins, CLI tools) speak.
//!
//! It is the most exposed process, so it holds nothing the gateway must
//! keep secret: no app secrets, PATs, routing tokens or signing keys. Each
//! request's credentials go to the gateway (`org.airlock.Gateway1`, the
//! `Api*` methods, which only this daemon's user may call), which checks
//! them against its state and answers; this process bounds and parses what
//! comes in (Host, body size, rate, JSON) and renders what goes out.

#![forbid(unsafe_code)]

mod cli;
mod error;
mod fetches;
mod guard;
mod ratelimit;
mod routes;
mod tls;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use airlock_common::config::Config;
use airlock_common::dbus::Gateway1Proxy;
use anyhow::Context;
use clap::Parser;

use crate::cli::Args;
use futures_util::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, watch};

use crate::guard::Hosts;
use crate::ratelimit::RateLimit;
use crate::routes::Api;

fn main() -> anyhow::Result<()> {
    airlock_daemon::logging::init();
    let args = Args::parse();
    let config = Config::load(&args.config).map_err(anyhow::Error::msg)?;
    let config = config.integrations;
    let listen: SocketAddr = config.listen.parse().context("integrations.listen")?;
    let tls_listen: Option<SocketAddr> = (!config.tls_listen.is_empty())
        .then(|| config.tls_listen.parse())
        .transpose()
        .context("integrations.tls_listen")?;
    let public_url = if config.public_url.is_empty() {
        format!("http://{listen}")
    } else {
        config.public_url.clone()
    };
    let _ = error::PUBLIC_URL.set(public_url);
    // Read before serving: a bad certificate stops the start, not a request.
    let acceptor = tls_listen
        .map(|_| tls::acceptor(&config.tls_cert, &config.tls_key))
        .transpose()?;
    // Everything it reads was read above; it keeps no state of its own, so
    // it may write nothing at all.
    airlock_daemon::confine::apply(
        "airlock-integrations",
        &airlock_daemon::confine::Plan::default(),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let conn = airlock_daemon::bus::connect().await?;
        let gateway = Gateway1Proxy::new(&conn).await?;
        let (announcements, _) = broadcast::channel(1024);
        let (stop, shutdown) = watch::channel(false);
        let tls_shutdown = shutdown.clone();
        let api = Arc::new(Api {
            gateway: gateway.clone(),
            hosts: Hosts::new(
                &[Some(listen), tls_listen]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>(),
                &config.allowed_hosts,
            ),
            limit: RateLimit::new(config.requests_per_minute),
            announcements: announcements.clone(),
            shutdown,
            idp_base_url: config.idp_base_url.clone(),
            calls: tokio::sync::Semaphore::new(routes::MAX_CALLS),
            fetches: Default::default(),
        });
        // Decisions wake the long-polls waiting for them; so does the
        // gateway's start (it may have recorded one it never announced).
        let mut decisions = gateway.receive_exchange_decided().await?;
        let announce = announcements.clone();
        tokio::spawn(async move {
            while let Some(signal) = decisions.next().await {
                if let Ok(args) = signal.args() {
                    let _ = announce.send(routes::Announcement::Decided {
                        request_id: Arc::from(args.request_id),
                        at: std::time::Instant::now(),
                    });
                }
            }
        });
        let mut owners = gateway.inner().receive_owner_changed().await?;
        tokio::spawn(async move {
            while let Some(owner) = owners.next().await {
                if owner.is_some() {
                    tracing::info!("airlock-gateway started; open long-polls look again");
                    let _ = announcements.send(routes::Announcement::GatewayStarted {
                        at: std::time::Instant::now(),
                    });
                }
            }
        });
        let app = routes::router(api, config.max_body_bytes);
        tracing::info!("serving the Integrations Gateway API on http://{listen}");
        if let (Some(address), Some(acceptor)) = (tls_listen, acceptor) {
            let tls_listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address}"))?;
            tracing::info!("and on https://{address}");
            tokio::spawn(tls::serve(
                tls_listener,
                acceptor,
                app.clone(),
                tls_shutdown,
            ));
        }
        airlock_daemon::bus::notify_ready(&format!("serving on {listen}"));
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
                airlock_daemon::bus::notify_stopping();
                let _ = stop.send(true);
            })
            .await?;
        Ok(())
    })
}
