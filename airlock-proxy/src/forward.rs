//! One request: `…/SERVICE/PATH` goes to the service's upstream with the
//! credential the gateway hands over for this caller, or is refused with a
//! body that says why and how to ask. Bodies stream both ways.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use airlock_common::credential::bus::{Credentials1Proxy, ProxyGrant};
use airlock_common::dbus::AirlockError;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, HOST};
use hyper::{Request, Response, StatusCode};
use tokio_rustls::TlsConnector;
use zeroize::Zeroize;

use crate::caller::Caller;
use crate::upstream::Pool;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Headers that belong to one hop, never forwarded either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub struct Forwarder {
    pub gateway: Credentials1Proxy<'static>,
    /// Kept-alive connections to HTTP(S) upstreams (TLS against the
    /// configured authorities).
    pub upstreams: Pool,
    /// The same for IMAP servers (no HTTP ALPN).
    pub imap_tls: TlsConnector,
    /// Services' kinds as the gateway said them lately.
    pub kinds: KindCache,
}

/// How long the proxy trusts what the gateway said a service's kind is
/// (services.d is re-read on SIGHUP); asking per request would add a bus
/// round trip to every HTTP request.
const KIND_TTL: Duration = Duration::from_secs(5);
/// Names remembered at most (a caller may try any number of names).
const KIND_CACHE_SIZE: usize = 256;

#[derive(Default)]
pub struct KindCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (Kind, std::time::Instant)>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Http,
    Imap,
}

impl Forwarder {
    /// The kind of `service`, from the cache or the gateway.
    async fn kind(&self, service: &str) -> Result<Kind, AirlockError> {
        let now = std::time::Instant::now();
        {
            let entries = self.kinds.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((kind, at)) = entries.get(service) {
                if now.duration_since(*at) < KIND_TTL {
                    return Ok(*kind);
                }
            }
        }
        let kind = match self
            .gateway
            .service_kind(service)
            .await
            .map_err(AirlockError::from_remote)?
            .as_str()
        {
            "imap" => Kind::Imap,
            _ => Kind::Http,
        };
        let mut entries = self.kinds.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= KIND_CACHE_SIZE {
            entries.clear();
        }
        entries.insert(service.to_owned(), (kind, now));
        Ok(kind)
    }
}

/// A TLS client (ring, TLS 1.2 and 1.3, offering `alpn`) that trusts the
/// certificate authorities in the PEM file `ca_file`.
pub fn tls_connector(ca_file: &std::path::Path, alpn: &[&[u8]]) -> anyhow::Result<TlsConnector> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ca_file.display()))?;
    for certificate in certificates {
        let certificate = certificate.map_err(|e| anyhow::anyhow!("{}: {e}", ca_file.display()))?;
        // One authority the library cannot use does not stop the rest.
        let _ = roots.add(certificate);
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "{} holds no usable certificate authority",
        ca_file.display()
    );
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// How the caller reached the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Unix,
    Tcp,
}

