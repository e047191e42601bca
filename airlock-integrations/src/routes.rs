//! The endpoints of the spec's §2.1, each a thin translation: parse and
//! bound what the enforcer sent, ask the gateway, render its answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_common::dbus::Gateway1Proxy;
use airlock_common::integrations::{ApiCode, ApiCredentials, ExchangeView};
use airlock_common::timefmt::{now_unix, rfc3339};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

use crate::error::ApiError;
use crate::guard::{credentials, Hosts};
use crate::ratelimit::RateLimit;
use crate::wire::{self, parse};

/// The longest a long-poll is held (the SDKs clamp to it too).
pub const MAX_WAIT_SECS: u64 = 60;
/// A waiting poll asks the gateway again after `RECHECK` and up to
/// `RECHECK_SPREAD` more without an announcement: a backstop for one lost
/// (a gateway restart wakes every poll by itself). Spread at random, since
/// polls opened together would otherwise ask together: 1,000 D-Bus calls
/// in one burst every 5 s made a decision that landed in one late.
const RECHECK: Duration = Duration::from_secs(20);
const RECHECK_SPREAD: Duration = Duration::from_secs(10);

/// When a poll that starts waiting now asks again unprompted.
fn recheck_at() -> tokio::time::Instant {
    use std::hash::BuildHasher;
    let spread = RECHECK_SPREAD.as_millis() as u64;
    let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    tokio::time::Instant::now() + RECHECK + Duration::from_millis(random % spread)
}

pub struct Api {
    pub gateway: Gateway1Proxy<'static>,
    pub hosts: Hosts,
    pub limit: RateLimit,
    /// What the gateway announced (decisions, its own start).
    pub announcements: broadcast::Sender<Announcement>,
    /// Turns true on shutdown: open long-polls answer 204 at once.
    pub shutdown: watch::Receiver<bool>,
    pub idp_base_url: String,
    /// Bounds the gateway calls in flight: the system bus refuses a
    /// connection more than 128 pending replies (`max_replies_per_connection`
    /// in Debian's system.conf), and 1,000 long-polls would ask at once.
    pub calls: tokio::sync::Semaphore,
    /// Long-polls on one exchange share one gateway fetch.
    pub fetches: crate::fetches::Fetches<Look>,
}

/// What the gateway announced, stamped when it reached this process: a
/// fetch begun after `at` sees it, so every poll it wakes may share such a
/// fetch, however late that poll wakes.
#[derive(Clone, Debug)]
pub enum Announcement {
    /// An exchange was decided (the gateway records a decision before it
    /// announces it).
    Decided { request_id: Arc<str>, at: Instant },
    /// The gateway (re)started: a decision it recorded just before it went
    /// away may never have been announced, so every poll looks again.
    GatewayStarted { at: Instant },
}

/// Gateway calls in flight at most (well under the bus's 128).
pub const MAX_CALLS: usize = 64;

impl Api {
    /// A turn to call the gateway.
    async fn turn(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.calls
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    /// The exchange `request_id` as the gateway shows it to `creds`, in a
    /// turn of its own.
    async fn exchange(
        &self,
        creds: &ApiCredentials,
        request_id: &str,
    ) -> Result<ExchangeView, ApiError> {
        let _turn = self.turn().await;
        self.gateway
            .api_exchange(creds, request_id)
            .await
            .map_err(|e| gw(e).about(request_id))
    }
}

type Shared = State<Arc<Api>>;
type ApiResult = Result<Response, ApiError>;

pub fn router(api: Arc<Api>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/integrations/discovery", get(discovery))
        .route("/echo", get(echo))
        .route("/v1/consent/status", get(consent))
        .route("/consent/{app_id}", get(consent_page))
        .route("/v1/pairing/initiate", post(initiate))
        .route("/v1/pairing/claim", post(claim))
        .route("/v1/pairing/revoke", post(revoke))
        .route("/v1/pairing/pre-generate", post(pregenerate))
        .route("/v1/pairing/{nonce}/status", get(pairing_status))
        .route("/v1/presence/heartbeat", post(heartbeat))
        .route("/v1/artifacts", post(submit))
        .route("/v1/exchanges/{request_id}", get(exchange))
        .route("/v1/exchanges/{request_id}/wait", get(wait))
        .route("/v1/exchanges/{request_id}/withdraw", post(withdraw))
        .route("/v1/acks", post(ack))
        .route("/v1/policy/dnd/effective", get(dnd))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(api.clone(), guard))
        .with_state(api)
}

