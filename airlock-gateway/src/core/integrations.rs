//! Third-party enforcers: what the Integrations Gateway API's requests may
//! do, checked against the state, and the approver's side (apps, PATs,
//! consent, pairing, decisions). Like the rest of `Core`, each method takes
//! `now` and does no D-Bus I/O; every change is an event in the audit log.
//!
//! Every API request names its app (client id with secret or origin) and its
//! user (a PAT); the user scopes everything, so another user's pairing or
//! exchange is "not found", never "forbidden".

use airlock_common::dbus::AirlockError;
use airlock_common::event::Event;
use airlock_common::fsutil::Durability;
use airlock_common::ids;
use airlock_common::integrations::{
    normalize_code, pairing_code, random_token, sha256_hex, ApiCode, ApiCredentials, AppInfo,
    AppKind, ArtifactInfo, ArtifactSubmission, ConsentRefusal, DecisionKey, EnforcerHello,
    EnforcerInfo, ExchangeView, NewApp, NewPat, PairingView, PatInfo, SignedDecision, MAX_APPS,
    MAX_CIPHERTEXT_LEN, MAX_EXCHANGES, MAX_FIELD_LEN, MAX_PAIRINGS, MAX_PATS, MAX_PAT_TTL_SECS,
    ONLINE_SECS, PAIRING_TTL_SECS, PAT_PREFIX, PREGENERATED_TTL_SECS,
};
use airlock_common::validate::check_text;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use zeroize::Zeroizing;

use super::Core;
use crate::state::integrations::{
    App, ClearToken, Consent, Exchange, ExchangeState, Integrations, Pairing, PairingState,
    SecretKey,
};

/// Pairings waiting for their code at once, per user.
const MAX_PENDING_PAIRINGS_PER_USER: usize = 16;

/// Who an API request is from, once its credentials check out.
pub struct ApiCaller {
    pub app: App,
    pub uid: u32,
}

impl ApiCaller {
    /// Whether a pairing or exchange of `uid` through app `app_id` is the
    /// caller's: another user's, or another app's, is not.
    fn owns(&self, uid: u32, app_id: &str) -> bool {
        self.uid == uid && self.app.app_id == app_id
    }
}

fn bad(message: impl Into<String>) -> AirlockError {
    ApiCode::InvalidRequest.error(message)
}

