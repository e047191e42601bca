//! Mail through airlock-proxy against a real dovecot-imapd: each read
//! operation answers with the mailbox's data, nothing is marked read, a
//! write is refused, and only a caller a live grant covers is served. A
//! hostile IMAP server (garbage, a huge literal, a cut-off reply) gets a
//! clear error and bounded memory, and the proxy keeps serving. Over TLS
//! and STARTTLS the login is sent only once the server's certificate
//! verified.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use airlock_tests::dovecot::{plain_imap_service, sample_mails, Dovecot, Mail, Tls};
use airlock_tests::proxy::Proxy;
use airlock_tests::{CtlOutput, Options, System, TestUser, AGENT, APPROVER, OUTSIDER};
use serde_json::{json, Value};

const MAIL_USER: &str = "agent@example.test";
const MAIL_PASSWORD: &str = "dovecot-Pw-7Hq2Lr9Zx4Vw1Mn8";

fn mails() -> Vec<Mail> {
    let mut mails = sample_mails();
    mails.extend([Mail {
        raw: "From: Billing <billing@example.test>\nTo: agent@example.test\n\
                  Subject: =?UTF-8?Q?Invoice_42_=E2=80=94_due?=\n\
                  Date: Wed, 04 Nov 2026 08:30:00 +0000\nMIME-Version: 1.0\n\
                  Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n\
                  Content-Type: text/plain; charset=utf-8\n\nPlease pay invoice 42.\n--b1\n\
                  Content-Type: application/pdf; name=\"invoice-42.pdf\"\n\
                  Content-Disposition: attachment; filename=\"invoice-42.pdf\"\n\
                  Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--b1--\n"
            .into(),
        seen: false,
    }]);
    mails
}

/// A read-only grant for `services`, requested by the agent and approved.
fn grant(system: &System, app: &mut airlock_tests::totp::Authenticator, services: &str) {
    system.grant_services(app, services, "read mail");
}

/// `POST /service/op` with `params` through the proxy as `user`; the
/// status and the JSON answer.
fn op(
    system: &System,
    proxy: &Proxy,
    user: &TestUser,
    unix: bool,
    path: &str,
    params: &str,
) -> (u16, Value) {
    let socket = proxy.socket.to_str().unwrap().to_owned();
    let url = if unix {
        format!("http://localhost{path}")
    } else {
        format!("{}{path}", proxy.tcp_base())
    };
    let mut args = vec!["-sS", "-i", "--max-time", "90", "--data-binary", params];
    if unix {
        args.extend(["--unix-socket", &socket]);
    }
    args.push(&url);
    let out = system.run_as(user, std::path::Path::new("/usr/bin/curl"), &args, "");
    parse_response(&out)
}

fn parse_response(out: &CtlOutput) -> (u16, Value) {
    let status = out
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {out:?}"));
    let body = out
        .stdout
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_else(|| panic!("no body: {out:?}"));
    let value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"));
    (status, value)
}

fn error_of(value: &Value) -> &str {
    value["error"].as_str().unwrap_or_else(|| panic!("{value}"))
}

