//! The Ed25519 key that signs grants. It never leaves this process: the
//! gateway only gets the public key, so it can check grants but not mint them.

use std::fmt;
use std::path::Path;

use airlock_common::dbus::GrantRequest;
use airlock_common::grant::{GrantBody, Scope, SignedGrant, Subject};
use airlock_common::ids;
use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

use crate::files;

/// The private key, PKCS#8 v2 as ring writes it.
pub const KEY_FILE: &str = "grant-signing.pk8";
/// The public key for the gateway and for people: base64 of the raw 32 bytes.
pub const PUBLIC_KEY_FILE: &str = "grant-signing.pub";
/// The grant format version this signer writes.
const GRANT_VERSION: u32 = 1;

pub struct GrantSigner {
    key: Ed25519KeyPair,
}

/// Shows only the public key.
impl fmt::Debug for GrantSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantSigner")
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

/// Loads the Ed25519 key in `dir`/`file`, or creates it (mode 0600) on
/// first start.
pub(crate) fn open_or_create_key(dir: &Path, file: &str) -> anyhow::Result<Ed25519KeyPair> {
    let key_path = dir.join(file);
    let pkcs8 = match files::read_optional(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?
    {
        Some(bytes) => bytes,
        None => {
            let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("cannot generate the key {}", key_path.display()))?;
            let bytes = Zeroizing::new(document.as_ref().to_vec());
            files::write_atomic(&key_path, &bytes, 0o600)
                .with_context(|| format!("writing {}", key_path.display()))?;
            bytes
        }
    };
    Ed25519KeyPair::from_pkcs8(&pkcs8)
        .map_err(|e| anyhow::anyhow!("{} is not a valid key: {e}", key_path.display()))
}