/// A short wire field: at most [`MAX_FIELD_LEN`] bytes, no control
/// characters; `required` ones not empty.
fn field(what: &str, text: &str, required: bool) -> Result<(), AirlockError> {
    if required && text.is_empty() {
        return Err(bad(format!("{what} is required")));
    }
    if text.len() > MAX_FIELD_LEN || text.chars().any(char::is_control) {
        return Err(bad(format!(
            "{what} must be at most {MAX_FIELD_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

/// An id the enforcer chose (`requestId`, `enforcerId`): URL-safe, as the
/// spec asks, so it can be echoed and used in paths.
fn wire_id(what: &str, id: &str) -> Result<(), AirlockError> {
    if ids::is_well_formed(id) {
        Ok(())
    } else {
        Err(bad(format!(
            "{what} must be 1-64 characters of a-z, A-Z, 0-9, - and _"
        )))
    }
}

fn check_hello(hello: &EnforcerHello) -> Result<(), AirlockError> {
    field("deviceId", &hello.device_id, true)?;
    wire_id("enforcerId", &hello.enforcer_id)?;
    field("enforcerLabel", &hello.enforcer_label, false)?;
    field("workspaceName", &hello.workspace_name, false)?;
    field("x25519PublicKey", &hello.x25519_public_key, false)?;
    if !hello.x25519_public_key.is_empty() {
        crate::e2e::enforcer_key(&hello.x25519_public_key).map_err(bad)?;
    }
    Ok(())
}

fn pairing_view(pairing: &Pairing, now: i64, with_code: Option<String>) -> PairingView {
    let state = match pairing.state {
        PairingState::Pending if pairing.expires_at <= now => "Expired",
        PairingState::Pending => "Pending",
        PairingState::Completed => "Completed",
        PairingState::Revoked => "Revoked",
    };
    PairingView {
        nonce: pairing.nonce.clone(),
        code: with_code.unwrap_or_default(),
        state: state.into(),
        routing_token: pairing
            .routing_token
            .as_ref()
            .filter(|_| pairing.state == PairingState::Completed)
            .map(|t| t.0.to_string())
            .into(),
        approver_x25519: pairing
            .approver_x25519
            .clone()
            .filter(|_| pairing.state == PairingState::Completed)
            .into(),
        expires_at: pairing.expires_at,
    }
}

impl Core {
    fn integrations(&self) -> &Integrations {
        &self.journal.state().integrations
    }

    // ---- the API's callers ------------------------------------------------

    /// Checks a request's user (PAT first, then a bearer token) and app
    /// (client id with its secret, or with an allowed origin).
    pub fn api_caller(&self, creds: &ApiCredentials, now: i64) -> Result<ApiCaller, AirlockError> {
        let integrations = &self.integrations();
        let uid = if !creds.pat.is_empty() {
            if !creds.pat.starts_with(PAT_PREFIX) || creds.pat.len() > MAX_FIELD_LEN {
                return Err(ApiCode::Unauthorized.error("the PAT is malformed"));
            }
            let hash = sha256_hex(creds.pat.as_bytes());
            match integrations.pat_by_hash(&hash) {
                Some(pat) if pat.expires_at > now => pat.uid,
                Some(_) => return Err(ApiCode::Unauthorized.error("the PAT has expired")),
                None => return Err(ApiCode::Unauthorized.error("the PAT is invalid or revoked")),
            }
        } else if !creds.bearer.is_empty() {
            return Err(ApiCode::Unauthorized.error(
                "bearer tokens are not accepted by this gateway; send a PAT in X-PAT \
                 (`airlockctl pat create`)",
            ));
        } else {
            return Err(ApiCode::Unauthorized
                .error("a personal access token (X-PAT) is required; `airlockctl pat create`"));
        };
        let app = self.api_app(creds)?;
        Ok(ApiCaller { app, uid })
    }

    /// The app a request's client id names, if its secret or origin fits.
    fn api_app(&self, creds: &ApiCredentials) -> Result<App, AirlockError> {
        if creds.client_id.is_empty() {
            return Err(ApiCode::InvalidClient.error("X-Client-Id is required"));
        }
        let Some(app) = self.integrations().app_by_client(&creds.client_id) else {
            return Err(ApiCode::InvalidClient.error("unknown client id"));
        };
        let fits = if app.kind.is_confidential() {
            app.secret_sha256.as_deref() == Some(&sha256_hex(creds.client_secret.as_bytes()))
                && !creds.client_secret.is_empty()
        } else {
            !creds.origin.is_empty() && app.origins.contains(&creds.origin)
        };
        if !fits {
            return Err(ApiCode::InvalidClient.error(if app.kind.is_confidential() {
                "wrong client secret"
            } else {
                "origin not allowed for this app"
            }));
        }
        Ok(app.clone())
    }

    /// Refuses a user who has not consented to the app; the first attempt
    /// files the consent request (`airlockctl apps consent APP`).
    fn require_consent(&mut self, caller: &ApiCaller, now: i64) -> Result<(), AirlockError> {
        let app = &caller.app;
        let consent = self.integrations().consent(&app.app_id, caller.uid);
        let (code, text) = match consent {
            Some(Consent::Approved) => return Ok(()),
            Some(Consent::Denied) => (ApiCode::AppConsentDenied, "the user denied this app"),
            Some(Consent::Pending) => (
                ApiCode::AppConsentPending,
                "the user has not yet consented to this app",
            ),
            None => {
                self.record(
                    Event::AppConsentRequested {
                        app_id: app.app_id.clone(),
                        uid: caller.uid,
                    },
                    now,
                )?;
                (
                    ApiCode::AppConsentRequired,
                    "this app needs the user's consent",
                )
            }
        };
        Err(ConsentRefusal {
            message: format!(
                "{text}: `airlockctl apps consent {}` ({})",
                app.app_id, app.name
            ),
            app_id: app.app_id.clone(),
            app_name: app.name.clone(),
        }
        .error(code))
    }

    /// An authenticated, consented caller.
    pub fn api_user(
        &mut self,
        creds: &ApiCredentials,
        now: i64,
    ) -> Result<ApiCaller, AirlockError> {
        let caller = self.api_caller(creds, now)?;
        self.require_consent(&caller, now)?;
        Ok(caller)
    }

    pub fn api_consent_status(
        &mut self,
        creds: &ApiCredentials,
        now: i64,
    ) -> Result<String, AirlockError> {
        self.api_user(creds, now)?;
        Ok("approved".into())
    }

    // ---- pairing ----------------------------------------------------------

    /// Room for another pending pairing of `uid`: a few each, so that one
    /// user's enforcer cannot use up everyone's.
    fn check_pairing_room(&self, uid: u32, now: i64) -> Result<(), AirlockError> {
        let pairings = &self.integrations().pairings;
        let pending = pairings
            .values()
            .filter(|p| p.uid == uid && p.state == PairingState::Pending && p.expires_at > now)
            .count();
        if pending >= MAX_PENDING_PAIRINGS_PER_USER || pairings.len() >= MAX_PAIRINGS {
            return Err(ApiCode::QuotaExceeded.error(format!(
                "too many pairings waiting (at most {MAX_PENDING_PAIRINGS_PER_USER} a user)"
            )));
        }
        Ok(())
    }

    /// An enforcer asks to pair: its code waits for `airlockctl pair CODE`.
    pub fn api_pairing_initiate(
        &mut self,
        creds: &ApiCredentials,
        hello: EnforcerHello,
        now: i64,
    ) -> Result<PairingView, AirlockError> {
        let caller = self.api_user(creds, now)?;
        check_hello(&hello)?;
        self.check_pairing_room(caller.uid, now)?;
        let code = pairing_code();
        let nonce = ids::new_id("pn");
        self.record_and_save(
            Event::PairingStarted {
                nonce: nonce.clone(),
                uid: caller.uid,
                app_id: caller.app.app_id.clone(),
                code_sha256: sha256_hex(code.as_bytes()),
                enforcer: hello,
                pregenerated: false,
                expires_at: now + PAIRING_TTL_SECS,
            },
            now,
            Durability::ProcessCrash,
        )?;
        let pairing = &self.integrations().pairings[&nonce];
        Ok(pairing_view(pairing, now, Some(code)))
    }

    /// A code for an enforcer to claim, made by its user ahead of time.
    pub fn pregenerate_pairing(&mut self, uid: u32, now: i64) -> Result<PairingView, AirlockError> {
        self.check_pairing_room(uid, now)?;
        let code = pairing_code();
        let nonce = ids::new_id("pn");
        self.record_and_save(
            Event::PairingStarted {
                nonce: nonce.clone(),
                uid,
                app_id: String::new(),
                code_sha256: sha256_hex(code.as_bytes()),
                enforcer: EnforcerHello::default(),
                pregenerated: true,
                expires_at: now + PREGENERATED_TTL_SECS,
            },
            now,
            Durability::ProcessCrash,
        )?;
        let pairing = &self.integrations().pairings[&nonce];
        Ok(pairing_view(pairing, now, Some(code)))
    }

    pub fn api_pregenerate(
        &mut self,
        creds: &ApiCredentials,
        now: i64,
    ) -> Result<PairingView, AirlockError> {
        let caller = self.api_user(creds, now)?;
        self.pregenerate_pairing(caller.uid, now)
    }

    /// Completes a pairing: a fresh routing token, its hash on the record,
    /// the token itself held for the enforcer's next status poll.
    fn complete_pairing(
        &mut self,
        nonce: &str,
        enforcer: Option<EnforcerHello>,
        app_id: Option<String>,
        by_uid: u32,
        now: i64,
    ) -> Result<(), AirlockError> {
        let token = Zeroizing::new(random_token("rt-", 24));
        // End-to-end encryption when the enforcer sent its X25519 key: a
        // fresh approver key, whose public half goes back to the enforcer.
        let enforcer_key = match &enforcer {
            Some(hello) => hello.x25519_public_key.clone(),
            None => self.integrations().pairings[nonce]
                .enforcer
                .x25519_public_key
                .clone(),
        };
        let agreed = if enforcer_key.is_empty() {
            None
        } else {
            match crate::e2e::agree(&enforcer_key) {
                Ok(agreed) => Some(agreed),
                Err(e) => {
                    tracing::warn!("pairing {nonce} has no end-to-end encryption: {e}");
                    None
                }
            }
        };
        self.record(
            Event::PairingCompleted {
                nonce: nonce.to_owned(),
                routing_sha256: sha256_hex(token.as_bytes()),
                enforcer,
                app_id,
                approver_x25519: agreed.as_ref().map(|(public, _)| public.clone()),
                by_uid,
            },
            now,
        )?;
        let integrations = self.journal.integrations_secret_mut();
        if let Some(pairing) = integrations.pairings.get_mut(nonce) {
            pairing.routing_token = Some(ClearToken(token));
            pairing.e2e_key = agreed.map(|(_, key)| SecretKey(STANDARD.encode(key.as_ref())));
        }
        self.journal.save(Durability::Synced);
        Ok(())
    }

    /// The enforcer claims a code its user pre-generated: paired at once.
    pub fn api_pairing_claim(
        &mut self,
        creds: &ApiCredentials,
        code: &str,
        hello: EnforcerHello,
        now: i64,
    ) -> Result<PairingView, AirlockError> {
        let caller = self.api_user(creds, now)?;
        field("pairingCode", code, true)?;
        check_hello(&hello)?;
        let hash = sha256_hex(normalize_code(code).as_bytes());
        let nonce = match self.integrations().pending_pairing_by_code(&hash) {
            Some(p) if p.pregenerated && p.uid == caller.uid && p.expires_at > now => {
                p.nonce.clone()
            }
            _ => return Err(ApiCode::NotFound.error("no such pairing code (or it expired)")),
        };
        self.complete_pairing(
            &nonce,
            Some(hello),
            Some(caller.app.app_id.clone()),
            caller.uid,
            now,
        )?;
        let pairing = &self.integrations().pairings[&nonce];
        Ok(pairing_view(pairing, now, None))
    }

    /// A pairing of the caller's, for the caller's app.
    fn own_pairing(&self, caller: &ApiCaller, nonce: &str) -> Result<&Pairing, AirlockError> {
        self.integrations()
            .pairings
            .get(nonce)
            .filter(|p| caller.owns(p.uid, &p.app_id))
            .ok_or_else(|| ApiCode::NotFound.error("no such pairing"))
    }

    pub fn api_pairing_status(
        &mut self,
        creds: &ApiCredentials,
        nonce: &str,
        now: i64,
    ) -> Result<PairingView, AirlockError> {
        let caller = self.api_user(creds, now)?;
        wire_id("nonce", nonce)?;
        Ok(pairing_view(self.own_pairing(&caller, nonce)?, now, None))
    }

    /// The caller's live pairing that `routing_token` names.
    fn routed(&self, caller: &ApiCaller, routing_token: &str) -> Result<&Pairing, AirlockError> {
        field("routingToken", routing_token, true)?;
        let hash = sha256_hex(routing_token.as_bytes());
        match self.integrations().pairing_by_routing(&hash) {
            Some(p) if caller.owns(p.uid, &p.app_id) && p.state == PairingState::Completed => Ok(p),
            _ => Err(ApiCode::PairingRevoked.error("the routing token is unknown or revoked")),
        }
    }

    pub fn api_pairing_revoke(
        &mut self,
        creds: &ApiCredentials,
        routing_token: &str,
        now: i64,
    ) -> Result<String, AirlockError> {
        let caller = self.api_user(creds, now)?;
        let pairing = self.routed(&caller, routing_token)?;
        let (nonce, enforcer_id) = (pairing.nonce.clone(), pairing.enforcer.enforcer_id.clone());
        self.record_and_save(
            Event::PairingRevoked {
                nonce,
                by_uid: None,
            },
            now,
            Durability::Synced,
        )?;
        Ok(enforcer_id)
    }

    /// An enforcer's heartbeat: presence, in memory only.
    pub fn api_heartbeat(
        &mut self,
        creds: &ApiCredentials,
        enforcer_id: &str,
        now: i64,
    ) -> Result<(), AirlockError> {
        let caller = self.api_user(creds, now)?;
        wire_id("enforcerId", enforcer_id)?;
        let mut seen = false;
        // Heartbeats are not recorded (one every 10 s); coming online is.
        let mut came_online = Vec::new();
        for pairing in self.journal.integrations_mut().pairings.values_mut() {
            if caller.owns(pairing.uid, &pairing.app_id)
                && pairing.state == PairingState::Completed
                && pairing.enforcer.enforcer_id == enforcer_id
            {
                if pairing.last_seen == 0 || now - pairing.last_seen >= ONLINE_SECS {
                    came_online.push(pairing.nonce.clone());
                }
                pairing.last_seen = now;
                seen = true;
            }
        }
        for nonce in came_online {
            self.record(
                Event::EnforcerOnline {
                    nonce,
                    enforcer_id: enforcer_id.to_owned(),
                },
                now,
            )?;
        }
        if seen {
            Ok(())
        } else {
            Err(ApiCode::PairingRevoked.error("no live pairing for this enforcer"))
        }
    }

    // ---- the approver's side of pairing -----------------------------------

    /// `airlockctl pair CODE`: the code an enforcer printed.
    pub fn pair(
        &mut self,
        code: &str,
        by_uid: u32,
        admin: bool,
        now: i64,
    ) -> Result<EnforcerInfo, AirlockError> {
        check_text("code", code)?;
        let hash = sha256_hex(normalize_code(code).as_bytes());
        let nonce = match self.integrations().pending_pairing_by_code(&hash) {
            Some(p) if !p.pregenerated && p.expires_at > now && (admin || p.uid == by_uid) => {
                p.nonce.clone()
            }
            _ => {
                return Err(AirlockError::NotFound(
                    "no enforcer is waiting with that code (or it expired)".into(),
                ))
            }
        };
        self.complete_pairing(&nonce, None, None, by_uid, now)?;
        let pairing = &self.integrations().pairings[&nonce];
        Ok(self.enforcer_info(pairing, now))
    }

    fn enforcer_info(&self, pairing: &Pairing, now: i64) -> EnforcerInfo {
        let state = match pairing.state {
            PairingState::Pending if pairing.expires_at <= now => "expired",
            PairingState::Pending => "pending",
            PairingState::Completed => "paired",
            PairingState::Revoked => "revoked",
        };
        EnforcerInfo {
            pairing: pairing.nonce.clone(),
            enforcer_id: pairing.enforcer.enforcer_id.clone(),
            label: pairing.enforcer.enforcer_label.clone(),
            workspace: pairing.enforcer.workspace_name.clone(),
            device_id: pairing.enforcer.device_id.clone(),
            app_id: pairing.app_id.clone(),
            uid: pairing.uid,
            state: state.into(),
            online: pairing.last_seen > 0 && now - pairing.last_seen < ONLINE_SECS,
            last_seen: pairing.last_seen,
        }
    }

    pub fn list_enforcers(&self, uid: u32, admin: bool, now: i64) -> Vec<EnforcerInfo> {
        self.integrations()
            .pairings
            .values()
            .filter(|p| admin || p.uid == uid)
            .map(|p| self.enforcer_info(p, now))
            .collect()
    }

    /// Unpairs an enforcer (its user or an admin).
    pub fn unpair(&mut self, nonce: &str, by_uid: u32, admin: bool) -> Result<(), AirlockError> {
        airlock_common::validate::check_id(nonce)?;
        let found = self
            .integrations()
            .pairings
            .get(nonce)
            .filter(|p| admin || p.uid == by_uid)
            .ok_or_else(|| AirlockError::NotFound(format!("no pairing {nonce}")))?;
        if found.state == PairingState::Revoked {
            return Err(AirlockError::Conflict(format!(
                "pairing {nonce} is already revoked"
            )));
        }
        self.record_and_save(
            Event::PairingRevoked {
                nonce: nonce.to_owned(),
                by_uid: Some(by_uid),
            },
            airlock_common::timefmt::now_unix(),
            Durability::Synced,
        )
    }

    // ---- artifacts and exchanges ------------------------------------------

    /// A paired enforcer's artifact becomes a pending request.
    pub fn api_submit(
        &mut self,
        creds: &ApiCredentials,
        artifact: ArtifactSubmission,
        now: i64,
    ) -> Result<String, AirlockError> {
        let caller = self.api_user(creds, now)?;
        wire_id("requestId", &artifact.request_id)?;
        wire_id("msgId", &artifact.msg_id)?;
        wire_id("sender.enforcerId", &artifact.enforcer_id)?;
        field("artifactType", &artifact.artifact_type, true)?;
        if !airlock_common::integrations::is_sha256_hex(&artifact.artifact_hash) {
            return Err(bad("artifactHash must be 64 hex digits (SHA-256)"));
        }
        field("ciphertext.alg", &artifact.ciphertext.alg, false)?;
        field("ciphertext.nonce", &artifact.ciphertext.nonce, false)?;
        field("ciphertext.tag", &artifact.ciphertext.tag, false)?;
        if artifact.ciphertext.data.is_empty()
            || artifact.ciphertext.data.len() > MAX_CIPHERTEXT_LEN
            || artifact.ciphertext.data.chars().any(char::is_control)
        {
            return Err(bad(format!(
                "ciphertext.data is required, at most {MAX_CIPHERTEXT_LEN} bytes"
            )));
        }
        field("metadata.workspaceName", &artifact.workspace_name, false)?;
        field("metadata.requestLabel", &artifact.request_label, false)?;
        let pairing = self.routed(&caller, &artifact.routing_token)?;
        if pairing.enforcer.enforcer_id != artifact.enforcer_id {
            return Err(ApiCode::Forbidden.error("the routing token belongs to another enforcer"));
        }
        let pairing_nonce = pairing.nonce.clone();
        let workspace = if artifact.workspace_name.is_empty() {
            pairing.enforcer.workspace_name.clone()
        } else {
            artifact.workspace_name.clone()
        };
        let integrations = &self.integrations();
        if integrations
            .exchange_by_request(&artifact.request_id)
            .is_some()
        {
            return Err(ApiCode::AlreadyExists.error("an exchange with this requestId exists"));
        }
        let open = integrations.exchanges.open_for(caller.uid);
        if open >= self.max_open_exchanges_per_user {
            return Err(ApiCode::QuotaExceeded.error(format!(
                "you have {open} requests waiting for a decision, the most allowed \
                 (gateway.max_open_exchanges_per_user); approve, deny or withdraw some first"
            )));
        }
        if integrations.exchanges.len() >= MAX_EXCHANGES {
            return Err(ApiCode::QuotaExceeded.error("too many exchanges are open"));
        }
        let artifact_id = ids::new_id("art");
        // The service waits for the sync after releasing the lock.
        self.record_deferred(
            Event::ArtifactSubmitted {
                artifact_id: artifact_id.clone(),
                request_id: artifact.request_id,
                msg_id: artifact.msg_id,
                pairing: pairing_nonce,
                uid: caller.uid,
                app_id: caller.app.app_id,
                enforcer_id: artifact.enforcer_id,
                workspace,
                label: artifact.request_label,
                artifact_type: artifact.artifact_type,
                artifact_hash: artifact.artifact_hash.to_ascii_lowercase(),
                ciphertext: artifact.ciphertext,
                // A pending request like the local ones, with their
                // lifetime: the spec has the server apply its own TTL,
                // whatever the artifact's `expiresAt` says.
                expires_at: now + self.times.request_ttl.as_secs() as i64,
            },
            now,
        )?;
        Ok(artifact_id)
    }

    /// The caller's exchange with the enforcer's `request_id`.
    fn own_exchange(
        &self,
        caller: &ApiCaller,
        request_id: &str,
    ) -> Result<&Exchange, AirlockError> {
        wire_id("requestId", request_id)?;
        self.integrations()
            .exchange_by_request(request_id)
            .filter(|e| caller.owns(e.uid, &e.app_id))
            .ok_or_else(|| ApiCode::NotFound.error("Exchange not found"))
    }

    pub fn api_exchange(
        &mut self,
        creds: &ApiCredentials,
        request_id: &str,
        now: i64,
    ) -> Result<ExchangeView, AirlockError> {
        let caller = self.api_user(creds, now)?;
        let exchange = self.own_exchange(&caller, request_id)?;
        check_not_expired(exchange, now)?;
        Ok(ExchangeView {
            request_id: exchange.request_id.clone(),
            state: exchange.state.wire().into(),
            created_at: exchange.created_at,
            expires_at: exchange.expires_at,
            artifact_hash: exchange.artifact_hash.clone(),
            decision: exchange.decision.clone().into(),
        })
    }

    pub fn api_withdraw(
        &mut self,
        creds: &ApiCredentials,
        request_id: &str,
        now: i64,
    ) -> Result<(), AirlockError> {
        let caller = self.api_user(creds, now)?;
        let exchange = self.own_exchange(&caller, request_id)?;
        check_not_expired(exchange, now)?;
        if exchange.state != ExchangeState::Pending {
            return Err(ApiCode::AlreadyResolved.error("the exchange is already decided"));
        }
        let artifact_id = exchange.artifact_id.clone();
        self.record_and_save(
            Event::ArtifactWithdrawn { artifact_id },
            now,
            Durability::ProcessCrash,
        )
    }

    /// The enforcer acknowledges a decision's delivery (by its `msgId`).
    pub fn api_ack(
        &mut self,
        creds: &ApiCredentials,
        request_id: &str,
        msg_id: &str,
        now: i64,
    ) -> Result<(), AirlockError> {
        let caller = self.api_user(creds, now)?;
        wire_id("body.msgId", msg_id)?;
        let exchange = self.own_exchange(&caller, request_id)?;
        let delivered = exchange
            .decision
            .as_ref()
            .is_some_and(|d| d.msg_id == msg_id);
        if !delivered {
            return Err(ApiCode::NotFound.error("no decision with that msgId"));
        }
        if exchange.state == ExchangeState::Acknowledged {
            return Ok(());
        }
        let artifact_id = exchange.artifact_id.clone();
        self.record(
            Event::DecisionAcked {
                artifact_id,
                msg_id: msg_id.to_owned(),
            },
            now,
        )
    }

    // ---- the approver's side of artifacts ---------------------------------

    fn artifact_info(&self, exchange: &Exchange) -> ArtifactInfo {
        let integrations = &self.integrations();
        let app = integrations
            .apps
            .get(&exchange.app_id)
            .map_or("", |a| a.name.as_str());
        let label = integrations
            .pairings
            .get(&exchange.pairing)
            .map_or("", |p| p.enforcer.enforcer_label.as_str());
        exchange.info(app, label)
    }

    /// Artifacts waiting for a decision: all for admins, the caller's own
    /// otherwise.
    pub fn list_artifacts(&self, uid: u32, admin: bool, now: i64) -> Vec<ArtifactInfo> {
        self.integrations()
            .exchanges
            .values()
            .filter(|e| e.state == ExchangeState::Pending && e.expires_at > now)
            .filter(|e| admin || e.uid == uid)
            .map(|e| self.artifact_info(e))
            .collect()
    }

    pub fn get_artifact(
        &self,
        id: &str,
        uid: u32,
        admin: bool,
        now: i64,
    ) -> Result<ArtifactInfo, AirlockError> {
        airlock_common::validate::check_id(id)?;
        self.integrations()
            .exchanges
            .get(id)
            .filter(|e| e.state == ExchangeState::Pending && e.expires_at > now)
            .filter(|e| admin || e.uid == uid)
            .map(|e| self.artifact_info(e))
            .ok_or_else(|| AirlockError::NotFound(format!("no pending artifact {id}")))
    }

    /// The plaintext of a pending artifact (admins): opened with its
    /// pairing's end-to-end key and checked against its hash.
    pub fn read_artifact(&self, id: &str, now: i64) -> Result<String, AirlockError> {
        self.get_artifact(id, 0, true, now)?;
        let integrations = &self.integrations();
        let exchange = &integrations.exchanges[id];
        let key = integrations
            .pairings
            .get(&exchange.pairing)
            .and_then(|p| p.e2e_key.as_ref())
            .ok_or_else(|| {
                AirlockError::Conflict(
                    "the enforcer's pairing has no end-to-end key (it sent no X25519 key, or the \
                     gateway lost it in a crash); the content cannot be read"
                        .into(),
                )
            })?;
        let key =
            Zeroizing::new(STANDARD.decode(&key.0).map_err(|_| {
                AirlockError::Internal("a stored end-to-end key is corrupt".into())
            })?);
        let c = &exchange.ciphertext;
        crate::e2e::open(&key, &c.data, &c.nonce, &c.tag, &exchange.artifact_hash)
            .map_err(AirlockError::Conflict)
    }

    /// Records a decision airlock-totp signed, after checking the signature
    /// against its decision key and that it answers exactly this artifact.
    /// Returns the enforcer's request id (for the signal).
    pub fn record_decision(
        &mut self,
        id: &str,
        mut decision: SignedDecision,
        key: &DecisionKey,
        approver_uid: u32,
        now: i64,
    ) -> Result<String, AirlockError> {
        let pending = self.get_artifact(id, approver_uid, true, now)?;
        let statement = &decision.statement;
        if statement.request_id != pending.request_id
            || statement.artifact_hash != pending.artifact_hash
        {
            return Err(AirlockError::InvalidArgument(
                "the decision is for another artifact".into(),
            ));
        }
        check_text("reason", &statement.reason)?;
        field("nonce", &decision.nonce, true).map_err(|_| invalid_decision())?;
        if decision.signer_key_id != key.key_id || decision.signature.len() > MAX_FIELD_LEN {
            return Err(invalid_decision());
        }
        verify_decision(&decision, key)?;
        decision.msg_id = random_token("dmsg-", 16);
        let request_id = pending.request_id.clone();
        self.record_and_save(
            Event::ArtifactDecided {
                artifact_id: id.to_owned(),
                approver_uid,
                decision,
            },
            now,
            Durability::Synced,
        )?;
        Ok(request_id)
    }

    // ---- apps, consent, PATs ----------------------------------------------

    pub fn add_app(
        &mut self,
        kind: AppKind,
        name: &str,
        origins: Vec<String>,
        by_uid: u32,
    ) -> Result<NewApp, AirlockError> {
        check_text("name", name)?;
        if name.trim().is_empty() || name.len() > MAX_FIELD_LEN {
            return Err(AirlockError::InvalidArgument(
                "an app needs a name of at most 256 bytes".into(),
            ));
        }
        if origins.len() > 16 || origins.iter().any(|o| o.len() > MAX_FIELD_LEN) {
            return Err(AirlockError::InvalidArgument(
                "too many or too long origins".into(),
            ));
        }
        for origin in &origins {
            check_text("origin", origin)?;
        }
        if !kind.is_confidential() && origins.is_empty() {
            return Err(AirlockError::InvalidArgument(format!(
                "a {} app is checked by its Origin: give at least one --origin",
                kind.as_str()
            )));
        }
        if self.integrations().apps.len() >= MAX_APPS {
            return Err(AirlockError::LimitExceeded("too many apps".into()));
        }
        let app_id = app_id();
        let client_id = random_token("", 10);
        let secret = kind
            .is_confidential()
            .then(|| Zeroizing::new(random_token("", 20)));
        self.record_and_save(
            Event::IntegrationAppAdded {
                app_id: app_id.clone(),
                client_id: client_id.clone(),
                name: name.to_owned(),
                kind,
                secret_sha256: secret.as_ref().map(|s| sha256_hex(s.as_bytes())),
                origins,
                by_uid,
            },
            airlock_common::timefmt::now_unix(),
            Durability::Synced,
        )?;
        Ok(NewApp {
            app_id,
            client_id,
            client_secret: secret.map(|s| s.to_string()).unwrap_or_default(),
        })
    }

    pub fn list_apps(&self, uid: u32) -> Vec<AppInfo> {
        let integrations = &self.integrations();
        integrations
            .apps
            .values()
            .map(|a| AppInfo {
                app_id: a.app_id.clone(),
                client_id: a.client_id.clone(),
                name: a.name.clone(),
                kind: a.kind,
                origins: a.origins.clone(),
                consent: integrations
                    .consent(&a.app_id, uid)
                    .map_or("none", Consent::as_str)
                    .into(),
            })
            .collect()
    }

    /// A user's consent to an app (their own).
    pub fn set_consent(
        &mut self,
        app_id: &str,
        uid: u32,
        allowed: bool,
    ) -> Result<(), AirlockError> {
        airlock_common::validate::check_id(app_id)?;
        if !self.integrations().apps.contains_key(app_id) {
            return Err(AirlockError::NotFound(format!("no app {app_id}")));
        }
        self.record_and_save(
            Event::AppConsentDecided {
                app_id: app_id.to_owned(),
                uid,
                allowed,
            },
            airlock_common::timefmt::now_unix(),
            Durability::Synced,
        )
    }

    pub fn create_pat(
        &mut self,
        uid: u32,
        ttl_secs: u64,
        now: i64,
    ) -> Result<NewPat, AirlockError> {
        if !(60..=MAX_PAT_TTL_SECS).contains(&ttl_secs) {
            return Err(AirlockError::InvalidArgument(
                "a PAT lives between a minute and a year".into(),
            ));
        }
        if self.integrations().pats.len() >= MAX_PATS {
            return Err(AirlockError::LimitExceeded("too many PATs".into()));
        }
        let token = Zeroizing::new(random_token(PAT_PREFIX, 24));
        let id = ids::new_id("pat");
        let expires_at = now + ttl_secs as i64;
        self.record_and_save(
            Event::PatCreated {
                pat_id: id.clone(),
                uid,
                token_sha256: sha256_hex(token.as_bytes()),
                expires_at,
            },
            now,
            Durability::Synced,
        )?;
        Ok(NewPat {
            id,
            token: token.to_string(),
            expires_at,
        })
    }

    pub fn list_pats(&self, uid: u32, admin: bool) -> Vec<PatInfo> {
        self.integrations()
            .pats
            .values()
            .filter(|p| admin || p.uid == uid)
            .map(|p| PatInfo {
                id: p.id.clone(),
                uid: p.uid,
                created_at: p.created_at,
                expires_at: p.expires_at,
            })
            .collect()
    }

    pub fn revoke_pat(&mut self, id: &str, by_uid: u32, admin: bool) -> Result<(), AirlockError> {
        airlock_common::validate::check_id(id)?;
        if !self
            .integrations()
            .pats
            .get(id)
            .is_some_and(|p| admin || p.uid == by_uid)
        {
            return Err(AirlockError::NotFound(format!("no PAT {id}")));
        }
        self.record_and_save(
            Event::PatRevoked {
                pat_id: id.to_owned(),
                by_uid,
            },
            airlock_common::timefmt::now_unix(),
            Durability::Synced,
        )
    }

    /// Records pairings, artifacts and decided exchanges whose time ran out.
    pub fn expire_integrations(&mut self, now: i64) -> Result<(), AirlockError> {
        for event in self.integrations().stale(now) {
            self.record(event, now)?;
        }
        Ok(())
    }
}

/// An exchange nobody decided in time (whether or not the tick recorded it
/// yet) answers 410 `expired`.
fn check_not_expired(exchange: &Exchange, now: i64) -> Result<(), AirlockError> {
    let expired = exchange.state == ExchangeState::Expired
        || (exchange.state == ExchangeState::Pending && exchange.expires_at <= now);
    if expired {
        return Err(ApiCode::Expired.error("the exchange expired without a decision"));
    }
    Ok(())
}

fn invalid_decision() -> AirlockError {
    AirlockError::InvalidArgument(
        "the decision is not signed by airlock-totp's decision key".into(),
    )
}

/// Checks a decision's Ed25519 signature over the spec's message.
pub fn verify_decision(decision: &SignedDecision, key: &DecisionKey) -> Result<(), AirlockError> {
    let public = URL_SAFE_NO_PAD
        .decode(&key.public_key)
        .map_err(|_| invalid_decision())?;
    let signature = URL_SAFE_NO_PAD
        .decode(&decision.signature)
        .map_err(|_| invalid_decision())?;
    let message = airlock_common::integrations::decision_message(
        &decision.statement,
        &decision.nonce,
        &decision.signer_key_id,
    );
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
        .verify(&message, &signature)
        .map_err(|_| invalid_decision())
}

/// An App ID in the documented shape, `ABC-1234567`.
fn app_id() -> String {
    let token = random_token("", 8);
    let letters: String = token
        .bytes()
        .take(3)
        .map(|b| (b'A' + b % 26) as char)
        .collect();
    let digits: String = token
        .bytes()
        .skip(3)
        .take(7)
        .map(|b| (b'0' + b % 10) as char)
        .collect();
    format!("{letters}-{digits}")
}

#[cfg(test)]
mod tests {
    use airlock_common::integrations::{Ciphertext, DECIDED_RETENTION_SECS};
    use airlock_common::timefmt::now_unix;

    use super::*;
    use crate::core::tests::Dirs;

    /// An app, a PAT and consent for uid 1000, and a claimed pairing with an
    /// X25519 key: the credentials and the routing token.
    fn paired(core: &mut Core, now: i64) -> (ApiCredentials, String) {
        let app = core.add_app(AppKind::Desktop, "CLI", vec![], 0).unwrap();
        let pat = core.create_pat(1000, MAX_PAT_TTL_SECS, now).unwrap();
        let mut creds = ApiCredentials::default();
        creds.client_id = app.client_id.clone();
        creds.client_secret = app.client_secret.clone();
        creds.pat = pat.token.clone();
        core.set_consent(&app.app_id, 1000, true).unwrap();
        let code = core.pregenerate_pairing(1000, now).unwrap().code;
        let hello = EnforcerHello {
            device_id: "dev".into(),
            enforcer_id: "enf".into(),
            x25519_public_key: URL_SAFE_NO_PAD.encode([9u8; 32]),
            ..EnforcerHello::default()
        };
        let nonce = core
            .api_pairing_claim(&creds, &code, hello, now)
            .unwrap()
            .nonce;
        let view = core.api_pairing_status(&creds, &nonce, now).unwrap();
        assert_eq!(view.state, "Completed");
        assert!(view.approver_x25519.is_some());
        (creds, (*view.routing_token).clone().unwrap())
    }

    fn submission(request_id: &str, routing: &str) -> ArtifactSubmission {
        ArtifactSubmission {
            msg_id: "msg-1".into(),
            request_id: request_id.into(),
            enforcer_id: "enf".into(),
            artifact_type: "command-approval".into(),
            artifact_hash: "a".repeat(64),
            ciphertext: Ciphertext {
                alg: "AES-256-GCM".into(),
                data: "AAAA".into(),
                nonce: "AAAAAAAAAAAAAAAA".into(),
                tag: "AAAAAAAAAAAAAAAAAAAAAA==".into(),
            },
            routing_token: routing.into(),
            workspace_name: String::new(),
            request_label: String::new(),
        }
    }

    fn code_of(error: AirlockError) -> ApiCode {
        match error {
            AirlockError::Api(message) => ApiCode::split(&message).unwrap().0,
            other => panic!("not an API refusal: {other:?}"),
        }
    }

    #[test]
    fn an_undecided_exchange_expires_with_410_then_is_forgotten() {
        let dirs = Dirs::new();
        let mut core = dirs.open();
        let now = now_unix();
        let (creds, routing) = paired(&mut core, now);
        core.api_submit(&creds, submission("req-1", &routing), now)
            .unwrap();
        let later = now + core.times.request_ttl.as_secs() as i64;
        // Due, before the tick and after it.
        let e = core.api_exchange(&creds, "req-1", later).unwrap_err();
        assert_eq!(code_of(e), ApiCode::Expired);
        core.expire(later).unwrap();
        assert!(core.list_artifacts(0, true, later).is_empty());
        let e = core.api_exchange(&creds, "req-1", later).unwrap_err();
        assert_eq!(code_of(e), ApiCode::Expired);
        let e = core.api_withdraw(&creds, "req-1", later).unwrap_err();
        assert_eq!(code_of(e), ApiCode::Expired);
        // Its id stays taken while it is remembered.
        let e = core
            .api_submit(&creds, submission("req-1", &routing), later)
            .unwrap_err();
        assert_eq!(code_of(e), ApiCode::AlreadyExists);
        let gone = later + DECIDED_RETENTION_SECS;
        core.expire(gone).unwrap();
        let e = core.api_exchange(&creds, "req-1", gone).unwrap_err();
        assert_eq!(code_of(e), ApiCode::NotFound);
    }

    #[test]
    fn the_audit_log_alone_restores_everything_but_the_secrets() {
        let dirs = Dirs::new();
        let now = now_unix();
        let (creds, routing) = {
            let mut core = dirs.open();
            let (creds, routing) = paired(&mut core, now);
            core.api_submit(&creds, submission("req-1", &routing), now)
                .unwrap();
            (creds, routing)
        };
        let log = std::fs::read_to_string(dirs.path("audit/audit.jsonl")).unwrap();
        for secret in [&creds.pat, &creds.client_secret, &routing] {
            assert!(!log.contains(secret.as_str()));
        }
        let state = std::fs::read_to_string(dirs.path("state/state.json")).unwrap();
        assert!(state.contains("e2e_key"));
        // The state file lost: replayed from the log.
        std::fs::remove_file(dirs.path("state/state.json")).unwrap();
        let mut core = dirs.open();
        let view = core.api_exchange(&creds, "req-1", now).unwrap();
        assert_eq!(view.state, "PendingApproval");
        core.api_submit(&creds, submission("req-2", &routing), now)
            .unwrap();
        let art = core.list_artifacts(0, true, now)[0].id.clone();
        // The end-to-end key was in the state file only.
        assert!(matches!(
            core.read_artifact(&art, now),
            Err(AirlockError::Conflict(_))
        ));
        // Another user's PAT sees none of it.
        let other = core.create_pat(1001, 3600, now).unwrap();
        let mut theirs = creds.clone();
        theirs.pat = other.token.clone();
        core.set_consent(&core.list_apps(0)[0].app_id.clone(), 1001, true)
            .unwrap();
        let e = core.api_exchange(&theirs, "req-1", now).unwrap_err();
        assert_eq!(code_of(e), ApiCode::NotFound);
        let e = core
            .api_submit(&theirs, submission("req-3", &routing), now)
            .unwrap_err();
        assert_eq!(code_of(e), ApiCode::PairingRevoked);
    }

    #[test]
    fn pairings_are_bounded_per_user_and_expire_visibly() {
        let dirs = Dirs::new();
        let mut core = dirs.open();
        let now = now_unix();
        let (creds, _) = paired(&mut core, now);
        let hello = || EnforcerHello {
            device_id: "dev".into(),
            enforcer_id: "enf2".into(),
            ..EnforcerHello::default()
        };
        let first = core.api_pairing_initiate(&creds, hello(), now).unwrap();
        for _ in 1..MAX_PENDING_PAIRINGS_PER_USER {
            core.api_pairing_initiate(&creds, hello(), now).unwrap();
        }
        let e = core.api_pairing_initiate(&creds, hello(), now).unwrap_err();
        assert_eq!(code_of(e), ApiCode::QuotaExceeded);
        // Another user still may.
        assert!(core.pregenerate_pairing(1001, now).is_ok());
        let later = now + PAIRING_TTL_SECS;
        core.expire(later).unwrap();
        let view = core
            .api_pairing_status(&creds, &first.nonce, later)
            .unwrap();
        assert_eq!(view.state, "Expired");
        // An expired code pairs nothing.
        assert!(core.pair(&first.code, 1000, false, later).is_err());
        core.api_pairing_initiate(&creds, hello(), later).unwrap();
        core.expire(later + 3600).unwrap();
        let e = core
            .api_pairing_status(&creds, &first.nonce, later + 3600)
            .unwrap_err();
        assert_eq!(code_of(e), ApiCode::NotFound);
    }
}
