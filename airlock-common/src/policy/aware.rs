//! Tool-aware matching of block and approve rules (and grants).
//!
//! A command's arguments are read as units under the grammar of the rule's
//! tool: an option with its value (if the grammar says it takes one), `--`,
//! an operand. The rule matches when deleting some units leaves a command
//! that starts with the rule's words. Deletable are: options (with their
//! values), `--`, an operand right after an option the grammar does not list
//! (it may be that option's value), and, for a tool not in the table, every
//! operand: its rule's words need only appear in order. An allow rule stays
//! a strict prefix match, so it never matches more than the command says.
//!
//! The kernel walks the same semantics over all rules at once and within
//! fixed limits ([`crate::kernel::MAX_POSITIONS`] partial matches, the first
//! [`MAX_WORDS`] words); [`limits`] finds the commands it must refuse for
//! that, so that `airlockctl policy check` says what the kernel does.

use std::collections::BTreeSet;
use std::fmt;

use super::grammar::{Grammar, Next};
use super::matcher::head_matches;
use super::model::CommandLine;
use crate::kernel::{MAX_POSITIONS, MAX_WORDS, MAX_WORD_LEN};

/// What one argument is to a rule of a tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// The value of the option before it: deleted with it, or kept with it.
    Value,
    /// An option whose value is the next word.
    OptionWithValue,
    /// An option without a value in the next word, `--`, or an operand that
    /// may be deleted.
    Deletable,
    /// An operand that must be kept.
    Operand,
}

/// A command's arguments (after `argv[0]`) under one grammar.
struct Parse {
    classes: Vec<Class>,
    /// Options too long to classify (see [`Next::Unknown`]).
    unknown: Vec<bool>,
}

fn is_option(word: &str) -> bool {
    word.len() >= 2 && word.starts_with('-')
}

/// Reads `args` under `grammar` (`None`: the tool is not in the table).
fn parse(args: &[String], grammar: Option<&Grammar>) -> Parse {
    let mut classes = Vec::with_capacity(args.len());
    let mut unknown = vec![false; args.len()];
    let (mut expect, mut maybe, mut ended) = (false, false, false);
    for (i, word) in args.iter().enumerate() {
        let class = if expect {
            expect = false;
            maybe = false;
            Class::Value
        } else if ended || !is_option(word) {
            let deletable = grammar.is_none() || maybe;
            maybe = false;
            if deletable {
                Class::Deletable
            } else {
                Class::Operand
            }
        } else if word == "--" {
            // After an option that may take a value, `--` may be that value.
            ended = !maybe;
            maybe = false;
            Class::Deletable
        } else {
            let next = grammar.map_or(Next::Maybe, |g| g.next_of(word));
            unknown[i] = next == Next::Unknown;
            // After an option that may take a value, this word may be that
            // value: then the next one is not its value for sure.
            expect = next == Next::Value && !maybe;
            maybe = !expect && next != Next::Free;
            if expect {
                Class::OptionWithValue
            } else {
                Class::Deletable
            }
        };
        classes.push(class);
    }
    Parse { classes, unknown }
}

/// Whether the rule's words after its head (`rule`) match `args` tool-aware;
/// if so, the units deleted before the match ended, each as written (an
/// option and its value joined by a space).
#[cfg(test)]
pub(crate) fn matches(
    rule: &[String],
    args: &[String],
    grammar: Option<&Grammar>,
) -> Option<Vec<String>> {
    Readings::new(args).matches(rule, grammar)
}

/// A command's arguments (`'c`), read once under each grammar (`'g`) a
/// rule asks for.
pub(crate) struct Readings<'c, 'g> {
    args: &'c [String],
    /// By grammar name (`None`: a tool not in the table).
    parses: Vec<(Option<&'g str>, Parse)>,
}

impl<'c, 'g> Readings<'c, 'g> {
    pub fn new(args: &'c [String]) -> Readings<'c, 'g> {
        Readings {
            args,
            parses: Vec::new(),
        }
    }

