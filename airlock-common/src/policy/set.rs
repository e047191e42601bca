//! A validated set of policies and roles, and evaluation against it.

use std::fs;
use std::path::{Path, PathBuf};

use super::aware::{self, Pattern, Readings};
use super::grammar::Grammar;
use super::load::{self, Format};
use super::matcher::{basename, head_matches, rule_matches};
use super::model::{
    Action, CommandLine, Decision, Diagnostic, MatchedRule, Policy, Role, Rule, UnknownRole,
};

/// Every policy, role and tool grammar from a policy directory, in load
/// order (files by name, then position in the file). Only ever built from
/// input without errors; the default is the empty set.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    policies: Vec<Policy>,
    roles: Vec<Role>,
    grammars: Vec<Grammar>,
}

impl PolicySet {
    /// Reads the `.toml` and `.json` files of `dir` (other files, and
    /// directories, are ignored). A missing directory is an error; an empty
    /// one gives the empty set.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, Vec<Diagnostic>> {
        let at_dir = |message: String| Diagnostic {
            file: dir.to_path_buf(),
            line: 1,
            column: 1,
            message,
        };
        let entries = fs::read_dir(dir).map_err(|err| {
            let message = if err.kind() == std::io::ErrorKind::NotFound {
                "policy directory does not exist".to_owned()
            } else {
                format!("cannot read policy directory: {err}")
            };
            vec![at_dir(message)]
        })?;
        let mut diagnostics = Vec::new();
        let mut files = Vec::new();
        for entry in entries {
            let path = match entry {
                Ok(entry) => entry.path(),
                Err(err) => {
                    diagnostics.push(at_dir(format!("cannot read policy directory: {err}")));
                    continue;
                }
            };
            if Format::of(&path).is_none() || path.is_dir() {
                continue;
            }
            match fs::read_to_string(&path) {
                Ok(text) => files.push((path, text)),
                Err(err) => diagnostics.push(Diagnostic {
                    file: path,
                    line: 1,
                    column: 1,
                    message: format!("cannot read file: {err}"),
                }),
            }
        }
        match Self::from_sources(&files) {
            Ok(set) if diagnostics.is_empty() => Ok(set),
            Ok(_) => Err(sorted(diagnostics)),
            Err(more) => {
                diagnostics.extend(more);
                Err(sorted(diagnostics))
            }
        }
    }

    /// Like [`load_dir`](Self::load_dir), from in-memory `(file name, text)`
    /// pairs: files are taken in sorted name order, the format is chosen by
    /// extension, and names that are neither `.toml` nor `.json` are ignored.
    /// Errors come sorted by file, line and column.
    pub fn from_sources(files: &[(PathBuf, String)]) -> Result<PolicySet, Vec<Diagnostic>> {
        let mut files: Vec<(PathBuf, String, Format)> = files
            .iter()
            .filter_map(|(path, text)| Some((path.clone(), text.clone(), Format::of(path)?)))
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        match load::load(&files) {
            Ok(loaded) => Ok(PolicySet {
                policies: loaded.policies,
                roles: loaded.roles,
                grammars: loaded.grammars,
            }),
            Err(diagnostics) => Err(sorted(diagnostics)),
        }
    }

    /// All policies, in load order, disabled ones included.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// All roles, in load order.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    pub fn role(&self, id: &str) -> Option<&Role> {
        self.roles.iter().find(|role| role.id == id)
    }

    /// All tool grammars, in load order.
    pub fn grammars(&self) -> &[Grammar] {
        &self.grammars
    }

    /// The grammar a rule head is matched with: that of its basename (so
    /// `/usr/local/bin/terraform` uses `terraform`'s).
    pub fn grammar_of_head(&self, head: &str) -> Option<&Grammar> {
        let name = basename(head);
        self.grammars.iter().find(|g| g.name == name)
    }

    /// Judges a command for a role: the strongest action among matching
    /// rules (block > approve > allow; the first in load order among equals),
    /// or the role's default action when no rule matches. Allow rules match
    /// strictly, block and approve rules also tool-aware. A command the
    /// kernel could not match within its limits is refused (block, with
    /// [`Decision::refusal`]).
    pub fn evaluate(&self, role: &str, cmd: &CommandLine) -> Result<Decision, UnknownRole> {
        Ok(self.evaluate_with_grants(role, cmd, &[])?.0)
    }

    /// [`evaluate`](Self::evaluate) for a session with these command grants
    /// (each a command's words), and which of them cover the command. A
    /// grant matches as an approve rule does, and counts towards the
    /// kernel's limits as the kernel compiles it beside the rules.
    pub fn evaluate_with_grants(
        &self,
        role: &str,
        cmd: &CommandLine,
        grants: &[Vec<String>],
    ) -> Result<(Decision, Vec<bool>), UnknownRole> {
        let role = self.known_role(role)?;
        let patterns: Vec<Pattern> = self
            .rules_of(role)
            .map(|rule| Pattern {
                words: &rule.words,
                aware: rule.action != Action::Allow,
            })
            .chain(grants.iter().map(|words| Pattern { words, aware: true }))
            .filter(|p| !p.words.is_empty())
            .collect();
        if let Some(refusal) = aware::limits(&patterns, cmd, |h| self.grammar_of_head(h)) {
            let decision = Decision {
                action: Action::Block,
                rule: None,
                skipped: Vec::new(),
                refusal: Some(refusal),
            };
            return Ok((decision, vec![false; grants.len()]));
        }
        let args = cmd.argv.get(1..).unwrap_or_default();
        let mut readings = Readings::new(args);
        let mut strongest: Option<(&Rule, Vec<String>)> = None;
        for rule in self.rules_of(role) {
            let stronger = strongest
                .as_ref()
                .is_none_or(|(best, _)| rule.action > best.action);
            if !stronger {
                continue;
            }
            let aware = rule.action != Action::Allow;
            if let Some(skipped) = self.pattern_matches(&rule.words, aware, cmd, &mut readings) {
                strongest = Some((rule, skipped));
            }
        }
        let covering = grants
            .iter()
            .map(|words| {
                self.pattern_matches(words, true, cmd, &mut readings)
                    .is_some()
            })
            .collect();
        let decision = match strongest {
            Some((rule, skipped)) => Decision {
                action: rule.action,
                rule: Some(MatchedRule::from(rule)),
                skipped,
                refusal: None,
            },
            None => Decision {
                action: role.default_action,
                rule: None,
                skipped: Vec::new(),
                refusal: None,
            },
        };
        Ok((decision, covering))
    }

    /// Whether a rule's (or grant's) words match the command: strictly, or
    /// when `aware`, also tool-aware. Returns what the match skipped.
    fn pattern_matches<'s>(
        &'s self,
        words: &[String],
        aware: bool,
        cmd: &CommandLine,
        readings: &mut Readings<'_, 's>,
    ) -> Option<Vec<String>> {
        if rule_matches(words, cmd) {
            return Some(Vec::new());
        }
        let (head, rest) = words.split_first()?;
        if !aware || !head_matches(head, cmd) {
            return None;
        }
        readings.matches(rest, self.grammar_of_head(head))
    }

    /// All rules in effect for a role (those of its active attached
    /// policies), in load order: later compiled into kernel maps.
    pub fn effective_rules(&self, role: &str) -> Result<Vec<&Rule>, UnknownRole> {
        Ok(self.rules_of(self.known_role(role)?).collect())
    }

    fn rules_of<'s>(&'s self, role: &'s Role) -> impl Iterator<Item = &'s Rule> {
        self.policies
            .iter()
            .filter(|policy| policy.active && role.policies.contains(&policy.id))
            .flat_map(|policy| &policy.rules)
    }

    fn known_role(&self, id: &str) -> Result<&Role, UnknownRole> {
        self.role(id).ok_or_else(|| UnknownRole(id.to_owned()))
    }
}

/// Orders diagnostics by file, line and column, for reading top to bottom.
fn sorted(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    diagnostics
}