pub(crate) fn text(status: StatusCode, message: &str) -> Response<Body> {
    let body = format!("airlock: {message}\n");
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `/SERVICE/REST` into the service and `/REST`, refusing paths whose
/// meaning an upstream could read differently (dot segments, encoded
/// slashes or dots, backslashes, empty segments).
pub fn split_target(path: &str) -> Result<(&str, &str), String> {
    let usage = "requests go to /SERVICE/PATH (see `airlockctl services list`)";
    let rest = path.strip_prefix('/').ok_or(usage)?;
    let (service, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if service.is_empty() {
        return Err(usage.into());
    }
    let lower = tail.to_ascii_lowercase();
    if tail.contains('\\')
        || ["%2e", "%2f", "%5c", "%00"]
            .iter()
            .any(|e| lower.contains(e))
        || tail.split('/').skip(1).any(|s| s == "." || s == "..")
        || tail.contains("//")
    {
        return Err(format!(
            "path {tail:?} has a dot segment, an empty segment or an encoded slash, dot or \
             backslash; write it plainly"
        ));
    }
    Ok((service, tail))
}

/// Whether a loopback listener's `Host` is a loopback name (DNS rebinding:
/// a web page the agent's browser loads must not reach the proxy by name).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    matches!(name, "127.0.0.1" | "localhost" | "::1")
}

pub(crate) fn refusal_status(error: &AirlockError) -> StatusCode {
    match error {
        AirlockError::AccessDenied(_) => StatusCode::FORBIDDEN,
        AirlockError::NotFound(_) => StatusCode::NOT_FOUND,
        AirlockError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        AirlockError::Unavailable(_) | AirlockError::ZBus(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// Drops hop-by-hop headers and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

pub async fn handle(
    forwarder: Arc<Forwarder>,
    caller: Option<Caller>,
    via: Via,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    Ok(match forward(&forwarder, caller, via, request).await {
        Ok(response) => response,
        Err(refusal) => refusal,
    })
}

async fn forward(
    forwarder: &Forwarder,
    caller: Option<Caller>,
    via: Via,
    request: Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    if via == Via::Tcp && !loopback_host(request.headers()) {
        return Err(text(
            StatusCode::MISDIRECTED_REQUEST,
            "the Host header must name 127.0.0.1, localhost or [::1]",
        ));
    }
    let Some(caller) = caller else {
        return Err(text(
            StatusCode::FORBIDDEN,
            "cannot tell which user this connection belongs to; nothing is forwarded",
        ));
    };
    let path = request.uri().path().to_owned();
    let (service, tail) = split_target(&path).map_err(|m| text(StatusCode::NOT_FOUND, &m))?;
    let kind = forwarder
        .kind(service)
        .await
        .map_err(|error| text(refusal_status(&error), &error.message()))?;
    if kind == Kind::Imap {
        return Ok(crate::mail::serve(forwarder, caller, service, tail, request).await);
    }
    let method = request.method().as_str().to_owned();
    let mut grant = forwarder
        .gateway
        .authorize(service, &method, tail, caller)
        .await
        .map_err(|e| {
            let error = AirlockError::from_remote(e);
            text(refusal_status(&error), &error.message())
        })?;
    let result = send(&forwarder.upstreams, &grant, tail, request).await;
    let needles = secrets(&grant);
    grant.zeroize();
    let mut response = result?;
    // An upstream that echoes the credential in a header does not hand it
    // to the caller (a body is streamed as it comes).
    let leaking: Vec<HeaderName> = response
        .headers()
        .iter()
        .filter(|(_, v)| needles.iter().any(|n| contains(v.as_bytes(), n.as_bytes())))
        .map(|(name, _)| name.clone())
        .collect();
    for name in leaking {
        tracing::warn!("{service}'s upstream echoed the credential in header {name}; dropped");
        response.headers_mut().remove(name);
    }
    drop(needles);
    Ok(response)
}

fn secrets(grant: &ProxyGrant) -> Vec<zeroize::Zeroizing<String>> {
    let mut out = Vec::new();
    let header = grant.header_value.as_str();
    let bare = header.split_once(' ').map_or(header, |(_, v)| v);
    for needle in [header, bare, grant.query_value.as_str()] {
        if needle.len() >= 8 {
            out.push(zeroize::Zeroizing::new(needle.to_owned()));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn send(
    upstreams: &Pool,
    grant: &ProxyGrant,
    tail: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    let (mut parts, body) = request.into_parts();
    // Absolute: the pool picks its connection by scheme and authority (and
    // sends the path and query only).
    let mut target = format!(
        "{}://{}{}{}",
        grant.scheme, grant.authority, grant.base_path, tail
    );
    let query = parts.uri.query().map(str::to_owned);
    let mut joined = query.unwrap_or_default();
    if !grant.query_name.is_empty() {
        if !joined.is_empty() {
            joined.push('&');
        }
        joined.push_str(&grant.query_name);
        joined.push('=');
        joined.push_str(&grant.query_value);
    }
    if !joined.is_empty() {
        target.push('?');
        target.push_str(&joined);
    }
    joined.zeroize();
    let uri = target
        .parse()
        .map_err(|_| text(StatusCode::BAD_REQUEST, "the request target is malformed"))?;
    target.zeroize();
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers);
    // The caller may not bring credentials of its own for the upstream.
    parts.headers.remove(AUTHORIZATION);
    parts.headers.remove(HOST);
    let authority = HeaderValue::from_str(&grant.authority)
        .map_err(|_| text(StatusCode::BAD_GATEWAY, "bad upstream authority"))?;
    parts.headers.insert(HOST, authority);
    if !grant.header_name.is_empty() {
        let name = HeaderName::from_bytes(grant.header_name.as_bytes())
            .map_err(|_| text(StatusCode::BAD_GATEWAY, "bad credential header name"))?;
        parts.headers.remove(&name);
        let mut value = HeaderValue::from_str(&grant.header_value).map_err(|_| {
            text(
                StatusCode::BAD_GATEWAY,
                "the stored credential cannot be sent in a header",
            )
        })?;
        value.set_sensitive(true);
        parts.headers.insert(name, value);
    }
    let upstream = Request::from_parts(parts, body);

    let response = upstreams
        .request(upstream)
        .await
        .map_err(|e| upstream_error(&e))?;
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, body.boxed()))
}

/// The pool's error as the caller's answer: the connector's own message
/// (timeout, unreachable, TLS) when it failed to connect.
fn upstream_error(error: &hyper_util::client::legacy::Error) -> Response<Body> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let status = if io.kind() == std::io::ErrorKind::TimedOut {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            return text(status, &io.to_string());
        }
        source = e.source();
    }
    text(StatusCode::BAD_GATEWAY, &format!("upstream: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_and_ambiguous_paths_are_refused() {
        assert_eq!(
            split_target("/github/repos/a/b").unwrap(),
            ("github", "/repos/a/b")
        );
        assert_eq!(split_target("/github").unwrap(), ("github", "/"));
        assert_eq!(split_target("/github/").unwrap(), ("github", "/"));
        for bad in [
            "/",
            "",
            "//x",
            "/github/a/../admin",
            "/github/./x",
            "/github/a%2F..",
            "/github/%2e%2e/x",
            "/github/a\\b",
            "/github//x",
        ] {
            assert!(split_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_loopback_hosts_pass() {
        let with = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(HOST, HeaderValue::from_str(host).unwrap());
            loopback_host(&headers)
        };
        assert!(with("127.0.0.1:7480"));
        assert!(with("localhost:7480"));
        assert!(with("[::1]:7480"));
        assert!(with("localhost"));
        assert!(!with("evil.example:7480"));
        assert!(!with("127.0.0.1.evil.example"));
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn the_systems_authorities_load_and_an_empty_file_is_an_error() {
        assert!(tls_connector(
            std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"),
            &[b"http/1.1"]
        )
        .is_ok());
        let empty = tempfile::NamedTempFile::new().unwrap();
        assert!(tls_connector(empty.path(), &[]).is_err());
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("close, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("accept"));
    }
}
