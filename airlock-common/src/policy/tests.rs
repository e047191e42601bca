//! Tests of the policy engine as a whole: loading, validation and evaluation.

use std::path::{Path, PathBuf};

use super::*;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// Source text from numbered-by-position lines, so tests read like files.
fn lines(lines: &[&str]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn load(files: &[(&str, &str)]) -> Result<PolicySet, Vec<Diagnostic>> {
    let files: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(name, text)| (PathBuf::from(name), (*text).to_owned()))
        .collect();
    PolicySet::from_sources(&files)
}

fn load_ok(files: &[(&str, &str)]) -> PolicySet {
    load(files).unwrap_or_else(|diagnostics| panic!("unexpected errors: {diagnostics:#?}"))
}

/// Asserts the exact list of errors: `("file:line:column", part of message)`.
#[track_caller]
fn assert_errors(files: &[(&str, &str)], expected: &[(&str, &str)]) {
    let diagnostics = match load(files) {
        Ok(_) => panic!("the set loaded, expected {} error(s)", expected.len()),
        Err(diagnostics) => diagnostics,
    };
    let rendered: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(diagnostics.len(), expected.len(), "errors: {rendered:#?}");
    for (found, (position, message)) in diagnostics.iter().zip(expected) {
        let found_position = format!("{}:{}:{}", found.file.display(), found.line, found.column);
        assert_eq!(
            &found_position, position,
            "position of {found}; all errors: {rendered:#?}"
        );
        assert!(
            found.message.contains(message),
            "{found:?} should mention {message:?}"
        );
    }
}

fn decide(set: &PolicySet, role: &str, words: &[&str], executable: Option<&str>) -> Decision {
    let argv = argv(words);
    let cmd = CommandLine {
        argv: &argv,
        executable: executable.map(Path::new),
        aliases: &[],
    };
    set.evaluate(role, &cmd).expect("known role")
}

fn action(set: &PolicySet, role: &str, words: &[&str]) -> Action {
    decide(set, role, words, None).action
}

// ---- the shipped example policies -------------------------------------------

fn shipped() -> (PathBuf, PolicySet) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let set = PolicySet::load_dir(&dir)
        .unwrap_or_else(|diagnostics| panic!("shipped policies are invalid: {diagnostics:#?}"));
    (dir, set)
}

#[test]
fn shipped_policies_restrict_terraform() {
    let (dir, set) = shipped();
    let role = "terraform-restricted-agent";

    let apply = decide(&set, role, &["terraform", "apply"], None);
    assert_eq!(apply.action, Action::Block);
    let rule = apply.rule.expect("a rule decided");
    assert_eq!(rule.policy_id, "infra-mutation-block");
    assert_eq!(rule.command, "terraform apply");
    assert!(rule.reason.as_deref().unwrap_or("").contains("Stop"));
    assert_eq!(
        rule.source,
        Source {
            file: dir.join("infra-mutation-block.toml"),
            line: 13
        }
    );

    let plan = decide(&set, role, &["terraform", "plan", "-out=x"], None);
    assert_eq!(plan.action, Action::Approve);
    let rule = plan.rule.expect("a rule decided");
    assert_eq!(
        (rule.policy_id.as_str(), rule.command.as_str()),
        ("plan-needs-approval", "terraform plan")
    );
    assert_eq!(
        rule.source.to_string(),
        format!("{}:11", dir.join("plan-needs-approval.toml").display())
    );

    assert_eq!(
        decide(&set, role, &["terraform", "init"], None),
        Decision {
            action: Action::Allow,
            rule: None,
            skipped: vec![],
            refusal: None
        }
    );
    assert_eq!(
        action(&set, role, &["/opt/homebrew/bin/terraform", "apply"]),
        Action::Block
    );
    assert_eq!(
        action(&set, role, &["terraform", "destroy", "-auto-approve"]),
        Action::Block
    );
    assert_eq!(
        action(&set, role, &["kubectl", "delete", "pod", "x"]),
        Action::Block
    );
    assert_eq!(
        action(&set, role, &["kubectl", "get", "pods"]),
        Action::Allow
    );
    assert_eq!(
        action(
            &set,
            role,
            &["aws", "iam", "create-role", "--role-name", "x"]
        ),
        Action::Block
    );
}

#[test]
fn shipped_roles() {
    let (dir, set) = shipped();
    let ids: Vec<&str> = set.policies().iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["infra-mutation-block", "plan-needs-approval"]);
    let ids: Vec<&str> = set.roles().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["default", "terraform-restricted-agent"]);

    let restricted = set.role("terraform-restricted-agent").unwrap();
    assert_eq!(restricted.default_action, Action::Allow);
    assert_eq!(restricted.default_grant_ttl.as_secs(), 60 * 60);
    assert_eq!(restricted.max_grant_ttl.as_secs(), 8 * 60 * 60);
    assert_eq!(restricted.source.file, dir.join("roles.toml"));
    assert_eq!(restricted.source.line, 13);

    // `default` blocks mutation but needs no approval for plans.
    assert_eq!(
        action(&set, "default", &["terraform", "apply"]),
        Action::Block
    );
    assert_eq!(
        action(&set, "default", &["terraform", "plan"]),
        Action::Allow
    );
    let rules = set.effective_rules("default").unwrap();
    let commands: Vec<&str> = rules.iter().map(|r| r.command.as_str()).collect();
    assert_eq!(
        commands,
        [
            "terraform apply",
            "terraform destroy",
            "kubectl delete",
            "aws iam create-role"
        ]
    );
    let lines: Vec<usize> = rules.iter().map(|r| r.source.line).collect();
    assert_eq!(lines, [13, 14, 15, 16], "each command keeps its own line");
}

// ---- evaluation -------------------------------------------------------------

const LAYERED: &str = r#"
[[policy]]
id = "block-destroy"
name = "Block destroy"
[[policy.rule]]
action = "block"
commands = ["terraform plan -destroy"]

[[policy]]
id = "plan-approval"
name = "Plan approval"
[[policy.rule]]
action = "approve"
commands = ["terraform plan"]

[[policy]]
id = "terraform-ok"
name = "Terraform OK"
[[policy.rule]]
action = "allow"
commands = ["terraform"]
reason = "fine"

[[role]]
id = "agent"
policies = ["terraform-ok", "plan-approval", "block-destroy"]
default_action = "block"
"#;

#[test]
fn strongest_matching_action_wins() {
    let set = load_ok(&[("layered.toml", LAYERED)]);
    let destroy = decide(&set, "agent", &["terraform", "plan", "-destroy"], None);
    assert_eq!(destroy.action, Action::Block);
    assert_eq!(destroy.rule.unwrap().policy_id, "block-destroy");
    assert_eq!(
        action(&set, "agent", &["terraform", "plan"]),
        Action::Approve
    );
    let init = decide(&set, "agent", &["terraform", "init"], None);
    assert_eq!(init.action, Action::Allow);
    let rule = init.rule.expect("an allow rule decided, not the default");
    assert_eq!(rule.command, "terraform");
    assert_eq!(rule.reason.as_deref(), Some("fine"));
    assert_eq!(rule.source.line, 21);
    // The role's default (block) applies to everything else.
    assert_eq!(
        decide(&set, "agent", &["ls"], None),
        Decision {
            action: Action::Block,
            rule: None,
            skipped: vec![],
            refusal: None
        }
    );
}

