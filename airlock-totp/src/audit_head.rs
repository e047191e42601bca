//! Countersigning the gateway's audit chain head.
//!
//! airlock-totp cannot read the log, but it remembers the latest head it
//! signed, in its own state, and signs only heads that move forward from
//! it. Each signature names the head before it, so the countersignatures
//! form a chain the gateway user cannot rewrite: a log rewritten below the
//! latest countersigned head no longer has the hashes airlock-totp signed.

use std::path::{Path, PathBuf};

use airlock_common::audit::countersign::signing_input;
use airlock_common::dbus::HeadSignature;
use anyhow::Context;

use crate::files;
use crate::signer::GrantSigner;

/// The latest head signed, private to airlock-totp.
pub const STATE_FILE: &str = "audit-head.json";

/// Why a head is not countersigned.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("an audit head hash is 64 lowercase hex digits")]
    Malformed,
    #[error(
        "airlock-totp already countersigned record {signed_seq}; a head at record {seq} means \
         the audit log was cut or rewritten"
    )]
    Behind { seq: u64, signed_seq: u64 },
    #[error("airlock-totp countersigned another record {seq}: the audit log was rewritten")]
    Diverged { seq: u64 },
    #[error("audit head state: {0}")]
    Io(#[from] std::io::Error),
}

pub struct AuditHeads {
    path: PathBuf,
    latest: Option<HeadSignature>,
}

impl AuditHeads {
    pub fn open(dir: &Path) -> anyhow::Result<AuditHeads> {
        let path = dir.join(STATE_FILE);
        let latest = match files::read_optional(&path)
            .with_context(|| format!("reading {}", path.display()))?
        {
            // Corrupt state is an error, not a reset: a reset would let a
            // rewritten log be countersigned afresh.
            Some(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is corrupt", path.display()))?,
            ),
            None => None,
        };
        Ok(AuditHeads { path, latest })
    }

    /// The latest head signed; `seq` 0 before the first.
    pub fn latest(&self) -> HeadSignature {
        self.latest.clone().unwrap_or(HeadSignature {
            seq: 0,
            hash: String::new(),
            prev_seq: 0,
            prev_hash: String::new(),
            signature: String::new(),
        })
    }

    /// Signs head (`seq`, `hash`) if it moves forward from the latest one
    /// (the same head again gets the same signature), saving it first.
    pub fn countersign(
        &mut self,
        signer: &GrantSigner,
        seq: u64,
        hash: &str,
    ) -> Result<HeadSignature, HeadError> {
        let well_formed = hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed || seq == 0 {
            return Err(HeadError::Malformed);
        }
        let (prev_seq, prev_hash) = match &self.latest {
            Some(latest) if latest.seq == seq && latest.hash == hash => return Ok(latest.clone()),
            Some(latest) if latest.seq == seq => return Err(HeadError::Diverged { seq }),
            Some(latest) if latest.seq > seq => {
                return Err(HeadError::Behind {
                    seq,
                    signed_seq: latest.seq,
                })
            }
            Some(latest) => (latest.seq, latest.hash.clone()),
            None => (0, String::new()),
        };
        let input = signing_input(seq, hash, prev_seq, &prev_hash);
        let head = HeadSignature {
            seq,
            hash: hash.to_owned(),
            prev_seq,
            prev_hash,
            signature: signer.sign_raw_base64(&input),
        };
        let json = serde_json::to_vec(&head).map_err(std::io::Error::other)?;
        files::write_atomic(&self.path, &json, 0o600)?;
        self.latest = Some(head.clone());
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_common::audit::countersign::verifies;

    fn hash(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn heads_only_move_forward_and_chain_to_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let signer = GrantSigner::open_or_create(dir.path()).unwrap();
        let mut heads = AuditHeads::open(dir.path()).unwrap();
        assert_eq!(heads.latest().seq, 0);
        let first = heads.countersign(&signer, 5, &hash(1)).unwrap();
        assert!(verifies(&first, signer.public_key()));
        assert_eq!((first.prev_seq, first.prev_hash.as_str()), (0, ""));
        assert_eq!(heads.countersign(&signer, 5, &hash(1)).unwrap(), first);
        assert!(matches!(
            heads.countersign(&signer, 5, &hash(2)),
            Err(HeadError::Diverged { seq: 5 })
        ));
        assert!(matches!(
            heads.countersign(&signer, 4, &hash(2)),
            Err(HeadError::Behind { .. })
        ));
        assert!(matches!(
            heads.countersign(&signer, 9, "XYZ"),
            Err(HeadError::Malformed)
        ));
        let second = heads.countersign(&signer, 9, &hash(3)).unwrap();
        assert_eq!((second.prev_seq, second.prev_hash.clone()), (5, hash(1)));
        // A restart remembers the latest, so a rewrite stays refused.
        let mut reopened = AuditHeads::open(dir.path()).unwrap();
        assert_eq!(reopened.latest().seq, 9);
        assert!(reopened.countersign(&signer, 9, &hash(4)).is_err());
        assert_eq!(files::mode_of(&dir.path().join(STATE_FILE)).unwrap(), 0o600);
        // The signature is over the head and its link, nothing else.
        let tampered = HeadSignature {
            prev_seq: 4,
            ..second
        };
        assert!(!verifies(&tampered, signer.public_key()));
    }
}
