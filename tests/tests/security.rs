//! Who can read and call what: Unix permissions, the bus policy, the
//! services' own uid checks, and hostile input.

#![forbid(unsafe_code)]

use std::path::Path;

use airlock_common::dbus::{GrantRequest, SignedGrantWire};
use airlock_common::grant::Access;
use airlock_tests::{users::ROOT, Options, System, TestUser, AGENT, APPROVER, OUTSIDER};

/// Whether `user` can open `path` for reading (a real open(2) as that user).
fn can_read(system: &System, user: &TestUser, path: &Path) -> bool {
    system.can_read(user, path)
}

const GATEWAY: TestUser = TestUser {
    name: "airlock-gateway",
};
const TOTP: TestUser = TestUser {
    name: "airlock-totp",
};

#[test]
fn permission_matrix() {
    let system = System::start();
    let _app = system.enrol();
    let secret = system.path("totp/totp-secret");
    let signing_key = system.path("totp/grant-signing.pk8");
    let audit = system.audit_log();
    let state = system.path("gateway/state.json");
    for path in [&secret, &signing_key, &audit, &state] {
        assert!(path.exists(), "{} should exist", path.display());
        assert!(can_read(&system, &ROOT, path));
    }
    // The agent reads none of them.
    for path in [&secret, &signing_key, &audit, &state] {
        assert!(
            !can_read(&system, &AGENT, path),
            "agent can read {}",
            path.display()
        );
        assert!(
            !can_read(&system, &OUTSIDER, path),
            "outsider can read {}",
            path.display()
        );
    }
    // The gateway cannot read the TOTP secret or the signing key.
    assert!(!can_read(&system, &GATEWAY, &secret));
    assert!(!can_read(&system, &GATEWAY, &signing_key));
    assert!(can_read(&system, &GATEWAY, &state));
    // The TOTP service cannot read the gateway's state or the audit log.
    assert!(!can_read(&system, &TOTP, &state));
    assert!(!can_read(&system, &TOTP, &audit));
    // Approvers (group airlock-admin) read the audit log, not the secrets.
    assert!(can_read(&system, &APPROVER, &audit));
    assert!(!can_read(&system, &APPROVER, &secret));
    assert!(!can_read(&system, &APPROVER, &state));
}

#[test]
fn the_bus_policy_stops_agents_from_approving_or_calling_totp() {
    let system = System::start();
    let mut app = system.enrol();
    let id = system
        .ctl(
            &AGENT,
            &[
                "request",
                "--scope",
                "command:terraform plan",
                "--reason",
                "x",
            ],
            "",
        )
        .success()
        .stdout
        .trim()
        .to_string();
    // The agent even has a valid code here: the bus still says no.
    let out = system.ctl(
        &AGENT,
        &["approve", &id, "--code-stdin"],
        &format!("{}\n", app.next_code()),
    );
    out.failure();
    assert!(out.stderr.contains("bus policy refused"), "{out:?}");
    // The agent cannot reach airlock-totp at all.
    let call = system.busctl_call(
        &AGENT,
        &[
            "org.airlock.Totp1",
            "/org/airlock/Totp1",
            "org.airlock.Totp1",
            "PublicKey",
        ],
    );
    assert_ne!(call.code, 0);
    assert!(
        call.stderr.contains("Access denied") || call.stderr.contains("AccessDenied"),
        "{call:?}"
    );
    // Nor may it own the gateway's name.
    let own = system.busctl_call(
        &AGENT,
        &[
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "RequestName",
            "su",
            "org.airlock.Gateway1",
            "4",
        ],
    );
    assert_ne!(own.code, 0, "{own:?}");
}

#[test]
fn services_check_the_caller_themselves_when_the_bus_lets_everything_through() {
    let system = System::start_with(Options {
        permissive_bus: true,
        ..Options::default()
    });
    let mut app = system.enrol();
    let id = system
        .ctl(
            &AGENT,
            &[
                "request",
                "--scope",
                "command:terraform plan",
                "--reason",
                "x",
            ],
            "",
        )
        .success()
        .stdout
        .trim()
        .to_string();
    let out = system.ctl(
        &AGENT,
        &["approve", &id, "--code-stdin"],
        &format!("{}\n", app.next_code()),
    );
    out.failure();
    assert!(out.stderr.contains("(AccessDenied)"), "{out:?}");
    for args in [
        vec!["revoke", "--all"],
        vec!["deny", id.as_str()],
        vec!["policy", "reload"],
    ] {
        let out = system.ctl(&AGENT, &args, "");
        assert!(
            out.failure().stderr.contains("(AccessDenied)"),
            "{args:?}: {out:?}"
        );
    }
    let call = system.busctl_call(
        &AGENT,
        &[
            "org.airlock.Totp1",
            "/org/airlock/Totp1",
            "org.airlock.Totp1",
            "PublicKey",
        ],
    );
    assert_ne!(call.code, 0);
    assert!(
        call.stderr.contains("may not call the TOTP service"),
        "{call:?}"
    );
    // The request is still pending: nothing changed.
    assert!(system
        .ctl(&APPROVER, &["requests"], "")
        .stdout
        .contains(&id));
}

