//! Request → TOTP approval → grant, against a real bus and real users.

#![forbid(unsafe_code)]

use std::time::Duration;

use airlock_tests::{Options, System, AGENT, APPROVER, OUTSIDER};

fn request(system: &System, scope: &str, reason: &str) -> String {
    let out = system.ctl(
        &AGENT,
        &["request", "--scope", scope, "--reason", reason],
        "",
    );
    out.success();
    let id = out.stdout.trim().to_string();
    assert!(id.starts_with("req-"), "{out:?}");
    id
}

fn audit_events(system: &System) -> Vec<serde_json::Value> {
    system.audit_records()
}

fn has_event(system: &System, event: &str, key: &str, value: &str) -> bool {
    audit_events(system)
        .iter()
        .any(|r| r["event"] == event && r[key] == value)
}

#[test]
fn request_approve_grant_flow() {
    let system = System::start();
    let mut app = system.enrol();
    let id = request(&system, "command:terraform plan", "plan the staging change");

    // The agent sees its own pending request; the approver sees it too.
    let listed = system.ctl(&AGENT, &["requests"], "");
    assert!(listed.success().stdout.contains(&id));

    let code = app.next_code();
    let out = system.ctl(
        &APPROVER,
        &["approve", &id, "--ttl", "30m", "--code-stdin"],
        &format!("{code}\n"),
    );
    out.success();
    assert!(
        out.stdout.contains("command:terraform plan (read)"),
        "{out:?}"
    );

    // The grant is the agent's, read-only, and the request is gone.
    let grants = system.ctl(&AGENT, &["grants", "--json"], "");
    let grants: Vec<serde_json::Value> = serde_json::from_str(&grants.success().stdout).unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["access"], "read");
    assert_eq!(grants[0]["request_id"], id.as_str());
    let ttl = grants[0]["expires_at"].as_i64().unwrap() - grants[0]["not_before"].as_i64().unwrap();
    assert_eq!(ttl, 1800);
    assert!(system
        .ctl(&AGENT, &["requests"], "")
        .stdout
        .contains("no pending requests"));

    // Another user sees neither.
    let other = system.ctl(&OUTSIDER, &["grants", "--json"], "");
    assert_eq!(other.success().stdout.trim(), "[]");

    assert!(has_event(&system, "access_requested", "request_id", &id));
    assert!(has_event(&system, "totp_verified", "request_id", &id));
    assert!(has_event(&system, "grant_issued", "request_id", &id));
}

#[test]
fn write_access_only_when_asked() {
    let system = System::start();
    let mut app = system.enrol();
    let id = request(&system, "services:gmail", "send the weekly report");
    let out = system.ctl(
        &APPROVER,
        &["approve", &id, "--write", "--code-stdin"],
        &format!("{}\n", app.next_code()),
    );
    assert!(out.success().stdout.contains("services:gmail (write)"));
    let grants = system.ctl(&APPROVER, &["grants", "--json"], "");
    let grants: Vec<serde_json::Value> = serde_json::from_str(&grants.stdout).unwrap();
    // Default lifetime is 60 minutes.
    let ttl = grants[0]["expires_at"].as_i64().unwrap() - grants[0]["not_before"].as_i64().unwrap();
    assert_eq!(ttl, 3600);
}

#[test]
fn wrong_code_is_refused_and_changes_nothing() {
    let system = System::start();
    let app = system.enrol();
    let id = request(&system, "command:terraform plan", "plan");
    let out = system.ctl(
        &APPROVER,
        &["approve", &id, "--code-stdin"],
        &format!("{}\n", app.wrong_code()),
    );
    out.failure();
    assert!(out.stderr.contains("InvalidCode"), "{out:?}");
    assert!(system
        .ctl(&APPROVER, &["requests"], "")
        .stdout
        .contains(&id));
    assert!(system
        .ctl(&APPROVER, &["grants"], "")
        .stdout
        .contains("no live grants"));
    assert!(has_event(&system, "totp_failed", "request_id", &id));
}

#[test]
fn replayed_code_is_refused() {
    let system = System::start();
    let mut app = system.enrol();
    let first = request(&system, "command:terraform plan", "one");
    let second = request(&system, "command:terraform plan", "two");
    let code = app.next_code();
    system
        .ctl(
            &APPROVER,
            &["approve", &first, "--code-stdin"],
            &format!("{code}\n"),
        )
        .success();
    let out = system.ctl(
        &APPROVER,
        &["approve", &second, "--code-stdin"],
        &format!("{code}\n"),
    );
    out.failure();
    assert!(out.stderr.contains("CodeReused"), "{out:?}");
    // A fresh code still works.
    system
        .ctl(
            &APPROVER,
            &["approve", &second, "--code-stdin"],
            &format!("{}\n", app.next_code()),
        )
        .success();
}

#[test]
fn lockout_after_five_failures_refuses_even_the_right_code() {
    let system = System::start();
    let mut app = system.enrol();
    let id = request(&system, "command:terraform plan", "plan");
    for _ in 0..5 {
        system
            .ctl(
                &APPROVER,
                &["approve", &id, "--code-stdin"],
                &format!("{}\n", app.wrong_code()),
            )
            .failure();
    }
    let out = system.ctl(
        &APPROVER,
        &["approve", &id, "--code-stdin"],
        &format!("{}\n", app.next_code()),
    );
    out.failure();
    assert!(out.stderr.contains("Locked"), "{out:?}");
    let status = system.ctl(&APPROVER, &["status"], "");
    assert!(status.success().stdout.contains("LOCKED"), "{status:?}");
    assert!(has_event(&system, "totp_locked", "request_id", &id));
}

