//! The exec-storm benchmark (`airlock-vm-suite --bench-only` on any kernel,
//! `tests/vm/run --bench` with BPF LSM): an agent runs a refused command
//! 10,000 times in a loop. Prints the gateway's `CheckCommand` latency
//! idle and during the storm, what the storm added to the audit log, and
//! whether every refusal is accounted for (records in full plus the counts
//! of the folded `kernel_repeated` records).

use std::time::{Duration, Instant};

use airlock_common::enforcement::EnforcementMode;
use airlock_tests::catalogue::{self, ROLE};
use airlock_tests::{bin, Options, System};

const STORM: u32 = 10_000;
/// Pause between two latency probes.
const PROBE_EVERY: Duration = Duration::from_millis(5);

/// Latencies of one probe run: `CheckCommand`, and for scale a bare
/// `Peer.Ping` to the gateway sent right after it on the same connection
/// (the bus and the wake-ups alone, no policy).
#[derive(Default)]
struct Probes {
    check: Vec<Duration>,
    ping: Vec<Duration>,
}

/// `CheckCommand` and `Ping` round trips over the system bus until `done`
/// says stop.
async fn probe(system: &System, done: impl Fn() -> bool) -> Probes {
    let gateway = system.gateway_proxy().await;
    let peer = zbus::fdo::PeerProxy::builder(gateway.inner().connection())
        .destination(airlock_common::names::GATEWAY_BUS_NAME)
        .unwrap()
        .path(airlock_common::names::GATEWAY_OBJECT_PATH)
        .unwrap()
        .build()
        .await
        .unwrap();
    let argv = ["terraform", "-chdir=infra", "apply", "-auto-approve"];
    let mut probes = Probes::default();
    while !done() {
        let start = Instant::now();
        gateway.check_command(ROLE, &argv).await.unwrap();
        probes.check.push(start.elapsed());
        let start = Instant::now();
        peer.ping().await.unwrap();
        probes.ping.push(start.elapsed());
        tokio::time::sleep(PROBE_EVERY).await;
    }
    probes
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn describe(mut samples: Vec<Duration>) -> (String, Duration) {
    samples.sort_unstable();
    let p99 = percentile(&samples, 0.99);
    let text = format!(
        "p50 {:?}, p99 {:?}, max {:?} ({} calls)",
        percentile(&samples, 0.5),
        p99,
        samples[samples.len() - 1],
        samples.len()
    );
    (text, p99)
}

/// The session's refusals as the audit log accounts for them: records in
/// full, folded records, and the refusals both stand for.
fn accounted(system: &System, session: &str) -> (usize, usize, u64) {
    let events = catalogue::session_events(system, session, &["exec_"], Duration::ZERO);
    let blocked = |e: &&serde_json::Value| e["event"] == "exec_blocked";
    let full = events.iter().filter(blocked).count();
    let folded: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "kernel_repeated" && e["of"] == "exec_blocked")
        .collect();
    let counted: u64 = folded.iter().map(|e| e["count"].as_u64().unwrap()).sum();
    (full, folded.len(), full as u64 + counted)
}

pub fn run() {
    println!("\n== exec storm: {STORM} refused `terraform apply` in a loop, in one session");
    let system = System::start_with(Options {
        enforcer: true,
        ..Options::default()
    });
    let bench = catalogue::prepare(&system);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mode = rt
        .block_on(async { system.gateway_proxy().await.enforcer_status().await })
        .unwrap();
    let idle_until = Instant::now() + Duration::from_secs(3);
    let idle = rt.block_on(probe(&system, || Instant::now() >= idle_until));
    let (idle_ping, _) = describe(idle.ping);
    let (idle, idle_p99) = describe(idle.check);
    let records_before = std::fs::read_to_string(system.audit_log())
        .unwrap()
        .lines()
        .count();
    let finished = std::sync::atomic::AtomicBool::new(false);
    let script = format!(
        "{} --refused {STORM} terraform apply",
        bin("airlock-exec-loop").display()
    );
    let started = Instant::now();
    let (storm, during) = std::thread::scope(|scope| {
        let storm = scope.spawn(|| {
            let out = catalogue::run_in_session(&system, &bench, ROLE, &script);
            finished.store(true, std::sync::atomic::Ordering::SeqCst);
            out
        });
        let during = rt.block_on(probe(&system, || {
            finished.load(std::sync::atomic::Ordering::SeqCst)
        }));
        (storm.join().unwrap(), during)
    });
    let took = started.elapsed();
    assert_eq!(
        storm.code, 0,
        "the storm did not run as expected: {storm:?}"
    );
    let session = catalogue::session_of(&storm).expect("a session id");
    // The gateway records counted repeats on its one-second tick.
    std::thread::sleep(Duration::from_secs(3));
    let (full, folded, counted) = accounted(&system, &session);
    let records_after = std::fs::read_to_string(system.audit_log())
        .unwrap()
        .lines()
        .count();
    let status = rt
        .block_on(async { system.gateway_proxy().await.enforcer_status().await })
        .unwrap();
    let (during_ping, _) = describe(during.ping);
    let (during, p99) = describe(during.check);
    // A process-tree session without BPF LSM is supervised.
    let sessions = match mode.mode {
        EnforcementMode::Degraded => EnforcementMode::Supervised,
        other => other,
    };
    println!(
        "enforcement of the storming session: {}",
        sessions.describe()
    );
    println!(
        "storm: {took:?}, {:.0} refused execs/s",
        STORM as f64 / took.as_secs_f64()
    );
    println!("CheckCommand idle:            {idle}");
    println!("  for scale, Peer.Ping idle:  {idle_ping}");
    println!(
        "CheckCommand during the storm: {during}; p99 {:.2} times idle (target p99 < 1 ms: {})",
        p99.as_secs_f64() / idle_p99.as_secs_f64(),
        if p99 < Duration::from_millis(1) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("  for scale, Peer.Ping during the storm: {during_ping}");
    println!(
        "audit log: {} records added for {STORM} refusals ({full} in full, {folded} folded \
         kernel_repeated records)",
        records_after - records_before
    );
    println!(
        "refusals accounted for: {counted} of {STORM} ({}); kernel events lost by the ring \
         buffer: {}",
        if counted == STORM as u64 {
            "none lost".to_owned()
        } else {
            format!("{} MISSING", STORM as i64 - counted as i64)
        },
        status.events_lost
    );
}
