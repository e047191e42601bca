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
use airlock_tests::proxy::Proxy;
use airlock_tests::upstream::Upstream;
use airlock_tests::{CtlOutput, Options, System, TestUser, AGENT, APPROVER, OUTSIDER};

const GITHUB_TOKEN: &str = "ghp_Zq8vK2mXr7TnW4yB1cD9eF3gH6jL0pS5uA";
const GMAIL_PASSWORD: &str = "abcd efgh ijkl mnop";
const GATEWAY: TestUser = TestUser {
    name: names::GATEWAY_USER,
};

fn add(system: &System, user: &TestUser, service: &str, field: &str, value: &str) -> CtlOutput {
    system.ctl(
        user,
        &["credentials", "add", service, field, "--stdin"],
        &format!("{value}\n"),
    )
}

/// `airlockctl credentials get github token` as `user`, with `code`.
fn get_github_token(system: &System, user: &TestUser, code: &str) -> CtlOutput {
    system.ctl(
        user,
        &["credentials", "get", "github", "token", "--code-stdin"],
        &format!("{code}\n"),
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

/// Files a services request as the agent and approves it with a code
/// (`--write` among `extra` for write access); returns the signed grant.
fn approve_services(
    system: &System,
    app: &mut airlock_tests::totp::Authenticator,
    services: &str,
    extra: &[&str],
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
    let mut args = vec!["approve", id.as_str(), "--code-stdin"];
    args.extend_from_slice(extra);
    let approved = system.ctl(&APPROVER, &args, &format!("{}\n", app.next_code()));
    let access = if extra.contains(&"--write") {
        "write"
    } else {
        "read"
    };
    assert!(
        approved
            .success()
            .stdout
            .contains(&format!("services:{services} ({access})")),
        "{approved:?}"
    );
    let record = system
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "grant_issued" && r["request_id"] == id.as_str())
        .expect("grant_issued");
    SignedGrantWire {
        payload: record["signed"]["payload"].as_str().unwrap().to_owned(),
        signature: record["signed"]["signature"].as_str().unwrap().to_owned(),
    }
}

/// A read-only grant for `services` that lasts `ttl`.
fn grant_for(
    system: &System,
    app: &mut airlock_tests::totp::Authenticator,
    services: &str,
    ttl: &str,
) -> SignedGrantWire {
    approve_services(system, app, services, &["--ttl", ttl])
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
    let agent_get = get_github_token(&system, &AGENT, &app.next_code());
    agent_get.failure();
    assert!(!agent_get.stdout.contains(GITHUB_TOKEN));

    // A wrong code opens nothing and is audited as a failed code.
    let wrong = get_github_token(&system, &APPROVER, &app.wrong_code());
    assert!(wrong.failure().stderr.contains("InvalidCode"), "{wrong:?}");
    assert!(!wrong.stdout.contains(GITHUB_TOKEN));

    // The admin's code opens it, to standard output only.
    let got = get_github_token(&system, &APPROVER, &app.next_code());
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

    let records = system.audit_records();
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
    let got = get_github_token(&second, &APPROVER, &app.next_code());
    got.failure();
    assert!(!got.stdout.contains(GITHUB_TOKEN));
    assert_nowhere(&second, GITHUB_TOKEN);
}

// ---- the proxy ---------------------------------------------------------------

const API_TOKEN: &str = "sk-live-7Hq2Lr9Zx4Vw1Mn8Kp3Tb6Yc5";

fn api_service(upstream: &Upstream) -> Vec<(String, String)> {
    vec![(
        "api.toml".into(),
        format!(
            r#"
[[service]]
name = "api"
description = "a loopback API with a bearer token"
kind = "http"
upstream = "http://{}/v1"
fields = ["token"]
inject = {{ style = "bearer", field = "token" }}
read_only_post = ["/search"]

[[service]]
name = "keyed"
kind = "http"
upstream = "http://{}/k"
fields = ["key"]
inject = {{ style = "query", name = "api_key", field = "key" }}
"#,
            upstream.addr, upstream.addr
        ),
    )]
}

/// `curl` as `user` through the proxy's Unix socket (`unix`) or its
/// loopback port; prints the status line and headers, then the body.
fn curl(
    system: &System,
    proxy: &Proxy,
    user: &TestUser,
    unix: bool,
    args: &[&str],
    path: &str,
) -> CtlOutput {
    let socket = proxy.socket.to_str().unwrap().to_owned();
    let url = if unix {
        format!("http://localhost{path}")
    } else {
        format!("{}{path}", proxy.tcp_base())
    };
    let mut all = vec!["-sS", "-i", "--max-time", "20"];
    if unix {
        all.extend(["--unix-socket", &socket]);
    }
    all.extend_from_slice(args);
    all.push(&url);
    system.run_as(user, std::path::Path::new("/usr/bin/curl"), &all, "")
}

fn status(out: &CtlOutput) -> u16 {
    out.stdout
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {out:?}"))
}

#[test]
fn the_proxy_injects_the_credential_only_for_a_granted_caller() {
    let upstream = Upstream::start();
    let system = System::start_with(Options {
        services: Some(api_service(&upstream)),
        ..Options::default()
    });
    let mut app = system.enrol();
    add(&system, &APPROVER, "api", "token", API_TOKEN).success();
    add(&system, &APPROVER, "keyed", "key", "key with spaces&=").success();
    let proxy = Proxy::start(&system);

    // No grant: refused with how to ask, and nothing reaches the upstream.
    let refused = curl(&system, &proxy, &AGENT, true, &[], "/api/items");
    assert_eq!(status(&refused), 403, "{refused:?}");
    assert!(refused.stdout.contains("no live grant"), "{refused:?}");
    assert!(refused.stdout.contains("airlockctl request --services api"));
    assert!(upstream.seen().is_empty());

    grant_for(&system, &mut app, "api,keyed", "30m");
    // `grants` says what the grant opens and where.
    let grants = system.ctl(&AGENT, &["grants"], "");
    assert!(
        grants
            .success()
            .stdout
            .contains("opens:   api (token) at http://127.0.0.1:7480/api/"),
        "{grants:?}"
    );
    assert!(grants.stdout.contains("opens:   keyed (key)"), "{grants:?}");

    // Over the socket and over the port, the agent's GET reaches the
    // upstream with the token, and the agent sees the answer, not the token.
    for unix in [true, false] {
        let out = curl(
            &system,
            &proxy,
            &AGENT,
            unix,
            &["-H", "Authorization: Bearer agent-made-this-up"],
            "/api/items?page=2",
        );
        assert_eq!(status(&out), 200, "{out:?}");
        assert!(
            out.stdout.contains("upstream saw GET /v1/items\n"),
            "{out:?}"
        );
        assert!(!out.stdout.contains(API_TOKEN) && !out.stderr.contains(API_TOKEN));
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.target, "/v1/items?page=2");
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {API_TOKEN}").as_str())
        );
        assert_eq!(
            request.header("host"),
            Some(upstream.addr.to_string().as_str())
        );
    }

    // A query-parameter credential is encoded into the query.
    let keyed = curl(&system, &proxy, &AGENT, true, &[], "/keyed/list?q=1");
    assert_eq!(status(&keyed), 200, "{keyed:?}");
    assert_eq!(
        upstream.seen().last().unwrap().target,
        "/k/list?q=1&api_key=key%20with%20spaces%26%3D"
    );
    assert!(!keyed.stdout.contains("key%20with"));

    // Read-only: POST is refused with why and how to ask, except on a
    // listed read-only path.
    let before = upstream.seen().len();
    let post = curl(
        &system,
        &proxy,
        &AGENT,
        true,
        &["-X", "POST", "--data", "{\"title\":\"x\"}"],
        "/api/items",
    );
    assert_eq!(status(&post), 403, "{post:?}");
    assert!(post.stdout.contains("read-only"), "{post:?}");
    assert!(post.stdout.contains("--write"), "{post:?}");
    for method in ["PUT", "DELETE", "PATCH"] {
        let out = curl(
            &system,
            &proxy,
            &AGENT,
            false,
            &["-X", method],
            "/api/items/1",
        );
        assert_eq!(status(&out), 403, "{method}: {out:?}");
    }
    assert_eq!(upstream.seen().len(), before);
    let search = curl(
        &system,
        &proxy,
        &AGENT,
        true,
        &["-X", "POST", "--data", "q=airlock"],
        "/api/search",
    );
    assert_eq!(status(&search), 200, "{search:?}");
    assert_eq!(upstream.seen().last().unwrap().body, b"q=airlock");

    // Streaming answers pass through, chunk by chunk.
    let streamed = curl(&system, &proxy, &AGENT, false, &["-N"], "/api/stream");
    assert_eq!(status(&streamed), 200, "{streamed:?}");
    assert!(
        streamed.stdout.contains("chunk 0\nchunk 1\nchunk 2\n"),
        "{streamed:?}"
    );

    // An upstream that echoes the credential in a header does not hand it
    // over.
    let echoed = curl(&system, &proxy, &AGENT, true, &[], "/api/echo");
    assert_eq!(status(&echoed), 200, "{echoed:?}");
    assert!(!echoed.stdout.contains(API_TOKEN), "{echoed:?}");
    assert!(!echoed.stdout.to_ascii_lowercase().contains("x-echo"));

    // Another user's process, over the socket or the port, gets nothing.
    let before = upstream.seen().len();
    for unix in [true, false] {
        let out = curl(&system, &proxy, &OUTSIDER, unix, &[], "/api/items");
        assert_eq!(status(&out), 403, "{out:?}");
        let outsider = airlock_tests::users::uid(OUTSIDER.name).as_raw();
        assert!(
            out.stdout.contains(&format!("uid {outsider}")),
            "the caller was identified as another uid: {out:?}"
        );
    }
    // A page the agent's browser loaded may not reach the port by name.
    let rebound = curl(
        &system,
        &proxy,
        &AGENT,
        false,
        &["-H", "Host: evil.example"],
        "/api/items",
    );
    assert_eq!(status(&rebound), 421, "{rebound:?}");
    // Paths an upstream could read another way are refused.
    let dotted = curl(
        &system,
        &proxy,
        &AGENT,
        true,
        &["--path-as-is"],
        "/api/a/../admin",
    );
    assert_eq!(status(&dotted), 404, "{dotted:?}");
    let unknown = curl(&system, &proxy, &AGENT, true, &[], "/nope/x");
    assert_eq!(status(&unknown), 404, "{unknown:?}");
    assert_eq!(upstream.seen().len(), before);

    // With write access the POST goes through.
    approve_services(&system, &mut app, "api", &["--write"]);
    let post = curl(
        &system,
        &proxy,
        &AGENT,
        true,
        &["-X", "POST", "--data", "{\"title\":\"x\"}"],
        "/api/items",
    );
    assert_eq!(status(&post), 200, "{post:?}");
    assert_eq!(upstream.seen().last().unwrap().method, "POST");

    // A service added to services.d is served after SIGHUP (an invalid
    // file would leave the previous set in force).
    let late = curl(&system, &proxy, &AGENT, true, &[], "/late/x");
    assert_eq!(status(&late), 404, "{late:?}");
    std::fs::write(
        system.path("services/late.toml"),
        "[[service]]\nname = \"late\"\nkind = \"http\"\nupstream = \"http://127.0.0.1:9/\"\n\
         fields = [\"token\"]\ninject = { style = \"bearer\", field = \"token\" }\n",
    )
    .unwrap();
    system.signal_gateway(nix::sys::signal::Signal::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let late = curl(&system, &proxy, &AGENT, true, &[], "/late/x");
        if status(&late) == 403 {
            assert!(late.stdout.contains("no live grant"), "{late:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{late:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Every operation is audited, never with the credential.
    let operations: Vec<_> = system
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "service_operation")
        .collect();
    assert!(operations
        .iter()
        .any(|r| r["op"] == "GET /items" && r["allowed"] == true && r["credential"] == "api"));
    assert!(operations.iter().any(|r| r["op"] == "POST /items"
        && r["allowed"] == false
        && r["refusal"].as_str().unwrap().contains("read-only")));
    assert!(operations
        .iter()
        .any(|r| r["op"] == "POST /items" && r["allowed"] == true));
    // The seed's audit queries: today's operations on one service.
    let dir = system.audit_dir();
    let dir = dir.to_str().unwrap();
    for args in [
        vec![
            "audit",
            "today",
            "--service",
            "api",
            "--json",
            "--audit-dir",
            dir,
        ],
        vec![
            "audit",
            "--service",
            "api",
            "--last",
            "7d",
            "--json",
            "--audit-dir",
            dir,
        ],
    ] {
        let out = system.ctl(&APPROVER, &args, "");
        let records: Vec<serde_json::Value> = out
            .success()
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(records.len() >= operations.len() - 1, "{out:?}");
        assert!(records.iter().all(|r| r["credential"] == "api"), "{out:?}");
        assert!(records.iter().any(|r| r["event"] == "service_operation"));
    }
    let proxy_log = proxy.log_text();
    assert!(!proxy_log.contains(API_TOKEN), "the proxy logged the token");
    assert_nowhere(&system, API_TOKEN);
    system.audit_verify().success();
}

#[test]
fn bad_service_files_are_refused_with_file_and_line() {
    let system = System::start();
    let dir = system.path("bad-services");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("mail.toml"),
        "[[service]]\nname = \"mail\"\nkind = \"imap\"\nupstream = \"imap://imap.example.com\"\nfields = [\"user\"]\nlogin = { user_field = \"user\", password_field = \"password\" }\n",
    )
    .unwrap();
    // A CA file that is not there, for a self-hosted imaps server.
    std::fs::write(
        dir.join("self-hosted.toml"),
        "[[service]]\nname = \"home\"\nkind = \"imap\"\nupstream = \"imaps://mail.home.test\"\nfields = [\"user\", \"password\"]\nlogin = { user_field = \"user\", password_field = \"password\" }\nca_file = \"/etc/airlock/no-such-ca.pem\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("ok.toml"), "[[service]]\nname = \"ok\"\nkind = \"http\"\nupstream = \"https://api.example.com\"\nfields = [\"token\"]\ninject = { style = \"bearer\", field = \"token\" }\n").unwrap();
    let out = system.ctl(&AGENT, &["services", "validate", dir.to_str().unwrap()], "");
    assert_eq!(out.code, 1, "{out:?}");
    let mail = dir.join("mail.toml");
    assert!(
        out.stderr.contains(&format!(
            "{}:4:12: `upstream`: imap sends the credential in the clear",
            mail.display()
        )),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains(&format!("{}:6:49: `password_field`", mail.display())),
        "{out:?}"
    );
    assert!(
        out.stderr.contains(&format!(
            "{}:7:11: `ca_file`: cannot read /etc/airlock/no-such-ca.pem",
            dir.join("self-hosted.toml").display()
        )),
        "{out:?}"
    );
    assert!(out.stderr.contains("3 error(s)"), "{out:?}");
    // The shipped examples are valid.
    let shipped = system.ctl(
        &AGENT,
        &[
            "services",
            "validate",
            system.path("services").to_str().unwrap(),
        ],
        "",
    );
    assert!(
        shipped.success().stdout.contains("valid (8 services)"),
        "{shipped:?}"
    );
}