/// Host check and rate limit, before anything else.
async fn guard(State(api): Shared, request: Request, next: Next) -> Response {
    if let Err(e) = api.hosts.check(request.headers()) {
        return e.into_response();
    }
    let app = request
        .headers()
        .get("x-client-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 256)
        .unwrap_or("")
        .to_owned();
    if let Err(e) = api.limit.charge(&app, Instant::now()) {
        return e.into_response();
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::new(ApiCode::NotFound, "no such endpoint")
}

fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::local(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            )
        } else {
            ApiError::bad_request(e.body_text())
        }
    })
}

fn gw(e: zbus::Error) -> ApiError {
    ApiError::from_gateway(e)
}

fn ok(status: StatusCode, value: Value) -> ApiResult {
    Ok((status, Json(value)).into_response())
}

async fn discovery(State(api): Shared) -> ApiResult {
    let _turn = api.turn().await;
    let key = api.gateway.api_discovery().await.map_err(gw)?;
    let mut idp = json!({"clientId": "airlock-integrations"});
    if !api.idp_base_url.is_empty() {
        idp["baseUrl"] = api.idp_base_url.clone().into();
    }
    ok(
        StatusCode::OK,
        json!({
            "idp": idp,
            "auth": {"patSupported": true, "bearerSupported": false},
            "decisionSigning": {
                "alg": "Ed25519",
                "keyId": key.key_id,
                "publicKey": key.public_key,
            },
        }),
    )
}

async fn echo() -> Json<Value> {
    let now = rfc3339(now_unix());
    Json(json!({"utc": now, "local": now, "timezone": "UTC", "offsetMinutes": 0}))
}

async fn consent(State(api): Shared, headers: HeaderMap) -> ApiResult {
    let creds = credentials(&headers)?;
    let _turn = api.turn().await;
    let status = api.gateway.api_consent_status(&creds).await.map_err(gw)?;
    ok(StatusCode::OK, json!({ "status": status }))
}

/// What a consent refusal's `consentUrl` shows: consent is given on the
/// approver's machine with airlockctl, not on a web page.
async fn consent_page(Path(app_id): Path<String>) -> Result<Response, ApiError> {
    airlock_common::validate::check_id(&app_id)
        .map_err(|_| ApiError::bad_request("not an app id"))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        format!(
            "Airlock asks the user before an app may act for them.\n\
             To allow app {app_id}, run as that user:\n\n    airlockctl apps consent {app_id}\n\n\
             To refuse it:\n\n    airlockctl apps consent {app_id} --deny\n"
        ),
    )
        .into_response())
}

async fn initiate(
    State(api): Shared,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let creds = credentials(&headers)?;
    let request: wire::PairingInitiate = parse(&body(bytes)?)?;
    let hello = request.hello();
    let _turn = api.turn().await;
    let view = api
        .gateway
        .api_pairing_initiate(&creds, &hello)
        .await
        .map_err(gw)?;
    ok(
        StatusCode::CREATED,
        wire::pairing_started(&view, &hello.device_id),
    )
}

async fn claim(
    State(api): Shared,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let creds = credentials(&headers)?;
    let request: wire::PairingClaim = parse(&body(bytes)?)?;
    let hello = request.enforcer.hello();
    let _turn = api.turn().await;
    let view = api
        .gateway
        .api_pairing_claim(&creds, &request.pairing_code, &hello)
        .await
        .map_err(gw)?;
    ok(
        StatusCode::CREATED,
        json!({"pairingNonce": view.nonce, "expiresAt": rfc3339(view.expires_at)}),
    )
}

