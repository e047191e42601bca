//! Policy decisions, validation and reloads through the real gateway, and
//! `airlockctl audit verify` against a damaged log.

#![forbid(unsafe_code)]

use std::fs;
use std::time::Duration;

use airlock_tests::{repo_root, System, AGENT, APPROVER};

#[test]
fn policy_check_through_the_gateway_and_locally() {
    let system = System::start();
    let role = "terraform-restricted-agent";
    for (argv, code, word) in [
        (vec!["terraform", "apply"], 3, "block"),
        (
            vec!["/opt/homebrew/bin/terraform", "apply", "-auto-approve"],
            3,
            "block",
        ),
        (vec!["terraform", "plan", "-out=tfplan"], 2, "approve"),
        (vec!["terraform", "init"], 0, "allow"),
        (
            vec!["aws", "iam", "create-role", "--role-name", "x"],
            3,
            "block",
        ),
    ] {
        let mut args = vec!["policy", "check", "--role", role, "--"];
        args.extend(argv.iter().copied());
        let out = system.ctl(&AGENT, &args, "");
        assert_eq!(out.code, code, "{argv:?}: {out:?}");
        assert_eq!(out.stdout.lines().next(), Some(word), "{out:?}");
        if word != "allow" {
            assert!(
                out.stdout.contains(".toml:"),
                "source location missing: {out:?}"
            );
        }
    }
    // Locally, against the repository's policies.
    let dir = repo_root().join("policies");
    let out = system.ctl(
        &AGENT,
        &[
            "policy",
            "check",
            "--policies",
            dir.to_str().unwrap(),
            "--role",
            role,
            "--",
            "kubectl",
            "delete",
            "pod",
            "x",
        ],
        "",
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stdout.contains("infra-mutation-block.toml:"), "{out:?}");
    let unknown = system.ctl(
        &AGENT,
        &["policy", "check", "--role", "nope", "--", "ls"],
        "",
    );
    assert_eq!(unknown.code, 1, "{unknown:?}");
}

/// `airlockctl policy check` for the role's shipped rules, through the
/// gateway or (with `policies`) locally.
fn check(system: &System, policies: Option<&str>, argv: &[&str]) -> airlock_tests::CtlOutput {
    let mut args = vec!["policy", "check"];
    if let Some(dir) = policies {
        args.extend(["--policies", dir]);
    }
    args.extend(["--role", "terraform-restricted-agent", "--"]);
    args.extend(argv);
    system.ctl(&AGENT, &args, "")
}

#[test]
fn policy_check_skips_the_tools_options_and_says_which() {
    let system = System::start();
    let dir = repo_root().join("policies");
    for policies in [None, Some(dir.to_str().unwrap())] {
        for (argv, rule, skipped) in [
            (
                &["kubectl", "-n", "prod", "delete", "pod", "x"][..],
                "kubectl delete",
                "skipped options: -n prod",
            ),
            (
                &["kubectl", "--context=prod", "delete", "pod", "x"],
                "kubectl delete",
                "skipped options: --context=prod",
            ),
            (
                &["terraform", "-chdir=infra", "apply"],
                "terraform apply",
                "skipped options: -chdir=infra",
            ),
            (
                &[
                    "aws",
                    "--profile",
                    "prod",
                    "iam",
                    "create-role",
                    "--role-name",
                    "r",
                ],
                "aws iam create-role",
                "skipped options: --profile prod",
            ),
        ] {
            let out = check(&system, policies, argv);
            assert_eq!(out.code, 3, "{argv:?} ({policies:?}): {out:?}");
            assert_eq!(out.stdout.lines().next(), Some("block"), "{out:?}");
            assert!(out.stdout.contains(&format!("rule:   {rule} ")), "{out:?}");
            assert!(out.stdout.contains(skipped), "{out:?}");
        }
        let plan = check(&system, policies, &["terraform", "-chdir=infra", "plan"]);
        assert_eq!(plan.code, 2, "{plan:?}");
        // Options skipped, the words still count.
        let init = check(&system, policies, &["terraform", "-chdir=.", "init"]);
        assert_eq!(init.code, 0, "{init:?}");
        let value = check(
            &system,
            policies,
            &["kubectl", "-n", "delete", "get", "pods"],
        );
        assert_eq!(value.code, 0, "{value:?}");
        // Past what the kernel reads a rule could still match: refused.
        let mut long = vec!["kubectl"];
        long.extend(std::iter::repeat_n("-v", 20));
        long.push("delete");
        let out = check(&system, policies, &long);
        assert_eq!(out.code, 3, "{out:?}");
        assert!(
            out.stdout.contains(
                "refused: a block or approve rule could still match past the first 16 words"
            ),
            "{out:?}"
        );
    }
}

