//! `org.airlock.Totp1` on the system bus.
//!
//! Approving and enrolling are for people: root or group `airlock-admin`,
//! calling from `airlockctl` with the code they typed and, for an approval,
//! exactly the grant request they were shown. The gateway user may read the
//! status and the public key only, so a compromised gateway can neither mint
//! a grant nor learn a new secret. The bus policy says so, and every method
//! checks the caller's uid again.
//!
//! Each outcome is reported to the gateway for the audit log; a report that
//! cannot be delivered is logged here and does not hold up the caller.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use airlock_common::dbus::{
    caller_uid, AirlockError, Gateway1Proxy, GrantRequest, HeadSignature, SignedGrantWire,
    TotpOutcome, TotpReport, TotpStatus,
};
use airlock_common::integrations::{is_sha256_hex, DecisionKey, DecisionStatement, SignedDecision};
use airlock_common::timefmt::now_unix;
use airlock_common::validate::{check_code, check_id, check_text};
use airlock_daemon::lock::MutexExt;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::zvariant::Optional;

use crate::audit_head::{AuditHeads, HeadError};
use crate::authenticator::{Authenticator, TotpError};
use crate::callers::Caller;
use crate::decision::DecisionSigner;
use crate::signer::GrantSigner;

/// How long a report to the gateway may hold up the approver.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// The keys airlock-totp signs with: grants (and audit heads), and third-party
/// enforcers' decisions.
pub struct Signers {
    pub grants: GrantSigner,
    pub decisions: DecisionSigner,
}

pub struct TotpService {
    authenticator: Arc<Mutex<Authenticator>>,
    audit_heads: Mutex<AuditHeads>,
    signer: GrantSigner,
    decisions: DecisionSigner,
    max_grant_ttl_secs: u64,
    gateway_uid: u32,
    dbus: DBusProxy<'static>,
    gateway: Gateway1Proxy<'static>,
}

impl TotpService {
    pub fn new(
        authenticator: Authenticator,
        audit_heads: AuditHeads,
        signers: Signers,
        max_grant_ttl_secs: u64,
        gateway_uid: u32,
        dbus: DBusProxy<'static>,
        gateway: Gateway1Proxy<'static>,
    ) -> Self {
        TotpService {
            authenticator: Arc::new(Mutex::new(authenticator)),
            audit_heads: Mutex::new(audit_heads),
            signer: signers.grants,
            decisions: signers.decisions,
            max_grant_ttl_secs,
            gateway_uid,
            dbus,
            gateway,
        }
    }

    fn audit_heads(&self) -> MutexGuard<'_, AuditHeads> {
        self.audit_heads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn authenticator(&self) -> MutexGuard<'_, Authenticator> {
        self.authenticator.locked()
    }

    async fn caller(&self, header: &Header<'_>) -> Result<Caller, AirlockError> {
        let uid = caller_uid(&self.dbus, header).await?;
        Caller::of(uid, self.gateway_uid)
    }

    /// Tells the gateway, for the audit log; never fails the caller.
    async fn report(&self, report: TotpReport) {
        report_to(&self.gateway, report).await;
    }

    /// Reports a refused code (wrong, reused, or locked out); other errors
    /// spent no code and are not reported.
    async fn report_refusal(&self, by_uid: u32, request_id: Option<&str>, error: &AirlockError) {
        report_refusal_to(&self.gateway, by_uid, request_id, error).await;
    }

    /// The verifier, for `Keys1`'s admin unwrap, which spends codes too.
    pub fn authenticator_handle(&self) -> Arc<Mutex<Authenticator>> {
        self.authenticator.clone()
    }

    async fn report_enrolment(&self, outcome: TotpOutcome, by_uid: u32) {
        self.report(TotpReport {
            outcome,
            by_uid,
            request_id: None.into(),
            grant_id: None.into(),
            error: None.into(),
            message: String::new(),
        })
        .await;
    }
}

/// Tells the gateway, for the audit log; never fails the caller.
pub(crate) async fn report_to(gateway: &Gateway1Proxy<'static>, report: TotpReport) {
    let outcome = report.outcome;
    match tokio::time::timeout(REPORT_TIMEOUT, gateway.report_totp(report)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(
            "cannot report {outcome:?} to the gateway for the audit log: {}",
            AirlockError::from_remote(e).message()
        ),
        Err(_) => tracing::warn!(
            "the gateway did not take the report of {outcome:?} within {REPORT_TIMEOUT:?}; \
             it is not in the audit log"
        ),
    }
}

