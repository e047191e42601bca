//! Requests to airlock-proxy over its Unix socket: the proxy identifies this
//! process by SO_PEERCRED and injects the credential, so the secret never
//! passes through the MCP server or the agent.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Largest response body handed back to the agent.
pub const MAX_RESPONSE: usize = 1 << 20;

pub struct ProxyClient {
    socket: PathBuf,
}

pub struct ProxyReply {
    pub status: u16,
    pub body: String,
}

impl ProxyClient {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    /// One request on a fresh connection (the proxy is local; a connection
    /// costs microseconds and keeps no state between tool calls).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        json: bool,
    ) -> anyhow::Result<ProxyReply> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach airlock-proxy at {} ({e}); is it running?",
                    self.socket.display()
                )
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost");
        if json {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the proxy's answer: {e}"))?
            .to_bytes();
        Ok(ProxyReply {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
