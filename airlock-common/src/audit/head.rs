//! The head anchor: the newest record's `seq` and `hash`, kept outside the
//! log so that records cut from its end are noticed.
//!
//! It changes with every append, so it is updated in place: replacing it by
//! a rename cost more than the append's own fsync (ext4 flushes a file that
//! is renamed over another). The file holds two fixed-size slots, each one
//! JSON line with a checksum, and record `seq` goes to slot `seq % 2`; the
//! other slot keeps the previous head whole. A reader takes the newest slot
//! whose checksum holds, so a write torn by a crash, or caught half-done by
//! a concurrent reader, leaves the head one record behind. That is harmless:
//! the head may lag the log, never lead it. No fsync for the same reason:
//! the log it anchors was fsynced first.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use ring::digest;
use serde::{Deserialize, Serialize};

use super::{AuditError, FILE_MODE};
use crate::fsutil::{replace, Durability};

/// Bytes per slot; a slot is padded with spaces and ends in a newline.
const SLOT_LEN: usize = 160;
const FILE_LEN: u64 = 2 * SLOT_LEN as u64;

/// The newest record's `seq` and `hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// One slot as stored. Files from before the slots hold a single line
/// without `check`.
#[derive(Serialize, Deserialize)]
struct Slot {
    seq: u64,
    hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<String>,
}

/// Detects a torn slot; not a defence against deliberate edits (whoever can
/// write the head can write the log too).
fn checksum(seq: u64, hash: &str) -> String {
    let digest = digest::digest(&digest::SHA256, format!("{seq}:{hash}").as_bytes());
    hex::encode(&digest.as_ref()[..8])
}

fn encode_slot(head: &Head) -> io::Result<Vec<u8>> {
    let slot = Slot {
        seq: head.seq,
        hash: head.hash.clone(),
        check: Some(checksum(head.seq, &head.hash)),
    };
    let mut bytes = serde_json::to_vec(&slot).map_err(io::Error::other)?;
    if bytes.len() >= SLOT_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "audit head does not fit its slot",
        ));
    }
    bytes.resize(SLOT_LEN - 1, b' ');
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes the head file for one [`AuditLog`](super::AuditLog).
#[derive(Debug)]
pub(super) struct HeadWriter {
    path: PathBuf,
    /// What this writer last stored, if it knows: a later `seq` goes in
    /// place, into slot `seq % 2`, since the other slot then holds an older
    /// head (the last one or the one before it) and a reader takes the
    /// higher whole slot. A group commit's head skips the records its batch
    /// covered, so "later" is not "next": requiring the next seq replaced
    /// the file by a rename (which ext4 flushes) after every batch.
    last: Option<Stored>,
}

/// A head this writer stored, and the file it is in.
#[derive(Debug, Clone, Copy)]
struct Stored {
    seq: u64,
    dev: u64,
    ino: u64,
}

impl HeadWriter {
    pub(super) fn new(path: &Path) -> HeadWriter {
        HeadWriter {
            path: path.to_path_buf(),
            last: None,
        }
    }

    /// Notes that the file holds record `seq`'s head (just read back), so
    /// the next append can go in place.
    pub(super) fn stored(&mut self, seq: u64) {
        self.last = fs::metadata(&self.path).ok().map(|m| Stored {
            seq,
            dev: m.dev(),
            ino: m.ino(),
        });
    }

    /// Records `head`: in place when it is later than the last one stored,
    /// in the same file, otherwise by replacing the file. After a failure
    /// the next call replaces the file.
    pub(super) fn store(&mut self, head: &Head) -> io::Result<()> {
        let previous = self.last.take();
        let in_place = match previous {
            Some(last) if head.seq > last.seq => self.store_in_place(head, last)?,
            _ => None,
        };
        let stored = match in_place {
            Some(stored) => stored,
            None => self.replace(head)?,
        };
        self.last = Some(stored);
        Ok(())
    }

    /// `None` if the file is gone, another file, or not in the two-slot
    /// layout: someone else wrote it, so its other slot cannot be trusted.
    fn store_in_place(&self, head: &Head, last: Stored) -> io::Result<Option<Stored>> {
        let file = match OpenOptions::new().write(true).open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if (meta.dev(), meta.ino(), meta.len()) != (last.dev, last.ino, FILE_LEN) {
            return Ok(None);
        }
        let offset = (head.seq % 2) * SLOT_LEN as u64;
        file.write_all_at(&encode_slot(head)?, offset)?;
        Ok(Some(Stored {
            seq: head.seq,
            ..last
        }))
    }

    /// Replaces the file via a temporary sibling and a rename, `head` in
    /// both slots, so readers see the old file or the new, never a mix.
    fn replace(&self, head: &Head) -> io::Result<Stored> {
        let slot = encode_slot(head)?;
        let both = [slot.as_slice(), slot.as_slice()].concat();
        replace(&self.path, &both, FILE_MODE, Durability::ProcessCrash)?;
        let meta = fs::metadata(&self.path)?;
        Ok(Stored {
            seq: head.seq,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// Reads the head anchor; `None` if there is none yet. An empty file also
/// counts as none: the head is written without fsync, so a crash can leave
/// it empty, and an empty head says no more than a deleted one.
pub fn read_head(head_path: &Path) -> Result<Option<Head>, AuditError> {
    let bytes = match fs::read(head_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    // In the two-slot layout every slot must carry its checksum.
    let slotted = bytes.len() as u64 == FILE_LEN;
    let newest = bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Slot>(line).ok())
        .filter(|slot| match &slot.check {
            Some(check) => *check == checksum(slot.seq, &slot.hash),
            None => !slotted,
        })
        .max_by_key(|slot| slot.seq);
    match newest {
        Some(slot) => Ok(Some(Head {
            seq: slot.seq,
            hash: slot.hash,
        })),
        None => Err(AuditError::Corrupt(format!(
            "the head anchor {} is unreadable",
            head_path.display()
        ))),
    }
}
