//! The kernel's evaluation, run here on the compiled trie, must decide
//! exactly what the policy engine decides, for generated policies, commands,
//! aliases and grants.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use super::compile::{action_code, add_pattern, max_depth, word_hash, Ending, Tools};
use super::*;
use crate::policy::tests::reference::{self as gen, GenPolicy};
use crate::policy::{basename, Action, CommandLine, PolicySet};

struct Trie(BTreeMap<NodeKey, Node>, Tools);

impl Trie {
    fn rules(nodes: BTreeMap<NodeKey, Node>) -> Trie {
        Trie(nodes, Tools::default())
    }
}

impl Nodes for Trie {
    fn node(&self, key: &NodeKey) -> Option<Node> {
        self.0.get(key).copied()
    }
    fn tool(&self, key: &ToolKey) -> Option<Tool> {
        self.1.tools.get(key).copied()
    }
    fn takes_value(&self, key: &OptionKey) -> bool {
        self.1.options.contains(key)
    }
}

/// Steps in place: the bodies of the program's global step functions.
impl Steps for Trie {}

struct Words<'a> {
    key: HashKey,
    argv: &'a [String],
    /// Indices of the words read, in order.
    read: Vec<usize>,
}

impl<'a> Words<'a> {
    fn new(argv: &'a [String]) -> Self {
        Words {
            key: KEY,
            argv,
            read: Vec::new(),
        }
    }
}

impl Command for Words<'_> {
    fn argc(&self) -> usize {
        self.argv.len()
    }
    /// As the program reads a word: into a buffer of WORD_BUF bytes, of
    /// which a too-long word fills WORD_VISIBLE.
    fn read(&mut self, i: usize, info: &mut WordInfo) -> bool {
        self.read.push(i);
        let Some(word) = self.argv.get(i) else {
            return false;
        };
        info.read(&self.key, word.as_bytes());
        true
    }
}

const KEY: HashKey = HashKey {
    k0: 0x0123_4567_89ab_cdef,
    k1: 0xfedc_ba98_7654_3210,
};
const NOW: u64 = 1_000_000;
const SESSION: u32 = 7;

fn session(default: Action, max_depth: u32) -> SessionInfo {
    SessionInfo {
        index: SESSION,
        default_action: action_code(default) as u32,
        max_depth,
        ..SessionInfo::default()
    }
}

/// The kernel's view: heads in the slots the program fills.
fn kernel_heads(argv: &[String], executable: &str, aliases: &[String]) -> Evaluation {
    let mut eval = Evaluation::default();
    let argv0 = argv[0].as_bytes();
    let at = |i: usize| argv0.get(i).copied().unwrap_or(0);
    let start = basename_start(argv0.len(), at);
    eval.set_head(HEAD_ARGV0, siphash13(&KEY, start, argv0.len(), at));
    eval.set_head(HEAD_FILE_NAME, word_hash(&KEY, basename(executable)));
    assert!(aliases.len() <= MAX_ALIASES, "every alias has a slot");
    let mut known = Aliases::default();
    for (slot, alias) in known.heads.iter_mut().zip(aliases) {
        *slot = word_hash(&KEY, alias);
        known.count += 1;
    }
    eval.add_aliases(HEAD_INODE_ALIASES, &known);
    eval
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn kernel_evaluation_equals_policy_check(
        policies in prop::collection::vec(gen::policy(), 0..5),
        default in gen::action(),
        argv in prop_oneof![
            4 => gen::argv().prop_filter("the kernel always has argv[0]", |a| !a.is_empty()),
            1 => gen::long_argv(),
        ],
        executable in select(gen::EXECUTABLES),
        aliases in subsequence(gen::HEADS, 0..3),
        grants in prop::collection::vec((gen::command(), any::<bool>()), 0..3),
    ) {
        check(&policies, default, &argv, executable, &aliases, &grants)?;
    }

    /// Many rules on few heads, one of them not in the grammar table, and
    /// long commands: where the kernel's limits refuse.
    #[test]
    fn kernel_refuses_exactly_what_policy_check_refuses(
        policies in prop::collection::vec(gen::crowded_policy(), 1..3),
        default in gen::action(),
        head in select(&["tf", "kubectl"][..]),
        args in prop::collection::vec(select(gen::WORDS), 4..18),
        grants in prop::collection::vec((gen::command(), any::<bool>()), 0..3),
    ) {
        let argv: Vec<String> = std::iter::once(head).chain(args).map(str::to_owned).collect();
        check(&policies, default, &argv, "/usr/bin/kubectl", &[], &grants)?;
    }
}

