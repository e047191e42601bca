//! Session start latency: `airlockctl run -- true` end to end, and from
//! starting `airlockctl run` to the agent's first instruction (its `main`,
//! reading the system-wide monotonic clock), as the agent user. Run against
//! this build and, when `AIRLOCK_BENCH_BASELINE` names another build's
//! binary directory (with `AIRLOCK_BENCH_BASELINE_POLICY`, its bus policy),
//! against that one too, printed side by side with the ratio.
//!
//! `scripts/bench-session-start` builds the baseline revision (the one
//! before sessions got their own namespaces) and runs this. Needs root and
//! a kernel the enforcer can load on, like the system tests.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use airlock_tests::{bin, Options, OtherBuild, System, AGENT};

const SAMPLES: usize = 40;
const SETTLE: Duration = Duration::from_millis(100);

struct Samples {
    end_to_end: Vec<Duration>,
    first_instruction: Vec<Duration>,
}

fn monotonic_ns() -> i128 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    now.tv_sec() as i128 * 1_000_000_000 + now.tv_nsec() as i128
}

fn start(other_build: Option<OtherBuild>) -> System {
    System::start_with(Options {
        enforcer: true,
        other_build,
        ..Options::default()
    })
}

/// One sample of each figure.
fn sample(system: &System, samples: &mut Samples) {
    let clock = bin("airlock-clock").display().to_string();
    // The previous session's end (its cgroup, its namespaces) is not this
    // one's start.
    std::thread::sleep(SETTLE);
    let started = Instant::now();
    let out = system.ctl(&AGENT, &["run", "--", "true"], "");
    samples.end_to_end.push(started.elapsed());
    assert_eq!(out.code, 0, "{out:?}");

    std::thread::sleep(SETTLE);
    let started = monotonic_ns();
    let out = system.ctl(&AGENT, &["run", "--", &clock], "");
    assert_eq!(out.code, 0, "{out:?}");
    let agent: i128 = out.stdout.trim().parse().expect("nanoseconds");
    samples
        .first_instruction
        .push(Duration::from_nanos((agent - started) as u64));
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn show(samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    format!(
        "median {:>6.2} ms  (min {:.2}, max {:.2}, n={})",
        median(samples).as_secs_f64() * 1e3,
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
    // Both deployments run side by side and are sampled in turn, so that
    // the machine's load (other builds, the disk's fsync time for the audit
    // record each session start writes) weighs on both alike.
    let before_system = baseline.map(|build| start(Some(build)));
    let after_system = start(None);
    let empty = || Samples {
        end_to_end: Vec::new(),
        first_instruction: Vec::new(),
    };
    let (mut before, mut after) = (before_system.as_ref().map(|_| empty()), empty());
    for _ in 0..SAMPLES {
        if let (Some(system), Some(samples)) = (&before_system, &mut before) {
            sample(system, samples);
        }
        sample(&after_system, &mut after);
    }
    for (what, pick) in [
        (
            "airlockctl run -- true, end to end",
            (|s: &Samples| s.end_to_end.clone()) as fn(&Samples) -> Vec<Duration>,
        ),
        (
            "airlockctl run -> the agent's first instruction",
            |s: &Samples| s.first_instruction.clone(),
        ),
    ] {
        println!("{what}:");
        let now = pick(&after);
        match &before {
            Some(before) => {
                let then = pick(before);
                println!("  before (no session namespaces): {}", show(&then));
                println!("  after  (namespaces and masks):  {}", show(&now));
                println!(
                    "  ratio after/before:             {:.3}",
                    median(&now).as_secs_f64() / median(&then).as_secs_f64()
                );
            }
            None => println!(
                "  this build: {} (set AIRLOCK_BENCH_BASELINE for a baseline)",
                show(&now)
            ),
        }
    }
}
