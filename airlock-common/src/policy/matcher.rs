//! Rule commands: their syntax, and whether one matches a command line.
//!
//! A rule command is whitespace-separated words. The first word names the
//! executable, either by bare name (matched against the basename of `argv[0]`
//! or of the real executable) or by absolute path (matched against the real
//! executable exactly). The remaining words must equal the command's next
//! arguments one by one, so `terraform plan` matches `terraform plan -out=x`
//! but not `terraform init`.

use std::ffi::OsStr;

use super::model::CommandLine;
use crate::kernel::{MAX_WORDS, MAX_WORD_LEN};

/// Splits a rule command into words and checks that its first word is a bare
/// name or a normalised absolute path. A relative path (`./x`, `bin/x`) is
/// refused because it would depend on the agent's working directory.
pub fn parse_command(text: &str) -> Result<Vec<String>, String> {
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let Some(first) = words.first() else {
        return Err("empty command".to_owned());
    };
    // The kernel walks at most MAX_WORDS words of a command, each read into
    // a fixed buffer: a longer rule could never be enforced there.
    if words.len() > MAX_WORDS {
        return Err(format!(
            "command {text:?} has {} words; at most {MAX_WORDS} can be enforced",
            words.len()
        ));
    }
    if let Some(long) = words.iter().find(|w| w.len() > MAX_WORD_LEN) {
        return Err(format!(
            "command {text:?}: the word {:?}… is longer than {MAX_WORD_LEN} bytes, which cannot be enforced",
            long.chars().take(32).collect::<String>()
        ));
    }
    if let Some(rest) = first.strip_prefix('/') {
        // The executable path is canonical, so a path with `//`, `.` or `..`
        // components (or a trailing `/`) could never match it.
        let normal = rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
        if !normal {
            return Err(format!(
                "command {text:?}: {first:?} is not a normalised absolute path to an executable \
                 (no empty, `.` or `..` components, no trailing `/`)"
            ));
        }
    } else if first.contains('/') {
        return Err(format!(
            "command {text:?}: the executable must be a bare name or an absolute path, \
             not the relative path {first:?}"
        ));
    }
    Ok(words)
}

/// Whether a rule (given as its words) matches a command line strictly: its
/// head names the executable and its other words are the command's next
/// arguments. This is how allow rules match; block and approve rules also
/// match tool-aware ([`aware`](super::aware)).
///
/// Pure and total: an empty rule or an empty `argv` matches nothing.
pub fn rule_matches(rule_words: &[String], cmd: &CommandLine) -> bool {
    let (Some((head, rule_args)), Some((_, args))) =
        (rule_words.split_first(), cmd.argv.split_first())
    else {
        return false;
    };
    head_matches(head, cmd)
        && rule_args.len() <= args.len()
        && rule_args.iter().zip(args).all(|(want, got)| want == got)
}

/// Whether a rule head names the command's executable.
pub(crate) fn head_matches(head: &str, cmd: &CommandLine) -> bool {
    let Some(argv0) = cmd.argv.first() else {
        return false;
    };
    let known_as = cmd.aliases.iter().any(|alias| alias == head);
    if head.starts_with('/') {
        // An absolute rule names one file: trust the resolved executable
        // when there is one, and fall back to argv[0] only without it.
        known_as
            || match cmd.executable {
                Some(executable) => executable.as_os_str() == OsStr::new(head),
                None => argv0 == head,
            }
    } else {
        // Either name may match: with strongest-wins this can only make a
        // decision stricter, and it catches aliases such as `tf -> terraform`.
        known_as
            || basename(argv0) == head
            || cmd
                .executable
                .and_then(|path| path.file_name())
                .is_some_and(|name| name == OsStr::new(head))
    }
}

