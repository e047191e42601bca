//! Third-party enforcers (the Integrations Gateway API of
//! `docs/enforcer-api.md`): what the HTTP-facing `airlock-integrations`
//! daemon, the gateway that holds the state, airlock-totp that signs the
//! decisions and `airlockctl` agree on.
//!
//! The daemon passes every request's credentials to the gateway unread
//! ([`ApiCredentials`]); the gateway answers with data or an [`ApiCode`]
//! (carried as [`AirlockError::Api`]), which the daemon renders in the
//! spec's error shapes. The decision statement airlock-totp signs is the
//! one the SDKs verify ([`decision_message`]).

use std::collections::BTreeMap;
use std::fmt;

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zbus::zvariant::{Optional, Type};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::dbus::AirlockError;

/// The prefix every personal access token has (the SDKs refuse others).
pub const PAT_PREFIX: &str = "airpat_";
/// Longest PAT lifetime: one year.
pub const MAX_PAT_TTL_SECS: u64 = 366 * 24 * 3600;
/// How long an enforcer's pairing code may wait for the approver, and a
/// pre-generated code for its enforcer.
pub const PAIRING_TTL_SECS: i64 = 10 * 60;
pub const PREGENERATED_TTL_SECS: i64 = 30 * 60;
/// How long a decided exchange can still be read (wait, status, ack).
pub const DECIDED_RETENTION_SECS: i64 = 24 * 3600;
/// An enforcer is online when it sent a heartbeat this recently.
pub const ONLINE_SECS: i64 = 45;
/// Most bytes of an artifact's ciphertext (`data`, base64).
pub const MAX_CIPHERTEXT_LEN: usize = 48 * 1024;
/// Most bytes of a short field (ids, labels, names, keys, base64 nonces).
pub const MAX_FIELD_LEN: usize = 256;
/// Most live exchanges at once, all enforcers together.
pub const MAX_EXCHANGES: usize = 4096;
/// Most pairings (pending and completed) at once.
pub const MAX_PAIRINGS: usize = 1024;
/// Most apps and PATs.
pub const MAX_APPS: usize = 256;
pub const MAX_PATS: usize = 1024;

/// An enforcer app's kind: confidential kinds authenticate with a client
/// secret, public ones by the browser's `Origin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
#[zvariant(signature = "s")]
pub enum AppKind {
    Desktop,
    Agent,
    Vscode,
    Web,
    Mobile,
}

