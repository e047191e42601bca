//! Builds the eBPF program (`../airlock-ebpf`) with the nightly toolchain and
//! bpf-linker, so that the enforcer embeds exactly the program its map types
//! were compiled against.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ebpf = manifest.join("../airlock-ebpf");
    let common = manifest.join("../airlock-common/src/kernel");
    for path in [
        ebpf.join("src"),
        ebpf.join("Cargo.toml"),
        ebpf.join(".cargo/config.toml"),
        common,
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    // One target directory for every profile and for clippy: the object is
    // the same, and a cold build of it takes a minute.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target"))
        .join("bpf");

    let mut cargo = Command::new("rustup");
    cargo
        .args([
            "run",
            "nightly",
            "cargo",
            "build",
            "--release",
            "--locked",
            "--quiet",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&ebpf);
    // The outer build's compiler settings must not leak into the BPF build.
    for key in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTDOC",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
    ] {
        cargo.env_remove(key);
    }
    let status = cargo.status().unwrap_or_else(|e| {
        panic!("cannot run rustup to build the eBPF program ({e}); run scripts/setup-toolchain")
    });
    if !status.success() {
        panic!(
            "building the eBPF program in {} failed ({status}). It needs the nightly toolchain \
             with rust-src and bpf-linker on PATH: run scripts/setup-toolchain",
            ebpf.display()
        );
    }
    let object = target_dir.join("bpfel-unknown-none/release/airlock-ebpf");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("airlock-ebpf.o");
    std::fs::copy(&object, &out)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", object.display(), out.display()));
}
