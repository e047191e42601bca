//! The session's seccomp filter, installed by its first process and
//! inherited by every process of the session (filters cannot be removed).
//!
//! - **Debugging** (`ptrace`, `process_vm_readv`/`writev`, `pidfd_getfd`)
//!   is refused unless the role allows it: a debugger could change a
//!   program after the kernel judged its exec (`gdb` rewriting `argv`).
//! - **Undoing the session's protections**: new user or mount namespaces
//!   (`unshare`, `clone`), `setns`, `chroot` and every mount call are
//!   refused, so that the masks the session was started with stay in place
//!   and every task keeps the session's root. `clone3`
//!   fails with ENOSYS (its flags are in memory a filter cannot read), and
//!   libc falls back to `clone`.
//! - A second supervisor (`seccomp` with a new listener) is refused: a
//!   newer filter's listener would be asked before ours.
//! - **Supervised** (no BPF LSM): `execve`/`execveat` and the refused calls
//!   go to the enforcer's supervisor (a user-notification listener it
//!   holds): a refused exec fails with EPERM and the agent reads why. If the
//!   supervisor is gone they fail with ENOSYS: never unsupervised.
//!
//! Installing a filter sets `no_new_privs`: set-uid programs (`sudo`) do not
//! gain privileges inside a session.

use std::os::fd::{FromRawFd, OwnedFd};

use airlock_common::dbus::Confinement;
use anyhow::Context;
use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

/// Calls only a debugger needs.
pub const DEBUGGING: [&str; 4] = [
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
];

/// Calls that could undo the session's mount masks or change a task's
/// root, whatever their arguments. (The supervisor resolves every exec's
/// path in the root of the session's first process.)
pub const MOUNTS: [&str; 11] = [
    "setns",
    "chroot",
    "mount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
];

/// Namespace flags refused in `unshare` and `clone`.
const NAMESPACE_FLAGS: [u64; 2] = [libc::CLONE_NEWUSER as u64, libc::CLONE_NEWNS as u64];

const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: u64 = 1 << 3;

fn syscall(name: &str) -> anyhow::Result<ScmpSyscall> {
    ScmpSyscall::from_name(name).with_context(|| format!("no system call {name}"))
}

/// Builds the filter the plan asks for.
fn filter(plan: &Confinement) -> anyhow::Result<ScmpFilterContext> {
    let mut ctx = ScmpFilterContext::new(ScmpAction::Allow)?;
    let refuse = if plan.supervise {
        ScmpAction::Notify
    } else {
        ScmpAction::Errno(libc::EPERM)
    };
    if plan.supervise {
        for name in ["execve", "execveat"] {
            ctx.add_rule(ScmpAction::Notify, syscall(name)?)?;
        }
    }
    if !plan.allow_debugging {
        for name in DEBUGGING {
            ctx.add_rule(refuse, syscall(name)?)?;
        }
    }
    for name in MOUNTS {
        ctx.add_rule(refuse, syscall(name)?)?;
    }
    for name in ["unshare", "clone"] {
        for flag in NAMESPACE_FLAGS {
            let has_flag = ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(flag), flag);
            ctx.add_rule_conditional(refuse, syscall(name)?, &[has_flag])?;
        }
    }
    ctx.add_rule(ScmpAction::Errno(libc::ENOSYS), syscall("clone3")?)?;
    ctx.add_rule_conditional(
        ScmpAction::Errno(libc::EPERM),
        syscall("seccomp")?,
        &[
            ScmpArgCompare::new(0, ScmpCompareOp::Equal, SECCOMP_SET_MODE_FILTER),
            ScmpArgCompare::new(
                1,
                ScmpCompareOp::MaskedEqual(SECCOMP_FILTER_FLAG_NEW_LISTENER),
                SECCOMP_FILTER_FLAG_NEW_LISTENER,
            ),
        ],
    )?;
    Ok(ctx)
}

