//! The Integrations Gateway API under load, on loopback: artifact
//! submissions per second (concurrent enforcers), how long decisions take to
//! reach 1,000 open long-polls, and the daemon's idle resident memory.
//! Each number is printed beside its target.
//!
//! Every decision, approve or reject alike, is signed by airlock-totp after
//! a TOTP code of a fresh time step (one per 30 s, never replayed), so only
//! `DECISIONS` decisions are made per run. To time 1,000 deliveries per
//! decision, all 1,000 polls wait on the exchange being decided: the
//! decision's signal wakes all of them and each fetches it from the gateway,
//! the path a single poll takes too, 1,000 times at once. A second figure
//! is one poll's delivery while 999 others wait on other exchanges.
//! Needs root, like the system tests. `scripts/bench-enforcer-api` (release
//! binaries), or `cargo test --bench enforcer_api` against the debug build.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use airlock_tests::enforcer::*;
use airlock_tests::{Options, System, APPROVER};

const SUBMISSIONS: usize = 4000;
const SUBMITTERS: usize = 16;
const POLLS: usize = 1000;
/// Decisions, in turn: reject (deny), approve, reject.
const DECISIONS: [&str; 3] = ["deny", "approve", "deny"];
const SUBMIT_TARGET: f64 = 2000.0;
const DELIVERY_TARGET: Duration = Duration::from_millis(50);
const RSS_TARGET_KIB: u64 = 15 * 1024;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Opens `POLLS` long-polls, the `i`th on `path(i)`, each on its own
/// connection, and returns once the daemon holds `base` + `POLLS` sockets.
fn open_polls(
    system: &System,
    runtime: &tokio::runtime::Runtime,
    base: usize,
    creds: &(String, String, String),
    path: impl Fn(usize) -> String,
) -> Vec<tokio::task::JoinHandle<(u16, Instant)>> {
    let url = system.integrations_url();
    let client = runtime.block_on(async {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(90))
            .build()
            .unwrap()
    });
    let polls = (0..POLLS)
        .map(|i| {
            let client = client.clone();
            let url = format!("{url}{}", path(i));
            let (id, secret, pat) = creds.clone();
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
    let deadline = Instant::now() + Duration::from_secs(60);
    while connections(system.integrations_pid()) < base + POLLS {
        assert!(Instant::now() < deadline, "the polls did not all connect");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Connected is not yet parked: give the last ones their first lookup.
    std::thread::sleep(Duration::from_secs(2));
    polls
}

/// Sockets the process holds.
fn connections(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Decides artifact `art` with `airlockctl` and a fresh code; returns when
/// it started and when it returned.
fn decide(
    system: &System,
    app: &mut airlock_tests::totp::Authenticator,
    verb: &str,
    art: &str,
) -> (Instant, Instant) {
    let code = app.next_code();
    let started = Instant::now();
    let args: &[&str] = if verb == "deny" {
        &["deny", art, "--reason", "bench", "--code-stdin"]
    } else {
        &[verb, art, "--code-stdin"]
    };
    let out = system.ctl(&APPROVER, args, &format!("{code}\n"));
    let returned = Instant::now();
    assert_eq!(out.code, 0, "{out:?}");
    (started, returned)
}

fn main() {
    let system = System::start_with(Options {
        integrations: Some(vec![("requests_per_minute", "10000000")]),
        // One user submits all SUBMISSIONS, none decided.
        gateway_config: vec![("max_open_exchanges_per_user", "4096")],
        ..Options::default()
    });
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib(system.integrations_pid());
    println!(
        "airlock-integrations idle RSS: {idle} KiB (target < {RSS_TARGET_KIB} KiB: {})",
        verdict(idle < RSS_TARGET_KIB)
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
    let rate = SUBMISSIONS as f64 / elapsed.as_secs_f64();
    println!(
        "submissions: {SUBMISSIONS} in {:.2} s with {SUBMITTERS} concurrent clients: {rate:.0}/s \
         (target >= {SUBMIT_TARGET:.0}/s: {})",
        elapsed.as_secs_f64(),
        verdict(rate >= SUBMIT_TARGET)
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The daemon's sockets before any poll: listener, bus, idle keep-alives.
    let base = connections(system.integrations_pid());
    let creds = (client_id.clone(), secret.clone(), pat.clone());

    // 1,000 polls on the exchange decided, for each decision.
    let mut after_return = Vec::new();
    let mut after_start = Vec::new();
    let mut ctl_took = Vec::new();
    for (d, verb) in DECISIONS.iter().enumerate() {
        let target = format!("req-bench-{d}");
        let art = artifact_id(&system, &target);
        let polls = open_polls(&system, &runtime, base, &creds, |_| {
            format!("/v1/exchanges/{target}/wait?timeout=60")
        });
        if d == 0 {
            println!(
                "airlock-integrations RSS with {POLLS} open long-polls: {} KiB",
                rss_kib(system.integrations_pid())
            );
        }
        let (started, returned) = decide(&system, &mut app, verb, &art);
        ctl_took.push(returned - started);
        for poll in polls {
            let (status, delivered) = runtime.block_on(poll).unwrap();
            assert_eq!(status, 200, "a poll was not delivered the decision");
            after_return.push(delivered.saturating_duration_since(returned));
            after_start.push(delivered - started);
        }
    }
    after_return.sort();
    after_start.sort();
    ctl_took.sort();
    let p99 = percentile(&after_return, 0.99);
    println!(
        "decision delivery to {POLLS} open long-polls ({} decisions: {}; each needs a fresh \
         TOTP code, so all {POLLS} polls wait on the exchange decided), after `airlockctl` \
         returned: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 < {} ms: {})",
        DECISIONS.len(),
        DECISIONS.join(", "),
        ms(percentile(&after_return, 0.5)),
        ms(p99),
        ms(*after_return.last().unwrap()),
        DELIVERY_TARGET.as_millis(),
        verdict(p99 < DELIVERY_TARGET)
    );
    println!(
        "  the same from `airlockctl` starting (it prints, gets the code signed and records \
         it, median {:.1} ms): p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&ctl_took, 0.5)),
        ms(percentile(&after_start, 0.5)),
        ms(percentile(&after_start, 0.99))
    );

    // One poll decided while 999 others wait on other exchanges.
    let d = DECISIONS.len();
    let target = format!("req-bench-{d}");
    let art = artifact_id(&system, &target);
    let mut polls = open_polls(&system, &runtime, base, &creds, |i| {
        format!("/v1/exchanges/req-bench-{}/wait?timeout=60", d + i)
    })
    .into_iter();
    let (_, returned) = decide(&system, &mut app, "approve", &art);
    let (status, delivered) = runtime.block_on(polls.next().unwrap()).unwrap();
    assert_eq!(status, 200);
    println!(
        "one approval delivered while {} other polls wait: {:.1} ms after `airlockctl` returned",
        POLLS - 1,
        ms(delivered.saturating_duration_since(returned))
    );
    polls.for_each(|poll| poll.abort());
    runtime.shutdown_background();
}