/// Reports a refused code (wrong, reused, or locked out); other errors
/// spent no code and are not reported.
pub(crate) async fn report_refusal_to(
    gateway: &Gateway1Proxy<'static>,
    by_uid: u32,
    request_id: Option<&str>,
    error: &AirlockError,
) {
    let outcome = match error {
        AirlockError::Locked(_) => TotpOutcome::Locked,
        AirlockError::InvalidCode(_) | AirlockError::CodeReused(_) => TotpOutcome::Failed,
        _ => return,
    };
    report_to(
        gateway,
        TotpReport {
            outcome,
            by_uid,
            request_id: request_id.map(str::to_owned).into(),
            grant_id: None.into(),
            error: Some(error.short_name().to_owned()).into(),
            message: error.message(),
        },
    )
    .await;
}

pub(crate) fn to_dbus(error: TotpError) -> AirlockError {
    let message = error.to_string();
    match error {
        TotpError::NotEnrolled | TotpError::NoPendingEnrolment => {
            AirlockError::NotEnrolled(message)
        }
        TotpError::AlreadyEnrolled => AirlockError::AccessDenied(message),
        TotpError::InvalidCode { .. } => AirlockError::InvalidCode(message),
        TotpError::CodeReused => AirlockError::CodeReused(message),
        TotpError::MalformedCode => AirlockError::InvalidArgument(message),
        TotpError::Locked { .. } => AirlockError::Locked(message),
        TotpError::Io(_) | TotpError::Corrupt(_) => {
            tracing::error!("{message}");
            AirlockError::Internal(message)
        }
    }
}

#[zbus::interface(name = "org.airlock.Totp1")]
impl TotpService {
    async fn status(&self, #[zbus(header)] header: Header<'_>) -> Result<TotpStatus, AirlockError> {
        self.caller(&header).await?;
        Ok(self.authenticator().status(now_unix()))
    }

    /// Creates a pending secret and returns its `otpauth://` URI.
    async fn begin_enrolment(
        &self,
        #[zbus(header)] header: Header<'_>,
        force: bool,
        current_code: Optional<&str>,
    ) -> Result<String, AirlockError> {
        let caller = self.caller(&header).await?;
        caller.require_person("enrol a TOTP secret")?;
        let uid = caller.uid(self.gateway_uid);
        // Forcing replaces the secret without a code: root's alone.
        if force && caller != Caller::Root {
            return Err(AirlockError::AccessDenied(
                "only root, calling airlock-totp directly, may force a re-enrolment".into(),
            ));
        }
        if force {
            // On the record before the secret changes.
            self.report_enrolment(TotpOutcome::EnrolmentForced, uid)
                .await;
        }
        let started = self
            .authenticator()
            .begin_enrolment(force, *current_code, now_unix())
            .map(|uri| uri.to_string())
            .map_err(to_dbus);
        match started {
            Ok(uri) => {
                tracing::info!("TOTP enrolment started by uid {uid} (forced: {force})");
                if !force {
                    self.report_enrolment(TotpOutcome::EnrolmentStarted, uid)
                        .await;
                }
                Ok(uri)
            }
            Err(e) => {
                self.report_refusal(uid, None, &e).await;
                Err(e)
            }
        }
    }

    async fn confirm_enrolment(
        &self,
        #[zbus(header)] header: Header<'_>,
        code: &str,
    ) -> Result<(), AirlockError> {
        let caller = self.caller(&header).await?;
        caller.require_person("confirm a TOTP enrolment")?;
        let uid = caller.uid(self.gateway_uid);
        let confirmed = self
            .authenticator()
            .confirm_enrolment(code, now_unix())
            .map_err(to_dbus);
        match confirmed {
            Ok(()) => {
                tracing::info!("TOTP enrolment confirmed by uid {uid}");
                self.report_enrolment(TotpOutcome::Enrolled, uid).await;
                Ok(())
            }
            Err(e) => {
                self.report_refusal(uid, None, &e).await;
                Err(e)
            }
        }
    }

