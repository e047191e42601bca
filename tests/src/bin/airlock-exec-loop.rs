//! Benchmark helper: forks and execs a program N times, one after the
//! other, and prints the total time and the median of one fork+exec (up
//! to the child's exit), in nanoseconds.
//!
//!   airlock-exec-loop N PROGRAM [ARGS...]
//!   airlock-exec-loop --refused N PROGRAM [ARGS...]
//!
//! With `--refused` every exec must fail with EPERM (the exec storm: an
//! agent looping on a refused command); the children's stderr, where
//! Airlock writes its message, goes to /dev/null.

#![forbid(unsafe_code)]

use std::io::ErrorKind;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let refused = args.next_if(|a| a == "--refused").is_some();
    let (Some(n), Some(program)) = (args.next().and_then(|n| n.parse::<u32>().ok()), args.next())
    else {
        eprintln!("usage: airlock-exec-loop [--refused] N PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.collect();
    let start = Instant::now();
    let mut each = Vec::with_capacity(n as usize);
    for i in 0..n {
        let started = Instant::now();
        let mut command = Command::new(&program);
        command.args(&rest);
        if refused {
            command.stderr(Stdio::null());
        }
        match (refused, command.status()) {
            (false, Ok(status)) if status.success() => {}
            (true, Err(e)) if e.kind() == ErrorKind::PermissionDenied => {}
            (_, other) => {
                eprintln!("{program} (run {i}): {other:?}");
                return ExitCode::FAILURE;
            }
        }
        each.push(started.elapsed());
    }
    let total = start.elapsed();
    each.sort_unstable();
    let median = each.get(each.len() / 2).copied().unwrap_or_default();
    println!("{} {}", total.as_nanos(), median.as_nanos());
    ExitCode::SUCCESS
}
