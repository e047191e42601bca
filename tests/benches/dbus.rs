//! D-Bus benchmark: drives the real gateway over a real dbus-daemon and
//! prints latency percentiles, throughput and the daemons' idle memory.
//!
//! `cargo build --release --workspace --bins && cargo bench -p airlock-tests`
//! (scripts/bench does both). Needs root, like the system tests.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use airlock_common::policy::Action;
use airlock_tests::{Options, System};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut samples: Vec<Duration>, target_p99: Duration) {
    samples.sort();
    let p50 = percentile(&samples, 0.50);
    let p99 = percentile(&samples, 0.99);
    println!(
        "{name:<28} n={:<6} p50={:>8.1} µs  p99={:>8.1} µs  (target p99 < {:.0} µs: {})",
        samples.len(),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        target_p99.as_secs_f64() * 1e6,
        if p99 < target_p99 { "met" } else { "NOT met" }
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Times `n` appends of a record-sized line, each followed by fdatasync, in
/// a scratch file in `dir`.
fn fdatasync_samples(dir: &std::path::Path, n: usize) -> Vec<Duration> {
    use std::io::Write;
    let path = dir.join("bench-fdatasync.tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let line = [b'x'; 400];
    let samples = (0..n)
        .map(|_| {
            let t = Instant::now();
            file.write_all(&line).unwrap();
            file.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    std::fs::remove_file(&path).unwrap();
    samples
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    // With the enforcer, so that all three daemons' idle memory is measured.
    let system = System::start_with(Options {
        enforcer: true,
        ..Options::default()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let gateway = system.gateway_proxy().await;
        let role = "terraform-restricted-agent";
        let argv = ["terraform", "plan", "-out=tfplan"];
        for _ in 0..200 {
            gateway.check_command(role, &argv).await.unwrap();
        }

        // Idle memory, after start-up and warm-up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (totp_pid, gateway_pid) = system.service_pids();
        let idle_rss = [
            ("airlock-totp", rss_kib(totp_pid)),
            ("airlock-gateway", rss_kib(gateway_pid)),
            ("airlock-enforcer", rss_kib(system.enforcer_pid())),
        ];

        let mut samples = Vec::with_capacity(5000);
        for _ in 0..5000 {
            let t = Instant::now();
            let d = gateway.check_command(role, &argv).await.unwrap();
            samples.push(t.elapsed());
            assert_eq!(d.decision, Action::Approve);
        }
        report("CheckCommand latency", samples, Duration::from_millis(1));

        // Throughput: 4 concurrent callers for 3 seconds.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let gateway = gateway.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    gateway.check_command(role, &argv).await.unwrap();
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        let rate = total as f64 / 3.0;
        println!(
            "{:<28} {:.0} checks/s with 4 concurrent callers (target >= 5000: {})",
            "CheckCommand throughput",
            rate,
            if rate >= 5000.0 { "met" } else { "NOT met" }
        );

        // RequestApproval: each one is audited (fdatasync) before it
        // returns; the state file catches up on the gateway's next tick.
        // Each request is denied again, untimed, so the state holds a
        // realistic handful of pending requests rather than hundreds.
        let mut samples = Vec::with_capacity(1000);
        for i in 0..1000 {
            let t = Instant::now();
            let id = gateway
                .request_approval("command:terraform plan", &format!("bench {i}"), 0)
                .await
                .unwrap();
            samples.push(t.elapsed());
            gateway.deny(&id, "bench").await.unwrap();
        }
        report("RequestApproval latency", samples, Duration::from_millis(1));
        // What bounds it: one fdatasync of a record-sized append, on the
        // file system the audit log is on, measured the same way.
        let mut syncs = fdatasync_samples(&system.audit_dir(), 1000);
        syncs.sort();
        println!(
            "{:<28} n={:<6} p50={:>8.1} µs  p99={:>8.1} µs  (append + fdatasync of 400 bytes beside the audit log)",
            "  of which fdatasync",
            syncs.len(),
            percentile(&syncs, 0.50).as_secs_f64() * 1e6,
            percentile(&syncs, 0.99).as_secs_f64() * 1e6,
        );

        let each = idle_rss
            .iter()
            .map(|(name, kib)| format!("{name} {:.1} MiB", *kib as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ");
        let met = idle_rss.iter().all(|(_, kib)| *kib < 15 * 1024);
        println!(
            "{:<28} {each} (target < 15 MiB each: {})",
            "idle RSS",
            if met { "met" } else { "NOT met" }
        );
    });
}