#[test]
fn grants_and_requests_expire_by_themselves() {
    let system = System::start_with(Options {
        gateway_config: vec![("request_ttl", "\"3s\"")],
        ..Options::default()
    });
    let mut app = system.enrol();
    let granted = request(&system, "command:terraform plan", "short grant");
    let abandoned = request(&system, "command:terraform plan", "nobody answers");
    system
        .ctl(
            &APPROVER,
            &["approve", &granted, "--ttl", "2s", "--code-stdin"],
            &format!("{}\n", app.next_code()),
        )
        .success();
    assert!(!system
        .ctl(&APPROVER, &["grants"], "")
        .stdout
        .contains("no live grants"));
    std::thread::sleep(Duration::from_secs(5));
    assert!(system
        .ctl(&APPROVER, &["grants"], "")
        .stdout
        .contains("no live grants"));
    assert!(system
        .ctl(&APPROVER, &["requests"], "")
        .stdout
        .contains("no pending requests"));
    assert!(has_event(
        &system,
        "request_expired",
        "request_id",
        &abandoned
    ));
    assert!(audit_events(&system)
        .iter()
        .any(|r| r["event"] == "grant_expired"));
}

#[test]
fn revoke_one_and_all() {
    let system = System::start();
    let mut app = system.enrol();
    let mut grant_ids = Vec::new();
    for reason in ["a", "b", "c"] {
        let id = request(&system, "command:terraform plan", reason);
        system
            .ctl(
                &APPROVER,
                &["approve", &id, "--code-stdin"],
                &format!("{}\n", app.next_code()),
            )
            .success();
    }
    let grants = system.ctl(&APPROVER, &["grants", "--json"], "");
    let grants: Vec<serde_json::Value> = serde_json::from_str(&grants.stdout).unwrap();
    for g in &grants {
        grant_ids.push(g["id"].as_str().unwrap().to_string());
    }
    assert_eq!(grant_ids.len(), 3);

    // The agent may not revoke (the bus refuses), the approver may.
    system.ctl(&AGENT, &["revoke", &grant_ids[0]], "").failure();
    system
        .ctl(&APPROVER, &["revoke", &grant_ids[0]], "")
        .success();
    assert!(has_event(
        &system,
        "grant_revoked",
        "grant_id",
        &grant_ids[0]
    ));
    let out = system.ctl(&APPROVER, &["revoke", "--all"], "");
    assert!(out.success().stdout.contains("revoked 2 grant(s)"));
    assert!(system
        .ctl(&APPROVER, &["grants"], "")
        .stdout
        .contains("no live grants"));
    // Revoking again names the missing grant.
    let again = system.ctl(&APPROVER, &["revoke", &grant_ids[1]], "");
    assert!(again.failure().stderr.contains("NotFound"), "{again:?}");
}

#[test]
fn deny_removes_the_request() {
    let system = System::start();
    let id = request(&system, "command:terraform plan", "please");
    system.ctl(&AGENT, &["deny", &id], "").failure();
    system
        .ctl(&APPROVER, &["deny", &id, "--reason", "not today"], "")
        .success();
    assert!(system
        .ctl(&APPROVER, &["requests"], "")
        .stdout
        .contains("no pending requests"));
    assert!(has_event(&system, "request_denied", "request_id", &id));
}

#[test]
fn restart_keeps_grants_and_pending_requests() {
    let mut system = System::start();
    let mut app = system.enrol();
    let granted = request(&system, "command:terraform plan", "keep me");
    let earlier = request(&system, "services:calendar", "still waiting");
    system
        .ctl(
            &APPROVER,
            &["approve", &granted, "--code-stdin"],
            &format!("{}\n", app.next_code()),
        )
        .success();
    let before = system.ctl(&APPROVER, &["grants", "--json"], "").stdout;
    // Filed just before the crash: likely only in the audit log so far.
    let last = request(&system, "services:gmail", "filed last");

    system.kill_gateway();
    system.start_gateway();

    let after = system.ctl(&APPROVER, &["grants", "--json"], "").stdout;
    assert_eq!(before, after);
    let requests = system.ctl(&APPROVER, &["requests"], "").stdout;
    assert!(requests.contains(&earlier) && requests.contains(&last));
    system.audit_verify().success();
}

#[test]
fn a_forged_grant_in_the_state_file_is_dropped_on_load() {
    let mut system = System::start();
    let mut app = system.enrol();
    let id = request(&system, "command:terraform plan", "read only please");
    system
        .ctl(
            &APPROVER,
            &["approve", &id, "--code-stdin"],
            &format!("{}\n", app.next_code()),
        )
        .success();
    system.kill_gateway();
    // Someone with write access to the state widens the grant to write.
    let state = system.path("gateway/state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    let forged = text.replace("\\\"read\\\"", "\\\"write\\\"");
    assert_ne!(text, forged, "state file layout changed; update the test");
    std::fs::write(&state, forged).unwrap();
    system.start_gateway();
    assert!(system
        .ctl(&APPROVER, &["grants"], "")
        .stdout
        .contains("no live grants"));
    assert!(audit_events(&system)
        .iter()
        .any(|r| r["event"] == "grant_rejected"));
}