async fn pairing_status(
    State(api): Shared,
    headers: HeaderMap,
    Path(nonce): Path<String>,
) -> ApiResult {
    let creds = credentials(&headers)?;
    let _turn = api.turn().await;
    let view = api
        .gateway
        .api_pairing_status(&creds, &nonce)
        .await
        .map_err(gw)?;
    ok(StatusCode::OK, wire::pairing_status(&view))
}

async fn revoke(
    State(api): Shared,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let creds = credentials(&headers)?;
    let request: wire::Revoke = parse(&body(bytes)?)?;
    let _turn = api.turn().await;
    let enforcer_id = api
        .gateway
        .api_pairing_revoke(&creds, &request.routing_token)
        .await
        .map_err(gw)?;
    ok(
        StatusCode::OK,
        json!({"status": "revoked", "enforcerId": enforcer_id}),
    )
}

async fn pregenerate(State(api): Shared, headers: HeaderMap) -> ApiResult {
    let creds = credentials(&headers)?;
    let _turn = api.turn().await;
    let view = api
        .gateway
        .api_pairing_pregenerate(&creds)
        .await
        .map_err(gw)?;
    ok(
        StatusCode::CREATED,
        json!({
            "pairingCode": view.code,
            "pairingNonce": view.nonce,
            "expiresAt": rfc3339(view.expires_at),
        }),
    )
}

async fn heartbeat(
    State(api): Shared,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let creds = credentials(&headers)?;
    let request: wire::Heartbeat = parse(&body(bytes)?)?;
    let _turn = api.turn().await;
    api.gateway
        .api_heartbeat(&creds, &request.enforcer_id)
        .await
        .map_err(gw)?;
    ok(StatusCode::OK, json!({}))
}

async fn submit(
    State(api): Shared,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let creds = credentials(&headers)?;
    let request: wire::ArtifactSubmit = parse(&body(bytes)?)?;
    let submission = request.submission()?;
    let request_id = submission.request_id.clone();
    let _turn = api.turn().await;
    api.gateway
        .api_submit(&creds, &submission)
        .await
        .map_err(|e| gw(e).about(&request_id))?;
    ok(
        StatusCode::ACCEPTED,
        json!({"msgType": "artifact.accepted", "requestId": request_id}),
    )
}

async fn exchange(
    State(api): Shared,
    headers: HeaderMap,
    Path(request_id): Path<String>,
) -> ApiResult {
    let creds = credentials(&headers)?;
    let view = api.exchange(&creds, &request_id).await?;
    ok(StatusCode::OK, wire::exchange_status(&view))
}

/// What a long-poll answers from one look at its exchange: nothing yet, or
/// the decision rendered once for all the polls sharing the look (1,000
/// polls woken by one decision would otherwise build and serialise it
/// 1,000 times).
#[derive(Clone)]
pub struct Look {
    /// The decision as delivered, once there is one.
    decision: Option<Bytes>,
    /// When the exchange expires (Unix seconds): a poll looks again then,
    /// to answer with the expiry rather than wait on for its timeout.
    expires_at: i64,
}

impl Look {
    fn of(view: &ExchangeView) -> Look {
        Look {
            decision: (*view.decision).as_ref().map(|decision| {
                let rendered = serde_json::to_vec(&wire::decision_deliver(view, decision));
                Bytes::from(rendered.expect("a JSON value serialises"))
            }),
            expires_at: view.expires_at,
        }
    }
}

impl crate::fetches::Settled for Look {
    /// A decision never changes.
    fn is_final(&self) -> bool {
        self.decision.is_some()
    }
}

