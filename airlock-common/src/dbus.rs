//! Argument types and errors of the `org.airlock.*` D-Bus interfaces.
//!
//! The structs derive `zvariant::Type`, so their D-Bus signatures follow from
//! their fields and both ends share one definition.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zbus::zvariant::{Optional, Type};

use crate::enforcement::{EnforcementMode, EventKind, Outcome, Stage};
use crate::grant::{Access, SignedGrant};
use crate::integrations::{
    ApiCredentials, AppInfo, AppKind, ArtifactInfo, ArtifactSubmission, DecisionKey,
    DecisionStatement, EnforcerHello, EnforcerInfo, ExchangeView, NewApp, NewPat, PairingView,
    PatInfo, SignedDecision,
};
use crate::policy::protect::ProtectPattern;
use crate::policy::Action;
use crate::session::SessionState;

/// The argument limits, defined in [`limits`](crate::limits).
pub use crate::limits::{MAX_ARGV, MAX_ARG_LEN, MAX_TEXT_LEN};

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
    /// The caller made too many calls that write the audit log; nothing
    /// changed, try again shortly.
    LimitExceeded(String),
    /// An Integrations Gateway API refusal: `code: message`, the code one
    /// of [`ApiCode`](crate::integrations::ApiCode)'s.
    Api(String),
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
            AirlockError::LimitExceeded(_) => "LimitExceeded",
            AirlockError::Api(_) => "Api",
        }
    }
}

/// An index that may be absent. On the wire a `u32`, `u32::MAX` for none:
/// unlike `Optional<u32>`, whose none is 0, it keeps index 0 for the first
/// rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OptionalIndex(pub Option<u32>);

impl OptionalIndex {
    const NONE: u32 = u32::MAX;
}

impl From<Option<u32>> for OptionalIndex {
    fn from(index: Option<u32>) -> Self {
        OptionalIndex(index)
    }
}

impl std::ops::Deref for OptionalIndex {
    type Target = Option<u32>;

    fn deref(&self) -> &Option<u32> {
        &self.0
    }
}

impl Type for OptionalIndex {
    const SIGNATURE: &'static zbus::zvariant::Signature = u32::SIGNATURE;
}

impl Serialize for OptionalIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.unwrap_or(Self::NONE).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for OptionalIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(deserializer)?;
        Ok(OptionalIndex((index != Self::NONE).then_some(index)))
    }
}

/// Result of a policy evaluation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DecisionInfo {
    pub decision: Action,
    /// The matching rule's command text, none for the role default.
    pub rule: Optional<String>,
    /// The policy id the rule belongs to, none for the role default.
    pub policy: Optional<String>,
    /// `file:line` of the rule (or of the role, for its default).
    pub source: String,
    /// What the rule skipped to match: options with their values (and for
    /// a tool not in the grammar table, other arguments), as written.
    pub skipped: Vec<String>,
    /// Why the command is refused without a rule deciding, empty otherwise:
    /// the kernel could not match it within its limits.
    pub refusal: String,
}

/// A pending approval request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RequestInfo {
    pub id: String,
    pub scope: String,
    pub reason: String,
    pub requester_uid: u32,
    /// Governed session the request came from.
    pub session: Optional<String>,
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
    pub access: Access,
    pub subject_uid: u32,
    /// The governed session it is bound to, none for the whole uid.
    pub session: Optional<String>,
    pub not_before: i64,
    pub expires_at: i64,
}

/// What the approver's `airlockctl` asks `airlock-totp` to sign, exactly as
/// it showed it to the approver, together with the code they typed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct GrantRequest {
    pub request_id: String,
    pub subject_uid: u32,
    /// The governed session the grant is for, none for the whole uid.
    pub session: Optional<String>,
    /// Text form of the scope (`command:…` or `services:…`).
    pub scope: String,
    pub access: Access,
    pub ttl_secs: u64,
}

/// A signed grant on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SignedGrantWire {
    pub payload: String,
    pub signature: String,
}

impl From<SignedGrant> for SignedGrantWire {
    fn from(grant: SignedGrant) -> Self {
        SignedGrantWire {
            payload: grant.payload,
            signature: grant.signature,
        }
    }
}