#[test]
fn enrolment_needs_confirmation_and_reenrolment_needs_a_code() {
    let system = System::start();
    let status = system.ctl(&APPROVER, &["status"], "");
    assert!(
        status.success().stdout.contains("not enrolled"),
        "{status:?}"
    );
    // Agents may not enrol.
    system
        .ctl(&AGENT, &["totp", "setup", "--code-stdin"], "123456\n")
        .failure();

    let mut app = system.enrol();
    assert!(system
        .ctl(&APPROVER, &["status"], "")
        .stdout
        .contains("enrolled, 30 s period"));
    // Re-enrolment without a valid current code is refused and keeps the old secret.
    let out = system.ctl(
        &APPROVER,
        &["totp", "setup", "--code-stdin"],
        &format!("{}\n", app.wrong_code()),
    );
    out.failure();
    // --force is root's alone, and root's directly: the gateway user cannot
    // force a new secret it would then see (it may not enrol at all).
    system
        .ctl(&APPROVER, &["totp", "setup", "--force", "--code-stdin"], "")
        .failure();
    let gateway_user = TestUser {
        name: airlock_common::names::GATEWAY_USER,
    };
    let forced = system.busctl_call(
        &gateway_user,
        &[
            "org.airlock.Totp1",
            "/org/airlock/Totp1",
            "org.airlock.Totp1",
            "BeginEnrolment",
            "bs",
            "true",
            "",
        ],
    );
    assert_ne!(forced.code, 0, "{forced:?}");
    assert!(
        forced.stderr.contains("Access denied") || forced.stderr.contains("AccessDenied"),
        "{forced:?}"
    );
    // Root may; the start is audited, and a wrong confirmation code leaves
    // the old secret in force.
    let root = system.ctl(
        &ROOT,
        &["totp", "setup", "--force", "--code-stdin"],
        "000000\n",
    );
    assert!(root.stdout.contains("otpauth://"), "{root:?}");
    let audit = std::fs::read_to_string(system.audit_log()).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"totp_enrolment_started\"") && l.contains("\"forced\":true")),
        "{audit}"
    );
    // The old secret still approves.
    let id = system
        .ctl(
            &AGENT,
            &["request", "--scope", "services:gmail", "--reason", "x"],
            "",
        )
        .stdout
        .trim()
        .to_string();
    system
        .ctl(
            &APPROVER,
            &["approve", &id, "--code-stdin"],
            &format!("{}\n", app.next_code()),
        )
        .success();
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_dbus_arguments_get_named_errors_and_change_nothing() {
    let system = System::start();
    let gateway = system.gateway_proxy().await;
    let audit_before = std::fs::read_to_string(system.audit_log()).unwrap();

    let expect = |result: zbus::Result<String>, name: &str| match result {
        Err(zbus::Error::MethodError(n, msg, _)) => {
            assert_eq!(n.as_str(), format!("org.airlock.Error.{name}"), "{msg:?}");
            assert!(!msg.unwrap_or_default().is_empty());
        }
        other => panic!("expected {name}, got {other:?}"),
    };
    let huge = "x".repeat(1 << 20);
    expect(
        gateway
            .request_approval("command:terraform plan", &huge, 0)
            .await,
        "InvalidArgument",
    );
    expect(
        gateway.request_approval(&huge, "r", 0).await,
        "InvalidArgument",
    );
    expect(
        gateway.request_approval("rm -rf /", "r", 0).await,
        "InvalidArgument",
    );
    expect(
        gateway
            .request_approval("command:ls", "bad\u{1b}[2Jreason", 0)
            .await,
        "InvalidArgument",
    );
    expect(
        gateway.request_approval("command:ls", "r", u64::MAX).await,
        "InvalidArgument",
    );
    expect(
        gateway.request_approval("services:../../etc", "r", 0).await,
        "InvalidArgument",
    );

    let to_s = |r: zbus::Result<()>| r.map(|_| String::new());
    expect(to_s(gateway.deny("req-doesnotexist", "").await), "NotFound");
    expect(
        to_s(gateway.deny("../../etc/passwd", "").await),
        "InvalidArgument",
    );
    expect(
        to_s(gateway.revoke(&"g".repeat(10_000)).await),
        "InvalidArgument",
    );
    expect(to_s(gateway.revoke("grt-unknown").await), "NotFound");
    expect(
        gateway
            .prepare_approval("req-unknown", 0, false)
            .await
            .map(|g| g.request_id),
        "NotFound",
    );
    expect(
        gateway
            .prepare_approval(&huge, 0, false)
            .await
            .map(|g| g.request_id),
        "InvalidArgument",
    );
    let junk = |payload: &str| SignedGrantWire {
        payload: payload.to_owned(),
        signature: "AAAA".into(),
    };
    expect(
        gateway.approve(junk(&huge)).await.map(|g| g.id),
        "InvalidArgument",
    );
    let many: Vec<&str> = std::iter::repeat_n("a", 10_000).collect();
    expect(
        gateway
            .check_command("default", &many)
            .await
            .map(|d| d.decision.to_string()),
        "InvalidArgument",
    );
    expect(
        gateway
            .check_command("no-such-role", &["ls"])
            .await
            .map(|d| d.decision.to_string()),
        "NotFound",
    );

    // The signer refuses a malformed grant request without spending a code.
    let totp = system.totp_proxy().await;
    let bad = GrantRequest {
        request_id: "req-1".into(),
        subject_uid: 1000,
        session: Some("../../etc".to_owned()).into(),
        scope: "command:x".into(),
        access: Access::Read,
        ttl_secs: 60,
    };
    expect(
        totp.approve(bad, "000000").await.map(|g| g.payload),
        "InvalidArgument",
    );
    // An access word that is neither `read` nor `write` does not even
    // decode: GrantRequest's wire layout, by hand.
    let bad_access = (("req-1", 1000u32, "", "command:x", "root", 60u64), "000000");
    let refused = totp.inner().call_method("Approve", &bad_access).await;
    assert!(
        matches!(refused, Err(zbus::Error::MethodError(..))),
        "{refused:?}"
    );

    assert!(gateway.list_requests().await.unwrap().is_empty());
    assert!(gateway.list_grants().await.unwrap().is_empty());
    assert_eq!(
        std::fs::read_to_string(system.audit_log()).unwrap(),
        audit_before
    );
}