#[test]
fn a_malformed_tool_grammar_is_reported_and_never_applied() {
    let system = System::start();
    let skipped = |system: &System| {
        let out = check(system, None, &["kubectl", "-n", "prod", "delete", "pod"]);
        assert_eq!(out.code, 3, "{out:?}");
        assert!(out.stdout.contains("skipped options: -n prod"), "{out:?}");
    };
    skipped(&system);
    // A second kubectl grammar, an option a GNU-style tool cannot have, and
    // an unknown style.
    fs::write(
        system.policy_dir().join("zz-tools.toml"),
        "[[tool]]\nname = \"kubectl\"\nvalue_options = []\n\n[[tool]]\nname = \"mytool\"\nstyle = \"posix\"\nvalue_options = [\"-chdir\"]\n",
    )
    .unwrap();
    let validate = system.ctl(
        &APPROVER,
        &["policy", "validate", system.policy_dir().to_str().unwrap()],
        "",
    );
    validate.failure();
    for error in [
        "zz-tools.toml:2:8: duplicate tool id \"kubectl\"",
        "zz-tools.toml:7:9: `style`: unknown option style \"posix\"",
        "zz-tools.toml:8:18: option \"-chdir\": a GNU-style tool reads",
    ] {
        assert!(validate.stderr.contains(error), "{error}: {validate:?}");
    }
    let reload = system.ctl(&APPROVER, &["policy", "reload"], "");
    reload.failure();
    assert!(
        reload.stderr.contains("still serving the previous set"),
        "{reload:?}"
    );
    assert!(reload.stderr.contains("zz-tools.toml:2:8:"), "{reload:?}");
    // The grammar in force is the previous one: `-n` still takes a value.
    skipped(&system);
    let log = fs::read_to_string(system.audit_log()).unwrap();
    assert!(log.contains("policy_reload_failed"), "{log}");
}