    /// Whether the rule's words after its head match tool-aware, and what
    /// they skipped (see [`matches`]).
    pub fn matches(
        &mut self,
        rule: &[String],
        grammar: Option<&'g Grammar>,
    ) -> Option<Vec<String>> {
        let name = grammar.map(|g| g.name.as_str());
        let at = match self.parses.iter().position(|(n, _)| *n == name) {
            Some(at) => at,
            None => {
                self.parses.push((name, parse(self.args, grammar)));
                self.parses.len() - 1
            }
        };
        matches_parsed(rule, self.args, &self.parses[at].1)
    }
}

fn matches_parsed(rule: &[String], args: &[String], parse: &Parse) -> Option<Vec<String>> {
    let mut search = Search {
        rule,
        args,
        classes: &parse.classes,
        memo: vec![None; (args.len() + 1) * (rule.len() + 1) * 2],
    };
    if !search.can(0, 0, false) {
        return None;
    }
    // Walk the match, keeping a word whenever that still leads to one: the
    // strict match when there is one, and otherwise the fewest deletions
    // early on.
    let mut deleted: Vec<usize> = Vec::new();
    let (mut i, mut j, mut mid) = (0, 0, false);
    while j < rule.len() {
        let keeps = args[i] == rule[j];
        let kept_mid = parse.classes[i] == Class::OptionWithValue;
        if mid || (keeps && search.keep_allowed(i) && search.can(i + 1, j + 1, kept_mid)) {
            j += 1;
            mid = !mid && kept_mid;
        } else {
            deleted.push(i);
            mid = false;
        }
        i += 1;
    }
    let mut units: Vec<String> = Vec::new();
    for &i in &deleted {
        let joins = parse.classes[i] == Class::Value && i > 0 && deleted.contains(&(i - 1));
        match units.last_mut() {
            Some(last) if joins => {
                last.push(' ');
                last.push_str(&args[i]);
            }
            _ => units.push(args[i].clone()),
        }
    }
    Some(units)
}

/// The match as a search over (argument, rule word, taking a value).
struct Search<'a> {
    rule: &'a [String],
    args: &'a [String],
    classes: &'a [Class],
    memo: Vec<Option<bool>>,
}

impl Search<'_> {
    /// A value is only kept after its option was kept (then it must be).
    fn keep_allowed(&self, i: usize) -> bool {
        self.classes[i] != Class::Value
    }

    /// Whether `rule[j..]` matches from `args[i..]`; `mid`: the option
    /// before `args[i]` was kept and `args[i]` is its value.
    fn can(&mut self, i: usize, j: usize, mid: bool) -> bool {
        if j == self.rule.len() {
            return true;
        }
        if i == self.args.len() {
            return false;
        }
        let slot = ((i * (self.rule.len() + 1)) + j) * 2 + mid as usize;
        if let Some(known) = self.memo[slot] {
            return known;
        }
        let keeps = self.args[i] == self.rule[j];
        let result = if mid {
            keeps && self.can(i + 1, j + 1, false)
        } else {
            match self.classes[i] {
                Class::Value => self.can(i + 1, j, false),
                Class::OptionWithValue => {
                    (keeps && self.can(i + 1, j + 1, true)) || self.can(i + 1, j, false)
                }
                Class::Deletable => {
                    (keeps && self.can(i + 1, j + 1, false)) || self.can(i + 1, j, false)
                }
                Class::Operand => keeps && self.can(i + 1, j + 1, false),
            }
        };
        self.memo[slot] = Some(result);
        result
    }
}

