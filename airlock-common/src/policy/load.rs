//! Turning policy files into policies and roles, collecting every problem.
//!
//! Each file is parsed into a [`tree`](super::tree) and walked by hand, so
//! that one run reports all unknown keys, bad values and bad commands, each at
//! its own line and column. Checks that span files (duplicate ids, references
//! to unknown policies) run once every file has been read.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::grammar::{
    check_tool_name, check_value_option, Grammar, OptionStyle, MAX_VALUE_OPTIONS,
};
use super::matcher::parse_command;
use super::model::{Action, Diagnostic, Policy, Role, Rule, Source};
use super::protect::{ProtectPattern, MAX_PROTECT_ENTRIES};
use super::tree::{self, Entry, Kind, LineIndex, Node};
use crate::limits::MAX_POLICY_ID_LEN;
use crate::timefmt::parse_duration;

const TOP_KEYS: &[&str] = &["policy", "role", "tool"];
const TOML_POLICY_KEYS: &[&str] = &["id", "name", "description", "status", "rule"];
const JSON_POLICY_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "status",
    "blocked_commands",
    "rules",
];
const RULE_KEYS: &[&str] = &["action", "commands", "reason"];
const TOOL_KEYS: &[&str] = &["name", "description", "style", "value_options"];
const ROLE_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "policies",
    "default_action",
    "default_grant_ttl",
    "max_grant_ttl",
    "protect",
    "allow_debugging",
    "allow_local_ports",
];

const DEFAULT_GRANT_TTL: Duration = Duration::from_secs(60 * 60);
const MAX_GRANT_TTL: Duration = Duration::from_secs(8 * 60 * 60);

/// The two accepted file formats, chosen by extension.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Toml,
    /// The seed shape: one policy object with `blocked_commands`.
    Json,
}

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// What a valid policy directory holds, in load order.
pub(crate) struct Loaded {
    pub policies: Vec<Policy>,
    pub roles: Vec<Role>,
    pub grammars: Vec<Grammar>,
}

/// Validates `files` in the given order; `Ok` only when nothing was wrong.
pub(crate) fn load(files: &[(PathBuf, String, Format)]) -> Result<Loaded, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let mut policies = Vec::new();
    let mut roles = Vec::new();
    let mut grammars = Vec::new();
    for (path, text, format) in files {
        let parsed = match format {
            Format::Toml => tree::parse_toml(text),
            Format::Json => tree::parse_json(text),
        };
        let root = match parsed {
            Ok(root) => root,
            Err(err) => {
                diagnostics.push(err.in_file(path));
                continue;
            }
        };
        let mut file = FileCx {
            path,
            lines: LineIndex::new(text),
            diagnostics: &mut diagnostics,
        };
        match format {
            Format::Toml => {
                file.toml_document(&root, &mut policies, &mut roles, &mut grammars);
            }
            Format::Json => policies.extend(file.policy(&root, Format::Json)),
        }
    }
    check_references(&policies, &roles, &mut diagnostics);
    first_definitions(
        "tool",
        grammars
            .iter()
            .map(|g| (g.grammar.name.as_str(), &g.name_at)),
        &mut diagnostics,
    );
    if diagnostics.is_empty() {
        Ok(Loaded {
            policies: policies.into_iter().map(|p| p.policy).collect(),
            roles: roles.into_iter().map(|r| r.role).collect(),
            grammars: grammars.into_iter().map(|g| g.grammar).collect(),
        })
    } else {
        Err(diagnostics)
    }
}

/// A place in a file, kept for checks made after the file is done.
#[derive(Clone)]
struct Loc {
    file: PathBuf,
    line: usize,
    column: usize,
}

impl Loc {
    fn error(&self, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            message,
        }
    }

    fn source(&self) -> Source {
        Source {
            file: self.file.clone(),
            line: self.line,
        }
    }
}

struct ParsedPolicy {
    policy: Policy,
    /// Where the id was written; `None` if it was missing.
    id_at: Option<Loc>,
}

struct ParsedGrammar {
    grammar: Grammar,
    /// Where the name was written; `None` if it was missing or invalid.
    name_at: Option<Loc>,
}

struct ParsedRole {
    role: Role,
    id_at: Option<Loc>,
    /// Each attached policy id with where it was written.
    references: Vec<(String, Loc)>,
}

