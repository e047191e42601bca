//! The credential store's envelope format, shared by the gateway (which
//! seals and stores), airlock-totp (which wraps and unwraps data keys) and
//! `airlockctl credentials get` (which opens a value for an admin).
//!
//! Each stored value has its own random 256-bit data key and is sealed with
//! AES-256-GCM under it; the data key is sealed (wrapped) under
//! airlock-totp's key-encryption key. Both seals bind the service and field
//! as associated data, so a sealed value or wrapped key moved to another
//! service's or field's place does not open, and a grant for one service
//! cannot unwrap another's key. A sealed blob is `nonce ‖ ciphertext ‖ tag`.

pub mod bus;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

pub use crate::grant::is_service_name;

/// Bytes in a data key and in the key-encryption key.
pub const KEY_LEN: usize = 32;
/// The longest value the store takes (a PEM key fits; a file does not).
pub const MAX_VALUE_LEN: usize = 16 * 1024;
/// The longest sealed blob: a value, its nonce and tag.
pub const MAX_SEALED_LEN: usize = MAX_VALUE_LEN + NONCE_LEN + 16;
/// The field `airlockctl credentials add SERVICE` stores without a FIELD.
pub const DEFAULT_FIELD: &str = "token";

/// What a sealed blob is: a value under its data key, or a data key under
/// the key-encryption key. The purpose is part of the associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Value,
    DataKey,
}

impl Purpose {
    fn context(self) -> &'static [u8] {
        match self {
            Purpose::Value => b"airlock-credential-value-v1\0",
            Purpose::DataKey => b"airlock-credential-key-v1\0",
        }
    }
}

/// Where a sealed blob belongs: the associated data of its seal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot<'a> {
    pub service: &'a str,
    pub field: &'a str,
}

impl Slot<'_> {
    fn aad(&self, purpose: Purpose) -> Vec<u8> {
        let mut aad = purpose.context().to_vec();
        aad.extend_from_slice(self.service.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.field.as_bytes());
        aad
    }

    /// Checks both names (the same rules for a service as a grant scope's).
    pub fn check(&self) -> Result<(), String> {
        if !is_service_name(self.service) {
            return Err(format!(
                "service name {:?} must be 1-64 characters of a-z, 0-9, - and _",
                self.service
            ));
        }
        if !is_field_name(self.field) {
            return Err(format!(
                "field name {:?} must be 1-64 characters of a-z, 0-9, - and _",
                self.field
            ));
        }
        Ok(())
    }
}

/// Field names follow service names' rules.
pub fn is_field_name(name: &str) -> bool {
    is_service_name(name)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error(
        "the sealed data does not open with this key (wrong key, service or field, or damaged)"
    )]
    DoesNotOpen,
    #[error("a key is {KEY_LEN} bytes")]
    BadKey,
    #[error("the system random generator failed")]
    Random,
}

/// Standard base64, as keys and sealed blobs travel on D-Bus and rest in
/// the gateway's files.
pub fn encode(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Decodes standard base64 of at most `max` bytes (into zeroized memory).
pub fn decode(text: &str, max: usize) -> Result<Zeroizing<Vec<u8>>, String> {
    if text.len() > max.div_ceil(3) * 4 + 4 {
        return Err("encoded data is too long".into());
    }
    B64.decode(text.trim())
        .map(Zeroizing::new)
        .map_err(|_| "not valid base64".to_string())
}

/// A fresh random 256-bit key.
pub fn new_key() -> Result<Zeroizing<[u8; KEY_LEN]>, CredentialError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    SystemRandom::new()
        .fill(key.as_mut())
        .map_err(|_| CredentialError::Random)?;
    Ok(key)
}

fn aead_key(key: &[u8]) -> Result<LessSafeKey, CredentialError> {
    if key.len() != KEY_LEN {
        return Err(CredentialError::BadKey);
    }
    let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| CredentialError::BadKey)?;
    Ok(LessSafeKey::new(unbound))
}

/// Seals `plaintext` under `key` for `slot` with a random nonce.
pub fn seal(
    key: &[u8],
    slot: Slot<'_>,
    purpose: Purpose,
    plaintext: &[u8],
) -> Result<Vec<u8>, CredentialError> {
    let key = aead_key(key)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CredentialError::Random)?;
    let mut buffer = Zeroizing::new(plaintext.to_vec());
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(slot.aad(purpose)),
            &mut buffer,
        )
        .map_err(|_| CredentialError::DoesNotOpen)?;
    let mut sealed = Vec::with_capacity(NONCE_LEN + buffer.len() + tag.as_ref().len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&buffer);
    sealed.extend_from_slice(tag.as_ref());
    Ok(sealed)
}

/// Opens what [`seal`] sealed for the same `slot` and `purpose`.
pub fn open(
    key: &[u8],
    slot: Slot<'_>,
    purpose: Purpose,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CredentialError> {
    let key = aead_key(key)?;
    if sealed.len() < NONCE_LEN + 16 || sealed.len() > MAX_SEALED_LEN {
        return Err(CredentialError::DoesNotOpen);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce =
        Nonce::try_assume_unique_for_key(nonce).map_err(|_| CredentialError::DoesNotOpen)?;
    let mut buffer = Zeroizing::new(rest.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(slot.aad(purpose)), &mut buffer)
        .map_err(|_| CredentialError::DoesNotOpen)?
        .len();
    buffer.truncate(len);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB: Slot<'static> = Slot {
        service: "github",
        field: "token",
    };

    #[test]
    fn a_sealed_value_opens_only_with_its_key_slot_and_purpose() {
        let key = new_key().unwrap();
        let sealed = seal(key.as_ref(), GITHUB, Purpose::Value, b"ghp_secret").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"ghp_secret"));
        assert_eq!(
            open(key.as_ref(), GITHUB, Purpose::Value, &sealed)
                .unwrap()
                .as_slice(),
            b"ghp_secret"
        );
        let other = new_key().unwrap();
        assert_eq!(
            open(other.as_ref(), GITHUB, Purpose::Value, &sealed),
            Err(CredentialError::DoesNotOpen)
        );
        for slot in [
            Slot {
                service: "gitlab",
                field: "token",
            },
            Slot {
                service: "github",
                field: "password",
            },
        ] {
            assert_eq!(
                open(key.as_ref(), slot, Purpose::Value, &sealed),
                Err(CredentialError::DoesNotOpen)
            );
        }
        assert_eq!(
            open(key.as_ref(), GITHUB, Purpose::DataKey, &sealed),
            Err(CredentialError::DoesNotOpen)
        );
        let mut damaged = sealed.clone();
        damaged[14] ^= 1;
        assert_eq!(
            open(key.as_ref(), GITHUB, Purpose::Value, &damaged),
            Err(CredentialError::DoesNotOpen)
        );
        assert_eq!(
            open(key.as_ref(), GITHUB, Purpose::Value, &sealed[..20]),
            Err(CredentialError::DoesNotOpen)
        );
        assert_eq!(
            seal(&[0u8; 16], GITHUB, Purpose::Value, b"x"),
            Err(CredentialError::BadKey)
        );
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let key = new_key().unwrap();
        let a = seal(key.as_ref(), GITHUB, Purpose::Value, b"v").unwrap();
        let b = seal(key.as_ref(), GITHUB, Purpose::Value, b"v").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn names_are_checked() {
        assert!(GITHUB.check().is_ok());
        assert!(Slot {
            service: "../x",
            field: "token"
        }
        .check()
        .is_err());
        assert!(Slot {
            service: "github",
            field: "To ken"
        }
        .check()
        .is_err());
    }
}
