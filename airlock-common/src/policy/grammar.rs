//! Tool grammars: how a tool writes its options, and which of them take a
//! value, so that block and approve rules can skip a command's options
//! (`kubectl -n prod delete` is `kubectl delete` with `-n prod` skipped).
//!
//! Grammars are data, `[[tool]]` tables in the policy directory (the
//! shipped table is `policies/tools.toml`); an administrator adds tools or
//! options there. Only options that take a value need listing: any other
//! word starting with `-` is read as an option without one.

use std::fmt;
use std::str::FromStr;

use super::model::Source;
use crate::kernel::{MAX_WORD_LEN, WORD_VISIBLE};

/// Most options one tool may list.
pub const MAX_VALUE_OPTIONS: usize = 512;
/// Longest option (dashes included) or tool name.
pub const MAX_OPTION_LEN: usize = 64;

/// How a tool writes its options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionStyle {
    /// getopt, cobra, argparse: `-abc` is three short options (the first
    /// that takes a value takes the rest of the word, or the next word),
    /// `--name` is a long one, `--name=value` carries its value.
    Gnu,
    /// Go's `flag` package (terraform): `-name` and `--name` are the same
    /// long option; no clusters.
    Go,
}

impl OptionStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            OptionStyle::Gnu => "gnu",
            OptionStyle::Go => "go",
        }
    }
}

impl fmt::Display for OptionStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OptionStyle {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "gnu" => Ok(OptionStyle::Gnu),
            "go" => Ok(OptionStyle::Go),
            other => Err(format!(
                "unknown option style {other:?} (expected \"gnu\" or \"go\")"
            )),
        }
    }
}

/// One tool's grammar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grammar {
    /// The executable's name, as the head of a rule names it (a rule head
    /// that is an absolute path uses the grammar of its basename).
    pub name: String,
    pub style: OptionStyle,
    /// The options that take a value, as written (`-n`, `--namespace`;
    /// Go style: `-chdir`).
    pub value_options: Vec<String>,
    pub source: Source,
}

/// What an option says of the word after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// It is the option's value.
    Value,
    /// It is not: the option takes none, or carries it (`--a=b`, `-nprod`).
    Free,
    /// It may be: the grammar does not list the option.
    Maybe,
    /// A cluster too long to read whole whose last letter might take a
    /// value: the kernel cannot tell.
    Unknown,
}

