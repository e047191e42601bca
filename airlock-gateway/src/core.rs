//! The gateway's coordinator: it checks each call against the state, then
//! orders what follows — the event into the audit log and the state (one
//! step, see `journal`), then the state file. The D-Bus layer (`service`)
//! tells the enforcer.
//!
//! Every method takes `now` and does no D-Bus I/O. Grant and session
//! changes are saved to the state file before the method returns, decisions
//! on requests too (without fsync); new requests only on the next tick, since
//! their fsync'd record is enough to restore them.

use std::path::Path;

use airlock_common::config::GatewayTimes;
use airlock_common::dbus::{
    AirlockError, DecisionInfo, EnforcementEvent, EnforcerStatus, GrantInfo, GrantRequest,
    RequestInfo, SessionRecord, SessionSpec, SignedGrantWire, TotpOutcome, TotpReport,
};
use airlock_common::enforcement::EnforcementMode;
use airlock_common::event::{Event, TotpFailure};
use airlock_common::fsutil::Durability;
use airlock_common::grant::{Access, Scope, SignedGrant};
use airlock_common::policy::protect;
use airlock_common::session::SessionState;
use airlock_common::validate::{check_id, check_text, usable_search_path};
use airlock_common::{ids, timefmt};

use crate::enforcement;
use crate::fold::{Folds, Offer};
use crate::journal::Journal;
use crate::policy::{PolicyState, Reload};
use crate::specs::session_spec;
use crate::state::decode_key;
use crate::state::grants;
use crate::state::requests::PendingRequest;
use crate::state::sessions::{NewSession, Session};

pub struct Core {
    pub policy: PolicyState,
    journal: Journal,
    /// The role of sessions started without one.
    default_role: String,
    /// The enforcement mode last recorded.
    enforcement_mode: Option<EnforcementMode>,
    /// Repeats of kernel events, counted until the tick records them.
    folds: Folds,
    times: GatewayTimes,
    max_pending_per_user: usize,
    /// `gateway.max_open_exchanges_per_user`.
    pub max_open_exchanges_per_user: usize,
}

/// What the caller of `request_approval` gets back, for the signal.
pub struct NewRequest {
    pub id: String,
    pub scope: String,
    pub reason: String,
    pub uid: u32,
}

/// A request filed (or found pending) for a command the kernel refused.
pub struct Filed {
    pub request: NewRequest,
    /// False when an identical pending request was reused.
    pub fresh: bool,
}

impl Core {
    /// Opens the journal (audit log, state file, replay of what the state
    /// file missed) and loads the policy directory.
    pub fn open(
        policy_dir: &Path,
        state_dir: &Path,
        audit_dir: &Path,
        times: GatewayTimes,
        max_pending_per_user: usize,
        default_role: &str,
    ) -> anyhow::Result<Core> {
        let (journal, recovery) = Journal::open(state_dir, audit_dir, times.request_ttl.as_secs())?;
        if !recovery.ended_grants.is_empty() {
            tracing::warn!(
                "grant(s) {} were revoked or expired after the state file was last saved; \
                 dropped again",
                recovery.ended_grants.join(", ")
            );
        }
        if !(recovery.restored.is_empty() && recovery.settled.is_empty()) {
            tracing::info!(
                "from the audit log: restored pending request(s) [{}], settled [{}]",
                recovery.restored.join(", "),
                recovery.settled.join(", ")
            );
        }
        let (policy, loaded) = PolicyState::open(policy_dir);
        let mut core = Core {
            policy,
            journal,
            default_role: default_role.to_owned(),
            enforcement_mode: None,
            folds: Folds::default(),
            times,
            max_pending_per_user,
            max_open_exchanges_per_user:
                airlock_common::config::DEFAULT_MAX_OPEN_EXCHANGES_PER_USER,
        };
        let now = timefmt::now_unix();
        core.record(loaded, now)?;
        let state = core.journal.state();
        let started = Event::ServiceStarted {
            grants: state.grants.count(),
            pending_requests: state.requests.count(),
            restored_requests: recovery.restored,
        };
        core.record(started, now)?;
        Ok(core)
    }

