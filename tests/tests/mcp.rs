//! airlock-mcp against the real daemons, driven by an MCP client speaking
//! the stdio wire protocol (newline-delimited JSON-RPC 2.0) to the server
//! started as the agent's user: it lists its tools, refuses a service call
//! without a grant and says how to ask, files a request a human approves
//! with a TOTP code, then serves the same call through airlock-proxy
//! without the secret ever reaching the client; the mail tools read a real
//! dovecot's mailbox the same way; and airlock-mcp works inside a governed
//! session. A hostile client's garbage gets a clear answer (malformed JSON:
//! -32700) and the session goes on.

#![forbid(unsafe_code)]

use airlock_tests::dovecot::{plain_imap_service, sample_mails, Dovecot};
use airlock_tests::mcp_client::McpClient;
use airlock_tests::proxy::Proxy;
use airlock_tests::upstream::Upstream;
use airlock_tests::{Options, System, AGENT, APPROVER, OUTSIDER};
use serde_json::{json, Value};

const API_TOKEN: &str = "sk-live-Mc9Pq2Rz7Lx4Wv1Nb8Kt3Yd6";

const TOOLS: [&str; 9] = [
    "airlock_check_command",
    "airlock_count_unread",
    "airlock_get_email",
    "airlock_http_request",
    "airlock_list_emails",
    "airlock_request_access",
    "airlock_search_emails",
    "airlock_status",
    "airlock_wait_for_decision",
];

/// The text of a refused call: a JSON-RPC error or a tool error.
fn refusal(answer: &Value) -> String {
    if let Some(message) = answer["error"]["message"].as_str() {
        return message.to_owned();
    }
    assert_eq!(answer["result"]["isError"], true, "not refused: {answer}");
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A system with the `api` service, its token stored, and a proxy.
fn api_system(upstream: &Upstream) -> (System, Proxy) {
    let system = System::start_with(Options {
        services: Some(vec![upstream.bearer_service()]),
        ..Options::default()
    });
    system.store_credential("api", "token", API_TOKEN);
    let proxy = Proxy::start(&system);
    (system, proxy)
}

#[test]
fn an_http_call_is_refused_until_a_human_approves_then_served_without_the_secret() {
    let upstream = Upstream::start();
    let (system, proxy) = api_system(&upstream);
    let mut app = system.enrol();
    let (mut mcp, init) = McpClient::start(&system, &proxy);
    assert_eq!(init["serverInfo"]["name"], "airlock-mcp", "{init}");
    assert!(init["capabilities"]["tools"].is_object(), "{init}");
    assert_eq!(mcp.tool_names(), TOOLS);

    let get = json!({"service": "api", "method": "GET", "path": "/items?page=2"});
    let (error, text) = mcp.tool("airlock_http_request", get.clone());
    assert!(error, "served without a grant: {text}");
    assert!(
        text.contains("no grant covers service \"api\"")
            && text.contains("airlock_request_access")
            && text.contains("airlockctl approve"),
        "{text}"
    );
    assert!(upstream.seen().is_empty());
    // So does every mail tool.
    for (tool, arguments) in [
        ("airlock_list_emails", json!({"service": "mail"})),
        (
            "airlock_search_emails",
            json!({"service": "mail", "query": "x"}),
        ),
        ("airlock_get_email", json!({"service": "mail", "uid": 1})),
        ("airlock_count_unread", json!({"service": "mail"})),
    ] {
        let (error, text) = mcp.tool(tool, arguments);
        assert!(
            error && text.contains("no grant covers service \"mail\""),
            "{tool}: {text}"
        );
    }

    let (error, text) = mcp.tool(
        "airlock_request_access",
        json!({"services": ["api"], "reason": "read the items"}),
    );
    assert!(!error, "{text}");
    assert!(text.contains("not approved yet"), "{text}");
    let id = text
        .strip_prefix("request ")
        .and_then(|t| t.split(':').next())
        .unwrap_or_else(|| panic!("no request id: {text}"))
        .to_owned();
    // Filed, not granted: a short wait says so and the call is still refused.
    let (error, text) = mcp.tool(
        "airlock_wait_for_decision",
        json!({"request_id": id, "timeout_s": 0}),
    );
    assert!(!error && text.contains("not approved yet"), "{text}");
    let (error, _) = mcp.tool("airlock_http_request", get.clone());
    assert!(error);
    assert!(upstream.seen().is_empty());

    let approved = system.ctl(
        &APPROVER,
        &["approve", &id, "--code-stdin"],
        &format!("{}\n", app.next_code()),
    );
    assert!(
        approved.success().stdout.contains("services:api (read)"),
        "{approved:?}"
    );
    let (error, text) = mcp.tool(
        "airlock_wait_for_decision",
        json!({"request_id": id, "timeout_s": 10}),
    );
    assert!(!error && text.starts_with("approved: grant"), "{text}");
    let (error, text) = mcp.tool("airlock_status", json!({}));
    assert!(!error && text.contains("services:api"), "{text}");

    let (error, text) = mcp.tool("airlock_http_request", get);
    assert!(!error, "{text}");
    assert!(
        text.starts_with("HTTP 200") && text.contains("upstream saw GET /v1/items"),
        "{text}"
    );
    assert!(!text.contains(API_TOKEN), "the agent saw the token");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/v1/items?page=2");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {API_TOKEN}").as_str())
    );

    // Another user's airlock-mcp does not ride on the agent's grant.
    let (mut outsider, _) = McpClient::start_as(&system, &proxy, &OUTSIDER);
    let (error, text) = outsider.tool(
        "airlock_http_request",
        json!({"service": "api", "method": "GET", "path": "/items"}),
    );
    assert!(error && text.contains("no grant covers"), "{text}");
    assert_eq!(upstream.seen().len(), 1);

    // A write under the read-only grant: refused by the proxy, clearly.
    let (error, text) = mcp.tool(
        "airlock_http_request",
        json!({"service": "api", "method": "DELETE", "path": "/items/1"}),
    );
    assert!(error && text.contains("403"), "{text}");
    assert_eq!(upstream.seen().len(), 1);
}