/// A system with the enforcer, the `api` service and its token, and a
/// proxy.
fn governed_api(upstream: &Upstream) -> (System, Proxy, airlock_tests::totp::Authenticator) {
    let system = System::start_with(Options {
        services: Some(api_service(upstream)),
        enforcer: true,
        ..Options::default()
    });
    let app = system.enrol();
    add(&system, &APPROVER, "api", "token", API_TOKEN).success();
    let proxy = Proxy::start(&system);
    (system, proxy, app)
}

/// A grant asked for from inside a governed session opens the service in
/// that session only, over the socket (the caller's process is in the
/// session) and over the loopback port (the caller's socket was made in
/// the session's cgroup): not for the same user outside it, over either.
/// Sessions reach the proxy's port whatever their role, but only while the
/// proxy's user listens there.
#[test]
fn a_grant_from_a_session_serves_that_session_only() {
    let upstream = Upstream::start();
    let (system, proxy, mut app) = governed_api(&upstream);
    let ctl = system.bin("airlockctl");
    let socket = proxy.socket.display().to_string();
    let scratch = system.path("agent-scratch");
    std::fs::create_dir(&scratch).unwrap();
    let agent = airlock_tests::users::uid(AGENT.name).as_raw();
    std::os::unix::fs::chown(&scratch, Some(agent), Some(agent)).unwrap();
    let marker = scratch.join("done");
    // Inside the session: ask, wait for the grant, then use it.
    let script = format!(
        "{ctl} request --services api --reason 'in the session' >/dev/null && \
         while ! {ctl} grants | grep -q 'opens:   api'; do sleep 0.2; done && \
         curl -sS -i --max-time 20 --unix-socket {socket} http://localhost/api/inside && \
         {{ curl -sS -i --max-time 20 {base}/api/over-tcp; touch {marker}; }}",
        ctl = ctl.display(),
        base = proxy.tcp_base(),
        marker = marker.display(),
    );
    let mut session = system.spawn_ctl(&AGENT, &["run", "--", "sh", "-c", &script]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let request = loop {
        let pending = system.ctl(&APPROVER, &["requests", "--json"], "");
        let pending: Vec<serde_json::Value> =
            serde_json::from_str(&pending.success().stdout).unwrap();
        if let Some(r) = pending.first() {
            break r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no request from the session: {}",
            system.service_log("airlock-gateway")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let session_id = request["session"]
        .as_str()
        .expect("a session-bound request")
        .to_owned();
    let id = request["id"].as_str().unwrap();
    system
        .ctl(
            &APPROVER,
            &["approve", id, "--code-stdin"],
            &format!("{}\n", app.next_code()),
        )
        .success();
    while !marker.exists() {
        if let Some(status) = session.try_wait().unwrap() {
            let out = session.wait_with_output().unwrap();
            panic!(
                "the session ended ({status}) before using the grant: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(std::time::Instant::now() < deadline + std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The same user outside the session gets nothing, over either path.
    for unix in [true, false] {
        let out = curl(&system, &proxy, &AGENT, unix, &[], "/api/outside");
        assert_eq!(status(&out), 403, "{out:?}");
    }
    // While the proxy is down, a server of the agent's own outside the
    // session on the proxy's port answers the agent ungoverned, but a
    // session cannot reach it.
    let url = format!("{}/", proxy.tcp_base());
    let port = proxy.port.to_string();
    drop(proxy);
    let _impostor = system.spawn_as_with_path(
        &AGENT,
        std::path::Path::new("/usr/bin/python3"),
        &["-m", "http.server", "--bind", "127.0.0.1", &port],
        "/usr/bin:/bin",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let curl_args = [
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "20",
    ];
    let ungoverned = loop {
        let args: Vec<&str> = curl_args.iter().copied().chain([url.as_str()]).collect();
        let out = system.run_as(&AGENT, std::path::Path::new("/usr/bin/curl"), &args, "");
        if out.code == 0 || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        ungoverned.stdout, "200",
        "the impostor answers: {ungoverned:?}"
    );
    let mut governed_args = vec!["run", "--", "curl"];
    governed_args.extend(curl_args);
    governed_args.push(&url);
    let governed = system.ctl(&AGENT, &governed_args, "");
    assert_eq!(governed.code, 7, "curl: failed to connect: {governed:?}");
    let refused_in = airlock_tests::catalogue::session_of(&governed).expect("a session id");
    let events = airlock_tests::catalogue::session_events(
        &system,
        &refused_in,
        &["socket_"],
        std::time::Duration::from_secs(10),
    );
    assert!(
        events.iter().any(|e| e["event"] == "socket_denied"
            && e["peer"] == format!("tcp 127.0.0.1:{port}")
            && e["stage"] == "connect"),
        "Airlock refused the connection: {events:#?}"
    );
    let output = session.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("upstream saw GET /v1/inside"), "{stdout}");
    assert!(
        stdout.contains("upstream saw GET /v1/over-tcp"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains(API_TOKEN));
    let targets: Vec<String> = upstream.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/v1/inside", "/v1/over-tcp"]);
    let allowed: Vec<_> = system
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "service_operation" && r["allowed"] == true)
        .collect();
    assert_eq!(allowed.len(), 2, "{allowed:#?}");
    for record in &allowed {
        assert_eq!(record["session"], session_id.as_str(), "{record:#}");
    }
    let refused = system
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "service_operation" && r["allowed"] == false)
        .count();
    assert_eq!(refused, 2, "the two calls from outside the session");
}

/// A user bound to a session (`sessions bind-user`): every process of the
/// user is in the session, so its session-bound grant serves it over the
/// loopback port too, whatever cgroup its socket was made in; another
/// user gets nothing.
#[test]
fn a_bound_users_grant_serves_it_over_the_port() {
    let upstream = Upstream::start();
    let (system, proxy, mut app) = governed_api(&upstream);
    let bind = system.ctl(
        &APPROVER,
        &["sessions", "bind-user", AGENT.name, "--role", "default"],
        "",
    );
    let binding = bind
        .success()
        .stdout
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    grant_for(&system, &mut app, "api", "30m");
    let out = curl(&system, &proxy, &AGENT, false, &[], "/api/bound");
    assert_eq!(status(&out), 200, "{out:?}");
    assert!(out.stdout.contains("upstream saw GET /v1/bound"), "{out:?}");
    let out = curl(&system, &proxy, &OUTSIDER, false, &[], "/api/other-user");
    assert_eq!(status(&out), 403, "{out:?}");
    let operations: Vec<_> = system
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "service_operation")
        .collect();
    assert_eq!(operations.len(), 2, "{operations:#?}");
    assert_eq!(operations[0]["allowed"], true);
    assert_eq!(
        operations[0]["session"],
        binding.as_str(),
        "{operations:#?}"
    );
    assert_eq!(operations[1]["allowed"], false);
    system
        .ctl(&APPROVER, &["sessions", "revoke", &binding], "")
        .success();
}

/// An HTTPS upstream gets the credential over TLS checked against the
/// proxy's authorities; one whose certificate they do not vouch for gets
/// nothing.
#[test]
fn https_upstreams_are_reached_over_verified_tls() {
    let upstream = Upstream::start_tls();
    let services = vec![(
        "tls.toml".to_owned(),
        format!(
            "[[service]]\nname = \"tls\"\nkind = \"http\"\nupstream = \"https://{}/v2\"\n\
             fields = [\"token\"]\ninject = {{ style = \"header\", name = \"X-Api-Key\", field = \"token\" }}\n",
            upstream.addr
        ),
    )];
    let system = System::start_with(Options {
        services: Some(services),
        ..Options::default()
    });
    let mut app = system.enrol();
    add(&system, &APPROVER, "tls", "token", API_TOKEN).success();
    grant_for(&system, &mut app, "tls", "30m");

    // The system's authorities do not vouch for the test certificate.
    let untrusting = Proxy::start(&system);
    let out = curl(&system, &untrusting, &AGENT, true, &[], "/tls/items");
    assert_eq!(status(&out), 502, "{out:?}");
    assert!(
        out.stdout.contains("TLS with the upstream failed"),
        "{out:?}"
    );
    assert!(upstream.seen().is_empty());
    drop(untrusting);

    let proxy = Proxy::start_trusting(&system, upstream.certificate_pem.as_deref());
    let out = curl(&system, &proxy, &AGENT, false, &[], "/tls/items");
    assert_eq!(status(&out), 200, "{out:?}");
    assert!(out.stdout.contains("upstream saw GET /v2/items"), "{out:?}");
    assert!(!out.stdout.contains(API_TOKEN));
    assert_eq!(upstream.seen()[0].header("x-api-key"), Some(API_TOKEN));
    assert_nowhere(&system, API_TOKEN);
}

/// The gateway keeps a grant's injected credential between requests, and
/// that changes nothing a caller can see: an expired or revoked grant stops
/// serving with the very next request, a credential stored anew is the
/// one sent next, and every request of many at once leaves its audit
/// record (their fsyncs are shared, none is skipped).
#[test]
fn an_expired_or_revoked_grant_stops_serving_at_once_and_every_request_is_audited() {
    let upstream = Upstream::start();
    let system = System::start_with(Options {
        services: Some(api_service(&upstream)),
        ..Options::default()
    });
    let mut app = system.enrol();
    add(&system, &APPROVER, "api", "token", API_TOKEN).success();
    let proxy = Proxy::start(&system);
    let body = |grant: &SignedGrantWire| -> serde_json::Value {
        serde_json::from_str(&grant.payload).unwrap()
    };
    let get = || curl(&system, &proxy, &AGENT, true, &[], "/api/items");
    let allowed = || {
        system
            .audit_records()
            .iter()
            .filter(|r| r["event"] == "service_operation" && r["allowed"] == true)
            .count()
    };

    // Expiry: served (the second time from what the gateway kept), then
    // refused from the second the grant expires, before any tick.
    let short = body(&grant_for(&system, &mut app, "api", "8s"));
    for _ in 0..2 {
        let out = get();
        assert_eq!(status(&out), 200, "{out:?}");
    }
    let expires_at = short["expires_at"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while airlock_common::timefmt::now_unix() < expires_at {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let seen = upstream.seen().len();
    let out = get();
    assert_eq!(status(&out), 403, "{out:?}");
    assert!(out.stdout.contains("no live grant"), "{out:?}");
    assert_eq!(upstream.seen().len(), seen, "an expired grant was served");

    // Revocation: the next request after `airlockctl revoke` is refused.
    let long = body(&grant_for(&system, &mut app, "api", "30m"));
    for _ in 0..2 {
        assert_eq!(status(&get()), 200);
    }
    system
        .ctl(
            &APPROVER,
            &["revoke", long["grant_id"].as_str().unwrap()],
            "",
        )
        .success();
    let out = get();
    assert_eq!(status(&out), 403, "{out:?}");
    assert!(out.stdout.contains("no live grant"), "{out:?}");
    assert_eq!(
        upstream.seen().len(),
        seen + 2,
        "a revoked grant was served"
    );

    // A value stored anew is the one injected next.
    grant_for(&system, &mut app, "api", "30m");
    assert_eq!(status(&get()), 200);
    let rotated = "sk-live-rotated-4Kp8Tb2Yc6Hq";
    add(&system, &APPROVER, "api", "token", rotated).success();
    assert_eq!(status(&get()), 200);
    let sent = upstream.seen();
    assert_eq!(
        sent[sent.len() - 2].header("authorization"),
        Some(format!("Bearer {API_TOKEN}").as_str())
    );
    assert_eq!(
        sent.last().unwrap().header("authorization"),
        Some(format!("Bearer {rotated}").as_str())
    );

    // Many requests at once: one allowed record each, as many as the
    // upstream saw.
    let (records, seen) = (allowed(), upstream.seen().len());
    let socket = proxy.socket.to_str().unwrap().to_owned();
    let load = system.run_as(
        &AGENT,
        &system.bin("airlock-http-load"),
        &[
            "--unix",
            &socket,
            "--path",
            "/api/items",
            "--connections",
            "8",
            "--requests",
            "400",
        ],
        "",
    );
    assert_eq!(load.code, 0, "{load:?}");
    assert_eq!(upstream.seen().len() - seen, 400);
    assert_eq!(allowed() - records, 400, "an operation went unaudited");
    system.audit_verify().success();
    assert_nowhere(&system, API_TOKEN);
    assert_nowhere(&system, rotated);
}

/// Who can read the key-encryption key and the sealed store: their owners
/// (and root) only; the proxy neither.
#[test]
fn only_their_owners_read_the_key_and_the_store() {
    let system = System::start();
    system.enrol();
    add(&system, &APPROVER, "github", "token", GITHUB_TOKEN).success();
    let kek = system.path("totp/credential-kek.bin");
    let sealed = system.path("gateway/credentials/github.json");
    let proxy = TestUser {
        name: names::PROXY_USER,
    };
    let totp = TestUser {
        name: names::TOTP_USER,
    };
    for user in [&AGENT, &OUTSIDER, &APPROVER, &proxy] {
        assert!(!system.can_read(user, &kek), "{} reads the key", user.name);
        assert!(
            !system.can_read(user, &sealed),
            "{} reads the store",
            user.name
        );
    }
    assert!(!system.can_read(&GATEWAY, &kek));
    assert!(system.can_read(&GATEWAY, &sealed));
    assert!(system.can_read(&totp, &kek));
    assert!(!system.can_read(&totp, &sealed));
}