impl AppKind {
    pub fn parse(text: &str) -> Result<AppKind, String> {
        Ok(match text {
            "desktop" => AppKind::Desktop,
            "agent" => AppKind::Agent,
            "vscode" => AppKind::Vscode,
            "web" => AppKind::Web,
            "mobile" => AppKind::Mobile,
            _ => {
                return Err(format!(
                    "unknown app kind {text:?}: desktop, agent, vscode, web or mobile"
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Desktop => "desktop",
            AppKind::Agent => "agent",
            AppKind::Vscode => "vscode",
            AppKind::Web => "web",
            AppKind::Mobile => "mobile",
        }
    }

    /// Whether the app proves itself with a client secret.
    pub fn is_confidential(self) -> bool {
        matches!(self, AppKind::Desktop | AppKind::Agent | AppKind::Vscode)
    }
}

/// A human's decision on an artifact, lowercase on the wire as the SDKs
/// expect.
///
/// Its default (what an absent decision decodes to) is `Reject`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
#[zvariant(signature = "s")]
pub enum Verdict {
    Approve,
    #[default]
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }
}

/// What the HTTP headers of a request claim, passed to the gateway unread.
/// Empty means the header was absent. Zeroized when dropped, never printed.
#[derive(Clone, Default, Serialize, Deserialize, Type, Zeroize, ZeroizeOnDrop)]
pub struct ApiCredentials {
    pub client_id: String,
    pub client_secret: String,
    pub origin: String,
    pub pat: String,
    pub bearer: String,
}

impl fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The error codes of the spec, each with its status and body shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiCode {
    /// No, an invalid, expired or revoked PAT (or an unsupported bearer).
    Unauthorized,
    /// Unknown client id, wrong secret or origin.
    InvalidClient,
    AppConsentRequired,
    AppConsentPending,
    AppConsentDenied,
    PairingRevoked,
    /// Authenticated, but not this caller's to touch.
    Forbidden,
    NotFound,
    AlreadyExists,
    AlreadyResolved,
    Expired,
    InvalidRequest,
    QuotaExceeded,
    NoApprover,
}

/// The spec's two error bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `{"error": code, "message": …}`
    Flat,
    /// `{"msgType":"error","body":{"code","message","requestId"}}`
    Envelope,
}

impl ApiCode {
    const ALL: [ApiCode; 14] = [
        ApiCode::Unauthorized,
        ApiCode::InvalidClient,
        ApiCode::AppConsentRequired,
        ApiCode::AppConsentPending,
        ApiCode::AppConsentDenied,
        ApiCode::PairingRevoked,
        ApiCode::Forbidden,
        ApiCode::NotFound,
        ApiCode::AlreadyExists,
        ApiCode::AlreadyResolved,
        ApiCode::Expired,
        ApiCode::InvalidRequest,
        ApiCode::QuotaExceeded,
        ApiCode::NoApprover,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiCode::Unauthorized => "unauthorized",
            ApiCode::InvalidClient => "invalid_client",
            ApiCode::AppConsentRequired => "app_consent_required",
            ApiCode::AppConsentPending => "app_consent_pending",
            ApiCode::AppConsentDenied => "app_consent_denied",
            ApiCode::PairingRevoked => "pairing_revoked",
            ApiCode::Forbidden => "forbidden",
            ApiCode::NotFound => "NotFound",
            ApiCode::AlreadyExists => "AlreadyExistsConflict",
            ApiCode::AlreadyResolved => "already_resolved",
            ApiCode::Expired => "expired",
            ApiCode::InvalidRequest => "invalid_request",
            ApiCode::QuotaExceeded => "quota_exceeded",
            ApiCode::NoApprover => "no_approver",
        }
    }

    pub fn parse(text: &str) -> Option<ApiCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    pub fn status(self) -> u16 {
        match self {
            ApiCode::Unauthorized | ApiCode::InvalidClient => 401,
            ApiCode::AppConsentRequired
            | ApiCode::AppConsentPending
            | ApiCode::AppConsentDenied
            | ApiCode::PairingRevoked
            | ApiCode::Forbidden => 403,
            ApiCode::NotFound => 404,
            ApiCode::AlreadyExists | ApiCode::AlreadyResolved => 409,
            ApiCode::Expired => 410,
            ApiCode::InvalidRequest => 400,
            ApiCode::QuotaExceeded => 429,
            ApiCode::NoApprover => 422,
        }
    }

    pub fn shape(self) -> Shape {
        match self {
            ApiCode::AppConsentRequired
            | ApiCode::AppConsentPending
            | ApiCode::AppConsentDenied
            | ApiCode::NotFound
            | ApiCode::Unauthorized
            | ApiCode::InvalidClient
            | ApiCode::InvalidRequest => Shape::Flat,
            _ => Shape::Envelope,
        }
    }

    /// The bus error that carries this code and `message` to the daemon.
    pub fn error(self, message: impl Into<String>) -> AirlockError {
        AirlockError::Api(format!("{}: {}", self.as_str(), message.into()))
    }

    /// Splits an [`AirlockError::Api`] message back into its code and text.
    pub fn split(message: &str) -> Option<(ApiCode, &str)> {
        let (code, text) = message.split_once(": ")?;
        Some((ApiCode::parse(code)?, text))
    }
}

/// A consent refusal: besides its message, the app the user must consent
/// to, which the enforcer shows (the flat body's `appId`, `appName`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRefusal {
    pub message: String,
    pub app_id: String,
    pub app_name: String,
}

/// Separates a [`ConsentRefusal`]'s parts in the bus error's text.
const UNIT_SEPARATOR: char = '\u{1f}';

impl ConsentRefusal {
    /// The bus error carrying it with `code`.
    pub fn error(&self, code: ApiCode) -> AirlockError {
        code.error(format!(
            "{}{UNIT_SEPARATOR}{}{UNIT_SEPARATOR}{}",
            self.message.replace(UNIT_SEPARATOR, " "),
            self.app_id.replace(UNIT_SEPARATOR, " "),
            self.app_name
        ))
    }

