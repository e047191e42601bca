//! Benchmark helper: forks and execs a program N times, one after the
//! other, and prints the total time in nanoseconds.
//!
//!   airlock-exec-loop N PROGRAM [ARGS...]

#![forbid(unsafe_code)]

use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(n), Some(program)) = (args.next().and_then(|n| n.parse::<u32>().ok()), args.next())
    else {
        eprintln!("usage: airlock-exec-loop N PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.collect();
    let start = Instant::now();
    for _ in 0..n {
        match Command::new(&program).args(&rest).status() {
            Ok(status) if status.success() => {}
            other => {
                eprintln!("{program} failed: {other:?}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}", start.elapsed().as_nanos());
    ExitCode::SUCCESS
}