#[test]
fn mail_operations_read_the_mailbox_and_mark_nothing_read() {
    let dovecot = Dovecot::start(MAIL_USER, MAIL_PASSWORD, &mails());
    let system = System::start_with(Options {
        services: Some(vec![(
            "mail.toml".into(),
            plain_imap_service("mail", dovecot.port),
        )]),
        ..Options::default()
    });
    let mut app = system.enrol();
    system.store_credential("mail", "user", MAIL_USER);
    system.store_credential("mail", "password", MAIL_PASSWORD);
    let proxy = Proxy::start(&system);

    // No grant: refused, saying how to ask, and dovecot sees no login.
    let (status, refused) = op(&system, &proxy, &AGENT, true, "/mail/count_unread", "{}");
    assert_eq!(status, 403, "{refused}");
    assert!(
        error_of(&refused).contains("airlockctl request --services mail"),
        "{refused}"
    );
    assert!(
        !dovecot.logs().contains("Login: user=<"),
        "{}",
        dovecot.logs()
    );

    grant(&system, &mut app, "mail");
    let (status, unread) = op(&system, &proxy, &AGENT, true, "/mail/count_unread", "");
    assert_eq!(status, 200, "{unread}");
    assert_eq!(unread["unread"], 2, "{unread}");
    assert_eq!(unread["messages"], 3, "{unread}");
    assert_eq!(unread["mailbox"], "INBOX");

    // The newest first, as many as asked, decoded.
    let (status, listed) = op(
        &system,
        &proxy,
        &AGENT,
        false,
        "/mail/list_messages",
        r#"{"limit":2}"#,
    );
    assert_eq!(status, 200, "{listed}");
    let messages = listed["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{listed}");
    assert_eq!(messages[0]["subject"], "Invoice 42 — due", "{listed}");
    assert_eq!(messages[0]["from"], "Billing <billing@example.test>");
    assert_eq!(messages[0]["seen"], false);
    assert_eq!(messages[1]["subject"], "Lunch?");
    assert_eq!(messages[1]["seen"], true);
    assert_eq!(messages[1]["date"], "2026-11-03T12:00:00Z", "{listed}");

    let (status, found) = op(
        &system,
        &proxy,
        &AGENT,
        true,
        "/mail/search",
        r#"{"query":"numbers are up"}"#,
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["messages"][0]["subject"], "Quarterly report");
    let report_uid = found["messages"][0]["uid"].as_u64().unwrap();
    let (_, none) = op(
        &system,
        &proxy,
        &AGENT,
        true,
        "/mail/search",
        r#"{"query":"no such words anywhere"}"#,
    );
    assert_eq!(none["total"], 0, "{none}");

    // Reading whole messages marks none of them read: not in IMAP, not on
    // disk.
    let seen_before = dovecot.seen_on_disk();
    assert_eq!(seen_before, 1);
    let invoice_uid = messages[0]["uid"].as_u64().unwrap();
    let (status, got) = op(
        &system,
        &proxy,
        &AGENT,
        true,
        "/mail/get_message",
        &json!({ "uid": invoice_uid }).to_string(),
    );
    assert_eq!(status, 200, "{got}");
    let message = &got["message"];
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .contains("Please pay invoice 42."),
        "{got}"
    );
    assert_eq!(message["attachments"][0]["name"], "invoice-42.pdf", "{got}");
    assert_eq!(message["attachments"][0]["content_type"], "application/pdf");
    assert_eq!(message["seen"], false);
    let (status, report) = op(
        &system,
        &proxy,
        &AGENT,
        false,
        "/mail/get_message",
        &json!({ "uid": report_uid, "mailbox": "INBOX" }).to_string(),
    );
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["message"]["message_id"], "q1@example.test");
    assert_eq!(
        dovecot.seen_on_disk(),
        seen_before,
        "{:?}",
        dovecot.inbox_files()
    );
    let (_, unread) = op(&system, &proxy, &AGENT, true, "/mail/count_unread", "{}");
    assert_eq!(
        unread["unread"], 2,
        "get_message marked a message read: {unread}"
    );

    // A missing message, bad parameters, another method: clear errors.
    let (status, missing) = op(
        &system,
        &proxy,
        &AGENT,
        true,
        "/mail/get_message",
        r#"{"uid":999}"#,
    );
    assert_eq!(status, 404, "{missing}");
    assert!(error_of(&missing).contains("no message with UID 999"));
    for (params, why) in [
        (r#"{}"#, "uid"),
        (r#"{"uid":"one"}"#, "get_message takes"),
        (
            r#"{"uid":1,"mailbox":"INBOX\r\nA1 STORE 1 +FLAGS (\\Seen)"}"#,
            "mailbox",
        ),
    ] {
        let (status, bad) = op(&system, &proxy, &AGENT, true, "/mail/get_message", params);
        assert_eq!(status, 400, "{params}: {bad}");
        assert!(error_of(&bad).contains(why), "{params}: {bad}");
    }
    let (status, injected) = op(
        &system,
        &proxy,
        &AGENT,
        true,
        "/mail/search",
        r#"{"query":"x\"\r\nA9 UID STORE 1:* +FLAGS (\\Deleted)"}"#,
    );
    assert_eq!(status, 400, "{injected}");
    let get = system.run_as(
        &AGENT,
        std::path::Path::new("/usr/bin/curl"),
        &[
            "-sS",
            "-i",
            "--unix-socket",
            proxy.socket.to_str().unwrap(),
            "http://localhost/mail/count_unread",
        ],
        "",
    );
    let (status, wrong_method) = parse_response(&get);
    assert_eq!(status, 405, "{wrong_method}");

    // A write is not an operation, whatever its name, grant or not.
    for write in ["store", "expunge", "append", "move", "copy", "mark_read"] {
        let (status, refused) = op(
            &system,
            &proxy,
            &AGENT,
            true,
            &format!("/mail/{write}"),
            r#"{"uid":1}"#,
        );
        assert_eq!(status, 403, "{write}: {refused}");
        assert!(error_of(&refused).contains("read-only"), "{refused}");
    }

    // Another user's process, over the socket or the port, is refused.
    let outsider = airlock_tests::users::uid(OUTSIDER.name).as_raw();
    for unix in [true, false] {
        let (status, refused) = op(
            &system,
            &proxy,
            &OUTSIDER,
            unix,
            "/mail/list_messages",
            "{}",
        );
        assert_eq!(status, 403, "{refused}");
        assert!(
            error_of(&refused).contains(&format!("uid {outsider}")),
            "{refused}"
        );
    }

    // Nothing was ever changed on disk, and nothing but reads was sent.
    assert_eq!(dovecot.inbox_files().len(), 3);
    assert_eq!(dovecot.seen_on_disk(), 1);

    // Every operation is on the record with its count, never the login.
    let records = system.audit_records();
    let done = |op: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["event"] == "operation" && r["op"] == op && r["credential"] == "mail")
            .collect()
    };
    assert_eq!(done("count_unread")[0]["count"], 2, "{records:?}");
    assert_eq!(done("list_messages")[0]["count"], 2);
    assert_eq!(done("search")[0]["count"], 1);
    assert!(done("get_message").iter().any(|r| r["count"] == 1));
    assert!(done("get_message")
        .iter()
        .any(|r| r["error"].as_str().is_some_and(|e| e.contains("UID 999"))));
    assert!(records
        .iter()
        .any(|r| r["event"] == "service_operation" && r["op"] == "store" && r["allowed"] == false));
    assert!(records.iter().any(|r| r["event"] == "service_operation"
        && r["op"] == "count_unread"
        && r["allowed"] == false
        && r["refusal"].as_str().unwrap().contains("no live grant")));
    let audit = std::fs::read_to_string(system.audit_log()).unwrap();
    assert!(!audit.contains(MAIL_PASSWORD));
    assert!(!proxy.log_text().contains(MAIL_PASSWORD));
    assert!(!system
        .service_log("airlock-gateway")
        .contains(MAIL_PASSWORD));
    system.audit_verify().success();
}

