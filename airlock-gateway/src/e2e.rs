//! The approver's side of the enforcers' end-to-end encryption (the spec's
//! §3.1-3.2): X25519 with the enforcer's key at pairing, HKDF-SHA256 (empty
//! salt, info `HARP-E2E-AES256GCM`) to a 32-byte AES-256-GCM key, which
//! opens the artifacts (no AAD, detached 16-byte tag, standard base64).
//!
//! Airlock's approver is an admin of this machine, so the gateway, which
//! holds every other secret of the pairing, keeps the key; airlock-
//! integrations never sees it. The private X25519 key is ephemeral: only
//! the derived key is kept, in the state file (never in the audit log).

use airlock_common::integrations::sha256_hex;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::hkdf;
use ring::rand::SystemRandom;
use zeroize::Zeroizing;

pub const INFO: &[u8] = b"HARP-E2E-AES256GCM";
/// n8n sends an SPKI DER key: this prefix, then the raw 32 bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];

/// The raw 32 bytes of an enforcer's X25519 key (base64url, padded or not;
/// raw or SPKI).
pub fn enforcer_key(text: &str) -> Result<[u8; 32], String> {
    let raw = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| "x25519PublicKey is not base64url".to_string())?;
    let raw = match raw.len() {
        32 => raw,
        44 if raw[..12] == SPKI_PREFIX => raw[12..].to_vec(),
        _ => return Err("x25519PublicKey is not an X25519 public key".into()),
    };
    raw.try_into()
        .map_err(|_| "x25519PublicKey is not 32 bytes".into())
}

/// A fresh approver key pair agreed with the enforcer's key: the approver's
/// public key (base64url, for `responseJson`) and the shared AES key.
pub fn agree(enforcer: &str) -> Result<(String, Zeroizing<[u8; 32]>), String> {
    let peer = enforcer_key(enforcer)?;
    let rng = SystemRandom::new();
    let private = EphemeralPrivateKey::generate(&X25519, &rng)
        .map_err(|_| "cannot generate an X25519 key".to_string())?;
    let public = private
        .compute_public_key()
        .map_err(|_| "cannot compute the X25519 public key".to_string())?;
    let mut key = Zeroizing::new([0u8; 32]);
    agree_ephemeral(private, &UnparsedPublicKey::new(&X25519, peer), |shared| {
        hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
            .extract(shared)
            .expand(&[INFO], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(key.as_mut()))
    })
    .map_err(|_| "the enforcer's X25519 key is unusable (low order)".to_string())?
    .map_err(|_| "HKDF failed".to_string())?;
    Ok((URL_SAFE_NO_PAD.encode(public.as_ref()), key))
}

/// Opens an artifact's ciphertext with the pairing's key and checks it is
/// what the enforcer hashed: the canonical plaintext, as text.
pub fn open(
    key: &[u8],
    data: &str,
    nonce: &str,
    tag: &str,
    artifact_hash: &str,
) -> Result<String, String> {
    let decode = |what: &str, text: &str| {
        STANDARD
            .decode(text)
            .map_err(|_| format!("ciphertext {what} is not base64"))
    };
    let nonce: [u8; 12] = decode("nonce", nonce)?
        .try_into()
        .map_err(|_| "the nonce is not 12 bytes".to_string())?;
    let mut sealed = decode("data", data)?;
    let tag = decode("tag", tag)?;
    if tag.len() != 16 {
        return Err("the tag is not 16 bytes".into());
    }
    sealed.extend_from_slice(&tag);
    let key = UnboundKey::new(&AES_256_GCM, key).map_err(|_| "bad key".to_string())?;
    let plain = LessSafeKey::new(key)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut sealed,
        )
        .map_err(|_| "the ciphertext does not open with this pairing's key".to_string())?;
    if !sha256_hex(plain).eq_ignore_ascii_case(artifact_hash) {
        return Err("the plaintext does not match the artifact's hash".into());
    }
    String::from_utf8(plain.to_vec()).map_err(|_| "the plaintext is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an enforcer SDK does: its own key, the approver's public key,
    /// the same derivation, AES-256-GCM over the canonical text.
    #[test]
    fn what_an_enforcer_encrypts_the_approver_opens() {
        let rng = SystemRandom::new();
        let enforcer = EphemeralPrivateKey::generate(&X25519, &rng).unwrap();
        let enforcer_public = URL_SAFE_NO_PAD.encode(enforcer.compute_public_key().unwrap());
        let (approver_public, key) = agree(&enforcer_public).unwrap();
        let approver = URL_SAFE_NO_PAD.decode(approver_public).unwrap();
        let mut theirs = [0u8; 32];
        agree_ephemeral(
            enforcer,
            &UnparsedPublicKey::new(&X25519, approver),
            |shared| {
                hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
                    .extract(shared)
                    .expand(&[INFO], hkdf::HKDF_SHA256)
                    .unwrap()
                    .fill(&mut theirs)
                    .unwrap()
            },
        )
        .unwrap();
        assert_eq!(theirs, *key);

        let plain = br#"{"action":"test","value":42}"#;
        let hash = sha256_hex(plain);
        assert_eq!(
            hash,
            "d3c2d7effb479ffc5085aad2144df886a452a4863396060f4e0ea29a8409d0fd"
        );
        let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &theirs).unwrap());
        let mut data = plain.to_vec();
        let tag = sealing
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([7; 12]),
                Aad::empty(),
                &mut data,
            )
            .unwrap();
        let opened = open(
            key.as_ref(),
            &STANDARD.encode(&data),
            &STANDARD.encode([7u8; 12]),
            &STANDARD.encode(tag.as_ref()),
            &hash,
        )
        .unwrap();
        assert_eq!(opened.as_bytes(), plain);
        // A flipped bit, a wrong hash, a short nonce: refused.
        let mut bad = data.clone();
        bad[0] ^= 1;
        let tag_b64 = STANDARD.encode(tag.as_ref());
        assert!(open(
            key.as_ref(),
            &STANDARD.encode(&bad),
            &STANDARD.encode([7u8; 12]),
            &tag_b64,
            &hash
        )
        .is_err());
        assert!(open(
            key.as_ref(),
            &STANDARD.encode(&data),
            &STANDARD.encode([7u8; 12]),
            &tag_b64,
            &"0".repeat(64)
        )
        .is_err());
        assert!(open(
            key.as_ref(),
            &STANDARD.encode(&data),
            "AAAA",
            &tag_b64,
            &hash
        )
        .is_err());
    }

    #[test]
    fn spki_keys_are_accepted_and_junk_refused() {
        let raw = [9u8; 32];
        let mut spki = SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&raw);
        assert_eq!(enforcer_key(&URL_SAFE_NO_PAD.encode(&spki)).unwrap(), raw);
        assert_eq!(
            enforcer_key(&format!("{}=", URL_SAFE_NO_PAD.encode(raw))).unwrap(),
            raw
        );
        assert!(enforcer_key("not base64 !").is_err());
        assert!(enforcer_key(&URL_SAFE_NO_PAD.encode([1u8; 31])).is_err());
        assert!(agree(&URL_SAFE_NO_PAD.encode([0u8; 32])).is_err());
    }
}
