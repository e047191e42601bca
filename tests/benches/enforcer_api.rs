//! The Integrations Gateway API under load, on loopback: artifact
//! submissions per second (concurrent enforcers), how long a decision takes
//! to reach its long-poll while 1,000 polls are open, and the daemon's idle
//! resident memory.
//!
//! Each decision needs a TOTP code of a fresh time step, so only a few are
//! timed per run (`DECISIONS`), each with all the polls open. Needs root,
//! like the system tests. `cargo bench -p airlock-tests --bench
//! enforcer_api` (release binaries), or `cargo test --bench enforcer_api`
//! against the debug build.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use airlock_tests::enforcer::*;
use airlock_tests::{Options, System, APPROVER};

const SUBMISSIONS: usize = 2000;
const SUBMITTERS: usize = 16;
const POLLS: usize = 1000;
const DECISIONS: usize = 3;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let system = System::start_with(Options {
        integrations: Some(vec![("requests_per_minute", "10000000")]),
        ..Options::default()
    });
    std::thread::sleep(Duration::from_secs(1));
    println!(
        "airlock-integrations idle RSS: {} KiB",
        rss_kib(system.integrations_pid())
    );
    let mut app = system.enrol();
    let (app_id, client_id, secret) = add_app(&system, "agent", "Bench");
    let pat = create_pat(&system, &airlock_tests::AGENT);
    let enforcer = Enforcer::new(&system, &client_id, &secret, &pat);
    let (routing, _) = pair(&system, &enforcer, &app_id);

    // Submissions: SUBMITTERS enforcers' worth of connections at once.
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..SUBMITTERS {
            let enforcer = enforcer.with(&pat);
            let routing = routing.clone();
            scope.spawn(move || {
                for i in (t..SUBMISSIONS).step_by(SUBMITTERS) {
                    let envelope = artifact(&format!("req-bench-{i}"), &routing, HASH);
                    enforcer.post("/v1/artifacts", &envelope).expect(202);
                }
            });
        }
    });
    let elapsed = started.elapsed();
    println!(
        "submissions: {SUBMISSIONS} in {:.2} s with {SUBMITTERS} concurrent clients: {:.0}/s",
        elapsed.as_secs_f64(),
        SUBMISSIONS as f64 / elapsed.as_secs_f64()
    );

    // Long-polls: POLLS open on artifacts, DECISIONS of them decided in turn.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(POLLS)
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    let url = system.integrations_url();
    let mut latencies = Vec::new();
    for d in 0..DECISIONS {
        let polls: Vec<_> = (0..POLLS)
            .map(|i| {
                let client = client.clone();
                let url = format!("{url}/v1/exchanges/req-bench-{}/wait?timeout=60", d + i);
                let (id, secret, pat) = (client_id.clone(), secret.clone(), pat.clone());
                runtime.spawn(async move {
                    let reply = client
                        .get(url)
                        .header("X-Client-Id", id)
                        .header("X-Client-Secret", secret)
                        .header("X-PAT", pat)
                        .send()
                        .await
                        .unwrap();
                    (reply.status().as_u16(), Instant::now())
                })
            })
            .collect();
        // Let every poll reach the daemon and park.
        std::thread::sleep(Duration::from_secs(3));
        println!(
            "airlock-integrations RSS with {POLLS} open long-polls: {} KiB",
            rss_kib(system.integrations_pid())
        );
        let target = format!("req-bench-{d}");
        let art = artifact_id(&system, &target);
        let code = app.next_code();
        let out = system.ctl(
            &APPROVER,
            &["approve", &art, "--code-stdin"],
            &format!("{code}\n"),
        );
        let approved = Instant::now();
        assert_eq!(out.code, 0, "{out:?}");
        let mut polls = polls.into_iter();
        let (status, delivered) = runtime.block_on(polls.next().unwrap()).unwrap();
        assert_eq!(status, 200);
        latencies.push(delivered.saturating_duration_since(approved));
        // The others are still waiting: hang up on them.
        polls.for_each(|poll| poll.abort());
    }
    runtime.shutdown_background();
    println!(
        "decision delivery with {POLLS} polls open, after `airlockctl approve` returned ({DECISIONS} decisions): {:?}",
        latencies
    );
}
