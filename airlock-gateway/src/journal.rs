//! The one path by which the gateway's state changes: an event is appended
//! to the audit log (fsync'd), then applied to the state. The state file is
//! only a checkpoint; on start the records after its mark are replayed
//! through the same `apply`, so a crash between the two loses nothing.
//!
//! [`Journal::record_deferred`] is the group-commit form: the record is
//! written and applied under the caller's lock, and the caller waits for its
//! fsync after releasing the lock, before answering anyone (see
//! `airlock_common::audit::GroupCommit`). Until then other callers can see
//! the change (a retried submission gets 409, a status call shows it
//! pending) before it is durable: only artifact submissions take this path,
//! and an enforcer that lost its 202 to a crash resubmits. Everything else
//! ([`Journal::record`]) is synced before it is applied; a decision, a
//! grant, a state file or a countersigned head always follows a sync that
//! covers it, since the log is synced in order.

use std::path::Path;

use airlock_common::audit::{self, AuditError, AuditLog, GroupCommit, Resumed};
use airlock_common::dbus::AirlockError;
use airlock_common::event::Event;
use airlock_common::fsutil::Durability;
use airlock_common::names;

use crate::state::sessions::Sessions;
use crate::state::State;
use crate::store::{Snapshot, Store};

pub struct Journal {
    audit: AuditLog,
    store: Store,
    state: State,
    /// The state holds changes the state file does not.
    dirty: bool,
}

/// What opening found beyond the state file.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Pending requests replayed from the log.
    pub restored: Vec<String>,
    /// Requests the state file had that were decided or expired after it.
    pub settled: Vec<String>,
    /// Grants the state file had that were revoked or expired after it.
    pub ended_grants: Vec<String>,
}

