//! Mail services (`kind = "imap"`): `POST /SERVICE/OP` with a JSON body of
//! parameters, answered in JSON. The operations are
//! [`MailOp`]'s, all reads; see docs/mail.md for the contract.
//!
//! For each operation the gateway is asked for the login (it refuses a
//! name that is not a read and a caller no live grant covers, and audits
//! both), a fresh connection is made (TLS from the first byte, or upgraded
//! with STARTTLS before anything else is sent; plain only to loopback),
//! the login is zeroized once sent, the operation runs through
//! [`imap::ReadOnlySession`], and the gateway is told how it ended (the
//! `operation` record with its count).

mod guard;
mod imap;
mod render;
mod starttls;

use std::time::Duration;

use airlock_common::credential::bus::{MailLogin, MailOutcome};
use airlock_common::dbus::AirlockError;
use airlock_common::mail::MailOp;
use airlock_common::services::MailSecurity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroize;

use crate::caller::Caller;
use crate::forward::{refusal_status, Body, Forwarder};
use guard::Guarded;
use imap::{FetchItems, ReadOnlySession, SearchKey};

/// The largest JSON body of parameters.
const MAX_PARAMS: usize = 16 * 1024;
/// How long the mail server may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one operation may take in all.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Messages listed or found, by default and at most.
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;
const DEFAULT_MAILBOX: &str = "INBOX";

/// A JSON answer.
pub fn answer(status: StatusCode, value: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    answer(status, &json!({ "error": format!("airlock: {message}") }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    mailbox: Option<String>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    mailbox: Option<String>,
    query: String,
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetParams {
    mailbox: Option<String>,
    uid: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MailboxParams {
    mailbox: Option<String>,
}

/// One operation, its parameters checked.
enum Operation {
    List {
        mailbox: String,
        limit: u32,
    },
    Search {
        mailbox: String,
        query: String,
        limit: u32,
    },
    Get {
        mailbox: String,
        uid: u32,
    },
    CountUnread {
        mailbox: String,
    },
}

fn mailbox(name: Option<String>) -> Result<String, String> {
    let name = name.unwrap_or_else(|| DEFAULT_MAILBOX.into());
    if name.is_empty() || name.len() > 256 || !imap::printable_ascii(&name) {
        return Err("mailbox is 1 to 256 printable ASCII characters, such as \"INBOX\"".into());
    }
    Ok(name)
}

fn limit(limit: Option<u32>) -> Result<u32, String> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        _ => Err(format!("limit is 1 to {MAX_LIMIT}")),
    }
}

fn parse(op: MailOp, body: &[u8]) -> Result<Operation, String> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    fn params<'a, T: Deserialize<'a>>(op: MailOp, body: &'a [u8]) -> Result<T, String> {
        serde_json::from_slice(body).map_err(|e| {
            format!(
                "{} takes a JSON object of parameters ({}): {e}",
                op.as_str(),
                usage(op)
            )
        })
    }
    Ok(match op {
        MailOp::ListMessages => {
            let p: ListParams = params(op, body)?;
            Operation::List {
                mailbox: mailbox(p.mailbox)?,
                limit: limit(p.limit)?,
            }
        }
        MailOp::Search => {
            let p: SearchParams = params(op, body)?;
            if p.query.trim().is_empty() || p.query.len() > 256 || !imap::printable_ascii(&p.query)
            {
                return Err("query is 1 to 256 printable ASCII characters".into());
            }
            Operation::Search {
                mailbox: mailbox(p.mailbox)?,
                query: p.query,
                limit: limit(p.limit)?,
            }
        }
        MailOp::GetMessage => {
            let p: GetParams = params(op, body)?;
            if p.uid == 0 {
                return Err("uid is a message's UID, 1 or more".into());
            }
            Operation::Get {
                mailbox: mailbox(p.mailbox)?,
                uid: p.uid,
            }
        }
        MailOp::CountUnread => {
            let p: MailboxParams = params(op, body)?;
            Operation::CountUnread {
                mailbox: mailbox(p.mailbox)?,
            }
        }
    })
}

fn usage(op: MailOp) -> &'static str {
    match op {
        MailOp::ListMessages => "mailbox?, limit?",
        MailOp::Search => "mailbox?, query, limit?",
        MailOp::GetMessage => "mailbox?, uid",
        MailOp::CountUnread => "mailbox?",
    }
}