/// A fake IMAP server on a loopback port: it greets with `greeting`,
/// accepts any LOGIN, and answers every other command with `reply`.
fn hostile_server(greeting: &'static [u8], reply: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                if stream.write_all(greeting).is_err() {
                    return;
                }
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let tag = line.split_whitespace().next().unwrap_or("*").to_owned();
                    let answer: Vec<u8> = if line.to_ascii_uppercase().contains(" LOGIN ") {
                        format!("{tag} OK logged in\r\n").into_bytes()
                    } else {
                        reply.to_vec()
                    };
                    if stream.write_all(&answer).is_err() {
                        return;
                    }
                    if answer.ends_with(b"CLOSE") {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    port
}

fn high_water_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn hostile_mail_servers_get_a_clear_error_and_bounded_memory() {
    let garbage = hostile_server(b"\x00\xff\xfe garbage \x01\r\n", b"");
    let huge = hostile_server(
        b"* OK ready\r\n",
        b"* 1 FETCH (UID 1 BODY[] {999999999}\r\nxxxxxxxxxxxxxxxx",
    );
    let large = hostile_server(
        b"* OK ready\r\n",
        b"* 1 FETCH (UID 1 BODY[] {400000000}\r\nxxxxxxxxxxxxxxxx",
    );
    let cut = hostile_server(b"* OK ready\r\n", b"* 1 EXIS CLOSE");
    let system = System::start_with(Options {
        services: Some(vec![(
            "hostile.toml".into(),
            [
                plain_imap_service("garbage", garbage),
                plain_imap_service("huge", huge),
                plain_imap_service("large", large),
                plain_imap_service("cut", cut),
            ]
            .concat(),
        )]),
        ..Options::default()
    });
    let mut app = system.enrol();
    for service in ["garbage", "huge", "large", "cut"] {
        system.store_credential(service, "user", "u");
        system.store_credential(service, "password", "p");
    }
    let proxy = Proxy::start(&system);
    grant(&system, &mut app, "garbage,huge,large,cut");
    let before = high_water_kib(proxy.pid());

    for (service, why) in [
        ("garbage", "greeting"),
        ("huge", "999999999-byte literal"),
        ("large", "400000000-byte literal"),
        ("cut", "EXAMINE"),
    ] {
        for op_name in ["list_messages", "count_unread"] {
            let (status, answer) = op(
                &system,
                &proxy,
                &AGENT,
                true,
                &format!("/{service}/{op_name}"),
                "{}",
            );
            assert_eq!(status, 502, "{service}: {answer}");
            let error = error_of(&answer);
            assert!(
                error.contains(why) || (op_name == "count_unread" && error.contains("STATUS")),
                "{service} {op_name}: {answer}"
            );
            assert!(
                error.len() < 1000,
                "{service}: an error quotes too much: {error}"
            );
        }
    }
    let after = high_water_kib(proxy.pid());
    println!("proxy peak RSS: {before} KiB before, {after} KiB after the hostile servers");
    assert!(
        after < before + 16 * 1024,
        "the proxy's memory grew from {before} to {after} KiB"
    );
    // Still serving, and each failure is on the record.
    let (status, _) = op(&system, &proxy, &AGENT, true, "/huge/count_unread", "{}");
    assert_eq!(status, 502);
    let records = system.audit_records();
    assert!(records.iter().any(|r| r["event"] == "operation"
        && r["credential"] == "huge"
        && r["error"].as_str().is_some_and(|e| e.contains("literal"))));
}

