//! A stand-in for a governed tool (installed as `terraform` by the kernel
//! tests): it only says that it ran, and with which arguments, so that a
//! test can tell a refused command from one that ran.
//!
//! With `STAND_IN_WAIT=PATH` it first waits (up to 10 s) for PATH to exist,
//! before it reads its arguments: a window in which another process may try
//! to change them in its memory (the debugging cases of the catalogue).

#![forbid(unsafe_code)]

fn main() {
    if let Some(path) = std::env::var_os("STAND_IN_WAIT") {
        let path = std::path::Path::new(&path);
        for _ in 0..1000 {
            if path.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("STAND-IN RAN {}", args.join(" "));
}
