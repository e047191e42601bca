//! `airlockctl policy check|validate|reload`.

use std::path::{Path, PathBuf};

use airlock_common::policy::{Action, CommandLine, PolicySet};

use crate::bus;

/// Exit status of `policy check` for each decision.
pub fn exit_code(decision: Action) -> i32 {
    match decision {
        Action::Allow => 0,
        Action::Approve => 2,
        Action::Block => 3,
    }
}

/// What `policy check` prints about one decision.
struct Shown<'a> {
    decision: Action,
    /// The matching rule's command and policy, none for the role default.
    rule: Option<(&'a str, &'a str)>,
    source: &'a str,
    /// What the rule skipped to match (tool-aware matching).
    skipped: &'a [String],
    /// Why the command is refused without a rule, empty otherwise.
    refusal: &'a str,
}

fn print_decision(shown: Shown) {
    println!("{}", shown.decision.as_str());
    match (shown.rule, shown.refusal.is_empty()) {
        (Some((rule, policy)), _) => println!("  rule:   {rule} (policy {policy})"),
        (None, false) => println!("  refused: {}", shown.refusal),
        (None, true) => println!("  rule:   (none matched; role default)"),
    }
    if !shown.skipped.is_empty() {
        let options = shown.skipped.iter().all(|unit| unit.starts_with('-'));
        let what = if options { "options" } else { "arguments" };
        println!("  skipped {what}: {}", shown.skipped.join(", "));
    }
    if !shown.source.is_empty() && shown.refusal.is_empty() {
        println!("  source: {}", shown.source);
    }
}

/// The directories of `PATH`, as the enforcer searches them for the files
/// rule heads name: the usable ones, as many as the gateway keeps, so a long
/// `PATH` is neither refused nor explained differently than enforced.
pub fn search_path() -> Vec<String> {
    let entries = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .filter_map(|d| d.to_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    airlock_common::validate::usable_search_path(entries)
}

/// Resolves `argv[0]` the way `execvp` would, then follows symlinks, so that
/// rules naming a real executable (or a symlink's target) match.
pub fn resolve_executable(argv0: &str) -> Option<PathBuf> {
    let candidate = if argv0.contains('/') {
        PathBuf::from(argv0)
    } else {
        std::env::var_os("PATH")
            .map(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(argv0))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.is_file())?
    };
    std::fs::canonicalize(candidate).ok()
}

pub async fn check(policies: Option<&Path>, role: &str, argv: &[String]) -> anyhow::Result<i32> {
    match policies {
        Some(dir) => {
            let set = PolicySet::load_dir(dir).map_err(|diagnostics| {
                let lines: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
                anyhow::anyhow!(
                    "the policy set in {} is invalid:\n{}",
                    dir.display(),
                    lines.join("\n")
                )
            })?;
            let executable = argv.first().and_then(|a| resolve_executable(a));
            // The names the kernel would also know this file by: a copy or
            // hard link of a governed binary is judged as that binary.
            let aliases = match (&executable, set.effective_rules(role)) {
                (Some(executable), Ok(rules)) => {
                    let search_path = search_path();
                    let heads = rules
                        .iter()
                        .filter_map(|r| r.words.first().map(String::as_str));
                    airlock_common::kernel::identity::aliases(executable, heads, &search_path)
                }
                _ => Vec::new(),
            };
            let cmd = CommandLine {
                argv,
                executable: executable.as_deref(),
                aliases: &aliases,
            };
            let decision = set.evaluate(role, &cmd)?;
            let action = decision.action;
            let refusal = decision
                .refusal
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let source = match &decision.rule {
                Some(rule) => rule.source.to_string(),
                None => set
                    .role(role)
                    .map(|r| r.source.to_string())
                    .unwrap_or_default(),
            };
            print_decision(Shown {
                decision: action,
                rule: decision
                    .rule
                    .as_ref()
                    .map(|r| (r.command.as_str(), r.policy_id.as_str())),
                source: &source,
                skipped: &decision.skipped,
                refusal: &refusal,
            });
            Ok(exit_code(action))
        }
        None => {
            let gateway = bus::gateway().await?;
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let decision = gateway
                .check_command(role, &argv)
                .await
                .map_err(|e| bus::explain("policy check", e))?;
            let rule = decision.rule.as_deref().map(|rule| {
                let policy = decision.policy.as_deref().unwrap_or_default();
                (rule, policy)
            });
            print_decision(Shown {
                decision: decision.decision,
                rule,
                source: &decision.source,
                skipped: &decision.skipped,
                refusal: &decision.refusal,
            });
            Ok(exit_code(decision.decision))
        }
    }
}

pub fn validate(dir: &Path) -> anyhow::Result<i32> {
    match PolicySet::load_dir(dir) {
        Ok(set) => {
            println!(
                "{}: valid ({} policies, {} roles, {} tool grammars)",
                dir.display(),
                set.policies().len(),
                set.roles().len(),
                set.grammars().len()
            );
            Ok(0)
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            eprintln!(
                "{}: {} error(s); this set would not be applied",
                dir.display(),
                diagnostics.len()
            );
            Ok(1)
        }
    }
}

pub async fn reload() -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    let message = gateway
        .reload_policy()
        .await
        .map_err(|e| bus::explain("policy reload", e))?;
    println!("{message}");
    Ok(0)
}