/// Checks a tool name: `[A-Za-z0-9][A-Za-z0-9._+-]*`, at most
/// [`MAX_OPTION_LEN`] bytes.
pub fn check_tool_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"._+-".contains(b);
    if bytes.is_empty()
        || bytes.len() > MAX_OPTION_LEN
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes.iter().all(allowed)
    {
        return Err(format!(
            "invalid tool name {name:?}: the executable's name as a rule names it, 1 to \
             {MAX_OPTION_LEN} characters from A-Z, a-z, 0-9, `.`, `_`, `+` and `-`, starting \
             with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks one entry of `value_options` for a tool of `style`.
pub fn check_value_option(style: OptionStyle, option: &str) -> Result<(), String> {
    let name = option.trim_start_matches('-');
    let dashes = option.len() - name.len();
    let graphic = |b: u8| b.is_ascii_graphic() && b != b'=';
    if option.len() > MAX_OPTION_LEN {
        return Err(format!(
            "option {option:?} is longer than {MAX_OPTION_LEN} bytes"
        ));
    }
    if dashes == 0 || dashes > 2 || name.is_empty() || !name.bytes().all(graphic) {
        return Err(format!(
            "invalid option {option:?}: write it as the tool takes it, e.g. \"-n\" or \
             \"--namespace\" (printable characters, no `=` or spaces)"
        ));
    }
    if style == OptionStyle::Gnu && dashes == 1 && name.len() > 1 {
        return Err(format!(
            "option {option:?}: a GNU-style tool reads {option:?} as a cluster of short \
             options; list \"-{}\" alone, or use style = \"go\" for tools whose options are \
             written -name",
            &name[..1]
        ));
    }
    Ok(())
}

impl Grammar {
    /// A grammar from its parts, validated as the policy loader validates a
    /// `[[tool]]` table (the enforcer checks what the gateway sends).
    pub fn new(
        name: &str,
        style: OptionStyle,
        value_options: &[String],
        source: Source,
    ) -> Result<Grammar, String> {
        check_tool_name(name)?;
        if value_options.len() > MAX_VALUE_OPTIONS {
            return Err(format!(
                "tool {name:?} lists {} options; at most {MAX_VALUE_OPTIONS}",
                value_options.len()
            ));
        }
        let mut grammar = Grammar {
            name: name.to_owned(),
            style,
            value_options: Vec::new(),
            source,
        };
        for option in value_options {
            check_value_option(style, option)?;
            if grammar.lists(option) {
                return Err(format!("tool {name:?} lists option {option:?} twice"));
            }
            grammar.value_options.push(option.clone());
        }
        Ok(grammar)
    }

    /// Whether `option` is already listed (Go style: in either spelling).
    pub fn lists(&self, option: &str) -> bool {
        self.value_options
            .iter()
            .any(|listed| self.same_option(listed, option))
    }

    fn same_option(&self, a: &str, b: &str) -> bool {
        match self.style {
            OptionStyle::Gnu => a == b,
            OptionStyle::Go => a.trim_start_matches('-') == b.trim_start_matches('-'),
        }
    }

    /// The short options (`-c`) that take a value, as a 256-bit set of
    /// bytes (the kernel's `Tool::short_values`).
    pub fn short_values(&self) -> [u64; 4] {
        let mut set = [0u64; 4];
        if self.style == OptionStyle::Gnu {
            for option in &self.value_options {
                if let [b'-', c] = option.as_bytes() {
                    set[(c >> 6) as usize] |= 1 << (c & 63);
                }
            }
        }
        set
    }

    /// Every way a long option that takes a value may be written: `--name`;
    /// for a Go-style tool `-name` and `--name`.
    pub fn long_value_spellings(&self) -> Vec<String> {
        let mut spellings = Vec::new();
        for option in &self.value_options {
            let name = option.trim_start_matches('-');
            match self.style {
                OptionStyle::Gnu if option.starts_with("--") => spellings.push(option.clone()),
                OptionStyle::Gnu => {}
                OptionStyle::Go => {
                    spellings.push(format!("-{name}"));
                    spellings.push(format!("--{name}"));
                }
            }
        }
        spellings
    }

    fn takes_short_value(&self, b: u8) -> bool {
        self.style == OptionStyle::Gnu
            && self.value_options.iter().any(|o| o.as_bytes() == [b'-', b])
    }

    /// What the option word `word` (it starts with `-`, is not `-` or `--`)
    /// says of the next word. A word longer than the kernel reads is judged
    /// by the bytes it sees.
    pub(crate) fn next_of(&self, word: &str) -> Next {
        let bytes = word.as_bytes();
        let too_long = bytes.len() > MAX_WORD_LEN;
        let seen = &bytes[..bytes.len().min(WORD_VISIBLE)];
        if bytes[1] == b'-' || self.style == OptionStyle::Go {
            if seen[1..].contains(&b'=') {
                Next::Free
            } else if !too_long && self.long_value_spellings().iter().any(|o| o == word) {
                Next::Value
            } else {
                Next::Maybe
            }
        } else {
            // All the bytes after the dash but the last one seen (of a word
            // too long to read whole, the kernel sees WORD_VISIBLE bytes).
            let before_last = &seen[1..seen.len() - 1];
            if before_last.iter().any(|&b| self.takes_short_value(b)) {
                Next::Free
            } else if too_long {
                if self.short_values() != [0; 4] {
                    Next::Unknown
                } else {
                    Next::Maybe
                }
            } else if self.takes_short_value(bytes[bytes.len() - 1]) {
                Next::Value
            } else {
                Next::Maybe
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn grammar(style: OptionStyle, options: &[&str]) -> Grammar {
        let options: Vec<String> = options.iter().map(|o| (*o).to_owned()).collect();
        let source = Source {
            file: PathBuf::from("tools.toml"),
            line: 1,
        };
        Grammar::new("tool", style, &options, source).unwrap()
    }

    #[test]
    fn names_and_options_are_checked() {
        for good in [
            "kubectl",
            "terraform",
            "x",
            "aws2",
            "docker-compose",
            "g++",
            "a.b_c",
        ] {
            assert!(check_tool_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "/usr/bin/x", &"x".repeat(65)] {
            assert!(check_tool_name(bad).is_err(), "{bad:?}");
        }
        for good in ["-n", "--namespace", "-C", "--kube-context", "-?"] {
            assert!(check_value_option(OptionStyle::Gnu, good).is_ok(), "{good}");
        }
        for bad in [
            "n",
            "-",
            "--",
            "---x",
            "--a=b",
            "-n x",
            "--é",
            &format!("--{}", "x".repeat(63)),
        ] {
            assert!(
                check_value_option(OptionStyle::Gnu, bad).is_err(),
                "{bad:?}"
            );
        }
        let err = check_value_option(OptionStyle::Gnu, "-chdir").unwrap_err();
        assert!(
            err.contains("cluster of short options") && err.contains("\"-c\""),
            "{err}"
        );
        assert!(check_value_option(OptionStyle::Go, "-chdir").is_ok());
        assert!(check_value_option(OptionStyle::Go, "--chdir").is_ok());
        let twice = vec!["-chdir".to_owned(), "--chdir".to_owned()];
        let source = Source {
            file: PathBuf::from("t"),
            line: 1,
        };
        let err = Grammar::new("t", OptionStyle::Go, &twice, source).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        assert_eq!("go".parse::<OptionStyle>(), Ok(OptionStyle::Go));
        assert!("posix"
            .parse::<OptionStyle>()
            .unwrap_err()
            .contains("\"gnu\" or \"go\""));
    }

    #[test]
    fn what_an_option_says_of_the_next_word() {
        let kubectl = grammar(OptionStyle::Gnu, &["-n", "--namespace", "--context"]);
        for (word, next) in [
            ("-n", Next::Value),
            ("-nprod", Next::Free),
            ("-n=prod", Next::Free),
            ("-wn", Next::Value),
            ("-nw", Next::Free),
            ("-w", Next::Maybe),
            ("--namespace", Next::Value),
            ("--namespace=prod", Next::Free),
            ("--context", Next::Value),
            ("--contex", Next::Maybe),
            ("--force", Next::Maybe),
        ] {
            assert_eq!(kubectl.next_of(word), next, "{word}");
        }
        let long = format!("-{}", "w".repeat(300));
        assert_eq!(kubectl.next_of(&long), Next::Unknown);
        let long = format!("-n{}", "w".repeat(300));
        assert_eq!(kubectl.next_of(&long), Next::Free);
        let terraform = grammar(OptionStyle::Go, &["-chdir"]);
        for (word, next) in [
            ("-chdir", Next::Value),
            ("--chdir", Next::Value),
            ("-chdir=infra", Next::Free),
            ("-auto-approve", Next::Maybe),
            ("-c", Next::Maybe),
        ] {
            assert_eq!(terraform.next_of(word), next, "{word}");
        }
        assert_eq!(terraform.short_values(), [0; 4]);
        assert_eq!(
            terraform.next_of(&format!("-{}", "w".repeat(300))),
            Next::Maybe
        );
        assert_eq!(
            terraform.long_value_spellings(),
            ["-chdir".to_owned(), "--chdir".to_owned()]
        );
        assert_eq!(kubectl.long_value_spellings(), ["--namespace", "--context"]);
        assert_eq!(kubectl.short_values()[1], 1 << (b'n' & 63));
    }
}