#[test]
fn ties_go_to_the_first_rule_in_load_order() {
    let policy = |id: &str, commands: &str| {
        format!(
            "[[policy]]\nid = \"{id}\"\nname = \"{id}\"\n[[policy.rule]]\naction = \"block\"\ncommands = [{commands}]\n"
        )
    };
    let b = policy("from-b", r#""terraform", "terraform apply""#);
    let a = policy("from-a", r#""terraform apply", "terraform""#);
    let roles = "[[role]]\nid = \"r\"\npolicies = [\"from-b\", \"from-a\"]\n";
    // Files are given out of order on purpose: load order is by name.
    let set = load_ok(&[("b.toml", &b), ("roles.toml", roles), ("a.toml", &a)]);
    let rule = decide(&set, "r", &["terraform", "apply"], None)
        .rule
        .unwrap();
    assert_eq!(
        (rule.policy_id.as_str(), rule.command.as_str()),
        ("from-a", "terraform apply")
    );
    let rule = decide(&set, "r", &["terraform", "init"], None)
        .rule
        .unwrap();
    assert_eq!(
        (rule.policy_id.as_str(), rule.command.as_str()),
        ("from-a", "terraform")
    );
    let ids: Vec<&str> = set.policies().iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["from-a", "from-b"]);
}

#[test]
fn disabled_policies_contribute_nothing() {
    let text = lines(&[
        "[[policy]]",
        "id = \"off\"",
        "name = \"Off\"",
        "status = \"disabled\"",
        "[[policy.rule]]",
        "action = \"block\"",
        "commands = [\"terraform\"]",
        "[[policy]]",
        "id = \"on\"",
        "name = \"On\"",
        "[[policy.rule]]",
        "action = \"approve\"",
        "commands = [\"terraform apply\"]",
        "[[role]]",
        "id = \"r\"",
        "policies = [\"off\", \"on\"]",
    ]);
    let set = load_ok(&[("p.toml", &text)]);
    assert!(!set.policies()[0].active);
    assert!(set.policies()[1].active);
    assert_eq!(action(&set, "r", &["terraform", "apply"]), Action::Approve);
    assert_eq!(action(&set, "r", &["terraform", "init"]), Action::Allow);
    let rules = set.effective_rules("r").unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].policy_id, "on");
}

#[test]
fn unattached_policies_do_not_apply() {
    let set = load_ok(&[
        ("layered.toml", LAYERED),
        ("other.toml", "[[role]]\nid = \"bare\"\n"),
    ]);
    let bare = set.role("bare").unwrap();
    assert!(bare.policies.is_empty());
    assert_eq!(bare.name, "bare", "the name defaults to the id");
    assert_eq!(bare.default_action, Action::Allow);
    assert!(set.effective_rules("bare").unwrap().is_empty());
    assert_eq!(
        decide(&set, "bare", &["terraform", "plan", "-destroy"], None),
        Decision {
            action: Action::Allow,
            rule: None,
            skipped: vec![],
            refusal: None
        }
    );
}

#[test]
fn default_action_applies_when_nothing_matches() {
    let set = load_ok(&[(
        "r.toml",
        "[[role]]\nid = \"careful\"\ndefault_action = \"approve\"\n",
    )]);
    assert_eq!(action(&set, "careful", &["ls", "-l"]), Action::Approve);
    // An empty argv matches no rule, so the default applies too.
    let set = load_ok(&[("layered.toml", LAYERED)]);
    assert_eq!(
        decide(&set, "agent", &[], Some("/usr/bin/terraform")),
        Decision {
            action: Action::Block,
            rule: None,
            skipped: vec![],
            refusal: None
        }
    );
}

#[test]
fn unknown_role_is_an_error() {
    let set = load_ok(&[("layered.toml", LAYERED)]);
    let argv = argv(&["ls"]);
    let cmd = CommandLine {
        argv: &argv,
        executable: None,
        aliases: &[],
    };
    let err = set.evaluate("nobody", &cmd).unwrap_err();
    assert_eq!(err.0, "nobody");
    assert_eq!(err.to_string(), "unknown role \"nobody\"");
    assert!(set.effective_rules("nobody").is_err());
    assert!(set.role("nobody").is_none());
    assert!(PolicySet::default().evaluate("agent", &cmd).is_err());
}

#[test]
fn rules_match_through_the_resolved_executable() {
    let text = lines(&[
        "[[policy]]",
        "id = \"p\"",
        "name = \"P\"",
        "[[policy.rule]]",
        "action = \"block\"",
        "commands = [\"terraform apply\", \"/usr/bin/curl\"]",
        "[[policy.rule]]",
        "action = \"approve\"",
        "commands = [\"/usr/local/bin/terraform plan\"]",
        "[[role]]",
        "id = \"r\"",
        "policies = [\"p\"]",
    ]);
    let set = load_ok(&[("p.toml", &text)]);
    // `tf` is a symlink to terraform.
    assert_eq!(
        decide(&set, "r", &["tf", "apply"], Some("/usr/bin/terraform")).action,
        Action::Block
    );
    assert_eq!(
        decide(&set, "r", &["tf", "apply"], None).action,
        Action::Allow
    );
    // Absolute rules name one file.
    assert_eq!(
        decide(&set, "r", &["curl", "-s", "x"], Some("/usr/bin/curl")).action,
        Action::Block
    );
    assert_eq!(
        decide(&set, "r", &["curl"], Some("/usr/local/bin/curl")).action,
        Action::Allow
    );
    assert_eq!(
        decide(&set, "r", &["/usr/bin/curl"], None).action,
        Action::Block
    );
    assert_eq!(
        decide(
            &set,
            "r",
            &["terraform", "plan"],
            Some("/usr/local/bin/terraform")
        )
        .action,
        Action::Approve
    );
    assert_eq!(
        decide(
            &set,
            "r",
            &["terraform", "plan"],
            Some("/usr/bin/terraform")
        )
        .action,
        Action::Allow
    );
}

// ---- the seed JSON shape ----------------------------------------------------

