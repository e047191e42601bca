//! Asking airlock-totp to countersign the audit chain head, and keeping
//! its signature in the log (an `audit_countersigned` record).
//!
//! Whoever holds the gateway user can rewrite the log and recompute every
//! hash; it cannot forge airlock-totp's signature over a head, nor make
//! airlock-totp sign a different history below the last head it signed.
//! So only records after the latest countersignature are at risk, and this
//! keeps that window short: a countersignature once [`EVERY_RECORDS`] have
//! accumulated, and at most [`MAX_DELAY`] after any record.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_common::dbus::{AirlockError, Totp1Proxy};
use airlock_common::event::Event;
use airlock_common::timefmt::now_unix;

use crate::core::Core;

/// Records after which the head is countersigned without waiting.
pub const EVERY_RECORDS: u64 = 32;
/// The longest a record waits for a countersignature.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// What the gateway last had countersigned.
#[derive(Debug)]
pub struct Countersigner {
    /// The head airlock-totp last signed.
    signed_seq: u64,
    /// The `audit_countersigned` record holding that signature: a head
    /// that moved no further than it needs no new signature.
    record_seq: u64,
    last_attempt: Option<Instant>,
    /// airlock-totp refused or did not answer last time (logged once).
    failing: bool,
}

impl Default for Countersigner {
    fn default() -> Self {
        Countersigner::new()
    }
}

impl Countersigner {
    pub fn new() -> Countersigner {
        Countersigner {
            signed_seq: 0,
            record_seq: 0,
            last_attempt: None,
            failing: false,
        }
    }

    /// Called on every tick: countersigns the head if it is due.
    pub async fn tick(&mut self, core: &Arc<Mutex<Core>>, totp: &Totp1Proxy<'static>) {
        let Some(head) = core.lock().unwrap_or_else(|p| p.into_inner()).audit_head() else {
            return;
        };
        if head.seq <= self.record_seq.max(self.signed_seq) {
            return;
        }
        let waited = self.last_attempt.is_none_or(|at| at.elapsed() >= MAX_DELAY);
        if head.seq - self.signed_seq < EVERY_RECORDS && !waited {
            return;
        }
        self.last_attempt = Some(Instant::now());
        let signed = match totp.countersign_head(head.seq, &head.hash).await {
            Ok(signed) => signed,
            Err(e) => {
                let error = AirlockError::from_remote(e);
                if !self.failing {
                    tracing::error!(
                        "airlock-totp did not countersign the audit log head (record {}): {}",
                        head.seq,
                        error.message()
                    );
                }
                self.failing = true;
                return;
            }
        };
        self.failing = false;
        let mut core = core.lock().unwrap_or_else(|p| p.into_inner());
        let recorded = core.record(
            Event::AuditCountersigned {
                head_seq: signed.seq,
                head_hash: signed.hash,
                prev_head_seq: signed.prev_seq,
                prev_head_hash: signed.prev_hash,
                signature: signed.signature,
            },
            now_unix(),
        );
        match recorded {
            Ok(()) => {
                self.signed_seq = head.seq;
                // The countersignature's own record, so that it does not
                // count as news on the next tick.
                self.record_seq = core.audit_head().map_or(head.seq + 1, |h| h.seq);
            }
            Err(e) => tracing::error!("cannot record the countersignature: {}", e.message()),
        }
    }
}
