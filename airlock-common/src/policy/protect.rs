//! The paths a governed session may not see: a role's `protect` list.
//!
//! Each entry is a path under the session user's home (`~/…`, the home from
//! the passwd entry, never `$HOME`) or an absolute path. A component may hold
//! the wildcards `*` and `?`, which match within that component only. An
//! entry starting with `!` takes paths back out. A role's entries follow the
//! [defaults](DEFAULT_PROTECT), and the last entry matching a path decides
//! (as in `.gitignore`), so a role can add paths, or give a default back
//! with `!~/.kube`.
//!
//! `airlockctl session-init` expands the list in the user's own view of the
//! file system when the session starts and masks what it finds.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Longest protect entry, in bytes.
pub const MAX_PROTECT_LEN: usize = 1024;
/// Most entries a role may list.
pub const MAX_PROTECT_ENTRIES: usize = 256;

/// What every role protects unless it gives an entry back. Credentials a
/// tool finds by itself: cloud and cluster logins, SSH private keys (every
/// file in `~/.ssh` but public keys, `known_hosts`, `config` and
/// `authorized_keys`), registry, forge and database tokens, GnuPG keys.
pub const DEFAULT_PROTECT: &[&str] = &[
    "~/.aws",
    "~/.kube",
    "~/.config/gcloud",
    "~/.azure",
    "~/.ssh/*",
    "!~/.ssh/*.pub",
    "!~/.ssh/known_hosts",
    "!~/.ssh/known_hosts.old",
    "!~/.ssh/config",
    "!~/.ssh/authorized_keys",
    "~/.docker/config.json",
    "~/.netrc",
    "~/.git-credentials",
    "~/.config/gh",
    "~/.config/hub",
    "~/.terraform.d/credentials.tfrc.json",
    "~/.pgpass",
    "~/.gnupg",
    "~/.vault-token",
    "~/.cargo/credentials",
    "~/.cargo/credentials.toml",
    "~/.pypirc",
];

/// Where an entry starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Base {
    /// The session user's home directory (`~/`).
    Home,
    /// The root directory (`/`).
    Root,
}

/// One `protect` entry, validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProtectPattern {
    /// `!`: paths it matches are not masked.
    pub exclude: bool,
    pub base: Base,
    /// Non-empty, neither `.` nor `..`; may hold `*` and `?`.
    pub components: Vec<String>,
}

impl ProtectPattern {
    /// The defaults, parsed.
    pub fn defaults() -> Vec<ProtectPattern> {
        DEFAULT_PROTECT
            .iter()
            .map(|text| text.parse().expect("the default protect entries are valid"))
            .collect()
    }

    /// The directory the entry starts from, given the user's home.
    pub fn base_dir(&self, home: &Path) -> PathBuf {
        match self.base {
            Base::Home => home.to_path_buf(),
            Base::Root => PathBuf::from("/"),
        }
    }

    /// Whether `path` (absolute, normalised) is what this entry names,
    /// with `home` for `~/`.
    pub fn matches(&self, home: &Path, path: &Path) -> bool {
        let Ok(rest) = path.strip_prefix(self.base_dir(home)) else {
            return false;
        };
        let names: Vec<_> = rest.components().collect();
        names.len() == self.components.len()
            && names.iter().zip(&self.components).all(|(name, pattern)| {
                name.as_os_str()
                    .to_str()
                    .is_some_and(|name| wildcard_match(pattern, name))
            })
    }
}

/// Whether `name` matches `pattern`, in which `*` stands for any run of
/// characters and `?` for one.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (pattern, name): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with backtracking to the last `*`.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Whether a component holds a wildcard.
pub fn has_wildcard(component: &str) -> bool {
    component.contains(['*', '?'])
}

impl FromStr for ProtectPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_PROTECT_LEN {
            return Err(format!(
                "a protect entry may be at most {MAX_PROTECT_LEN} bytes"
            ));
        }
        if text.contains('\0') {
            return Err("a protect entry may not contain a NUL byte".into());
        }
        let (exclude, path) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (base, rest) = if let Some(rest) = path.strip_prefix("~/") {
            (Base::Home, rest)
        } else if let Some(rest) = path.strip_prefix('/') {
            (Base::Root, rest)
        } else {
            return Err(format!(
                "protect entry {text:?} must start with `~/` (the session user's home) or `/`"
            ));
        };
        let components: Vec<String> = rest
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        if components.is_empty() {
            return Err(format!(
                "protect entry {text:?} names the whole {}: the agent could not work",
                if base == Base::Home {
                    "home"
                } else {
                    "file system"
                }
            ));
        }
        for component in &components {
            if component == "." || component == ".." {
                return Err(format!(
                    "protect entry {text:?}: `.` and `..` are not allowed"
                ));
            }
            if component.contains("**") {
                return Err(format!(
                    "protect entry {text:?}: `**` is not supported; `*` matches within one \
                     path component"
                ));
            }
        }
        Ok(ProtectPattern {
            exclude,
            base,
            components,
        })
    }
}

impl fmt::Display for ProtectPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exclude {
            f.write_str("!")?;
        }
        f.write_str(match self.base {
            Base::Home => "~/",
            Base::Root => "/",
        })?;
        f.write_str(&self.components.join("/"))
    }
}

impl serde::Serialize for ProtectPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ProtectPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl zbus::zvariant::Type for ProtectPattern {
    const SIGNATURE: &'static zbus::zvariant::Signature = String::SIGNATURE;
}