/// `airlockctl access SERVICE OP ARGS…` as `user` against `proxy`, with
/// `stdin` (a TOTP code, or nothing).
fn access(
    system: &System,
    proxy: &Proxy,
    user: &TestUser,
    args: &[&str],
    stdin: &str,
) -> CtlOutput {
    let socket = proxy.socket.to_str().unwrap().to_owned();
    let services = system.path("services");
    let mut all = vec!["access"];
    all.extend_from_slice(args);
    all.extend([
        "--socket",
        &socket,
        "--services-dir",
        services.to_str().unwrap(),
        "--code-stdin",
    ]);
    system.ctl(user, &all, stdin)
}

#[test]
fn airlockctl_access_asks_for_a_grant_at_the_terminal_then_performs_the_operation() {
    let dovecot = Dovecot::start(MAIL_USER, MAIL_PASSWORD, &mails());
    let upstream = airlock_tests::upstream::Upstream::start();
    let system = System::start_with(Options {
        services: Some(vec![
            ("mail.toml".into(), plain_imap_service("mail", dovecot.port)),
            upstream.bearer_service(),
        ]),
        ..Options::default()
    });
    let mut app = system.enrol();
    system.store_credential("mail", "user", MAIL_USER);
    system.store_credential("mail", "password", MAIL_PASSWORD);
    system.store_credential("api", "token", "sk-access-test-9Zx4Vw1Mn8Kp3");
    let proxy = Proxy::start(&system);

    // Someone who may not approve gets a request filed and told who must
    // approve it; nothing is read.
    let agent = access(
        &system,
        &proxy,
        &AGENT,
        &["mail", "count_unread"],
        "123456\n",
    );
    assert_ne!(agent.code, 0, "{agent:?}");
    assert!(agent.stderr.contains("waits for an approver"), "{agent:?}");
    assert!(agent.stdout.is_empty(), "{agent:?}");

    // A wrong code approves nothing and performs nothing.
    let wrong = access(
        &system,
        &proxy,
        &APPROVER,
        &["mail", "count_unread"],
        "000000\n",
    );
    assert_ne!(wrong.code, 0, "{wrong:?}");
    assert!(wrong.stdout.is_empty(), "{wrong:?}");
    assert!(!system
        .audit_records()
        .iter()
        .any(|r| r["event"] == "operation"));

    // The approver at the terminal: asked, approved with a code, served;
    // stdout holds the answer alone.
    let first = access(
        &system,
        &proxy,
        &APPROVER,
        &["mail", "count_unread"],
        &format!("{}\n", app.next_code()),
    );
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stderr.contains("no live grant covers mail"),
        "{first:?}"
    );
    assert!(
        first.stderr.contains("approving signs this grant"),
        "{first:?}"
    );
    let answer: Value = serde_json::from_str(&first.stdout).expect("JSON on stdout");
    assert_eq!(answer["unread"], 2, "{first:?}");

    // Under the grant, no question; parameters with -p.
    let listed = access(
        &system,
        &proxy,
        &APPROVER,
        &["mail", "list_messages", "-p", r#"{"limit":1}"#],
        "",
    );
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(!listed.stderr.contains("request"), "{listed:?}");
    let answer: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(
        answer["messages"].as_array().unwrap().len(),
        1,
        "{listed:?}"
    );
    assert_eq!(answer["messages"][0]["subject"], "Invoice 42 — due");

    // Refusals and bad input: a clear message, exit 1.
    let write = access(&system, &proxy, &APPROVER, &["mail", "expunge"], "");
    assert_eq!(write.code, 1, "{write:?}");
    assert!(write.stderr.contains("read-only"), "{write:?}");
    let bad = access(
        &system,
        &proxy,
        &APPROVER,
        &["mail", "list_messages", "-p", "[not json"],
        "",
    );
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.stderr.contains("JSON object"), "{bad:?}");
    let unknown = access(&system, &proxy, &APPROVER, &["nope", "x"], "");
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("no service \"nope\""),
        "{unknown:?}"
    );

    // An HTTP service: OP is a path, fetched with GET, after its own grant.
    let got = access(
        &system,
        &proxy,
        &APPROVER,
        &["api", "/items"],
        &format!("{}\n", app.next_code()),
    );
    assert_eq!(got.code, 0, "{got:?}");
    assert!(got.stdout.contains("upstream saw GET /v1/items"), "{got:?}");
    assert_eq!(
        upstream.seen().last().unwrap().header("authorization"),
        Some("Bearer sk-access-test-9Zx4Vw1Mn8Kp3")
    );
    assert!(!got.stdout.contains("sk-access-test"));
    assert_eq!(dovecot.seen_on_disk(), 1);
}