#[test]
fn only_admins_hear_of_other_users_requests() {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// A `dbus-monitor` as a user, and everything it printed so far.
    struct Monitor {
        child: Child,
        heard: Arc<Mutex<String>>,
    }
    impl Monitor {
        fn heard(&self) -> String {
            self.heard.lock().unwrap().clone()
        }
        /// Waits until it printed `text` (or `limit` passed).
        fn wait_for(&self, text: &str, limit: Duration) -> bool {
            let deadline = Instant::now() + limit;
            while !self.heard().contains(text) {
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            true
        }
    }
    impl Drop for Monitor {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    let system = System::start();
    let monitor = |user: &TestUser| {
        let mut child = Command::new("setpriv")
            .args([
                "--reuid",
                user.name,
                "--regid",
                user.name,
                "--init-groups",
                "--",
                "dbus-monitor",
                "--address",
                &system.bus_address,
            ])
            .arg("type='signal',interface='org.airlock.Gateway1',member='ApprovalRequested'")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let heard = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let sink = heard.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut heard = sink.lock().unwrap();
                heard.push_str(&line);
                heard.push('\n');
            }
        });
        Monitor { child, heard }
    };
    let (agent, approver) = (monitor(&AGENT), monitor(&APPROVER));
    // Each is on the bus, its match rule in place, once the bus greeted it.
    for (who, m) in [("agent", &agent), ("approver", &approver)] {
        assert!(
            m.wait_for("NameAcquired", Duration::from_secs(30)),
            "the {who}'s monitor never connected: {}",
            m.heard()
        );
    }
    system
        .ctl(
            &OUTSIDER,
            &[
                "request",
                "--scope",
                "services:gmail",
                "--reason",
                "private reason",
            ],
            "",
        )
        .success();
    assert!(
        approver.wait_for("private reason", Duration::from_secs(30)),
        "an admin must see new requests: {}",
        approver.heard()
    );
    // The bus sent the signal to every listener entitled to it; the agent,
    // greeted by the same bus before it, heard nothing of it.
    assert!(
        !agent.heard().contains("private reason"),
        "another user's request reached an agent"
    );
}