fn check(
    policies: &[GenPolicy],
    default: Action,
    argv: &[String],
    executable: &str,
    aliases: &[&str],
    grants: &[(Vec<&str>, bool)],
) -> Result<(), TestCaseError> {
    let set = PolicySet::from_sources(&gen::files(policies, default))
        .map_err(|d| TestCaseError::fail(format!("{d:#?}")))?;
    agree(&set, "agent", argv, executable, aliases, grants).map(|_| ())
}

/// Judges `argv` for `role` with the policy engine and with the kernel's
/// walk on the compiled tables, checks that they decide the same, and
/// returns the kernel's verdict.
fn agree(
    set: &PolicySet,
    role: &str,
    argv: &[String],
    executable: &str,
    aliases: &[&str],
    grants: &[(Vec<&str>, bool)],
) -> Result<Verdict, TestCaseError> {
    let default = set.role(role).expect("known role").default_action;
    // Identity resolution is complete: an absolute head naming the
    // executable itself is one of its aliases, as the enforcer finds by
    // stat(2).
    let mut aliases: Vec<String> = aliases.iter().map(|a| a.to_string()).collect();
    if gen::HEADS.contains(&executable) && !aliases.iter().any(|a| a == executable) {
        aliases.push(executable.to_owned());
    }

    // Userspace: the policy engine, with the grants the kernel compiles
    // (expired ones too: they are in the trie, only their deadline passed).
    let cmd = CommandLine {
        argv,
        executable: Some(Path::new(executable)),
        aliases: &aliases,
    };
    let grant_words: Vec<Vec<String>> = grants
        .iter()
        .map(|(words, _)| words.iter().map(|w| w.to_string()).collect())
        .collect();
    let (decision, covering) = set.evaluate_with_grants(role, &cmd, &grant_words).unwrap();
    let granted = grants
        .iter()
        .zip(&covering)
        .any(|((_, live), covers)| *live && *covers);

    // Kernel: compile, then evaluate.
    let rules = set.effective_rules(role).unwrap();
    let mut trie = BTreeMap::new();
    for (index, rule) in rules.iter().enumerate() {
        let ending = Ending::Rule {
            action: rule.action,
            index: index as u32,
        };
        add_pattern(&mut trie, SESSION, &KEY, &rule.words, ending).unwrap();
    }
    for (words, live) in grants {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let until_ns = if *live { NOW + 1 } else { NOW };
        add_pattern(&mut trie, SESSION, &KEY, &words, Ending::Grant { until_ns }).unwrap();
    }
    let tools = compile_tools(
        set,
        rules
            .iter()
            .map(|r| &r.words[0])
            .chain(&heads(&grant_words)),
    );
    let patterns = rules.iter().map(|r| r.words.len());
    let max_depth = max_depth(patterns.chain(grants.iter().map(|(w, _)| w.len())));
    let mut eval = kernel_heads(argv, executable, &aliases);
    let mut words = Words::new(argv);
    let trie = Trie(trie, tools);
    let verdict = eval.judge(&session(default, max_depth), NOW, &mut words, &trie);

    prop_assert_eq!(verdict.action, action_code(decision.action));
    prop_assert_eq!(
        verdict.rule == RULE_UNMATCHABLE,
        decision.refusal.is_some(),
        "kernel {:?}, engine {:?}",
        verdict,
        decision
    );
    let kernel_rule = (verdict.rule != NO_RULE && verdict.rule != RULE_UNMATCHABLE).then(|| {
        let rule = rules[verdict.rule as usize];
        (rule.policy_id.clone(), rule.command.clone())
    });
    let engine_rule = decision.rule.map(|r| (r.policy_id, r.command));
    prop_assert_eq!(kernel_rule, engine_rule);
    prop_assert_eq!(verdict.granted, granted);
    let permits =
        decision.action == Action::Allow || (decision.action == Action::Approve && granted);
    prop_assert_eq!(verdict.permits(), permits);
    Ok(verdict)
}

/// The heads of these patterns.
fn heads(patterns: &[Vec<String>]) -> Vec<String> {
    patterns.iter().map(|p| p[0].clone()).collect()
}