impl Journal {
    /// Opens the audit log (restarting the chain, on the record, if it is
    /// damaged), loads the state file, drops stored grants that do not
    /// verify, and replays the records after the state file's mark.
    pub fn open(
        state_dir: &Path,
        audit_dir: &Path,
        request_ttl_secs: u64,
    ) -> anyhow::Result<(Journal, Recovery)> {
        let log_path = audit_dir.join(names::AUDIT_LOG_FILE);
        let head_path = audit_dir.join(names::AUDIT_HEAD_FILE);
        let audit = match AuditLog::open(&log_path, &head_path) {
            Ok(log) => log,
            Err(AuditError::Corrupt(reason)) => {
                tracing::error!(
                    "audit log {} is damaged ({reason}); continuing with a chain_restarted record, \
                     `airlockctl audit verify` will keep reporting the damage",
                    log_path.display()
                );
                AuditLog::open_after_break(&log_path, &head_path, &reason)?
            }
            Err(e) => return Err(e.into()),
        };
        let store = Store::new(state_dir);
        let (parts, mark) = store.load()?.into_parts()?;
        let (state, rejected) = State::from_parts(parts, request_ttl_secs);
        let mut journal = Journal {
            audit,
            store,
            state,
            dirty: false,
        };
        for reason in rejected {
            tracing::error!("dropping a stored grant that does not verify: {reason}");
            journal.record(
                Event::GrantRejected { reason },
                airlock_common::timefmt::now_unix(),
            )?;
        }

        let (tail, resumed) = audit::records_after(&log_path, mark.as_ref())?;
        if resumed == Resumed::AfterRestart {
            tracing::warn!(
                "the audit record the state file was saved at is no longer in the log; \
                 changes recorded after it and not yet saved cannot be restored"
            );
        }
        let requests_before = journal.state.requests.ids();
        let grants_before = journal.state.grants.ids();
        for record in &tail {
            match Event::from_record(record) {
                Ok(event) => journal.dirty |= journal.state.apply(&event, record.ts),
                Err(e) => tracing::warn!("{e}; not replayed"),
            }
        }
        let requests = &journal.state.requests;
        let recovery = Recovery {
            restored: requests
                .ids()
                .into_iter()
                .filter(|id| !requests_before.contains(id))
                .collect(),
            settled: requests_before
                .into_iter()
                .filter(|id| !requests.contains(id))
                .collect(),
            ended_grants: grants_before
                .into_iter()
                .filter(|id| !journal.state.grants.contains(id))
                .collect(),
        };
        Ok((journal, recovery))
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The newest record's `seq` and `hash`, synced first so that it may
    /// be countersigned; `None` when the sync failed (a head that may not
    /// survive a crash is never countersigned).
    pub fn audit_head(&self) -> Option<audit::Head> {
        match self.audit.group_commit().sync_all_written() {
            Ok(head) => Some(head),
            Err(e) => {
                tracing::error!("cannot sync the audit log: {e}");
                None
            }
        }
    }

    /// The newest record written (synced or not).
    pub fn written_seq(&self) -> u64 {
        self.audit.head().seq
    }

    /// What callers of [`record_deferred`](Self::record_deferred) wait on.
    pub fn group_commit(&self) -> GroupCommit {
        self.audit.group_commit()
    }

    /// Sessions not yet started change without an event (see
    /// `Sessions::create`); the state file still catches up with them.
    pub fn sessions_mut(&mut self) -> &mut Sessions {
        self.dirty = true;
        &mut self.state.sessions
    }

    /// Third-party enforcers' memory-only parts (clear routing tokens until
    /// fetched, heartbeats): they never reach the state file.
    pub fn integrations_mut(&mut self) -> &mut crate::state::integrations::Integrations {
        &mut self.state.integrations
    }

    /// Third-party enforcers' parts that the state file keeps but the audit
    /// log must not (end-to-end keys): marked for the next save.
    pub fn integrations_secret_mut(&mut self) -> &mut crate::state::integrations::Integrations {
        self.dirty = true;
        &mut self.state.integrations
    }

    /// Appends `event` to the audit log, applies it at time `now` and
    /// returns once the record is on disk. If the record cannot be written
    /// nothing changed and the call can be repeated; if it was written but
    /// its sync failed, the change stands in memory, the caller gets an
    /// error and the log refuses further records.
    pub fn record(&mut self, event: Event, now: i64) -> Result<(), AirlockError> {
        // Durable first, then applied: a record whose sync failed changes
        // nothing (no grant lives on in memory without its record).
        let seq = self.write(&event)?;
        if let Err(e) = self.audit.group_commit().wait_durable(seq) {
            return durability_failed(e);
        }
        self.dirty |= self.state.apply(&event, now);
        Ok(())
    }

    /// [`record`](Self::record) without waiting for the fsync: returns the
    /// record's `seq`, which the caller must see durable
    /// ([`GroupCommit::wait_durable`], outside its lock) before it answers.
    pub fn record_deferred(&mut self, event: Event, now: i64) -> Result<u64, AirlockError> {
        let seq = self.write(&event)?;
        self.dirty |= self.state.apply(&event, now);
        Ok(seq)
    }

    /// Writes `event`'s record (not yet synced); its `seq`.
    fn write(&mut self, event: &Event) -> Result<u64, AirlockError> {
        let Some((name, fields)) = event.to_record() else {
            return Err(AirlockError::Internal(
                "an unknown event cannot be recorded".into(),
            ));
        };
        let ids = LoggedIds::of(&fields);
        let record = match self.audit.write(&name, fields) {
            Ok(record) => record,
            Err(e) => {
                tracing::error!("cannot write the audit log: {e}");
                return Err(AirlockError::Internal(format!(
                    "cannot write the audit log: {e}"
                )));
            }
        };
        ids.log(&name);
        Ok(record.seq)
    }

    /// Writes the state file if it lags. A failure loses nothing (the log
    /// holds every change, and start-up replays it), so it is logged and
    /// the next save tries again.
    pub fn save(&mut self, durability: Durability) {
        if !self.dirty {
            return;
        }
        // The state file must not name (or reflect) records a crash could
        // still take from the log.
        let mark = match self.audit.group_commit().sync_all_written() {
            Ok(head) => head,
            Err(e) => {
                tracing::error!("cannot sync the audit log ({e}); not saving the state");
                return;
            }
        };
        let snapshot = Snapshot::new(self.state.parts(), mark);
        match self.store.save(&snapshot, durability) {
            Ok(()) => self.dirty = false,
            Err(e) => tracing::error!(
                "cannot save gateway state ({e}); the audit log holds the changes, saving again later"
            ),
        }
    }
}

/// What a caller of [`Journal::record_deferred`] makes of waiting for its
/// record: a lagging anchor is harmless (the record is synced, so the event
/// stands); a failed sync is an error, and the log refuses further records.
pub fn durability_failed(error: AuditError) -> Result<(), AirlockError> {
    match error {
        AuditError::AnchorLags(_) | AuditError::Anchor { .. } => {
            tracing::error!("{error}");
            Ok(())
        }
        e => {
            tracing::error!("cannot sync the audit log: {e}");
            Err(AirlockError::Internal(format!(
                "cannot sync the audit log: {e}"
            )))
        }
    }
}

/// The ids an audit record carries, logged beside it so that journald can
/// filter on them (`SESSION_ID=`, `REQUEST_ID=`, `GRANT_ID=`; see
/// `airlock_daemon::logging`). Only ids: the record itself stays in the
/// audit log.
struct LoggedIds {
    session: Option<String>,
    request: Option<String>,
    grant: Option<String>,
}

impl LoggedIds {
    fn of(fields: &serde_json::Map<String, serde_json::Value>) -> LoggedIds {
        let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        LoggedIds {
            session: text("session"),
            request: text("request_id"),
            grant: text("grant_id"),
        }
    }

    fn log(&self, event: &str) {
        tracing::info!(
            event,
            session_id = self.session.as_deref(),
            request_id = self.request.as_deref(),
            grant_id = self.grant.as_deref(),
            "audit: {event}"
        );
    }
}