/// An imaps service on `host:port`, checked against `ca_file` (or, with
/// none, the proxy's authorities: the system's).
fn imaps_service(name: &str, host: &str, port: u16, ca_file: Option<&std::path::Path>) -> String {
    let ca = ca_file
        .map(|p| format!("ca_file = {:?}\n", p.display().to_string()))
        .unwrap_or_default();
    format!(
        "[[service]]\nname = \"{name}\"\nkind = \"imap\"\nupstream = \"imaps://{host}:{port}\"\n\
         fields = [\"user\", \"password\"]\n\
         login = {{ user_field = \"user\", password_field = \"password\" }}\n{ca}\n"
    )
}

/// A self-signed certificate for 127.0.0.1 only, named `name`, and its key.
fn self_signed(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

/// `certificates` as CA files (`name`, PEM) where the gateway (which
/// validates the service files) and the proxy (which trusts them) may read
/// them under their Landlock confinement: the system's directories (/etc
/// in a real install). The directory, and each file's path.
fn ca_files(certificates: &[(&str, String)]) -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    use std::os::unix::fs::PermissionsExt;
    let cas = tempfile::Builder::new()
        .prefix("airlock-mail-ca")
        .tempdir_in("/run")
        .unwrap();
    std::fs::set_permissions(cas.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let paths = certificates
        .iter()
        .map(|(name, pem)| {
            let path = cas.path().join(name);
            std::fs::write(&path, pem).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            path
        })
        .collect();
    (cas, paths)
}

/// The search for "invoice 42" in `service` (one message of [`mails`]).
fn search_invoice(system: &System, proxy: &Proxy, unix: bool, service: &str) -> Value {
    let (status, found) = op(
        system,
        proxy,
        &AGENT,
        unix,
        &format!("/{service}/search"),
        r#"{"query":"invoice 42"}"#,
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"], 1, "{found}");
    found
}

#[test]
fn mail_over_tls_verifies_the_server_and_never_logs_in_to_one_that_does_not_verify() {
    // dovecot's certificate, for 127.0.0.1 only, and a stranger's (another
    // name, so the stranger is another authority, not a forgery of this one).
    let (certified, key) = self_signed("home mail");
    let (stranger, _) = self_signed("a stranger");
    let dovecot = Dovecot::start_tls(
        MAIL_USER,
        MAIL_PASSWORD,
        &mails(),
        &certified.pem(),
        &key.serialize_pem(),
        Tls::Implicit,
    );
    let (_cas, files) = ca_files(&[
        ("home-ca.pem", certified.pem()),
        ("stranger-ca.pem", stranger.pem()),
    ]);
    let (ca, wrong_ca) = (&files[0], &files[1]);
    let port = dovecot.port;
    let services = [
        imaps_service("home", "127.0.0.1", port, Some(ca)),
        imaps_service("wrong-ca", "127.0.0.1", port, Some(wrong_ca)),
        // The certificate names 127.0.0.1, not localhost.
        imaps_service("wrong-name", "localhost", port, Some(ca)),
        imaps_service("system-roots", "127.0.0.1", port, None),
    ]
    .concat();
    let system = System::start_with(Options {
        services: Some(vec![("home.toml".into(), services)]),
        ..Options::default()
    });
    let mut app = system.enrol();
    let all = ["home", "wrong-ca", "wrong-name", "system-roots"];
    for service in all {
        system.store_credential(service, "user", MAIL_USER);
        system.store_credential(service, "password", MAIL_PASSWORD);
    }
    let proxy = Proxy::start(&system);
    grant(&system, &mut app, &all.join(","));
    assert!(
        !system.service_log("airlock-gateway").contains("ca_file"),
        "{}",
        system.service_log("airlock-gateway")
    );

    // A certificate that does not verify: 502 naming the TLS failure, and
    // dovecot never saw a login (the handshake comes first).
    for (service, why) in [
        ("wrong-ca", "UnknownIssuer"),
        ("wrong-name", "not valid for name"),
        ("system-roots", "UnknownIssuer"),
    ] {
        let (status, refused) = op(
            &system,
            &proxy,
            &AGENT,
            true,
            &format!("/{service}/count_unread"),
            "{}",
        );
        assert_eq!(status, 502, "{service}: {refused}");
        let error = error_of(&refused);
        assert!(
            error.contains("TLS with the mail server") && error.contains("nothing was sent"),
            "{service}: {refused}"
        );
        assert!(error.contains(why), "{service}: {refused}");
    }
    let logs = dovecot.logs();
    assert!(!logs.contains("Login: user=<"), "{logs}");
    assert!(
        !logs.contains(MAIL_USER),
        "dovecot heard of the user: {logs}"
    );
    assert!(
        logs.matches("no auth attempts").count() >= 3,
        "dovecot saw no refused handshakes: {logs}"
    );
    let records = system.audit_records();
    assert!(records.iter().any(|r| r["event"] == "operation"
        && r["credential"] == "wrong-ca"
        && r["error"].as_str().is_some_and(|e| e.contains("TLS"))));

    // The right CA: every operation over TLS, nothing marked read.
    let (status, unread) = op(&system, &proxy, &AGENT, true, "/home/count_unread", "{}");
    assert_eq!(status, 200, "{unread} {}", dovecot.logs());
    assert_eq!(unread["unread"], 2, "{unread}");
    let (status, listed) = op(&system, &proxy, &AGENT, false, "/home/list_messages", "{}");
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["messages"].as_array().unwrap().len(), 3, "{listed}");
    let found = search_invoice(&system, &proxy, true, "home");
    let uid = found["messages"][0]["uid"].as_u64().unwrap();
    let (status, got) = op(
        &system,
        &proxy,
        &AGENT,
        true,
        "/home/get_message",
        &json!({ "uid": uid }).to_string(),
    );
    assert_eq!(status, 200, "{got}");
    assert!(
        got["message"]["text"]
            .as_str()
            .unwrap()
            .contains("Please pay invoice 42."),
        "{got}"
    );
    assert_eq!(dovecot.seen_on_disk(), 1);
    // Those logins came over TLS (dovecot has no plain listener here).
    let logs = dovecot.logs();
    assert!(
        logs.contains(&format!("Login: user=<{MAIL_USER}>")),
        "{logs}"
    );
    assert!(logs.contains("TLS"), "{logs}");
    assert!(!proxy.log_text().contains(MAIL_PASSWORD));
}

/// An `imap://` service on `host:port` that STARTTLS secures, checked
/// against `ca_file`.
fn starttls_service(name: &str, host: &str, port: u16, ca_file: &std::path::Path) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nkind = \"imap\"\nupstream = \"imap://{host}:{port}\"\n\
         starttls = true\nca_file = {:?}\nfields = [\"user\", \"password\"]\n\
         login = {{ user_field = \"user\", password_field = \"password\" }}\n\n",
        ca_file.display().to_string()
    )
}