#[test]
fn seed_json_policies_load_as_block_rules() {
    let json = lines(&[
        "{",
        "  \"blocked_commands\": [",
        "    \"terraform apply\",",
        "    \"kubectl   delete\"",
        "  ],",
        "  \"description\": \"Seed\",",
        "  \"id\": \"infra-mutation-block\",",
        "  \"name\": \"Infra Mutation Block\",",
        "  \"rules\": [",
        "    {\"action\": \"approve\", \"commands\": [\"terraform plan\"], \"reason\": \"ask\"}",
        "  ],",
        "  \"status\": \"active\"",
        "}",
    ]);
    let roles = "[[role]]\nid = \"r\"\npolicies = [\"infra-mutation-block\"]\n";
    let set = load_ok(&[("infra.json", &json), ("roles.toml", roles)]);
    let policy = &set.policies()[0];
    assert_eq!(policy.name, "Infra Mutation Block");
    assert_eq!(policy.description, "Seed");
    assert!(policy.active);
    assert_eq!(policy.source.line, 1);
    let summary: Vec<(Action, &str, usize, Option<&str>)> = policy
        .rules
        .iter()
        .map(|r| {
            (
                r.action,
                r.command.as_str(),
                r.source.line,
                r.reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Action::Block, "terraform apply", 3, None),
            (Action::Block, "kubectl delete", 4, None),
            (Action::Approve, "terraform plan", 10, Some("ask")),
        ]
    );
    assert_eq!(
        action(&set, "r", &["kubectl", "delete", "ns", "x"]),
        Action::Block
    );
    assert_eq!(action(&set, "r", &["terraform", "plan"]), Action::Approve);

    // The one-line seed example, with an empty `rules`.
    let seed = r#"{"blocked_commands": ["terraform apply", "kubectl delete"], "description": "...", "id": "infra-mutation-block", "name": "Infra Mutation Block", "rules": [], "status": "active"}"#;
    let set = load_ok(&[("infra.json", seed), ("roles.toml", roles)]);
    assert_eq!(set.policies()[0].rules.len(), 2);
    assert_eq!(action(&set, "r", &["terraform", "apply"]), Action::Block);
}

#[test]
fn seed_json_errors_have_positions() {
    let json = lines(&[
        "{",
        "  \"id\": \"Infra\",",
        "  \"blocked_commands\": [\"terraform apply\", \"bin/terraform destroy\", 5],",
        "  \"rules\": [{\"action\": \"approve\", \"commands\": [\"terraform plan\"], \"when\": \"now\"}],",
        "  \"status\": \"active\",",
        "  \"status\": \"disabled\",",
        "  \"extra\": true",
        "}",
    ]);
    assert_errors(
        &[("seed.json", &json)],
        &[
            ("seed.json:1:1", "missing required key `name` in policy"),
            ("seed.json:2:9", "invalid policy id \"Infra\""),
            ("seed.json:3:43", "relative path \"bin/terraform\""),
            (
                "seed.json:3:68",
                "a command must be a string, found a number",
            ),
            ("seed.json:4:67", "unknown key `when` in rule"),
            ("seed.json:6:3", "duplicate key `status` in policy"),
            ("seed.json:7:3", "unknown key `extra` in policy"),
        ],
    );
    assert_errors(
        &[("seed.json", "{\n  \"id\": \"x\",\n}\n")],
        &[("seed.json:3:1", "trailing comma")],
    );
    assert_errors(
        &[("seed.json", "[\"terraform apply\"]")],
        &[("seed.json:1:1", "policy must be a table, found an array")],
    );
}

// ---- validation -------------------------------------------------------------

#[test]
fn every_error_in_a_file_is_reported_at_its_position() {
    let text = r#"[[policy]]
id = "Bad_ID"
name = "x"
colour = "red"
status = "paused"

[[policy.rule]]
action = "deny"
commands = ["", "./deploy.sh", "/usr//bin/curl", "terraform  apply", 7]
reason = "r"

[[policy.rule]]
commands = []

[[policy]]
name = 3

[[role]]
id = "r1"
policies = ["bad_id", "nope"]
default_action = "maybe"
default_grant_ttl = "soon"
max_grant_ttl = "0s"
"#;
    assert_errors(
        &[("bad.toml", text)],
        &[
            ("bad.toml:2:6", "invalid policy id \"Bad_ID\""),
            ("bad.toml:4:1", "unknown key `colour` in policy"),
            ("bad.toml:5:10", "unknown status \"paused\""),
            ("bad.toml:8:10", "unknown action \"deny\""),
            ("bad.toml:9:13", "empty command"),
            ("bad.toml:9:17", "relative path \"./deploy.sh\""),
            ("bad.toml:9:32", "not a normalised absolute path"),
            (
                "bad.toml:9:70",
                "a command must be a string, found an integer",
            ),
            ("bad.toml:12:1", "missing required key `action` in rule"),
            ("bad.toml:13:12", "`commands` must not be empty"),
            ("bad.toml:15:1", "missing required key `id` in policy"),
            ("bad.toml:16:8", "`name` must be a string, found an integer"),
            (
                "bad.toml:20:13",
                "role \"r1\" references unknown policy \"bad_id\"",
            ),
            (
                "bad.toml:20:23",
                "role \"r1\" references unknown policy \"nope\"",
            ),
            ("bad.toml:21:18", "unknown action \"maybe\""),
            (
                "bad.toml:22:21",
                "`default_grant_ttl`: invalid duration \"soon\"",
            ),
            ("bad.toml:23:17", "`max_grant_ttl` must be longer than zero"),
        ],
    );
}

#[test]
fn syntax_errors_are_reported_and_other_files_still_checked() {
    let broken = lines(&["[[policy]]", "id = \"x\"", "name = = \"x\""]);
    let other = lines(&["[[role]]", "id = \"r\"", "extra = 1"]);
    assert_errors(
        &[("b.toml", &other), ("a.toml", &broken)],
        &[
            ("a.toml:3:8", ""),
            ("b.toml:3:1", "unknown key `extra` in role"),
        ],
    );
}

#[test]
fn unknown_top_level_keys_and_wrong_shapes() {
    assert_errors(
        &[("p.toml", "[[policies]]\nid = \"x\"\n")],
        &[(
            "p.toml:1:3",
            "unknown key `policies` in the file (expected one of: policy, role, tool)",
        )],
    );
    assert_errors(
        &[("p.toml", "[policy]\nid = \"x\"\nname = \"x\"\n")],
        &[(
            "p.toml:1:1",
            "`policy` must be an array of tables: write [[policy]]",
        )],
    );
    assert_errors(
        &[("p.toml", "role = [\"r\"]\n")],
        &[("p.toml:1:9", "role must be a table, found a string")],
    );
    assert_errors(
        &[(
            "p.toml",
            "[[policy]]\nid = \"x\"\nname = \"x\"\nrule = \"block\"\n",
        )],
        &[("p.toml:4:8", "`rule` must be an array, found a string")],
    );
    assert_errors(
        &[("p.toml", "[[policy]]\nid = \"x\"\nname = \"x\"\n[[policy.rule]]\naction = \"block\"\ncommands = \"terraform\"\n")],
        &[("p.toml:6:12", "`commands` must be an array, found a string")],
    );
    assert_errors(
        &[(
            "p.toml",
            "[[policy]]\nid = \"x\"\nname = \"x\"\n[[policy.rule]]\naction = \"block\"\n",
        )],
        &[("p.toml:4:1", "missing required key `commands` in rule")],
    );
    assert_errors(
        &[("p.toml", "[[policy]]\nid = \"x\"\nwhen = 1979-05-27\n")],
        &[("p.toml:3:8", "dates and times are not allowed")],
    );
}

