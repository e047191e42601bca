//! Connections to HTTP upstreams, pooled: hyper-util's client keeps each
//! upstream connection alive after its response and hands it to the next
//! request for the same scheme and authority, so that a request through
//! the proxy costs no TCP (or TLS) handshake once the pool is warm.
//!
//! A pooled connection carries requests of different callers in turn, as
//! any HTTP proxy's does: each request brings its own credential (injected
//! per request), and HTTP/1.1 framing keeps each response with its request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How long the upstream may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle upstream connection is kept.
const IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per upstream at most.
const MAX_IDLE_PER_UPSTREAM: usize = 16;

pub type Pool = Client<Connector, Incoming>;

/// The pool, opening connections with `tls` for `https` upstreams.
pub fn pool(tls: TlsConnector) -> Pool {
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(IDLE)
        .pool_max_idle_per_host(MAX_IDLE_PER_UPSTREAM)
        .build(Connector { tls })
}

/// Opens a TCP connection to the URI's authority, with TLS over it for
/// `https` (verified against the configured authorities).
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
}

/// An open upstream connection.
pub enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

/// The host of `host:port` or `[v6]:port`.
pub fn host_of(authority: &str) -> &str {
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .ok_or_else(|| io::Error::other("the upstream has no authority"))?
                .as_str()
                .to_owned();
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the upstream did not accept a connection",
                    )
                })?
                .map_err(|e| io::Error::new(e.kind(), format!("cannot reach the upstream: {e}")))?;
            // Requests are small and answered at once: no Nagle delay.
            stream.set_nodelay(true)?;
            if uri.scheme_str() != Some("https") {
                return Ok(Stream::Plain(TokioIo::new(stream)));
            }
            let name = rustls_pki_types::ServerName::try_from(host_of(&authority).to_owned())
                .map_err(|_| io::Error::other("bad upstream host name"))?;
            let stream = tls
                .connect(name, stream)
                .await
                .map_err(|e| io::Error::other(format!("TLS with the upstream failed: {e}")))?;
            Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_authorities() {
        assert_eq!(host_of("api.github.com:443"), "api.github.com");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
    }
}
