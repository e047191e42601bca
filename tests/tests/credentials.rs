//! The credential store, against a real bus, real users and the real
//! daemons: values are stored sealed, listed by name only, opened for an
//! admin only after a TOTP code, and their keys come out of airlock-totp
//! only for a live grant it signed for that service. A copy of the
//! gateway's state directory reads nothing, and no value reaches a log.

#![forbid(unsafe_code)]

use airlock_common::credential::bus::Keys1Proxy;
use airlock_common::credential::{self, Purpose, Slot, KEY_LEN, MAX_SEALED_LEN};
use airlock_common::dbus::{AirlockError, SignedGrantWire};
use airlock_common::names;
use airlock_tests::{CtlOutput, System, TestUser, AGENT, APPROVER, OUTSIDER};

const GITHUB_TOKEN: &str = "ghp_Zq8vK2mXr7TnW4yB1cD9eF3gH6jL0pS5uA";
const GMAIL_PASSWORD: &str = "abcd efgh ijkl mnop";
const GATEWAY: TestUser = TestUser {
    name: names::GATEWAY_USER,
};

fn audit_records(system: &System) -> Vec<serde_json::Value> {
    std::fs::read_to_string(system.audit_log())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn add(system: &System, user: &TestUser, service: &str, field: &str, value: &str) -> CtlOutput {
    system.ctl(
        user,
        &["credentials", "add", service, field, "--stdin"],
        &format!("{value}\n"),
    )
}

/// The stored file of `service`, as root reads it.
fn stored(system: &System, service: &str) -> serde_json::Value {
    let path = system.path(&format!("gateway/credentials/{service}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn field<'a>(file: &'a serde_json::Value, field: &str, part: &str) -> &'a str {
    file["fields"][field][part].as_str().unwrap()
}

/// Files a services request as the agent and approves it with a code.
fn grant_for(
    system: &System,
    app: &mut airlock_tests::totp::Authenticator,
    services: &str,
    ttl: &str,
) -> SignedGrantWire {
    let out = system.ctl(
        &AGENT,
        &[
            "request",
            "--services",
            services,
            "--reason",
            "read the issues",
        ],
        "",
    );
    let id = out.success().stdout.trim().to_string();
    let approved = system.ctl(
        &APPROVER,
        &["approve", &id, "--ttl", ttl, "--code-stdin"],
        &format!("{}\n", app.next_code()),
    );
    assert!(
        approved
            .success()
            .stdout
            .contains(&format!("services:{services} (read)")),
        "{approved:?}"
    );
    let record = audit_records(system)
        .into_iter()
        .find(|r| r["event"] == "grant_issued" && r["request_id"] == id.as_str())
        .expect("grant_issued");
    SignedGrantWire {
        payload: record["signed"]["payload"].as_str().unwrap().to_owned(),
        signature: record["signed"]["signature"].as_str().unwrap().to_owned(),
    }
}

/// Asserts that no log, audit record or state file holds `secret`.
fn assert_nowhere(system: &System, secret: &str) {
    for log in ["airlock-gateway", "airlock-totp"] {
        assert!(
            !system.service_log(log).contains(secret),
            "{log}'s log holds the value"
        );
    }
    let audit = std::fs::read_to_string(system.audit_log()).unwrap();
    assert!(!audit.contains(secret), "the audit log holds the value");
    for entry in walk(&system.path("gateway")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the value",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The gateway's call to airlock-totp, made by root on its behalf (root
/// passes airlock-totp's check as the gateway does).
async fn unwrap_for_grant(
    system: &System,
    service: &str,
    field: &str,
    wrapped: &str,
    grant: &SignedGrantWire,
) -> Result<String, AirlockError> {
    let keys = Keys1Proxy::new(&system.root_connection().await)
        .await
        .unwrap();
    keys.unwrap_for_grant(service, field, wrapped, grant.clone())
        .await
        .map_err(AirlockError::from_remote)
}

fn open_value(system: &System, service: &str, field: &str, key: &str) -> String {
    let file = stored(system, service);
    let sealed =
        credential::decode(self::field(&file, field, "sealed_value"), MAX_SEALED_LEN).unwrap();
    let key = credential::decode(key, KEY_LEN).unwrap();
    let value = credential::open(&key, Slot { service, field }, Purpose::Value, &sealed).unwrap();
    String::from_utf8(value.to_vec()).unwrap()
}

#[test]
fn admins_store_and_read_back_values_everyone_else_sees_names_only() {
    let system = System::start();
    let mut app = system.enrol();

    add(&system, &APPROVER, "github", "token", GITHUB_TOKEN).success();
    add(&system, &APPROVER, "gmail", "password", GMAIL_PASSWORD).success();
    // The agent may neither store nor overwrite one.
    let refused = add(&system, &AGENT, "github", "token", "ghp_attacker");
    assert!(
        refused.failure().stderr.contains("store the credential"),
        "{refused:?}"
    );
    // Bad names change nothing.
    let bad = add(&system, &APPROVER, "../etc", "token", "x");
    assert!(bad.failure().stderr.contains("service name"), "{bad:?}");
    let empty = system.ctl(&APPROVER, &["credentials", "add", "empty", "--stdin"], "");
    assert!(empty.failure().stderr.contains("1 to"), "{empty:?}");

    // Anyone lists names, never values.
    let listed = system.ctl(&AGENT, &["credentials", "list", "--json"], "");
    let listed: serde_json::Value = serde_json::from_str(&listed.success().stdout).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([
            {"service": "github", "fields": ["token"]},
            {"service": "gmail", "fields": ["password"]},
        ])
    );
    let plain = system.ctl(&OUTSIDER, &["credentials", "list"], "");
    assert!(
        plain.success().stdout.contains("github: token"),
        "{plain:?}"
    );

    // The agent cannot get a value, even with the approver's code.
    let agent_get = system.ctl(
        &AGENT,
        &["credentials", "get", "github", "token", "--code-stdin"],
        &format!("{}\n", app.next_code()),
    );
    agent_get.failure();
    assert!(!agent_get.stdout.contains(GITHUB_TOKEN));

    // A wrong code opens nothing and is audited as a failed code.
    let wrong = system.ctl(
        &APPROVER,
        &["credentials", "get", "github", "token", "--code-stdin"],
        &format!("{}\n", app.wrong_code()),
    );
    assert!(wrong.failure().stderr.contains("InvalidCode"), "{wrong:?}");
    assert!(!wrong.stdout.contains(GITHUB_TOKEN));

    // The admin's code opens it, to standard output only.
    let got = system.ctl(
        &APPROVER,
        &["credentials", "get", "github", "token", "--code-stdin"],
        &format!("{}\n", app.next_code()),
    );
    assert_eq!(got.success().stdout, GITHUB_TOKEN);
    assert!(!got.stderr.contains(GITHUB_TOKEN));

    // Replacing keeps one field; removing empties the store.
    add(&system, &APPROVER, "github", "token", "ghp_rotated").success();
    system
        .ctl(&APPROVER, &["credentials", "remove", "github"], "")
        .success();
    system
        .ctl(&AGENT, &["credentials", "remove", "gmail"], "")
        .failure();
    let after = system.ctl(&AGENT, &["credentials", "list", "--json"], "");
    let after: serde_json::Value = serde_json::from_str(&after.success().stdout).unwrap();
    assert_eq!(
        after,
        serde_json::json!([{"service": "gmail", "fields": ["password"]}])
    );

    let records = audit_records(&system);
    let events: Vec<_> = records
        .iter()
        .filter(|r| r["event"].as_str().unwrap().starts_with("credential_"))
        .map(|r| {
            (
                r["event"].as_str().unwrap(),
                r["credential"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("credential_stored", "github"),
            ("credential_stored", "gmail"),
            ("credential_fetched", "github"),
            ("credential_fetched", "github"),
            ("credential_stored", "github"),
            ("credential_removed", "github"),
        ]
    );
    assert!(records
        .iter()
        .any(|r| r["event"] == "totp_failed" && r["error"] == "InvalidCode"));
    for secret in [GITHUB_TOKEN, GMAIL_PASSWORD, "ghp_rotated", "ghp_attacker"] {
        assert_nowhere(&system, secret);
    }
    system.audit_verify().success();
}

#[tokio::test(flavor = "current_thread")]
async fn a_data_key_comes_out_only_for_a_live_grant_for_its_service() {
    let system = System::start();
    let mut app = system.enrol();
    add(&system, &APPROVER, "github", "token", GITHUB_TOKEN).success();
    add(&system, &APPROVER, "gmail", "password", GMAIL_PASSWORD).success();
    let github = stored(&system, "github");
    let github_wrapped = field(&github, "token", "wrapped_key").to_owned();
    let gmail = stored(&system, "gmail");
    let gmail_wrapped = field(&gmail, "password", "wrapped_key").to_owned();

    // No grant at all: a made-up one does not verify.
    let forged = SignedGrantWire {
        payload: r#"{"version":1,"grant_id":"grt-x","request_id":"req-x","subject":{"uid":0},"scope":{"kind":"services","services":["github"]},"access":"write","not_before":0,"expires_at":9999999999}"#.into(),
        signature: "AAAA".into(),
    };
    let refused = unwrap_for_grant(&system, "github", "token", &github_wrapped, &forged).await;
    assert!(
        matches!(&refused, Err(AirlockError::AccessDenied(m)) if m.contains("not one airlock-totp signed")),
        "{refused:?}"
    );

    let grant = grant_for(&system, &mut app, "github", "30m");
    let key = unwrap_for_grant(&system, "github", "token", &github_wrapped, &grant)
        .await
        .unwrap();
    assert_eq!(open_value(&system, "github", "token", &key), GITHUB_TOKEN);

    // The github grant opens nothing of gmail's, under its name or github's.
    let other = unwrap_for_grant(&system, "gmail", "password", &gmail_wrapped, &grant).await;
    assert!(
        matches!(&other, Err(AirlockError::AccessDenied(m)) if m.contains("not service gmail")),
        "{other:?}"
    );
    let swapped = unwrap_for_grant(&system, "github", "token", &gmail_wrapped, &grant).await;
    assert!(
        matches!(&swapped, Err(AirlockError::InvalidArgument(m)) if m.contains("does not unwrap")),
        "{swapped:?}"
    );

    // The gateway user may ask (the bus policy lets it); others may not.
    let args = [
        names::TOTP_BUS_NAME,
        names::TOTP_OBJECT_PATH,
        "org.airlock.Keys1",
        "UnwrapForGrant",
        "sss(ss)",
        "github",
        "token",
        &github_wrapped,
        &grant.payload,
        &grant.signature,
    ];
    let by_gateway = system.busctl_call(&GATEWAY, &args);
    assert!(by_gateway.success().stdout.contains(&key), "{by_gateway:?}");
    for user in [&AGENT, &OUTSIDER] {
        let out = system.busctl_call(user, &args);
        assert!(out.failure().stderr.contains("Access denied"), "{out:?}");
    }
    // Even an admin may not unwrap for a grant: only with a code.
    let out = system.busctl_call(&APPROVER, &args);
    assert!(out.failure().stderr.contains("Access denied"), "{out:?}");

    // An expired grant opens nothing.
    let short = grant_for(&system, &mut app, "github", "2s");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let expired = unwrap_for_grant(&system, "github", "token", &github_wrapped, &short).await;
    assert!(
        matches!(&expired, Err(AirlockError::AccessDenied(m)) if m.contains("not live")),
        "{expired:?}"
    );
    assert_nowhere(&system, GITHUB_TOKEN);
    assert_nowhere(&system, &key);
}

#[tokio::test(flavor = "current_thread")]
async fn a_copy_of_the_gateways_state_directory_reads_nothing() {
    let first = System::start();
    first.enrol();
    add(&first, &APPROVER, "github", "token", GITHUB_TOKEN).success();
    let copied = std::fs::read(first.path("gateway/credentials/github.json")).unwrap();
    assert!(!copied
        .windows(GITHUB_TOKEN.len())
        .any(|w| w == GITHUB_TOKEN.as_bytes()));

    // Another machine's gateway gets the file, and even a live grant there.
    let second = System::start();
    let mut app = second.enrol();
    let target = second.path("gateway/credentials/github.json");
    std::fs::write(&target, &copied).unwrap();
    let listed = second.ctl(&AGENT, &["credentials", "list"], "");
    assert!(listed.success().stdout.contains("github: token"));
    let grant = grant_for(&second, &mut app, "github", "30m");
    let file: serde_json::Value = serde_json::from_slice(&copied).unwrap();
    let wrapped = field(&file, "token", "wrapped_key");
    let refused = unwrap_for_grant(&second, "github", "token", wrapped, &grant).await;
    assert!(
        matches!(&refused, Err(AirlockError::InvalidArgument(m)) if m.contains("does not unwrap")),
        "{refused:?}"
    );
    // And an admin's code there opens nothing either.
    let got = second.ctl(
        &APPROVER,
        &["credentials", "get", "github", "token", "--code-stdin"],
        &format!("{}\n", app.next_code()),
    );
    got.failure();
    assert!(!got.stdout.contains(GITHUB_TOKEN));
    assert_nowhere(&second, GITHUB_TOKEN);
}
