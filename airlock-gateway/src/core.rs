//! The gateway's state machine: policy, requests, grants and the audit trail.
//!
//! Every method takes `now` and does no D-Bus I/O, so the logic is plain and
//! the service layer only translates calls. Each state change is written to
//! the audit log (fsync'd) and then to the state file before the method
//! returns: a crash after a call returned loses neither the record nor the
//! change. New requests are the exception: the state file catches up within
//! a second, and until then their audit records stand in for it (see
//! `store`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_common::audit::{self, AuditError, AuditLog};
use airlock_common::config::GatewayTimes;
use airlock_common::dbus::{
    AirlockError, DecisionInfo, GrantInfo, GrantRequest, RequestInfo, SignedGrantWire,
};
use airlock_common::enforcement::EnforcementMode;
use airlock_common::fsutil::Durability;
use airlock_common::grant::{Access, GrantBody, Scope, SignedGrant};
use airlock_common::policy::{CommandLine, PolicySet};
use airlock_common::{ids, names, timefmt};
use serde_json::{json, Map, Value};

use crate::sessions::Session;
use crate::store::{replay_grant_ends, replay_requests, PendingRequest, Snapshot, Store};

/// The policy set in force and what happened at the last (re)load.
pub struct PolicyState {
    pub dir: PathBuf,
    pub set: Arc<PolicySet>,
    pub ok: bool,
    pub message: String,
}

pub struct Core {
    pub policy: PolicyState,
    pub(crate) sessions: BTreeMap<String, Session>,
    pub(crate) next_session_index: u32,
    /// The role of sessions started without one.
    pub(crate) default_role: String,
    /// The enforcement mode last audited, none before the first.
    pub(crate) enforcement_mode: Option<EnforcementMode>,
    requests: BTreeMap<String, PendingRequest>,
    grants: BTreeMap<String, (SignedGrant, GrantBody)>,
    signing_key: Option<Vec<u8>>,
    audit: AuditLog,
    store: Store,
    /// The audit log holds changes the state file does not (new requests).
    state_lags_log: bool,
    times: GatewayTimes,
    max_pending_per_user: usize,
}

