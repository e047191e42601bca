//! A stand-in for a governed tool (installed as `terraform` by the kernel
//! tests): it only says that it ran, and with which arguments, so that a
//! test can tell a refused command from one that ran.

#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("STAND-IN RAN {}", args.join(" "));
}