#[test]
fn missing_required_keys_point_at_the_table() {
    let text = r#"# comment
[[policy]]
description = ""

  [[role]]
  name = "r"

[[policy]]
name = "also no id"
"#;
    // Two policies without an id are not reported as duplicates.
    assert_errors(
        &[("p.toml", text)],
        &[
            ("p.toml:2:1", "missing required key `id` in policy"),
            ("p.toml:2:1", "missing required key `name` in policy"),
            ("p.toml:5:3", "missing required key `id` in role"),
            ("p.toml:8:1", "missing required key `id` in policy"),
        ],
    );
}

#[test]
fn duplicate_ids_point_at_the_second_definition() {
    let a = lines(&[
        "[[policy]]",
        "id = \"p\"",
        "name = \"P\"",
        "[[role]]",
        "id = \"r\"",
    ]);
    let b = lines(&[
        "[[role]]",       // 1
        "id = \"r\"",     // 2
        "[[policy]]",     // 3
        "id = \"q\"",     // 4
        "name = \"Q\"",   // 5
        "[[policy]]",     // 6
        "id   =   \"p\"", // 7
        "name = \"P again\"",
        "[[policy]]", // 9
        "id = \"q\"", // 10
        "name = \"Q again\"",
    ]);
    assert_errors(
        &[("b.toml", &b), ("a.toml", &a)],
        &[
            (
                "b.toml:2:6",
                "duplicate role id \"r\" (first defined at a.toml:5)",
            ),
            (
                "b.toml:7:10",
                "duplicate policy id \"p\" (first defined at a.toml:2)",
            ),
            (
                "b.toml:10:6",
                "duplicate policy id \"q\" (first defined at b.toml:4)",
            ),
        ],
    );
}

#[test]
fn role_references_are_checked_across_files() {
    let policies = "[[policy]]\nid = \"p\"\nname = \"P\"\n";
    let roles = lines(&[
        "[[role]]",
        "id = \"r\"",
        "policies = [",
        "  \"p\",",
        "  \"missing\",",
        "  \"p\",",
        "  42,",
        "]",
    ]);
    assert_errors(
        &[("roles.toml", &roles), ("p.toml", policies)],
        &[
            (
                "roles.toml:5:3",
                "role \"r\" references unknown policy \"missing\"",
            ),
            (
                "roles.toml:6:3",
                "role \"r\" lists policy \"p\" more than once",
            ),
            (
                "roles.toml:7:3",
                "a policy id must be a string, found an integer",
            ),
        ],
    );
    // A role may refer to a policy defined in a later file.
    load_ok(&[
        ("a-roles.toml", "[[role]]\nid = \"r\"\npolicies = [\"p\"]\n"),
        ("z.toml", policies),
    ]);
}

#[test]
fn grant_lifetimes_are_checked() {
    let role = |extra: &str| format!("[[role]]\nid = \"r\"\n{extra}\n");
    assert_errors(
        &[("r.toml", &role("default_grant_ttl = \"9h\""))],
        &[(
            "r.toml:3:21",
            "default_grant_ttl (9h) is longer than max_grant_ttl (8h)",
        )],
    );
    assert_errors(
        &[("r.toml", &role("max_grant_ttl = \"30m\""))],
        &[(
            "r.toml:3:17",
            "default_grant_ttl (1h) is longer than max_grant_ttl (30m)",
        )],
    );
    assert_errors(
        &[("r.toml", &role("default_grant_ttl = 30"))],
        &[(
            "r.toml:3:21",
            "`default_grant_ttl` must be a string, found an integer",
        )],
    );
    let set = load_ok(&[(
        "r.toml",
        &role("default_grant_ttl = \"15m\"\nmax_grant_ttl = \"15m\""),
    )]);
    let r = set.role("r").unwrap();
    assert_eq!(
        (r.default_grant_ttl.as_secs(), r.max_grant_ttl.as_secs()),
        (900, 900)
    );
}

#[test]
fn debugging_is_off_unless_a_role_says_so() {
    let role = |extra: &str| format!("[[role]]\nid = \"r\"\n{extra}\n");
    let allowed = |extra: &str| {
        load_ok(&[("r.toml", &role(extra))])
            .role("r")
            .unwrap()
            .allow_debugging
    };
    assert!(!allowed(""));
    assert!(!allowed("allow_debugging = false"));
    assert!(allowed("allow_debugging = true"));
    assert_errors(
        &[("r.toml", &role("allow_debugging = \"yes\""))],
        &[(
            "r.toml:3:19",
            "`allow_debugging` must be a boolean, found a string",
        )],
    );
}

#[test]
fn allowed_local_ports_are_checked() {
    let role = |extra: &str| format!("[[role]]\nid = \"r\"\n{extra}\n");
    let set = load_ok(&[("r.toml", &role("allow_local_ports = [5432, 6379]"))]);
    assert_eq!(set.role("r").unwrap().allow_local_ports, [5432, 6379]);
    let set = load_ok(&[("r.toml", &role(""))]);
    assert!(set.role("r").unwrap().allow_local_ports.is_empty());
    assert_errors(
        &[(
            "r.toml",
            &role("allow_local_ports = [0, 70000, -1, \"22\", 80, 80]"),
        )],
        &[
            (
                "r.toml:3:22",
                "0 is not a port: use a number from 1 to 65535",
            ),
            (
                "r.toml:3:25",
                "70000 is not a port: use a number from 1 to 65535",
            ),
            (
                "r.toml:3:32",
                "-1 is not a port: use a number from 1 to 65535",
            ),
            ("r.toml:3:36", "a port must be an integer, found a string"),
            ("r.toml:3:46", "port 80 is listed twice"),
        ],
    );
    assert_errors(
        &[("r.toml", &role("allow_local_ports = 22"))],
        &[(
            "r.toml:3:21",
            "`allow_local_ports` must be an array, found an integer",
        )],
    );
}

#[test]
fn bad_ids_and_values() {
    let text = lines(&[
        "[[policy]]",
        "id = \"ok-policy\"",
        "name = \"ok\"",
        "status = 1",
        "[[role]]",
        "id = \"-role\"",
        "default_action = \"Block\"",
        "[[role]]",
        "id = \"role.two\"",
    ]);
    assert_errors(
        &[("p.toml", &text)],
        &[
            ("p.toml:4:10", "`status` must be a string, found an integer"),
            ("p.toml:6:6", "invalid role id \"-role\""),
            ("p.toml:7:18", "unknown action \"Block\""),
            ("p.toml:9:6", "invalid role id \"role.two\""),
        ],
    );
}

