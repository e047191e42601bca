//! `org.airlock.Gateway1` on the system bus.

use std::sync::{Arc, Mutex, MutexGuard};

use airlock_common::dbus::{
    AirlockError, DecisionInfo, GatewayStatus, GrantInfo, RequestInfo, Totp1Proxy, TotpStatus,
    MAX_ARGV, MAX_ARG_LEN,
};
use airlock_common::timefmt::now_unix;
use serde_json::json;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zeroize::Zeroizing;

use crate::caller::{caller_uid, is_admin, require_admin};
use crate::core::Core;

/// Longest TOTP code accepted (codes are 6 digits; anything longer is junk).
const MAX_CODE_LEN: usize = 16;

pub struct Gateway {
    core: Arc<Mutex<Core>>,
    totp: Totp1Proxy<'static>,
    dbus: DBusProxy<'static>,
}

impl Gateway {
    pub fn new(
        core: Arc<Mutex<Core>>,
        totp: Totp1Proxy<'static>,
        dbus: DBusProxy<'static>,
    ) -> Self {
        Gateway { core, totp, dbus }
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock must not wedge the daemon: the state
        // behind it is only ever changed after the audit record is written.
        self.core
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn caller(&self, header: &Header<'_>) -> Result<u32, AirlockError> {
        caller_uid(&self.dbus, header).await
    }

    /// Learns (and pins) the signer's public key if the gateway has none yet.
    pub async fn pin_signing_key(&self) -> Result<(), AirlockError> {
        let key = self.totp.public_key().await.map_err(totp_error)?;
        self.core().pin_signing_key(&key)
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

fn check_code(code: &str) -> Result<(), AirlockError> {
    if code.is_empty() || code.len() > MAX_CODE_LEN {
        return Err(AirlockError::InvalidArgument(
            "a TOTP code is 6 digits".into(),
        ));
    }
    Ok(())
}

#[zbus::interface(name = "org.airlock.Gateway1")]
impl Gateway {
    /// Evaluates `argv` under `role` with the policy set in force.
    async fn check_command(
        &self,
        role: &str,
        argv: Vec<String>,
    ) -> Result<DecisionInfo, AirlockError> {
        if argv.len() > MAX_ARGV || argv.iter().any(|a| a.len() > MAX_ARG_LEN) {
            return Err(AirlockError::InvalidArgument(format!(
                "argv is limited to {MAX_ARGV} elements of at most {MAX_ARG_LEN} bytes"
            )));
        }
        if role.len() > 64 {
            return Err(AirlockError::InvalidArgument("role id is too long".into()));
        }
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
        let new =
            self.core()
                .request_approval(uid, scope, reason, requested_ttl_secs, now_unix())?;
        if let Err(e) =
            Self::approval_requested(&emitter, &new.id, &new.scope, &new.reason, new.uid).await
        {
            tracing::warn!("cannot emit ApprovalRequested: {e}");
        }
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

    /// Approves a request with a TOTP code. `ttl_secs` 0 means the requested
    /// or default lifetime; grants are read-only unless `write` is true.
    async fn approve(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: &str,
        code: &str,
        ttl_secs: u64,
        write: bool,
    ) -> Result<GrantInfo, AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "approve requests")?;
        let code = Zeroizing::new(code.to_string());
        check_code(&code)?;
        let asked = self.core().prepare_approval(id, ttl_secs, write)?;
        self.pin_signing_key().await?;
        match self.totp.approve(asked.clone(), &code).await {
            Ok(signed) => self
                .core()
                .complete_approval(&asked, signed, uid, now_unix()),
            Err(e) => {
                let error = totp_error(e);
                if matches!(
                    error,
                    AirlockError::InvalidCode(_)
                        | AirlockError::CodeReused(_)
                        | AirlockError::Locked(_)
                ) {
                    self.core().record_totp_failure(id, uid, &error)?;
                }
                Err(error)
            }
        }
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
        self.core().revoke(grant_id, uid)
    }

    async fn revoke_all(&self, #[zbus(header)] header: Header<'_>) -> Result<u32, AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "revoke grants")?;
        self.core().revoke_all(uid)
    }

    /// Starts TOTP enrolment and returns the `otpauth://` URI. Replacing an
    /// active secret needs its current code, or root with `force`.
    async fn totp_setup(
        &self,
        #[zbus(header)] header: Header<'_>,
        force: bool,
        current_code: &str,
    ) -> Result<String, AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "enrol a TOTP secret")?;
        if force && uid != 0 {
            return Err(AirlockError::AccessDenied(
                "only root may force a TOTP re-enrolment".into(),
            ));
        }
        if current_code.len() > MAX_CODE_LEN {
            return Err(AirlockError::InvalidArgument(
                "a TOTP code is 6 digits".into(),
            ));
        }
        let uri = self
            .totp
            .begin_enrolment(force, current_code)
            .await
            .map_err(totp_error);
        let mut core = self.core();
        match uri {
            Ok(uri) => {
                core.audit_event(
                    "totp_enrolment_started",
                    json!({"service": "totp", "by_uid": uid, "forced": force}),
                )?;
                Ok(uri)
            }
            Err(e) => {
                if matches!(
                    e,
                    AirlockError::InvalidCode(_)
                        | AirlockError::CodeReused(_)
                        | AirlockError::Locked(_)
                ) {
                    core.record_totp_failure("", uid, &e)?;
                }
                Err(e)
            }
        }
    }

    async fn totp_confirm(
        &self,
        #[zbus(header)] header: Header<'_>,
        code: &str,
    ) -> Result<(), AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "enrol a TOTP secret")?;
        check_code(code)?;
        let result = self.totp.confirm_enrolment(code).await.map_err(totp_error);
        let mut core = self.core();
        match result {
            Ok(()) => core.audit_event("totp_enrolled", json!({"service": "totp", "by_uid": uid})),
            Err(e) => {
                if matches!(e, AirlockError::InvalidCode(_) | AirlockError::Locked(_)) {
                    core.record_totp_failure("", uid, &e)?;
                }
                Err(e)
            }
        }
    }

    /// Re-reads the policy directory; an invalid set is refused with every
    /// error and the previous set stays in force.
    async fn reload_policy(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, AirlockError> {
        let uid = self.caller(&header).await?;
        require_admin(uid, "reload policy")?;
        self.core().reload_policy()
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

    #[zbus(signal)]
    async fn approval_requested(
        emitter: &SignalEmitter<'_>,
        id: &str,
        scope: &str,
        reason: &str,
        uid: u32,
    ) -> zbus::Result<()>;
}