    /// Reads one back from the error's text; `None` for plain text.
    pub fn parse(text: &str) -> Option<ConsentRefusal> {
        let mut parts = text.splitn(3, UNIT_SEPARATOR);
        Some(ConsentRefusal {
            message: parts.next()?.to_owned(),
            app_id: parts.next()?.to_owned(),
            app_name: parts.next()?.to_owned(),
        })
    }
}

/// An enforcer's side of a pairing: from `POST /v1/pairing/initiate` or a
/// claim. Empty strings are absent fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct EnforcerHello {
    pub device_id: String,
    pub enforcer_id: String,
    pub enforcer_label: String,
    pub workspace_name: String,
    /// base64url of the enforcer's raw 32-byte X25519 public key.
    pub x25519_public_key: String,
}

/// A pairing as the enforcer polls it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct PairingView {
    pub nonce: String,
    /// The code the approver types (`initiate` only; empty otherwise).
    pub code: String,
    /// `Pending`, `Completed`, `Revoked` or `Expired`.
    pub state: String,
    /// Once completed, to the pairing's enforcer.
    pub routing_token: Optional<String>,
    /// Once completed with end-to-end encryption: the approver's X25519
    /// public key (base64url), for `responseJson`.
    pub approver_x25519: Optional<String>,
    pub expires_at: i64,
}

/// An `artifact.submit` envelope, checked by the daemon's parser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ArtifactSubmission {
    pub msg_id: String,
    pub request_id: String,
    pub enforcer_id: String,
    pub artifact_type: String,
    pub artifact_hash: String,
    pub ciphertext: Ciphertext,
    pub routing_token: String,
    pub workspace_name: String,
    pub request_label: String,
}

/// An artifact's ciphertext, opaque to the gateway (the spec: `alg` and the
/// rest are not validated).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Ciphertext {
    pub alg: String,
    pub data: String,
    pub nonce: String,
    pub tag: String,
}

/// An exchange as the enforcer reads it (status and wait).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ExchangeView {
    pub request_id: String,
    /// `PendingApproval`, `Decided`, `Acknowledged`, `Withdrawn`, `Expired`.
    pub state: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub artifact_hash: String,
    pub decision: Optional<SignedDecision>,
}

/// What airlock-totp signs: the spec's §3.4 message fields (besides
/// `nonce` and `signerKeyId`, which the signer adds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DecisionStatement {
    /// The exchange's `requestId`, as the enforcer chose it.
    pub request_id: String,
    pub artifact_hash: String,
    pub decision: Verdict,
    /// Empty for none.
    pub reason: String,
}

/// A decision as airlock-totp signed it (the default, all empty, is none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SignedDecision {
    pub statement: DecisionStatement,
    pub nonce: String,
    pub signer_key_id: String,
    /// base64url (no padding) of the 64-byte Ed25519 signature.
    pub signature: String,
    /// The `decision.deliver` envelope's `msgId` (set by the gateway).
    pub msg_id: String,
}

/// airlock-totp's decision-signing public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DecisionKey {
    pub key_id: String,
    /// base64url (no padding) of the raw 32-byte Ed25519 public key.
    pub public_key: String,
}

/// An app, as `airlockctl apps` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct AppInfo {
    pub app_id: String,
    pub client_id: String,
    pub name: String,
    pub kind: AppKind,
    pub origins: Vec<String>,
    /// The caller's consent: `approved`, `pending`, `denied` or `none`.
    pub consent: String,
}

/// A new app's credentials; the secret is shown once and never again.
#[derive(Clone, Serialize, Deserialize, Type, Zeroize, ZeroizeOnDrop)]
pub struct NewApp {
    pub app_id: String,
    pub client_id: String,
    /// Empty for public kinds.
    pub client_secret: String,
}

/// A PAT, without its token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct PatInfo {
    pub id: String,
    pub uid: u32,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A new PAT: the token is shown once.
#[derive(Clone, Serialize, Deserialize, Type, Zeroize, ZeroizeOnDrop)]
pub struct NewPat {
    pub id: String,
    pub token: String,
    pub expires_at: i64,
}

