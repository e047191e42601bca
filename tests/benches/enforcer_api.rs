//! The Integrations Gateway API under load, on loopback: artifact
//! submissions per second (concurrent enforcers), how long decisions take to
//! reach 1,000 open long-polls, and the daemon's idle resident memory.
//! Each number is printed beside its target.
//!
//! Every decision, approve or reject alike, is signed by airlock-totp after
//! a TOTP code of a fresh time step (one per 30 s, never replayed), so only
//! `DECISIONS` decisions are made per client kind. To time 1,000 deliveries
//! per decision, all 1,000 polls wait on the exchange being decided: the
//! decision's announcement wakes all of them and they share one fetch from
//! the gateway, the path a single poll takes too, 1,000 times at once.
//! Delivery is timed twice: with clients that keep their connections alive,
//! as the SDKs' pooled clients do (the target's figure), and with clients
//! that close each connection on its answer (the daemon then tears down
//! early connections while later polls wait, about half the p99 on 2
//! cores). A last figure is one poll's delivery while 999 others wait on
//! other exchanges.
//! Needs root, like the system tests. `scripts/bench-enforcer-api` (release
//! binaries), or `cargo test --bench enforcer_api` against the debug build.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

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
///
/// Each poll is one HTTP/1.1 request on a bare hyper connection, as in
/// `airlock-http-load`: the client shares the daemon's 2 cores, and a
/// pooled client (reqwest took about as much CPU per answer as the daemon)
/// would time its own work as much as the daemon's.
fn open_polls(
    system: &System,
    runtime: &tokio::runtime::Runtime,
    base: usize,
    creds: &(String, String, String),
    client: Client,
    path: impl Fn(usize) -> String,
) -> Vec<tokio::task::JoinHandle<(u16, Instant)>> {
    let addr = system.integrations_url();
    let authority = addr.trim_start_matches("http://").to_owned();
    let polls = (0..POLLS)
        .map(|i| {
            let (authority, path) = (authority.clone(), path(i));
            let (id, secret, pat) = creds.clone();
            runtime.spawn(async move {
                let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let request = hyper::Request::get(path)
                    .header(hyper::header::HOST, &authority)
                    .header("X-Client-Id", id)
                    .header("X-Client-Secret", secret)
                    .header("X-PAT", pat)
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let reply = sender.send_request(request).await.unwrap();
                let delivered = (reply.status().as_u16(), Instant::now());
                if client == Client::KeepAlive {
                    // Until every poll has its answer, and longer.
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                drop(sender);
                delivered
            })
        })
        .collect();
    await_connections(
        system,
        Duration::from_secs(60),
        |held| held >= base + POLLS,
        "the polls did not all connect",
    );
    // Connected is not yet parked: give the last ones their first lookup.
    std::thread::sleep(Duration::from_secs(2));
    polls
}

/// What a poll's client does with its connection once it has the answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Client {
    /// Keeps it for the next request, as the SDKs' pooled clients (httpx,
    /// reqwest) do.
    KeepAlive,
    /// Closes it: the daemon's side of each close then runs while later
    /// polls still wait for their answers.
    CloseOnAnswer,
}

