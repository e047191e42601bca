//! Credential-helper benchmark: `airlockctl credential-helper aws SERVICE`
//! as a tool runs it (a new process: bus connection, the gateway's grant
//! check and audit record, airlock-totp unwrapping each field's key), for a
//! caller under a grant, against the real daemons on a real dbus-daemon.
//! Prints p50/p99 against the target (p99 < 10 ms), beside the same
//! process refused without a grant and a bare `airlockctl --version` (the
//! cost of starting the process at all), all measured in turn.
//!
//! `cargo build --release --workspace --bins && cargo bench -p airlock-tests
//! --bench credential_helper` (scripts/bench-credential-helper). Needs root.

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use airlock_tests::{Options, System, AGENT, APPROVER, OUTSIDER};

const ROUNDS: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let system = System::start_with(Options {
        services: Some(vec![(
            "aws.toml".into(),
            "[[service]]\nname = \"aws-dev\"\nkind = \"aws\"\n\
             fields = [\"access_key_id\", \"secret_access_key\", \"session_token\"]\n"
                .into(),
        )]),
        ..Options::default()
    });
    let mut app = system.enrol();
    for (field, value) in [
        ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
        (
            "secret_access_key",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("session_token", "FwoGZXIvYXdzEXAMPLEtoken"),
    ] {
        system
            .ctl(
                &APPROVER,
                &["credentials", "add", "aws-dev", field, "--stdin"],
                &format!("{value}\n"),
            )
            .success();
    }
    system.grant_services(&mut app, "aws-dev", "bench");
    let ctl = system.bin("airlockctl");
    let helper = |user| {
        let t = Instant::now();
        let out = system.run_as(user, &ctl, &["credential-helper", "aws", "aws-dev"], "");
        (t.elapsed(), out)
    };
    let spawn_only = || {
        let t = Instant::now();
        system
            .run_as(&AGENT, Path::new(&ctl), &["--version"], "")
            .success();
        t.elapsed()
    };
    // Warm up (page cache, the gateway's caller cache).
    for _ in 0..10 {
        assert_eq!(helper(&AGENT).1.code, 0);
    }
    let (mut granted, mut refused, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (t, out) = helper(&AGENT);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("\"AccessKeyId\""));
        granted.push(t);
        let (t, out) = helper(&OUTSIDER);
        assert_ne!(out.code, 0);
        refused.push(t);
        bare.push(spawn_only());
    }
    let target = Duration::from_millis(10);
    for (name, samples) in [
        ("helper, granted (3 fields)", &mut granted),
        ("helper, refused", &mut refused),
        ("airlockctl --version", &mut bare),
    ] {
        samples.sort();
        let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
        println!(
            "{name:<28} n={ROUNDS} p50={:>6.2} ms  p99={:>6.2} ms",
            ms(p50),
            ms(p99)
        );
    }
    let p99 = percentile(&granted, 0.99);
    println!(
        "credential-helper round trip p99 = {:.2} ms (target < {} ms: {}); \
         granted/bare-process p50 ratio {:.2}",
        ms(p99),
        target.as_millis(),
        if p99 < target { "met" } else { "NOT met" },
        ms(percentile(&granted, 0.5)) / ms(percentile(&bare, 0.5))
    );
}
