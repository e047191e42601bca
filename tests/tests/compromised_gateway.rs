//! The gateway as the attacker: code execution as `airlock-gateway` on the
//! real bus (busctl run as that user), against the real airlock-totp. It must
//! not get a signature for anything an admin did not type a code for, must
//! not reuse a code an admin typed, must not enrol, and must not get a grant
//! into the kernel that airlock-totp did not sign for that session.

#![forbid(unsafe_code)]

use airlock_common::dbus::{AirlockError, GrantRequest};
use airlock_common::grant::Access;
use airlock_common::names;
use airlock_tests::{
    catalogue, forged_grants, CtlOutput, Options, System, TestUser, AGENT, APPROVER,
};

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
    assert!(log.contains("\"totp_verified\""), "{log}");
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

/// Lowercase hex SHA-256 of `prev`, a newline and `body`: the log's chain
/// hash, as anyone can compute it from the documented format.
fn chain_hash(prev: &str, body: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(b"\n");
    ctx.update(body.as_bytes());
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rewrites the audit log as the gateway user could, with nothing but the
/// file format: the first `access_requested` gets another reason, every
/// record keeps its time, `seq`, `prev` and `hash` are recomputed and so is
/// the head anchor; the files are replaced as that user. Returns the `seq`
/// of the edited record.
fn rewrite_audit_log(system: &System, keep_countersignatures: bool) -> u64 {
    use serde_json::{Map, Value};
    let text = std::fs::read_to_string(system.audit_log()).unwrap();
    let mut prev = "0".repeat(64);
    let mut seq = 0u64;
    let mut edited = None;
    let mut log = String::new();
    for line in text.lines() {
        let mut record: Map<String, Value> = serde_json::from_str(line).unwrap();
        if record["event"] == "audit_countersigned" && !keep_countersignatures {
            continue;
        }
        if record["event"] == "access_requested" && edited.is_none() {
            record.insert("reason".into(), "nothing to see here".into());
            edited = Some(record["seq"].as_u64().unwrap());
        }
        seq += 1;
        record.remove("hash");
        record.insert("seq".into(), seq.into());
        record.insert("prev".into(), prev.clone().into());
        // Canonical JSON: sorted keys, compact (serde_json's Map is sorted).
        let hash = chain_hash(&prev, &serde_json::to_string(&record).unwrap());
        // The stored line: seq, ts, event first, the fields, prev, hash.
        let mut out = format!(
            "{{\"seq\":{seq},\"ts\":{},\"event\":{}",
            record["ts"], record["event"]
        );
        for (key, value) in &record {
            if !["seq", "ts", "event", "prev"].contains(&key.as_str()) {
                out.push_str(&format!(",{}:{}", Value::from(key.as_str()), value));
            }
        }
        out.push_str(&format!(",\"prev\":{:?},\"hash\":{:?}}}\n", prev, hash));
        log.push_str(&out);
        prev = hash;
    }
    let head = format!("{{\"seq\":{seq},\"hash\":{prev:?}}}\n");
    let forged = system.path("forged");
    std::fs::create_dir(&forged).unwrap();
    let (log_path, head_path) = (forged.join("log"), forged.join("head"));
    std::fs::write(&log_path, log).unwrap();
    std::fs::write(&head_path, head).unwrap();
    // The rewrite is consistent: the chain and its head check out.
    let anchor = airlock_common::audit::read_head(&head_path).unwrap();
    let report = airlock_common::audit::verify(&log_path, anchor.as_ref()).unwrap();
    assert_eq!(report.problem, None, "the rewrite is not consistent");
    for (from, to) in [
        (&log_path, system.audit_log()),
        (
            &head_path,
            system
                .audit_dir()
                .join(airlock_common::names::AUDIT_HEAD_FILE),
        ),
    ] {
        std::fs::set_permissions(from, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        system
            .run_as(
                &GATEWAY,
                std::path::Path::new("/bin/cp"),
                &[from.to_str().unwrap(), to.to_str().unwrap()],
                "",
            )
            .success();
    }
    std::fs::remove_dir_all(&forged).unwrap();
    edited.expect("an access_requested record")
}

#[test]
fn a_consistently_rewritten_audit_log_fails_verify() {
    for keep_countersignatures in [true, false] {
        let mut system = System::start();
        for _ in 0..3 {
            request(&system, "services:gmail");
        }
        // airlock-totp countersigns the head with the requests in it.
        system.wait_for_countersignature(system.countersignatures());
        system.kill_gateway();
        let verify = |system: &System| system.audit_verify();
        let intact = verify(&system);
        assert!(intact.success().stdout.contains("intact"), "{intact:?}");

        // The last countersignature below the record the attacker edits.
        let records = airlock_common::audit::read_records(&system.audit_log()).unwrap();
        let edited = rewrite_audit_log(&system, keep_countersignatures);
        let last_good = records
            .iter()
            .filter_map(airlock_common::audit::countersign::from_record)
            .map(|head| head.seq)
            .filter(|&seq| seq < edited)
            .max()
            .unwrap_or(0);
        let out = verify(&system);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stdout.contains("TAMPERED"), "{out:?}");
        assert!(
            out.stdout.contains(&format!(
                "the first record after the last good countersignature is record {}",
                last_good + 1
            )),
            "{out:?}"
        );
    }
}

#[test]
fn the_enforcer_installs_no_grant_airlock_totp_did_not_sign_for_the_session() {
    let system = System::start_with(Options {
        enforcer: true,
        ..Options::default()
    });
    let bench = catalogue::prepare(&system);
    let mut app = system.enrol();
    let enforcer_log = || system.service_log("airlock-enforcer");
    let forgeries = forged_grants::scenario(&system, &bench, &mut app)
        .unwrap_or_else(|e| panic!("{e}\nenforcer log:\n{}", enforcer_log()));
    for forgery in &forgeries {
        println!("{}: {}", forgery.name, forgery.detail);
    }
    assert_eq!(forgeries.len(), 4);
    let let_through: Vec<String> = forgeries
        .iter()
        .filter(|f| !f.refused)
        .map(|f| format!("{}: {}", f.name, f.detail))
        .collect();
    assert!(
        let_through.is_empty(),
        "{let_through:#?}\nenforcer log:\n{}",
        enforcer_log()
    );
    // Each was refused for what is wrong with it.
    let reason = |name: &str| {
        &forgeries
            .iter()
            .find(|f| f.name.starts_with(name))
            .unwrap()
            .detail
    };
    for (name, why) in [
        ("no signature", "signature does not verify"),
        ("signed by a key", "signature does not verify"),
        ("approved for another session", "it was signed for session"),
        (
            "approved for `terraform validate`",
            "signature does not verify",
        ),
    ] {
        assert!(reason(name).contains(why), "{name}: {}", reason(name));
    }
}