#[test]
fn invalid_policy_is_reported_and_never_applied() {
    let system = System::start();
    let before = system.ctl(
        &AGENT,
        &[
            "policy",
            "check",
            "--role",
            "terraform-restricted-agent",
            "--",
            "terraform",
            "apply",
        ],
        "",
    );
    assert_eq!(before.code, 3);

    // Break the set: a bad action and a role naming an unknown policy.
    fs::write(
        system.policy_dir().join("zz-broken.toml"),
        "[[policy]]\nid = \"broken\"\nname = \"Broken\"\n\n[[policy.rule]]\naction = \"obliterate\"\ncommands = [\"rm\"]\n",
    )
    .unwrap();
    let validate = system.ctl(
        &APPROVER,
        &["policy", "validate", system.policy_dir().to_str().unwrap()],
        "",
    );
    validate.failure();
    assert!(
        validate.stderr.contains("zz-broken.toml:6:"),
        "{validate:?}"
    );

    let reload = system.ctl(&APPROVER, &["policy", "reload"], "");
    reload.failure();
    assert!(
        reload.stderr.contains("still serving the previous set"),
        "{reload:?}"
    );
    assert!(reload.stderr.contains("zz-broken.toml:6:"), "{reload:?}");
    // The previous set still decides.
    let after = system.ctl(
        &AGENT,
        &[
            "policy",
            "check",
            "--role",
            "terraform-restricted-agent",
            "--",
            "terraform",
            "apply",
        ],
        "",
    );
    assert_eq!(after.code, 3, "{after:?}");
    assert!(system
        .ctl(&APPROVER, &["status"], "")
        .stdout
        .contains("LAST RELOAD FAILED"));

    // SIGHUP takes the same path.
    system.signal_gateway(nix::sys::signal::Signal::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = fs::read_to_string(system.audit_log()).unwrap();
        if log.matches("policy_reload_failed").count() >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP recorded no failed reload: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Fix it: the new set applies.
    fs::write(
        system.policy_dir().join("zz-broken.toml"),
        "[[policy]]\nid = \"fixed\"\nname = \"Fixed\"\n\n[[policy.rule]]\naction = \"block\"\ncommands = [\"terraform init\"]\n\n[[role]]\nid = \"strict\"\npolicies = [\"fixed\"]\n",
    )
    .unwrap();
    system.ctl(&APPROVER, &["policy", "reload"], "").success();
    let init = system.ctl(
        &AGENT,
        &[
            "policy",
            "check",
            "--role",
            "strict",
            "--",
            "terraform",
            "init",
        ],
        "",
    );
    assert_eq!(init.code, 3, "{init:?}");
}

fn verify(system: &System) -> airlock_tests::CtlOutput {
    system.audit_verify()
}

fn fill_log(system: &System) {
    for i in 0..6 {
        system
            .ctl(
                &AGENT,
                &[
                    "request",
                    "--scope",
                    "services:gmail",
                    "--reason",
                    &format!("r{i}"),
                ],
                "",
            )
            .success();
    }
}

#[test]
fn audit_verify_detects_edits_truncation_and_reordering() {
    let mut system = System::start();
    fill_log(&system);
    // Stop the gateway so nothing appends while we tamper.
    system.kill_gateway();
    let ok = verify(&system);
    assert!(ok.success().stdout.contains("intact"), "{ok:?}");
    let path = system.audit_log();
    let original = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() >= 8);

    // Edited: change the reason in record 5.
    let mut edited = lines.clone();
    let changed = edited[4].replace("\"r", "\"R");
    assert_ne!(changed, edited[4]);
    edited[4] = &changed;
    fs::write(&path, edited.join("\n") + "\n").unwrap();
    let out = verify(&system);
    assert!(out.failure().stdout.contains("record 5"), "{out:?}");
    assert!(out.stdout.contains("edited"), "{out:?}");

    // Removed from the middle.
    let mut removed = lines.clone();
    removed.remove(3);
    fs::write(&path, removed.join("\n") + "\n").unwrap();
    let out = verify(&system);
    assert!(out.failure().stdout.contains("removed"), "{out:?}");

    // Reordered.
    let mut swapped = lines.clone();
    swapped.swap(3, 4);
    fs::write(&path, swapped.join("\n") + "\n").unwrap();
    let out = verify(&system);
    assert!(out.failure().stdout.contains("reordered"), "{out:?}");

    // Truncated: the last two records cut off.
    fs::write(&path, lines[..lines.len() - 2].join("\n") + "\n").unwrap();
    let out = verify(&system);
    assert!(out.failure().stdout.contains("truncated"), "{out:?}");

    // Restored: intact again.
    fs::write(&path, &original).unwrap();
    verify(&system).success();
}

#[test]
fn audit_listing_filters() {
    let system = System::start();
    fill_log(&system);
    let out = system.ctl(
        &APPROVER,
        &[
            "audit",
            "--since",
            "1h",
            "--json",
            "--audit-dir",
            system.audit_dir().to_str().unwrap(),
        ],
        "",
    );
    let records: Vec<serde_json::Value> = out
        .success()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        records
            .iter()
            .filter(|r| r["event"] == "access_requested")
            .count(),
        6
    );
    let none = system.ctl(
        &APPROVER,
        &[
            "audit",
            "--service",
            "nothing-here",
            "--audit-dir",
            system.audit_dir().to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(none.success().stdout.trim(), "");
    // Agents cannot read the log.
    let denied = system.ctl(
        &AGENT,
        &["audit", "--audit-dir", system.audit_dir().to_str().unwrap()],
        "",
    );
    assert!(
        denied
            .failure()
            .stderr
            .contains("readable by root and group airlock-admin"),
        "{denied:?}"
    );
}
