//! Airlock's kernel side.
//!
//! Programs (`hooks`), all scoped to governed sessions (a cgroup, or a uid
//! bound to a session); every other task returns at the first map lookup:
//!
//! - `lsm/bprm_check_security`: judges the file the kernel is about to run
//!   (its name, inode and content, not `argv[0]` alone) with the arguments
//!   the caller passed, and refuses with EPERM. When the arguments cannot be
//!   trusted to be the ones the new image will get (a script interpreter, a
//!   racing thread), only decisions that do not depend on them are taken here.
//! - `tp_btf/sched_process_exec`: after the exec committed, with the new
//!   image's own argv, judges again and kills the task before its first
//!   instruction if policy forbids it. Without BPF LSM this is the only
//!   enforcement (degraded mode).
//! - `lsm/mmap_file`: refuses executable mappings of a governed binary outside
//!   its own exec (the dynamic loader run by hand).
//! - `lsm/file_open`: refuses governed tasks writing to cgroup files, so that
//!   no task (root included) moves itself out of its session.
//! - `lsm/ptrace_access_check`, `lsm/ptrace_traceme`: refuse debugging
//!   (ptrace, `process_vm_writev`, `/proc/PID/mem`...) by governed tasks
//!   unless their role allows it.
//! - `cgroup/connect4`, `connect6`, `sendmsg4`, `sendmsg6`: refuse TCP and
//!   UDP to a process on this machine outside the session (`socket` tells
//!   whose a socket is).
//! - `lsm/unix_stream_connect`, `lsm/unix_may_send`: refuse Unix sockets
//!   created outside the session, but the system bus.
//! - `lsm/task_kill`: refuses signals to processes outside the session.
//!
//! The decision itself is airlock-common's `Evaluation::judge` (`walk`).
//! Kernel struct members are read at offsets the loader resolved from the
//! running kernel's BTF (`maps::OFFSETS`), so one object runs on many kernels.

#![no_std]
#![no_main]

mod hash;
mod hooks;
mod identity;
mod maps;
mod report;
mod socket;
mod task;
mod walk;

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: never reached. Every index is masked or checked into range so
    // that no panic can happen; this only lets LLVM drop the paths it cannot
    // prove dead (an endless loop here would not pass the verifier).
    unsafe { core::hint::unreachable_unchecked() }
}