/// A paired (or pairing) enforcer, for `airlockctl enforcers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct EnforcerInfo {
    /// The pairing's nonce: what `airlockctl enforcers --unpair` takes.
    pub pairing: String,
    pub enforcer_id: String,
    pub label: String,
    pub workspace: String,
    pub device_id: String,
    pub app_id: String,
    pub uid: u32,
    pub state: String,
    pub online: bool,
    /// 0 for never.
    pub last_seen: i64,
}

/// A submitted artifact waiting for a human, for `airlockctl requests`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ArtifactInfo {
    /// What `airlockctl approve` takes (`art-…`), never the enforcer's id.
    pub id: String,
    /// The enforcer's `requestId`.
    pub request_id: String,
    pub enforcer_id: String,
    pub enforcer_label: String,
    pub workspace: String,
    pub app_name: String,
    pub uid: u32,
    pub artifact_type: String,
    pub artifact_hash: String,
    pub label: String,
    pub ciphertext: Ciphertext,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes).as_ref())
}

/// `prefix` + `bytes` random bytes, base32-free alphanumerics (hex).
pub fn random_token(prefix: &str, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the kernel's random source failed");
    let token = format!("{prefix}{}", hex::encode(&buf));
    buf.zeroize();
    token
}

/// A pairing code the approver types: `ABCD-1234` (no look-alike letters).
pub fn pairing_code() -> String {
    const LETTERS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut buf = [0u8; 8];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the kernel's random source failed");
    let mut code = String::with_capacity(9);
    for b in &buf[..4] {
        code.push(LETTERS[*b as usize % LETTERS.len()] as char);
    }
    code.push('-');
    for b in &buf[4..] {
        code.push((b'0' + b % 10) as char);
    }
    code
}

/// A code as typed: upper-cased, without spaces.
pub fn normalize_code(code: &str) -> String {
    code.trim().to_ascii_uppercase().replace(' ', "")
}

/// Whether `hash` is 64 hex digits (an artifact's SHA-256).
pub fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The bytes of a decision signature, per the spec's §3.4: the JCS form of
/// `{artifactHash, decision, nonce, reason, requestId, signerKeyId}`, with
/// absent fields (an empty reason) left out. Every value is a string, so
/// sorted keys and JSON string escaping are the whole of JCS here.
pub fn decision_message(
    statement: &DecisionStatement,
    nonce: &str,
    signer_key_id: &str,
) -> Vec<u8> {
    let mut fields = BTreeMap::new();
    fields.insert("artifactHash", statement.artifact_hash.as_str());
    fields.insert("decision", statement.decision.as_str());
    fields.insert("nonce", nonce);
    if !statement.reason.is_empty() {
        fields.insert("reason", statement.reason.as_str());
    }
    fields.insert("requestId", statement.request_id.as_str());
    fields.insert("signerKeyId", signer_key_id);
    serde_json::to_vec(&fields).expect("a map of strings serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_message_is_canonical_and_leaves_out_an_empty_reason() {
        let statement = DecisionStatement {
            request_id: "req-1".into(),
            artifact_hash: "ab".into(),
            decision: Verdict::Approve,
            reason: String::new(),
        };
        assert_eq!(
            String::from_utf8(decision_message(&statement, "n1", "k1")).unwrap(),
            r#"{"artifactHash":"ab","decision":"approve","nonce":"n1","requestId":"req-1","signerKeyId":"k1"}"#
        );
        let with_reason = DecisionStatement {
            reason: "ok \"quoted\" / ü".into(),
            ..statement
        };
        assert_eq!(
            String::from_utf8(decision_message(&with_reason, "n1", "k1")).unwrap(),
            r#"{"artifactHash":"ab","decision":"approve","nonce":"n1","reason":"ok \"quoted\" / ü","requestId":"req-1","signerKeyId":"k1"}"#
        );
    }

    #[test]
    fn codes_travel_and_come_back() {
        for code in ApiCode::ALL {
            let AirlockError::Api(message) = code.error("why") else {
                panic!()
            };
            assert_eq!(ApiCode::split(&message), Some((code, "why")));
        }
        assert_eq!(ApiCode::split("bogus: x"), None);
    }

    #[test]
    fn pairing_codes_have_the_documented_shape() {
        let code = pairing_code();
        assert_eq!(code.len(), 9);
        assert_eq!(normalize_code(&code.to_lowercase()), code);
    }
}