/// Why a command is refused although no rule decided it: the kernel could
/// not match it within its limits, so it refuses it, and so does the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A block or approve rule could still match past the words the kernel
    /// reads ([`MAX_WORDS`], the executable included).
    TooManyWords,
    /// More than [`MAX_POSITIONS`] partial matches at once.
    TooManyMatches,
    /// A cluster of short options longer than the kernel reads, whose last
    /// letter might take a value, while a rule of its tool could match.
    UnclassifiableOption { word: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooManyWords => write!(
                f,
                "a block or approve rule could still match past the first {} words, which is \
                 as far as the kernel reads",
                MAX_WORDS
            ),
            Refusal::TooManyMatches => write!(
                f,
                "more than {MAX_POSITIONS} rule prefixes match at once, more than the kernel \
                 follows"
            ),
            Refusal::UnclassifiableOption { word } => write!(
                f,
                "the option {:?}… is longer than {MAX_WORD_LEN} bytes and might take the next \
                 word as its value",
                word.chars().take(32).collect::<String>()
            ),
        }
    }
}

/// One pattern the kernel compiles: a rule's or grant's words, and whether
/// it is matched tool-aware (block, approve, grant).
#[derive(Clone, Copy)]
pub(crate) struct Pattern<'a> {
    pub words: &'a [String],
    pub aware: bool,
}

/// A partial match: a head (index into the heads), the words after it
/// taken so far, and whether the next word must be the value of the last.
type Position = (usize, Vec<String>, bool);