/// The grammar tables of these rule heads, as the enforcer compiles them.
fn compile_tools<'a>(set: &PolicySet, heads: impl Iterator<Item = &'a String>) -> Tools {
    let mut tools = Tools::default();
    for head in heads {
        if let Some(grammar) = set.grammar_of_head(head) {
            tools.add(SESSION, &KEY, head, grammar);
        }
    }
    tools
}

#[test]
fn siphash13_matches_the_reference_implementation() {
    use std::hash::Hasher;
    let data: Vec<u8> = (0..=255u8).collect();
    let data = &data;
    // Bytes past the end are fetched but must not count: make them noise.
    let fetch = |len: usize| move |i: usize| if i < len { data[i] } else { 0xa5 };
    for len in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 200, 254, 256] {
        let mut reference = siphasher::sip::SipHasher13::new_with_keys(KEY.k0, KEY.k1);
        reference.write(&data[..len]);
        assert_eq!(
            siphash13(&KEY, 0, len, fetch(len)),
            reference.finish(),
            "len {len}"
        );
    }
    // A suffix is hashed as if it were the whole input.
    for (start, end) in [(5, 20), (3, 3), (1, 256), (255, 256)] {
        let mut reference = siphasher::sip::SipHasher13::new_with_keys(KEY.k0, KEY.k1);
        reference.write(&data[start..end]);
        assert_eq!(siphash13(&KEY, start, end, fetch(end)), reference.finish());
    }
}

#[test]
fn basename_start_follows_the_last_slash() {
    fn at(s: &str) -> &str {
        let b = s.as_bytes();
        &s[basename_start(b.len(), |i| b.get(i).copied().unwrap_or(b'/'))..]
    }
    assert_eq!(at("/opt/homebrew/bin/terraform"), "terraform");
    assert_eq!(at("terraform"), "terraform");
    assert_eq!(at("./tf"), "tf");
    assert_eq!(at("/opt/terraform/"), "");
    assert_eq!(at(""), "");
    assert_eq!(at("/"), "");
    assert_eq!(at("a/bcdefgh/ijklmnopq/r"), "r");
    assert_eq!(at("abcdefg/"), "");
    assert_eq!(at("abcdefgh/x"), "x");
}

proptest! {
    #[test]
    fn basename_start_agrees_with_rsplit(
        text in "[a-z/\\x00\\x01\\x2e\\xaf]{0,40}",
        noise in any::<u8>(),
    ) {
        let bytes = text.as_bytes();
        // Bytes past the end must not count.
        let start = basename_start(bytes.len(), |i| bytes.get(i).copied().unwrap_or(noise));
        prop_assert_eq!(&text[start..], basename(&text));
    }
}

#[test]
fn grants_and_rules_share_nodes_and_strongest_rule_wins() {
    let words = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let mut trie = BTreeMap::new();
    let rule = |action, index| Ending::Rule { action, index };
    add_pattern(
        &mut trie,
        1,
        &KEY,
        &words("terraform plan"),
        rule(Action::Approve, 3),
    )
    .unwrap();
    add_pattern(
        &mut trie,
        1,
        &KEY,
        &words("terraform plan"),
        rule(Action::Approve, 1),
    )
    .unwrap();
    add_pattern(
        &mut trie,
        1,
        &KEY,
        &words("terraform"),
        rule(Action::Allow, 0),
    )
    .unwrap();
    add_pattern(
        &mut trie,
        1,
        &KEY,
        &words("terraform plan -out=x"),
        Ending::Grant { until_ns: 50 },
    )
    .unwrap();
    let head = NodeKey {
        session: 1,
        depth: 0,
        hash: word_hash(&KEY, "terraform"),
    };
    let plan = NodeKey {
        session: 1,
        depth: 1,
        hash: chain(head.hash, word_hash(&KEY, "plan")),
    };
    assert_eq!(trie[&head].action, ACTION_ALLOW);
    assert_eq!(trie[&head].has_children, 1);
    assert_eq!((trie[&plan].action, trie[&plan].rule), (ACTION_APPROVE, 1));
    assert_eq!(
        trie[&plan].has_children, 1,
        "the grant continues past the rule"
    );
    assert_eq!(trie.len(), 3);
    assert!(matches!(
        add_pattern(&mut trie, 1, &KEY, &[], Ending::Grant { until_ns: 1 }),
        Err(compile::CompileError::Empty(_))
    ));
}

