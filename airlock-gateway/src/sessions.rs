//! Governed sessions: the registry the gateway owns, and the specs it hands
//! to the enforcer (the role's rules and the session's live command grants).

use airlock_common::dbus::{
    AirlockError, EnforcementEvent, EnforcerStatus, GrantSpec, RuleSpec, SessionRecord, SessionSpec,
};
use airlock_common::enforcement::{EnforcementMode, EventKind};
use airlock_common::grant::Scope;
use airlock_common::ids;
use airlock_common::policy::Action;
use airlock_common::session::SessionState;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use crate::core::Core;

/// Most ended sessions kept for `airlockctl sessions`.
const KEEP_ENDED: usize = 100;
/// Most directories of an agent's PATH the enforcer searches.
const MAX_SEARCH_PATH: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub index: u32,
    pub role: String,
    pub uid: u32,
    #[serde(default)]
    pub bound_uid: bool,
    pub state: SessionState,
    pub created_at: i64,
    #[serde(default)]
    pub ended_at: i64,
    #[serde(default)]
    pub search_path: Vec<String>,
    /// The enforcement mode when it started; `unknown` before that.
    #[serde(default, deserialize_with = "enforcement_or_unknown")]
    pub enforcement: EnforcementMode,
}

/// Reads a session's enforcement mode; state files written before the mode
/// was typed hold "" for a session that had not started.
fn enforcement_or_unknown<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<EnforcementMode, D::Error> {
    let word = String::deserialize(deserializer)?;
    if word.is_empty() {
        return Ok(EnforcementMode::Unknown);
    }
    EnforcementMode::deserialize(serde::de::value::StringDeserializer::<D::Error>::new(word))
}

impl Session {
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
        }
    }
}

fn not_found(id: &str) -> AirlockError {
    AirlockError::NotFound(format!("no session {id}"))
}

impl Core {
    pub fn session(&self, id: &str) -> Result<&Session, AirlockError> {
        if !ids::is_well_formed(id) {
            return Err(AirlockError::InvalidArgument("malformed session id".into()));
        }
        self.sessions.get(id).ok_or_else(|| not_found(id))
    }

    /// Refuses (`Conflict`) a session that already ended.
    pub fn check_live_session(&self, id: &str) -> Result<(), AirlockError> {
        let session = self.session(id)?;
        if session.state.is_live() {
            Ok(())
        } else {
            Err(AirlockError::Conflict(format!(
                "session {id} already ended ({})",
                session.state.as_str()
            )))
        }
    }

    /// Sessions `uid` may see: all for admins, their own otherwise.
    pub fn list_sessions(&self, uid: u32, admin: bool) -> Vec<SessionRecord> {
        self.sessions
            .values()
            .filter(|s| admin || s.uid == uid)
            .map(Session::record)
            .collect()
    }

    /// Live sessions, for a full sync with the enforcer.
    pub fn live_sessions(&self) -> Vec<&Session> {
        self.sessions
            .values()
            .filter(|s| s.state.is_live())
            .collect()
    }

