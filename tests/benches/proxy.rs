//! HTTP proxy benchmark: a GET through airlock-proxy's Unix socket (the
//! gateway's grant check and fsync'd audit record, the injected bearer
//! token, the upstream) against the same GET sent to the same loopback
//! upstream directly, by the same client running as the agent, in turn.
//! Prints p50/p99 of one client at a time and the throughput of 16
//! concurrent clients, each beside its target (issue 9: p99 through the
//! proxy ≤ 1.3 × direct p99 + 1 ms; ≥ 5,000 requests/s through the
//! proxy), and checks that every request through the proxy left its
//! audit record (no record lost to the shared fsyncs).
//!
//! `cargo build --release --workspace --bins && cargo bench -p airlock-tests
//! --bench proxy` (scripts/bench-proxy). Needs root.

#![forbid(unsafe_code)]

use airlock_tests::proxy::Proxy;
use airlock_tests::upstream::Upstream;
use airlock_tests::{Options, System, AGENT};
use serde_json::Value;

/// Sequential requests per latency round, and rounds of each.
const SEQUENTIAL: usize = 2000;
const ROUNDS: usize = 3;
/// Concurrent clients and requests for the throughput runs.
const CLIENTS: usize = 16;
const CONCURRENT: usize = 20_000;
const TARGET_PER_SECOND: f64 = 5000.0;

struct Bench<'a> {
    system: &'a System,
    upstream: &'a Upstream,
    proxy: &'a Proxy,
}

impl Bench<'_> {
    /// One run of the load client as the agent, direct or through the proxy.
    fn run(&self, through_proxy: bool, connections: usize, requests: usize) -> Value {
        let socket = self.proxy.socket.to_str().unwrap().to_owned();
        let addr = self.upstream.addr.to_string();
        let (how, at, path) = if through_proxy {
            ("--unix", socket.as_str(), "/api/items")
        } else {
            ("--tcp", addr.as_str(), "/v1/items")
        };
        let (connections, requests) = (connections.to_string(), requests.to_string());
        let out = self.system.run_as(
            &AGENT,
            &self.system.bin("airlock-http-load"),
            &[
                how,
                at,
                "--path",
                path,
                "--connections",
                &connections,
                "--requests",
                &requests,
            ],
            "",
        );
        assert_eq!(out.code, 0, "{out:?}\n{}", self.proxy.log_text());
        serde_json::from_str(out.stdout.trim()).unwrap()
    }
}

fn us(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn audited(system: &System) -> usize {
    system
        .audit_records()
        .iter()
        .filter(|r| {
            r["event"] == "service_operation" && r["allowed"] == true && r["op"] == "GET /items"
        })
        .count()
}

fn main() {
    let upstream = Upstream::start();
    let system = System::start_with(Options {
        services: Some(vec![upstream.bearer_service()]),
        ..Options::default()
    });
    let mut app = system.enrol();
    system.store_credential("api", "token", "sk-bench-7Hq2Lr9Zx4Vw1Mn8Kp3Tb6Yc5");
    system.grant_services(&mut app, "api", "bench");
    let proxy = Proxy::start(&system);
    let bench = Bench {
        system: &system,
        upstream: &upstream,
        proxy: &proxy,
    };
    let mut sent = 0;
    // Warm up (page cache, the pool, the gateway's caches).
    bench.run(false, 1, 300);
    bench.run(true, 1, 300);
    sent += 300;

    let (mut direct_p50, mut direct_p99, mut proxy_p50, mut proxy_p99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let direct = bench.run(false, 1, SEQUENTIAL);
        let proxied = bench.run(true, 1, SEQUENTIAL);
        sent += SEQUENTIAL;
        println!(
            "round {round}: direct p50 {:>6.0} µs p99 {:>6.0} µs | proxy p50 {:>6.0} µs p99 {:>6.0} µs",
            us(&direct, "p50_us"),
            us(&direct, "p99_us"),
            us(&proxied, "p50_us"),
            us(&proxied, "p99_us"),
        );
        direct_p50.push(us(&direct, "p50_us"));
        direct_p99.push(us(&direct, "p99_us"));
        proxy_p50.push(us(&proxied, "p50_us"));
        proxy_p99.push(us(&proxied, "p99_us"));
    }
    let (dp50, dp99, pp50, pp99) = (
        median(direct_p50),
        median(direct_p99),
        median(proxy_p50),
        median(proxy_p99),
    );
    let bound = 1.3 * dp99 + 1000.0;
    println!(
        "GET, one client, median of {ROUNDS} rounds of {SEQUENTIAL}: direct p50 {dp50:.0} µs \
         p99 {dp99:.0} µs; proxy p50 {pp50:.0} µs p99 {pp99:.0} µs; p99 ratio {:.2}, \
         +{:.0} µs (target ≤ 1.3 × direct + 1 ms = {bound:.0} µs: {})",
        pp99 / dp99,
        pp99 - dp99,
        if pp99 <= bound { "met" } else { "NOT met" }
    );

    let direct = bench.run(false, CLIENTS, CONCURRENT);
    let proxied = bench.run(true, CLIENTS, CONCURRENT);
    sent += CONCURRENT;
    let rate = us(&proxied, "per_second");
    println!(
        "GET, {CLIENTS} concurrent clients, {CONCURRENT} requests: direct {:.0}/s \
         (p99 {:.0} µs); proxy {rate:.0}/s (p50 {:.0} µs, p99 {:.0} µs); proxy/direct {:.2} \
         (target ≥ {TARGET_PER_SECOND:.0}/s through the proxy: {})",
        us(&direct, "per_second"),
        us(&direct, "p99_us"),
        us(&proxied, "p50_us"),
        us(&proxied, "p99_us"),
        rate / us(&direct, "per_second"),
        if rate >= TARGET_PER_SECOND {
            "met"
        } else {
            "NOT met"
        }
    );

    // Every request through the proxy was audited before it was answered.
    let records = audited(&system);
    println!("audit: {records} operation records for {sent} requests through the proxy");
    assert_eq!(records, sent, "an operation went unaudited");
    system.audit_verify().success();
}