#[test]
fn check_command_answers_with_the_policy_decision() {
    let upstream = Upstream::start();
    let (system, proxy) = api_system(&upstream);
    let (mut mcp, _) = McpClient::start(&system, &proxy);

    let (error, text) = mcp.tool(
        "airlock_check_command",
        json!({"argv": ["terraform", "apply", "-auto-approve"], "role": "default"}),
    );
    assert!(!error, "{text}");
    let decision: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(decision["decision"], "block", "{decision}");
    assert_eq!(decision["policy"], "infra-mutation-block", "{decision}");

    let (error, text) = mcp.tool(
        "airlock_check_command",
        json!({"argv": ["ls", "-l"], "role": "default"}),
    );
    assert!(!error, "{text}");
    let decision: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(decision["decision"], "allow", "{decision}");

    // Outside a governed session and with no role: told what to give.
    let (error, text) = mcp.tool("airlock_check_command", json!({"argv": ["ls"]}));
    assert!(error && text.contains("give the role"), "{text}");
    let (error, text) = mcp.tool(
        "airlock_check_command",
        json!({"argv": ["ls"], "role": "no-such-role"}),
    );
    assert!(error && text.contains("no-such-role"), "{text}");
    let (error, text) = mcp.tool("airlock_check_command", json!({"argv": []}));
    assert!(error && text.contains("argv is empty"), "{text}");
}