    /// Records an event that changes no saved state (or whose save can wait
    /// for the next tick).
    pub fn record(&mut self, event: Event, now: i64) -> Result<(), AirlockError> {
        self.journal.record(event, now)
    }

    /// Records an event and saves the state file with `durability`.
    fn record_and_save(
        &mut self,
        event: Event,
        now: i64,
        durability: Durability,
    ) -> Result<(), AirlockError> {
        self.journal.record(event, now)?;
        self.journal.save(durability);
        Ok(())
    }

    /// Records an event whose fsync the caller waits for after releasing
    /// the lock (group commit): see `Journal::record_deferred`.
    pub fn record_deferred(&mut self, event: Event, now: i64) -> Result<(), AirlockError> {
        self.journal.record_deferred(event, now).map(drop)
    }

    /// What to wait on, and for which `seq`, before answering a caller
    /// whose records were written with [`record_deferred`](Self::record_deferred).
    pub fn durability_ticket(&self) -> (airlock_common::audit::GroupCommit, u64) {
        (self.journal.group_commit(), self.journal.written_seq())
    }

    /// The audit log's newest record (`seq`, `hash`), synced, to be
    /// countersigned; `None` when it could not be synced.
    pub fn audit_head(&self) -> Option<airlock_common::audit::Head> {
        self.journal.audit_head()
    }

    /// Records the kernel events' repeats counted since the last call (the
    /// tick); with `all`, every count still open (shutdown).
    pub fn record_repeats(&mut self, now: i64, all: bool) {
        let records = if all {
            self.folds.drain()
        } else {
            self.folds.due(now)
        };
        for record in records {
            if let Err(e) = self.record(record, now) {
                tracing::error!("cannot record repeated kernel events: {}", e.message());
            }
        }
    }

    /// Writes the state file if it lags the log (the tick, and shutdown).
    pub fn save_state(&mut self) {
        self.journal.save(Durability::ProcessCrash);
    }

    // ---- policy ----------------------------------------------------------

    pub fn check_command(&self, role: &str, argv: &[String]) -> Result<DecisionInfo, AirlockError> {
        self.policy.check_command(role, argv)
    }

