//! Group commit: one fsync makes every record written before it durable.
//!
//! Writers append their lines (under the caller's own lock, so the chain's
//! order is the file's order) without syncing, then wait for their `seq` to
//! be durable. The first waiter that finds no sync under way becomes the
//! leader: it syncs everything written so far, outside any writer's lock,
//! while the next writers append the following batch; the others sleep until
//! a sync covers them. Nobody is answered before the fsync covering its own
//! record returned, so a crash loses nothing that was acknowledged.
//!
//! The head anchor is written by the leader only after its sync, so it can
//! lag the durable log after a crash but never lead it.

use std::fs::File;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::head::HeadWriter;
use super::{AuditError, Head};

/// Shared between the log (which writes) and whoever waits for durability
/// (possibly on other threads, without the log's lock).
#[derive(Debug, Clone)]
pub struct GroupCommit {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// A duplicate of the log's descriptor: fsync applies to the file.
    file: File,
    progress: Mutex<Progress>,
    synced: Condvar,
}

#[derive(Debug)]
struct Progress {
    /// The newest record written to the file (perhaps not yet durable).
    written: Head,
    /// Records up to this `seq` are durable.
    durable: u64,
    /// A leader is syncing now.
    syncing: bool,
    /// Syncs done, to show batching (tests, benchmarks).
    syncs: u64,
    /// A sync failed: the records after `durable` may be lost, and nothing
    /// further is acknowledged (reopening the log re-checks the file).
    failed: Option<String>,
    head_file: HeadWriter,
}

impl GroupCommit {
    pub(super) fn new(file: File, written: Head, head_file: HeadWriter) -> GroupCommit {
        GroupCommit {
            shared: Arc::new(Shared {
                file,
                progress: Mutex::new(Progress {
                    durable: written.seq,
                    written,
                    syncing: false,
                    syncs: 0,
                    failed: None,
                    head_file,
                }),
                synced: Condvar::new(),
            }),
        }
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        // A panic elsewhere while holding it leaves only counters behind.
        self.shared
            .progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that `head`'s record is in the file (not yet synced).
    pub(super) fn written(&self, head: &Head) -> Result<(), AuditError> {
        let mut progress = self.progress();
        if let Some(failed) = &progress.failed {
            return Err(sync_failed(failed));
        }
        progress.written.clone_from(head);
        Ok(())
    }

    /// Whether a sync failed (the log then refuses further records).
    pub(super) fn has_failed(&self) -> bool {
        self.progress().failed.is_some()
    }

    /// How many fsyncs this log has done for its records.
    pub fn syncs(&self) -> u64 {
        self.progress().syncs
    }

    /// The newest durable `seq`.
    pub fn durable_seq(&self) -> u64 {
        self.progress().durable
    }

    /// Returns once record `seq` (and so every record before it) is durable,
    /// syncing the file itself if no other caller is. Blocks; from async
    /// code run it where blocking is allowed (`spawn_blocking`).
    ///
    /// [`AuditError::AnchorLags`] means the records are durable but this
    /// caller, as the leader, could not update the head anchor.
    pub fn wait_durable(&self, seq: u64) -> Result<(), AuditError> {
        let mut progress = self.progress();
        loop {
            if progress.durable >= seq {
                return Ok(());
            }
            if let Some(failed) = &progress.failed {
                return Err(sync_failed(failed));
            }
            if progress.syncing {
                progress = self
                    .shared
                    .synced
                    .wait(progress)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            // Lead: sync everything written so far, without the lock, so
            // writers keep appending the next batch meanwhile.
            progress.syncing = true;
            let target = progress.written.clone();
            drop(progress);
            let synced = self.shared.file.sync_data();
            progress = self.progress();
            progress.syncing = false;
            progress.syncs += 1;
            let anchored = match synced {
                Ok(()) => {
                    progress.durable = progress.durable.max(target.seq);
                    progress.head_file.store(&target)
                }
                Err(e) => {
                    progress.failed = Some(e.to_string());
                    Ok(())
                }
            };
            self.shared.synced.notify_all();
            if let Err(error) = anchored {
                if progress.durable >= seq {
                    return Err(AuditError::AnchorLags(error));
                }
            }
        }
    }

    /// The head the file holds up to its newest durable record: what may
    /// be countersigned or named by a state file.
    pub fn sync_all_written(&self) -> Result<Head, AuditError> {
        let written = self.progress().written.clone();
        match self.wait_durable(written.seq) {
            Ok(()) | Err(AuditError::AnchorLags(_)) => Ok(written),
            Err(e) => Err(e),
        }
    }

    /// Notes that the head file already holds `seq`'s head (read back on
    /// open), so the next store can go in place.
    pub(super) fn head_stored(&self, seq: u64) {
        self.progress().head_file.stored(seq);
    }

    /// Stores `head` in the head file now (catching a lagging anchor up on
    /// open; the records are durable already).
    pub(super) fn store_head(&self, head: &Head) -> io::Result<()> {
        self.progress().head_file.store(head)
    }
}

fn sync_failed(message: &str) -> AuditError {
    AuditError::Io(io::Error::other(format!(
        "syncing the audit log failed ({message}); reopen the log to re-check it"
    )))
}