/// Installs the session's filter on this (single-threaded) process; returns
/// the supervisor's listener when the plan asks for one.
pub fn install(plan: &Confinement) -> anyhow::Result<Option<OwnedFd>> {
    let ctx = filter(plan).context("building the session's seccomp filter")?;
    ctx.load().context(
        "installing the session's seccomp filter (the kernel needs CONFIG_SECCOMP_FILTER)",
    )?;
    if !plan.supervise {
        return Ok(None);
    }
    let fd = ctx
        .get_notify_fd()
        .context("the seccomp filter has no listener (libseccomp 2.5 and Linux 5.0 needed)")?;
    // SAFETY: a listener fd the kernel created for this filter, owned by
    // no one else in this process (libseccomp only remembers its number).
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refused_call_is_known_to_libseccomp() {
        for name in DEBUGGING.iter().chain(MOUNTS.iter()) {
            assert!(syscall(name).is_ok(), "{name}");
        }
        for supervise in [false, true] {
            for allow_debugging in [false, true] {
                let plan = Confinement {
                    supervise,
                    allow_debugging,
                };
                filter(&plan).unwrap();
            }
        }
    }

    /// The filter as the kernel's BPF program, exported before a fork so
    /// that the child (of a multi-threaded test) need not allocate.
    fn program(plan: &Confinement) -> Vec<libc::sock_filter> {
        use std::io::{Read, Seek};
        let mut file = tempfile::tempfile().unwrap();
        filter(plan).unwrap().export_bpf(&file).unwrap();
        let mut bytes = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut bytes).unwrap();
        bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect()
    }

    /// Runs `check` in a child under the plan's filter (filters cannot be
    /// removed); returns its exit code.
    fn in_filtered_child(plan: &Confinement, check: fn() -> i32) -> i32 {
        let mut program = program(plan);
        let prog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: the child makes raw system calls on memory prepared before
        // the fork and leaves with _exit; it allocates nothing.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: prctl and seccomp with integer arguments and a
                // pointer to the program, alive until _exit.
                let loaded = unsafe {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                        && libc::syscall(libc::SYS_seccomp, 1, 0, &prog as *const _) == 0
                };
                let code = if loaded { check() } else { 100 };
                // SAFETY: leave the child without running the test harness.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Exited(_, code) => code,
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    /// The errno of a raw system call, 0 on success.
    fn errno(result: libc::c_long) -> i32 {
        if result == -1 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        }
    }

    #[test]
    fn the_filter_refuses_debugging_and_namespaces_and_lets_the_rest_run() {
        fn check() -> i32 {
            // SAFETY: raw system calls with integer arguments (clone3 with a
            // null argument, which the filter answers before the kernel).
            let (ptrace, userns, mountns, clone3, getpid) = unsafe {
                (
                    errno(libc::syscall(
                        libc::SYS_ptrace,
                        libc::PTRACE_TRACEME,
                        0,
                        0,
                        0,
                    )),
                    errno(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER)),
                    errno(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS)),
                    errno(libc::syscall(libc::SYS_clone3, 0, 0)),
                    errno(libc::syscall(libc::SYS_getpid)),
                )
            };
            match (ptrace, userns, mountns, clone3, getpid) {
                (libc::EPERM, libc::EPERM, libc::EPERM, libc::ENOSYS, 0) => 0,
                (p, ..) if p != libc::EPERM => 1,
                (_, u, ..) if u != libc::EPERM => 2,
                (_, _, m, ..) if m != libc::EPERM => 3,
                (_, _, _, c, _) if c != libc::ENOSYS => 4,
                _ => 5,
            }
        }
        assert_eq!(in_filtered_child(&Confinement::default(), check), 0);
    }

    #[test]
    fn the_filter_refuses_chroot() {
        fn check() -> i32 {
            // SAFETY: a raw system call with a static NUL-terminated path.
            errno(unsafe { libc::syscall(libc::SYS_chroot, c"/".as_ptr()) })
        }
        // As root a chroot to / succeeds unfiltered (and changes nothing):
        // the refusal below is the filter's.
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chroot("/").unwrap();
        }
        for supervise in [false, true] {
            let plan = Confinement {
                supervise,
                ..Confinement::default()
            };
            let refused = in_filtered_child(&plan, check);
            // Supervised, no listener answers: the kernel fails the call.
            let expected = if supervise { libc::ENOSYS } else { libc::EPERM };
            assert_eq!(refused, expected, "supervise {supervise}");
        }
    }

    #[test]
    fn a_role_that_allows_debugging_may_ptrace() {
        fn check() -> i32 {
            // SAFETY: a raw system call with integer arguments.
            errno(unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0) })
        }
        let plan = Confinement {
            allow_debugging: true,
            ..Confinement::default()
        };
        assert_eq!(in_filtered_child(&plan, check), 0);
        assert_eq!(
            in_filtered_child(&Confinement::default(), check),
            libc::EPERM
        );
    }
}