#[test]
fn a_hostile_client_gets_clear_errors_and_the_session_goes_on() {
    let upstream = Upstream::start();
    let (system, proxy) = api_system(&upstream);
    let (mut mcp, _) = McpClient::start(&system, &proxy);

    // An unknown tool: a JSON-RPC error naming it.
    let answer = mcp.call(
        "tools/call",
        json!({"name": "airlock_delete_everything", "arguments": {}}),
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("airlock_delete_everything")),
        "{answer}"
    );
    // Wrong argument types and missing arguments: refused, saying which.
    let answer = mcp.call(
        "tools/call",
        json!({"name": "airlock_http_request",
               "arguments": {"service": ["api"], "method": 7, "path": "/x"}}),
    );
    assert!(refusal(&answer).contains("invalid type"), "{answer}");
    let answer = mcp.call(
        "tools/call",
        json!({"name": "airlock_request_access", "arguments": {"services": ["api"]}}),
    );
    assert!(
        refusal(&answer).contains("missing field `reason`"),
        "{answer}"
    );
    let answer = mcp.call("tools/call", json!({"name": 12}));
    assert!(!refusal(&answer).is_empty(), "{answer}");
    // Arguments that parse but are bad: a tool error, nothing reaches anyone.
    let (error, text) = mcp.tool(
        "airlock_http_request",
        json!({"service": "../etc", "method": "GET", "path": "/x"}),
    );
    assert!(error && text.contains("invalid service name"), "{text}");
    let (error, text) = mcp.tool(
        "airlock_http_request",
        json!({"service": "api", "method": "GET", "path": "x y"}),
    );
    assert!(error && text.contains("invalid path"), "{text}");
    let (error, text) = mcp.tool(
        "airlock_request_access",
        json!({"services": ["api"], "reason": "r", "minutes": 100000}),
    );
    assert!(error && text.contains("at most 480"), "{text}");

    // Malformed JSON: JSON-RPC's Parse error (-32700) with id null, each
    // time, and the session goes on.
    for garbage in [
        &b"{\"jsonrpc\": \"2.0\", \"id\": 99, \"method\": \n"[..],
        b"\xff\xfe not utf-8\n",
        b"}{\n",
    ] {
        mcp.send_raw(garbage);
        let answer = mcp.recv();
        assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
        assert_eq!(answer["error"]["code"], -32700, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Parse error")),
            "{answer}"
        );
        assert_eq!(answer.get("id"), Some(&Value::Null), "{answer}");
        assert_eq!(mcp.request("ping", json!({})), json!({}));
    }
    // A JSON value that is no message, a huge line: answered with an
    // error that holds no id, never the end of the session.
    mcp.send_raw(b"[1, 2, 3]\n");
    let mut huge =
        b"{\"jsonrpc\":\"2.0\",\"id\":98,\"method\":\"tools/list\",\"params\":{\"pad\":\"".to_vec();
    // Longer than airlock-mcp's 1 MiB limit, shorter than the SDK's 16 MiB.
    huge.resize(huge.len() + 2 * 1024 * 1024, b'a');
    huge.extend_from_slice(b"\"}}\n");
    mcp.send_raw(&huge);
    assert_eq!(mcp.tool_names(), TOOLS);
    assert!(upstream.seen().is_empty());
    assert!(
        mcp.child.try_wait().unwrap().is_none(),
        "airlock-mcp exited"
    );
}

