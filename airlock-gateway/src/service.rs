//! `org.airlock.Gateway1` on the system bus.

use std::sync::{Arc, Mutex, MutexGuard};

use airlock_common::dbus::{
    AirlockError, Confinement, DecisionInfo, EnforcementEvent, Enforcer1Proxy, EnforcerStatus,
    GatewayStatus, GrantInfo, GrantRequest, RequestInfo, SessionRecord, SignedGrantWire,
    Totp1Proxy, TotpReport, TotpStatus,
};
use airlock_common::enforcement::EnforcementMode;
use airlock_common::event::Event;
use airlock_common::integrations::{
    ApiCredentials, AppInfo, AppKind, ArtifactInfo, ArtifactSubmission, DecisionKey, EnforcerHello,
    EnforcerInfo, ExchangeView, NewApp, NewPat, PairingView, PatInfo, SignedDecision,
};
use airlock_common::limits::MAX_SIGNED_GRANT_LEN;
use airlock_common::names;
use airlock_common::session::SessionState;
use airlock_common::timefmt::now_unix;
use airlock_common::validate::{
    check_argv, check_role_len, check_search_path, check_short, check_text,
};
use airlock_daemon::lock::MutexExt;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::Optional;

use crate::caller::{is_admin, require_admin, Callers};
use crate::core::Core;
use crate::ratelimit::AuditBudget;

pub struct Gateway {
    core: Arc<Mutex<Core>>,
    totp: Totp1Proxy<'static>,
    enforcer: Enforcer1Proxy<'static>,
    dbus: DBusProxy<'static>,
    callers: Arc<Callers>,
    budget: AuditBudget,
    /// airlock-totp's uid, the only caller of `ReportTotp`.
    totp_uid: Option<u32>,
    /// airlock-integrations' uid, the only caller (with root) of the `Api*`
    /// methods third-party enforcers' requests become.
    integrations_uid: Option<u32>,
    /// airlock-totp's decision-verification key, once asked.
    decision_key: Mutex<Option<DecisionKey>>,
}

impl Gateway {
    pub fn new(
        core: Arc<Mutex<Core>>,
        totp: Totp1Proxy<'static>,
        enforcer: Enforcer1Proxy<'static>,
        dbus: DBusProxy<'static>,
        callers: Arc<Callers>,
    ) -> Self {
        Gateway {
            core,
            totp,
            enforcer,
            dbus,
            callers,
            budget: AuditBudget::default(),
            totp_uid: uid_of(names::TOTP_USER),
            integrations_uid: uid_of(names::INTEGRATIONS_USER),
            decision_key: Mutex::new(None),
        }
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.locked()
    }

    async fn caller(&self, header: &Header<'_>) -> Result<u32, AirlockError> {
        self.callers.uid(&self.dbus, header).await
    }

    /// Charges a call that writes the audit log to `uid`'s budget; admins
    /// are never refused (and only looked up once over budget).
    fn charge(&self, uid: u32) -> Result<(), AirlockError> {
        match self.budget.charge(uid, std::time::Instant::now()) {
            Err(e) if !is_admin(uid) => Err(e),
            _ => Ok(()),
        }
    }

    /// The governed session the caller runs in, as the enforcer sees it.
    async fn caller_session(&self, header: &Header<'_>) -> Result<Option<String>, AirlockError> {
        let enforcer = &self.enforcer;
        self.callers
            .session(&self.dbus, header, |pid| async move {
                enforcer
                    .session_of_pid(pid)
                    .await
                    .map(Option::from)
                    .map_err(|e| {
                        AirlockError::Unavailable(format!(
                            "cannot tell whether the caller runs in a governed session: {}",
                            enforcer_error(e).message()
                        ))
                    })
            })
            .await
    }

    /// Refuses callers of the `Api*` methods but airlock-integrations (and
    /// root).
    async fn integrations_caller(&self, header: &Header<'_>) -> Result<(), AirlockError> {
        let uid = self.caller(header).await?;
        if uid == 0 || Some(uid) == self.integrations_uid {
            Ok(())
        } else {
            Err(AirlockError::AccessDenied(format!(
                "only airlock-integrations (user {}) relays enforcers' requests",
                names::INTEGRATIONS_USER
            )))
        }
    }

