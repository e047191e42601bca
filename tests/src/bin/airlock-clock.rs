//! Prints the system-wide monotonic clock in nanoseconds, first thing:
//! the session-start benchmark runs it as the agent to see when the
//! agent's own code began.

#![forbid(unsafe_code)]

fn main() {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    println!(
        "{}",
        now.tv_sec() as i128 * 1_000_000_000 + now.tv_nsec() as i128
    );
}
