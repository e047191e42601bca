//! Folding repeated kernel events.
//!
//! An agent looping on a refused command (or a runaway script) makes the
//! kernel report the same refusal thousands of times. Each audit record is
//! fsynced, so recording every one would make the gateway spend its time on
//! the disk and the log grow without bound. Instead the first occurrence
//! is recorded in full at once, as any event is, and its repeats (same
//! session, event, executable, arguments, rule and peer; only the task
//! differs) are counted and written as one `kernel_repeated` record per
//! second at most, carrying the count and the first and last times. Every
//! event is accounted for: the records in full plus the counts are all of
//! them. What a crash can lose is the count of the last second's repeats,
//! never an event of a kind not recorded just before.

use std::collections::HashMap;

use airlock_common::event::{Event, KernelEvent, RepeatedEvent};

/// A fold with no repeats for this long is closed: the next occurrence is
/// recorded in full again.
pub const IDLE_SECS: i64 = 10;
/// Open folds at most (sessions times distinct repeating events); beyond
/// it an event is recorded in full, as without folding.
pub const MAX_FOLDS: usize = 1024;

/// What makes two kernel events repeats of each other: all but the task.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FoldKey {
    name: String,
    session: String,
    stage: String,
    outcome: String,
    uid: u32,
    executable: String,
    argv: Vec<String>,
    rule: Option<String>,
    policy: Option<String>,
    source: Option<String>,
    peer: Option<String>,
}

impl FoldKey {
    fn of(name: &str, e: &KernelEvent) -> FoldKey {
        FoldKey {
            name: name.to_owned(),
            session: e.session.clone(),
            stage: e.stage.as_str().to_owned(),
            outcome: e.outcome.as_str().to_owned(),
            uid: e.uid,
            executable: e.executable.clone(),
            argv: e.argv.clone(),
            rule: e.rule.clone(),
            policy: e.policy.clone(),
            source: e.source.clone(),
            peer: e.peer.clone(),
        }
    }
}

struct Fold {
    /// Repeats counted since the last record.
    count: u64,
    first_at: i64,
    last_at: i64,
    last: Option<KernelEvent>,
    /// The last time this event happened, counted or recorded.
    seen_at: i64,
}

/// What to do with an event offered to [`Folds::offer`].
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Record it in full.
    Record,
    /// Counted as a repeat; [`Folds::due`] will record it.
    Folded,
}

#[derive(Default)]
pub struct Folds {
    open: HashMap<FoldKey, Fold>,
}

impl Folds {
    /// Offers kernel event `event` (any other kind is always recorded).
    pub fn offer(&mut self, event: &Event, now: i64) -> Offer {
        let Some(kernel) = event.kernel_event() else {
            return Offer::Record;
        };
        let Some((name, _)) = event.to_record() else {
            return Offer::Record;
        };
        let key = FoldKey::of(&name, kernel);
        if let Some(fold) = self.open.get_mut(&key) {
            if now - fold.seen_at < IDLE_SECS {
                if fold.count == 0 {
                    fold.first_at = now;
                }
                fold.count += 1;
                fold.last_at = now;
                fold.seen_at = now;
                fold.last = Some(kernel.clone());
                return Offer::Folded;
            }
        }
        if self.open.len() < MAX_FOLDS || self.open.contains_key(&key) {
            // A fold idle past IDLE_SECS has no count left (`due` wrote it).
            self.open.insert(
                key,
                Fold {
                    count: 0,
                    first_at: now,
                    last_at: now,
                    last: None,
                    seen_at: now,
                },
            );
        }
        Offer::Record
    }

    /// The counted repeats to record now: every fold with a count (at most
    /// one record per fold per call: the gateway calls it every second).
    /// Closes folds idle for [`IDLE_SECS`].
    pub fn due(&mut self, now: i64) -> Vec<Event> {
        let mut records = Vec::new();
        self.open.retain(|key, fold| {
            if let Some(last) = fold.last.take().filter(|_| fold.count > 0) {
                records.push(Event::KernelRepeated(RepeatedEvent {
                    of: key.name.clone(),
                    count: fold.count,
                    first_at: fold.first_at,
                    last_at: fold.last_at,
                    last,
                }));
                fold.count = 0;
            }
            now - fold.seen_at < IDLE_SECS
        });
        records.sort_by_key(|r| match r {
            Event::KernelRepeated(r) => r.first_at,
            _ => 0,
        });
        records
    }

