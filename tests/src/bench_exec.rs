//! The exec benchmark (`tests/vm/run --bench` with BPF LSM; `airlock-vm-suite
//! --bench-only` on any kernel, where without BPF LSM every governed exec
//! goes through the enforcer's seccomp supervisor): fork+exec of /bin/true,
//! governed by a role with 10,000 rules versus ungoverned.

use std::time::Duration;

use airlock_tests::{bin, Options, System, AGENT};

const RULES: usize = 10_000;
/// Under emulation a fork+exec takes milliseconds: enough for a stable
/// ratio, short enough for one boot.
const EXECS: u32 = 400;
const ROUNDS: usize = 3;

fn policies() -> Vec<(String, String)> {
    let mut text = String::from(
        "[[policy]]\nid = \"bench\"\nname = \"Bench\"\n\n[[policy.rule]]\naction = \"block\"\ncommands = [\n",
    );
    for i in 0..RULES {
        // Realistic shapes: a tool and a subcommand, some tools shared.
        text.push_str(&format!("  \"tool{} sub{i} --flag\",\n", i % 500));
    }
    text.push_str(
        "]\n\n[[role]]\nid = \"bench\"\npolicies = [\"bench\"]\ndefault_action = \"allow\"\n",
    );
    vec![("bench.toml".into(), text)]
}

fn loop_ns(system: &System, governed: bool) -> u64 {
    let exec_loop = bin("airlock-exec-loop").display().to_string();
    let n = EXECS.to_string();
    let out = if governed {
        system.ctl(
            &AGENT,
            &["run", "--role", "bench", "--", &exec_loop, &n, "/bin/true"],
            "",
        )
    } else {
        system.run_as(&AGENT, &bin("airlock-exec-loop"), &[&n, "/bin/true"], "")
    };
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.trim().parse().expect("nanoseconds")
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

pub fn run() {
    println!("\n== exec benchmark: {EXECS} fork+exec of /bin/true, {ROUNDS} rounds, median");
    let system = System::start_with(Options {
        enforcer: true,
        policies: Some(policies()),
        ..Options::default()
    });
    let (mut governed, mut ungoverned) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        ungoverned.push(loop_ns(&system, false));
        governed.push(loop_ns(&system, true));
        println!(
            "round {round}: ungoverned {} ns, governed {} ns",
            ungoverned[round], governed[round]
        );
    }
    let (g, u) = (median(governed), median(ungoverned));
    let mode = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async { system.gateway_proxy().await.enforcer_status().await })
            .map(|s| s.mode)
            .unwrap_or_default()
    };
    // Without BPF LSM each exec is a round trip to the supervisor.
    let target = if mode == airlock_common::enforcement::EnforcementMode::Lsm {
        1.05
    } else {
        1.10
    };
    let sessions = match mode {
        airlock_common::enforcement::EnforcementMode::Degraded => {
            airlock_common::enforcement::EnforcementMode::Supervised
        }
        other => other,
    };
    println!("enforcement of the governed loop: {}", sessions.describe());
    let per = |ns: u64| Duration::from_nanos(ns / EXECS as u64);
    println!(
        "ungoverned:                       {:?} per fork+exec",
        per(u)
    );
    println!(
        "governed, {RULES} rules loaded:   {:?} per fork+exec",
        per(g)
    );
    println!(
        "ratio governed/ungoverned:        {:.3} (target <= {target:.2})",
        g as f64 / u as f64
    );
}