/// Serves `POST /service/op`.
pub async fn serve(
    forwarder: &Forwarder,
    caller: Caller,
    service: &str,
    tail: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    if request.method() != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "{service} is a mailbox: send POST /{service}/OP with a JSON body, OP one of {}",
                MailOp::ALL.map(MailOp::as_str).join(", ")
            ),
        );
    }
    let name = tail.trim_start_matches('/');
    let body = match Limited::new(request.into_body(), MAX_PARAMS)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the parameters are at most {MAX_PARAMS} bytes of JSON"),
            )
        }
    };
    // A name that is not a read goes to the gateway anyway, which refuses
    // it on the record.
    let operation = match MailOp::parse(name) {
        Some(op) => match parse(op, &body) {
            Ok(operation) => Some((op, operation)),
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        },
        None => None,
    };
    let login = forwarder
        .gateway
        .authorize_mail(service, name, caller)
        .await
        .map_err(AirlockError::from_remote);
    let mut login = match login {
        Ok(login) => login,
        Err(e) => return error(refusal_status(&e), &e.message()),
    };
    let Some((op, operation)) = operation else {
        login.zeroize();
        return error(StatusCode::FORBIDDEN, &MailOp::refusal(name));
    };
    let grant_id = login.grant_id.clone();
    let outcome = match tokio::time::timeout(
        OPERATION_TIMEOUT,
        run(forwarder, service, &mut login, &operation),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::Timeout),
    };
    login.zeroize();
    let (count, failure) = match &outcome {
        Ok((_, count)) => (*count, String::new()),
        Err(failure) => (0, failure.message()),
    };
    if let Err(e) = forwarder
        .gateway
        .mail_done(MailOutcome {
            service: service.to_owned(),
            op: op.as_str().to_owned(),
            caller_uid: caller.uid,
            grant_id,
            count,
            error: failure,
        })
        .await
    {
        tracing::warn!("cannot record how {service} {} ended: {e}", op.as_str());
    }
    match outcome {
        Ok((value, _)) => answer(StatusCode::OK, &value),
        Err(failure) => error(failure.status(), &failure.message()),
    }
}

/// Why an operation did not complete.
enum Failure {
    /// The caller asked for something that is not there.
    NotFound(String),
    /// The mail server could not be reached, refused, or misbehaved.
    Upstream(String),
    Timeout,
}

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Failure::NotFound(_) => StatusCode::NOT_FOUND,
            Failure::Upstream(_) => StatusCode::BAD_GATEWAY,
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::NotFound(m) | Failure::Upstream(m) => m.clone(),
            Failure::Timeout => format!(
                "the mail server did not finish within {} s",
                OPERATION_TIMEOUT.as_secs()
            ),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Upstream(message)
    }
}

/// Connects, logs in (zeroizing the login once sent) and runs the
/// operation: its JSON answer and count.
async fn run(
    forwarder: &Forwarder,
    service: &str,
    login: &mut MailLogin,
    operation: &Operation,
) -> Result<(Value, u32), Failure> {
    let address = if login.host.contains(':') {
        format!("[{}]:{}", login.host, login.port)
    } else {
        format!("{}:{}", login.host, login.port)
    };
    let resolved: Vec<std::net::SocketAddr> =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host(&address))
            .await
            .map_err(|_| format!("resolving the mail server {address} took too long"))?
            .map_err(|e| format!("cannot resolve the mail server {address}: {e}"))?
            .collect();
    // The loader allows plain IMAP to loopback only (an address, or
    // localhost); checked again on what the name resolves to now.
    let plain = login.security == MailSecurity::Plain;
    if plain && (resolved.is_empty() || !resolved.iter().all(|a| a.ip().is_loopback())) {
        return Err(Failure::Upstream(format!(
            "{service} is plain IMAP to {address}, which is not loopback; Airlock sends a \
             login in the clear only on this machine"
        )));
    }
    let mut tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(&resolved[..]),
    )
    .await
    .map_err(|_| format!("the mail server at {address} did not accept a connection"))?
    .map_err(|e| format!("cannot reach the mail server at {address}: {e}"))?;
    if plain {
        return session(
            Guarded::new(tcp),
            Greeting::Expected,
            service,
            login,
            operation,
        )
        .await;
    }
    let greeting = if login.security == MailSecurity::StartTls {
        starttls::upgrade(&mut tcp)
            .await
            .map_err(|e| format!("STARTTLS with the mail server at {address}: {e}"))?;
        Greeting::Given
    } else {
        Greeting::Expected
    };
    let tls = handshake(forwarder, service, login, &address, tcp).await?;
    session(Guarded::new(tls), greeting, service, login, operation).await
}

/// Whether the server greets on this stream (not after STARTTLS: its
/// greeting came before TLS).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    Expected,
    Given,
}