fn words(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_owned).collect()
}

fn allow(index: u32) -> Ending {
    Ending::Rule {
        action: Action::Allow,
        index,
    }
}

#[test]
fn nothing_runs_in_a_revoked_session() {
    let mut trie = BTreeMap::new();
    add_pattern(&mut trie, SESSION, &KEY, &words("ls"), allow(0)).unwrap();
    let argv = words("ls -l");
    let mut live = session(Action::Allow, 1);
    let mut eval = kernel_heads(&argv, "/usr/bin/ls", &[]);
    let trie = Trie::rules(trie);
    assert!(eval
        .judge(&live, NOW, &mut Words::new(&argv), &trie)
        .permits());
    live.flags = SESSION_REVOKED;
    let mut eval = kernel_heads(&argv, "/usr/bin/ls", &[]);
    let mut cmd = Words::new(&argv);
    assert_eq!(eval.judge(&live, NOW, &mut cmd, &trie), Verdict::REFUSED);
    assert!(cmd.read.is_empty(), "no argument is read");
}

#[test]
fn arguments_are_read_in_order_and_only_as_far_as_a_rule_reaches() {
    let mut trie = BTreeMap::new();
    add_pattern(
        &mut trie,
        SESSION,
        &KEY,
        &words("git push origin"),
        allow(0),
    )
    .unwrap();
    let trie = Trie::rules(trie);
    let argv = words("git push origin main --force");
    let judge = |argv: &[String], executable: &str, max_depth: u32| {
        let mut eval = kernel_heads(argv, executable, &[]);
        let mut cmd = Words::new(argv);
        let verdict = eval.judge(&session(Action::Block, max_depth), NOW, &mut cmd, &trie);
        (verdict, cmd.read)
    };
    let (verdict, read) = judge(&argv, "/usr/bin/git", 2);
    assert_eq!((verdict.action, verdict.rule), (ACTION_ALLOW, 0));
    assert_eq!(read, [1, 2]);
    // An executable no rule names: no argument is read.
    let argv = words("ls push origin");
    let (verdict, read) = judge(&argv, "/usr/bin/ls", 2);
    assert_eq!((verdict.action, verdict.rule), (ACTION_BLOCK, NO_RULE));
    assert!(read.is_empty());
}

// ---- tool-aware matching in the kernel -----------------------------------------

fn argv_of(command: &str) -> Vec<String> {
    command.split(' ').map(str::to_owned).collect()
}