    /// Verifies `code` and, only if it is valid, signs a grant for exactly
    /// `request`: what the approver's airlockctl showed them.
    async fn approve(
        &self,
        #[zbus(header)] header: Header<'_>,
        request: GrantRequest,
        code: &str,
    ) -> Result<SignedGrantWire, AirlockError> {
        let caller = self.caller(&header).await?;
        caller.require_person("approve a request")?;
        let uid = caller.uid(self.gateway_uid);
        let now = now_unix();
        // Validate before spending a code, so a malformed request does not
        // consume the approver's time step.
        let body = GrantSigner::body_for(&request, now, self.max_grant_ttl_secs)
            .map_err(AirlockError::InvalidArgument)?;
        let verified = self.authenticator().verify(code, now).map_err(to_dbus);
        if let Err(e) = verified {
            self.report_refusal(uid, Some(&request.request_id), &e)
                .await;
            return Err(e);
        }
        let grant = self.signer.sign_body(&body);
        let grant_id = body.grant_id;
        tracing::info!(
            "uid {uid} approved request {}: signed grant {grant_id}",
            request.request_id
        );
        self.report(TotpReport {
            outcome: TotpOutcome::Signed,
            by_uid: uid,
            request_id: Some(request.request_id.clone()).into(),
            grant_id: Some(grant_id).into(),
            error: None.into(),
            message: String::new(),
        })
        .await;
        Ok(SignedGrantWire::from(grant))
    }

    /// Verifies `code` and, only if it is valid, signs exactly the decision
    /// the approver's airlockctl showed them on a third-party enforcer's
    /// artifact: what the enforcer checks a human with the second factor
    /// decided. `artifact_id` (the gateway's `art-…`) names it for the
    /// audit log.
    async fn sign_decision(
        &self,
        #[zbus(header)] header: Header<'_>,
        artifact_id: &str,
        statement: DecisionStatement,
        code: &str,
    ) -> Result<SignedDecision, AirlockError> {
        let caller = self.caller(&header).await?;
        caller.require_person("decide on an artifact")?;
        let uid = caller.uid(self.gateway_uid);
        check_id(artifact_id)?;
        check_id(&statement.request_id)?;
        check_text("reason", &statement.reason)?;
        check_code(code)?;
        if !is_sha256_hex(&statement.artifact_hash) {
            return Err(AirlockError::InvalidArgument(
                "artifact hash must be 64 hex digits".into(),
            ));
        }
        let verified = self
            .authenticator()
            .verify(code, now_unix())
            .map_err(to_dbus);
        if let Err(e) = verified {
            self.report_refusal(uid, Some(artifact_id), &e).await;
            return Err(e);
        }
        tracing::info!(
            "uid {uid} decided {} on artifact {artifact_id}",
            statement.decision.as_str()
        );
        Ok(self.decisions.sign(statement))
    }

    /// The decision-verification key, for enforcers (through discovery).
    async fn decision_key(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<DecisionKey, AirlockError> {
        self.caller(&header).await?;
        Ok(self.decisions.public())
    }

    /// Standard base64 of the raw Ed25519 grant-verification key.
    async fn public_key(&self, #[zbus(header)] header: Header<'_>) -> Result<String, AirlockError> {
        self.caller(&header).await?;
        Ok(self.signer.public_key_base64())
    }

    /// The gateway countersigns its audit chain head here, record `seq`
    /// with `hash`; only heads that move forward are signed.
    async fn countersign_head(
        &self,
        #[zbus(header)] header: Header<'_>,
        seq: u64,
        hash: &str,
    ) -> Result<HeadSignature, AirlockError> {
        if self.caller(&header).await? != Caller::Gateway {
            return Err(AirlockError::AccessDenied(
                "only the gateway countersigns its audit log".into(),
            ));
        }
        let signed = self.audit_heads().countersign(&self.signer, seq, hash);
        signed.map_err(|e| {
            let message = e.to_string();
            match e {
                HeadError::Malformed => AirlockError::InvalidArgument(message),
                HeadError::Behind { .. } | HeadError::Diverged { .. } => {
                    tracing::error!("refused to countersign the audit log: {message}");
                    AirlockError::Conflict(message)
                }
                HeadError::Io(_) => {
                    tracing::error!("{message}");
                    AirlockError::Internal(message)
                }
            }
        })
    }

    /// The latest audit head countersigned (`seq` 0 before the first), for
    /// `airlockctl audit verify`.
    async fn countersigned_head(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<HeadSignature, AirlockError> {
        self.caller(&header).await?;
        Ok(self.audit_heads().latest())
    }
}
