//! airlock-proxy: agents reach HTTP services and mailboxes through it,
//! with the credential injected (or the login made), and never see the
//! credential. Mail services are served as `POST /SERVICE/OP` with JSON
//! (see the `mail` module).
//!
//! It runs as its own user (`airlock-proxy`), holds no credential and no
//! key: for each request it identifies the caller (the Unix socket by
//! `SO_PEERCRED`, the loopback port by the connecting socket's owner) and
//! asks the gateway over D-Bus (`Credentials1.Authorize`) for the header or
//! query parameter to inject. The gateway answers only for a caller a live
//! grant covers, and for a read-only grant only for a read-only method. Why
//! a separate process: an HTTP listener parses whatever any local process
//! sends it; the gateway, which holds the audit log, the grants and the
//! sealed store, stays behind D-Bus, where every message is typed and
//! bounded. A compromised proxy can use what live grants allow while they
//! live, and nothing without one (airlock-totp unwraps a data key only for
//! a live grant it signed).

#![forbid(unsafe_code)]

mod caller;
mod cli;
mod forward;
mod mail;
mod upstream;

use airlock_daemon::confine;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use airlock_common::config::Config;
use airlock_common::credential::bus::Credentials1Proxy;
use anyhow::Context;
use clap::Parser;

use crate::cli::Args;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};

use caller::Caller;
use forward::{Forwarder, Via};

/// A client must send its request head within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> anyhow::Result<()> {
    airlock_daemon::logging::init();
    let args = Args::parse();
    let config = Config::load(&args.config)
        .map_err(anyhow::Error::msg)?
        .proxy;
    let socket = args.socket.unwrap_or(config.socket);
    let ca_file = args.ca_file.unwrap_or(config.ca_file);
    let tls = forward::tls_connector(&ca_file, &[b"http/1.1"])?;
    let imap_tls = forward::tls_connector(&ca_file, &[b"imap"])?;
    let listen: SocketAddr = args
        .listen
        .unwrap_or(config.listen)
        .parse()
        .context("proxy.listen must be an address and port, such as 127.0.0.1:7480")?;
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "proxy.listen must be a loopback address: the proxy serves this machine only"
    );
    // The authorities were read above; it writes only its socket (and may
    // replace a stale one) in that socket's directory.
    let plan = confine::Plan {
        read: Vec::new(),
        write: socket.parent().map(Path::to_path_buf).into_iter().collect(),
    };
    confine::enter("airlock-proxy", &plan, args.confinement_selftest.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(&socket, listen, tls, imap_tls))
}

/// Binds the Unix socket, replacing a stale one (never another kind of
/// file); anyone may connect, since each caller is identified.
fn bind_unix(path: &Path) -> anyhow::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => anyhow::bail!("{} exists and is not a socket", path.display()),
        Err(_) => {}
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

async fn serve(
    socket: &Path,
    listen: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    imap_tls: tokio_rustls::TlsConnector,
) -> anyhow::Result<()> {
    let conn = airlock_daemon::bus::connect().await?;
    let gateway = Credentials1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let forwarder = Arc::new(Forwarder {
        gateway,
        upstreams: upstream::pool(tls),
        imap_tls,
        kinds: forward::KindCache::default(),
    });
    let unix = bind_unix(socket)?;
    let tcp = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let status = format!("serving {} and {}", socket.display(), tcp.local_addr()?);
    tracing::info!("{status}");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = unix.accept() => match accepted {
                Ok((stream, _)) => {
                    let caller = stream.peer_cred().ok().map(|cred| Caller {
                        uid: cred.uid(),
                        pid: cred.pid().and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
                        socket_cgroup: 0,
                    });
                    spawn_connection(stream, forwarder.clone(), caller, Via::Unix);
                }
                Err(e) => tracing::warn!("accept on {}: {e}", socket.display()),
            },
            accepted = tcp.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let caller = match stream.local_addr().map(|local| caller::tcp_caller(peer, local)) {
                        Ok(Ok(found)) => found,
                        Ok(Err(e)) | Err(e) => {
                            tracing::warn!("cannot identify the caller at {peer}: {e}");
                            None
                        }
                    };
                    spawn_connection(stream, forwarder.clone(), caller, Via::Tcp);
                }
                Err(e) => tracing::warn!("accept on {listen}: {e}"),
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("stopping");
    let _ = std::fs::remove_file(socket);
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    Ok(())
}

fn spawn_connection<S>(stream: S, forwarder: Arc<Forwarder>, caller: Option<Caller>, via: Via)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service =
            service_fn(move |request| forward::handle(forwarder.clone(), caller, via, request));
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service)
            .await;
        if let Err(e) = served {
            tracing::debug!("connection: {e}");
        }
    });
}