#[test]
fn valid_edge_cases() {
    // A policy with no rules, commands normalised, only .toml/.json read.
    let text = lines(&[
        "[[policy]]",
        "id = \"empty\"",
        "name = \"Nothing yet\"",
        "[[policy]]",
        "id = \"spaced\"",
        "name = \"Spaced\"",
        "[[policy.rule]]",
        "action = \"block\"",
        "commands = [\"  terraform\\t  apply  \"]",
    ]);
    let set = load_ok(&[
        ("p.toml", &text),
        ("README.md", "not toml"),
        ("p.toml.bak", "[["),
    ]);
    assert!(set.policies()[0].rules.is_empty());
    let rule = &set.policies()[1].rules[0];
    assert_eq!(rule.command, "terraform apply");
    assert_eq!(rule.words, ["terraform", "apply"]);
    assert_eq!(rule.source.line, 9);
    assert!(load_ok(&[]).policies().is_empty());
}

// ---- directories ------------------------------------------------------------

#[test]
fn load_dir_reads_toml_and_json_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("20-b.toml", "[[policy]]\nid = \"b\"\nname = \"B\"\n");
    write(
        "10-a.json",
        r#"{"id": "a", "name": "A", "blocked_commands": ["rm"]}"#,
    );
    write("notes.txt", "ignored");
    write("30-c.toml.disabled", "ignored [[");
    std::fs::create_dir(dir.path().join("40-d.toml")).unwrap();
    let set = PolicySet::load_dir(dir.path()).unwrap();
    let ids: Vec<&str> = set.policies().iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(set.policies()[0].source.file, dir.path().join("10-a.json"));

    write("50-e.toml", "[[role]]\nid = \"x\"\npolicies = [\"zzz\"]\n");
    std::fs::write(dir.path().join("60-f.toml"), [0xff, 0xfe]).unwrap();
    let errors = PolicySet::load_dir(dir.path()).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(
        errors[0].to_string(),
        format!(
            "{}:3:13: role \"x\" references unknown policy \"zzz\"",
            dir.path().join("50-e.toml").display()
        )
    );
    assert_eq!(errors[1].file, dir.path().join("60-f.toml"));
    assert!(
        errors[1].message.starts_with("cannot read file"),
        "{}",
        errors[1]
    );
}

#[test]
fn load_dir_of_an_empty_or_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let set = PolicySet::load_dir(dir.path()).unwrap();
    assert!(set.policies().is_empty() && set.roles().is_empty());

    let missing = dir.path().join("nope");
    let errors = PolicySet::load_dir(&missing).unwrap_err();
    assert_eq!(
        errors,
        [Diagnostic {
            file: missing,
            line: 1,
            column: 1,
            message: "policy directory does not exist".to_owned()
        }]
    );
}

// ---- small API contracts ------------------------------------------------------

#[test]
fn actions_order_and_names() {
    assert!(Action::Allow < Action::Approve && Action::Approve < Action::Block);
    for action in Action::ALL {
        assert_eq!(action.as_str().parse::<Action>(), Ok(action));
        assert_eq!(
            serde_json::to_string(&action).unwrap(),
            format!("\"{}\"", action.as_str())
        );
        assert_eq!(action.to_string(), action.as_str());
    }
    assert!("BLOCK".parse::<Action>().is_err());
    assert_eq!(
        serde_json::from_str::<Action>("\"approve\"").unwrap(),
        Action::Approve
    );
}

#[test]
fn display_formats() {
    let source = Source {
        file: PathBuf::from("/etc/airlock/policies.d/a.toml"),
        line: 12,
    };
    assert_eq!(source.to_string(), "/etc/airlock/policies.d/a.toml:12");
    let diagnostic = Diagnostic {
        file: PathBuf::from("a.toml"),
        line: 3,
        column: 7,
        message: "bad".to_owned(),
    };
    assert_eq!(diagnostic.to_string(), "a.toml:3:7: bad");
}

// ---- tool-aware matching -----------------------------------------------------

/// Block rules for the tools the shipped role does not cover, beside the
/// shipped set (and so its grammar table, `policies/tools.toml`).
pub(crate) const MORE_TOOLS: &str = "[[policy]]
id = \"more-tools\"
name = \"More tools\"

[[policy.rule]]
action = \"block\"
commands = [
  \"git push --force\",
  \"helm uninstall\",
  \"docker rm\",
  \"gcloud compute instances delete\",
  \"pulumi destroy\",
  \"mytool deploy prod\",
]