    /// Every count still open, for shutdown.
    pub fn drain(&mut self) -> Vec<Event> {
        let records = self.due(i64::MAX / 2);
        self.open.clear();
        records
    }
}

#[cfg(test)]
mod tests {
    use airlock_common::enforcement::{Outcome, Stage};

    use super::*;

    fn blocked(pid: u32, argv: &[&str]) -> Event {
        Event::ExecBlocked(KernelEvent {
            session: "ses-1".into(),
            stage: Stage::ExecCheck,
            outcome: Outcome::Refused,
            pid,
            ppid: 1,
            uid: 1000,
            executable: "terraform".into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            comm: "terraform".into(),
            rule: Some("terraform apply".into()),
            policy: Some("infra".into()),
            source: Some("infra.toml:3".into()),
            peer: None,
        })
    }

    fn counts(records: &[Event]) -> Vec<(String, u64)> {
        records
            .iter()
            .map(|r| match r {
                Event::KernelRepeated(r) => (r.last.argv.join(" "), r.count),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_first_is_recorded_and_its_repeats_are_counted_once_a_second() {
        let mut folds = Folds::default();
        let apply = ["terraform", "apply"];
        assert_eq!(folds.offer(&blocked(10, &apply), 100), Offer::Record);
        for pid in 11..=1010 {
            assert_eq!(folds.offer(&blocked(pid, &apply), 100), Offer::Folded);
        }
        // Another command is its own event, recorded in full.
        let destroy = ["terraform", "destroy"];
        assert_eq!(folds.offer(&blocked(2000, &destroy), 100), Offer::Record);
        assert_eq!(counts(&folds.due(101)), [("terraform apply".into(), 1000)]);
        // Nothing new: nothing to record, and the fold stays open.
        assert!(folds.due(102).is_empty());
        assert_eq!(folds.offer(&blocked(3000, &apply), 103), Offer::Folded);
        let due = folds.due(104);
        let Event::KernelRepeated(r) = &due[0] else {
            panic!("{due:?}")
        };
        assert_eq!(
            (r.count, r.first_at, r.last_at, r.last.pid),
            (1, 103, 103, 3000)
        );
        // Idle past IDLE_SECS: closed, so the next one is recorded in full.
        assert!(folds.due(103 + IDLE_SECS).is_empty());
        assert_eq!(folds.offer(&blocked(4000, &apply), 200), Offer::Record);
    }

    #[test]
    fn no_repeat_is_lost_at_shutdown_and_other_events_are_never_folded() {
        let mut folds = Folds::default();
        let apply = ["terraform", "apply"];
        folds.offer(&blocked(1, &apply), 5);
        folds.offer(&blocked(2, &apply), 5);
        folds.offer(&blocked(3, &apply), 6);
        assert_eq!(counts(&folds.drain()), [("terraform apply".into(), 2)]);
        let other = Event::PolicyReloaded {
            message: "x".into(),
        };
        assert_eq!(folds.offer(&other, 5), Offer::Record);
        assert_eq!(folds.offer(&other, 5), Offer::Record);
    }

    #[test]
    fn a_folded_record_reads_back_as_written() {
        let mut folds = Folds::default();
        folds.offer(&blocked(1, &["terraform", "apply"]), 5);
        folds.offer(&blocked(2, &["terraform", "apply"]), 6);
        let record = folds.drain().remove(0);
        let (name, fields) = record.to_record().unwrap();
        assert_eq!(name, "kernel_repeated");
        assert_eq!(fields["of"], "exec_blocked");
        assert_eq!(fields["count"], 1);
        assert_eq!(fields["argv"], serde_json::json!(["terraform", "apply"]));
        let read = airlock_common::audit::Record {
            seq: 1,
            ts: 6,
            event: name,
            fields,
            prev: String::new(),
            hash: String::new(),
            line: 1,
            raw: String::new(),
        };
        assert_eq!(Event::from_record(&read).unwrap(), record);
    }
}
