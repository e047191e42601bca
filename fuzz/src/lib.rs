//! Invariants the fuzz targets share: what must hold of anything the policy
//! loader accepts.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use airlock_common::kernel::compile::{add_pattern, Ending};
use airlock_common::kernel::{HashKey, MAX_WORDS, MAX_WORD_LEN};
use airlock_common::limits::MAX_POLICY_ID_LEN;
use airlock_common::policy::{parse_command, CommandLine, Diagnostic, PolicySet};

/// Loads `files` and checks the result: a set that loads is valid in every
/// way the loader promises (and compiles for the kernel), a set that does not
/// comes with diagnostics that point into the files. Loading is
/// deterministic. Returns the set, if it loaded.
pub fn load_and_check(files: &[(PathBuf, String)]) -> Option<PolicySet> {
    let first = PolicySet::from_sources(files);
    let again = PolicySet::from_sources(files);
    assert_eq!(format!("{first:?}"), format!("{again:?}"), "loading is not deterministic");
    match first {
        Ok(set) => {
            check_set(&set);
            Some(set)
        }
        Err(diagnostics) => {
            check_diagnostics(files, &diagnostics);
            None
        }
    }
}

fn valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=MAX_POLICY_ID_LEN).contains(&bytes.len())
        && allowed(&bytes[0])
        && bytes[1..].iter().all(|b| allowed(b) || *b == b'_' || *b == b'-')
}

fn check_set(set: &PolicySet) {
    let mut policy_ids = HashSet::new();
    for policy in set.policies() {
        assert!(valid_id(&policy.id), "loaded policy id {:?}", policy.id);
        assert!(policy_ids.insert(policy.id.as_str()), "duplicate policy {:?}", policy.id);
        for rule in &policy.rules {
            assert_eq!(rule.policy_id, policy.id);
            assert!(!rule.words.is_empty() && rule.words.len() <= MAX_WORDS, "{rule:?}");
            assert!(rule.words.iter().all(|w| w.len() <= MAX_WORD_LEN), "{rule:?}");
            assert_eq!(rule.command, rule.words.join(" "));
            assert_eq!(parse_command(&rule.command).as_ref(), Ok(&rule.words));
        }
    }
    let mut role_ids = HashSet::new();
    for role in set.roles() {
        assert!(valid_id(&role.id), "loaded role id {:?}", role.id);
        assert!(role_ids.insert(role.id.as_str()), "duplicate role {:?}", role.id);
        assert!(!role.default_grant_ttl.is_zero());
        assert!(role.default_grant_ttl <= role.max_grant_ttl, "{role:?}");
        for policy in &role.policies {
            assert!(policy_ids.contains(policy.as_str()), "{role:?} names {policy:?}");
        }
        let rules = set.effective_rules(&role.id).expect("a loaded role is known");
        let mut nodes = BTreeMap::new();
        for (index, rule) in rules.iter().enumerate() {
            // What loads compiles for the kernel.
            add_pattern(
                &mut nodes,
                1,
                &HashKey { k0: 1, k1: 2 },
                &rule.words,
                Ending::Rule {
                    action: rule.action,
                    index: index as u32,
                },
            )
            .unwrap_or_else(|e| panic!("loaded rule {rule:?} does not compile: {e}"));
            // A rule's own command is judged at least as strictly as the rule.
            let cmd = CommandLine {
                argv: &rule.words,
                executable: None,
                aliases: &[],
            };
            let decision = set.evaluate(&role.id, &cmd).expect("known role");
            assert!(decision.action >= rule.action, "{rule:?} gave {decision:?}");
        }
    }
}

fn check_diagnostics(files: &[(PathBuf, String)], diagnostics: &[Diagnostic]) {
    assert!(!diagnostics.is_empty(), "a refused set has no diagnostics");
    for d in diagnostics {
        assert!(d.line >= 1 && d.column >= 1, "{d}");
        assert!(!d.message.trim().is_empty(), "{d}");
        let text = files
            .iter()
            .find(|(path, _)| path == &d.file)
            .map(|(_, text)| text.as_str())
            .unwrap_or_else(|| panic!("diagnostic for a file not given: {d}"));
        let lines = text.split('\n').count();
        assert!(d.line <= lines, "{d}: the file has {lines} lines");
        // Columns count characters (bytes, from some parsers): either way
        // no more than the line's bytes, plus one for its end.
        let width = text.split('\n').nth(d.line - 1).map_or(0, str::len);
        assert!(d.column <= width + 1, "{d}: the line has {width} bytes");
    }
    assert!(
        diagnostics
            .windows(2)
            .all(|w| (&w[0].file, w[0].line, w[0].column) <= (&w[1].file, w[1].line, w[1].column)),
        "diagnostics are not sorted"
    );
}

/// The file name a fuzz input is loaded as.
pub fn named(name: &str, text: &str) -> (PathBuf, String) {
    (Path::new(name).to_path_buf(), text.to_owned())
}

/// A scratch directory for targets that work through files, on tmpfs when
/// there is one; one per target and process, made once.
pub fn scratch(target: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() { base.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("airlock-fuzz-{target}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}
