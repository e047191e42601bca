//! The policy set in force, loading it, and judging commands with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_common::dbus::{AirlockError, DecisionInfo};
use airlock_common::event::Event;
use airlock_common::policy::{CommandLine, Diagnostic, PolicySet};

/// What re-reading the policy directory found.
pub enum Reload {
    Loaded {
        set: PolicySet,
        message: String,
    },
    /// An invalid set is not applied: the previous one stays in force.
    Rejected {
        message: String,
        errors: String,
    },
}

impl Reload {
    pub fn event(&self) -> Event {
        match self {
            Reload::Loaded { message, .. } => Event::PolicyReloaded {
                message: message.clone(),
            },
            Reload::Rejected { errors, .. } => Event::PolicyReloadFailed {
                errors: errors.clone(),
            },
        }
    }
}

/// The policy set in force and what happened at the last (re)load.
pub struct PolicyState {
    pub dir: PathBuf,
    pub set: Arc<PolicySet>,
    pub ok: bool,
    pub message: String,
}

impl PolicyState {
    /// Loads `dir` at start-up. An invalid set is not fatal: an empty set
    /// (role defaults only) is served and the error is kept for `status`.
    pub fn open(dir: &Path) -> (PolicyState, Event) {
        match PolicySet::load_dir(dir) {
            Ok(set) => {
                let message = loaded(&set, dir);
                let event = Event::PolicyReloaded {
                    message: message.clone(),
                };
                (PolicyState::serving(dir, set, true, message), event)
            }
            Err(diagnostics) => {
                let message = format!(
                    "policy set in {} is invalid; serving an empty set (role defaults only): {}",
                    dir.display(),
                    joined(&diagnostics, "; ")
                );
                tracing::error!("{message}");
                let event = Event::PolicyReloadFailed {
                    errors: joined(&diagnostics, "; "),
                };
                (
                    PolicyState::serving(dir, PolicySet::default(), false, message),
                    event,
                )
            }
        }
    }

    fn serving(dir: &Path, set: PolicySet, ok: bool, message: String) -> PolicyState {
        PolicyState {
            dir: dir.to_path_buf(),
            set: Arc::new(set),
            ok,
            message,
        }
    }

    /// Re-reads the directory; the caller records the outcome and applies
    /// or rejects it.
    pub fn reload(&self) -> Reload {
        match PolicySet::load_dir(&self.dir) {
            Ok(set) => {
                let message = loaded(&set, &self.dir);
                Reload::Loaded { set, message }
            }
            Err(diagnostics) => Reload::Rejected {
                message: format!(
                    "policy set in {} rejected; still serving the previous set. {} error(s):\n{}",
                    self.dir.display(),
                    diagnostics.len(),
                    joined(&diagnostics, "\n")
                ),
                errors: joined(&diagnostics, "; "),
            },
        }
    }

    /// Puts a reloaded set in force.
    pub fn apply(&mut self, set: PolicySet, message: String) {
        self.set = Arc::new(set);
        self.ok = true;
        self.message = message;
    }

    /// Notes a rejected reload; the set in force stays.
    pub fn reject(&mut self, message: String) {
        self.ok = false;
        self.message = message;
    }

    /// Evaluates `argv` under `role`.
    pub fn check_command(&self, role: &str, argv: &[String]) -> Result<DecisionInfo, AirlockError> {
        let cmd = CommandLine {
            argv,
            executable: None,
            aliases: &[],
        };
        let decision = self
            .set
            .evaluate(role, &cmd)
            .map_err(|e| AirlockError::NotFound(e.to_string()))?;
        let refusal = decision
            .refusal
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        Ok(match decision.rule {
            Some(rule) => DecisionInfo {
                decision: decision.action,
                rule: Some(rule.command).into(),
                policy: Some(rule.policy_id).into(),
                source: rule.source.to_string(),
                skipped: decision.skipped,
                refusal,
            },
            None => DecisionInfo {
                decision: decision.action,
                rule: None.into(),
                policy: None.into(),
                source: self
                    .set
                    .role(role)
                    .map(|r| r.source.to_string())
                    .unwrap_or_default(),
                skipped: decision.skipped,
                refusal,
            },
        })
    }
}

fn loaded(set: &PolicySet, dir: &Path) -> String {
    format!(
        "loaded {} policies, {} roles and {} tool grammars from {}",
        set.policies().len(),
        set.roles().len(),
        set.grammars().len(),
        dir.display()
    )
}

fn joined(diagnostics: &[Diagnostic], separator: &str) -> String {
    diagnostics
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(separator)
}