impl GrantSigner {
    /// Loads the key from `dir`, or creates it on first start, and (re)writes
    /// the public key file so it always matches the key in use.
    pub fn open_or_create(dir: &Path) -> anyhow::Result<Self> {
        let key = open_or_create_key(dir, KEY_FILE)?;
        let signer = GrantSigner { key };

        let pub_path = dir.join(PUBLIC_KEY_FILE);
        let line = format!("{}\n", signer.public_key_base64());
        files::write_atomic(&pub_path, line.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", pub_path.display()))?;
        Ok(signer)
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    pub fn public_key_base64(&self) -> String {
        B64.encode(self.public_key())
    }

    /// Signs `input` (already domain-separated by its caller, as the audit
    /// head signature is) and returns the signature in standard base64.
    pub(crate) fn sign_raw_base64(&self, input: &[u8]) -> String {
        B64.encode(self.key.sign(input).as_ref())
    }

    /// Validates `request` and signs a grant for it, live from `now` for
    /// `ttl_secs`. Errors are messages for the caller (`InvalidArgument`).
    pub fn sign(
        &self,
        request: &GrantRequest,
        now: i64,
        max_ttl_secs: u64,
    ) -> Result<SignedGrant, String> {
        Ok(self.sign_body(&Self::body_for(request, now, max_ttl_secs)?))
    }

    /// Signs a body [`Self::body_for`] built.
    pub fn sign_body(&self, body: &GrantBody) -> SignedGrant {
        SignedGrant::sign_with(body, |message| self.key.sign(message).as_ref().to_vec())
    }

    /// Validates `request` and builds the grant body that answers it, live
    /// from `now`: what is signed once the code checks out.
    pub fn body_for(
        request: &GrantRequest,
        now: i64,
        max_ttl_secs: u64,
    ) -> Result<GrantBody, String> {
        if !ids::is_well_formed(&request.request_id) {
            return Err("malformed request id".into());
        }
        let session = match request.session.as_deref() {
            None => None,
            Some(s) if ids::is_well_formed(s) => Some(s.to_string()),
            Some(_) => return Err("malformed session id".into()),
        };
        let scope = Scope::parse(&request.scope)?;
        let access = request.access;
        if !(1..=max_ttl_secs).contains(&request.ttl_secs) {
            return Err(format!(
                "grant lifetime must be between 1 and {max_ttl_secs} seconds"
            ));
        }
        let expires_at = i64::try_from(request.ttl_secs)
            .ok()
            .and_then(|ttl| now.checked_add(ttl))
            .ok_or("grant lifetime is out of range")?;
        Ok(GrantBody {
            version: GRANT_VERSION,
            grant_id: ids::new_id("grt"),
            request_id: request.request_id.clone(),
            subject: Subject {
                uid: request.subject_uid,
                session,
            },
            scope,
            access,
            not_before: now,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_common::grant::Access;
    use std::fs;

    const NOW: i64 = 1_700_000_000;
    const MAX_TTL: u64 = 8 * 3600;

    fn request() -> GrantRequest {
        GrantRequest {
            request_id: ids::new_id("req"),
            subject_uid: 1000,
            session: Some("ses-1".to_owned()).into(),
            scope: "command:terraform  plan".into(),
            access: Access::Write,
            ttl_secs: 1800,
        }
    }

    #[test]
    fn signed_grants_verify_with_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let signer = GrantSigner::open_or_create(dir.path()).unwrap();
        let request = request();
        let grant = signer.sign(&request, NOW, MAX_TTL).unwrap();
        let body = grant.verify(signer.public_key()).unwrap();
        assert_eq!(body.version, 1);
        assert!(body.grant_id.starts_with("grt-"));
        assert_eq!(body.request_id, request.request_id);
        assert_eq!(
            body.subject,
            Subject {
                uid: 1000,
                session: Some("ses-1".into())
            }
        );
        assert_eq!(body.scope.to_string(), "command:terraform plan");
        assert_eq!(body.access, Access::Write);
        assert_eq!((body.not_before, body.expires_at), (NOW, NOW + 1800));

        let no_session = GrantRequest {
            session: None.into(),
            access: Access::Read,
            ..request
        };
        let body = signer
            .sign(&no_session, NOW, MAX_TTL)
            .unwrap()
            .verify(signer.public_key())
            .unwrap();
        assert_eq!((body.subject.session, body.access), (None, Access::Read));

        let other_dir = tempfile::tempdir().unwrap();
        let other = GrantSigner::open_or_create(other_dir.path()).unwrap();
        assert!(grant.verify(other.public_key()).is_err());
    }

    #[test]
    fn bad_requests_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let signer = GrantSigner::open_or_create(dir.path()).unwrap();
        // An access other than read or write does not even decode (see
        // airlock-common's dbus tests).
        let cases = [
            GrantRequest {
                ttl_secs: 0,
                ..request()
            },
            GrantRequest {
                ttl_secs: MAX_TTL + 1,
                ..request()
            },
            GrantRequest {
                scope: "terraform plan".into(),
                ..request()
            },
            GrantRequest {
                scope: "services:Gmail!".into(),
                ..request()
            },
            GrantRequest {
                request_id: "req-1\nforged".into(),
                ..request()
            },
            GrantRequest {
                session: Some("../x".to_owned()).into(),
                ..request()
            },
        ];
        for case in cases {
            assert!(signer.sign(&case, NOW, MAX_TTL).is_err(), "{case:?}");
        }
        assert!(signer
            .sign(
                &GrantRequest {
                    ttl_secs: MAX_TTL,
                    ..request()
                },
                NOW,
                MAX_TTL
            )
            .is_ok());
        assert!(signer
            .sign(
                &GrantRequest {
                    ttl_secs: u64::MAX,
                    ..request()
                },
                NOW,
                u64::MAX
            )
            .is_err());
    }

    #[test]
    fn the_key_persists_and_its_files_have_the_right_modes() {
        let dir = tempfile::tempdir().unwrap();
        let first = GrantSigner::open_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key().len(), 32);
        let second = GrantSigner::open_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key(), second.public_key());

        let pub_path = dir.path().join(PUBLIC_KEY_FILE);
        assert_eq!(
            fs::read_to_string(&pub_path).unwrap(),
            format!("{}\n", first.public_key_base64())
        );
        assert_eq!(
            B64.decode(fs::read_to_string(&pub_path).unwrap().trim())
                .unwrap(),
            first.public_key()
        );
        assert_eq!(files::mode_of(&dir.path().join(KEY_FILE)).unwrap(), 0o600);
        assert_eq!(files::mode_of(&pub_path).unwrap(), 0o644);

        // A grant from the first instance verifies with the second's key.
        let grant = first.sign(&request(), NOW, MAX_TTL).unwrap();
        assert!(grant.verify(second.public_key()).is_ok());
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        GrantSigner::open_or_create(dir.path()).unwrap();
        fs::write(dir.path().join(KEY_FILE), b"garbage").unwrap();
        assert!(GrantSigner::open_or_create(dir.path()).is_err());
        assert_eq!(fs::read(dir.path().join(KEY_FILE)).unwrap(), b"garbage");
    }

    #[test]
    fn debug_shows_only_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let signer = GrantSigner::open_or_create(dir.path()).unwrap();
        let printed = format!("{signer:?}");
        assert!(printed.contains(&signer.public_key_base64()));
        let pkcs8 = fs::read(dir.path().join(KEY_FILE)).unwrap();
        assert!(!printed.contains(&B64.encode(&pkcs8[16..48])));
    }
}
