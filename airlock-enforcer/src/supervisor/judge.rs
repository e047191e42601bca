//! The supervisor's judgement of an exec: the heads the kernel's
//! `bprm_check_security` program would fill, from the file the enforcer
//! opened, and then the very same walk (`Evaluation::judge`) over the
//! session's compiled tables, which the enforcer keeps beside the maps.

use airlock_common::kernel::identity::kernel_dev;
use airlock_common::kernel::{
    basename_start, hash_word, Aliases, Command, Evaluation, HashKey, IdentKey, Node, NodeKey,
    Nodes, OptionKey, Steps, Tool, ToolKey, Verdict, WordInfo, ACTION_BLOCK, HEAD_ARGV0,
    HEAD_CONTENT_ALIASES, HEAD_FILE_NAME, HEAD_INODE_ALIASES, HEAD_INVOKED_AS, IDENT_CONTENT,
    IDENT_INODE, MAX_WORD_LEN, NO_RULE,
};

use super::target::{ExecCall, Executable};
use crate::sessions::Tables;

impl Nodes for Tables<'_> {
    fn node(&self, key: &NodeKey) -> Option<Node> {
        self.nodes.get(key).copied()
    }
    fn tool(&self, key: &ToolKey) -> Option<Tool> {
        self.tools.tools.get(key).copied()
    }
    fn takes_value(&self, key: &OptionKey) -> bool {
        self.tools.options.contains(key)
    }
}

/// In place, as the property test runs them.
impl Steps for Tables<'_> {}

/// The call's words, read on demand as the program reads them.
struct Words<'a> {
    key: &'a HashKey,
    call: &'a ExecCall,
}

impl Command for Words<'_> {
    fn argc(&self) -> usize {
        self.call.argc
    }

    fn read(&mut self, i: usize, info: &mut WordInfo) -> bool {
        match self.call.argv.get(i) {
            Some(Some(word)) => {
                info.read(self.key, word);
                true
            }
            _ => false,
        }
    }
}

/// The hash of `bytes`'s basename, as the program hashes `argv[0]` and
/// `bprm->filename`: nothing when the whole is longer than a word.
fn basename_hash(key: &HashKey, bytes: &[u8]) -> Option<u64> {
    if bytes.len() > MAX_WORD_LEN {
        return None;
    }
    let start = basename_start(bytes.len(), |i| bytes.get(i).copied().unwrap_or(0));
    Some(hash_word(key, &bytes[start..]))
}

fn aliases(tables: &Tables<'_>, key: IdentKey) -> Option<Aliases> {
    tables.idents.get(&key).copied()
}