impl From<SignedGrantWire> for SignedGrant {
    fn from(wire: SignedGrantWire) -> Self {
        SignedGrant {
            payload: wire.payload,
            signature: wire.signature,
        }
    }
}

/// What `airlock-totp` tells the gateway happened, for the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
#[zvariant(signature = "s")]
pub enum TotpOutcome {
    /// A code was verified and the grant request signed.
    Signed,
    /// A code was refused (wrong or reused).
    Failed,
    /// A code was refused and verification is (now) locked.
    Locked,
    /// A new secret is pending confirmation.
    EnrolmentStarted,
    /// Root replaced the secret without a code.
    EnrolmentForced,
    /// The pending secret became the active one.
    Enrolled,
}

/// One outcome, reported by `airlock-totp` to `Gateway1.ReportTotp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct TotpReport {
    pub outcome: TotpOutcome,
    /// Who called airlock-totp (the approver or enroller).
    pub by_uid: u32,
    /// The request a code was typed for; none for an enrolment.
    pub request_id: Optional<String>,
    /// The grant signed (`signed` only).
    pub grant_id: Optional<String>,
    /// The refusal's short error name (`failed`, `locked` only).
    pub error: Optional<String>,
    pub message: String,
}

/// airlock-totp's signature over an audit chain head, naming the head it
/// signed before (0 and "" for its first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct HeadSignature {
    pub seq: u64,
    pub hash: String,
    pub prev_seq: u64,
    pub prev_hash: String,
    /// Standard base64 of the Ed25519 signature (see `audit::countersign`).
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
                    "LimitExceeded" => AirlockError::LimitExceeded(message),
                    "Api" => AirlockError::Api(message),
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
            | AirlockError::Internal(m)
            | AirlockError::LimitExceeded(m)
            | AirlockError::Api(m) => m.clone(),
        }
    }
}

/// A rule of a session's role, as the enforcer needs it: to compile it and
/// to tell the agent which rule refused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RuleSpec {
    /// Load-order index among the role's rules (ties go to the lowest).
    pub index: u32,
    pub action: Action,
    pub command: String,
    pub policy: String,
    /// `file:line` of the rule.
    pub source: String,
    pub reason: String,
}

/// The grammar of a tool a session's rules or grants name (see
/// `policy::Grammar`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ToolSpec {
    pub name: String,
    /// `gnu` or `go`.
    pub style: String,
    /// The options that take a value.
    pub value_options: Vec<String>,
}

/// Everything the enforcer needs to govern a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SessionSpec {
    pub id: String,
    /// Small number naming the session in kernel maps; unique among live
    /// sessions.
    pub index: u32,
    pub role: String,
    /// The Unix user the session's processes run as.
    pub uid: u32,
    /// Govern every process of `uid`, not only one process tree.
    pub bound_uid: bool,
    /// The role's action for commands no rule matches.
    pub default_action: Action,
    pub rules: Vec<RuleSpec>,
    /// The session's live command grants exactly as airlock-totp signed
    /// them. The enforcer installs one only if it verifies against the key
    /// it asked airlock-totp for, names this session, and is live: the
    /// command and the deadline come from the signed payload alone.
    pub grants: Vec<SignedGrantWire>,
    /// The agent's PATH directories, searched for the files rule heads name.
    pub search_path: Vec<String>,
    pub revoked: bool,
    /// The role allows debugging (ptrace and its kin).
    pub allow_debugging: bool,
    /// The grammars of the tools the rules and grants name.
    pub tools: Vec<ToolSpec>,
    /// Ports on this machine the session may reach whoever listens there
    /// (the role's `allow_local_ports`).
    pub allow_local_ports: Vec<u16>,
}

/// How a process-tree session's first process (`airlockctl session-init`)
/// confines itself before it becomes the agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Confinement {
    /// No BPF LSM: the session's execs (and refused calls) go to the
    /// enforcer's seccomp supervisor, which must take the listener before
    /// the agent starts (`SuperviseExec`).
    pub supervise: bool,
    /// The role allows ptrace, `process_vm_readv`/`writev` and
    /// `pidfd_getfd`.
    pub allow_debugging: bool,
}