/// What the caller of `request_approval` gets back, for the signal.
pub struct NewRequest {
    pub id: String,
    pub scope: String,
    pub reason: String,
    pub uid: u32,
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn internal(context: &str, e: impl std::fmt::Display) -> AirlockError {
    tracing::error!("{context}: {e}");
    AirlockError::Internal(format!("{context}: {e}"))
}

impl Core {
    /// Opens the audit log and state, loads the policy directory, and drops
    /// any stored grant whose signature does not verify.
    pub fn open(
        policy_dir: &Path,
        state_dir: &Path,
        audit_dir: &Path,
        times: GatewayTimes,
        max_pending_per_user: usize,
        default_role: &str,
    ) -> anyhow::Result<Core> {
        let log_path = audit_dir.join(names::AUDIT_LOG_FILE);
        let head_path = audit_dir.join(names::AUDIT_HEAD_FILE);
        let mut audit = match AuditLog::open(&log_path, &head_path) {
            Ok(log) => log,
            Err(AuditError::Corrupt(reason)) => {
                tracing::error!(
                    "audit log {} is damaged ({reason}); continuing with a chain_restarted record, \
                     `airlockctl audit verify` will keep reporting the damage",
                    log_path.display()
                );
                AuditLog::open_after_break(&log_path, &head_path, &reason)?
            }
            Err(e) => return Err(e.into()),
        };

        let store = Store::new(state_dir);
        let snapshot = store.load()?;
        let signing_key = snapshot
            .signing_key
            .as_deref()
            .map(decode_key)
            .transpose()?;
        let mut grants = BTreeMap::new();
        for signed in snapshot.grants {
            let verified = match &signing_key {
                Some(key) => signed.verify(key).map_err(|e| e.to_string()),
                None => Err("no grant-verification key is pinned".to_string()),
            };
            match verified {
                Ok(body) => {
                    grants.insert(body.grant_id.clone(), (signed, body));
                }
                Err(reason) => {
                    tracing::error!("dropping a stored grant that does not verify: {reason}");
                    audit.append(
                        "grant_rejected",
                        fields(json!({"service": "gateway", "reason": reason})),
                    )?;
                }
            }
        }
        let mut requests = snapshot
            .requests
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let (tail, resumed) = audit::records_after(&log_path, snapshot.audit_mark.as_ref())?;
        if resumed == audit::Resumed::AfterRestart {
            tracing::warn!(
                "the audit record the state file was saved at is no longer in the log; \
                 requests filed after it and not yet saved cannot be restored"
            );
        }
        let replayed = replay_requests(&mut requests, &tail, times.request_ttl.as_secs());
        let ended_grants = replay_grant_ends(&mut grants, &tail);
        if !ended_grants.is_empty() {
            tracing::warn!(
                "grant(s) {} were revoked or expired after the state file was last saved; \
                 dropped again",
                ended_grants.join(", ")
            );
        }
        if replayed.changed() {
            tracing::info!(
                "from the audit log: restored pending request(s) [{}], settled [{}]",
                replayed.restored.join(", "),
                replayed.settled.join(", ")
            );
        }
        let sessions = snapshot
            .sessions
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();

        let (set, ok, message) = match PolicySet::load_dir(policy_dir) {
            Ok(set) => {
                let message = format!(
                    "loaded {} policies and {} roles from {}",
                    set.policies().len(),
                    set.roles().len(),
                    policy_dir.display()
                );
                (set, true, message)
            }
            Err(diagnostics) => {
                let message = format!(
                    "policy set in {} is invalid; serving an empty set (role defaults only): {}",
                    policy_dir.display(),
                    join_diagnostics(&diagnostics)
                );
                tracing::error!("{message}");
                (PolicySet::default(), false, message)
            }
        };
        let mut core = Core {
            policy: PolicyState {
                dir: policy_dir.to_path_buf(),
                set: Arc::new(set),
                ok,
                message: message.clone(),
            },
            sessions,
            next_session_index: snapshot.next_session_index,
            default_role: default_role.to_owned(),
            enforcement_mode: None,
            requests,
            grants,
            signing_key,
            audit,
            store,
            state_lags_log: replayed.changed() || !ended_grants.is_empty(),
            times,
            max_pending_per_user,
        };
        let event = if ok {
            "policy_reloaded"
        } else {
            "policy_reload_failed"
        };
        core.audit(event, json!({"service": "gateway", "message": message}))?;
        core.audit(
            "service_started",
            json!({
                "service": "gateway",
                "grants": core.grants.len(),
                "pending_requests": core.requests.len(),
                "restored_requests": replayed.restored,
            }),
        )?;
        Ok(core)
    }

    fn audit(&mut self, event: &str, value: Value) -> Result<(), AirlockError> {
        match self.audit.append(event, fields(value)) {
            Ok(_) => Ok(()),
            // The record is synced, so the event stands and the caller must
            // go on as if it succeeded; a lagging anchor is harmless.
            Err(e @ AuditError::Anchor { .. }) => {
                tracing::error!("{e}");
                Ok(())
            }
            Err(e) => Err(internal("cannot write the audit log", e)),
        }
    }

    /// Saves the state. Grant changes are `Synced`; pending-request changes
    /// only need to survive a process crash (their audit record is synced,
    /// and an agent can ask again after a power loss).
    fn persist(&mut self, durability: Durability) -> Result<(), AirlockError> {
        let snapshot = Snapshot {
            version: 1,
            signing_key: self.signing_key.as_deref().map(encode_key),
            requests: self.requests.values().cloned().collect(),
            grants: self.grants.values().map(|(s, _)| s.clone()).collect(),
            sessions: self.sessions.values().cloned().collect(),
            next_session_index: self.next_session_index,
            audit_mark: Some(self.audit.head()),
        };
        self.store
            .save(&snapshot, durability)
            .map_err(|e| internal("cannot save gateway state", e))?;
        self.state_lags_log = false;
        Ok(())
    }

