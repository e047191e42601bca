//! `airlockctl approve` end to end: from the moment the approver's code is
//! typed to airlockctl's exit, by which time the grant is in the kernel (the
//! gateway pushes the session to the enforcer before it answers). Run
//! against this build and, when `AIRLOCK_BENCH_BASELINE` names another
//! build's binary directory (with `AIRLOCK_BENCH_BASELINE_POLICY`, its bus
//! policy), against that one too, printed side by side.
//!
//! `scripts/bench-approve` builds the baseline revision and runs this.
//! Needs root and a kernel the enforcer can load on, like the system tests.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use airlock_tests::{Options, OtherBuild, System, APPROVER, OUTSIDER};

/// Approvals timed per build; each needs a fresh TOTP time step, so more
/// than three wait for the clock.
const SAMPLES: usize = 4;

fn measure(other_build: Option<OtherBuild>) -> Vec<Duration> {
    let baseline = other_build.is_some();
    let system = System::start_with(Options {
        enforcer: true,
        other_build,
        ..Options::default()
    });
    let mut app = system.enrol();
    let bind = system.ctl(&APPROVER, &["sessions", "bind-user", OUTSIDER.name], "");
    assert_eq!(bind.code, 0, "{bind:?}");
    let session = bind.stdout.split_whitespace().next().unwrap().to_owned();
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let request = system.ctl(
            &APPROVER,
            &[
                "request",
                "--session",
                &session,
                "--scope",
                "command:terraform plan",
                "--reason",
                &format!("bench {i}"),
            ],
            "",
        );
        assert_eq!(request.code, 0, "{request:?}");
        let id = request.stdout.trim().to_owned();
        if !baseline {
            // The records so far get countersigned within 2 s; let that
            // happen now rather than in the middle of the timed approval
            // (it costs airlock-totp and the gateway an fsync each).
            wait_until_countersigned(&system);
        }
        let code = app.next_code();
        let mut child = system.spawn_ctl(&APPROVER, &["approve", &id, "--code-stdin"]);
        // Everything before the prompt (fetching and showing the request)
        // is the approver reading, not waiting: it ends with the access
        // line (before) or the lifetime line (after).
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut shown = String::new();
        loop {
            let mut line = String::new();
            assert_ne!(
                stdout.read_line(&mut line).unwrap(),
                0,
                "approve printed no prompt: {shown}"
            );
            shown.push_str(&line);
            let line = line.trim_start();
            if line.starts_with("lifetime:")
                || (line.starts_with("access:") && !shown.contains("approving signs"))
            {
                break;
            }
        }
        let typed = Instant::now();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{code}\n").as_bytes()).unwrap();
        drop(stdin);
        let status = child.wait().unwrap();
        samples.push(typed.elapsed());
        assert!(status.success(), "approve failed after:\n{shown}");
    }
    samples
}

/// Waits until the newest audit record is a countersignature: nothing is
/// left for the gateway to have countersigned.
fn wait_until_countersigned(system: &System) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(system.audit_log()).unwrap();
        if log
            .lines()
            .last()
            .is_some_and(|l| l.contains("\"audit_countersigned\""))
        {
            return;
        }
        assert!(Instant::now() < deadline, "nothing countersigned the log");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn millis(samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    format!(
        "median {:>6.1} ms  (min {:.1}, max {:.1}, n={})",
        median.as_secs_f64() * 1e3,
        sorted[0].as_secs_f64() * 1e3,
        sorted[sorted.len() - 1].as_secs_f64() * 1e3,
        sorted.len()
    )
}

fn main() {
    let baseline = std::env::var_os("AIRLOCK_BENCH_BASELINE").map(|dir| OtherBuild {
        bin_dir: PathBuf::from(dir),
        bus_policy: std::env::var_os("AIRLOCK_BENCH_BASELINE_POLICY")
            .map(PathBuf::from)
            .expect("AIRLOCK_BENCH_BASELINE_POLICY: the baseline's org.airlock.conf"),
    });
    let before = baseline.map(|build| measure(Some(build)));
    let after = measure(None);
    println!("airlockctl approve, code typed -> grant in the kernel:");
    match before {
        Some(before) => {
            println!("  before (code via the gateway):   {}", millis(&before));
            println!("  after  (code to airlock-totp):   {}", millis(&after));
        }
        None => println!(
            "  this build: {} (set AIRLOCK_BENCH_BASELINE for a baseline)",
            millis(&after)
        ),
    }
}