/// The long-poll: 200 with the signed decision once there is one, 204
/// after `timeout` seconds (1 to 60, default 30) without.
async fn wait(
    State(api): Shared,
    headers: HeaderMap,
    Path(request_id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let creds = credentials(&headers)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let timeout = match query.get("timeout") {
        None => 30,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("timeout must be a whole number of seconds"))?,
    }
    .clamp(1, MAX_WAIT_SECS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut shutdown = api.shutdown.clone();
    // Subscribed before the first look, so a decision after it is seen;
    // each look is a fetch begun after `not_before`.
    let mut announcements = api.announcements.subscribe();
    let mut not_before = Instant::now();
    loop {
        let look = api
            .fetches
            .exchange(&request_id, &creds, not_before, || async {
                // The turn ends with the call, not with the wait.
                Ok(Look::of(&api.exchange(&creds, &request_id).await?))
            })
            .await?;
        if let Some(body) = look.decision {
            return Ok(([(CONTENT_TYPE, "application/json")], body).into_response());
        }
        let left = look.expires_at.saturating_sub(now_unix()).max(0) as u64;
        let expiry = Duration::from_secs(left + 1);
        let recheck = recheck_at().min(tokio::time::Instant::now() + expiry);
        // The next look's answer must be read after this instant: the
        // announcement's arrival when one woke the poll (all the polls it
        // wakes then share one fetch), else now.
        not_before = loop {
            tokio::select! {
                message = announcements.recv() => match message {
                    Ok(Announcement::Decided { request_id: decided, .. })
                        if *decided != *request_id => continue,
                    Ok(Announcement::Decided { at, .. } | Announcement::GatewayStarted { at }) => {
                        break at
                    }
                    // Lagged: an announcement for it may have been dropped.
                    Err(_) => break Instant::now(),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Ok(StatusCode::NO_CONTENT.into_response());
                }
                _ = tokio::time::sleep_until(recheck) => break Instant::now(),
                _ = shutdown.changed() => return Ok(StatusCode::NO_CONTENT.into_response()),
            }
        };
    }
}

/// Withdraws a pending exchange; the body (none, or Rust's `null`) is
/// ignored.
async fn withdraw(
    State(api): Shared,
    headers: HeaderMap,
    Path(request_id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    body(bytes)?;
    let creds = credentials(&headers)?;
    let _turn = api.turn().await;
    api.gateway
        .api_withdraw(&creds, &request_id)
        .await
        .map_err(|e| gw(e).about(&request_id))?;
    ok(
        StatusCode::OK,
        json!({"status": "withdrawn", "requestId": request_id}),
    )
}

async fn ack(
    State(api): Shared,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let creds = credentials(&headers)?;
    let request: wire::Ack = parse(&body(bytes)?)?;
    if request
        .msg_type
        .as_deref()
        .is_some_and(|t| t != "ack.submit")
    {
        return Err(ApiError::bad_request("msgType must be ack.submit"));
    }
    let Some(msg_id) = request.body.msg_id else {
        return Err(ApiError::bad_request("body.msgId is required"));
    };
    if request
        .body
        .status
        .as_deref()
        .is_some_and(|s| s != "delivered")
    {
        return Err(ApiError::bad_request("body.status must be delivered"));
    }
    let _turn = api.turn().await;
    api.gateway
        .api_ack(&creds, &request.request_id, &msg_id)
        .await
        .map_err(|e| gw(e).about(&request.request_id))?;
    ok(StatusCode::OK, json!({"status": "acknowledged"}))
}

/// Do-not-disturb policies: none are kept yet, so the effective set is
/// empty (the caller is still authenticated and must have consented).
async fn dnd(
    State(api): Shared,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let creds = credentials(&headers)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    for required in ["enforcerId", "workspaceId"] {
        if query.get(required).is_none_or(String::is_empty) {
            return Err(ApiError::bad_request(format!("{required} is required")));
        }
    }
    let _turn = api.turn().await;
    api.gateway.api_consent_status(&creds).await.map_err(gw)?;
    ok(
        StatusCode::OK,
        json!({
            "msgType": "dnd.policy.effective",
            "requestId": airlock_common::ids::new_id("dnd"),
            "body": [],
        }),
    )
}