[[policy.rule]]
action = \"allow\"
commands = [\"kubectl get\"]

[[role]]
id = \"wide\"
policies = [\"infra-mutation-block\", \"plan-needs-approval\", \"more-tools\"]
default_action = \"allow\"

[[role]]
id = \"strict\"
policies = [\"more-tools\"]
default_action = \"block\"
";

/// The shipped policy directory with [`MORE_TOOLS`] added.
pub(crate) fn shipped_and_more() -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut files: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect();
    files.push((dir.join("zz-more-tools.toml"), MORE_TOOLS.to_owned()));
    PolicySet::from_sources(&files).unwrap_or_else(|d| panic!("{d:#?}"))
}

/// The issue's examples: each command, the rule that must refuse it, and
/// what it skips to match.
pub(crate) const EXAMPLES: &[(&str, &str, &[&str])] = &[
    (
        "kubectl -n prod delete pod x",
        "kubectl delete",
        &["-n prod"],
    ),
    (
        "kubectl --context=prod delete pod x",
        "kubectl delete",
        &["--context=prod"],
    ),
    (
        "kubectl --namespace=prod --context c delete",
        "kubectl delete",
        &["--namespace=prod", "--context c"],
    ),
    ("kubectl -nprod delete pod x", "kubectl delete", &["-nprod"]),
    (
        "terraform -chdir=infra apply",
        "terraform apply",
        &["-chdir=infra"],
    ),
    (
        "terraform -chdir=. apply -auto-approve",
        "terraform apply",
        &["-chdir=."],
    ),
    (
        "terraform -chdir infra destroy",
        "terraform destroy",
        &["-chdir infra"],
    ),
    (
        "aws --profile prod iam create-role --role-name r",
        "aws iam create-role",
        &["--profile prod"],
    ),
    (
        "aws --profile p --region r iam create-role",
        "aws iam create-role",
        &["--profile p", "--region r"],
    ),
    (
        "git -C repo -c k=v push --force",
        "git push --force",
        &["-C repo", "-c k=v"],
    ),
    (
        "helm --kube-context x uninstall",
        "helm uninstall",
        &["--kube-context x"],
    ),
    ("docker -H h rm c1", "docker rm", &["-H h"]),
    (
        "gcloud --project p compute instances delete vm",
        "gcloud compute instances delete",
        &["--project p"],
    ),
    (
        "pulumi -C dir -s stack destroy",
        "pulumi destroy",
        &["-C dir", "-s stack"],
    ),
    // Not in the table: its words in order, whatever is between them.
    (
        "mytool --fast x deploy -v prod",
        "mytool deploy prod",
        &["--fast", "x", "-v"],
    ),
];

#[test]
fn block_rules_match_with_the_tools_options_skipped() {
    let set = shipped_and_more();
    for (command, rule, skipped) in EXAMPLES {
        let words: Vec<&str> = command.split(' ').collect();
        let decision = decide(&set, "wide", &words, None);
        assert_eq!(decision.action, Action::Block, "{command}: {decision:?}");
        assert_eq!(
            decision.rule.map(|r| r.command).as_deref(),
            Some(*rule),
            "{command}"
        );
        assert_eq!(decision.skipped, *skipped, "{command}");
        assert_eq!(decision.refusal, None, "{command}");
    }
    // With BPF LSM this one ran: the catalogue's case.
    let role = "terraform-restricted-agent";
    assert_eq!(
        action(&set, role, &["terraform", "-chdir=.", "apply"]),
        Action::Block
    );
    assert_eq!(
        action(&set, role, &["terraform", "-chdir=.", "init"]),
        Action::Allow
    );
}

#[test]
fn approve_rules_match_with_options_skipped_too() {
    let set = shipped_and_more();
    let plan = decide(
        &set,
        "terraform-restricted-agent",
        &["terraform", "-chdir=infra", "plan"],
        None,
    );
    assert_eq!(plan.action, Action::Approve);
    assert_eq!(plan.rule.unwrap().command, "terraform plan");
    assert_eq!(plan.skipped, ["-chdir=infra"]);
}

#[test]
fn options_are_skipped_but_words_still_count() {
    let set = shipped_and_more();
    let role = "wide";
    for allowed in [
        // The value of a listed option is not the subcommand.
        "kubectl -n delete get pods",
        "terraform -chdir=apply -lock=false init",
        "terraform -chdir apply init",
        // After `--` nothing is an option.
        "kubectl exec pod -- kubectl delete pod x",
        // A known tool's operand is not skipped.
        "kubectl get delete",
        "git push origin --force",
        "git -C push status",
        // Words are compared whole.
        "terraform applyx",
        "mytool prod deploy",
    ] {
        let words: Vec<&str> = allowed.split(' ').collect();
        let decision = decide(&set, role, &words, None);
        // `kubectl get …` is allowed by a rule, the rest by the default.
        assert_eq!(decision.action, Action::Allow, "{allowed}: {decision:?}");
    }
    // An unlisted option may take the next word: both readings are tried.
    assert_eq!(
        action(&set, role, &["kubectl", "--as-user", "bob", "delete"]),
        Action::Block
    );
    assert_eq!(
        action(
            &set,
            role,
            &["kubectl", "--as-user", "--", "-n", "x", "delete"]
        ),
        Action::Block
    );
    assert_eq!(
        action(&set, role, &["kubectl", "--as-user", "-n", "delete"]),
        Action::Block
    );
}

#[test]
fn allow_rules_never_match_more_than_their_words() {
    let set = shipped_and_more();
    // `kubectl get` is allowed in a role whose default blocks.
    let get = decide(&set, "strict", &["kubectl", "get", "pods"], None);
    assert_eq!(
        (get.action, get.rule.map(|r| r.command)),
        (Action::Allow, Some("kubectl get".into()))
    );
    for command in [
        "kubectl -n prod get pods",
        "kubectl --context=c get",
        "kubectl -- get",
    ] {
        let words: Vec<&str> = command.split(' ').collect();
        let decision = decide(&set, "strict", &words, None);
        assert_eq!(
            (decision.action, decision.rule),
            (Action::Block, None),
            "{command}"
        );
    }
}

#[test]
fn commands_the_kernel_cannot_match_are_refused() {
    let set = shipped_and_more();
    let refusal = |words: &[&str]| decide(&set, "wide", words, None).refusal;
    // A rule could still match past the 16th word.
    let mut long = vec!["kubectl"];
    long.extend(std::iter::repeat_n("-v", 20));
    long.push("delete");
    assert_eq!(refusal(&long), Some(Refusal::TooManyWords));
    let decision = decide(&set, "wide", &long, None);
    assert_eq!((decision.action, decision.rule), (Action::Block, None));
    assert!(decision
        .refusal
        .unwrap()
        .to_string()
        .contains("first 16 words"));
    // No rule of the tool could match any more: a long command is fine.
    let mut fine = vec!["kubectl", "get"];
    fine.extend(std::iter::repeat_n("pods", 30));
    assert_eq!(decide(&set, "wide", &fine, None).action, Action::Allow);
    // A cluster too long to read whose last letter might take a value.
    let cluster = format!("-{}", "w".repeat(300));
    assert!(matches!(
        refusal(&["kubectl", &cluster, "x", "delete"]),
        Some(Refusal::UnclassifiableOption { .. })
    ));
    // A long operand is just an operand.
    let operand = "o".repeat(300);
    assert_eq!(refusal(&["kubectl", &operand, "delete"]), None);
}

#[test]
fn malformed_tool_tables_are_errors_at_their_position() {
    let text = lines(&[
        "[[tool]]",                                              // 1
        "name = \"kubectl\"",                                    // 2
        "style = \"posix\"",                                     // 3
        "value_options = [\"-n\", \"n\", \"--a=b\", 3, \"-n\"]", // 4
        "colour = \"red\"",                                      // 5
        "",                                                      // 6
        "[[tool]]",                                              // 7
        "name = \"/usr/bin/x\"",                                 // 8
        "value_options = [\"-chdir\"]",                          // 9
        "",                                                      // 10
        "[[tool]]",                                              // 11
        "name = \"kubectl\"",                                    // 12
        "",                                                      // 13
        "[[tool]]",                                              // 14
        "name = \"terraform\"",                                  // 15
        "style = \"go\"",                                        // 16
        "value_options = [\"-chdir\", \"--chdir\"]",             // 17
    ]);
    assert_errors(
        &[("tools.toml", &text)],
        &[
            ("tools.toml:3:9", "unknown option style \"posix\""),
            ("tools.toml:4:24", "invalid option \"n\""),
            ("tools.toml:4:29", "invalid option \"--a=b\""),
            (
                "tools.toml:4:38",
                "an option must be a string, found an integer",
            ),
            ("tools.toml:4:41", "option \"-n\" is listed more than once"),
            ("tools.toml:5:1", "unknown key `colour` in tool"),
            ("tools.toml:8:8", "invalid tool name \"/usr/bin/x\""),
            (
                "tools.toml:9:18",
                "a GNU-style tool reads \"-chdir\" as a cluster",
            ),
            (
                "tools.toml:11:1",
                "missing required key `value_options` in tool",
            ),
            (
                "tools.toml:17:28",
                "option \"--chdir\" is listed more than once",
            ),
        ],
    );
    // A tool is defined once across files.
    let one = "[[tool]]\nname = \"helm\"\nvalue_options = []\n";
    assert_errors(
        &[("a.toml", one), ("b.toml", one)],
        &[(
            "b.toml:2:8",
            "duplicate tool id \"helm\" (first defined at a.toml:2)",
        )],
    );
    assert_errors(
        &[("t.toml", "tool = \"x\"\n")],
        &[(
            "t.toml:1:8",
            "`tool` must be an array of tables: write [[tool]]",
        )],
    );
}

#[test]
fn grammars_load_with_their_source_and_heads_find_them() {
    let (dir, set) = shipped();
    let kubectl = set
        .grammar_of_head("kubectl")
        .expect("kubectl is in the table");
    assert_eq!(kubectl.style, OptionStyle::Gnu);
    assert!(kubectl.lists("-n") && kubectl.lists("--context"));
    assert_eq!(kubectl.source.file, dir.join("tools.toml"));
    let terraform = set.grammar_of_head("/usr/local/bin/terraform").unwrap();
    assert_eq!(
        (terraform.name.as_str(), terraform.style),
        ("terraform", OptionStyle::Go)
    );
    assert!(set.grammar_of_head("mytool").is_none());
}

// ---- property: evaluate equals a naive reference ---------------------------

pub(crate) mod reference {
    use std::fmt::Write;

    use proptest::prelude::*;
    use proptest::sample::select;

    use super::super::*;

    pub(crate) const HEADS: &[&str] = &[
        "terraform",
        "tf",
        "kubectl",
        "/usr/bin/terraform",
        "/opt/tf/terraform",
    ];
    pub(crate) const WORDS: &[&str] =
        &["apply", "plan", "-out=x", "delete", "-n", "prod", "--force"];
    pub(crate) const ARGV0: &[&str] = &[
        "terraform",
        "tf",
        "kubectl",
        "/usr/bin/terraform",
        "/opt/tf/terraform",
        "./terraform",
        "/usr/bin/tf",
        "bin/kubectl",
        "",
    ];
    pub(crate) const ARGS: &[&str] = &["apply", "plan", "-out=x", "delete", "apply plan", ""];
    /// Options in every placement: with and without values, `=` forms,
    /// combined short flags, `--`, and words too long for the kernel to
    /// read whole (clusters, an operand, a long option).
    pub(crate) fn options() -> Vec<String> {
        let mut options: Vec<String> = [
            "-chdir=x",
            "-chdir",
            "x",
            "-n",
            "prod",
            "-nprod",
            "-wn",
            "-nw",
            "-w",
            "--context",
            "--context=c",
            "--namespace",
            "--force",
            "--",
            "-",
            "-var",
        ]
        .map(str::to_owned)
        .to_vec();
        options.push(format!("-{}n", "w".repeat(298)));
        options.push(format!("-n{}", "w".repeat(298)));
        options.push("o".repeat(300));
        options.push(format!("--context-{}", "o".repeat(290)));
        options
    }
    /// The grammar table the generated policies load with: `terraform` (Go
    /// style) and `kubectl` (GNU style) are known, `tf` is not.
    pub(crate) const TOOLS: &str = "[[tool]]\nname = \"terraform\"\nstyle = \"go\"\nvalue_options = [\"-chdir\", \"-var\"]\n\n[[tool]]\nname = \"kubectl\"\nvalue_options = [\"-n\", \"--namespace\", \"--context\"]\n";
    pub(crate) const EXECUTABLES: &[&str] = &[
        "/usr/bin/terraform",
        "/opt/tf/terraform",
        "/usr/bin/kubectl",
        "/usr/bin/tf",
    ];

    #[derive(Clone, Debug)]
    pub(crate) struct GenPolicy {
        file: usize,
        active: bool,
        attached: bool,
        /// Each rule: an action and its commands (as words).
        rules: Vec<(Action, Vec<Vec<&'static str>>)>,
    }

    pub(crate) fn action() -> impl Strategy<Value = Action> {
        select(Action::ALL.to_vec())
    }

    pub(crate) fn command() -> impl Strategy<Value = Vec<&'static str>> {
        (select(HEADS), prop::collection::vec(select(WORDS), 0..3))
            .prop_map(|(head, rest)| std::iter::once(head).chain(rest).collect())
    }

    pub(crate) fn policy() -> impl Strategy<Value = GenPolicy> {
        (
            0..2usize,
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.8),
            prop::collection::vec((action(), prop::collection::vec(command(), 1..3)), 0..3),
        )
            .prop_map(|(file, active, attached, rules)| GenPolicy {
                file,
                active,
                attached,
                rules,
            })
    }

    fn arg() -> impl Strategy<Value = String> {
        prop_oneof![3 => select(ARGS).prop_map(str::to_owned), 2 => select(options())]
    }

    pub(crate) fn argv() -> impl Strategy<Value = Vec<String>> {
        prop_oneof![
            1 => Just(Vec::new()),
            9 => (select(ARGV0), prop::collection::vec(arg(), 0..7)).prop_map(
                |(argv0, args)| std::iter::once(argv0.to_owned()).chain(args).collect()
            ),
        ]
    }

    /// Commands around the kernel's word limit.
    pub(crate) fn long_argv() -> impl Strategy<Value = Vec<String>> {
        (select(ARGV0), prop::collection::vec(arg(), 12..20))
            .prop_map(|(argv0, args)| std::iter::once(argv0.to_owned()).chain(args).collect())
    }

    /// Policies crowded on two heads, one of them not in the grammar table,
    /// so that many partial matches are alive at once.
    pub(crate) fn crowded_policy() -> impl Strategy<Value = GenPolicy> {
        let command = (
            select(&["tf", "kubectl"][..]),
            prop::collection::vec(select(WORDS), 1..5),
        )
            .prop_map(|(head, rest)| std::iter::once(head).chain(rest).collect());
        prop::collection::vec((action(), prop::collection::vec(command, 1..12)), 1..6).prop_map(
            |rules| GenPolicy {
                file: 0,
                active: true,
                attached: true,
                rules,
            },
        )
    }

    fn quote(text: &str) -> String {
        toml::Value::String(text.to_owned()).to_string()
    }

    /// Writes the generated policies into two files plus a roles file.
    pub(crate) fn files(
        policies: &[GenPolicy],
        default: Action,
    ) -> Vec<(std::path::PathBuf, String)> {
        let mut texts = [String::new(), String::new()];
        for (i, policy) in policies.iter().enumerate() {
            let text = &mut texts[policy.file];
            let status = if policy.active { "active" } else { "disabled" };
            writeln!(
                text,
                "[[policy]]\nid = \"p{i}\"\nname = \"P{i}\"\nstatus = \"{status}\""
            )
            .unwrap();
            for (action, commands) in &policy.rules {
                let commands: Vec<String> = commands.iter().map(|c| quote(&c.join(" "))).collect();
                writeln!(
                    text,
                    "[[policy.rule]]\naction = \"{action}\"\ncommands = [{}]",
                    commands.join(", ")
                )
                .unwrap();
            }
        }
        let attached: Vec<String> = (0..policies.len())
            .filter(|&i| policies[i].attached)
            .map(|i| quote(&format!("p{i}")))
            .collect();
        let roles = format!(
            "[[role]]\nid = \"agent\"\npolicies = [{}]\ndefault_action = \"{default}\"\n",
            attached.join(", ")
        );
        // Deliberately not in name order.
        let [a, b] = texts;
        vec![
            ("roles.toml".into(), roles),
            ("b.toml".into(), b),
            ("tools.toml".into(), TOOLS.into()),
            ("a.toml".into(), a),
        ]
    }

    /// The specification, spelled out naively: the head names the
    /// executable, and the rule's other words are the command's next ones
    /// (allow), or are what remains of it, up front, once some of its
    /// deletable units are deleted (block and approve).
    fn reference_matches(
        action: Action,
        words: &[&str],
        argv: &[String],
        executable: Option<&str>,
    ) -> bool {
        let Some(argv0) = argv.first() else {
            return false;
        };
        let base = |path: &str| path.rsplit('/').next().unwrap_or("").to_owned();
        let heads: Vec<String> = if words[0].starts_with('/') {
            vec![executable.unwrap_or(argv0).to_owned()]
        } else {
            std::iter::once(argv0.as_str())
                .chain(executable)
                .map(base)
                .collect()
        };
        if !heads.iter().any(|h| h == words[0]) {
            return false;
        }
        let strict = argv.len() >= words.len() && (1..words.len()).all(|k| argv[k] == words[k]);
        if strict || action == Action::Allow {
            return strict;
        }
        let units = reference_units(&base(words[0]), &argv[1..]);
        // Every subset of the deletable units, deleted.
        let deletable: Vec<usize> = (0..units.len()).filter(|&u| units[u].1).collect();
        (0..1u32 << deletable.len()).any(|mask| {
            let kept: Vec<&str> = units
                .iter()
                .enumerate()
                .filter(|(u, _)| {
                    deletable
                        .iter()
                        .position(|d| d == u)
                        .is_none_or(|bit| mask & (1 << bit) == 0)
                })
                .flat_map(|(_, (unit, _))| unit.iter().map(String::as_str))
                .collect();
            kept.len() >= words.len() - 1 && kept[..words.len() - 1] == words[1..]
        })
    }

    /// The command's units under the generated grammar table (see
    /// [`TOOLS`]), each with whether it may be deleted: an option with the
    /// value it takes, `--`, an operand (deletable for a tool not in the
    /// table, or right after an option that may take a value: one the table
    /// does not list).
    fn reference_units(tool: &str, args: &[String]) -> Vec<(Vec<String>, bool)> {
        let takes_value = |word: &str| -> Option<bool> {
            // Some(true): the next word is its value; Some(false): it has
            // none there; None: it may.
            let seen = &word.as_bytes()[..word.len().min(255)];
            match tool {
                "terraform" => {
                    if seen.contains(&b'=') {
                        Some(false)
                    } else if ["-chdir", "--chdir", "-var", "--var"].contains(&word) {
                        Some(true)
                    } else {
                        None
                    }
                }
                "kubectl" if word.starts_with("--") => {
                    if seen.contains(&b'=') {
                        Some(false)
                    } else if ["--namespace", "--context"].contains(&word) {
                        Some(true)
                    } else {
                        None
                    }
                }
                "kubectl" => {
                    // The last byte seen never counts before the last.
                    let letters = &seen[1..];
                    let before = &letters[..letters.len() - 1];
                    let last = (word.len() <= 254).then(|| letters.last()).flatten();
                    if before.contains(&b'n') {
                        Some(false)
                    } else if last == Some(&b'n') {
                        Some(true)
                    } else {
                        None
                    }
                }
                _ => None,
            }
        };
        let known = tool == "terraform" || tool == "kubectl";
        let mut units: Vec<(Vec<String>, bool)> = Vec::new();
        let (mut i, mut ended, mut maybe) = (0, false, false);
        while i < args.len() {
            let word = &args[i];
            if ended || word.len() < 2 || !word.starts_with('-') {
                units.push((vec![word.clone()], !known || maybe));
                maybe = false;
                i += 1;
            } else if word == "--" {
                // Right after an option that may take a value, `--` may be
                // that value rather than the end of options.
                units.push((vec![word.clone()], true));
                ended = !maybe;
                maybe = false;
                i += 1;
            } else {
                // Right after an option that may take a value, an option may
                // be that value: whether it takes the next word is unsure.
                let next = match takes_value(word) {
                    Some(true) if maybe => None,
                    next => next,
                };
                if next == Some(true) && i + 1 < args.len() {
                    units.push((vec![word.clone(), args[i + 1].clone()], true));
                    i += 2;
                } else {
                    units.push((vec![word.clone()], true));
                    i += 1;
                }
                maybe = next.is_none();
            }
        }
        units
    }

    proptest! {
        #[test]
        fn evaluate_equals_the_naive_reference(
            policies in prop::collection::vec(policy(), 0..5),
            default in action(),
            argv in argv(),
            executable in prop::option::of(select(EXECUTABLES)),
        ) {
            let set = PolicySet::from_sources(&files(&policies, default))
                .map_err(|d| TestCaseError::fail(format!("{d:#?}")))?;

            // Rules in effect, in load order: file a, then b, each in order.
            let mut in_effect = Vec::new();
            for file in 0..2 {
                for (i, policy) in policies.iter().enumerate() {
                    if policy.file == file && policy.active && policy.attached {
                        for (action, commands) in &policy.rules {
                            for words in commands {
                                in_effect.push((*action, format!("p{i}"), words.clone()));
                            }
                        }
                    }
                }
            }
            let effective: Vec<(Action, String, String)> = set
                .effective_rules("agent")
                .unwrap()
                .into_iter()
                .map(|r| (r.action, r.policy_id.clone(), r.command.clone()))
                .collect();
            let expected: Vec<(Action, String, String)> = in_effect
                .iter()
                .map(|(a, p, w)| (*a, p.clone(), w.join(" ")))
                .collect();
            prop_assert_eq!(effective, expected);

            let cmd = CommandLine { argv: &argv, executable: executable.map(std::path::Path::new), aliases: &[] };
            let decision = set.evaluate("agent", &cmd).unwrap();
            // The kernel's limits are checked against it elsewhere.
            prop_assume!(decision.refusal.is_none());
            let matching: Vec<&(Action, String, Vec<&str>)> = in_effect
                .iter()
                .filter(|(action, _, words)| reference_matches(*action, words, &argv, executable))
                .collect();
            let strongest = matching.iter().map(|(a, _, _)| *a).max();
            let winner = matching.iter().find(|(a, _, _)| Some(*a) == strongest);

            prop_assert_eq!(decision.action, strongest.unwrap_or(default));
            let got = decision.rule.map(|r| (r.policy_id, r.command));
            let want = winner.map(|(_, p, w)| (p.clone(), w.join(" ")));
            prop_assert_eq!(got, want);
        }
    }
}