/// The refusal the kernel's tool-aware walk comes to for `cmd` under these
/// patterns, if any: it follows every partial match of every tool-aware
/// pattern at once, as the kernel does.
pub(crate) fn limits<'a>(
    patterns: &[Pattern<'a>],
    cmd: &CommandLine,
    grammar: impl Fn(&str) -> Option<&'a Grammar>,
) -> Option<Refusal> {
    let (_, args) = cmd.argv.split_first()?;
    let read = &args[..args.len().min(MAX_WORDS - 1)];
    let mut heads: Vec<&str> = Vec::new();
    for pattern in patterns {
        let head = pattern.words[0].as_str();
        if pattern.aware
            && pattern.words.len() > 1
            && !heads.contains(&head)
            && head_matches(head, cmd)
        {
            heads.push(head);
        }
    }
    // Per head, the words after it of its tool-aware patterns; whether one
    // continues past `prefix`.
    let arguments: Vec<Vec<&[String]>> = heads
        .iter()
        .map(|h| {
            patterns
                .iter()
                .filter(|p| p.aware && p.words[0] == *h)
                .map(|p| &p.words[1..])
                .collect()
        })
        .collect();
    let continues = |h: usize, prefix: &[String]| {
        arguments[h]
            .iter()
            .any(|args| args.len() > prefix.len() && args[..prefix.len()] == *prefix)
    };
    let parses: Vec<Parse> = heads.iter().map(|h| parse(read, grammar(h))).collect();
    let mut alive: BTreeSet<Position> = (0..heads.len()).map(|h| (h, Vec::new(), false)).collect();
    if alive.len() > MAX_POSITIONS {
        return Some(Refusal::TooManyMatches);
    }
    for (i, word) in read.iter().enumerate() {
        if alive.is_empty() {
            break;
        }
        for h in alive.iter().map(|p| p.0).collect::<BTreeSet<_>>() {
            if parses[h].unknown[i] {
                return Some(Refusal::UnclassifiableOption { word: word.clone() });
            }
        }
        let mut next = BTreeSet::new();
        for (h, prefix, mid) in &alive {
            let class = parses[*h].classes[i];
            let (stays, takes, child_mid) = if *mid {
                (false, true, false)
            } else {
                match class {
                    Class::Value => (true, false, false),
                    Class::OptionWithValue => (true, true, true),
                    Class::Deletable => (true, true, false),
                    Class::Operand => (false, true, false),
                }
            };
            if stays {
                next.insert((*h, prefix.clone(), *mid));
            }
            if takes && word.len() <= MAX_WORD_LEN {
                let mut child = prefix.clone();
                child.push(word.clone());
                if continues(*h, &child) {
                    next.insert((*h, child, child_mid));
                }
            }
        }
        if next.len() > MAX_POSITIONS {
            return Some(Refusal::TooManyMatches);
        }
        alive = next;
    }
    (cmd.argv.len() > MAX_WORDS && !alive.is_empty()).then_some(Refusal::TooManyWords)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::policy::{OptionStyle, Source};

    fn strings(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    fn units(units: &[&str]) -> Vec<String> {
        units.iter().map(|u| (*u).to_owned()).collect()
    }

    fn grammar(style: OptionStyle, options: &str) -> Grammar {
        let source = Source {
            file: PathBuf::from("tools.toml"),
            line: 1,
        };
        Grammar::new("t", style, &strings(options), source).unwrap()
    }

    /// The deleted units, if `rule` (after its head) matches `command`
    /// (after argv[0]).
    fn deleted(rule: &str, command: &str, grammar: Option<&Grammar>) -> Option<Vec<String>> {
        matches(&strings(rule), &strings(command), grammar)
    }

    #[test]
    fn options_and_their_values_are_deleted() {
        let kubectl = grammar(OptionStyle::Gnu, "-n --namespace --context");
        let k = Some(&kubectl);
        assert_eq!(
            deleted("delete", "-n prod delete pod x", k),
            Some(units(&["-n prod"]))
        );
        assert_eq!(
            deleted("delete", "--namespace=prod --context c delete", k),
            Some(vec!["--namespace=prod".into(), "--context c".into()])
        );
        assert_eq!(
            deleted("delete", "-nprod delete", k),
            Some(units(&["-nprod"]))
        );
        assert_eq!(deleted("delete", "delete", k), Some(vec![]));
        // The value of a listed option is never the subcommand.
        assert_eq!(deleted("delete", "-n delete get", k), None);
        // An operand that is not the rule's word ends a known tool's match.
        assert_eq!(deleted("delete", "get delete", k), None);
        // After `--` nothing is an option.
        assert_eq!(deleted("delete", "-- -n x delete", k), None);
        // An unlisted option may take the next operand as its value.
        assert_eq!(
            deleted("delete", "--as-user bob delete", k),
            Some(vec!["--as-user".into(), "bob".into()])
        );
        // A rule word that is an option matches that option.
        assert_eq!(deleted("push --force", "push --force", k), Some(vec![]));
        assert_eq!(
            deleted("push --force", "push origin --force", k),
            None,
            "origin is an operand of a known tool"
        );
        assert_eq!(
            deleted("-n kube-system delete", "-n kube-system delete", k),
            Some(vec![])
        );
        assert_eq!(deleted("-n kube-system delete", "-n prod delete", k), None);
        assert_eq!(
            deleted("-n", "-n prod", k),
            Some(vec![]),
            "a rule may end on an option"
        );
    }

    #[test]
    fn an_unknown_tool_matches_its_words_in_order() {
        assert_eq!(
            deleted("deploy prod", "--fast x deploy -v y prod", None),
            Some(units(&["--fast", "x", "-v", "y"]))
        );
        assert_eq!(deleted("deploy prod", "prod deploy", None), None);
        assert_eq!(deleted("deploy", "-- deploy", None), Some(units(&["--"])));
    }

    #[test]
    fn go_style_options() {
        let terraform = grammar(OptionStyle::Go, "-chdir");
        let t = Some(&terraform);
        assert_eq!(
            deleted("apply", "-chdir=infra apply", t),
            Some(units(&["-chdir=infra"]))
        );
        assert_eq!(
            deleted("apply", "-chdir infra apply", t),
            Some(units(&["-chdir infra"]))
        );
        assert_eq!(
            deleted("apply", "--chdir infra apply", t),
            Some(units(&["--chdir infra"]))
        );
        assert_eq!(deleted("apply", "-chdir apply", t), None);
    }
}
