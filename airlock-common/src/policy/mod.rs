//! The policy engine: which commands a governed agent may run.
//!
//! Policies are TOML files (or seed-style JSON) in a directory. A policy
//! holds `block`, `approve` and `allow` rules, each a command prefix; a role
//! attaches policies and says what happens to commands no rule matches.
//! Loading validates everything and reports every problem with its position,
//! so an invalid set is never applied. Evaluation is pure: the strongest
//! matching action wins (block > approve > allow). Block and approve rules
//! match tool-aware, skipping the command's options as the tool's grammar
//! (`[[tool]]` tables, [`Grammar`]) reads them.

mod aware;
mod grammar;
pub(crate) mod load;
mod matcher;
mod model;
pub mod protect;
mod set;
pub(crate) mod tree;

#[cfg(test)]
pub(crate) mod tests;

pub use aware::Refusal;
pub use grammar::{check_tool_name, check_value_option, Grammar, OptionStyle, MAX_VALUE_OPTIONS};
pub use matcher::{basename, parse_command, rule_matches};
pub use model::{
    Action, CommandLine, Decision, Diagnostic, MatchedRule, Policy, Role, Rule, Source, UnknownRole,
};
pub use set::PolicySet;