/// The part of `argv[0]` after its last `/`, as `execvp` would look it up.
pub fn basename(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    /// Matches `rule` (as text) against `argv` with an optional executable.
    fn matches(rule: &str, argv: &[&str], executable: Option<&str>) -> bool {
        let words = parse_command(rule).expect("valid rule");
        let argv = strings(argv);
        let cmd = CommandLine {
            argv: &argv,
            executable: executable.map(Path::new),
            aliases: &[],
        };
        rule_matches(&words, &cmd)
    }

    #[test]
    fn bare_name_matches_every_invocation() {
        assert!(matches("terraform", &["terraform"], None));
        assert!(matches("terraform", &["terraform", "init"], None));
        assert!(matches(
            "terraform",
            &["terraform", "apply", "-auto-approve"],
            None
        ));
        assert!(!matches("terraform", &["terraform-docs"], None));
        assert!(!matches("terraform", &["kubectl", "terraform"], None));
    }

    #[test]
    fn remaining_words_are_an_element_wise_prefix() {
        assert!(matches(
            "terraform plan",
            &["terraform", "plan", "-out=tfplan"],
            None
        ));
        assert!(matches("terraform plan", &["terraform", "plan"], None));
        assert!(!matches("terraform plan", &["terraform", "init"], None));
        assert!(!matches("terraform plan", &["terraform"], None));
        assert!(!matches("terraform plan", &["terraform", "planx"], None));
        assert!(!matches(
            "terraform plan",
            &["terraform", "-chdir=x", "plan"],
            None
        ));
        // Words are compared whole: one argument holding a space is not two.
        assert!(!matches(
            "terraform apply now",
            &["terraform", "apply now"],
            None
        ));
        assert!(matches(
            "aws iam create-role",
            &["aws", "iam", "create-role", "--role-name", "x"],
            None
        ));
    }

    #[test]
    fn argv0_is_reduced_to_its_basename() {
        assert!(matches(
            "terraform apply",
            &["/opt/homebrew/bin/terraform", "apply"],
            None
        ));
        assert!(matches(
            "terraform apply",
            &["./terraform", "apply", "-auto-approve"],
            None
        ));
        assert!(!matches(
            "terraform apply",
            &["/opt/homebrew/bin/terraform", "plan"],
            None
        ));
        assert!(!matches("terraform", &["/opt/terraform/", "apply"], None));
    }

    #[test]
    fn bare_name_also_matches_the_executable_basename() {
        // `tf` is a symlink to terraform: caught through the executable.
        assert!(matches(
            "terraform apply",
            &["tf", "apply"],
            Some("/usr/bin/terraform")
        ));
        // ... and argv[0] still counts when the executable has another name.
        assert!(matches(
            "tf apply",
            &["tf", "apply"],
            Some("/usr/bin/terraform")
        ));
        assert!(!matches(
            "terraform apply",
            &["tf", "apply"],
            Some("/usr/bin/tofu")
        ));
    }

    #[test]
    fn absolute_rule_matches_the_real_executable_exactly() {
        assert!(matches(
            "/usr/bin/curl",
            &["curl", "-s"],
            Some("/usr/bin/curl")
        ));
        assert!(!matches(
            "/usr/bin/curl",
            &["curl"],
            Some("/usr/local/bin/curl")
        ));
        // argv[0] is not consulted when the executable is known.
        assert!(!matches(
            "/usr/bin/curl",
            &["/usr/bin/curl"],
            Some("/usr/local/bin/curl")
        ));
        // Without an executable, argv[0] must be that path exactly.
        assert!(matches("/usr/bin/curl", &["/usr/bin/curl", "x"], None));
        assert!(!matches("/usr/bin/curl", &["curl"], None));
        assert!(!matches("/usr/bin/curl", &["/usr/local/bin/curl"], None));
        assert!(matches(
            "/usr/local/bin/terraform apply",
            &["terraform", "apply", "-auto-approve"],
            Some("/usr/local/bin/terraform")
        ));
        assert!(!matches(
            "/usr/local/bin/terraform apply",
            &["terraform", "plan"],
            Some("/usr/local/bin/terraform")
        ));
    }

    #[test]
    fn empty_inputs_match_nothing() {
        let no_args: Vec<String> = Vec::new();
        let cmd = CommandLine {
            argv: &no_args,
            executable: Some(Path::new("/usr/bin/terraform")),
            aliases: &[],
        };
        assert!(!rule_matches(&strings(&["terraform"]), &cmd));
        let argv = strings(&["terraform"]);
        let cmd = CommandLine {
            argv: &argv,
            executable: None,
            aliases: &[],
        };
        assert!(!rule_matches(&[], &cmd));
    }

    #[test]
    fn command_syntax() {
        assert_eq!(
            parse_command("  terraform \t plan  -out=x ").unwrap(),
            strings(&["terraform", "plan", "-out=x"])
        );
        assert_eq!(
            parse_command("/usr/bin/curl").unwrap(),
            strings(&["/usr/bin/curl"])
        );
        // Later words may be anything, paths included.
        assert!(parse_command("cat ./secrets").is_ok());
        assert_eq!(parse_command("").unwrap_err(), "empty command");
        assert_eq!(parse_command(" \t ").unwrap_err(), "empty command");
        let many = vec!["w"; MAX_WORDS + 1].join(" ");
        assert!(parse_command(&many).unwrap_err().contains("at most 16"));
        assert!(parse_command(&vec!["w"; MAX_WORDS].join(" ")).is_ok());
        let long = format!("tool {}", "x".repeat(MAX_WORD_LEN + 1));
        assert!(parse_command(&long)
            .unwrap_err()
            .contains("longer than 254"));
        assert!(parse_command(&format!("tool {}", "x".repeat(MAX_WORD_LEN))).is_ok());
        for relative in ["./x", "bin/x apply", "x/"] {
            let err = parse_command(relative).unwrap_err();
            assert!(err.contains("bare name or an absolute path"), "{err}");
        }
        for odd in [
            "/",
            "/usr//bin/curl",
            "/usr/bin/../curl",
            "/usr/./curl",
            "/usr/bin/",
        ] {
            let err = parse_command(odd).unwrap_err();
            assert!(err.contains("normalised absolute path"), "{odd}: {err}");
        }
    }
}