/// Duplicate ids (reported at the second definition) and roles naming
/// policies that do not exist.
fn check_references(
    policies: &[ParsedPolicy],
    roles: &[ParsedRole],
    diagnostics: &mut Vec<Diagnostic>,
) {
    let policy_ids = first_definitions(
        "policy",
        policies.iter().map(|p| (p.policy.id.as_str(), &p.id_at)),
        diagnostics,
    );
    first_definitions(
        "role",
        roles.iter().map(|r| (r.role.id.as_str(), &r.id_at)),
        diagnostics,
    );
    for parsed in roles {
        let id = &parsed.role.id;
        for (i, (policy, at)) in parsed.references.iter().enumerate() {
            let message = if parsed.references[..i].iter().any(|(p, _)| p == policy) {
                format!("role {id:?} lists policy {policy:?} more than once")
            } else if !policy_ids.contains_key(policy.as_str()) {
                format!("role {id:?} references unknown policy {policy:?}")
            } else {
                continue;
            };
            diagnostics.push(at.error(message));
        }
    }
}

/// Maps each id to its first definition, reporting any later one.
fn first_definitions<'a>(
    kind: &str,
    ids: impl Iterator<Item = (&'a str, &'a Option<Loc>)>,
    diagnostics: &mut Vec<Diagnostic>,
) -> HashMap<&'a str, &'a Loc> {
    let mut first: HashMap<&str, &Loc> = HashMap::new();
    for (id, at) in ids {
        let Some(at) = at else { continue };
        match first.get(id) {
            Some(earlier) => diagnostics.push(at.error(format!(
                "duplicate {kind} id {id:?} (first defined at {})",
                earlier.source()
            ))),
            None => {
                first.insert(id, at);
            }
        }
    }
    first
}

/// Whether `id` is `[a-z0-9][a-z0-9_-]{0,63}` (up to [`MAX_POLICY_ID_LEN`]).
fn valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=MAX_POLICY_ID_LEN).contains(&bytes.len())
        && allowed(&bytes[0])
        && bytes[1..]
            .iter()
            .all(|b| allowed(b) || *b == b'_' || *b == b'-')
}

/// The entries of a table whose keys have been checked.
pub(crate) struct Table<'n> {
    pub span: &'n Range<usize>,
    pub entries: &'n [Entry],
}

impl<'n> Table<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.node)
    }
}

/// Validation state for one file (the service definitions' loader uses it
/// too, so that both report alike).
pub(crate) struct FileCx<'a> {
    path: &'a Path,
    lines: LineIndex<'a>,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl<'a> FileCx<'a> {
    pub fn new(path: &'a Path, text: &'a str, diagnostics: &'a mut Vec<Diagnostic>) -> Self {
        FileCx {
            path,
            lines: LineIndex::new(text),
            diagnostics,
        }
    }
}

