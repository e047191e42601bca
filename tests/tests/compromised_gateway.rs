//! The gateway as the attacker: code execution as `airlock-gateway` on the
//! real bus (busctl run as that user), against the real airlock-totp. It must
//! not get a signature for anything an admin did not type a code for, must
//! not reuse a code an admin typed, and must not enrol.

#![forbid(unsafe_code)]

use airlock_common::dbus::{AirlockError, GrantRequest};
use airlock_common::grant::Access;
use airlock_common::names;
use airlock_tests::{CtlOutput, Options, System, TestUser, AGENT, APPROVER};

const GATEWAY: TestUser = TestUser {
    name: names::GATEWAY_USER,
};

const TOTP: [&str; 3] = [
    "org.airlock.Totp1",
    "/org/airlock/Totp1",
    "org.airlock.Totp1",
];

/// `busctl call` of a Totp1 method as `user`.
fn call_totp(system: &System, user: &TestUser, member_and_args: &[&str]) -> CtlOutput {
    let mut args = TOTP.to_vec();
    args.extend_from_slice(member_and_args);
    system.busctl_call(user, &args)
}

fn request(system: &System, scope: &str) -> String {
    let out = system.ctl(&AGENT, &["request", "--scope", scope, "--reason", "x"], "");
    out.stdout.trim().to_string()
}

/// busctl's arguments for `Approve(request, code)`.
fn approve_args<'a>(id: &'a str, uid: &'a str, scope: &'a str, code: &'a str) -> Vec<&'a str> {
    vec![
        "Approve",
        "(sussst)s",
        id,
        uid,
        "",
        scope,
        "write",
        "28800",
        code,
    ]
}

fn refused(out: &CtlOutput, why: &str) {
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains(why), "expected {why:?}: {out:?}");
    assert!(!out.stdout.contains("payload"), "{out:?}");
}

fn audit(system: &System) -> String {
    std::fs::read_to_string(system.audit_log()).unwrap()
}

#[test]
fn the_gateway_user_gets_no_signature_and_spends_no_code() {
    let system = System::start();
    let mut app = system.enrol();
    let id = request(&system, "command:terraform plan");
    let agent_uid = airlock_tests::users::uid(AGENT.name).as_raw().to_string();
    // The gateway holds a valid, unused code (as if it had seen one) and asks
    // for the grant of its choice: the bus refuses before airlock-totp sees it.
    let code = app.next_code();
    let out = call_totp(
        &system,
        &GATEWAY,
        &approve_args(&id, &agent_uid, "services:gmail", &code),
    );
    refused(&out, "Access denied");
    // What the gateway may still ask: the status and the public key.
    call_totp(&system, &GATEWAY, &["Status"]).success();
    call_totp(&system, &GATEWAY, &["PublicKey"]).success();
    // The code was not spent: the approver approves with it, and the grant
    // is exactly what the approver was shown (read-only, the request's scope).
    let out = system.ctl(
        &APPROVER,
        &["approve", &id, "--code-stdin"],
        &format!("{code}\n"),
    );
    let shown = &out.success().stdout;
    assert!(shown.contains("approving signs this grant"), "{shown}");
    assert!(shown.contains("command:terraform plan (read)"), "{shown}");
    let log = audit(&system);
    assert!(log.contains("\"grant_signed\""), "{log}");
    assert!(!log.contains("services:gmail"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_typed_for_one_request_signs_nothing_else() {
    let system = System::start();
    let mut app = system.enrol();
    let a = request(&system, "command:terraform plan");
    let b = request(&system, "command:terraform apply");
    let code = app.next_code();
    system
        .ctl(
            &APPROVER,
            &["approve", &a, "--code-stdin"],
            &format!("{code}\n"),
        )
        .success();
    // Whoever captured that code replays it with request B: as the gateway
    // user the bus refuses, and even as root airlock-totp refuses the spent
    // time step.
    let agent_uid = airlock_tests::users::uid(AGENT.name).as_raw();
    let uid_text = agent_uid.to_string();
    refused(
        &call_totp(
            &system,
            &GATEWAY,
            &approve_args(&b, &uid_text, "command:terraform apply", &code),
        ),
        "Access denied",
    );
    let totp = system.totp_proxy().await;
    let replay = GrantRequest {
        request_id: b.clone(),
        subject_uid: agent_uid,
        session: None.into(),
        scope: "command:terraform apply".into(),
        access: Access::Write,
        ttl_secs: 3600,
    };
    match totp.approve(replay, &code).await {
        Err(e) => assert!(
            matches!(AirlockError::from_remote(e), AirlockError::CodeReused(_)),
            "expected CodeReused"
        ),
        Ok(_) => panic!("a replayed code signed request {b}"),
    }
    // B is still pending, and only A's grant exists.
    assert!(system.ctl(&APPROVER, &["requests"], "").stdout.contains(&b));
    let grants = system.ctl(&APPROVER, &["grants", "--json"], "");
    let grants: Vec<serde_json::Value> = serde_json::from_str(&grants.success().stdout).unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["request_id"], a.as_str());
    // The replay is on the record, reported by airlock-totp.
    let log = audit(&system);
    assert!(
        log.lines()
            .any(|l| l.contains("\"totp_failed\"") && l.contains(&b) && l.contains("CodeReused")),
        "{log}"
    );
}

#[test]
fn every_enrolment_method_refuses_the_gateway_user() {
    let attempts: [&[&str]; 4] = [
        &["BeginEnrolment", "bs", "false", ""],
        &["BeginEnrolment", "bs", "false", "123456"],
        &["BeginEnrolment", "bs", "true", ""],
        &["ConfirmEnrolment", "s", "123456"],
    ];
    // The bus policy refuses it; with a bus that lets everything through,
    // airlock-totp refuses it by its uid.
    for (permissive_bus, why) in [(false, "Access denied"), (true, "the gateway may not")] {
        let system = System::start_with(Options {
            permissive_bus,
            ..Options::default()
        });
        for attempt in attempts {
            refused(&call_totp(&system, &GATEWAY, attempt), why);
        }
        let approve = call_totp(
            &system,
            &GATEWAY,
            &approve_args("req-1", "1000", "command:ls", "123456"),
        );
        refused(&approve, why);
        // Nothing was enrolled, nothing is pending.
        let status = system.ctl(&APPROVER, &["status"], "");
        assert!(
            status.success().stdout.contains("not enrolled"),
            "{status:?}"
        );
        // The approver enrols at airlock-totp directly; the gateway only
        // hears of it, for the audit log.
        let _app = system.enrol();
        let log = audit(&system);
        assert!(log.contains("\"totp_enrolment_started\""), "{log}");
        assert!(log.contains("\"totp_enrolled\""), "{log}");
    }
}

#[test]
fn only_airlock_totp_reports_totp_outcomes() {
    for permissive_bus in [false, true] {
        let system = System::start_with(Options {
            permissive_bus,
            ..Options::default()
        });
        let before = audit(&system);
        for user in [&AGENT, &APPROVER, &GATEWAY] {
            let forged = system.busctl_call(
                user,
                &[
                    "org.airlock.Gateway1",
                    "/org/airlock/Gateway1",
                    "org.airlock.Gateway1",
                    "ReportTotp",
                    "(sussss)",
                    "enrolled",
                    "0",
                    "",
                    "",
                    "",
                    "",
                ],
            );
            assert_ne!(forged.code, 0, "{forged:?}");
            assert!(
                forged.stderr.contains("Access denied")
                    || forged.stderr.contains("only airlock-totp"),
                "{forged:?}"
            );
        }
        assert_eq!(audit(&system), before);
    }
}
