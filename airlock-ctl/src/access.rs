//! `airlockctl access SERVICE OP [-p JSON]`: one operation through
//! airlock-proxy's Unix socket, its answer on stdout.
//!
//! A mail service's OP is one of the read operations, sent as
//! `POST /SERVICE/OP` with the JSON parameters; an HTTP service's OP is a
//! path, sent as `GET /SERVICE/PATH`. When no live grant of the caller
//! covers the service it files a request and, since the person at the
//! terminal is the approver here, goes through `airlockctl approve` for it
//! (the request, the grant to sign, a TOTP code) before the operation.

use std::path::Path;

use airlock_common::grant::Scope;
use airlock_common::services::{ServiceKind, ServiceSet};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

use crate::bus;
use crate::printable::text;

/// The largest answer printed.
const MAX_ANSWER: usize = 64 << 20;

pub struct Access<'a> {
    pub service: &'a str,
    pub op: &'a str,
    pub params: Option<&'a str>,
    pub socket: &'a Path,
    pub services_dir: &'a Path,
    pub code_stdin: bool,
}

pub async fn run(access: &Access<'_>) -> anyhow::Result<i32> {
    let set = ServiceSet::load_dir(access.services_dir).map_err(|diagnostics| {
        anyhow::anyhow!(
            "{} is invalid ({} errors; `airlockctl services validate` shows them)",
            access.services_dir.display(),
            diagnostics.len()
        )
    })?;
    let def = set.get(access.service).with_context(|| {
        format!(
            "no service {:?} is defined in {} (see `airlockctl services list`)",
            access.service,
            access.services_dir.display()
        )
    })?;
    let request = match &def.kind {
        ServiceKind::Tool(tool) => anyhow::bail!(
            "{} is a {} credential for the tool itself: the tool asks for it through \
             `airlockctl credential-helper` (set up with `airlockctl credentials wire-up {} {}`), \
             not through `airlockctl access`",
            access.service,
            tool.tool.as_str(),
            match tool.tool {
                airlock_common::services::Tool::Kubernetes => "kube",
                other => other.as_str(),
            },
            access.service
        ),
        ServiceKind::Imap(_) => {
            let params = access.params.unwrap_or("{}");
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(params).context(
                "-p takes a JSON object of the operation's parameters, such as '{\"limit\":5}'",
            )?;
            anyhow::ensure!(
                !access.op.contains('/'),
                "{} is a mailbox: OP is one of {}",
                access.service,
                airlock_common::mail::MailOp::ALL
                    .map(|o| o.as_str())
                    .join(", ")
            );
            Request::builder()
                .method(Method::POST)
                .uri(format!("/{}/{}", access.service, access.op))
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(params.to_owned())))?
        }
        ServiceKind::Http(_) => {
            anyhow::ensure!(
                access.params.is_none(),
                "{} is an HTTP service: OP is a path (fetched with GET), and -p is for mail \
                 operations",
                access.service
            );
            let path = access.op.trim_start_matches('/');
            Request::builder()
                .method(Method::GET)
                .uri(format!("/{}/{path}", access.service))
                .body(Full::new(Bytes::new()))?
        }
    };
    request
        .uri()
        .path_and_query()
        .context("OP makes a malformed path")?;
    if !covered(access.service).await? {
        ask(access).await?;
    }
    let host = hyper::header::HeaderValue::from_static("localhost");
    let mut request = request;
    request.headers_mut().insert(hyper::header::HOST, host);
    let (status, body) = send(access.socket, request).await?;
    if status.is_success() {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(&body)?;
        if !body.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
        return Ok(0);
    }
    // A mail error is {"error": "..."}; an HTTP refusal is text.
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
    eprintln!("airlockctl: {} ({status})", text(&message));
    Ok(1)
}

/// Whether a live grant of this user names `service`.
async fn covered(service: &str) -> anyhow::Result<bool> {
    let gateway = bus::gateway().await?;
    let grants = gateway
        .list_grants()
        .await
        .map_err(|e| bus::explain("grants", e))?;
    let uid = nix::unistd::getuid().as_raw();
    let now = airlock_common::timefmt::now_unix();
    Ok(grants.iter().any(|g| {
        g.subject_uid == uid
            && g.expires_at > now
            && matches!(Scope::parse(&g.scope), Ok(Scope::Services { services })
                if services.iter().any(|s| s == service))
    }))
}

/// Files a request for the service and approves it here.
async fn ask(access: &Access<'_>) -> anyhow::Result<()> {
    let gateway = bus::gateway().await?;
    let scope = format!("services:{}", access.service);
    let reason = format!("airlockctl access {} {}", access.service, access.op);
    let id = gateway
        .request_approval(&scope, &reason, 0)
        .await
        .map_err(|e| bus::explain("request", e))?;
    eprintln!(
        "airlockctl: no live grant covers {}; request {id} asks for one (read-only)",
        access.service
    );
    let approved = crate::approvals::approve_showing(
        &mut std::io::stderr(),
        Some(&id),
        None,
        false,
        access.code_stdin,
    )
    .await;
    approved.map(|_| ()).with_context(|| {
        format!(
            "request {id} waits for an approver (`airlockctl approve {id}`); run this again \
             once it is approved"
        )
    })
}

async fn send(
    socket: &Path,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| {
            format!(
                "cannot reach airlock-proxy at {} (is the airlock-proxy service running?)",
                socket.display()
            )
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("airlock-proxy")?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .context("airlock-proxy")?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer (at most {} MiB): {e}", MAX_ANSWER >> 20))?
        .to_bytes();
    Ok((status, body))
}