/// The same road with the official SDK's client (rmcp, as agents' hosts
/// use it) spawning airlock-mcp as the agent: its handshake, tool list,
/// refusal and, after approval, the served call.
#[tokio::test(flavor = "current_thread")]
async fn the_sdk_client_is_refused_then_served_after_approval() {
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::TokioChildProcess;
    use rmcp::ServiceExt;

    let upstream = Upstream::start();
    let (system, proxy) = api_system(&upstream);
    let mut app = system.enrol();
    let socket = proxy.socket.to_str().unwrap().to_owned();
    let command = system.as_user(
        &AGENT,
        &system.bin("airlock-mcp"),
        &["--proxy-socket", &socket],
        "/usr/bin:/bin",
    );
    let transport = TokioChildProcess::new(tokio::process::Command::from(command)).unwrap();
    let client = ().serve(transport).await.unwrap();
    let info = client.peer_info().expect("initialized");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("airlock-mcp")
    );
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    names.sort();
    assert_eq!(names, TOOLS);

    let call = |name: &'static str, arguments: Value| {
        let Value::Object(arguments) = arguments else {
            unreachable!()
        };
        CallToolRequestParams::new(name).with_arguments(arguments)
    };
    let text = |result: &rmcp::model::CallToolResult| {
        serde_json::to_value(&result.content).unwrap()[0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let get = json!({"service": "api", "method": "GET", "path": "/sdk"});
    let refused = client
        .call_tool(call("airlock_http_request", get.clone()))
        .await
        .unwrap();
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    assert!(text(&refused).contains("airlock_request_access"));
    assert!(upstream.seen().is_empty());

    let asked = client
        .call_tool(call(
            "airlock_request_access",
            json!({"services": ["api"], "reason": "the SDK asks"}),
        ))
        .await
        .unwrap();
    let asked = text(&asked);
    assert!(asked.contains("not approved yet"), "{asked}");
    let id = asked["request ".len()..].split(':').next().unwrap();
    system
        .ctl(
            &APPROVER,
            &["approve", id, "--code-stdin"],
            &format!("{}\n", app.next_code()),
        )
        .success();

    let served = client
        .call_tool(call("airlock_http_request", get))
        .await
        .unwrap();
    assert_ne!(served.is_error, Some(true), "{served:?}");
    let body = text(&served);
    assert!(body.contains("upstream saw GET /v1/sdk"), "{body}");
    assert!(!body.contains(API_TOKEN));
    assert_eq!(
        upstream.seen()[0].header("authorization"),
        Some(format!("Bearer {API_TOKEN}").as_str())
    );
    client.cancel().await.unwrap();
}

const MAIL_USER: &str = "agent@example.test";
const MAIL_PASSWORD: &str = "dovecot-Mcp-4Tq8Zr2Lw6Xn";

/// The text of a tool's answer as JSON.
fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn the_mail_tools_read_a_real_mailbox_after_approval_and_mark_nothing_read() {
    let dovecot = Dovecot::start(MAIL_USER, MAIL_PASSWORD, &sample_mails());
    let system = System::start_with(Options {
        services: Some(vec![(
            "mail.toml".into(),
            plain_imap_service("mail", dovecot.port),
        )]),
        ..Options::default()
    });
    let mut app = system.enrol();
    for (field, value) in [("user", MAIL_USER), ("password", MAIL_PASSWORD)] {
        system.store_credential("mail", field, value);
    }
    let proxy = Proxy::start(&system);
    let (mut mcp, _) = McpClient::start(&system, &proxy);

    let (error, text) = mcp.tool("airlock_count_unread", json!({"service": "mail"}));
    assert!(
        error && text.contains("no grant covers service \"mail\""),
        "{text}"
    );
    assert!(
        !dovecot.logs().contains("Login: user=<"),
        "{}",
        dovecot.logs()
    );

    let (error, text) = mcp.tool(
        "airlock_request_access",
        json!({"services": ["mail"], "reason": "summarise my mail"}),
    );
    assert!(!error && text.contains("not approved yet"), "{text}");
    let id = text["request ".len()..]
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    system
        .ctl(
            &APPROVER,
            &["approve", &id, "--code-stdin"],
            &format!("{}\n", app.next_code()),
        )
        .success();
    let (error, text) = mcp.tool(
        "airlock_wait_for_decision",
        json!({"request_id": id, "timeout_s": 10}),
    );
    assert!(!error && text.starts_with("approved: grant"), "{text}");

    let (error, text) = mcp.tool("airlock_count_unread", json!({"service": "mail"}));
    assert!(!error, "{text}");
    let unread = json_of(&text);
    assert_eq!(
        (unread["unread"].clone(), unread["messages"].clone()),
        (json!(1), json!(2)),
        "{text}"
    );

    let (error, text) = mcp.tool(
        "airlock_list_emails",
        json!({"service": "mail", "limit": 5}),
    );
    assert!(!error, "{text}");
    let listed = json_of(&text);
    let subjects: Vec<&str> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["Lunch?", "Quarterly report"], "{text}");

    let (error, text) = mcp.tool(
        "airlock_search_emails",
        json!({"service": "mail", "query": "numbers are up"}),
    );
    assert!(!error, "{text}");
    let found = json_of(&text);
    assert_eq!(found["total"], 1, "{text}");
    let uid = found["messages"][0]["uid"].as_u64().unwrap();

    let (error, text) = mcp.tool("airlock_get_email", json!({"service": "mail", "uid": uid}));
    assert!(!error, "{text}");
    let got = json_of(&text);
    assert_eq!(got["message"]["message_id"], "q1@example.test", "{text}");
    assert!(got["message"]["text"]
        .as_str()
        .unwrap()
        .contains("The numbers are up."));
    assert_eq!(got["message"]["seen"], false);
    // Read, and still unread: on disk and through IMAP.
    assert_eq!(dovecot.seen_on_disk(), 1, "{:?}", dovecot.inbox_files());
    let (_, text) = mcp.tool("airlock_count_unread", json!({"service": "mail"}));
    assert_eq!(json_of(&text)["unread"], 1, "{text}");

    // Bad arguments reach no one; a missing message is a clear error.
    let (error, text) = mcp.tool("airlock_get_email", json!({"service": "mail", "uid": 999}));
    assert!(
        error && text.contains("404") && text.contains("no message with UID 999"),
        "{text}"
    );
    let (error, text) = mcp.tool(
        "airlock_search_emails",
        json!({"service": "mail", "query": "x\r\nA1 STORE 1 +FLAGS (\\Deleted)"}),
    );
    assert!(error && text.contains("400"), "{text}");
    assert_eq!(dovecot.inbox_files().len(), 2);

    let records = system.audit_records();
    for op in ["count_unread", "list_messages", "search", "get_message"] {
        assert!(
            records
                .iter()
                .any(|r| r["event"] == "operation" && r["credential"] == "mail" && r["op"] == op),
            "{op}: {records:?}"
        );
    }
    assert!(!std::fs::read_to_string(system.audit_log())
        .unwrap()
        .contains(MAIL_PASSWORD));
}

