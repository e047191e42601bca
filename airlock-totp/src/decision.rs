//! The Ed25519 key that signs third-party enforcers' decisions.
//!
//! It is a key of its own, not the grant-signing key: the message is fixed
//! by the enforcer SDKs (the JCS form of the decision's fields, with no
//! room for a domain-separation prefix) and its fields come partly from the
//! enforcer, so with one key a decision signature could one day be taken
//! for something else the grant key vouches for. A separate key can never
//! be, and it can be published to every enforcer (discovery) and replaced
//! without touching grants or the audit countersignatures.

use std::path::Path;

use airlock_common::integrations::{
    decision_message, random_token, sha256_hex, DecisionKey, DecisionStatement, SignedDecision,
};
use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::files;
use crate::signer::open_or_create_key;

pub const KEY_FILE: &str = "decision-signing.pk8";
/// The public key for enforcers: base64url of the raw 32 bytes.
pub const PUBLIC_KEY_FILE: &str = "decision-signing.pub";

pub struct DecisionSigner {
    key: Ed25519KeyPair,
    key_id: String,
}

impl DecisionSigner {
    pub fn open_or_create(dir: &Path) -> anyhow::Result<Self> {
        let key = open_or_create_key(dir, KEY_FILE)?;
        // Names the key: a rotated key gets a new id.
        let key_id = format!(
            "airlock-totp-{}",
            &sha256_hex(key.public_key().as_ref())[..16]
        );
        let signer = DecisionSigner { key, key_id };
        let pub_path = dir.join(PUBLIC_KEY_FILE);
        let line = format!("{}\n", signer.public().public_key);
        files::write_atomic(&pub_path, line.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", pub_path.display()))?;
        Ok(signer)
    }

    pub fn public(&self) -> DecisionKey {
        DecisionKey {
            key_id: self.key_id.clone(),
            public_key: URL_SAFE_NO_PAD.encode(self.key.public_key().as_ref()),
        }
    }

    /// Signs `statement` with a fresh nonce.
    pub fn sign(&self, statement: DecisionStatement) -> SignedDecision {
        let nonce = random_token("dn-", 16);
        let message = decision_message(&statement, &nonce, &self.key_id);
        let signature = URL_SAFE_NO_PAD.encode(self.key.sign(&message).as_ref());
        SignedDecision {
            statement,
            nonce,
            signer_key_id: self.key_id.clone(),
            signature,
            msg_id: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use airlock_common::integrations::Verdict;

    use super::*;

    #[test]
    fn a_signature_verifies_over_the_sdk_message_and_the_key_persists() {
        let dir = tempfile::tempdir().unwrap();
        let signer = DecisionSigner::open_or_create(dir.path()).unwrap();
        let statement = DecisionStatement {
            request_id: "req-1".into(),
            artifact_hash: "a".repeat(64),
            decision: Verdict::Approve,
            reason: "fine".into(),
        };
        let signed = signer.sign(statement.clone());
        let public = URL_SAFE_NO_PAD.decode(signer.public().public_key).unwrap();
        let message = decision_message(&statement, &signed.nonce, &signed.signer_key_id);
        let signature = URL_SAFE_NO_PAD.decode(&signed.signature).unwrap();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public)
            .verify(&message, &signature)
            .unwrap();
        let again = DecisionSigner::open_or_create(dir.path()).unwrap();
        assert_eq!(again.public(), signer.public());
        assert_ne!(signer.sign(statement.clone()).nonce, signed.nonce);
    }
}
