//! Which of a session spec's grants the kernel may honour.
//!
//! The gateway hands the enforcer each grant exactly as airlock-totp signed
//! it, and the enforcer trusts nothing but the signature: a grant is
//! installed only if it verifies against the key the enforcer asked
//! airlock-totp for ([`crate::totp_key`]), names this session and its user,
//! grants a command, and is live. The command installed and its deadline are
//! read from the signed payload, so a gateway that forges, edits or moves a
//! grant gets nothing into the kernel.

use std::fmt;

use airlock_common::dbus::SignedGrantWire;
use airlock_common::grant::{GrantError, Scope, SignedGrant};
use airlock_common::{ids, policy, timefmt};

/// A grant that passed every check: what goes into the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub id: String,
    /// The granted command prefix, from the signed scope.
    pub words: Vec<String>,
    /// Unix time, from the signed body.
    pub expires_at: i64,
}

/// The session a grant must be for, as the enforcer knows it.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub session: &'a str,
    pub uid: u32,
}

/// Why a grant was not installed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "airlock-totp's grant-verification key is not known (airlock-totp did not answer), \
         so no grant can be checked"
    )]
    NoKey,
    #[error("its signature does not verify against airlock-totp's key")]
    BadSignature,
    #[error("its signed payload is malformed: {0}")]
    Malformed(String),
    #[error("it was signed for {}, not for session {expected}", OtherSession(.signed))]
    OtherSession {
        signed: Option<String>,
        expected: String,
    },
    #[error("it was signed for uid {signed}, not for the session's uid {expected}")]
    OtherUser { signed: u32, expected: u32 },
    #[error("its scope {0} is not a command")]
    NotACommand(String),
    #[error("its command cannot be enforced: {0}")]
    BadCommand(String),
    #[error("it expired at {}", timefmt::rfc3339(*.0))]
    Expired(i64),
    #[error("it is not valid before {}", timefmt::rfc3339(*.0))]
    NotYetValid(i64),
}

/// How a grant's session reads in a refusal.
struct OtherSession<'a>(&'a Option<String>);

impl fmt::Display for OtherSession<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(session) => write!(f, "session {session}"),
            None => f.write_str("no session (the whole uid)"),
        }
    }
}

/// Decides whether `grant` may be installed for `subject` at `now`, with
/// airlock-totp's raw Ed25519 key `key` (none if it could not be asked).
pub fn admit(
    grant: &SignedGrantWire,
    key: Option<&[u8]>,
    subject: Subject<'_>,
    now: i64,
) -> Result<Admitted, Refusal> {
    let key = key.ok_or(Refusal::NoKey)?;
    let body = SignedGrant::from(grant.clone())
        .verify(key)
        .map_err(|e| match e {
            GrantError::BadSignature => Refusal::BadSignature,
            GrantError::Malformed(why) => Refusal::Malformed(why),
        })?;
    if body.subject.session.as_deref() != Some(subject.session) {
        return Err(Refusal::OtherSession {
            signed: body.subject.session,
            expected: subject.session.to_owned(),
        });
    }
    if body.subject.uid != subject.uid {
        return Err(Refusal::OtherUser {
            signed: body.subject.uid,
            expected: subject.uid,
        });
    }
    let Scope::Command { command } = &body.scope else {
        return Err(Refusal::NotACommand(body.scope.to_string()));
    };
    // The same syntax and limits as a rule: the kernel matches it as one.
    let words = policy::parse_command(command).map_err(Refusal::BadCommand)?;
    if now < body.not_before {
        return Err(Refusal::NotYetValid(body.not_before));
    }
    if now >= body.expires_at {
        return Err(Refusal::Expired(body.expires_at));
    }
    Ok(Admitted {
        id: body.grant_id,
        words,
        expires_at: body.expires_at,
    })
}

/// The id a grant's payload claims, for log lines about a grant that may
/// not be what it says; `(unreadable)` when it names none.
pub fn claimed_id(grant: &SignedGrantWire) -> String {
    serde_json::from_str::<serde_json::Value>(&grant.payload)
        .ok()
        .and_then(|v| v.get("grant_id")?.as_str().map(str::to_owned))
        .filter(|id| ids::is_well_formed(id))
        .unwrap_or_else(|| "(unreadable)".to_owned())
}

