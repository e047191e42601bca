//! Argument types and errors of the `org.airlock.*` D-Bus interfaces.
//!
//! The structs derive `zvariant::Type`, so their D-Bus signatures follow from
//! their fields and both ends share one definition.

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

/// Longest free-text argument (reasons, TOTP codes are far shorter).
pub const MAX_TEXT_LEN: usize = 1024;
/// Most argv elements accepted by a policy check.
pub const MAX_ARGV: usize = 256;
/// Longest single argv element.
pub const MAX_ARG_LEN: usize = 4096;

/// Errors returned on the bus, named `org.airlock.Error.<Variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.airlock.Error")]
pub enum AirlockError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// An argument was malformed or too large; nothing changed.
    InvalidArgument(String),
    /// No request, grant, role or session with that id.
    NotFound(String),
    /// The caller's uid may not call this method.
    AccessDenied(String),
    /// The TOTP code was wrong.
    InvalidCode(String),
    /// The TOTP code was right but its time step was already used.
    CodeReused(String),
    /// Too many wrong codes: verification is locked for a while.
    Locked(String),
    /// No TOTP secret is enrolled yet.
    NotEnrolled(String),
    /// The request was already approved, denied or expired.
    Conflict(String),
    /// A service Airlock depends on did not answer.
    Unavailable(String),
    /// Something failed inside the service; see its log.
    Internal(String),
}

impl AirlockError {
    /// The short name after the prefix, e.g. `InvalidCode`.
    pub fn short_name(&self) -> &'static str {
        match self {
            AirlockError::ZBus(_) => "ZBus",
            AirlockError::InvalidArgument(_) => "InvalidArgument",
            AirlockError::NotFound(_) => "NotFound",
            AirlockError::AccessDenied(_) => "AccessDenied",
            AirlockError::InvalidCode(_) => "InvalidCode",
            AirlockError::CodeReused(_) => "CodeReused",
            AirlockError::Locked(_) => "Locked",
            AirlockError::NotEnrolled(_) => "NotEnrolled",
            AirlockError::Conflict(_) => "Conflict",
            AirlockError::Unavailable(_) => "Unavailable",
            AirlockError::Internal(_) => "Internal",
        }
    }
}

/// Result of a policy evaluation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DecisionInfo {
    /// `allow`, `approve` or `block`.
    pub decision: String,
    /// The matching rule's command text, empty for the role default.
    pub rule: String,
    /// The policy id the rule belongs to, empty for the role default.
    pub policy: String,
    /// `file:line` of the rule (or of the role, for its default).
    pub source: String,
}

/// A pending approval request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RequestInfo {
    pub id: String,
    pub scope: String,
    pub reason: String,
    pub requester_uid: u32,
    /// Governed session the request came from, or empty.
    pub session: String,
    pub requested_ttl_secs: u64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A grant, as shown to people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct GrantInfo {
    pub id: String,
    pub request_id: String,
    pub scope: String,
    /// `read` or `write`.
    pub access: String,
    pub subject_uid: u32,
    pub session: String,
    pub not_before: i64,
    pub expires_at: i64,
}

/// What the gateway asks `airlock-totp` to sign once the code checks out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct GrantRequest {
    pub request_id: String,
    pub subject_uid: u32,
    pub session: String,
    /// Text form of the scope (`command:…` or `services:…`).
    pub scope: String,
    /// `read` or `write`.
    pub access: String,
    pub ttl_secs: u64,
}

/// A signed grant on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SignedGrantWire {
    pub payload: String,
    pub signature: String,
}

/// State of the TOTP verifier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct TotpStatus {
    pub enrolled: bool,
    pub enrolment_pending: bool,
    /// Unix time until which verification is locked, 0 when not locked.
    pub locked_until: i64,
    /// Failed codes within the current failure window.
    pub recent_failures: u32,
    /// Lockouts so far (the back-off grows with each).
    pub lockouts: u32,
    pub period_secs: u32,
}

/// State of the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct GatewayStatus {
    pub policy_dir: String,
    /// Whether the last reload succeeded; when false the previous set is served.
    pub policy_ok: bool,
    pub policy_message: String,
    pub policies: u32,
    pub roles: u32,
    pub pending_requests: u32,
    pub active_grants: u32,
    pub totp_reachable: bool,
    pub totp: TotpStatus,
}

