//! A real HTTP/1 upstream on loopback for proxy tests: a hyper server on
//! its own thread that records every request it gets and answers
//! `upstream saw METHOD PATH` (the query only goes to the record); `/…/stream` answers in chunks a little
//! apart, `/…/echo` puts the request's Authorization in a response header.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// What the upstream received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    /// For a TLS upstream, its self-signed certificate (PEM), for 127.0.0.1.
    pub certificate_pem: Option<String>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Body = BoxBody<Bytes, Infallible>;

async fn answer(
    seen: Arc<Mutex<Vec<Seen>>>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = request.method().to_string();
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect::<Vec<_>>();
    let authorization = request.headers().get("authorization").cloned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        headers,
        body,
    });
    if target.contains("/stream") {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            for i in 0..3 {
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from(format!("chunk {i}\n")))))
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let stream = tokio_stream_from(rx);
        return Ok(Response::new(BodyExt::boxed(StreamBody::new(stream))));
    }
    let mut response = Response::new(
        Full::new(Bytes::from(format!(
            "upstream saw {method} {}\n",
            target.split('?').next().unwrap_or_default()
        )))
        .boxed(),
    );
    if target.contains("/echo") {
        if let Some(value) = authorization {
            response.headers_mut().insert("x-echo", value);
        }
    }
    Ok(response)
}

/// A receiver as a stream of frames.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl Upstream {
    /// `api.toml`: a service `api` reaching this upstream's `/v1`, with the
    /// bearer token of its field `token` injected.
    pub fn bearer_service(&self) -> (String, String) {
        (
            "api.toml".into(),
            format!(
                "[[service]]\nname = \"api\"\nkind = \"http\"\nupstream = \"http://{}/v1\"\n\
                 fields = [\"token\"]\ninject = {{ style = \"bearer\", field = \"token\" }}\n",
                self.addr
            ),
        )
    }

    pub fn start() -> Upstream {
        Self::start_with(None)
    }

    /// An HTTPS upstream with a fresh self-signed certificate for 127.0.0.1.
    pub fn start_tls() -> Upstream {
        use tokio_rustls::rustls;
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(
            rustls_pki_types::PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()),
        );
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        let mut upstream =
            Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))));
        upstream.certificate_pem = Some(certified.cert.pem());
        upstream
    }

    fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let recorded = seen.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let seen = recorded.clone();
                            let tls = tls.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |r| answer(seen.clone(), r));
                                let http = hyper::server::conn::http1::Builder::new();
                                match tls {
                                    Some(tls) => {
                                        if let Ok(stream) = tls.accept(stream).await {
                                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                                        }
                                    }
                                    None => {
                                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                                    }
                                }
                            });
                        }
                        _ = &mut stopped => break,
                    }
                }
            });
        });
        Upstream {
            addr: addr_rx.recv().unwrap(),
            certificate_pem: None,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