impl FileCx<'_> {
    /// `file:line:column` of `span`, for "first defined at" notes.
    pub fn place(&self, span: &Range<usize>) -> String {
        let loc = self.loc(span);
        format!("{}:{}:{}", loc.file.display(), loc.line, loc.column)
    }

    fn loc(&self, span: &Range<usize>) -> Loc {
        let (line, column) = self.lines.position(span.start);
        Loc {
            file: self.path.to_path_buf(),
            line,
            column,
        }
    }

    pub fn error(&mut self, span: &Range<usize>, message: String) {
        let diagnostic = self.loc(span).error(message);
        self.diagnostics.push(diagnostic);
    }

    pub fn expected(&mut self, node: &Node, what: &str, expected: &str) {
        let found = node.kind.type_name();
        self.error(
            &node.span,
            format!("{what} must be {expected}, found {found}"),
        );
    }

    /// `node` as a table, reporting unknown and repeated keys.
    pub fn table<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Table<'n>> {
        let Kind::Table(entries) = &node.kind else {
            self.expected(node, what, "a table");
            return None;
        };
        for (i, entry) in entries.iter().enumerate() {
            let key = &entry.key;
            if !allowed.contains(&key.as_str()) {
                self.error(
                    &entry.key_span,
                    format!(
                        "unknown key `{key}` in {what} (expected one of: {})",
                        allowed.join(", ")
                    ),
                );
            } else if entries[..i].iter().any(|e| e.key == *key) {
                self.error(&entry.key_span, format!("duplicate key `{key}` in {what}"));
            }
        }
        Some(Table {
            span: &node.span,
            entries,
        })
    }

    pub fn string<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
        match &node.kind {
            Kind::String(s) => Some(s),
            _ => {
                self.expected(node, what, "a string");
                None
            }
        }
    }

    pub fn array<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Array(items) => Some(items),
            _ => {
                self.expected(node, what, "an array");
                None
            }
        }
    }

    pub fn optional_string<'n>(&mut self, table: &Table<'n>, key: &str) -> Option<&'n str> {
        table
            .get(key)
            .and_then(|node| self.string(node, &format!("`{key}`")))
    }

    /// A required string; a missing one is reported at the table itself.
    pub fn required_string<'n>(
        &mut self,
        table: &Table<'n>,
        key: &str,
        what: &str,
    ) -> Option<(&'n str, &'n Node)> {
        let Some(node) = table.get(key) else {
            self.error(
                table.span,
                format!("missing required key `{key}` in {what}"),
            );
            return None;
        };
        Some((self.string(node, &format!("`{key}`"))?, node))
    }

    /// An id: present, a string, and of the allowed syntax.
    fn id(&mut self, table: &Table<'_>, what: &str) -> (String, Option<Loc>) {
        let Some((id, node)) = self.required_string(table, "id", what) else {
            return (String::new(), None);
        };
        if !valid_id(id) {
            self.error(
                &node.span,
                format!(
                    "invalid {what} id {id:?}: use 1 to {MAX_POLICY_ID_LEN} characters from a-z, \
                     0-9, `_` and `-`, starting with a letter or digit"
                ),
            );
        }
        (id.to_owned(), Some(self.loc(&node.span)))
    }

    /// `status`: whether the policy is active. A bad value is reported.
    fn status(&mut self, node: &Node) -> bool {
        match self.string(node, "`status`") {
            Some("active") | None => true,
            Some("disabled") => false,
            Some(other) => {
                let message = format!(
                    "`status`: unknown status {other:?} (expected \"active\" or \"disabled\")"
                );
                self.error(&node.span, message);
                true
            }
        }
    }

    fn action(&mut self, node: &Node, key: &str) -> Option<Action> {
        let text = self.string(node, &format!("`{key}`"))?;
        match text.parse() {
            Ok(action) => Some(action),
            Err(message) => {
                self.error(&node.span, format!("`{key}`: {message}"));
                None
            }
        }
    }

    /// A top-level TOML document: `[[policy]]`, `[[role]]` and `[[tool]]`
    /// arrays.
    fn toml_document(
        &mut self,
        root: &Node,
        policies: &mut Vec<ParsedPolicy>,
        roles: &mut Vec<ParsedRole>,
        grammars: &mut Vec<ParsedGrammar>,
    ) {
        let Some(top) = self.table(root, "the file", TOP_KEYS) else {
            return;
        };
        for entry in top.entries {
            let key = entry.key.as_str();
            if !TOP_KEYS.contains(&key) {
                continue;
            }
            let Kind::Array(items) = &entry.node.kind else {
                let key = &entry.key;
                self.error(
                    &entry.node.span,
                    format!("`{key}` must be an array of tables: write [[{key}]]"),
                );
                continue;
            };
            for item in items {
                match key {
                    "policy" => policies.extend(self.policy(item, Format::Toml)),
                    "role" => roles.extend(self.role(item)),
                    _ => grammars.extend(self.grammar(item)),
                }
            }
        }
    }

    /// One `[[tool]]` table: a tool's grammar.
    fn grammar(&mut self, node: &Node) -> Option<ParsedGrammar> {
        let table = self.table(node, "tool", TOOL_KEYS)?;
        let mut name_at = None;
        let name = match self.required_string(&table, "name", "tool") {
            Some((name, node)) => match check_tool_name(name) {
                Ok(()) => {
                    name_at = Some(self.loc(&node.span));
                    name.to_owned()
                }
                Err(message) => {
                    self.error(&node.span, message);
                    String::new()
                }
            },
            None => String::new(),
        };
        self.optional_string(&table, "description");
        let style = match table.get("style") {
            None => OptionStyle::Gnu,
            Some(node) => match self.string(node, "`style`").map(str::parse) {
                Some(Ok(style)) => style,
                Some(Err(message)) => {
                    self.error(&node.span, format!("`style`: {message}"));
                    OptionStyle::Gnu
                }
                None => OptionStyle::Gnu,
            },
        };
        let mut grammar = Grammar {
            name,
            style,
            value_options: Vec::new(),
            source: self.loc(table.span).source(),
        };
        let Some(list) = table.get("value_options") else {
            self.error(
                table.span,
                "missing required key `value_options` in tool (the options that take a value; \
                 `[]` for none)"
                    .to_owned(),
            );
            return None;
        };
        let items = self.array(list, "`value_options`").unwrap_or_default();
        if items.len() > MAX_VALUE_OPTIONS {
            self.error(
                &list.span,
                format!(
                    "`value_options` lists {} options; at most {MAX_VALUE_OPTIONS}",
                    items.len()
                ),
            );
        }
        for item in items {
            let Some(option) = self.string(item, "an option") else {
                continue;
            };
            if let Err(message) = check_value_option(style, option) {
                self.error(&item.span, message);
            } else if grammar.lists(option) {
                self.error(
                    &item.span,
                    format!("option {option:?} is listed more than once"),
                );
            } else {
                grammar.value_options.push(option.to_owned());
            }
        }
        Some(ParsedGrammar { grammar, name_at })
    }

    /// One policy: a `[[policy]]` table, or a whole seed JSON file.
    fn policy(&mut self, node: &Node, format: Format) -> Option<ParsedPolicy> {
        let (keys, rules_key) = match format {
            Format::Toml => (TOML_POLICY_KEYS, "rule"),
            Format::Json => (JSON_POLICY_KEYS, "rules"),
        };
        let table = self.table(node, "policy", keys)?;
        let (id, id_at) = self.id(&table, "policy");
        let name = self.required_string(&table, "name", "policy");
        let description = self.optional_string(&table, "description");
        let active = table.get("status").is_none_or(|node| self.status(node));
        let mut rules = Vec::new();
        if let Some(list) = table.get("blocked_commands") {
            for item in self.array(list, "`blocked_commands`").unwrap_or_default() {
                self.command(item, Action::Block, None, &id, &mut rules);
            }
        }
        if let Some(list) = table.get(rules_key) {
            for item in self
                .array(list, &format!("`{rules_key}`"))
                .unwrap_or_default()
            {
                self.rule(item, &id, &mut rules);
            }
        }
        Some(ParsedPolicy {
            policy: Policy {
                id,
                name: name.map(|(name, _)| name.to_owned()).unwrap_or_default(),
                description: description.unwrap_or_default().to_owned(),
                active,
                rules,
                source: self.loc(table.span).source(),
            },
            id_at,
        })
    }

    /// One rule table, yielding a [`Rule`] per command.
    fn rule(&mut self, node: &Node, policy_id: &str, rules: &mut Vec<Rule>) {
        let Some(table) = self.table(node, "rule", RULE_KEYS) else {
            return;
        };
        let action = match table.get("action") {
            Some(node) => self.action(node, "action"),
            None => {
                self.error(
                    table.span,
                    "missing required key `action` in rule".to_owned(),
                );
                None
            }
        };
        let reason = self.optional_string(&table, "reason").map(str::to_owned);
        let Some(commands) = table.get("commands") else {
            self.error(
                table.span,
                "missing required key `commands` in rule".to_owned(),
            );
            return;
        };
        let Some(items) = self.array(commands, "`commands`") else {
            return;
        };
        if items.is_empty() {
            self.error(&commands.span, "`commands` must not be empty".to_owned());
        }
        for item in items {
            // Commands are checked even when the action is bad, so that
            // one run reports both.
            self.command(
                item,
                action.unwrap_or(Action::Block),
                reason.as_deref(),
                policy_id,
                rules,
            );
        }
    }

    fn command(
        &mut self,
        node: &Node,
        action: Action,
        reason: Option<&str>,
        policy_id: &str,
        rules: &mut Vec<Rule>,
    ) {
        let Some(text) = self.string(node, "a command") else {
            return;
        };
        match parse_command(text) {
            Ok(words) => rules.push(Rule {
                action,
                command: words.join(" "),
                words,
                policy_id: policy_id.to_owned(),
                reason: reason.map(str::to_owned),
                source: self.loc(&node.span).source(),
            }),
            Err(message) => self.error(&node.span, message),
        }
    }

    fn role(&mut self, node: &Node) -> Option<ParsedRole> {
        let table = self.table(node, "role", ROLE_KEYS)?;
        let (id, id_at) = self.id(&table, "role");
        let name = self.optional_string(&table, "name");
        let description = self.optional_string(&table, "description");
        let mut references = Vec::new();
        if let Some(list) = table.get("policies") {
            for item in self.array(list, "`policies`").unwrap_or_default() {
                if let Some(policy) = self.string(item, "a policy id") {
                    references.push((policy.to_owned(), self.loc(&item.span)));
                }
            }
        }
        let default_action = match table.get("default_action") {
            Some(node) => self.action(node, "default_action").unwrap_or(Action::Allow),
            None => Action::Allow,
        };
        let protect = table
            .get("protect")
            .map(|list| self.protect(list))
            .unwrap_or_default();
        let allow_debugging = match table.get("allow_debugging") {
            Some(node) => match node.kind {
                Kind::Bool(value) => value,
                _ => {
                    self.expected(node, "`allow_debugging`", "a boolean");
                    false
                }
            },
            None => false,
        };
        let default_ttl = self.duration(&table, "default_grant_ttl", DEFAULT_GRANT_TTL);
        let max_ttl = self.duration(&table, "max_grant_ttl", MAX_GRANT_TTL);
        if default_ttl > max_ttl {
            // Point at whichever of the two was written (the defaults agree).
            let span = table
                .get("default_grant_ttl")
                .or_else(|| table.get("max_grant_ttl"))
                .map_or(table.span, |node| &node.span);
            self.error(
                span,
                format!(
                    "default_grant_ttl ({}) is longer than max_grant_ttl ({})",
                    humantime::format_duration(default_ttl),
                    humantime::format_duration(max_ttl)
                ),
            );
        }
        let allow_local_ports = table
            .get("allow_local_ports")
            .map(|node| self.ports(node, "`allow_local_ports`"))
            .unwrap_or_default();
        Some(ParsedRole {
            role: Role {
                name: name.map_or_else(|| id.clone(), str::to_owned),
                id,
                description: description.unwrap_or_default().to_owned(),
                policies: references.iter().map(|(p, _)| p.clone()).collect(),
                default_action,
                default_grant_ttl: default_ttl,
                max_grant_ttl: max_ttl,
                protect,
                allow_debugging,
                allow_local_ports,
                source: self.loc(table.span).source(),
            },
            id_at,
            references,
        })
    }

    /// A role's `protect` list: paths its sessions mask.
    fn protect(&mut self, list: &Node) -> Vec<ProtectPattern> {
        let items = self.array(list, "`protect`").unwrap_or_default();
        if items.len() > MAX_PROTECT_ENTRIES {
            self.error(
                &list.span,
                format!("`protect` may list at most {MAX_PROTECT_ENTRIES} paths"),
            );
        }
        items
            .iter()
            .filter_map(|item| {
                let text = self.string(item, "a path")?;
                text.parse()
                    .map_err(|message| self.error(&item.span, message))
                    .ok()
            })
            .collect()
    }

    /// A list of TCP/UDP port numbers (1 to 65535), each once.
    fn ports(&mut self, node: &Node, what: &str) -> Vec<u16> {
        let mut ports = Vec::new();
        for item in self.array(node, what).unwrap_or_default() {
            match item.kind {
                Kind::Integer(n) => match u16::try_from(n) {
                    Ok(port) if port > 0 && !ports.contains(&port) => ports.push(port),
                    Ok(port) if port > 0 => {
                        self.error(&item.span, format!("port {port} is listed twice"))
                    }
                    _ => self.error(
                        &item.span,
                        format!("{n} is not a port: use a number from 1 to 65535"),
                    ),
                },
                _ => self.expected(item, "a port", "an integer"),
            }
        }
        ports
    }

    /// An optional positive duration such as `30m`; `default` if absent or
    /// invalid (an invalid one is reported).
    fn duration(&mut self, table: &Table<'_>, key: &str, default: Duration) -> Duration {
        let Some(node) = table.get(key) else {
            return default;
        };
        let Some(text) = self.string(node, &format!("`{key}`")) else {
            return default;
        };
        match parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.error(&node.span, format!("`{key}` must be longer than zero"));
                default
            }
            Ok(d) => d,
            Err(message) => {
                self.error(&node.span, format!("`{key}`: {message}"));
                default
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_syntax() {
        for good in ["a", "0", "infra-mutation-block", "a_b-c9", &"x".repeat(64)] {
            assert!(valid_id(good), "{good}");
        }
        for bad in ["", "-a", "_a", "A", "a.b", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