/// What the enforcer can do on this machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct EnforcerStatus {
    pub mode: EnforcementMode,
    /// One sentence on what the mode means.
    pub detail: String,
    /// How to get full enforcement, none in `lsm` mode.
    pub fix: Optional<String>,
    pub sessions: u32,
    /// Kernel events lost because the ring buffer was full.
    pub events_lost: u64,
}

/// Something the kernel refused or allowed under a grant, reported by the
/// enforcer to the gateway for the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct EnforcementEvent {
    pub session: String,
    pub kind: EventKind,
    pub stage: Stage,
    pub outcome: Outcome,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// Name of the real executable (or of the mapped or opened file).
    pub executable: String,
    /// The command as far as the kernel read it (words are cut at 63 bytes).
    pub argv: Vec<String>,
    /// The deciding rule's index in the session's rules, none for the role
    /// default.
    pub rule: OptionalIndex,
    pub comm: String,
    /// What a socket or signal event was refused to reach (`tcp
    /// 127.0.0.1:22`, `unix /tmp/x/sock`, `process 4242`); "" for others.
    pub peer: String,
}

/// A governed session, as listed by `airlockctl sessions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SessionRecord {
    pub id: String,
    pub role: String,
    pub uid: u32,
    pub bound_uid: bool,
    pub state: SessionState,
    pub created_at: i64,
    /// None while the session lives (0 on the wire).
    pub ended_at: Optional<i64>,
    /// The mode it was started under; `unknown` if the enforcer did not say.
    pub enforcement: EnforcementMode,
    /// What the session masks (its role's list, defaults first), as
    /// `airlockctl session-init` needs it; empty for a user binding, whose
    /// processes no `session-init` starts.
    pub protect: Vec<ProtectPattern>,
}