    /// Registers a new session in state `ready`.
    pub fn create_session(
        &mut self,
        uid: u32,
        role: Option<&str>,
        bound_uid: bool,
        search_path: Vec<String>,
        now: i64,
    ) -> Result<Session, AirlockError> {
        let role = role.map_or_else(|| self.default_role.clone(), str::to_owned);
        if self.policy.set.role(&role).is_none() {
            return Err(AirlockError::NotFound(format!(
                "unknown role {role:?}; `airlockctl policy validate` lists the roles in force"
            )));
        }
        if bound_uid {
            if let Some(other) = self
                .sessions
                .values()
                .find(|s| s.bound_uid && s.uid == uid && s.state.is_live())
            {
                return Err(AirlockError::Conflict(format!(
                    "uid {uid} is already bound to session {}",
                    other.id
                )));
            }
        }
        let search_path: Vec<String> = search_path
            .into_iter()
            .filter(|d| d.starts_with('/') && d.len() < 4096 && !d.contains('\0'))
            .take(MAX_SEARCH_PATH)
            .collect();
        let index = self.allocate_index();
        let session = Session {
            id: ids::new_id("ses"),
            index,
            role,
            uid,
            bound_uid,
            state: SessionState::Ready,
            created_at: now,
            ended_at: 0,
            search_path,
            enforcement: EnforcementMode::Unknown,
        };
        self.sessions.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    fn allocate_index(&mut self) -> u32 {
        loop {
            self.next_session_index = self.next_session_index.wrapping_add(1).max(1);
            let index = self.next_session_index;
            if !self
                .sessions
                .values()
                .any(|s| s.index == index && s.state.is_live())
            {
                return index;
            }
        }
    }

    /// The enforcer took the session: audit and persist.
    pub fn session_started(
        &mut self,
        id: &str,
        enforcement: EnforcementMode,
    ) -> Result<Session, AirlockError> {
        let session = self.sessions.get(id).ok_or_else(|| not_found(id))?;
        if session.state != SessionState::Ready {
            // It ended (exited, revoked) while the enforcer was taking it:
            // it stays ended.
            return Ok(session.clone());
        }
        let mut session = session.clone();
        session.state = SessionState::Running;
        session.enforcement = enforcement;
        self.audit_event(
            "session_started",
            json!({
                "service": "gateway",
                "session": session.id,
                "role": session.role,
                "uid": session.uid,
                "bound_uid": session.bound_uid,
                "enforcement": enforcement,
            }),
        )?;
        self.sessions.insert(session.id.clone(), session.clone());
        self.persist_sessions()?;
        Ok(session)
    }

    /// The enforcer could not take the session: forget it.
    pub fn session_failed(&mut self, id: &str, error: &AirlockError) -> Result<(), AirlockError> {
        self.sessions.remove(id);
        self.audit_event(
            "session_start_failed",
            json!({"service": "gateway", "session": id, "error": error.message()}),
        )
    }

    /// Ends a session: `revoked` by someone, or `exited` by itself.
    pub fn end_session(
        &mut self,
        id: &str,
        state: SessionState,
        by_uid: Option<u32>,
        now: i64,
    ) -> Result<(), AirlockError> {
        let session = self.sessions.get_mut(id).ok_or_else(|| not_found(id))?;
        match (session.state, state) {
            // A revoked session's processes have now gone; it stays revoked.
            (SessionState::Revoked, SessionState::Exited) => {
                session.ended_at = session.ended_at.max(now);
                return self.persist_sessions();
            }
            // Already recorded: a second report changes nothing.
            (SessionState::Exited, SessionState::Exited) => return Ok(()),
            _ => self.check_live_session(id)?,
        }
        let event = match state {
            SessionState::Revoked => "session_revoked",
            _ => "session_exited",
        };
        // Recorded first: if the record cannot be written, nothing changed
        // and the call can be repeated.
        self.audit_event(
            event,
            json!({"service": "gateway", "session": id, "by_uid": by_uid}),
        )?;
        let session = self.sessions.get_mut(id).ok_or_else(|| not_found(id))?;
        session.state = state;
        session.ended_at = now;
        self.trim_ended();
        self.persist_sessions()
    }

    fn trim_ended(&mut self) {
        let mut ended: Vec<(i64, String)> = self
            .sessions
            .values()
            .filter(|s| !s.state.is_live())
            .map(|s| (s.ended_at, s.id.clone()))
            .collect();
        if ended.len() > KEEP_ENDED {
            ended.sort();
            for (_, id) in &ended[..ended.len() - KEEP_ENDED] {
                self.sessions.remove(id);
            }
        }
    }

    /// What the enforcer needs to govern `session`: the role's rules as in
    /// force now, and the session's live command grants.
    pub fn session_spec(&self, session: &Session, now: i64) -> SessionSpec {
        let set = &self.policy.set;
        let rules = set
            .effective_rules(&session.role)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(index, rule)| RuleSpec {
                index: index as u32,
                action: rule.action,
                command: rule.command.clone(),
                policy: rule.policy_id.clone(),
                source: rule.source.to_string(),
                reason: rule.reason.clone().unwrap_or_default(),
            })
            .collect();
        // A role that vanished in a reload blocks everything: fail closed.
        let default_action = set
            .role(&session.role)
            .map_or(Action::Block, |r| r.default_action);
        let grants = self
            .grants_of_session(&session.id, now)
            .into_iter()
            .filter_map(|body| {
                let command = match &body.scope {
                    Scope::Command { command } => command.clone(),
                    Scope::Services { .. } => return None,
                };
                Some(GrantSpec {
                    id: body.grant_id.clone(),
                    command,
                    expires_at: body.expires_at,
                })
            })
            .collect();
        SessionSpec {
            id: session.id.clone(),
            index: session.index,
            role: session.role.clone(),
            uid: session.uid,
            bound_uid: session.bound_uid,
            default_action,
            rules,
            grants,
            search_path: session.search_path.clone(),
            revoked: session.state == SessionState::Revoked,
        }
    }