/// The kernel's verdict for `command` under `role` of the shipped policies
/// (with more tools), checked against the policy engine.
fn kernel_verdict(set: &PolicySet, role: &str, argv: &[String]) -> Verdict {
    let executable = format!("/usr/bin/{}", basename(&argv[0]));
    agree(set, role, argv, &executable, &[], &[]).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

#[test]
fn the_kernel_skips_the_options_policy_check_skips() {
    let set = crate::policy::tests::shipped_and_more();
    for (command, _, _) in crate::policy::tests::EXAMPLES {
        let verdict = kernel_verdict(&set, "wide", &argv_of(command));
        assert_eq!(verdict.action, ACTION_BLOCK, "{command}");
        assert!(
            verdict.rule != NO_RULE && verdict.rule != RULE_UNMATCHABLE,
            "{command}"
        );
    }
    let role = "terraform-restricted-agent";
    for (command, action) in [
        ("terraform -chdir=. apply", ACTION_BLOCK),
        ("terraform -chdir=infra apply", ACTION_BLOCK),
        ("terraform -chdir=. plan", ACTION_APPROVE),
        ("terraform -chdir=. init", ACTION_ALLOW),
        ("kubectl -n delete get pods", ACTION_ALLOW),
        ("kubectl exec pod -- kubectl delete pod x", ACTION_ALLOW),
    ] {
        let verdict = kernel_verdict(&set, role, &argv_of(command));
        assert_eq!(verdict.action, action, "{command}");
    }
}

#[test]
fn an_allow_rule_matches_no_more_in_the_kernel() {
    let set = crate::policy::tests::shipped_and_more();
    let allowed = kernel_verdict(&set, "strict", &argv_of("kubectl get pods"));
    assert_eq!(allowed.action, ACTION_ALLOW);
    for command in [
        "kubectl -n prod get pods",
        "kubectl --context=c get",
        "kubectl -- get",
    ] {
        let verdict = kernel_verdict(&set, "strict", &argv_of(command));
        assert_eq!(
            (verdict.action, verdict.rule),
            (ACTION_BLOCK, NO_RULE),
            "{command}"
        );
    }
}

#[test]
fn a_grant_covers_what_its_approve_rule_covers() {
    let set = crate::policy::tests::shipped_and_more();
    let role = "terraform-restricted-agent";
    let argv = argv_of("terraform -chdir=infra plan -out=p");
    let executable = "/usr/bin/terraform";
    let grant = vec!["terraform", "plan"];
    let live = agree(&set, role, &argv, executable, &[], &[(grant.clone(), true)]).unwrap();
    assert_eq!(live.action, ACTION_APPROVE);
    assert!(live.granted && live.permits());
    let expired = agree(&set, role, &argv, executable, &[], &[(grant, false)]).unwrap();
    assert!(!expired.permits());
}

/// A partial match that took an option (and must take its value next) and
/// one at the same node that skipped the option are different: merging them
/// would lose `kubectl -n prod` here.
#[test]
fn taking_an_option_and_skipping_one_are_kept_apart() {
    let rules = "[[policy]]\nid = \"p\"\nname = \"p\"\n[[policy.rule]]\naction = \"block\"\ncommands = [\"kubectl -n prod\"]\n[[role]]\nid = \"agent\"\npolicies = [\"p\"]\n";
    let tools = "[[tool]]\nname = \"kubectl\"\nvalue_options = [\"-n\"]\n";
    let set = PolicySet::from_sources(&[
        ("p.toml".into(), rules.to_owned()),
        ("tools.toml".into(), tools.to_owned()),
    ])
    .unwrap();
    // `-n` after the unlisted `--force` may be its value; the second `-n`
    // takes `prod`.
    let argv = argv_of("kubectl --force -n delete -n prod");
    let verdict = agree(&set, "agent", &argv, "/usr/bin/kubectl", &[], &[]).unwrap();
    assert_eq!((verdict.action, verdict.rule), (ACTION_BLOCK, 0));
}

#[test]
fn the_kernel_refuses_what_it_cannot_match_within_its_limits() {
    let set = crate::policy::tests::shipped_and_more();
    let refused = |command: &str| {
        let verdict = kernel_verdict(&set, "wide", &argv_of(command));
        verdict == Verdict::UNMATCHABLE
    };
    // Past the 16th word a rule could still match.
    let padded = format!("kubectl {} delete", vec!["-v"; 20].join(" "));
    assert!(refused(&padded));
    assert!(refused(&format!(
        "mytool {} deploy prod",
        vec!["x"; 20].join(" ")
    )));
    // ... but not once no rule of the tool can.
    assert!(!refused(&format!(
        "kubectl get {}",
        vec!["pods"; 30].join(" ")
    )));
    assert!(!refused(&format!("ls {}", vec!["-l"; 30].join(" "))));
    // A cluster too long to read, whose last letter might take a value.
    assert!(refused(&format!("kubectl -{} x delete", "w".repeat(300))));
    assert!(!refused(&format!("kubectl -n{} delete", "w".repeat(300))));
    // More partial matches than the kernel follows.
    let many: Vec<String> = (0..36)
        .map(|i| format!("\"crowd w{} w{} end\"", i / 6, i % 6))
        .collect();
    let crowd = format!(
        "[[policy]]\nid = \"c\"\nname = \"c\"\n[[policy.rule]]\naction = \"block\"\ncommands = [{}]\n[[role]]\nid = \"agent\"\npolicies = [\"c\"]\n",
        many.join(", ")
    );
    let set = PolicySet::from_sources(&[("c.toml".into(), crowd)]).unwrap();
    // Alive after `w0 … w5`: the root, six one-word and fifteen two-word
    // prefixes.
    let argv = argv_of("crowd w0 w1 w2 w3 w4 w5");
    let verdict = agree(&set, "agent", &argv, "/usr/bin/crowd", &[], &[]).unwrap();
    assert_eq!(verdict, Verdict::UNMATCHABLE);
    let argv = argv_of("crowd w0 x w1 end");
    let verdict = agree(&set, "agent", &argv, "/usr/bin/crowd", &[], &[]).unwrap();
    assert_eq!((verdict.action, verdict.rule), (ACTION_BLOCK, 1));
}