/// Judges `call` of `exe` in the session, at boot-clock time `now_ns`.
/// `None` when the kernel's first stage would not decide it (arguments it
/// cannot trust, and no rule on the executable alone): the exec-commit
/// program judges that one.
pub fn judge(
    tables: &Tables<'_>,
    key: &HashKey,
    call: &ExecCall,
    exe: &Executable,
    now_ns: u64,
) -> Option<Verdict> {
    let mut eval = Evaluation::default();
    let trusted = call.argv_readable;
    if trusted {
        if let Some(hash) = call.argv.first().and_then(|w| w.as_deref()) {
            if let Some(hash) = basename_hash(key, hash) {
                eval.set_head(HEAD_ARGV0, hash);
            }
        }
    }
    if exe.name.len() <= MAX_WORD_LEN {
        eval.set_head(HEAD_FILE_NAME, hash_word(key, &exe.name));
    }
    if let Some(hash) = basename_hash(key, &call.filename()) {
        eval.set_head(HEAD_INVOKED_AS, hash);
    }
    let session = tables.info.index;
    let by_inode = IdentKey {
        session,
        kind: IDENT_INODE,
        a: kernel_dev(exe.dev),
        b: exe.ino,
    };
    if let Some(found) = aliases(tables, by_inode) {
        eval.add_aliases(HEAD_INODE_ALIASES, &found);
    }
    // Hashing the first bytes is the costly part: only when some governed
    // binary has this very size.
    let same_size = IdentKey {
        session,
        kind: IDENT_CONTENT,
        a: exe.size,
        b: 0,
    }..=IdentKey {
        session,
        kind: IDENT_CONTENT,
        a: exe.size,
        b: u64::MAX,
    };
    if tables.idents.range(same_size).next().is_some() {
        let by_content = IdentKey {
            session,
            kind: IDENT_CONTENT,
            a: exe.size,
            b: hash_word(key, &exe.head),
        };
        if let Some(found) = aliases(tables, by_content) {
            eval.add_aliases(HEAD_CONTENT_ALIASES, &found);
        }
    }
    let untrusted = ExecCall {
        path: Vec::new(),
        dirfd: None,
        empty_path: false,
        argv: Vec::new(),
        argc: 1,
        argv_readable: false,
    };
    let mut words = Words {
        key,
        call: if trusted { call } else { &untrusted },
    };
    let verdict = eval.judge(&tables.info, now_ns, &mut words, tables);
    // Without trustworthy arguments only a rule that blocks the executable
    // itself is certain (as in the kernel's first stage).
    let certain = verdict.action == ACTION_BLOCK && verdict.rule != NO_RULE;
    if !(trusted || verdict.permits() || certain) {
        return None;
    }
    Some(verdict)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use airlock_common::dbus::RuleSpec;
    use airlock_common::kernel::compile::{action_code, add_pattern, max_depth, Ending, Tools};
    use airlock_common::kernel::{SessionInfo, BINPRM_BUF};
    use airlock_common::policy::{Action, Grammar, OptionStyle, Source};

    use super::*;

    const KEY: HashKey = HashKey { k0: 3, k1: 4 };

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    fn call(argv: &[&str], path: &str) -> ExecCall {
        ExecCall {
            path: path.as_bytes().to_vec(),
            dirfd: None,
            empty_path: false,
            argv: argv.iter().map(|w| Some(w.as_bytes().to_vec())).collect(),
            argc: argv.len(),
            argv_readable: true,
        }
    }

    /// An executable of 100 bytes, all 7s at its head.
    fn exe(name: &str, ino: u64) -> Executable {
        Executable {
            name: name.as_bytes().to_vec(),
            dev: 0x803,
            ino,
            size: 100,
            head: [7; BINPRM_BUF],
        }
    }

    #[test]
    fn a_rule_refuses_under_every_name_the_kernel_knows_and_the_rest_runs() {
        let mut nodes = BTreeMap::new();
        for (index, (action, rule)) in [
            (Action::Block, "terraform apply"),
            (Action::Approve, "terraform plan"),
        ]
        .into_iter()
        .enumerate()
        {
            let ending = Ending::Rule {
                action,
                index: index as u32,
            };
            add_pattern(&mut nodes, 1, &KEY, &words(rule), ending).unwrap();
        }
        let mut idents = BTreeMap::new();
        let terraform = Aliases {
            count: 1,
            _pad: 0,
            heads: [hash_word(&KEY, b"terraform"), 0, 0, 0],
        };
        idents.insert(
            IdentKey {
                session: 1,
                kind: IDENT_INODE,
                a: kernel_dev(0x803),
                b: 42,
            },
            terraform,
        );
        idents.insert(
            IdentKey {
                session: 1,
                kind: IDENT_CONTENT,
                a: 100,
                b: hash_word(&KEY, &[7; BINPRM_BUF]),
            },
            terraform,
        );
        let rules: Vec<RuleSpec> = Vec::new();
        let mut tools = Tools::default();
        let source = Source {
            file: "tools.toml".into(),
            line: 1,
        };
        let chdir = ["-chdir".to_owned()];
        let grammar = Grammar::new("terraform", OptionStyle::Go, &chdir, source).unwrap();
        tools.add(1, &KEY, "terraform", &grammar);
        let tables = Tables {
            info: SessionInfo {
                index: 1,
                flags: 0,
                default_action: action_code(Action::Allow) as u32,
                max_depth: max_depth([2, 2]),
            },
            nodes: &nodes,
            idents: &idents,
            tools: &tools,
            rules: &rules,
        };
        let judged = |call: &ExecCall, exe: &Executable| judge(&tables, &KEY, call, exe, 0);
        let block = |v: Option<Verdict>| v.map(|v| (v.action, v.rule));
        let blocked = Some((ACTION_BLOCK, 0));
        // By argv[0], by the real file's name, by the invoked path, by inode.
        let other = exe("other", 1);
        assert_eq!(
            block(judged(&call(&["terraform", "apply"], "/x/y"), &other)),
            blocked
        );
        let by_name = judged(&call(&["tf", "apply"], "/x/y"), &exe("terraform", 1));
        assert_eq!(block(by_name), blocked);
        let invoked = judged(&call(&["tf", "apply"], "/bin/terraform"), &other);
        assert_eq!(block(invoked), blocked);
        let hardlink = judged(&call(&["tf", "apply"], "/x/tf"), &exe("tf", 42));
        assert_eq!(block(hardlink), blocked);
        // By content: same size and first bytes, another inode.
        let copy = judged(&call(&["tf", "apply"], "/x/tf"), &exe("tf", 9));
        assert_eq!(block(copy), blocked);
        let mut changed = exe("tf", 9);
        changed.head[0] = 0;
        let changed = judged(&call(&["tf", "apply"], "/x/tf"), &changed);
        assert!(changed.unwrap().permits(), "another program");
        // The tool's options are skipped, their values too; a word too long
        // to read whole is skipped as the program skips it.
        for argv in [
            vec!["terraform", "-chdir=infra", "apply"],
            vec!["terraform", "-chdir", "infra", "apply"],
            vec!["terraform", "-no-color", "apply"],
        ] {
            let judged = judged(&call(&argv, "/x/terraform"), &other);
            assert_eq!(block(judged), blocked, "{argv:?}");
        }
        let long = format!("-chdir={}", "d".repeat(300));
        let judged_long = judged(
            &call(&["terraform", &long, "apply"], "/x/terraform"),
            &other,
        );
        assert_eq!(block(judged_long), blocked, "an option longer than a word");
        let init = judged(
            &call(&["terraform", "-chdir", "apply", "init"], "/x/t"),
            &other,
        );
        assert!(init.unwrap().permits(), "apply is -chdir's value here");
        // Allowed arguments run; approve is refused until a grant.
        let init = judged(&call(&["terraform", "init"], "/x/terraform"), &other).unwrap();
        assert!(init.permits());
        let plan = judged(&call(&["terraform", "plan"], "/x/terraform"), &other).unwrap();
        assert!(!plan.permits());
        // Arguments it cannot read: only a rule on the executable alone
        // decides here; the exec-commit program judges the rest.
        let mut unread = call(&["terraform", "apply"], "/x/terraform");
        unread.argv_readable = false;
        let unread = judged(&unread, &other);
        assert!(unread.is_none_or(|v| v.permits()), "{unread:?}");
    }
}