impl AirlockError {
    /// Recovers a typed error from a remote call's `zbus::Error`, so that a
    /// client (or the gateway relaying `airlock-totp`) can tell a wrong code
    /// from a lockout without matching on strings.
    pub fn from_remote(error: zbus::Error) -> AirlockError {
        if let zbus::Error::MethodError(name, message, _) = &error {
            let message = message.clone().unwrap_or_default();
            if let Some(short) = name.as_str().strip_prefix("org.airlock.Error.") {
                return match short {
                    "InvalidArgument" => AirlockError::InvalidArgument(message),
                    "NotFound" => AirlockError::NotFound(message),
                    "AccessDenied" => AirlockError::AccessDenied(message),
                    "InvalidCode" => AirlockError::InvalidCode(message),
                    "CodeReused" => AirlockError::CodeReused(message),
                    "Locked" => AirlockError::Locked(message),
                    "NotEnrolled" => AirlockError::NotEnrolled(message),
                    "Conflict" => AirlockError::Conflict(message),
                    "Unavailable" => AirlockError::Unavailable(message),
                    _ => AirlockError::Internal(message),
                };
            }
        }
        AirlockError::ZBus(error)
    }

    /// The human-readable message, without the error name.
    pub fn message(&self) -> String {
        match self {
            AirlockError::ZBus(e) => e.to_string(),
            AirlockError::InvalidArgument(m)
            | AirlockError::NotFound(m)
            | AirlockError::AccessDenied(m)
            | AirlockError::InvalidCode(m)
            | AirlockError::CodeReused(m)
            | AirlockError::Locked(m)
            | AirlockError::NotEnrolled(m)
            | AirlockError::Conflict(m)
            | AirlockError::Unavailable(m)
            | AirlockError::Internal(m) => m.clone(),
        }
    }
}

/// Client side of `org.airlock.Totp1`; only the gateway (and root) may call it.
#[zbus::proxy(
    interface = "org.airlock.Totp1",
    default_service = "org.airlock.Totp1",
    default_path = "/org/airlock/Totp1"
)]
pub trait Totp1 {
    fn status(&self) -> zbus::Result<TotpStatus>;
    fn begin_enrolment(&self, force: bool, current_code: &str) -> zbus::Result<String>;
    fn confirm_enrolment(&self, code: &str) -> zbus::Result<()>;
    fn approve(&self, request: GrantRequest, code: &str) -> zbus::Result<SignedGrantWire>;
    fn public_key(&self) -> zbus::Result<String>;
}

/// Client side of `org.airlock.Gateway1`.
#[zbus::proxy(
    interface = "org.airlock.Gateway1",
    default_service = "org.airlock.Gateway1",
    default_path = "/org/airlock/Gateway1"
)]
pub trait Gateway1 {
    fn check_command(&self, role: &str, argv: &[&str]) -> zbus::Result<DecisionInfo>;
    fn request_approval(
        &self,
        scope: &str,
        reason: &str,
        requested_ttl_secs: u64,
    ) -> zbus::Result<String>;
    fn list_requests(&self) -> zbus::Result<Vec<RequestInfo>>;
    fn get_request(&self, id: &str) -> zbus::Result<RequestInfo>;
    fn approve(&self, id: &str, code: &str, ttl_secs: u64, write: bool) -> zbus::Result<GrantInfo>;
    fn deny(&self, id: &str, reason: &str) -> zbus::Result<()>;
    fn list_grants(&self) -> zbus::Result<Vec<GrantInfo>>;
    fn revoke(&self, grant_id: &str) -> zbus::Result<()>;
    fn revoke_all(&self) -> zbus::Result<u32>;
    fn totp_setup(&self, force: bool, current_code: &str) -> zbus::Result<String>;
    fn totp_confirm(&self, code: &str) -> zbus::Result<()>;
    fn reload_policy(&self) -> zbus::Result<String>;
    fn status(&self) -> zbus::Result<GatewayStatus>;
    #[zbus(signal)]
    fn approval_requested(&self, id: &str, scope: &str, reason: &str, uid: u32)
        -> zbus::Result<()>;
}