    /// The uid of a person managing their enforcers: never
    /// airlock-integrations itself, which only relays.
    async fn person(&self, header: &Header<'_>) -> Result<u32, AirlockError> {
        let uid = self.caller(header).await?;
        if Some(uid) == self.integrations_uid {
            return Err(AirlockError::AccessDenied(
                "airlock-integrations relays enforcers' requests; it manages nothing".into(),
            ));
        }
        Ok(uid)
    }

    /// airlock-totp's decision key, asked once.
    async fn decision_key(&self) -> Result<DecisionKey, AirlockError> {
        if let Some(key) = self.decision_key.locked().clone() {
            return Ok(key);
        }
        let key = self.totp.decision_key().await.map_err(totp_error)?;
        *self.decision_key.locked() = Some(key.clone());
        Ok(key)
    }

    /// Learns (and pins) the signer's public key if the gateway has none yet.
    pub async fn pin_signing_key(&self) -> Result<(), AirlockError> {
        if self.core().has_signing_key() {
            return Ok(());
        }
        let key = self.totp.public_key().await.map_err(totp_error)?;
        self.core().pin_signing_key(&key)
    }
}

fn uid_of(user: &str) -> Option<u32> {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|user| user.uid.as_raw())
}

/// Maps a failed call to `airlock-enforcer`, naming it when it is absent.
pub fn enforcer_error(e: zbus::Error) -> AirlockError {
    match AirlockError::from_remote(e) {
        AirlockError::ZBus(e) => AirlockError::Unavailable(format!(
            "airlock-enforcer did not answer ({e}); kernel enforcement is not running. \
             Start it (`systemctl start airlock-enforcer`), or see `airlockctl doctor`"
        )),
        other => other,
    }
}

/// Pushes a session's current spec (policy and grants) to the enforcer.
pub async fn push_session(
    core: &Arc<Mutex<Core>>,
    enforcer: &Enforcer1Proxy<'static>,
    id: &str,
) -> Result<(), AirlockError> {
    let spec = {
        let core = core.locked();
        let session = core.session(id)?;
        if !session.state.is_live() {
            return Ok(());
        }
        core.session_spec(session, now_unix())
    };
    enforcer.update_session(spec).await.map_err(enforcer_error)
}

/// Sends every live session to the enforcer (after either side started);
/// sessions it no longer has are marked exited.
/// Waits, off the async workers, until the records a deferred call wrote are
/// on disk; only then may it answer.
pub(crate) async fn durable(
    (commit, seq): (airlock_common::audit::GroupCommit, u64),
) -> Result<(), AirlockError> {
    match tokio::task::spawn_blocking(move || commit.wait_durable(seq)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => crate::journal::durability_failed(e),
        Err(e) => Err(AirlockError::Internal(format!(
            "waiting for the audit log: {e}"
        ))),
    }
}

pub async fn sync_enforcer(core: &Arc<Mutex<Core>>, enforcer: &Enforcer1Proxy<'static>) {
    let specs = core.locked().live_specs(now_unix());
    let count = specs.len();
    match enforcer.sync(specs).await {
        Ok(lost) => {
            let mut core = core.locked();
            for id in lost {
                tracing::warn!("session {id} is gone (its processes ended while nobody watched)");
                let _ = core.end_session(&id, SessionState::Exited, None, now_unix());
            }
            tracing::info!("synchronised {count} live session(s) with airlock-enforcer");
        }
        Err(e) => tracing::warn!(
            "cannot synchronise sessions with airlock-enforcer: {}",
            enforcer_error(e).message()
        ),
    }
    match enforcer.status().await {
        Ok(status) => {
            let mut core = core.locked();
            core.note_enforcement_mode(&status);
        }
        Err(e) => tracing::debug!("enforcer status: {e}"),
    }
}

/// Maps a failed call to `airlock-totp`, naming the service when it is absent.
fn totp_error(e: zbus::Error) -> AirlockError {
    match AirlockError::from_remote(e) {
        AirlockError::ZBus(e) => AirlockError::Unavailable(format!(
            "airlock-totp did not answer ({e}); is the airlock-totp service running?"
        )),
        other => other,
    }
}