    /// Specs of every live session, for a sync or after a policy reload.
    pub fn live_specs(&self, now: i64) -> Vec<SessionSpec> {
        self.live_sessions()
            .into_iter()
            .map(|s| self.session_spec(s, now))
            .collect()
    }
}

/// A request filed (or found pending) for a command the kernel refused.
pub struct Filed {
    pub id: String,
    pub scope: String,
    pub reason: String,
    pub uid: u32,
    /// False when an identical pending request was reused.
    pub fresh: bool,
}

/// The audit event recording a kernel event of `kind`.
fn event_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Blocked => "exec_blocked",
        EventKind::ApprovalRequired => "exec_approval_required",
        EventKind::GrantUsed => "exec_granted",
        EventKind::SessionRevoked => "exec_session_revoked",
        EventKind::MmapDenied => "exec_mmap_denied",
        EventKind::CgroupWriteDenied => "cgroup_write_denied",
    }
}

impl Core {
    /// Audits a kernel event; for `approval_required`, files a request for
    /// the session (or reuses its pending one for the same command).
    pub fn record_enforcement(
        &mut self,
        event: &EnforcementEvent,
        now: i64,
    ) -> Result<Option<Filed>, AirlockError> {
        let name = event_name(event.kind);
        if event.argv.len() > 64 || event.argv.iter().any(|a| a.len() > 256) {
            return Err(AirlockError::InvalidArgument(
                "event argv is too large".into(),
            ));
        }
        let session = self.sessions.get(&event.session).cloned();
        let rule = session.as_ref().zip(*event.rule).and_then(|(s, index)| {
            self.policy
                .set
                .effective_rules(&s.role)
                .ok()?
                .get(index as usize)
                .map(|r| (r.command.clone(), r.policy_id.clone(), r.source.to_string()))
        });
        self.audit_event(
            name,
            json!({
                "service": "enforcer",
                "session": event.session,
                "stage": event.stage,
                "outcome": event.outcome,
                "pid": event.pid,
                "ppid": event.ppid,
                "uid": event.uid,
                "executable": event.executable,
                "argv": event.argv,
                "comm": event.comm,
                "rule": rule.as_ref().map(|r| &r.0),
                "policy": rule.as_ref().map(|r| &r.1),
                "source": rule.as_ref().map(|r| &r.2),
            }),
        )?;
        let (Some(session), EventKind::ApprovalRequired) = (session, event.kind) else {
            return Ok(None);
        };
        let command = rule.map(|r| r.0).unwrap_or_else(|| event.argv.join(" "));
        let Ok(scope) = Scope::parse(&format!("command:{command}")) else {
            return Ok(None);
        };
        let scope = scope.to_string();
        if let Some(id) = self.pending_request_for(&session.id, &scope) {
            return Ok(Some(Filed {
                id,
                scope,
                reason: String::new(),
                uid: session.uid,
                fresh: false,
            }));
        }
        let reason = format!(
            "the agent ran `{}` in session {} and the kernel refused it pending approval",
            event.argv.join(" ").chars().take(200).collect::<String>(),
            session.id
        );
        let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
        let new = self.request_approval(
            session.uid,
            Some(session.id.clone()),
            &scope,
            &reason,
            0,
            now,
        )?;
        Ok(Some(Filed {
            id: new.id,
            scope: new.scope,
            reason: new.reason,
            uid: new.uid,
            fresh: true,
        }))
    }

