//! Compiling a session's rules and grants into the kernel's hash trie, and
//! the grammars of their heads into the tool tables.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    chain, hash_word, HashKey, Node, NodeKey, OptionKey, Tool, ToolKey, ACTION_ALLOW,
    ACTION_APPROVE, ACTION_BLOCK, ACTION_NONE, MAX_WORDS, MAX_WORD_LEN, NO_RULE, STYLE_GNU,
    STYLE_GO,
};
use crate::policy::{Action, Grammar, OptionStyle};

/// The kernel encoding of a policy action.
pub fn action_code(action: Action) -> u8 {
    match action {
        Action::Allow => ACTION_ALLOW,
        Action::Approve => ACTION_APPROVE,
        Action::Block => ACTION_BLOCK,
    }
}

/// The policy action of a kernel code (`ACTION_NONE` has none).
pub fn action_of(code: u8) -> Option<Action> {
    match code {
        ACTION_ALLOW => Some(Action::Allow),
        ACTION_APPROVE => Some(Action::Approve),
        ACTION_BLOCK => Some(Action::Block),
        _ => None,
    }
}

/// What ends at the last word of a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A rule, with its load-order index.
    Rule { action: Action, index: u32 },
    /// A grant, live until this boot-clock time.
    Grant { until_ns: u64 },
}

/// A pattern the compiler cannot put into the trie.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("{0:?} has no words")]
    Empty(String),
    #[error("{0:?} has more than {MAX_WORDS} words")]
    TooManyWords(String),
    #[error("a word of {0:?} is longer than {MAX_WORD_LEN} bytes")]
    WordTooLong(String),
}

/// Keyed hash of a rule head or word, as the kernel computes it.
pub fn word_hash(key: &HashKey, word: &str) -> u64 {
    hash_word(key, word.as_bytes())
}

/// [`SessionInfo::max_depth`](super::SessionInfo::max_depth) for patterns
/// (rules and grants) of these word counts: the words after the executable
/// the longest one names. The kernel reads no argument past it.
pub fn max_depth(word_counts: impl IntoIterator<Item = usize>) -> u32 {
    let longest = word_counts.into_iter().max().unwrap_or(1);
    longest.saturating_sub(1).min(MAX_WORDS - 1) as u32
}

/// Adds one pattern's prefixes to `nodes`.
pub fn add_pattern(
    nodes: &mut BTreeMap<NodeKey, Node>,
    session: u32,
    key: &HashKey,
    words: &[String],
    ending: Ending,
) -> Result<(), CompileError> {
    let text = || words.join(" ");
    if words.is_empty() {
        return Err(CompileError::Empty(text()));
    }
    if words.len() > MAX_WORDS {
        return Err(CompileError::TooManyWords(text()));
    }
    if words.iter().any(|w| w.len() > MAX_WORD_LEN) {
        return Err(CompileError::WordTooLong(text()));
    }
    // The tool-aware walk follows block and approve rules and grants only.
    let aware = match ending {
        Ending::Rule { action, .. } => action != Action::Allow,
        Ending::Grant { .. } => true,
    };
    let mut hash = word_hash(key, &words[0]);
    for (depth, _) in words.iter().enumerate() {
        let node = nodes
            .entry(NodeKey {
                session,
                depth: depth as u32,
                hash,
            })
            .or_insert(Node {
                action: ACTION_NONE,
                rule: NO_RULE,
                ..Node::default()
            });
        if depth + 1 < words.len() {
            node.has_children = 1;
            node.aware |= aware as u8;
            hash = chain(hash, word_hash(key, &words[depth + 1]));
            continue;
        }
        match ending {
            Ending::Rule { action, index } => {
                let code = action_code(action);
                if code > node.action || (code == node.action && index < node.rule) {
                    node.action = code;
                    node.rule = index;
                }
            }
            Ending::Grant { until_ns } => node.grant_until_ns = node.grant_until_ns.max(until_ns),
        }
    }
    Ok(())
}

/// A session's grammar tables: per rule head, its [`Tool`], and the long
/// options that take a value.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tools {
    pub tools: BTreeMap<ToolKey, Tool>,
    pub options: BTreeSet<OptionKey>,
}

impl Tools {
    /// Adds the grammar `grammar` for rule head `head` (a bare name or an
    /// absolute path; the grammar is the one of its basename).
    pub fn add(&mut self, session: u32, key: &HashKey, head: &str, grammar: &Grammar) {
        let head = word_hash(key, head);
        let style = match grammar.style {
            OptionStyle::Gnu => STYLE_GNU,
            OptionStyle::Go => STYLE_GO,
        };
        self.tools.insert(
            ToolKey {
                session,
                _pad: 0,
                head,
            },
            Tool {
                style,
                _pad: 0,
                short_values: grammar.short_values(),
            },
        );
        for option in grammar.long_value_spellings() {
            self.options.insert(OptionKey {
                session,
                _pad: 0,
                option: chain(head, word_hash(key, &option)),
            });
        }
    }
}
