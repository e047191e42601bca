//! Governed sessions: created `ready` when asked for, `running` once the
//! enforcer took them (`session_started`), then `exited` or `revoked`.

use std::collections::BTreeMap;

use airlock_common::dbus::SessionRecord;
use airlock_common::enforcement::EnforcementMode;
use airlock_common::event::Event;
use airlock_common::policy::protect::ProtectPattern;
use airlock_common::session::SessionState;
use serde::{Deserialize, Serialize};

/// Most ended sessions kept for `airlockctl sessions`.
const KEEP_ENDED: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    /// Small number naming the session in kernel maps; unique among live
    /// sessions.
    pub index: u32,
    pub role: String,
    pub uid: u32,
    /// Governs every process of `uid`, not one process tree.
    #[serde(default)]
    pub bound_uid: bool,
    pub state: SessionState,
    pub created_at: i64,
    #[serde(default)]
    pub ended_at: i64,
    #[serde(default)]
    pub search_path: Vec<String>,
    /// The enforcement mode when it started.
    #[serde(default, deserialize_with = "EnforcementMode::deserialize_lenient")]
    pub enforcement: EnforcementMode,
    /// What `session-init` masks: the role's list when the session was
    /// created (a later reload cannot change a running session's mounts).
    #[serde(default)]
    pub protect: Vec<ProtectPattern>,
}

impl Session {
    /// How `airlockctl sessions` shows it.
    pub fn record(&self) -> SessionRecord {
        SessionRecord {
            id: self.id.clone(),
            role: self.role.clone(),
            uid: self.uid,
            bound_uid: self.bound_uid,
            state: self.state,
            created_at: self.created_at,
            ended_at: (self.ended_at > 0).then_some(self.ended_at).into(),
            enforcement: self.enforcement,
            protect: self.protect.clone(),
        }
    }
}

/// What a new session is made of.
pub struct NewSession {
    pub role: String,
    pub uid: u32,
    pub bound_uid: bool,
    pub search_path: Vec<String>,
    pub protect: Vec<ProtectPattern>,
}

#[derive(Debug, Default)]
pub struct Sessions {
    by_id: BTreeMap<String, Session>,
    next_index: u32,
}

impl Sessions {
    pub fn from_snapshot(sessions: Vec<Session>, next_index: u32) -> Sessions {
        Sessions {
            by_id: sessions.into_iter().map(|s| (s.id.clone(), s)).collect(),
            next_index,
        }
    }

    pub fn snapshot(&self) -> (Vec<Session>, u32) {
        (self.by_id.values().cloned().collect(), self.next_index)
    }

    pub fn get(&self, id: &str) -> Option<&Session> {
        self.by_id.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.by_id.values()
    }

    pub fn live(&self) -> impl Iterator<Item = &Session> {
        self.iter().filter(|s| s.state.is_live())
    }

    /// The live session that binds `uid`, if any.
    pub fn binding_of(&self, uid: u32) -> Option<&Session> {
        self.live().find(|s| s.bound_uid && s.uid == uid)
    }

    /// Adds a new session in state `ready`. Not an event: until the
    /// enforcer takes it, nothing is enforced and nothing need survive.
    pub fn create(&mut self, id: String, new: NewSession, now: i64) -> Session {
        let session = Session {
            id,
            index: self.allocate_index(),
            role: new.role,
            uid: new.uid,
            bound_uid: new.bound_uid,
            state: SessionState::Ready,
            created_at: now,
            ended_at: 0,
            search_path: new.search_path,
            enforcement: EnforcementMode::Unknown,
            protect: new.protect,
        };
        self.by_id.insert(session.id.clone(), session.clone());
        session
    }

    fn allocate_index(&mut self) -> u32 {
        loop {
            self.next_index = self.next_index.wrapping_add(1).max(1);
            let index = self.next_index;
            if !self.live().any(|s| s.index == index) {
                return index;
            }
        }
    }

    /// A revoked session's processes have now gone: it stays revoked, and
    /// ended when they did. Returns whether anything changed.
    pub fn note_gone(&mut self, id: &str, now: i64) -> bool {
        match self.by_id.get_mut(id) {
            Some(s) if s.state == SessionState::Revoked && s.ended_at < now => {
                s.ended_at = now;
                true
            }
            _ => false,
        }
    }

    /// Applies a recorded event at time `ts`. Returns whether anything
    /// changed.
    pub fn apply(&mut self, event: &Event, ts: i64) -> bool {
        match event {
            Event::SessionStarted {
                session,
                role,
                uid,
                bound_uid,
                enforcement,
                index,
                search_path,
            } => match self.by_id.get_mut(session) {
                Some(s) if s.state == SessionState::Ready => {
                    s.state = SessionState::Running;
                    s.enforcement = *enforcement;
                    true
                }
                Some(_) => false,
                // Replaying a start the state file missed: the record has
                // what the kernel needs (older records do not).
                None => {
                    let Some(index) = *index else {
                        return false;
                    };
                    self.next_index = self.next_index.max(index);
                    self.by_id.insert(
                        session.clone(),
                        Session {
                            id: session.clone(),
                            index,
                            role: role.clone(),
                            uid: *uid,
                            bound_uid: *bound_uid,
                            state: SessionState::Running,
                            created_at: ts,
                            ended_at: 0,
                            search_path: search_path.clone(),
                            enforcement: *enforcement,
                            // Masked by then; only `airlockctl sessions`
                            // would show it.
                            protect: Vec::new(),
                        },
                    );
                    true
                }
            },
            Event::SessionSupervised { session } => match self.by_id.get_mut(session) {
                Some(s) if s.state.is_live() && s.enforcement == EnforcementMode::Degraded => {
                    s.enforcement = EnforcementMode::Supervised;
                    true
                }
                _ => false,
            },
            Event::SessionStartFailed { session, .. } => self.by_id.remove(session).is_some(),
            Event::SessionExited { session, .. } => self.end(session, SessionState::Exited, ts),
            Event::SessionRevoked { session, .. } => self.end(session, SessionState::Revoked, ts),
            _ => false,
        }
    }

    fn end(&mut self, id: &str, state: SessionState, ts: i64) -> bool {
        let Some(session) = self.by_id.get_mut(id) else {
            return false;
        };
        if !session.state.is_live() {
            return false;
        }
        session.state = state;
        session.ended_at = ts;
        self.trim_ended();
        true
    }

    fn trim_ended(&mut self) {
        let mut ended: Vec<(i64, String)> = self
            .iter()
            .filter(|s| !s.state.is_live())
            .map(|s| (s.ended_at, s.id.clone()))
            .collect();
        if ended.len() > KEEP_ENDED {
            ended.sort();
            for (_, id) in &ended[..ended.len() - KEEP_ENDED] {
                self.by_id.remove(id);
            }
        }
    }
}