    /// Audits the enforcement mode when it is first seen or changes.
    pub fn note_enforcement_mode(&mut self, status: &EnforcerStatus) {
        if self.enforcement_mode == Some(status.mode) {
            return;
        }
        self.enforcement_mode = Some(status.mode);
        let _ = self.audit_event(
            "enforcement_mode",
            json!({"service": "enforcer", "mode": status.mode, "detail": status.detail, "fix": status.fix}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(dir: &std::path::Path) -> Core {
        let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let times = airlock_common::config::Config::parse("")
            .unwrap()
            .gateway
            .times()
            .unwrap();
        Core::open(&policies, dir, dir, times, 32, "default").unwrap()
    }

    fn audited(dir: &std::path::Path, event: &str) -> usize {
        std::fs::read_to_string(dir.join(airlock_common::names::AUDIT_LOG_FILE))
            .unwrap()
            .matches(&format!("\"event\":\"{event}\""))
            .count()
    }

    #[test]
    fn a_session_ends_once_and_a_revoked_one_stays_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let mut core = core(dir.path());
        let a = core
            .create_session(1000, None, false, Vec::new(), 1)
            .unwrap();
        core.session_started(&a.id, EnforcementMode::Lsm).unwrap();
        core.end_session(&a.id, SessionState::Exited, None, 5)
            .unwrap();
        core.end_session(&a.id, SessionState::Exited, None, 6)
            .unwrap();
        assert_eq!(audited(dir.path(), "session_exited"), 1);
        assert!(matches!(
            core.end_session(&a.id, SessionState::Revoked, Some(0), 7),
            Err(AirlockError::Conflict(_))
        ));

        let b = core
            .create_session(1000, None, false, Vec::new(), 1)
            .unwrap();
        core.session_started(&b.id, EnforcementMode::Lsm).unwrap();
        core.end_session(&b.id, SessionState::Revoked, Some(0), 8)
            .unwrap();
        core.end_session(&b.id, SessionState::Exited, None, 9)
            .unwrap();
        assert_eq!(core.session(&b.id).unwrap().state, SessionState::Revoked);
        assert_eq!(core.session(&b.id).unwrap().ended_at, 9);
        assert_eq!(audited(dir.path(), "session_revoked"), 1);
        assert_eq!(audited(dir.path(), "session_exited"), 1);
    }

    #[test]
    fn sessions_saved_before_the_mode_was_typed_still_load() {
        // As the gateway wrote them: a session not yet started had "" for
        // its mode, a bound one the old spelling of every field.
        let old = r#"[
            {"id":"ses-a","index":1,"role":"default","uid":1000,"bound_uid":false,
             "state":"ready","created_at":1,"ended_at":0,"search_path":[],"enforcement":""},
            {"id":"ses-b","index":2,"role":"default","uid":1001,"bound_uid":true,
             "state":"running","created_at":2,"ended_at":0,"search_path":["/usr/bin"],
             "enforcement":"degraded"},
            {"id":"ses-c","index":3,"role":"default","uid":1002,
             "state":"exited","created_at":3,"ended_at":4,"enforcement":"unknown"},
            {"id":"ses-d","index":4,"role":"default","uid":1003,"state":"revoked","created_at":5}
        ]"#;
        let sessions: Vec<Session> = serde_json::from_str(old).unwrap();
        let seen: Vec<(SessionState, EnforcementMode, bool)> = sessions
            .iter()
            .map(|s| (s.state, s.enforcement, s.bound_uid))
            .collect();
        assert_eq!(
            seen,
            [
                (SessionState::Ready, EnforcementMode::Unknown, false),
                (SessionState::Running, EnforcementMode::Degraded, true),
                (SessionState::Exited, EnforcementMode::Unknown, false),
                (SessionState::Revoked, EnforcementMode::Unknown, false),
            ]
        );
        // The words written back are the ones read.
        let again = serde_json::to_value(&sessions[1]).unwrap();
        assert_eq!(again["state"], "running");
        assert_eq!(again["enforcement"], "degraded");
        assert!(serde_json::from_str::<Session>(
            r#"{"id":"ses-e","index":5,"role":"r","uid":1,"state":"ready","created_at":1,
                "enforcement":"bogus"}"#
        )
        .is_err());
    }

    #[test]
    fn a_session_that_ended_while_starting_is_not_revived() {
        let dir = tempfile::tempdir().unwrap();
        let mut core = core(dir.path());
        let a = core
            .create_session(1000, None, false, Vec::new(), 1)
            .unwrap();
        // Revoked between the enforcer taking it and the gateway hearing so.
        core.end_session(&a.id, SessionState::Revoked, Some(0), 2)
            .unwrap();
        let started = core.session_started(&a.id, EnforcementMode::Lsm).unwrap();
        assert_eq!(started.state, SessionState::Revoked);
        assert_eq!(core.session(&a.id).unwrap().state, SessionState::Revoked);
        assert_eq!(audited(dir.path(), "session_started"), 0);
        assert!(core.check_live_session(&a.id).is_err());
    }
}