/// Which of `candidates` the list masks: the last entry matching a path
/// decides, and a path no entry matches is not masked.
pub fn is_protected(list: &[ProtectPattern], home: &Path, path: &Path) -> bool {
    list.iter()
        .rev()
        .find(|p| p.matches(home, path))
        .is_some_and(|p| !p.exclude)
}

/// A role's whole list: the defaults, then its own entries.
pub fn with_defaults(own: &[ProtectPattern]) -> Vec<ProtectPattern> {
    let mut list = ProtectPattern::defaults();
    list.extend(own.iter().cloned());
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ProtectPattern {
        text.parse().unwrap()
    }

    #[test]
    fn entries_parse_and_print_back() {
        for text in ["~/.aws", "!~/.ssh/*.pub", "/run/secrets/x", "~/a/b?c/*"] {
            assert_eq!(p(text).to_string(), text);
        }
        assert_eq!(p("~//.aws/").to_string(), "~/.aws");
        assert!(ProtectPattern::defaults().len() == DEFAULT_PROTECT.len());
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        for (text, why) in [
            (".aws", "must start with"),
            ("$HOME/.aws", "must start with"),
            ("~", "must start with"),
            ("~/", "whole home"),
            ("/", "whole file system"),
            ("~/../etc", "`..`"),
            ("~/./x", "`.`"),
            ("~/**/id_rsa", "`**`"),
            ("~/a\0b", "NUL"),
        ] {
            let err = text.parse::<ProtectPattern>().unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
        assert!("~/x".repeat(400).parse::<ProtectPattern>().is_err());
    }

    #[test]
    fn wildcards_match_within_a_component() {
        assert!(wildcard_match("id_*", "id_rsa"));
        assert!(wildcard_match("id_*", "id_"));
        assert!(wildcard_match("*.pub", "id_rsa.pub"));
        assert!(!wildcard_match("*.pub", "id_rsa"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*a*b*", "xxaxxbxx"));
        assert!(!wildcard_match("*a*b", "xxbxxa"));
        assert!(wildcard_match("*", ""));
        let home = Path::new("/home/u");
        assert!(!p("~/.ssh/*").matches(home, Path::new("/home/u/.ssh/a/b")));
        assert!(!p("~/.ssh/*").matches(home, Path::new("/home/u/.ssh")));
        assert!(p("/run/x").matches(home, Path::new("/run/x")));
    }

    #[test]
    fn the_last_matching_entry_decides() {
        let home = Path::new("/home/u");
        let list = ProtectPattern::defaults();
        let protected = |path: &str| is_protected(&list, home, Path::new(path));
        assert!(protected("/home/u/.aws"));
        assert!(protected("/home/u/.ssh/id_ed25519"));
        assert!(protected("/home/u/.ssh/deploy-key"));
        assert!(!protected("/home/u/.ssh/id_ed25519.pub"));
        assert!(!protected("/home/u/.ssh/known_hosts"));
        assert!(!protected("/home/u/.ssh/config"));
        assert!(!protected("/home/u/.bashrc"));
        assert!(!protected("/home/other/.aws"));

        let list = with_defaults(&[p("!~/.kube"), p("~/.ssh/config"), p("~/secrets")]);
        let protected = |path: &str| is_protected(&list, home, Path::new(path));
        assert!(!protected("/home/u/.kube"));
        assert!(protected("/home/u/.ssh/config"));
        assert!(protected("/home/u/secrets"));
        assert!(protected("/home/u/.aws"));
    }

    #[test]
    fn entries_travel_as_strings() {
        let list = vec![p("~/.aws"), p("!~/.ssh/*.pub")];
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(json, r#"["~/.aws","!~/.ssh/*.pub"]"#);
        let back: Vec<ProtectPattern> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, list);
        assert!(serde_json::from_str::<Vec<ProtectPattern>>(r#"["relative"]"#).is_err());
        assert_eq!(
            <Vec<ProtectPattern> as zbus::zvariant::Type>::SIGNATURE.to_string(),
            "as"
        );
    }
}

#[cfg(test)]
mod load_tests {
    use std::path::PathBuf;

    use crate::policy::PolicySet;

    fn load(roles: &str) -> Result<PolicySet, Vec<String>> {
        PolicySet::from_sources(&[(PathBuf::from("roles.toml"), roles.to_owned())])
            .map_err(|d| d.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_role_lists_protect_entries_and_bad_ones_are_reported_where_written() {
        let set = load("[[role]]\nid = \"r\"\nprotect = [\"~/.vault\", \"!~/.kube\"]\n").unwrap();
        let role = set.role("r").unwrap();
        let own: Vec<String> = role.protect.iter().map(ToString::to_string).collect();
        assert_eq!(own, ["~/.vault", "!~/.kube"]);
        let none = load("[[role]]\nid = \"r\"\n").unwrap();
        assert!(none.role("r").unwrap().protect.is_empty());

        let errors =
            load("[[role]]\nid = \"r\"\nprotect = [\"~/ok\",\n  \"relative\", 3]\n").unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].starts_with("roles.toml:4:3:"), "{errors:#?}");
        assert!(errors[0].contains("must start with"), "{errors:#?}");
        assert!(errors[1].contains("a path must be a string"), "{errors:#?}");
        assert!(load("[[role]]\nid = \"r\"\nprotect = \"~/.aws\"\n").is_err());
    }
}