    /// Re-reads the policy directory. An invalid set is not applied: the
    /// previous one stays in force and the error says why.
    pub fn reload_policy(&mut self) -> Result<String, AirlockError> {
        let reload = self.policy.reload();
        self.record(reload.event(), timefmt::now_unix())?;
        match reload {
            Reload::Loaded { set, message } => {
                self.policy.apply(set, message.clone());
                Ok(message)
            }
            Reload::Rejected { message, .. } => {
                self.policy.reject(message.clone());
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
        let pending = self.journal.state().requests.pending_of(uid);
        if pending >= self.max_pending_per_user {
            return Err(AirlockError::Conflict(format!(
                "uid {uid} already has {pending} pending requests; wait for them to be decided or expire"
            )));
        }
        let new = NewRequest {
            id: ids::new_id("req"),
            scope: scope.to_string(),
            reason: reason.to_owned(),
            uid,
        };
        // The fsync'd record is what survives a crash; the state file
        // catches up on the next tick.
        self.record(
            Event::AccessRequested {
                request_id: new.id.clone(),
                scope,
                reason: reason.to_owned(),
                uid,
                session,
                requested_ttl_secs,
                expires_at: Some(now + self.times.request_ttl.as_secs() as i64),
            },
            now,
        )?;
        Ok(new)
    }

    pub fn list_requests(&self, uid: u32, admin: bool) -> Vec<RequestInfo> {
        self.journal
            .state()
            .requests
            .iter()
            .filter(|r| admin || r.requester_uid == uid)
            .map(PendingRequest::info)
            .collect()
    }

    pub fn get_request(
        &self,
        id: &str,
        uid: u32,
        admin: bool,
    ) -> Result<RequestInfo, AirlockError> {
        check_id(id)?;
        self.journal
            .state()
            .requests
            .get(id)
            .filter(|r| admin || r.requester_uid == uid)
            .map(PendingRequest::info)
            .ok_or_else(|| no_request(id))
    }

    /// Validates an approval and builds the grant request the approver is
    /// shown and `airlock-totp` is asked to sign.
    pub fn prepare_approval(
        &self,
        id: &str,
        ttl_secs: u64,
        write: bool,
    ) -> Result<GrantRequest, AirlockError> {
        check_id(id)?;
        let access = if write { Access::Write } else { Access::Read };
        self.journal
            .state()
            .requests
            .get(id)
            .ok_or_else(|| no_request(id))?
            .grant_request(ttl_secs, access, &self.times)
    }

    /// Records what airlock-totp reports: a grant it signed, a code it
    /// refused, an enrolment step.
    pub fn record_totp_report(&mut self, report: TotpReport, now: i64) -> Result<(), AirlockError> {
        let by_uid = report.by_uid;
        let request_id = (*report.request_id).clone();
        if request_id
            .as_deref()
            .is_some_and(|id| !ids::is_well_formed(id))
        {
            return Err(AirlockError::InvalidArgument("malformed request id".into()));
        }
        check_text("message", &report.message)?;
        let failure = || TotpFailure {
            request_id: request_id.clone(),
            approver_uid: by_uid,
            error: (*report.error).clone().unwrap_or_default(),
            message: report.message.clone(),
        };
        let event = match report.outcome {
            TotpOutcome::Signed => {
                let (Some(request_id), Some(grant_id)) =
                    (request_id.clone(), (*report.grant_id).clone())
                else {
                    return Err(AirlockError::InvalidArgument(
                        "a signed grant is reported with its request and grant ids".into(),
                    ));
                };
                check_id(&grant_id)?;
                Event::TotpVerified {
                    request_id,
                    approver_uid: by_uid,
                    grant_id: Some(grant_id),
                }
            }
            TotpOutcome::Failed => Event::TotpFailed(failure()),
            TotpOutcome::Locked => Event::TotpLocked(failure()),
            TotpOutcome::EnrolmentStarted => Event::TotpEnrolmentStarted {
                by_uid,
                forced: false,
            },
            TotpOutcome::EnrolmentForced => Event::TotpEnrolmentStarted {
                by_uid,
                forced: true,
            },
            TotpOutcome::Enrolled => Event::TotpEnrolled { by_uid },
        };
        self.record(event, now)
    }

    /// Stores a grant airlock-totp signed, after checking that it is signed
    /// by the pinned key and fits a pending request exactly: its subject,
    /// session and scope, a lifetime within the maximum. The approver saw
    /// and chose the access and the lifetime; airlock-totp signed them.
    pub fn record_grant(
        &mut self,
        wire: SignedGrantWire,
        approver_uid: u32,
        now: i64,
    ) -> Result<GrantInfo, AirlockError> {
        let signed = SignedGrant::from(wire);
        let state = self.journal.state();
        let key = state.signing_key.as_deref();
        let body = grants::verify_signed(&signed, key)?;
        let request = state.requests.get(&body.request_id).ok_or_else(|| {
            AirlockError::Conflict(format!(
                "request {} is not pending (decided, expired, or never filed)",
                body.request_id
            ))
        })?;
        let asked = request.grant_request(body.ttl_secs(), body.access, &self.times)?;
        let body = grants::check_fits(body, &asked, now)?;
        // airlock-totp reported the verification itself (`totp_verified`).
        // The record carries the signed grant: once it is on disk the grant
        // survives any crash, whether or not the state file is saved.
        self.record_and_save(
            Event::GrantIssued {
                request_id: body.request_id.clone(),
                grant_id: body.grant_id.clone(),
                scope: body.scope.clone(),
                access: body.access,
                uid: body.subject.uid,
                approver_uid,
                expires_at: body.expires_at,
                signed: Some(signed),
            },
            now,
            Durability::Synced,
        )?;
        Ok(grants::info(&body))
    }

    pub fn deny(&mut self, id: &str, reason: &str, approver_uid: u32) -> Result<(), AirlockError> {
        check_id(id)?;
        check_text("reason", reason)?;
        if !self.journal.state().requests.contains(id) {
            return Err(no_request(id));
        }
        self.record_and_save(
            Event::RequestDenied {
                request_id: id.to_owned(),
                reason: reason.to_owned(),
                approver_uid,
            },
            timefmt::now_unix(),
            Durability::ProcessCrash,
        )
    }

    // ---- grants ----------------------------------------------------------

    /// The session a grant belongs to, if any.
    pub fn session_of_grant(&self, grant_id: &str) -> Option<String> {
        self.journal
            .state()
            .grants
            .get(grant_id)
            .and_then(|body| body.subject.session.clone())
    }

    pub fn list_grants(&self, uid: u32, admin: bool, now: i64) -> Vec<GrantInfo> {
        self.journal
            .state()
            .grants
            .bodies()
            .filter(|body| body.is_live(now) && (admin || body.subject.uid == uid))
            .map(grants::info)
            .collect()
    }

    pub fn revoke(&mut self, grant_id: &str, by_uid: u32) -> Result<(), AirlockError> {
        check_id(grant_id)?;
        if !self.journal.state().grants.contains(grant_id) {
            return Err(AirlockError::NotFound(format!("no live grant {grant_id}")));
        }
        self.record_and_save(
            Event::GrantRevoked {
                grant_id: grant_id.to_owned(),
                by_uid: Some(by_uid),
                reason: None,
            },
            timefmt::now_unix(),
            Durability::Synced,
        )
    }

    pub fn revoke_all(&mut self, by_uid: u32) -> Result<u32, AirlockError> {
        let ids = self.journal.state().grants.ids();
        let now = timefmt::now_unix();
        for id in &ids {
            self.record(
                Event::GrantRevoked {
                    grant_id: id.clone(),
                    by_uid: Some(by_uid),
                    reason: None,
                },
                now,
            )?;
        }
        self.journal.save(Durability::Synced);
        Ok(ids.len() as u32)
    }

    /// Drops expired requests and grants, each with its record, and saves
    /// the state file if it lags. Returns the sessions whose grants changed.
    pub fn expire(&mut self, now: i64) -> Result<Vec<String>, AirlockError> {
        let state = self.journal.state();
        let stale_requests = state.requests.expired(now);
        let stale_grants = state.grants.expired(now);
        let mut touched: Vec<String> = stale_grants
            .iter()
            .filter_map(|id| self.session_of_grant(id))
            .collect();
        touched.sort();
        touched.dedup();
        for id in stale_requests {
            self.record(Event::RequestExpired { request_id: id }, now)?;
        }
        for id in stale_grants {
            self.record(Event::GrantExpired { grant_id: id }, now)?;
        }
        self.expire_integrations(now)?;
        // Expired grants are never honoured whether or not this reaches disk.
        self.journal.save(Durability::ProcessCrash);
        Ok(touched)
    }

    // ---- grant-verification key -----------------------------------------

    pub fn has_signing_key(&self) -> bool {
        self.journal.state().signing_key.is_some()
    }

    /// Pins the signer's public key on first contact; afterwards a different
    /// key is refused, since it would mean the signer's identity changed.
    pub fn pin_signing_key(&mut self, key_b64: &str) -> Result<(), AirlockError> {
        let key = decode_key(key_b64).map_err(|e| {
            tracing::error!("bad public key from airlock-totp: {e}");
            AirlockError::Internal(format!("bad public key from airlock-totp: {e}"))
        })?;
        match &self.journal.state().signing_key {
            Some(pinned) if *pinned == key => Ok(()),
            Some(_) => Err(AirlockError::Internal(
                "airlock-totp presents a different grant-signing key than the one pinned in \
                 the gateway state; refusing its grants (if the TOTP state was reset on purpose, \
                 stop the gateway and remove signing_key from its state.json)"
                    .into(),
            )),
            None => self.record_and_save(
                Event::SigningKeyPinned {
                    key: key_b64.trim().to_owned(),
                },
                timefmt::now_unix(),
                Durability::Synced,
            ),
        }
    }

    pub fn counts(&self, now: i64) -> (u32, u32) {
        let state = self.journal.state();
        let live = state.grants.bodies().filter(|b| b.is_live(now)).count();
        (state.requests.count() as u32, live as u32)
    }

    // ---- sessions --------------------------------------------------------

    pub fn session(&self, id: &str) -> Result<&Session, AirlockError> {
        if !ids::is_well_formed(id) {
            return Err(AirlockError::InvalidArgument("malformed session id".into()));
        }
        self.journal
            .state()
            .sessions
            .get(id)
            .ok_or_else(|| no_session(id))
    }

    /// Refuses (`Conflict`) a session that already ended.
    pub fn check_live_session(&self, id: &str) -> Result<(), AirlockError> {
        let session = self.session(id)?;
        if session.state.is_live() {
            Ok(())
        } else {
            Err(AirlockError::Conflict(format!(
                "session {id} already ended ({})",
                session.state.as_str()
            )))
        }
    }

    /// Sessions `uid` may see: all for admins, their own otherwise.
    pub fn list_sessions(&self, uid: u32, admin: bool) -> Vec<SessionRecord> {
        self.journal
            .state()
            .sessions
            .iter()
            .filter(|s| admin || s.uid == uid)
            .map(Session::record)
            .collect()
    }

    /// Registers a new session in state `ready`.
    pub fn create_session(
        &mut self,
        uid: u32,
        role: Option<&str>,
        bound_uid: bool,
        search_path: Vec<String>,
        now: i64,
    ) -> Result<Session, AirlockError> {
        let role = role.map_or_else(|| self.default_role.clone(), str::to_owned);
        let Some(policy_role) = self.policy.set.role(&role) else {
            return Err(AirlockError::NotFound(format!(
                "unknown role {role:?}; `airlockctl policy validate` lists the roles in force"
            )));
        };
        // A user binding's processes are not started by session-init:
        // nothing masks their files.
        let protect = if bound_uid {
            Vec::new()
        } else {
            protect::with_defaults(&policy_role.protect)
        };
        if bound_uid {
            if let Some(other) = self.journal.state().sessions.binding_of(uid) {
                return Err(AirlockError::Conflict(format!(
                    "uid {uid} is already bound to session {}",
                    other.id
                )));
            }
        }
        let search_path = usable_search_path(search_path);
        Ok(self.journal.sessions_mut().create(
            ids::new_id("ses"),
            NewSession {
                role,
                uid,
                bound_uid,
                search_path,
                protect,
            },
            now,
        ))
    }

    /// The enforcer took the session: recorded and saved.
    pub fn session_started(
        &mut self,
        id: &str,
        enforcement: EnforcementMode,
    ) -> Result<Session, AirlockError> {
        let session = self.session(id)?.clone();
        if session.state != SessionState::Ready {
            // It ended (exited, revoked) while the enforcer was taking it:
            // it stays ended.
            return Ok(session);
        }
        self.record_and_save(
            Event::SessionStarted {
                session: session.id.clone(),
                role: session.role.clone(),
                uid: session.uid,
                bound_uid: session.bound_uid,
                enforcement,
                index: Some(session.index),
                search_path: session.search_path.clone(),
            },
            timefmt::now_unix(),
            Durability::Synced,
        )?;
        Ok(self.session(id)?.clone())
    }

    /// The enforcer could not take the session: forget it.
    pub fn session_failed(&mut self, id: &str, error: &AirlockError) -> Result<(), AirlockError> {
        self.record_and_save(
            Event::SessionStartFailed {
                session: id.to_owned(),
                error: error.message(),
            },
            timefmt::now_unix(),
            Durability::Synced,
        )
    }

    /// Ends a session: `revoked` by someone, or `exited` by itself.
    pub fn end_session(
        &mut self,
        id: &str,
        state: SessionState,
        by_uid: Option<u32>,
        now: i64,
    ) -> Result<(), AirlockError> {
        match (self.session(id)?.state, state) {
            // A revoked session's processes have now gone; it stays revoked.
            (SessionState::Revoked, SessionState::Exited) => {
                if self.journal.sessions_mut().note_gone(id, now) {
                    self.journal.save(Durability::Synced);
                }
                return Ok(());
            }
            // Already recorded: a second report changes nothing.
            (SessionState::Exited, SessionState::Exited) => return Ok(()),
            _ => self.check_live_session(id)?,
        }
        let session = id.to_owned();
        let event = match state {
            SessionState::Revoked => Event::SessionRevoked { session, by_uid },
            _ => Event::SessionExited { session, by_uid },
        };
        self.record_and_save(event, now, Durability::Synced)
    }

    /// What the enforcer needs to govern `session`.
    pub fn session_spec(&self, session: &Session, now: i64) -> SessionSpec {
        session_spec(session, &self.policy.set, &self.journal.state().grants, now)
    }

    /// Specs of every live session, for a sync or after a policy reload.
    pub fn live_specs(&self, now: i64) -> Vec<SessionSpec> {
        self.journal
            .state()
            .sessions
            .live()
            .map(|s| self.session_spec(s, now))
            .collect()
    }

    // ---- the kernel ------------------------------------------------------

    /// Records a kernel event; for an approve-rule refusal, files a request
    /// for the session (or reuses its pending one for the same command).
    pub fn record_enforcement(
        &mut self,
        event: &EnforcementEvent,
        now: i64,
    ) -> Result<Option<Filed>, AirlockError> {
        let session = self.journal.state().sessions.get(&event.session).cloned();
        let (record, ask) = enforcement::translate(event, session.as_ref(), &self.policy.set)?;
        if self.folds.offer(&record, now) == Offer::Record {
            self.record(record, now)?;
        }
        let (Some(session), Some(ask)) = (session, ask) else {
            return Ok(None);
        };
        if let Some(pending) = self
            .journal
            .state()
            .requests
            .pending_for(&session.id, &ask.scope)
        {
            return Ok(Some(Filed {
                request: NewRequest {
                    id: pending.id.clone(),
                    scope: pending.scope.to_string(),
                    reason: String::new(),
                    uid: session.uid,
                },
                fresh: false,
            }));
        }
        let request = self.request_approval(
            session.uid,
            Some(session.id.clone()),
            &ask.scope.to_string(),
            &ask.reason,
            0,
            now,
        )?;
        Ok(Some(Filed {
            request,
            fresh: true,
        }))
    }

    /// Records the enforcement mode when it is first seen or changes.
    pub fn note_enforcement_mode(&mut self, status: &EnforcerStatus) {
        let mode = status.mode;
        if self.enforcement_mode == Some(mode) {
            return;
        }
        self.enforcement_mode = Some(mode);
        let _ = self.record(
            Event::EnforcementMode {
                mode,
                detail: status.detail.clone(),
                fix: status.fix.clone().into(),
            },
            timefmt::now_unix(),
        );
    }
}

fn no_request(id: &str) -> AirlockError {
    AirlockError::NotFound(format!("no pending request {id}"))
}

fn no_session(id: &str) -> AirlockError {
    AirlockError::NotFound(format!("no session {id}"))
}

mod integrations;

pub use integrations::verify_decision;
pub mod service_grants;

#[cfg(test)]
mod tests;