/// Delivery of each decision in `decisions` to `POLLS` polls waiting on
/// it, artifacts `req-bench-{first}`.. on; prints one line for `client`.
#[allow(clippy::too_many_arguments)]
fn deliveries(
    system: &System,
    runtime: &tokio::runtime::Runtime,
    app: &mut airlock_tests::totp::Authenticator,
    base: usize,
    creds: &(String, String, String),
    client: Client,
    first: usize,
    decisions: &[&str],
) {
    let mut after_return = Vec::new();
    let mut after_start = Vec::new();
    let mut ctl_took = Vec::new();
    let mut delivery_cpu = Duration::ZERO;
    for (d, verb) in decisions.iter().enumerate() {
        let target = format!("req-bench-{}", first + d);
        let art = artifact_id(system, &target);
        let polls = open_polls(system, runtime, base, creds, client, |_| {
            format!("/v1/exchanges/{target}/wait?timeout=60")
        });
        // The code first: it may wait for the next time step.
        let code = app.next_code();
        let cpu_before = cpu_time(system.integrations_pid());
        let (started, returned) = decide(system, &code, verb, &art);
        ctl_took.push(returned - started);
        for poll in polls {
            let (status, delivered) = runtime.block_on(poll).unwrap();
            assert_eq!(status, 200, "a poll was not delivered the decision");
            after_return.push(delivered.saturating_duration_since(returned));
            after_start.push(delivered - started);
        }
        // Every connection has ended by now, kept alive or not.
        delivery_cpu += cpu_time(system.integrations_pid()) - cpu_before;
    }
    after_return.sort();
    after_start.sort();
    ctl_took.sort();
    let p99 = percentile(&after_return, 0.99);
    let how = match client {
        Client::KeepAlive => "clients keeping their connections alive",
        Client::CloseOnAnswer => "clients closing each connection on its answer",
    };
    // The target is read against the SDKs' kind of client.
    let target = if client == Client::KeepAlive {
        format!(
            " (target p99 < {} ms: {})",
            DELIVERY_TARGET.as_millis(),
            verdict(p99 < DELIVERY_TARGET)
        )
    } else {
        String::new()
    };
    println!(
        "decision delivery to {POLLS} open long-polls, {how} ({} decisions: {}; each needs a \
         fresh TOTP code, so all {POLLS} polls wait on the exchange decided), after \
         `airlockctl` returned: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms{target}",
        decisions.len(),
        decisions.join(", "),
        ms(percentile(&after_return, 0.5)),
        ms(p99),
        ms(*after_return.last().unwrap()),
    );
    println!(
        "  the same from `airlockctl` starting (it prints, gets the code signed and records \
         it, median {:.1} ms): p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&ctl_took, 0.5)),
        ms(percentile(&after_start, 0.5)),
        ms(percentile(&after_start, 0.99))
    );
    println!(
        "  airlock-integrations CPU per delivered poll (waking, one shared gateway fetch, the \
         answer, the connection's end): {:.1} µs",
        delivery_cpu.as_secs_f64() * 1e6 / (decisions.len() * POLLS) as f64
    );
}

/// CPU time the process's threads have run, from the scheduler's own
/// nanosecond counts (`utime` ticks are too coarse for one decision).
fn cpu_time(pid: u32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let nanos = tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Waits (up to `within`, else panics with `failure`) until the daemon
/// holds a number of sockets that `done` accepts.
fn await_connections(
    system: &System,
    within: Duration,
    done: impl Fn(usize) -> bool,
    failure: &str,
) {
    let deadline = Instant::now() + within;
    while !done(connections(system.integrations_pid())) {
        assert!(Instant::now() < deadline, "{failure}");
        std::thread::sleep(Duration::from_millis(50));
    }
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
fn decide(system: &System, code: &str, verb: &str, art: &str) -> (Instant, Instant) {
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
    let polls = open_polls(&system, &runtime, base, &creds, Client::KeepAlive, |_| {
        format!(
            "/v1/exchanges/req-bench-{}/wait?timeout=60",
            SUBMISSIONS - 1
        )
    });
    println!(
        "airlock-integrations RSS with {POLLS} open long-polls: {} KiB",
        rss_kib(system.integrations_pid())
    );
    polls.into_iter().for_each(|poll| poll.abort());
    await_connections(
        &system,
        Duration::from_secs(30),
        |held| held <= base,
        "the aborted polls' connections stayed",
    );
    let clients = [Client::KeepAlive, Client::CloseOnAnswer];
    for (c, client) in clients.into_iter().enumerate() {
        let first = c * DECISIONS.len();
        deliveries(
            &system, &runtime, &mut app, base, &creds, client, first, &DECISIONS,
        );
    }

    // One poll decided while 999 others wait on other exchanges.
    let d = clients.len() * DECISIONS.len();
    let target = format!("req-bench-{d}");
    let art = artifact_id(&system, &target);
    let mut polls = open_polls(&system, &runtime, base, &creds, Client::KeepAlive, |i| {
        format!("/v1/exchanges/req-bench-{}/wait?timeout=60", d + i)
    })
    .into_iter();
    let code = app.next_code();
    let (_, returned) = decide(&system, &code, "approve", &art);
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
