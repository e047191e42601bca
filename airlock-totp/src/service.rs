//! `org.airlock.Totp1` on the system bus: callable by the gateway user and
//! root only (the bus policy says so, and every method checks again).

use std::sync::{Arc, Mutex, MutexGuard};

use airlock_common::dbus::{caller_uid, AirlockError, GrantRequest, SignedGrantWire, TotpStatus};
use airlock_common::timefmt::now_unix;
use airlock_daemon::lock::MutexExt;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::zvariant::Optional;

use crate::authenticator::{Authenticator, TotpError};
use crate::signer::GrantSigner;

pub struct TotpService {
    authenticator: Arc<Mutex<Authenticator>>,
    signer: GrantSigner,
    max_grant_ttl_secs: u64,
    allowed_uid: u32,
    dbus: DBusProxy<'static>,
}

impl TotpService {
    pub fn new(
        authenticator: Authenticator,
        signer: GrantSigner,
        max_grant_ttl_secs: u64,
        allowed_uid: u32,
        dbus: DBusProxy<'static>,
    ) -> Self {
        TotpService {
            authenticator: Arc::new(Mutex::new(authenticator)),
            signer,
            max_grant_ttl_secs,
            allowed_uid,
            dbus,
        }
    }

    fn authenticator(&self) -> MutexGuard<'_, Authenticator> {
        self.authenticator.locked()
    }

    /// Refuses every caller but root and the gateway user.
    async fn check_caller(&self, header: &Header<'_>) -> Result<u32, AirlockError> {
        let uid = caller_uid(&self.dbus, header).await?;
        if uid == 0 || uid == self.allowed_uid {
            Ok(uid)
        } else {
            Err(AirlockError::AccessDenied(format!(
                "uid {uid} may not call the TOTP service; only the gateway and root may"
            )))
        }
    }
}

fn to_dbus(error: TotpError) -> AirlockError {
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
        self.check_caller(&header).await?;
        Ok(self.authenticator().status(now_unix()))
    }

    /// Creates a pending secret and returns its `otpauth://` URI.
    async fn begin_enrolment(
        &self,
        #[zbus(header)] header: Header<'_>,
        force: bool,
        current_code: Optional<&str>,
    ) -> Result<String, AirlockError> {
        let uid = self.check_caller(&header).await?;
        // Forcing replaces the secret without a code. Only root calling here
        // directly may: a gateway that could would learn the new secret and
        // then approve whatever it liked.
        if force && uid != 0 {
            return Err(AirlockError::AccessDenied(
                "only root, calling airlock-totp directly, may force a re-enrolment".into(),
            ));
        }
        let uri = self
            .authenticator()
            .begin_enrolment(force, *current_code, now_unix())
            .map_err(to_dbus)?;
        tracing::info!("TOTP enrolment started (forced: {force})");
        Ok(uri.to_string())
    }

    async fn confirm_enrolment(
        &self,
        #[zbus(header)] header: Header<'_>,
        code: &str,
    ) -> Result<(), AirlockError> {
        self.check_caller(&header).await?;
        self.authenticator()
            .confirm_enrolment(code, now_unix())
            .map_err(to_dbus)?;
        tracing::info!("TOTP enrolment confirmed");
        Ok(())
    }

    /// Verifies `code` and, only if it is valid, signs a grant for `request`.
    async fn approve(
        &self,
        #[zbus(header)] header: Header<'_>,
        request: GrantRequest,
        code: &str,
    ) -> Result<SignedGrantWire, AirlockError> {
        self.check_caller(&header).await?;
        let now = now_unix();
        // Validate before spending a code, so a malformed request does not
        // consume the approver's time step.
        self.signer
            .sign(&request, now, self.max_grant_ttl_secs)
            .map_err(AirlockError::InvalidArgument)?;
        self.authenticator().verify(code, now).map_err(to_dbus)?;
        let grant = self
            .signer
            .sign(&request, now, self.max_grant_ttl_secs)
            .map_err(AirlockError::InvalidArgument)?;
        tracing::info!("signed a grant for request {}", request.request_id);
        Ok(SignedGrantWire {
            payload: grant.payload,
            signature: grant.signature,
        })
    }

    /// Standard base64 of the raw Ed25519 grant-verification key.
    async fn public_key(&self, #[zbus(header)] header: Header<'_>) -> Result<String, AirlockError> {
        self.check_caller(&header).await?;
        Ok(self.signer.public_key_base64())
    }
}