    /// Writes the state file if new requests are only in the audit log.
    pub fn save_state(&mut self) -> Result<(), AirlockError> {
        if self.state_lags_log {
            self.persist(Durability::ProcessCrash)?;
        }
        Ok(())
    }

    /// Saves session changes durably: a session's existence decides what the
    /// kernel enforces after a restart.
    pub(crate) fn persist_sessions(&mut self) -> Result<(), AirlockError> {
        self.persist(Durability::Synced)
    }

    // ---- policy ----------------------------------------------------------

    pub fn check_command(&self, role: &str, argv: &[String]) -> Result<DecisionInfo, AirlockError> {
        let cmd = CommandLine {
            argv,
            executable: None,
            aliases: &[],
        };
        let decision = self
            .policy
            .set
            .evaluate(role, &cmd)
            .map_err(|e| AirlockError::NotFound(e.to_string()))?;
        Ok(match decision.rule {
            Some(rule) => DecisionInfo {
                decision: decision.action,
                rule: Some(rule.command).into(),
                policy: Some(rule.policy_id).into(),
                source: rule.source.to_string(),
            },
            None => DecisionInfo {
                decision: decision.action,
                rule: None.into(),
                policy: None.into(),
                source: self
                    .policy
                    .set
                    .role(role)
                    .map(|r| r.source.to_string())
                    .unwrap_or_default(),
            },
        })
    }