/// TLS with the mail server, verified against the service's authorities
/// (else the system's), before anything of the login is sent.
async fn handshake(
    forwarder: &Forwarder,
    service: &str,
    login: &MailLogin,
    address: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Failure> {
    let name = rustls_pki_types::ServerName::try_from(login.host.clone())
        .map_err(|_| format!("bad mail server name {:?}", login.host))?;
    let own;
    let connector = if login.ca_file.is_empty() {
        &forwarder.imap_tls
    } else {
        own = crate::forward::tls_connector(std::path::Path::new(&login.ca_file), &[b"imap"])
            .map_err(|e| format!("{service}'s ca_file: {e}"))?;
        &own
    };
    // A server whose certificate does not verify never sees the login.
    Ok(connector.connect(name, tcp).await.map_err(|e| {
        format!(
            "TLS with the mail server at {address} failed, nothing was sent: {}",
            imap::short(&e)
        )
    })?)
}

async fn session<S>(
    stream: S,
    greeting: Greeting,
    service: &str,
    login: &mut MailLogin,
    operation: &Operation,
) -> Result<(Value, u32), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let logged_in = ReadOnlySession::login(stream, greeting, &login.user, &login.password).await;
    login.zeroize();
    let mut session = logged_in?;
    let result = perform(&mut session, service, operation).await;
    if result.is_ok() {
        session.logout().await;
    }
    result
}

async fn perform<S>(
    session: &mut ReadOnlySession<S>,
    service: &str,
    operation: &Operation,
) -> Result<(Value, u32), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    match operation {
        Operation::List { mailbox, limit } => {
            session.examine(mailbox).await?;
            let uids = session.uid_search(SearchKey::All).await?;
            let messages = summaries(session, &newest(&uids, *limit)).await?;
            let count = messages.len() as u32;
            let value = json!({ "service": service, "mailbox": mailbox, "messages": messages });
            Ok((value, count))
        }
        Operation::Search {
            mailbox,
            query,
            limit,
        } => {
            session.examine(mailbox).await?;
            let uids = session.uid_search(SearchKey::Text(query)).await?;
            let messages = summaries(session, &newest(&uids, *limit)).await?;
            let count = messages.len() as u32;
            let value = json!({
                "service": service,
                "mailbox": mailbox,
                "query": query,
                "total": uids.len(),
                "messages": messages,
            });
            Ok((value, count))
        }
        Operation::Get { mailbox, uid } => {
            session.examine(mailbox).await?;
            let mut message = None;
            session
                .uid_fetch(&[*uid], FetchItems::Whole, |fetch| {
                    if fetch.uid == Some(*uid) {
                        message = render::message(fetch);
                    }
                })
                .await?;
            let message = message.ok_or_else(|| {
                Failure::NotFound(format!(
                    "{mailbox} of {service} has no message with UID {uid}"
                ))
            })?;
            Ok((
                json!({ "service": service, "mailbox": mailbox, "message": message }),
                1,
            ))
        }
        Operation::CountUnread { mailbox } => {
            let counts = session.status(mailbox).await?;
            let value = json!({
                "service": service,
                "mailbox": mailbox,
                "unread": counts.unseen,
                "messages": counts.messages,
            });
            Ok((value, counts.unseen))
        }
    }
}

/// The `limit` highest UIDs, highest first.
fn newest(uids: &[u32], limit: u32) -> Vec<u32> {
    uids.iter().rev().take(limit as usize).copied().collect()
}

/// Summaries of `uids`, in that order.
async fn summaries<S>(session: &mut ReadOnlySession<S>, uids: &[u32]) -> Result<Vec<Value>, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let mut found: Vec<(u32, Value)> = Vec::with_capacity(uids.len());
    session
        .uid_fetch(uids, FetchItems::Summary, |fetch| {
            if let Some(uid) = fetch.uid.filter(|u| uids.contains(u)) {
                found.push((uid, render::summary(fetch)));
            }
        })
        .await?;
    Ok(uids
        .iter()
        .filter_map(|uid| {
            found
                .iter()
                .position(|(u, _)| u == uid)
                .map(|i| found.swap_remove(i).1)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_per_operation() {
        assert!(matches!(
            parse(MailOp::ListMessages, b""),
            Ok(Operation::List { limit: 20, .. })
        ));
        assert!(parse(MailOp::ListMessages, br#"{"limit":0}"#).is_err());
        assert!(parse(MailOp::ListMessages, br#"{"limit":101}"#).is_err());
        assert!(parse(MailOp::ListMessages, br#"{"mailbox":"a\r\nb"}"#).is_err());
        assert!(parse(MailOp::ListMessages, br#"{"flags":"x"}"#).is_err());
        assert!(parse(MailOp::Search, br#"{}"#).is_err());
        assert!(parse(MailOp::Search, br#"{"query":"x\r\nA STORE"}"#).is_err());
        assert!(parse(MailOp::GetMessage, br#"{"uid":-1}"#).is_err());
        assert!(matches!(
            parse(MailOp::GetMessage, br#"{"uid":7,"mailbox":"Archive"}"#),
            Ok(Operation::Get { uid: 7, .. })
        ));
        assert!(parse(MailOp::CountUnread, b"[1]").is_err());
        assert_eq!(newest(&[1, 2, 3, 9], 2), vec![9, 3]);
    }
}