#[test]
fn introspectable_with_busctl() {
    let system = System::start();
    let out = system.run_as(
        &OUTSIDER,
        Path::new("/usr/bin/busctl"),
        &[
            &format!("--address={}", system.bus_address),
            "introspect",
            "org.airlock.Gateway1",
            "/org/airlock/Gateway1",
            "org.airlock.Gateway1",
        ],
        "",
    );
    assert_eq!(out.code, 0, "{out:?}");
    for member in [
        "RequestApproval",
        "Approve",
        "CheckCommand",
        "ApprovalRequested",
        "Revoke",
    ] {
        assert!(
            out.stdout.contains(member),
            "{member} missing:\n{}",
            out.stdout
        );
    }
}

#[test]
fn a_user_cannot_flood_the_audit_log() {
    let system = System::start();
    let script = format!(
        "for i in $(seq 100); do busctl --address={} call org.airlock.Gateway1 /org/airlock/Gateway1 \
         org.airlock.Gateway1 RecordUnenforced ss default flood 2>&1 >/dev/null; done",
        system.bus_address
    );
    let out = system.run_as(&AGENT, Path::new("/bin/sh"), &["-c", &script], "");
    let refused = out.stdout.matches("audited calls in a burst").count();
    let audit = std::fs::read_to_string(system.audit_log()).unwrap();
    let recorded = audit.matches("\"session_unenforced\"").count();
    assert!(refused > 0, "no call was refused: {out:?}");
    assert_eq!(recorded + refused, 100, "{out:?}");
    assert!(recorded < 90, "{recorded} records");
    // An admin is not limited by the agent's budget, nor by its own.
    for _ in 0..3 {
        system
            .ctl(&APPROVER, &["run", "--unenforced", "--", "true"], "")
            .success();
    }
}

/// Started without a service manager, as here, airlock-gateway,
/// airlock-totp and airlock-proxy confine themselves with Landlock to the
/// paths they need: a directory their own user may write is out of the
/// daemon's reach.
#[test]
fn daemons_confine_themselves_without_systemd() {
    let system = System::start();
    let config = system.path("airlock.toml");
    let proxy = TestUser {
        name: "airlock-proxy",
    };
    for (daemon, user) in [
        ("airlock-gateway", &GATEWAY),
        ("airlock-totp", &TOTP),
        ("airlock-proxy", &proxy),
    ] {
        let outside = system.path(&format!("outside-{daemon}"));
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::chown(
            &outside,
            Some(airlock_tests::users::uid(user.name).as_raw()),
            None,
        )
        .unwrap();
        // Unix permissions allow it: a refusal below is the confinement's.
        let proof = outside.join("written-by-the-user");
        let touched = system.run_as(
            user,
            Path::new("/usr/bin/touch"),
            &[proof.to_str().unwrap()],
            "",
        );
        assert_eq!(
            touched.code,
            0,
            "{daemon}'s user cannot write {}: {touched:?}",
            outside.display()
        );
        assert!(proof.exists());

        let mut args = vec![
            "--config".to_owned(),
            config.to_str().unwrap().to_owned(),
            "--confinement-selftest".to_owned(),
            outside.to_str().unwrap().to_owned(),
        ];
        if daemon == "airlock-proxy" {
            // Its socket's directory in the system's, as airlock-proxy's
            // own: the default (/run/airlock-proxy) exists only where the
            // package or airlock-up made it.
            let dir = system.path("proxy-confined");
            std::fs::create_dir(&dir).unwrap();
            std::os::unix::fs::chown(
                &dir,
                Some(airlock_tests::users::uid(user.name).as_raw()),
                None,
            )
            .unwrap();
            args.extend([
                "--socket".to_owned(),
                dir.join("proxy.sock").to_str().unwrap().to_owned(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let test = system.run_as(user, &airlock_tests::bin(daemon), &args, "");
        assert_eq!(
            test.code, 0,
            "{daemon}'s confinement did not hold: {test:?}"
        );
        assert!(
            test.stdout.contains(&format!("{daemon}: Confined")),
            "{test:?}"
        );
        assert!(
            test.stdout
                .contains(&format!("write {}: refused", outside.display())),
            "{test:?}"
        );
        assert!(
            test.stdout.contains(": allowed"),
            "its state stays writable: {test:?}"
        );
    }
}