/// Client side of `org.airlock.Enforcer1`; only the gateway (and root) may
/// call it.
#[zbus::proxy(
    interface = "org.airlock.Enforcer1",
    default_service = "org.airlock.Enforcer1",
    default_path = "/org/airlock/Enforcer1"
)]
pub trait Enforcer1 {
    fn status(&self) -> zbus::Result<EnforcerStatus>;
    /// Creates the session's cgroup, loads its policy and moves the process
    /// behind `pidfd` (which must run as `spec.uid`) into it.
    fn start_session(&self, spec: SessionSpec, pidfd: zbus::zvariant::Fd<'_>) -> zbus::Result<()>;
    /// Governs every process of `spec.uid`.
    fn bind_user(&self, spec: SessionSpec) -> zbus::Result<()>;
    /// Replaces the session's policy and grants (policy reload, approval,
    /// expiry, revocation of a grant).
    fn update_session(&self, spec: SessionSpec) -> zbus::Result<()>;
    /// Revokes a session: nothing may start in it any more; with `kill`,
    /// its processes are killed.
    fn end_session(&self, id: &str, kill: bool) -> zbus::Result<()>;
    /// The whole set of live sessions, after either side restarted. Returns
    /// the ids of sessions it has no trace of (their processes are gone).
    fn sync(&self, specs: Vec<SessionSpec>) -> zbus::Result<Vec<String>>;
    /// The session a process belongs to, if any.
    fn session_of_pid(&self, pid: u32) -> zbus::Result<Optional<String>>;
    /// The session a socket belongs to, by the cgroup it was made in (its
    /// `sock_diag` cgroup id) or, for a session that binds a user, by its
    /// owner `uid`; if any.
    fn session_of_socket(&self, cgroup: u64, uid: u32) -> zbus::Result<Optional<String>>;
    /// Takes the seccomp user-notification listener of a process-tree
    /// session's filter (degraded mode): from then on it judges the
    /// session's execs before they happen. One per session.
    fn supervise_exec(&self, session: &str, listener: zbus::zvariant::Fd<'_>) -> zbus::Result<()>;
}

/// The Unix uid of the connection that sent `header`'s message, as the bus
/// daemon vouches for it. Every service checks its callers with this, behind
/// the bus policy (defence in depth).
pub async fn caller_uid(
    dbus: &zbus::fdo::DBusProxy<'_>,
    header: &zbus::message::Header<'_>,
) -> Result<u32, AirlockError> {
    let sender = header
        .sender()
        .ok_or_else(|| AirlockError::AccessDenied("message has no sender".into()))?;
    dbus.get_connection_unix_user(zbus::names::BusName::Unique(sender.to_owned()))
        .await
        .map_err(|e| AirlockError::AccessDenied(format!("cannot identify the caller: {e}")))
}

/// Client side of `org.airlock.Totp1`. Root and group `airlock-admin` may
/// approve and enrol; the gateway user may only read its status and public
/// key (the bus policy says so, and airlock-totp checks the uid again).
#[zbus::proxy(
    interface = "org.airlock.Totp1",
    default_service = "org.airlock.Totp1",
    default_path = "/org/airlock/Totp1"
)]
pub trait Totp1 {
    fn status(&self) -> zbus::Result<TotpStatus>;
    /// `current_code` is needed to replace an enrolled secret (none with
    /// `force`, for root).
    fn begin_enrolment(&self, force: bool, current_code: Optional<&str>) -> zbus::Result<String>;
    fn confirm_enrolment(&self, code: &str) -> zbus::Result<()>;
    /// Verifies `code` and signs exactly `request` (admins, from airlockctl).
    fn approve(&self, request: GrantRequest, code: &str) -> zbus::Result<SignedGrantWire>;
    fn public_key(&self) -> zbus::Result<String>;
    fn sign_decision(
        &self,
        artifact_id: &str,
        statement: DecisionStatement,
        code: &str,
    ) -> zbus::Result<SignedDecision>;
    fn decision_key(&self) -> zbus::Result<DecisionKey>;
    /// The gateway only: countersigns its audit chain head. Refused for a
    /// head below, or different at the same `seq` as, the last one signed.
    fn countersign_head(&self, seq: u64, hash: &str) -> zbus::Result<HeadSignature>;
    /// The latest head signed, for `airlockctl audit verify`; none (`seq` 0)
    /// before the first.
    fn countersigned_head(&self) -> zbus::Result<HeadSignature>;
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
    /// Admins: the grant request the gateway proposes for approving `id`
    /// (`ttl_secs` 0 for the requested or default lifetime); airlockctl shows
    /// it and sends it to airlock-totp with the code.
    fn prepare_approval(&self, id: &str, ttl_secs: u64, write: bool) -> zbus::Result<GrantRequest>;
    /// Admins: records a grant airlock-totp signed for a pending request and
    /// gives it to the kernel.
    fn approve(&self, grant: SignedGrantWire) -> zbus::Result<GrantInfo>;
    fn deny(&self, id: &str, reason: &str) -> zbus::Result<()>;
    fn list_grants(&self) -> zbus::Result<Vec<GrantInfo>>;
    fn revoke(&self, grant_id: &str) -> zbus::Result<()>;
    fn revoke_all(&self) -> zbus::Result<u32>;
    /// airlock-totp only: an approval or enrolment outcome, for the audit log.
    fn report_totp(&self, report: TotpReport) -> zbus::Result<()>;
    fn reload_policy(&self) -> zbus::Result<String>;
    fn status(&self) -> zbus::Result<GatewayStatus>;
    /// Starts a governed session for the process behind `pidfd` (a child of
    /// the caller, running as the caller). No `role` is the default role.
    fn start_session(
        &self,
        role: Optional<&str>,
        pidfd: zbus::zvariant::Fd<'_>,
        search_path: Vec<String>,
    ) -> zbus::Result<SessionRecord>;
    /// The session's owner: how the session's first process confines
    /// itself.
    fn session_confinement(&self, session: &str) -> zbus::Result<Confinement>;
    /// The session's owner, before the agent starts: hands the listener of
    /// the session's seccomp filter to the enforcer's supervisor.
    fn supervise_exec(&self, session: &str, listener: zbus::zvariant::Fd<'_>) -> zbus::Result<()>;
    /// Records that the caller runs a command without enforcement.
    fn record_unenforced(&self, role: Optional<&str>, reason: &str) -> zbus::Result<()>;
    /// Governs every process of a Unix user (admin only); no `role` is the
    /// default role.
    fn bind_user(&self, role: Optional<&str>, uid: u32) -> zbus::Result<SessionRecord>;
    fn list_sessions(&self) -> zbus::Result<Vec<SessionRecord>>;
    fn revoke_session(&self, id: &str) -> zbus::Result<()>;
    /// Files a request on behalf of a session (its owner or an admin).
    fn request_for_session(
        &self,
        session: &str,
        scope: &str,
        reason: &str,
        requested_ttl_secs: u64,
    ) -> zbus::Result<String>;
    /// The enforcer's state, as the gateway sees it.
    fn enforcer_status(&self) -> zbus::Result<EnforcerStatus>;
    /// Enforcer only: audits a kernel event; returns the request id filed
    /// for an `approval_required` event.
    fn report_enforcement(&self, event: EnforcementEvent) -> zbus::Result<Optional<String>>;
    /// Enforcer only: the session's last process exited.
    fn session_exited(&self, id: &str) -> zbus::Result<()>;

    // Third-party enforcers: airlock-integrations relays their requests.
    fn api_discovery(&self) -> zbus::Result<DecisionKey>;
    fn api_consent_status(&self, creds: &ApiCredentials) -> zbus::Result<String>;
    fn api_pairing_initiate(
        &self,
        creds: &ApiCredentials,
        hello: &EnforcerHello,
    ) -> zbus::Result<PairingView>;
    fn api_pairing_claim(
        &self,
        creds: &ApiCredentials,
        code: &str,
        hello: &EnforcerHello,
    ) -> zbus::Result<PairingView>;
    fn api_pairing_status(&self, creds: &ApiCredentials, nonce: &str) -> zbus::Result<PairingView>;
    fn api_pairing_revoke(
        &self,
        creds: &ApiCredentials,
        routing_token: &str,
    ) -> zbus::Result<String>;
    fn api_pairing_pregenerate(&self, creds: &ApiCredentials) -> zbus::Result<PairingView>;
    fn api_heartbeat(&self, creds: &ApiCredentials, enforcer_id: &str) -> zbus::Result<()>;
    fn api_submit(&self, creds: &ApiCredentials, artifact: &ArtifactSubmission)
        -> zbus::Result<()>;
    fn api_exchange(&self, creds: &ApiCredentials, request_id: &str) -> zbus::Result<ExchangeView>;
    fn api_withdraw(&self, creds: &ApiCredentials, request_id: &str) -> zbus::Result<()>;
    fn api_ack(&self, creds: &ApiCredentials, request_id: &str, msg_id: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    fn exchange_decided(&self, request_id: &str) -> zbus::Result<()>;

    // Third-party enforcers: the people's side.
    fn add_app(&self, kind: AppKind, name: &str, origins: &[&str]) -> zbus::Result<NewApp>;
    fn list_apps(&self) -> zbus::Result<Vec<AppInfo>>;
    fn set_app_consent(&self, app_id: &str, allowed: bool) -> zbus::Result<()>;
    fn create_pat(&self, ttl_secs: u64) -> zbus::Result<NewPat>;
    fn list_pats(&self) -> zbus::Result<Vec<PatInfo>>;
    fn revoke_pat(&self, id: &str) -> zbus::Result<()>;
    fn pair(&self, code: &str) -> zbus::Result<EnforcerInfo>;
    fn pregenerate_pairing(&self) -> zbus::Result<PairingView>;
    fn list_enforcers(&self) -> zbus::Result<Vec<EnforcerInfo>>;
    fn unpair(&self, pairing: &str) -> zbus::Result<()>;
    fn list_artifacts(&self) -> zbus::Result<Vec<ArtifactInfo>>;
    fn get_artifact(&self, id: &str) -> zbus::Result<ArtifactInfo>;
    fn read_artifact(&self, id: &str) -> zbus::Result<String>;
    fn decide_artifact(&self, id: &str, decision: &SignedDecision) -> zbus::Result<()>;
    #[zbus(signal)]
    fn approval_requested(&self, id: &str, scope: &str, reason: &str, uid: u32)
        -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::serialized::{Context, Data};
    use zbus::zvariant::{to_bytes, LE};

    fn encode<T: Serialize + Type>(value: &T) -> Data<'static, 'static> {
        to_bytes(Context::new_dbus(LE, 0), value).unwrap()
    }

    /// `EnforcementEvent` as it was, with strings and a bare `u32` rule.
    type StringEvent = (
        String,
        String,
        String,
        String,
        u32,
        u32,
        u32,
        String,
        Vec<String>,
        u32,
        String,
        String,
    );

    fn event(rule: Option<u32>) -> EnforcementEvent {
        EnforcementEvent {
            session: "ses-1".into(),
            kind: EventKind::ApprovalRequired,
            stage: Stage::ExecCheck,
            outcome: Outcome::Refused,
            pid: 2,
            ppid: 1,
            uid: 1000,
            executable: "terraform".into(),
            argv: vec!["terraform".into(), "plan".into()],
            rule: rule.into(),
            comm: "bash".into(),
            peer: String::new(),
        }
    }

    #[test]
    fn the_signatures_are_the_string_ones_they_replace() {
        assert_eq!(DecisionInfo::SIGNATURE.to_string(), "(ssssass)");
        assert_eq!(RequestInfo::SIGNATURE.to_string(), "(sssustxx)");
        assert_eq!(GrantInfo::SIGNATURE.to_string(), "(ssssusxx)");
        assert_eq!(GrantRequest::SIGNATURE.to_string(), "(sussst)");
        assert_eq!(RuleSpec::SIGNATURE.to_string(), "(usssss)");
        assert_eq!(SignedGrantWire::SIGNATURE.to_string(), "(ss)");
        // Grants travel as airlock-totp signed them, as `Gateway1.Approve`
        // takes them.
        assert_eq!(
            SessionSpec::SIGNATURE.to_string(),
            "(susubsa(usssss)a(ss)asbba(ssas)aq)"
        );
        assert_eq!(EnforcerStatus::SIGNATURE.to_string(), "(sssut)");
        assert_eq!(EnforcementEvent::SIGNATURE.to_string(), "(ssssuuusasuss)");
        assert_eq!(SessionRecord::SIGNATURE.to_string(), "(ssubsxxsas)");
    }

    #[test]
    fn enums_travel_as_their_words_and_none_as_the_old_empty_value() {
        let status = EnforcerStatus {
            mode: EnforcementMode::Degraded,
            detail: "d".into(),
            fix: None.into(),
            sessions: 0,
            events_lost: 0,
        };
        let wire = encode(&status);
        let as_strings: (String, String, String, u32, u64) = wire.deserialize().unwrap().0;
        assert_eq!(
            (as_strings.0.as_str(), as_strings.2.as_str()),
            ("degraded", "")
        );
        let back: EnforcerStatus = wire.deserialize().unwrap().0;
        assert_eq!(back, status);
        assert_eq!(*back.fix, None);

        // Rule 0 is a rule; only u32::MAX is the role default.
        for rule in [Some(0), Some(7), None] {
            let wire = encode(&event(rule));
            let back: EnforcementEvent = wire.deserialize().unwrap().0;
            assert_eq!(*back.rule, rule);
        }
        let raw: StringEvent = encode(&event(None)).deserialize().unwrap().0;
        assert_eq!(
            (raw.1.as_str(), raw.2.as_str(), raw.3.as_str(), raw.9),
            ("approval_required", "exec_check", "refused", u32::MAX)
        );
    }

    #[test]
    fn an_absent_argument_is_the_empty_string_it_replaces() {
        let absent = encode(&(false, Optional::<&str>::from(None)));
        let (force, code): (bool, &str) = absent.deserialize().unwrap().0;
        assert_eq!((force, code), (false, ""));
        let (_, code): (bool, Optional<&str>) = absent.deserialize().unwrap().0;
        assert_eq!(*code, None);
        let given = encode(&(false, "123456"));
        let (_, code): (bool, Optional<&str>) = given.deserialize().unwrap().0;
        assert_eq!(*code, Some("123456"));

        let live = encode(&Optional::<i64>::from(None));
        assert_eq!(live.deserialize::<i64>().unwrap().0, 0);
    }

    #[test]
    fn a_word_outside_the_vocabulary_does_not_decode() {
        let request = ("req-1", 1000u32, "", "command:x", "admin", 60u64);
        let wire = encode(&request);
        assert!(wire.deserialize::<GrantRequest>().is_err());
        let good = ("req-1", 1000u32, "", "command:x", "write", 60u64);
        let request: GrantRequest = encode(&good).deserialize().unwrap().0;
        assert_eq!(
            (request.access, request.session.as_deref()),
            (Access::Write, None)
        );
    }
}