/// Emits `ApprovalRequested` for a new request without holding up the
/// method's reply (the request is already audited and stored).
fn announce(emitter: &SignalEmitter<'_>, id: &str, scope: &str, reason: &str, uid: u32) {
    let emitter = emitter.to_owned();
    let (id, scope, reason) = (id.to_owned(), scope.to_owned(), reason.to_owned());
    tokio::spawn(async move {
        if let Err(e) = Gateway::approval_requested(&emitter, &id, &scope, &reason, uid).await {
            tracing::warn!("cannot emit ApprovalRequested: {e}");
        }
    });
}

/// A role asked for by name; none is the default role.
fn check_role(role: Option<&str>) -> Result<(), AirlockError> {
    role.map_or(Ok(()), |role| check_short("role", role))
}

impl Gateway {
    /// Records whether the enforcer took a new session: started (with the
    /// enforcement mode in force), or forgotten with the enforcer's error.
    async fn session_taken(
        &self,
        id: &str,
        taken: zbus::Result<()>,
    ) -> Result<SessionRecord, AirlockError> {
        if let Err(e) = taken {
            let error = enforcer_error(e);
            self.core().session_failed(id, &error)?;
            return Err(error);
        }
        let mode = self.enforcement_mode().await;
        let session = self.core().session_started(id, mode)?;
        if !session.state.is_live() {
            // Revoked while the enforcer was taking it (the revocation found
            // nothing to end then): end what the enforcer just set up.
            if let Err(e) = self.enforcer.end_session(id, true).await {
                tracing::error!(
                    "session {id} was revoked while starting, and the enforcer could not end it: {}",
                    enforcer_error(e).message()
                );
            }
            return Err(AirlockError::Conflict(format!(
                "session {id} was revoked while it was starting"
            )));
        }
        Ok(session.record())
    }

    /// The enforcement mode the enforcer reports, `Unknown` if it does not.
    async fn enforcement_mode(&self) -> EnforcementMode {
        match self.enforcer.status().await {
            Ok(status) => {
                self.core().note_enforcement_mode(&status);
                status.mode
            }
            Err(_) => EnforcementMode::Unknown,
        }
    }
}

#[zbus::interface(name = "org.airlock.Gateway1")]
impl Gateway {
    /// Evaluates `argv` under `role` with the policy set in force.
    async fn check_command(
        &self,
        role: &str,
        argv: Vec<String>,
    ) -> Result<DecisionInfo, AirlockError> {
        check_argv(&argv)?;
        check_role_len(role)?;
        self.core().check_command(role, &argv)
    }

    /// Files a request for human approval; returns its id.
    async fn request_approval(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        scope: &str,
        reason: &str,
        requested_ttl_secs: u64,
    ) -> Result<String, AirlockError> {
        let uid = self.caller(&header).await?;
        self.charge(uid)?;
        // A request from inside a governed session is for that session, so
        // that the grant applies there (and only there).
        let session = self.caller_session(&header).await?;
        let new = self.core().request_approval(
            uid,
            session,
            scope,
            reason,
            requested_ttl_secs,
            now_unix(),
        )?;
        announce(&emitter, &new.id, &new.scope, &new.reason, new.uid);
        Ok(new.id)
    }

