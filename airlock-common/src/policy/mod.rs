//! The policy engine: which commands a governed agent may run.
//!
//! Policies are TOML files (or seed-style JSON) in a directory. A policy
//! holds `block`, `approve` and `allow` rules, each a command prefix; a role
//! attaches policies and says what happens to commands no rule matches.
//! Loading validates everything and reports every problem with its position,
//! so an invalid set is never applied. Evaluation is pure: the strongest
//! matching action wins (block > approve > allow).

mod load;
mod matcher;
mod model;
pub mod protect;
mod set;
mod tree;

#[cfg(test)]
pub(crate) mod tests;

pub use matcher::{basename, parse_command, rule_matches};
pub use model::{
    Action, CommandLine, Decision, Diagnostic, MatchedRule, Policy, Role, Rule, Source, UnknownRole,
};
pub use set::PolicySet;