    /// Re-reads the policy directory. An invalid set is not applied: the
    /// previous one stays in force and the error says why.
    pub fn reload_policy(&mut self) -> Result<String, AirlockError> {
        match PolicySet::load_dir(&self.policy.dir) {
            Ok(set) => {
                let message = format!(
                    "loaded {} policies and {} roles from {}",
                    set.policies().len(),
                    set.roles().len(),
                    self.policy.dir.display()
                );
                self.audit(
                    "policy_reloaded",
                    json!({"service": "gateway", "message": message}),
                )?;
                self.policy.set = Arc::new(set);
                self.policy.ok = true;
                self.policy.message = message.clone();
                Ok(message)
            }
            Err(diagnostics) => {
                let message = format!(
                    "policy set in {} rejected; still serving the previous set. {} error(s):\n{}",
                    self.policy.dir.display(),
                    diagnostics.len(),
                    diagnostics
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                self.audit(
                    "policy_reload_failed",
                    json!({"service": "gateway", "errors": join_diagnostics(&diagnostics)}),
                )?;
                self.policy.ok = false;
                self.policy.message = message.clone();
                Err(AirlockError::InvalidArgument(message))
            }
        }
    }

    // ---- requests --------------------------------------------------------

    pub fn request_approval(
        &mut self,
        uid: u32,
        session: Option<String>,
        scope: &str,
        reason: &str,
        requested_ttl_secs: u64,
        now: i64,
    ) -> Result<NewRequest, AirlockError> {
        let scope = Scope::parse(scope).map_err(AirlockError::InvalidArgument)?;
        check_text("reason", reason)?;
        let max = self.times.max_grant_ttl.as_secs();
        if requested_ttl_secs > max {
            return Err(AirlockError::InvalidArgument(format!(
                "requested ttl {} exceeds the maximum of {}",
                timefmt::format_secs(requested_ttl_secs),
                timefmt::format_secs(max)
            )));
        }
        let pending = self
            .requests
            .values()
            .filter(|r| r.requester_uid == uid)
            .count();
        if pending >= self.max_pending_per_user {
            return Err(AirlockError::Conflict(format!(
                "uid {uid} already has {pending} pending requests; wait for them to be decided or expire"
            )));
        }
        let request = PendingRequest {
            id: ids::new_id("req"),
            scope,
            reason: reason.to_string(),
            requester_uid: uid,
            session: session.clone(),
            requested_ttl_secs,
            created_at: now,
            expires_at: now + self.times.request_ttl.as_secs() as i64,
        };
        self.audit(
            "access_requested",
            json!({
                "service": "gateway",
                "request_id": request.id,
                "scope": request.scope.to_string(),
                "reason": request.reason,
                "uid": uid,
                "session": session,
                "requested_ttl_secs": requested_ttl_secs,
                "expires_at": timefmt::rfc3339(request.expires_at),
            }),
        )?;
        let new = NewRequest {
            id: request.id.clone(),
            scope: request.scope.to_string(),
            reason: request.reason.clone(),
            uid,
        };
        self.requests.insert(request.id.clone(), request);
        // The fsynced record is what survives a crash; `expire` saves the
        // state file on its next tick.
        self.state_lags_log = true;
        Ok(new)
    }

    pub fn list_requests(&self, uid: u32, admin: bool) -> Vec<RequestInfo> {
        self.requests
            .values()
            .filter(|r| admin || r.requester_uid == uid)
            .map(request_info)
            .collect()
    }

    pub fn get_request(
        &self,
        id: &str,
        uid: u32,
        admin: bool,
    ) -> Result<RequestInfo, AirlockError> {
        check_id(id)?;
        self.requests
            .get(id)
            .filter(|r| admin || r.requester_uid == uid)
            .map(request_info)
            .ok_or_else(|| AirlockError::NotFound(format!("no pending request {id}")))
    }

    /// Validates an approval and builds what `airlock-totp` is asked to sign.
    pub fn prepare_approval(
        &self,
        id: &str,
        ttl_secs: u64,
        write: bool,
    ) -> Result<GrantRequest, AirlockError> {
        check_id(id)?;
        let request = self
            .requests
            .get(id)
            .ok_or_else(|| AirlockError::NotFound(format!("no pending request {id}")))?;
        let max = self.times.max_grant_ttl.as_secs();
        let ttl = match (ttl_secs, request.requested_ttl_secs) {
            (0, 0) => self.times.default_grant_ttl.as_secs(),
            (0, asked) => asked,
            (given, _) => given,
        };
        if ttl > max {
            return Err(AirlockError::InvalidArgument(format!(
                "ttl {} exceeds the maximum of {}",
                timefmt::format_secs(ttl),
                timefmt::format_secs(max)
            )));
        }
        Ok(GrantRequest {
            request_id: request.id.clone(),
            subject_uid: request.requester_uid,
            session: request.session.clone().into(),
            scope: request.scope.to_string(),
            access: if write { Access::Write } else { Access::Read },
            ttl_secs: ttl,
        })
    }

    /// Records a failed code check reported by `airlock-totp`.
    pub fn record_totp_failure(
        &mut self,
        request_id: &str,
        approver_uid: u32,
        error: &AirlockError,
    ) -> Result<(), AirlockError> {
        let event = match error {
            AirlockError::Locked(_) => "totp_locked",
            _ => "totp_failed",
        };
        self.audit(
            event,
            json!({
                "service": "totp",
                "request_id": request_id,
                "approver_uid": approver_uid,
                "error": error.short_name(),
                "message": error.message(),
            }),
        )
    }

    /// Stores a grant signed by `airlock-totp`, after checking that it is
    /// exactly what was asked for and signed by the pinned key.
    pub fn complete_approval(
        &mut self,
        asked: &GrantRequest,
        wire: SignedGrantWire,
        approver_uid: u32,
        now: i64,
    ) -> Result<GrantInfo, AirlockError> {
        let signed = SignedGrant {
            payload: wire.payload,
            signature: wire.signature,
        };
        let key = self.signing_key.as_deref().ok_or_else(|| {
            AirlockError::Unavailable("no grant-verification key is pinned yet".into())
        })?;
        let body = signed
            .verify(key)
            .map_err(|e| internal("airlock-totp returned a grant that does not verify", e))?;
        let matches = body.request_id == asked.request_id
            && body.subject.uid == asked.subject_uid
            && body.subject.session == *asked.session
            && body.scope.to_string() == asked.scope
            && body.access == asked.access
            && (body.expires_at - body.not_before) as u64 == asked.ttl_secs
            && (body.not_before - now).abs() <= 60;
        if !matches {
            return Err(internal(
                "airlock-totp signed a grant that differs from the request",
                &body.grant_id,
            ));
        }
        if !self.requests.contains_key(&asked.request_id) {
            return Err(AirlockError::Conflict(format!(
                "request {} was decided or expired while the code was being checked",
                asked.request_id
            )));
        }
        self.audit(
            "totp_verified",
            json!({"service": "totp", "request_id": asked.request_id, "approver_uid": approver_uid}),
        )?;
        self.audit(
            "grant_issued",
            json!({
                "service": "gateway",
                "request_id": body.request_id,
                "grant_id": body.grant_id,
                "scope": body.scope.to_string(),
                "access": body.access.as_str(),
                "uid": body.subject.uid,
                "approver_uid": approver_uid,
                "expires_at": timefmt::rfc3339(body.expires_at),
            }),
        )?;
        self.requests.remove(&asked.request_id);
        self.grants
            .insert(body.grant_id.clone(), (signed, body.clone()));
        if let Err(e) = self.persist(Durability::Synced) {
            // A grant that is not on disk would vanish in a restart: withdraw
            // it now, on the record. The request stays settled, as its
            // `grant_issued` record would make it after a restart too.
            self.grants.remove(&body.grant_id);
            let _ = self.audit(
                "grant_revoked",
                json!({"service": "gateway", "grant_id": body.grant_id, "reason": "the gateway state could not be saved"}),
            );
            return Err(e);
        }
        Ok(grant_info(&body))
    }

    pub fn deny(&mut self, id: &str, reason: &str, approver_uid: u32) -> Result<(), AirlockError> {
        check_id(id)?;
        check_text("reason", reason)?;
        if !self.requests.contains_key(id) {
            return Err(AirlockError::NotFound(format!("no pending request {id}")));
        }
        self.audit(
            "request_denied",
            json!({"service": "gateway", "request_id": id, "reason": reason, "approver_uid": approver_uid}),
        )?;
        self.requests.remove(id);
        self.persist(Durability::ProcessCrash)
    }

    // ---- grants ----------------------------------------------------------

    /// Live grants whose subject is `session`.
    pub fn grants_of_session(&self, session: &str, now: i64) -> Vec<&GrantBody> {
        self.grants
            .values()
            .map(|(_, body)| body)
            .filter(|b| b.is_live(now) && b.subject.session.as_deref() == Some(session))
            .collect()
    }

    /// The session a grant belongs to, if any.
    pub fn session_of_grant(&self, grant_id: &str) -> Option<String> {
        self.grants
            .get(grant_id)
            .and_then(|(_, body)| body.subject.session.clone())
    }

    /// A pending request of `session` for exactly `scope`, to reuse when
    /// the kernel refuses the same command again.
    pub fn pending_request_for(&self, session: &str, scope: &str) -> Option<String> {
        self.requests
            .values()
            .find(|r| r.session.as_deref() == Some(session) && r.scope.to_string() == scope)
            .map(|r| r.id.clone())
    }

    pub fn list_grants(&self, uid: u32, admin: bool, now: i64) -> Vec<GrantInfo> {
        self.grants
            .values()
            .filter(|(_, body)| body.is_live(now) && (admin || body.subject.uid == uid))
            .map(|(_, body)| grant_info(body))
            .collect()
    }

    pub fn revoke(&mut self, grant_id: &str, by_uid: u32) -> Result<(), AirlockError> {
        check_id(grant_id)?;
        if !self.grants.contains_key(grant_id) {
            return Err(AirlockError::NotFound(format!("no live grant {grant_id}")));
        }
        self.audit(
            "grant_revoked",
            json!({"service": "gateway", "grant_id": grant_id, "by_uid": by_uid}),
        )?;
        self.grants.remove(grant_id);
        self.persist(Durability::Synced)
    }

    pub fn revoke_all(&mut self, by_uid: u32) -> Result<u32, AirlockError> {
        let ids: Vec<String> = self.grants.keys().cloned().collect();
        for id in &ids {
            self.audit(
                "grant_revoked",
                json!({"service": "gateway", "grant_id": id, "by_uid": by_uid}),
            )?;
        }
        self.grants.clear();
        self.persist(Durability::Synced)?;
        Ok(ids.len() as u32)
    }

    /// Drops expired requests and grants, each with its audit record.
    /// Returns the sessions whose grants changed.
    pub fn expire(&mut self, now: i64) -> Result<Vec<String>, AirlockError> {
        let stale_requests: Vec<String> = self
            .requests
            .values()
            .filter(|r| r.expires_at <= now)
            .map(|r| r.id.clone())
            .collect();
        let stale_grants: Vec<String> = self
            .grants
            .values()
            .filter(|(_, body)| body.expires_at <= now)
            .map(|(_, body)| body.grant_id.clone())
            .collect();
        if stale_requests.is_empty() && stale_grants.is_empty() {
            self.save_state()?;
            return Ok(Vec::new());
        }
        let mut touched: Vec<String> = stale_grants
            .iter()
            .filter_map(|id| self.session_of_grant(id))
            .collect();
        touched.dedup();
        for id in &stale_requests {
            self.audit(
                "request_expired",
                json!({"service": "gateway", "request_id": id}),
            )?;
            self.requests.remove(id);
        }
        for id in &stale_grants {
            self.audit(
                "grant_expired",
                json!({"service": "gateway", "grant_id": id}),
            )?;
            self.grants.remove(id);
        }
        // Expired grants are never honoured whether or not this reaches disk.
        self.persist(Durability::ProcessCrash)?;
        Ok(touched)
    }

    // ---- grant-verification key -----------------------------------------

    /// Pins the signer's public key on first contact; afterwards a different
    /// key is refused, since it would mean the signer's identity changed.
    pub fn pin_signing_key(&mut self, key_b64: &str) -> Result<(), AirlockError> {
        let key =
            decode_key(key_b64).map_err(|e| internal("bad public key from airlock-totp", e))?;
        match &self.signing_key {
            Some(pinned) if *pinned == key => Ok(()),
            Some(_) => Err(AirlockError::Internal(
                "airlock-totp presents a different grant-signing key than the one pinned in \
                 the gateway state; refusing its grants (if the TOTP state was reset on purpose, \
                 stop the gateway and remove signing_key from its state.json)"
                    .into(),
            )),
            None => {
                self.signing_key = Some(key);
                self.audit(
                    "signing_key_pinned",
                    json!({"service": "gateway", "key": key_b64}),
                )?;
                self.persist(Durability::Synced)
            }
        }
    }

    pub fn counts(&self, now: i64) -> (u32, u32) {
        let live = self.grants.values().filter(|(_, b)| b.is_live(now)).count();
        (self.requests.len() as u32, live as u32)
    }

    pub fn audit_event(&mut self, event: &str, value: Value) -> Result<(), AirlockError> {
        self.audit(event, value)
    }
}

fn join_diagnostics(diagnostics: &[airlock_common::policy::Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn check_id(id: &str) -> Result<(), AirlockError> {
    if ids::is_well_formed(id) {
        Ok(())
    } else {
        Err(AirlockError::InvalidArgument(format!(
            "malformed id: ids are 1-{} characters of a-z, A-Z, 0-9, - and _",
            ids::MAX_ID_LEN
        )))
    }
}

fn check_text(what: &str, text: &str) -> Result<(), AirlockError> {
    use airlock_common::dbus::MAX_TEXT_LEN;
    if text.len() > MAX_TEXT_LEN {
        return Err(AirlockError::InvalidArgument(format!(
            "{what} is longer than {MAX_TEXT_LEN} bytes"
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(AirlockError::InvalidArgument(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

fn request_info(r: &PendingRequest) -> RequestInfo {
    RequestInfo {
        id: r.id.clone(),
        scope: r.scope.to_string(),
        reason: r.reason.clone(),
        requester_uid: r.requester_uid,
        session: r.session.clone().into(),
        requested_ttl_secs: r.requested_ttl_secs,
        created_at: r.created_at,
        expires_at: r.expires_at,
    }
}

fn grant_info(body: &GrantBody) -> GrantInfo {
    GrantInfo {
        id: body.grant_id.clone(),
        request_id: body.request_id.clone(),
        scope: body.scope.to_string(),
        access: body.access,
        subject_uid: body.subject.uid,
        session: body.subject.session.clone().into(),
        not_before: body.not_before,
        expires_at: body.expires_at,
    }
}

fn encode_key(key: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Decodes a standard-base64 Ed25519 public key and checks its length.
fn decode_key(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.decode(text.trim())?;
    anyhow::ensure!(
        key.len() == 32,
        "an Ed25519 public key is 32 bytes, got {}",
        key.len()
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A gateway's directories; `open` is a gateway (re)start.
    struct Dirs {
        root: tempfile::TempDir,
    }

    impl Dirs {
        fn new() -> Dirs {
            let root = tempfile::tempdir().unwrap();
            for dir in ["policies", "state", "audit"] {
                std::fs::create_dir(root.path().join(dir)).unwrap();
            }
            Dirs { root }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.root.path().join(name)
        }

        fn open(&self) -> Core {
            let times = GatewayTimes {
                request_ttl: Duration::from_secs(600),
                default_grant_ttl: Duration::from_secs(3600),
                max_grant_ttl: Duration::from_secs(8 * 3600),
            };
            Core::open(
                &self.path("policies"),
                &self.path("state"),
                &self.path("audit"),
                times,
                20,
                "default",
            )
            .unwrap()
        }

        fn stored_requests(&self) -> Vec<String> {
            let text = std::fs::read(self.path("state/state.json")).unwrap_or_default();
            if text.is_empty() {
                return Vec::new();
            }
            let snapshot: Snapshot = serde_json::from_slice(&text).unwrap();
            snapshot.requests.into_iter().map(|r| r.id).collect()
        }

        fn audit_verifies(&self) -> bool {
            let head = audit::read_head(&self.path("audit").join(names::AUDIT_HEAD_FILE)).unwrap();
            let log = self.path("audit").join(names::AUDIT_LOG_FILE);
            audit::verify(&log, head.as_ref())
                .unwrap()
                .problem
                .is_none()
        }
    }

    fn ask(core: &mut Core, reason: &str, now: i64) -> String {
        core.request_approval(1000, None, "command:terraform plan", reason, 0, now)
            .unwrap()
            .id
    }

    fn pending(core: &Core) -> Vec<String> {
        core.list_requests(0, true)
            .into_iter()
            .map(|r| r.id)
            .collect()
    }

    #[test]
    fn requests_filed_before_a_crash_are_restored_from_the_audit_log() {
        let dirs = Dirs::new();
        let now = timefmt::now_unix();
        let mut core = dirs.open();
        let kept = ask(&mut core, "keep me", now);
        let denied = ask(&mut core, "deny me", now);
        core.deny(&denied, "no", 0).unwrap();
        let late = ask(&mut core, "filed last", now);
        // The deny saved the state file; the last request is only audited.
        assert_eq!(dirs.stored_requests(), vec![kept.clone()]);
        drop(core); // a crash: nothing more is written

        let core = dirs.open();
        let mut expected = vec![kept.clone(), late.clone()];
        expected.sort();
        assert_eq!(pending(&core), expected);
        let restored = core.get_request(&late, 0, true).unwrap();
        assert_eq!(restored.reason, "filed last");
        assert_eq!(restored.requester_uid, 1000);
        assert_eq!(restored.scope, "command:terraform plan");
        assert_eq!(restored.expires_at, now + 600);
        assert!(dirs.audit_verifies());
    }

    #[test]
    fn the_state_file_catches_up_on_the_next_tick_and_on_shutdown() {
        let dirs = Dirs::new();
        let now = timefmt::now_unix();
        let mut core = dirs.open();
        let first = ask(&mut core, "one", now);
        assert!(dirs.stored_requests().is_empty());
        core.expire(now).unwrap();
        assert_eq!(dirs.stored_requests(), vec![first.clone()]);
        let second = ask(&mut core, "two", now);
        core.save_state().unwrap();
        let mut expected = vec![first, second];
        expected.sort();
        let mut stored = dirs.stored_requests();
        stored.sort();
        assert_eq!(stored, expected);
        // A restart then has nothing to replay and restores nothing twice.
        drop(core);
        assert_eq!(pending(&dirs.open()), expected);
    }

    #[test]
    fn a_state_file_without_a_mark_replays_the_whole_log_to_the_same_result() {
        let dirs = Dirs::new();
        let now = timefmt::now_unix();
        let mut core = dirs.open();
        let kept = ask(&mut core, "keep", now);
        for reason in ["a", "b"] {
            let id = ask(&mut core, reason, now);
            core.deny(&id, "no", 0).unwrap();
        }
        core.save_state().unwrap();
        drop(core);
        // A state file written before the mark existed.
        let path = dirs.path("state/state.json");
        let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        state.as_object_mut().unwrap().remove("audit_mark").unwrap();
        std::fs::write(&path, state.to_string()).unwrap();
        assert_eq!(pending(&dirs.open()), vec![kept]);
    }

    /// Rewrites the audit log without the records from the first `event` on.
    fn cut_log_at(dirs: &Dirs, event: &str) {
        let path = dirs.path("audit").join(names::AUDIT_LOG_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let at = text
            .lines()
            .position(|l| l.contains(&format!("\"event\":\"{event}\"")))
            .unwrap();
        let kept: String = text.lines().take(at).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, kept).unwrap();
    }

    #[test]
    fn a_request_whose_denial_was_cut_from_the_log_is_not_revived() {
        let dirs = Dirs::new();
        let now = timefmt::now_unix();
        let mut core = dirs.open();
        let denied = ask(&mut core, "deny me", now);
        core.deny(&denied, "no", 0).unwrap();
        drop(core);
        // The state file's mark is the denial; cutting it leaves the
        // request's record without its end.
        cut_log_at(&dirs, "request_denied");
        let core = dirs.open();
        assert!(pending(&core).is_empty(), "a denied request came back");
        assert!(!dirs.audit_verifies(), "the cut stays visible");
    }

    #[test]
    fn only_records_after_the_mark_are_replayed() {
        let dirs = Dirs::new();
        let now = timefmt::now_unix();
        let mut core = dirs.open();
        let saved = ask(&mut core, "saved", now);
        core.save_state().unwrap();
        let unsaved = ask(&mut core, "unsaved", now);
        drop(core);
        // The state file says `saved` is settled; its record is before the
        // mark, so replay must leave it settled.
        let path = dirs.path("state/state.json");
        let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        state["requests"] = json!([]);
        std::fs::write(&path, state.to_string()).unwrap();
        let core = dirs.open();
        assert_eq!(pending(&core), vec![unsaved]);
        assert!(core.get_request(&saved, 0, true).is_err());
    }

    #[test]
    fn a_restored_request_that_expired_meanwhile_expires_with_its_record() {
        let dirs = Dirs::new();
        let long_ago = timefmt::now_unix() - 3600;
        let mut core = dirs.open();
        let stale = ask(&mut core, "old", long_ago);
        drop(core);
        let mut core = dirs.open();
        assert_eq!(pending(&core), vec![stale.clone()]);
        core.expire(timefmt::now_unix()).unwrap();
        assert!(pending(&core).is_empty());
        let records = audit::read_records(&dirs.path("audit").join(names::AUDIT_LOG_FILE)).unwrap();
        assert!(records
            .iter()
            .any(|r| r.event == "request_expired" && r.field_str("request_id") == Some(&stale)));
        drop(core);
        assert!(pending(&dirs.open()).is_empty());
    }
}
