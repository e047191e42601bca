//! MCP benchmark: tools/call through a real airlock-mcp process, started as
//! the agent and spoken to over stdio (newline-delimited JSON-RPC, as an
//! agent's host does), against the real gateway on a real dbus-daemon.
//! Prints p50/p99 of `airlock_status` (the caller's grants and requests)
//! and `airlock_check_command` (a policy decision) against the target
//! (p99 < 5 ms, excluding any upstream), and, for scale, a GET through
//! `airlock_http_request` (the proxy, the gateway's grant check and audit
//! record, the upstream) and a bare `ping` (the stdio round trip alone).
//!
//! `cargo build --release --workspace --bins && cargo bench -p airlock-tests
//! --bench mcp` (scripts/bench-mcp). Needs root.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use airlock_tests::mcp_client::McpClient;
use airlock_tests::proxy::Proxy;
use airlock_tests::upstream::Upstream;
use airlock_tests::{Options, System};
use serde_json::{json, Value};

const ROUNDS: usize = 1000;
const TARGET: Duration = Duration::from_millis(5);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let upstream = Upstream::start();
    let system = System::start_with(Options {
        services: Some(vec![upstream.bearer_service()]),
        ..Options::default()
    });
    let mut app = system.enrol();
    system.store_credential("api", "token", "sk-bench-Mc9Pq2Rz7Lx4Wv1Nb8Kt3Yd6");
    system.grant_services(&mut app, "api", "bench");
    let proxy = Proxy::start(&system);
    let (mut mcp, _) = McpClient::start(&system, &proxy);

    let calls: [(&str, Option<&str>, Value); 4] = [
        ("ping (stdio only)", None, json!({})),
        ("airlock_status", Some("airlock_status"), json!({})),
        (
            "airlock_check_command",
            Some("airlock_check_command"),
            json!({"argv": ["terraform", "plan", "-out=tfplan"], "role": "default"}),
        ),
        (
            "airlock_http_request GET",
            Some("airlock_http_request"),
            json!({"service": "api", "method": "GET", "path": "/items"}),
        ),
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); calls.len()];
    // Warm up, then the calls in turn, so that noise hits each alike.
    for round in 0..ROUNDS + 50 {
        for (i, (_, tool, arguments)) in calls.iter().enumerate() {
            let t = Instant::now();
            match tool {
                None => {
                    mcp.request("ping", json!({}));
                }
                Some(tool) => {
                    let (error, text) = mcp.tool(tool, arguments.clone());
                    assert!(!error, "{tool}: {text}");
                }
            }
            if round >= 50 {
                samples[i].push(t.elapsed());
            }
        }
    }
    let mut met = true;
    for ((name, tool, _), samples) in calls.iter().zip(samples.iter_mut()) {
        samples.sort();
        let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
        let judged = matches!(tool, Some("airlock_status" | "airlock_check_command"));
        met &= !judged || p99 < TARGET;
        println!(
            "{name:<28} n={ROUNDS} p50={:>6.2} ms  p99={:>6.2} ms{}",
            ms(p50),
            ms(p99),
            if judged {
                format!(
                    "  (target p99 < {} ms: {})",
                    TARGET.as_millis(),
                    if p99 < TARGET { "met" } else { "NOT met" }
                )
            } else {
                String::new()
            }
        );
    }
    println!(
        "MCP tools/call p99 < {} ms for airlock_status and airlock_check_command: {}; \
         airlock-mcp RSS after the calls {:.1} MiB",
        TARGET.as_millis(),
        if met { "met" } else { "NOT met" },
        airlock_tests::rss_kib(mcp.pid()) as f64 / 1024.0
    );
}