#[test]
fn starttls_upgrades_before_the_login_and_a_server_without_it_gets_no_login() {
    let (certified, key) = self_signed("home mail");
    // Requires STARTTLS on its plain port; the other offers no TLS at all.
    let upgrading = Dovecot::start_tls(
        MAIL_USER,
        MAIL_PASSWORD,
        &mails(),
        &certified.pem(),
        &key.serialize_pem(),
        Tls::StartTls,
    );
    let clear_only = Dovecot::start(MAIL_USER, MAIL_PASSWORD, &mails());
    // Ungoverned first: the clear-only server takes a plain login, so a
    // refusal below is the proxy's doing, not the server's.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", clear_only.port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    write!(stream, "a1 LOGIN \"{MAIL_USER}\" \"{MAIL_PASSWORD}\"\r\n").unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.starts_with("a1 ") {
            break;
        }
    }
    assert!(line.starts_with("a1 OK"), "{line}");
    drop((stream, reader));

    let (_cas, files) = ca_files(&[("home-ca.pem", certified.pem())]);
    let ca = &files[0];
    let services = [
        starttls_service("home", "127.0.0.1", upgrading.port, ca),
        starttls_service("no-tls", "127.0.0.1", clear_only.port, ca),
    ]
    .concat();
    let system = System::start_with(Options {
        services: Some(vec![("home.toml".into(), services)]),
        ..Options::default()
    });
    let mut app = system.enrol();
    for service in ["home", "no-tls"] {
        system.store_credential(service, "user", MAIL_USER);
        system.store_credential(service, "password", MAIL_PASSWORD);
    }
    let proxy = Proxy::start(&system);
    grant(&system, &mut app, "home,no-tls");
    let services_dir = system.path("services");
    let shown = system.ctl(
        &APPROVER,
        &["services", "list", services_dir.to_str().unwrap()],
        "",
    );
    assert!(
        shown
            .stdout
            .contains(&format!("imap://127.0.0.1:{} (STARTTLS)", upgrading.port)),
        "{shown:?}"
    );

    // A server that does not offer STARTTLS: 502, and it saw no login.
    let logins_before = clear_only.logs().matches("Login: user=<").count();
    let (status, refused) = op(&system, &proxy, &AGENT, true, "/no-tls/count_unread", "{}");
    assert_eq!(status, 502, "{refused}");
    let error = error_of(&refused);
    assert!(
        error.contains("does not offer STARTTLS") && error.contains("the login was not sent"),
        "{refused}"
    );
    assert_eq!(
        clear_only.logs().matches("Login: user=<").count(),
        logins_before,
        "{}",
        clear_only.logs()
    );

    // Upgraded: the operation is served, and dovecot logged the login as
    // made over TLS.
    let (status, unread) = op(&system, &proxy, &AGENT, true, "/home/count_unread", "{}");
    assert_eq!(status, 200, "{unread} {}", upgrading.logs());
    assert_eq!(unread["unread"], 2, "{unread}");
    search_invoice(&system, &proxy, false, "home");
    let logs = upgrading.logs();
    let login = logs
        .lines()
        .find(|l| l.contains(&format!("Login: user=<{MAIL_USER}>")))
        .unwrap_or_else(|| panic!("no login: {logs}"));
    assert!(login.contains(", TLS"), "{login}");
    assert_eq!(upgrading.seen_on_disk(), 1);
    assert!(!proxy.log_text().contains(MAIL_PASSWORD));
}