/// The `Seccomp:` mode and cgroup of the agent's airlock-mcp process.
/// The parent of `pid`, from `/proc/PID/status`.
fn parent_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether `ancestor` started `pid` (directly or further up).
fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    while let Some(parent) = parent_of(pid) {
        if parent == ancestor {
            return true;
        }
        if parent <= 1 {
            return false;
        }
        pid = parent;
    }
    false
}

/// The agent's airlock-mcp processes started under `ancestor` (other tests
/// of this binary run their own at the same time): pid, seccomp mode and
/// cgroups of each.
fn confinement_of_mcp(agent_uid: u32, ancestor: u32) -> Vec<(u32, String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "airlock-mcp" {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        if field("Uid:").split_whitespace().next() != Some(&agent_uid.to_string())
            || !descends_from(pid, ancestor)
        {
            continue;
        }
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        found.push((pid, field("Seccomp:"), cgroup.trim().to_owned()));
    }
    found
}

/// airlock-mcp started as an agent would start it in a governed session
/// (`airlockctl run -- airlock-mcp`): under the session's confinement it
/// still reaches the system bus and the proxy's socket; it reports the
/// session, judges commands under the session's role, and a grant it asks
/// for is bound to the session and serves it there, not outside.
#[test]
fn airlock_mcp_works_inside_a_governed_session() {
    let upstream = Upstream::start();
    let system = System::start_with(Options {
        services: Some(vec![upstream.bearer_service()]),
        enforcer: true,
        ..Options::default()
    });
    system.store_credential("api", "token", API_TOKEN);
    let proxy = Proxy::start(&system);
    let mut app = system.enrol();
    let socket = proxy.socket.to_str().unwrap().to_owned();
    let mcp_bin = system.bin("airlock-mcp").display().to_string();
    let (mut mcp, init) = McpClient::spawn(system.as_user(
        &AGENT,
        &system.bin("airlockctl"),
        &["run", "--", &mcp_bin, "--proxy-socket", &socket],
        "/usr/local/bin:/usr/bin:/bin",
    ));
    assert_eq!(init["serverInfo"]["name"], "airlock-mcp", "{init}");

    // It is the session's: in its cgroup, under its seccomp filter.
    let agent = airlock_tests::users::uid(AGENT.name).as_raw();
    let (error, text) = mcp.tool("airlock_status", json!({}));
    assert!(!error, "{text}");
    let status = json_of(&text);
    let sessions = status["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{text}");
    let session = sessions[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(sessions[0]["role"], "default", "{text}");
    assert_eq!(status["current_session"], session.as_str(), "{text}");
    assert_eq!(status["gateway"]["policy_ok"], true, "{text}");
    let processes = confinement_of_mcp(agent, mcp.child.id());
    assert_eq!(processes.len(), 1, "{processes:?}");
    let (_, seccomp, cgroup) = &processes[0];
    assert!(
        cgroup.contains(&session),
        "not in the session's cgroup: {processes:?}"
    );
    assert_eq!(seccomp, "2", "not under a seccomp filter: {processes:?}");

    // Commands are judged under the session's role without being told it.
    let (error, text) = mcp.tool(
        "airlock_check_command",
        json!({"argv": ["terraform", "apply", "-auto-approve"]}),
    );
    assert!(!error, "{text}");
    assert_eq!(json_of(&text)["decision"], "block", "{text}");
    let (error, text) = mcp.tool("airlock_check_command", json!({"argv": ["ls", "-l"]}));
    assert!(!error, "{text}");
    assert_eq!(json_of(&text)["decision"], "allow", "{text}");

    // A grant asked for from inside is the session's, and the proxy's
    // socket serves it there.
    let (error, text) = mcp.tool(
        "airlock_request_access",
        json!({"services": ["api"], "reason": "from the session"}),
    );
    assert!(!error && text.contains("not approved yet"), "{text}");
    let id = text["request ".len()..]
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let pending = system.ctl(&APPROVER, &["requests", "--json"], "");
    let pending: Vec<Value> = serde_json::from_str(&pending.success().stdout).unwrap();
    assert_eq!(pending[0]["session"], session.as_str(), "{pending:?}");
    system
        .ctl(
            &APPROVER,
            &["approve", &id, "--code-stdin"],
            &format!("{}\n", app.next_code()),
        )
        .success();
    let (error, text) = mcp.tool(
        "airlock_http_request",
        json!({"service": "api", "method": "GET", "path": "/in-session"}),
    );
    assert!(!error, "{text}");
    assert!(text.contains("upstream saw GET /v1/in-session"), "{text}");
    assert!(!text.contains(API_TOKEN));
    // The same user's airlock-mcp outside the session does not ride on it.
    let (mut outside, _) = McpClient::start(&system, &proxy);
    let (error, text) = outside.tool(
        "airlock_http_request",
        json!({"service": "api", "method": "GET", "path": "/outside"}),
    );
    assert!(error, "served outside the session: {text}");
    assert_eq!(upstream.seen().len(), 1, "{:?}", upstream.seen());
    // Nor on its role: the user's live session is not this one's.
    let (error, text) = outside.tool("airlock_status", json!({}));
    assert!(!error, "{text}");
    assert_eq!(json_of(&text)["current_session"], Value::Null, "{text}");
    let (error, text) = outside.tool("airlock_check_command", json!({"argv": ["ls"]}));
    assert!(error && text.contains("give the role"), "{text}");
    assert!(
        mcp.child.try_wait().unwrap().is_none(),
        "the session's airlock-mcp exited"
    );
}
