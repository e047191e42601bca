//! The data the policy engine works with: actions, loaded policies and roles,
//! the command being judged, and the decision about it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::aware::Refusal;

/// What happens to a command. The order is the strength used when several
/// rules match: `Allow < Approve < Block`, and the strongest one wins.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    zbus::zvariant::Type,
)]
#[serde(rename_all = "lowercase")]
#[zvariant(signature = "s")]
pub enum Action {
    /// Run the command.
    Allow,
    /// Run the command only under a grant a human approved.
    Approve,
    /// Never run the command.
    Block,
}

impl Action {
    /// Every action, weakest first.
    pub const ALL: [Action; 3] = [Action::Allow, Action::Approve, Action::Block];

    /// The name used in policy files and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Approve => "approve",
            Action::Block => "block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    /// Parses the exact lowercase names `allow`, `approve` and `block`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|action| action.as_str() == text)
            .ok_or_else(|| {
                format!("unknown action {text:?} (expected \"block\", \"approve\" or \"allow\")")
            })
    }
}

/// Where something was defined, so that a decision can be traced back to the
/// line an administrator wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One problem found while loading a policy directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// One matchable command prefix. A `[[policy.rule]]` with several `commands`
/// yields one `Rule` per command, each with its own source line.
#[derive(Clone, Debug)]
pub struct Rule {
    pub action: Action,
    /// The command as written, normalised: words joined by one space.
    pub command: String,
    /// The words of `command`; the first names the executable.
    pub words: Vec<String>,
    pub policy_id: String,
    /// Text shown to the agent when this rule decides.
    pub reason: Option<String>,
    pub source: Source,
}

/// A reusable, named set of rules.
#[derive(Clone, Debug)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub description: String,
    /// `status = "disabled"` policies stay loaded (and validated) but
    /// contribute no rules.
    pub active: bool,
    pub rules: Vec<Rule>,
    pub source: Source,
}

/// Who an agent runs as: which policies apply and what happens otherwise.
#[derive(Clone, Debug)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Ids of attached policies, as listed in the file.
    pub policies: Vec<String>,
    /// Action for commands no rule matches.
    pub default_action: Action,
    pub default_grant_ttl: Duration,
    pub max_grant_ttl: Duration,
    /// Its own `protect` entries, as written; the session masks these
    /// after the defaults ([`protect::with_defaults`](super::protect::with_defaults)).
    pub protect: Vec<super::protect::ProtectPattern>,
    /// The session's processes may debug (ptrace, `process_vm_writev`, ...):
    /// a debugger can change a program after the kernel judged its exec.
    pub allow_debugging: bool,
    /// Ports on this machine the role's sessions may reach whoever listens
    /// there (a database on localhost:5432). Every other listener outside
    /// the session is out of reach (docs/kernel.md, "Sockets").
    pub allow_local_ports: Vec<u16>,
    pub source: Source,
}

/// A command to judge.
#[derive(Clone, Copy, Debug)]
pub struct CommandLine<'a> {
    pub argv: &'a [String],
    /// The real (resolved, canonical) executable file, if known. It lets a
    /// rule catch a command run through a symlink or an alias name.
    pub executable: Option<&'a Path>,
    /// Rule heads the executable is also known by: heads whose files have the
    /// same inode or the same content (a hard link, a copy, a memfd), and the
    /// name of the path it was invoked by. The kernel finds these through
    /// the identities the enforcer resolved; `policy check` finds them by
    /// looking at the file.
    pub aliases: &'a [String],
}

/// The outcome of [`PolicySet::evaluate`](super::PolicySet::evaluate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// The rule that decided; `None` when the role's default applied (or
    /// the command was refused for `refusal`).
    pub rule: Option<MatchedRule>,
    /// What the deciding rule skipped to match (tool-aware matching), each
    /// option with its value: `["-n prod", "--context=prod"]`.
    pub skipped: Vec<String>,
    /// Set when the command is refused (`Block`) because the kernel cannot
    /// match it within its limits.
    pub refusal: Option<Refusal>,
}

/// The part of a [`Rule`] worth reporting with a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedRule {
    pub policy_id: String,
    pub command: String,
    pub reason: Option<String>,
    pub source: Source,
}

impl From<&Rule> for MatchedRule {
    fn from(rule: &Rule) -> Self {
        MatchedRule {
            policy_id: rule.policy_id.clone(),
            command: rule.command.clone(),
            reason: rule.reason.clone(),
            source: rule.source.clone(),
        }
    }
}

/// Evaluation named a role the policy set does not define.
#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);
