//! Approval scopes and Ed25519-signed grants.
//!
//! Only `airlock-totp` holds the signing key, and it signs only after a valid
//! TOTP code. The gateway stores and checks grants with the public key, so a
//! compromised gateway cannot mint a grant on its own.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::ids;

pub use crate::limits::{MAX_SCOPE_LEN, MAX_SERVICES};
/// Domain separation for grant signatures.
const SIGNING_CONTEXT: &[u8] = b"airlock-grant-v1\0";

/// What an approval covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// One command rule, written as a policy command prefix (`terraform plan`).
    Command { command: String },
    /// Named services (credentials the gateway holds), e.g. `gmail`.
    Services { services: Vec<String> },
}

impl Scope {
    /// Parses the text form used on the command line and on D-Bus:
    /// `command:terraform plan` or `services:gmail,calendar`.
    pub fn parse(text: &str) -> Result<Scope, String> {
        if text.len() > MAX_SCOPE_LEN {
            return Err(format!("scope is longer than {MAX_SCOPE_LEN} bytes"));
        }
        if text.chars().any(char::is_control) {
            return Err("scope contains control characters".into());
        }
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("scope {text:?} must start with `command:` or `services:`"))?;
        match kind {
            "command" => {
                if rest.split_whitespace().next().is_none() {
                    return Err("command scope names no command".into());
                }
                // The same syntax and limits as a rule, since the kernel
                // matches a command grant as it matches a rule.
                let words = crate::policy::parse_command(rest)?;
                Ok(Scope::Command {
                    command: words.join(" "),
                })
            }
            "services" => {
                let services: Vec<String> = rest
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if services.is_empty() {
                    return Err("services scope names no service".into());
                }
                if services.len() > MAX_SERVICES {
                    return Err(format!("at most {MAX_SERVICES} services per request"));
                }
                if let Some(bad) = services.iter().find(|s| !is_service_name(s)) {
                    return Err(format!(
                        "service name {bad:?} must be 1-64 characters of a-z, 0-9, - and _"
                    ));
                }
                Ok(Scope::Services { services })
            }
            other => Err(format!(
                "unknown scope kind {other:?}: use `command:` or `services:`"
            )),
        }
    }
}

/// 1-64 characters of a-z, 0-9, `-` and `_`: a service's name in a scope,
/// a service definition and the credential store.
pub fn is_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Scope {
    /// The command of a command scope.
    pub fn command(&self) -> Option<&str> {
        match self {
            Scope::Command { command } => Some(command),
            Scope::Services { .. } => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Command { command } => write!(f, "command:{command}"),
            Scope::Services { services } => write!(f, "services:{}", services.join(",")),
        }
    }
}

/// Read-only unless the approver asked for write access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, zbus::zvariant::Type)]
#[serde(rename_all = "snake_case")]
#[zvariant(signature = "s")]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// Who a grant is for: the requesting Unix user and, when the request came
/// from a governed session, that session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub uid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// The signed content of a grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    pub version: u32,
    pub grant_id: String,
    pub request_id: String,
    pub subject: Subject,
    pub scope: Scope,
    pub access: Access,
    pub not_before: i64,
    pub expires_at: i64,
}

impl GrantBody {
    pub fn is_live(&self, now: i64) -> bool {
        self.not_before <= now && now < self.expires_at
    }

    /// The lifetime signed, 0 for a grant that ends before it starts.
    pub fn ttl_secs(&self) -> u64 {
        u64::try_from(self.expires_at.saturating_sub(self.not_before)).unwrap_or(0)
    }
}

/// A grant as it is stored and passed around: the exact signed JSON text and
/// its signature, so that verification never depends on re-serialising.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedGrant {
    pub payload: String,
    /// Standard base64 of the 64-byte Ed25519 signature.
    pub signature: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("grant signature does not verify")]
    BadSignature,
    #[error("grant payload is malformed: {0}")]
    Malformed(String),
}

impl SignedGrant {
    /// The bytes an Ed25519 signature covers.
    pub fn signing_input(payload: &str) -> Vec<u8> {
        let mut input = SIGNING_CONTEXT.to_vec();
        input.extend_from_slice(payload.as_bytes());
        input
    }

    /// Signs `body` with `sign`, a function over the signing input.
    pub fn sign_with(body: &GrantBody, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> SignedGrant {
        let payload = serde_json::to_string(body).expect("grant bodies always serialise");
        let signature = sign(&Self::signing_input(&payload));
        SignedGrant {
            payload,
            signature: B64.encode(signature),
        }
    }

    /// Checks the signature with the raw 32-byte Ed25519 public key and
    /// returns the body.
    pub fn verify(&self, public_key: &[u8]) -> Result<GrantBody, GrantError> {
        let signature = B64
            .decode(&self.signature)
            .map_err(|_| GrantError::BadSignature)?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
            .verify(&Self::signing_input(&self.payload), &signature)
            .map_err(|_| GrantError::BadSignature)?;
        let body: GrantBody = serde_json::from_str(&self.payload)
            .map_err(|e| GrantError::Malformed(e.to_string()))?;
        if body.version != 1 || !ids::is_well_formed(&body.grant_id) {
            return Err(GrantError::Malformed(
                "unsupported version or bad id".into(),
            ));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn key() -> Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn body() -> GrantBody {
        GrantBody {
            version: 1,
            grant_id: "grt-1".into(),
            request_id: "req-1".into(),
            subject: Subject {
                uid: 1000,
                session: None,
            },
            scope: Scope::parse("command:terraform plan").unwrap(),
            access: Access::Read,
            not_before: 100,
            expires_at: 200,
        }
    }

    #[test]
    fn signed_grants_verify_and_tampering_is_detected() {
        let key = key();
        let grant = SignedGrant::sign_with(&body(), |m| key.sign(m).as_ref().to_vec());
        assert_eq!(grant.verify(key.public_key().as_ref()).unwrap(), body());

        let mut forged = grant.clone();
        forged.payload = forged.payload.replace("\"read\"", "\"write\"");
        assert_eq!(
            forged.verify(key.public_key().as_ref()),
            Err(GrantError::BadSignature)
        );
        let other = self::key();
        assert_eq!(
            grant.verify(other.public_key().as_ref()),
            Err(GrantError::BadSignature)
        );
    }

    #[test]
    fn scopes_parse_and_print() {
        let s = Scope::parse("command:  terraform   plan ").unwrap();
        assert_eq!(s.to_string(), "command:terraform plan");
        let s = Scope::parse("services:gmail, calendar").unwrap();
        assert_eq!(s.to_string(), "services:gmail,calendar");
        assert!(Scope::parse("terraform plan").is_err());
        assert!(Scope::parse("services:Gmail!").is_err());
        assert!(Scope::parse("command:").is_err());
        assert!(Scope::parse(&format!("command:{}", "a".repeat(600))).is_err());
        assert!(Scope::parse("command:ls\u{1b}[2J").is_err());
    }
}