    /// Pending requests: all of them for admins, the caller's own otherwise.
    async fn list_requests(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<RequestInfo>, AirlockError> {
        let uid = self.caller(&header).await?;
        Ok(self.core().list_requests(uid, is_admin(uid)))
    }

    async fn get_request(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: &str,
    ) -> Result<RequestInfo, AirlockError> {
        let uid = self.caller(&header).await?;
        self.core().get_request(id, uid, is_admin(uid))
    }

    /// The grant request for approving `id`: `ttl_secs` 0 means the
    /// requested or default lifetime; read-only unless `write`. The
    /// approver's airlockctl shows it and sends it, with the code, to
    /// airlock-totp itself: the gateway never sees the code.
    async fn prepare_approval(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: &str,
        ttl_secs: u64,
        write: bool,
    ) -> Result<GrantRequest, AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "approve requests")?;
        self.core().prepare_approval(id, ttl_secs, write)
    }

    /// Records a grant airlock-totp signed for a pending request, after
    /// checking it against the pinned key and the request, and gives it to
    /// the kernel before returning.
    async fn approve(
        &self,
        #[zbus(header)] header: Header<'_>,
        grant: SignedGrantWire,
    ) -> Result<GrantInfo, AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "approve requests")?;
        if grant.payload.len() > MAX_SIGNED_GRANT_LEN
            || grant.signature.len() > MAX_SIGNED_GRANT_LEN
        {
            return Err(AirlockError::InvalidArgument("grant is too large".into()));
        }
        self.pin_signing_key().await?;
        let grant = self.core().record_grant(grant, uid, now_unix())?;
        if let Some(session) = grant.session.as_deref() {
            // The kernel honours the grant before approve returns.
            if let Err(e) = push_session(&self.core, &self.enforcer, session).await {
                tracing::error!(
                    "grant {} is issued but the kernel does not know it yet: {}",
                    grant.id,
                    e.message()
                );
            }
        }
        Ok(grant)
    }

    /// airlock-totp reports an approval or enrolment outcome for the audit
    /// log (its user alone may).
    async fn report_totp(
        &self,
        #[zbus(header)] header: Header<'_>,
        report: TotpReport,
    ) -> Result<(), AirlockError> {
        let uid = self.caller(&header).await?;
        if Some(uid) != self.totp_uid {
            return Err(AirlockError::AccessDenied(format!(
                "only airlock-totp (user {}) reports TOTP outcomes",
                names::TOTP_USER
            )));
        }
        self.core().record_totp_report(report, now_unix())
    }

    async fn deny(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: &str,
        reason: &str,
    ) -> Result<(), AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "deny requests")?;
        self.core().deny(id, reason, uid)
    }

    /// Live grants: all of them for admins, the caller's own otherwise.
    async fn list_grants(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<GrantInfo>, AirlockError> {
        let uid = self.caller(&header).await?;
        Ok(self.core().list_grants(uid, is_admin(uid), now_unix()))
    }

    async fn revoke(
        &self,
        #[zbus(header)] header: Header<'_>,
        grant_id: &str,
    ) -> Result<(), AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "revoke grants")?;
        let session = self.core().session_of_grant(grant_id);
        self.core().revoke(grant_id, uid)?;
        if let Some(session) = session {
            push_session(&self.core, &self.enforcer, &session).await?;
        }
        Ok(())
    }

    async fn revoke_all(&self, #[zbus(header)] header: Header<'_>) -> Result<u32, AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "revoke grants")?;
        let count = self.core().revoke_all(uid)?;
        sync_enforcer(&self.core, &self.enforcer).await;
        Ok(count)
    }

    /// Re-reads the policy directory; an invalid set is refused with every
    /// error and the previous set stays in force.
    async fn reload_policy(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "reload policy")?;
        let message = self.core().reload_policy()?;
        // Running sessions get the new rules at once.
        sync_enforcer(&self.core, &self.enforcer).await;
        Ok(message)
    }

    async fn status(&self) -> Result<GatewayStatus, AirlockError> {
        let totp = self.totp.status().await;
        let core = self.core();
        let (pending, grants) = core.counts(now_unix());
        Ok(GatewayStatus {
            policy_dir: core.policy.dir.display().to_string(),
            policy_ok: core.policy.ok,
            policy_message: core.policy.message.clone(),
            policies: core.policy.set.policies().len() as u32,
            roles: core.policy.set.roles().len() as u32,
            pending_requests: pending,
            active_grants: grants,
            totp_reachable: totp.is_ok(),
            totp: totp.unwrap_or_else(|_| TotpStatus::default()),
        })
    }

    /// Starts a governed session for the process behind `pidfd`, which must
    /// run as the caller.
    async fn start_session(
        &self,
        #[zbus(header)] header: Header<'_>,
        role: Optional<&str>,
        pidfd: zbus::zvariant::OwnedFd,
        search_path: Vec<String>,
    ) -> Result<SessionRecord, AirlockError> {
        let uid = self.caller(&header).await?;
        self.charge(uid)?;
        check_role(*role)?;
        check_search_path(&search_path)?;
        // An agent must not trade its session for one of its choosing. The
        // enforcer checks the target process too; this refuses early.
        if let Some(current) = self.caller_session(&header).await? {
            self.core().record(
                Event::SessionRefused {
                    session: current.clone(),
                    uid,
                    role: role.unwrap_or_default().to_owned(),
                    stage: "session_start".into(),
                    reason: "a governed process asked for another session".into(),
                },
                now_unix(),
            )?;
            return Err(AirlockError::AccessDenied(format!(
                "the caller runs in governed session {current}; a governed process cannot start \
                 another session"
            )));
        }
        let session = self
            .core()
            .create_session(uid, *role, false, search_path, now_unix())?;
        let spec = self.core().session_spec(&session, now_unix());
        let fd = zbus::zvariant::Fd::from(&pidfd);
        let taken = self.enforcer.start_session(spec, fd).await;
        self.session_taken(&session.id, taken).await
    }

    /// How a process-tree session's first process confines itself: its
    /// owner asks, before the agent starts.
    async fn session_confinement(
        &self,
        #[zbus(header)] header: Header<'_>,
        session: &str,
    ) -> Result<Confinement, AirlockError> {
        let uid = self.caller(&header).await?;
        let core = self.core();
        let found = core.session(session)?;
        if found.uid != uid || found.bound_uid {
            return Err(AirlockError::AccessDenied(format!(
                "session {session} is not a process tree of yours"
            )));
        }
        Ok(Confinement {
            supervise: found.state.is_live() && found.enforcement == EnforcementMode::Degraded,
            allow_debugging: core
                .policy
                .set
                .role(&found.role)
                .is_some_and(|r| r.allow_debugging),
        })
    }

    /// The session's owner, from outside it, before the agent starts: the
    /// listener of the session's seccomp filter goes to the enforcer's
    /// supervisor (degraded mode), which takes one per session and checks
    /// every call it is asked about against the session's cgroup.
    async fn supervise_exec(
        &self,
        #[zbus(header)] header: Header<'_>,
        session: &str,
        listener: zbus::zvariant::OwnedFd,
    ) -> Result<(), AirlockError> {
        let uid = self.caller(&header).await?;
        {
            let core = self.core();
            let found = core.session(session)?;
            if found.uid != uid || found.bound_uid {
                return Err(AirlockError::AccessDenied(format!(
                    "session {session} is not a process tree of yours"
                )));
            }
            if !found.state.is_live() || found.enforcement != EnforcementMode::Degraded {
                return Err(AirlockError::Conflict(format!(
                    "session {session} is {} with enforcement {}: it takes no supervisor",
                    found.state, found.enforcement
                )));
            }
        }
        // The agent itself must not swap the supervisor for one of its own.
        if let Some(current) = self.caller_session(&header).await? {
            return Err(AirlockError::AccessDenied(format!(
                "the caller runs in governed session {current}; only the process that started \
                 a session hands over its supervisor"
            )));
        }
        self.enforcer
            .supervise_exec(session, zbus::zvariant::Fd::from(&listener))
            .await
            .map_err(enforcer_error)?;
        drop(listener);
        self.core().record(
            Event::SessionSupervised {
                session: session.to_owned(),
            },
            now_unix(),
        )
    }

    /// Records that the caller runs an agent without enforcement.
    async fn record_unenforced(
        &self,
        #[zbus(header)] header: Header<'_>,
        role: Optional<&str>,
        reason: &str,
    ) -> Result<(), AirlockError> {
        let uid = self.caller(&header).await?;
        self.charge(uid)?;
        check_role(*role)?;
        check_text("reason", reason)?;
        self.core().record(
            Event::SessionUnenforced {
                uid,
                role: role.unwrap_or_default().to_owned(),
                reason: reason.to_owned(),
            },
            now_unix(),
        )
    }

    /// Governs every process of a Unix user (admins only).
    async fn bind_user(
        &self,
        #[zbus(header)] header: Header<'_>,
        role: Optional<&str>,
        uid: u32,
    ) -> Result<SessionRecord, AirlockError> {
        let caller = self.caller(&header).await?;
        require_admin(caller, "bind a user to a governed session")?;
        check_role(*role)?;
        if uid == 0 {
            return Err(AirlockError::InvalidArgument(
                "root cannot be a governed agent user".into(),
            ));
        }
        let session = self
            .core()
            .create_session(uid, *role, true, Vec::new(), now_unix())?;
        let spec = self.core().session_spec(&session, now_unix());
        let taken = self.enforcer.bind_user(spec).await;
        self.session_taken(&session.id, taken).await
    }

    async fn list_sessions(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<SessionRecord>, AirlockError> {
        let uid = self.caller(&header).await?;
        Ok(self.core().list_sessions(uid, is_admin(uid)))
    }

    /// Revokes a session and ends its processes: its owner or an admin; a
    /// user binding only an admin, since the bound user is the governed one.
    async fn revoke_session(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: &str,
    ) -> Result<(), AirlockError> {
        let uid = self.caller(&header).await?;
        let (owner, bound_uid) = {
            let core = self.core();
            let session = core.session(id)?;
            (session.uid, session.bound_uid)
        };
        if bound_uid {
            require_admin(uid, "revoke a user binding")?;
        } else if owner != uid {
            require_admin(uid, "revoke another user's session")?;
        }
        self.core().check_live_session(id)?;
        // The kernel side first: if the enforcer cannot end the session,
        // nothing is recorded and the revocation can be repeated. One it
        // does not know has nothing in the kernel to end.
        match self
            .enforcer
            .end_session(id, true)
            .await
            .map_err(enforcer_error)
        {
            Ok(()) | Err(AirlockError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.core()
            .end_session(id, SessionState::Revoked, Some(uid), now_unix())
    }

    /// Files a request for a session (its owner or an admin).
    async fn request_for_session(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        session: &str,
        scope: &str,
        reason: &str,
        requested_ttl_secs: u64,
    ) -> Result<String, AirlockError> {
        let uid = self.caller(&header).await?;
        self.charge(uid)?;
        let owner = self.core().session(session)?.uid;
        if owner != uid {
            require_admin(uid, "file requests for another user's session")?;
        }
        let new = self.core().request_approval(
            owner,
            Some(session.to_owned()),
            scope,
            reason,
            requested_ttl_secs,
            now_unix(),
        )?;
        announce(&emitter, &new.id, &new.scope, &new.reason, new.uid);
        Ok(new.id)
    }

    async fn enforcer_status(&self) -> Result<EnforcerStatus, AirlockError> {
        self.enforcer.status().await.map_err(enforcer_error)
    }

    /// The enforcer reports a kernel event (root only): it is audited, and
    /// for a command that needs approval a request is filed (or the pending
    /// one reused) and its id returned.
    async fn report_enforcement(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        event: EnforcementEvent,
    ) -> Result<Optional<String>, AirlockError> {
        let uid = self.caller(&header).await?;
        if uid != 0 {
            return Err(AirlockError::AccessDenied(
                "only airlock-enforcer (root) reports enforcement events".into(),
            ));
        }
        let filed = self.core().record_enforcement(&event, now_unix())?;
        if let Some(filed) = filed.as_ref().filter(|f| f.fresh) {
            let new = &filed.request;
            announce(&emitter, &new.id, &new.scope, &new.reason, new.uid);
        }
        Ok(filed.map(|f| f.request.id).into())
    }

    /// The enforcer saw a session's last process exit (root only).
    async fn session_exited(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: &str,
    ) -> Result<(), AirlockError> {
        let uid = self.caller(&header).await?;
        if uid != 0 {
            return Err(AirlockError::AccessDenied(
                "only airlock-enforcer (root) reports session exits".into(),
            ));
        }
        self.core()
            .end_session(id, SessionState::Exited, None, now_unix())
    }

    // ---- third-party enforcers: their requests, relayed ---------------------

    /// What discovery publishes: the key decisions are signed with.
    async fn api_discovery(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<DecisionKey, AirlockError> {
        self.integrations_caller(&header).await?;
        self.decision_key().await
    }

    async fn api_consent_status(
        &self,
        #[zbus(header)] header: Header<'_>,
        creds: ApiCredentials,
    ) -> Result<String, AirlockError> {
        self.integrations_caller(&header).await?;
        self.core().api_consent_status(&creds, now_unix())
    }

    async fn api_pairing_initiate(
        &self,
        #[zbus(header)] header: Header<'_>,
        creds: ApiCredentials,
        hello: EnforcerHello,
    ) -> Result<PairingView, AirlockError> {
        self.integrations_caller(&header).await?;
        self.core().api_pairing_initiate(&creds, hello, now_unix())
    }

    async fn api_pairing_claim(
        &self,
        #[zbus(header)] header: Header<'_>,
        creds: ApiCredentials,
        code: &str,
        hello: EnforcerHello,
    ) -> Result<PairingView, AirlockError> {
        self.integrations_caller(&header).await?;
        self.core()
            .api_pairing_claim(&creds, code, hello, now_unix())
    }

    async fn api_pairing_status(
        &self,
        #[zbus(header)] header: Header<'_>,
        creds: ApiCredentials,
        nonce: &str,
    ) -> Result<PairingView, AirlockError> {
        self.integrations_caller(&header).await?;
        self.core().api_pairing_status(&creds, nonce, now_unix())
    }

    /// Returns the revoked pairing's enforcer id.
    async fn api_pairing_revoke(
        &self,
        #[zbus(header)] header: Header<'_>,
        creds: ApiCredentials,
        routing_token: &str,
    ) -> Result<String, AirlockError> {
        self.integrations_caller(&header).await?;
        self.core()
            .api_pairing_revoke(&creds, routing_token, now_unix())
    }

    async fn api_pairing_pregenerate(
        &self,
        #[zbus(header)] header: Header<'_>,
        creds: ApiCredentials,
    ) -> Result<PairingView, AirlockError> {
        self.integrations_caller(&header).await?;
        self.core().api_pregenerate(&creds, now_unix())
    }

    async fn api_heartbeat(
        &self,
        #[zbus(header)] header: Header<'_>,
        creds: ApiCredentials,
        enforcer_id: &str,
    ) -> Result<(), AirlockError> {
        self.integrations_caller(&header).await?;
        self.core().api_heartbeat(&creds, enforcer_id, now_unix())
    }

    /// A paired enforcer's artifact becomes a pending request (announced
    /// like the local ones).
    async fn api_submit(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        creds: ApiCredentials,
        artifact: ArtifactSubmission,
    ) -> Result<(), AirlockError> {
        self.integrations_caller(&header).await?;
        let now = now_unix();
        let (id, info, ticket) = {
            let mut core = self.core();
            let id = core.api_submit(&creds, artifact, now)?;
            let info = core.get_artifact(&id, 0, true, now)?;
            (id, info, core.durability_ticket())
        };
        // Group commit: concurrent submissions share one fsync.
        durable(ticket).await?;
        let scope = format!("enforcer:{}", info.enforcer_id);
        announce(&emitter, &id, &scope, &info.label, info.uid);
        Ok(())
    }

    async fn api_exchange(
        &self,
        #[zbus(header)] header: Header<'_>,
        creds: ApiCredentials,
        request_id: &str,
    ) -> Result<ExchangeView, AirlockError> {
        self.integrations_caller(&header).await?;
        self.core().api_exchange(&creds, request_id, now_unix())
    }

    async fn api_withdraw(
        &self,
        #[zbus(header)] header: Header<'_>,
        creds: ApiCredentials,
        request_id: &str,
    ) -> Result<(), AirlockError> {
        self.integrations_caller(&header).await?;
        self.core().api_withdraw(&creds, request_id, now_unix())
    }

    async fn api_ack(
        &self,
        #[zbus(header)] header: Header<'_>,
        creds: ApiCredentials,
        request_id: &str,
        msg_id: &str,
    ) -> Result<(), AirlockError> {
        self.integrations_caller(&header).await?;
        self.core().api_ack(&creds, request_id, msg_id, now_unix())
    }

    /// A decision exists for the enforcer's `request_id` (only
    /// airlock-integrations may receive it: it wakes its long-polls).
    #[zbus(signal)]
    async fn exchange_decided(emitter: &SignalEmitter<'_>, request_id: &str) -> zbus::Result<()>;

    // ---- third-party enforcers: the people's side ---------------------------

    /// Registers an enforcer app (admins); a confidential app's secret is
    /// returned once and kept as its SHA-256.
    async fn add_app(
        &self,
        #[zbus(header)] header: Header<'_>,
        kind: AppKind,
        name: &str,
        origins: Vec<String>,
    ) -> Result<NewApp, AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "register enforcer apps")?;
        self.core().add_app(kind, name, origins, uid)
    }

    /// Registered apps, with the caller's consent to each.
    async fn list_apps(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<AppInfo>, AirlockError> {
        let uid = self.caller(&header).await?;
        Ok(self.core().list_apps(uid))
    }

    /// The caller's own consent to an app.
    async fn set_app_consent(
        &self,
        #[zbus(header)] header: Header<'_>,
        app_id: &str,
        allowed: bool,
    ) -> Result<(), AirlockError> {
        let uid = self.person(&header).await?;
        self.charge(uid)?;
        self.core().set_consent(app_id, uid, allowed)
    }

    /// A personal access token for the caller, returned once.
    async fn create_pat(
        &self,
        #[zbus(header)] header: Header<'_>,
        ttl_secs: u64,
    ) -> Result<NewPat, AirlockError> {
        let uid = self.person(&header).await?;
        self.charge(uid)?;
        self.core().create_pat(uid, ttl_secs, now_unix())
    }

    async fn list_pats(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<PatInfo>, AirlockError> {
        let uid = self.caller(&header).await?;
        Ok(self.core().list_pats(uid, is_admin(uid)))
    }

    async fn revoke_pat(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: &str,
    ) -> Result<(), AirlockError> {
        let uid = self.person(&header).await?;
        self.core().revoke_pat(id, uid, is_admin(uid))
    }

    /// Completes the pairing an enforcer shows `code` for (its user or an
    /// admin).
    async fn pair(
        &self,
        #[zbus(header)] header: Header<'_>,
        code: &str,
    ) -> Result<EnforcerInfo, AirlockError> {
        let uid = self.person(&header).await?;
        self.charge(uid)?;
        self.core().pair(code, uid, is_admin(uid), now_unix())
    }

    /// A code for one of the caller's enforcers to claim.
    async fn pregenerate_pairing(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<PairingView, AirlockError> {
        let uid = self.person(&header).await?;
        self.charge(uid)?;
        self.core().pregenerate_pairing(uid, now_unix())
    }

    async fn list_enforcers(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<EnforcerInfo>, AirlockError> {
        let uid = self.caller(&header).await?;
        Ok(self.core().list_enforcers(uid, is_admin(uid), now_unix()))
    }

    async fn unpair(
        &self,
        #[zbus(header)] header: Header<'_>,
        pairing: &str,
    ) -> Result<(), AirlockError> {
        let uid = self.person(&header).await?;
        self.core().unpair(pairing, uid, is_admin(uid))
    }

    /// Enforcers' artifacts waiting for a decision: all for admins, the
    /// caller's own otherwise.
    async fn list_artifacts(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<ArtifactInfo>, AirlockError> {
        let uid = self.caller(&header).await?;
        Ok(self.core().list_artifacts(uid, is_admin(uid), now_unix()))
    }

    async fn get_artifact(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: &str,
    ) -> Result<ArtifactInfo, AirlockError> {
        let uid = self.caller(&header).await?;
        self.core().get_artifact(id, uid, is_admin(uid), now_unix())
    }

    /// The decrypted content of artifact `id` (admins: the approver).
    async fn read_artifact(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: &str,
    ) -> Result<String, AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "read enforcers' artifacts")?;
        self.core().read_artifact(id, now_unix())
    }

    /// Records the decision airlock-totp signed for artifact `id` (admins,
    /// after the approver's code), and wakes the enforcer's long-poll.
    async fn decide_artifact(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        id: &str,
        decision: SignedDecision,
    ) -> Result<(), AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "decide on enforcers' artifacts")?;
        let key = self.decision_key().await?;
        let request_id = self
            .core()
            .record_decision(id, decision, &key, uid, now_unix())?;
        if let Err(e) = Gateway::exchange_decided(&emitter, &request_id).await {
            tracing::warn!("cannot emit ExchangeDecided: {e}");
        }
        Ok(())
    }

    #[zbus(signal)]
    async fn approval_requested(
        emitter: &SignalEmitter<'_>,
        id: &str,
        scope: &str,
        reason: &str,
        uid: u32,
    ) -> zbus::Result<()>;
}
