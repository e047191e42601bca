//! Idle memory of every daemon: airlock-gateway, airlock-totp,
//! airlock-enforcer, airlock-integrations, airlock-proxy and airlock-mcp,
//! started as in production (each as its own user; airlock-mcp as the
//! agent) against a real dbus-daemon, each used once (a `CheckCommand`, a
//! GET through the proxy under a grant, an MCP tools/call), then left
//! idle. Prints a table of resident memory (VmRSS) and threads against the
//! target (< 15 MiB each).
//!
//! `cargo build --release --workspace --bins && cargo bench -p airlock-tests
//! --bench idle_rss` (scripts/bench-idle-rss). Needs root.

#![forbid(unsafe_code)]

use std::time::Duration;

use airlock_tests::mcp_client::McpClient;
use airlock_tests::proxy::Proxy;
use airlock_tests::upstream::Upstream;
use airlock_tests::{rss_kib, threads, Options, System, AGENT};
use serde_json::json;

const TARGET_KIB: u64 = 15 * 1024;
/// How long everything is left alone before it is measured.
const IDLE: Duration = Duration::from_secs(3);

fn main() {
    let upstream = Upstream::start();
    let system = System::start_with(Options {
        enforcer: true,
        integrations: Some(Vec::new()),
        services: Some(vec![upstream.bearer_service()]),
        ..Options::default()
    });
    let mut app = system.enrol();
    system.store_credential("api", "token", "sk-bench-Rs5Tq2Lx7Vw4Nb1Mk8Pz3Yc6");
    system.grant_services(&mut app, "api", "bench");
    let proxy = Proxy::start(&system);

    // A first use of each.
    system
        .ctl(
            &AGENT,
            &["policy", "check", "--role", "default", "--", "ls"],
            "",
        )
        .success();
    let socket = proxy.socket.to_str().unwrap().to_owned();
    let load = system.run_as(
        &AGENT,
        &system.bin("airlock-http-load"),
        &[
            "--unix",
            &socket,
            "--path",
            "/api/items",
            "--requests",
            "10",
        ],
        "",
    );
    assert_eq!(load.code, 0, "{load:?}");
    let (mut mcp, _) = McpClient::start(&system, &proxy);
    for (tool, arguments) in [
        ("airlock_status", json!({})),
        (
            "airlock_http_request",
            json!({"service": "api", "method": "GET", "path": "/items"}),
        ),
    ] {
        let (error, text) = mcp.tool(tool, arguments);
        assert!(!error, "{tool}: {text}");
    }

    std::thread::sleep(IDLE);
    let (totp, gateway) = system.service_pids();
    let daemons = [
        ("airlock-gateway", gateway),
        ("airlock-totp", totp),
        ("airlock-enforcer", system.enforcer_pid()),
        ("airlock-integrations", system.integrations_pid()),
        ("airlock-proxy", proxy.pid()),
        ("airlock-mcp", mcp.pid()),
    ];
    println!(
        "{:<22} {:>10} {:>8}  target < 15 MiB",
        "idle", "RSS", "threads"
    );
    let mut all_met = true;
    for (name, pid) in daemons {
        let kib = rss_kib(pid);
        assert!(kib > 0, "{name} (pid {pid}) is not running");
        let met = kib < TARGET_KIB;
        all_met &= met;
        println!(
            "{name:<22} {:>6.1} MiB {:>8}  {}",
            kib as f64 / 1024.0,
            threads(pid),
            if met { "met" } else { "NOT met" }
        );
    }
    println!(
        "idle RSS < 15 MiB for every daemon: {}",
        if all_met { "met" } else { "NOT met" }
    );
}
