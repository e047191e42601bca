//! The exec benchmark (`tests/vm/run --bench` with BPF LSM; `airlock-vm-suite
//! --bench-only` on any kernel, where without BPF LSM every governed exec
//! goes through the enforcer's seccomp supervisor): fork+exec of /bin/true,
//! governed by a role with 10,000 rules versus ungoverned; and the same
//! governed by a role whose block rules name `true`, with options and
//! arguments the tool-aware walk goes through word by word.

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
    // `true` is not in the grammar table: a rule's words may appear
    // anywhere, so every word of NAMED_ARGS is walked with partial matches
    // alive, none of them completing.
    let mut named = String::from(
        "[[policy]]\nid = \"named\"\nname = \"Named\"\n\n[[policy.rule]]\naction = \"block\"\ncommands = [\n",
    );
    for i in 0..100 {
        named.push_str(&format!("  \"true deploy{i} prod\",\n"));
    }
    named.push_str(
        "]\n\n[[role]]\nid = \"bench-named\"\npolicies = [\"named\"]\ndefault_action = \"allow\"\n",
    );
    vec![("bench.toml".into(), text), ("named.toml".into(), named)]
}

/// Arguments for the named case: options with and without values, `--`,
/// and a word of a rule, 14 in all.
const NAMED_ARGS: &[&str] = &[
    "-v",
    "--context",
    "c",
    "-abc",
    "--flag=x",
    "deploy7",
    "x",
    "-n",
    "y",
    "--",
    "z",
    "w",
    "q",
    "r",
];

/// Runs the exec loop as the agent: ungoverned (`role` none) or in a
/// session of `role`, exec'ing /bin/true with `args`.
fn loop_ns(system: &System, role: Option<&str>, args: &[&str]) -> u64 {
    let exec_loop = bin("airlock-exec-loop").display().to_string();
    let n = EXECS.to_string();
    let mut looped = vec![n.as_str(), "/bin/true"];
    looped.extend(args);
    let out = match role {
        Some(role) => {
            let mut run = vec!["run", "--role", role, "--", &exec_loop];
            run.extend(&looped);
            system.ctl(&AGENT, &run, "")
        }
        None => system.run_as(&AGENT, &bin("airlock-exec-loop"), &looped, ""),
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
    let (mut named, mut named_ungoverned) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        ungoverned.push(loop_ns(&system, None, &[]));
        governed.push(loop_ns(&system, Some("bench"), &[]));
        named_ungoverned.push(loop_ns(&system, None, NAMED_ARGS));
        named.push(loop_ns(&system, Some("bench-named"), NAMED_ARGS));
        println!(
            "round {round}: ungoverned {} ns, governed {} ns; with {} arguments: ungoverned {} ns, \
             governed (rules name the executable) {} ns",
            ungoverned[round],
            governed[round],
            NAMED_ARGS.len(),
            named_ungoverned[round],
            named[round]
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
    let (gn, un) = (median(named), median(named_ungoverned));
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
    println!(
        "with {} arguments walked tool-aware (rules name the executable): {:?} versus {:?} \
         ungoverned, ratio {:.3}",
        NAMED_ARGS.len(),
        per(gn),
        per(un),
        gn as f64 / un as f64
    );
}
