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
    std::thread::sleep(Duration::from_millis(500));
    let log = fs::read_to_string(system.audit_log()).unwrap();
    assert!(log.matches("policy_reload_failed").count() >= 2, "{log}");

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