/// Whether `grant` carries a signature `key` does not vouch for, so that a
/// newer key may be worth asking for.
pub fn signed_by_another_key(grant: &SignedGrantWire, key: &[u8]) -> bool {
    matches!(
        SignedGrant::from(grant.clone()).verify(key),
        Err(GrantError::BadSignature)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_common::grant::{Access, GrantBody, Subject as GrantSubject};
    use ring::signature::{Ed25519KeyPair, KeyPair};

    const NOW: i64 = 1_700_000_000;
    const SESSION: &str = "ses-0123456789abcdef";
    const UID: u32 = 1001;

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn body(scope: &str) -> GrantBody {
        GrantBody {
            version: 1,
            grant_id: "grt-0123456789abcdef".into(),
            request_id: "req-0123456789abcdef".into(),
            subject: GrantSubject {
                uid: UID,
                session: Some(SESSION.into()),
            },
            scope: Scope::parse(scope).unwrap(),
            access: Access::Read,
            not_before: NOW - 10,
            expires_at: NOW + 600,
        }
    }

    fn sign(key: &Ed25519KeyPair, body: &GrantBody) -> SignedGrantWire {
        SignedGrant::sign_with(body, |m| key.sign(m).as_ref().to_vec()).into()
    }

    fn this_session() -> Subject<'static> {
        Subject {
            session: SESSION,
            uid: UID,
        }
    }

    fn decide(grant: &SignedGrantWire, key: &Ed25519KeyPair) -> Result<Admitted, Refusal> {
        admit(grant, Some(key.public_key().as_ref()), this_session(), NOW)
    }

    #[test]
    fn a_grant_signed_for_this_session_installs_its_signed_command_and_deadline() {
        let key = key();
        let grant = sign(&key, &body("command:terraform  plan"));
        assert_eq!(
            decide(&grant, &key),
            Ok(Admitted {
                id: "grt-0123456789abcdef".into(),
                words: vec!["terraform".into(), "plan".into()],
                expires_at: NOW + 600,
            })
        );
    }

    #[test]
    fn without_airlock_totps_key_nothing_is_installed() {
        let key = key();
        let grant = sign(&key, &body("command:terraform plan"));
        assert_eq!(
            admit(&grant, None, this_session(), NOW),
            Err(Refusal::NoKey)
        );
    }

    #[test]
    fn a_forged_signature_is_refused() {
        let key = key();
        let mut unsigned = sign(&key, &body("command:terraform plan"));
        unsigned.signature = String::new();
        assert_eq!(decide(&unsigned, &key), Err(Refusal::BadSignature));
        let mut junk = unsigned.clone();
        junk.signature = "not base64!".into();
        assert_eq!(decide(&junk, &key), Err(Refusal::BadSignature));
        // Signed, but by a key that is not airlock-totp's.
        let attacker = self::key();
        let grant = sign(&attacker, &body("command:terraform plan"));
        assert_eq!(decide(&grant, &key), Err(Refusal::BadSignature));
        assert!(signed_by_another_key(&grant, key.public_key().as_ref()));
        assert!(!signed_by_another_key(
            &grant,
            attacker.public_key().as_ref()
        ));
    }

    #[test]
    fn an_edited_command_or_deadline_breaks_the_signature() {
        let key = key();
        let grant = sign(&key, &body("command:terraform validate"));
        assert!(decide(&grant, &key).is_ok());
        let mut edited = grant.clone();
        edited.payload = edited
            .payload
            .replace("terraform validate", "terraform plan");
        assert_ne!(edited.payload, grant.payload);
        assert_eq!(decide(&edited, &key), Err(Refusal::BadSignature));
        let mut extended = grant.clone();
        extended.payload = extended
            .payload
            .replace(&(NOW + 600).to_string(), &(NOW + 86_400).to_string());
        assert_ne!(extended.payload, grant.payload);
        assert_eq!(decide(&extended, &key), Err(Refusal::BadSignature));
    }

    #[test]
    fn a_grant_for_another_session_or_user_is_refused() {
        let key = key();
        let mut other = body("command:terraform plan");
        other.subject.session = Some("ses-fedcba9876543210".into());
        assert_eq!(
            decide(&sign(&key, &other), &key),
            Err(Refusal::OtherSession {
                signed: Some("ses-fedcba9876543210".into()),
                expected: SESSION.into(),
            })
        );
        let mut whole_uid = body("command:terraform plan");
        whole_uid.subject.session = None;
        let refused = decide(&sign(&key, &whole_uid), &key).unwrap_err();
        assert!(
            refused.to_string().contains("no session (the whole uid)"),
            "{refused}"
        );
        let mut other_user = body("command:terraform plan");
        other_user.subject.uid = UID + 1;
        assert_eq!(
            decide(&sign(&key, &other_user), &key),
            Err(Refusal::OtherUser {
                signed: UID + 1,
                expected: UID,
            })
        );
    }

    #[test]
    fn only_live_command_grants_are_installed() {
        let key = key();
        let services = sign(&key, &body("services:gmail"));
        assert_eq!(
            decide(&services, &key),
            Err(Refusal::NotACommand("services:gmail".into()))
        );
        let grant = sign(&key, &body("command:terraform plan"));
        let at = |now| admit(&grant, Some(key.public_key().as_ref()), this_session(), now);
        assert!(at(NOW + 599).is_ok());
        assert_eq!(at(NOW + 600), Err(Refusal::Expired(NOW + 600)));
        assert_eq!(at(NOW - 11), Err(Refusal::NotYetValid(NOW - 10)));
    }

    #[test]
    fn a_signed_command_the_kernel_cannot_match_is_refused() {
        let key = key();
        // Scope::parse would refuse it; a signed body is not re-parsed by
        // serde, so the enforcer checks the words itself.
        let mut odd = body("command:terraform plan");
        odd.scope = Scope::Command {
            command: "/usr/bin/../bin/terraform plan".into(),
        };
        assert!(matches!(
            decide(&sign(&key, &odd), &key),
            Err(Refusal::BadCommand(_))
        ));
        odd.scope = Scope::Command {
            command: "   ".into(),
        };
        assert!(matches!(
            decide(&sign(&key, &odd), &key),
            Err(Refusal::BadCommand(_))
        ));
    }

    #[test]
    fn refusals_name_what_was_claimed() {
        let key = key();
        let mut grant = sign(&key, &body("command:terraform plan"));
        grant.signature = String::new();
        assert_eq!(claimed_id(&grant), "grt-0123456789abcdef");
        grant.payload = "{\"grant_id\":\"../../etc\"}".into();
        assert_eq!(claimed_id(&grant), "(unreadable)");
        grant.payload = "not json".into();
        assert_eq!(claimed_id(&grant), "(unreadable)");
    }
}
