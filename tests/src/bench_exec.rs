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
/// Rounds under BPF LSM (the VM's emulated CPU, 20 s a round) and on the
/// host, whose shared CPUs make single rounds vary by a third.
const ROUNDS_EMULATED: usize = 3;
const ROUNDS_HOST: usize = 9;

/// One loop's timing: all its fork+execs, and the median of one.
#[derive(Clone, Copy)]
struct Timing {
    total_ns: u64,
    median_ns: u64,
}

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
fn timed_loop(system: &System, role: Option<&str>, args: &[&str]) -> Timing {
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
    let mut numbers = out
        .stdout
        .split_whitespace()
        .map(|n| n.parse().expect("nanoseconds"));
    Timing {
        total_ns: numbers.next().expect("the total"),
        median_ns: numbers.next().expect("the median"),
    }
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// The rounds' timings of one loop kind, summed up: the median round's
/// time per fork+exec, and the median of the rounds' per-exec medians
/// (what one exec costs, past the spikes of a shared CPU).
struct Summary {
    mean_ns: u64,
    median_ns: u64,
}

fn summary(rounds: &[Timing]) -> Summary {
    Summary {
        mean_ns: median(rounds.iter().map(|t| t.total_ns).collect()) / EXECS as u64,
        median_ns: median(rounds.iter().map(|t| t.median_ns).collect()),
    }
}

pub fn run() {
    let system = System::start_with(Options {
        enforcer: true,
        policies: Some(policies()),
        ..Options::default()
    });
    let mode = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async { system.gateway_proxy().await.enforcer_status().await })
            .map(|s| s.mode)
            .unwrap_or_default()
    };
    let lsm = mode == airlock_common::enforcement::EnforcementMode::Lsm;
    let rounds = if lsm { ROUNDS_EMULATED } else { ROUNDS_HOST };
    println!("\n== exec benchmark: {EXECS} fork+exec of /bin/true, {rounds} rounds, median");
    let (mut governed, mut ungoverned) = (Vec::new(), Vec::new());
    let (mut named, mut named_ungoverned) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        ungoverned.push(timed_loop(&system, None, &[]));
        governed.push(timed_loop(&system, Some("bench"), &[]));
        named_ungoverned.push(timed_loop(&system, None, NAMED_ARGS));
        named.push(timed_loop(&system, Some("bench-named"), NAMED_ARGS));
        println!(
            "round {round}: ungoverned {} ns, governed {} ns; with {} arguments: ungoverned {} ns, \
             governed (rules name the executable) {} ns",
            ungoverned[round].total_ns,
            governed[round].total_ns,
            NAMED_ARGS.len(),
            named_ungoverned[round].total_ns,
            named[round].total_ns
        );
    }
    // Without BPF LSM each exec is a round trip to the supervisor.
    let target = if lsm { 1.05 } else { 1.10 };
    let sessions = match mode {
        airlock_common::enforcement::EnforcementMode::Degraded => {
            airlock_common::enforcement::EnforcementMode::Supervised
        }
        other => other,
    };
    println!("enforcement of the governed loop: {}", sessions.describe());
    let (g, u) = (summary(&governed), summary(&ungoverned));
    let (gn, un) = (summary(&named), summary(&named_ungoverned));
    let per = |ns: u64| Duration::from_nanos(ns);
    let ratio = |a: u64, b: u64| a as f64 / b as f64;
    println!(
        "ungoverned:                       {:?} per fork+exec (median exec {:?})",
        per(u.mean_ns),
        per(u.median_ns)
    );
    println!(
        "governed, {RULES} rules loaded:   {:?} per fork+exec (median exec {:?})",
        per(g.mean_ns),
        per(g.median_ns)
    );
    println!(
        "ratio governed/ungoverned:        {:.3} (target <= {target:.2}); of the median execs {:.3}",
        ratio(g.mean_ns, u.mean_ns),
        ratio(g.median_ns, u.median_ns)
    );
    println!(
        "with {} arguments walked tool-aware (rules name the executable): {:?} versus {:?} \
         ungoverned, ratio {:.3}; of the median execs {:.3}",
        NAMED_ARGS.len(),
        per(gn.mean_ns),
        per(un.mean_ns),
        ratio(gn.mean_ns, un.mean_ns),
        ratio(gn.median_ns, un.median_ns)
    );
}
