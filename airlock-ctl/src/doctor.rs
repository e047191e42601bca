//! `airlockctl doctor`: what this machine can enforce, and how to fix what
//! it cannot.

use airlock_common::enforcement::EnforcementMode;

use crate::bus;
use crate::confine::scope;

struct Report {
    problems: usize,
    degraded: bool,
}

impl Report {
    fn ok(&self, what: &str, detail: &str) {
        println!("ok    {what}: {detail}");
    }
    fn warn(&mut self, what: &str, detail: &str) {
        self.degraded = true;
        println!("WARN  {what}: {detail}");
    }
    fn fail(&mut self, what: &str, detail: &str) {
        self.problems += 1;
        println!("FAIL  {what}: {detail}");
    }
}

fn kernel_checks(report: &mut Report) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    report.ok("kernel", release.trim());
    if std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        report.ok("BTF", "/sys/kernel/btf/vmlinux is present");
    } else {
        report.fail(
            "BTF",
            "/sys/kernel/btf/vmlinux is missing; Airlock needs a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        );
    }
    match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(list) if list.trim().split(',').any(|l| l == "bpf") => report.ok(
            "BPF LSM",
            &format!(
                "listed ({}); whether the kernel accepts Airlock's programs is the enforcer's line",
                list.trim()
            ),
        ),
        Ok(list) => report.warn(
            "BPF LSM",
            &format!(
                "not in the active LSM list ({}); add `bpf` to it, e.g. \
                 GRUB_CMDLINE_LINUX=\"lsm={},bpf\" in /etc/default/grub, then update-grub and reboot",
                list.trim(),
                list.trim()
            ),
        ),
        Err(_) => report.warn(
            "BPF LSM",
            "cannot read /sys/kernel/security/lsm (securityfs not mounted?)",
        ),
    }
    // Every session's first process installs a seccomp filter; without BPF
    // LSM its execs go to the enforcer through a user-notification listener.
    match std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail") {
        Ok(actions) if actions.split_whitespace().any(|a| a == "user_notif") => report.ok(
            "seccomp",
            "filters with user notification (the session filter and, without BPF LSM, the \
             enforcer's supervisor)",
        ),
        Ok(actions) if actions.split_whitespace().any(|a| a == "errno") => report.warn(
            "seccomp",
            "no user notification (Linux 5.0 and later): without BPF LSM, sessions cannot be \
             supervised and `airlockctl run` refuses to start agents",
        ),
        _ => report.fail(
            "seccomp",
            "no seccomp filters (/proc/sys/kernel/seccomp/actions_avail); governed sessions \
             need a kernel built with CONFIG_SECCOMP_FILTER=y",
        ),
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
    {
        report.ok("cgroup v2", "mounted");
    } else {
        report.fail("cgroup v2", "not mounted; governed sessions need cgroup v2");
    }
}

/// Governed sessions mask credentials and runtime sockets in their own
/// user, mount and pid namespaces: tried for real, as this user.
fn namespace_check(report: &mut Report) {
    const WHAT: &str = "session namespaces";
    if let Some(why) = crate::confine::restriction() {
        return report.fail(
            WHAT,
            &format!("{why}; `airlockctl run` refuses to start agents"),
        );
    }
    let probe = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .args([crate::confine::SUBCOMMAND, crate::confine::PROBE])
            .stdin(std::process::Stdio::null())
            .output()
    });
    match probe {
        Ok(out) if out.status.success() => report.ok(
            WHAT,
            "a session gets its own user, mount and pid namespaces: the role's protected \
             files and the user's runtime sockets are masked",
        ),
        Ok(out) => report.fail(
            WHAT,
            &format!(
                "{}; `airlockctl run` refuses to start agents",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ),
        Err(e) => report.fail(WHAT, &format!("cannot run the probe: {e}")),
    }
}

/// Which layer keeps a session from reaching processes outside it, per
/// kind of channel, on this kernel (docs/kernel.md, "Sockets and signals").
fn socket_checks(report: &mut Report, lsm: bool) {
    report.ok(
        "sockets: TCP/UDP to this machine",
        "refused to listeners outside the session by the enforcer's cgroup connect/sendmsg \
         programs (the role's allow_local_ports and DNS excepted)",
    );
    let abi = scope::kernel_abi();
    let landlock = abi >= scope::SCOPES_ABI;
    let by = |what: &str| match (lsm, landlock) {
        (true, true) => {
            format!("refused by BPF LSM ({what}) and Landlock's scope (ABI {abi}) in the session")
        }
        (true, false) => format!("refused by BPF LSM ({what})"),
        (false, true) => format!("refused by Landlock's scope (ABI {abi}) in the session"),
        (false, false) => String::new(),
    };
    let missing = "needs BPF LSM, or Landlock ABI 6 (Linux 6.12) for the session's scope";
    for (what, hook) in [
        (
            "sockets: abstract Unix",
            "unix_stream_connect, unix_may_send",
        ),
        ("signals to processes outside", "task_kill"),
    ] {
        if lsm || landlock {
            report.ok(what, &by(hook));
        } else {
            report.warn(what, &format!("NOT refused on this kernel: {missing}"));
        }
    }
    if lsm {
        report.ok(
            "sockets: Unix sockets bound to a path",
            "refused by BPF LSM (unix_stream_connect, unix_may_send) unless created in the \
             session or the system bus",
        );
    } else {
        report.warn(
            "sockets: Unix sockets bound to a path",
            "NOT refused on this kernel without BPF LSM (a server of the same user on a socket \
             in /tmp or the home is reachable); boot with `bpf` in the LSM list",
        );
    }
}

pub async fn doctor() -> anyhow::Result<i32> {
    let mut report = Report {
        problems: 0,
        degraded: false,
    };
    kernel_checks(&mut report);
    namespace_check(&mut report);
    match bus::gateway().await {
        Err(e) => report.fail("gateway", &format!("{e:#}")),
        Ok(gateway) => match gateway.status().await {
            Err(e) => report.fail("gateway", &format!("{:#}", bus::explain("status", e))),
            Ok(status) => {
                report.ok("gateway", "running");
                if status.totp_reachable {
                    report.ok(
                        "totp",
                        if status.totp.enrolled {
                            "running, enrolled"
                        } else {
                            "running, not enrolled yet (`airlockctl totp setup`)"
                        },
                    );
                } else {
                    report.fail(
                        "totp",
                        "airlock-totp is not reachable; approvals are impossible",
                    );
                }
                match gateway.enforcer_status().await {
                    Ok(enforcer) if enforcer.mode == EnforcementMode::Lsm => {
                        report.ok("enforcer", &enforcer.detail);
                        socket_checks(&mut report, true);
                    }
                    Ok(enforcer) => {
                        report.warn("enforcer", &enforcer.detail);
                        socket_checks(&mut report, false);
                    }
                    Err(e) => report.fail(
                        "enforcer",
                        &format!(
                            "{:#}; `airlockctl run` refuses to start agents until it runs",
                            bus::explain("enforcer status", e)
                        ),
                    ),
                }
                match gateway.enforcer_status().await {
                    Ok(enforcer) if enforcer.events_lost > 0 => report.warn(
                        "events",
                        &format!(
                            "{} kernel events were lost (ring buffer full)",
                            enforcer.events_lost
                        ),
                    ),
                    _ => {}
                }
            }
        },
    }
    if report.problems > 0 {
        println!(
            "\n{} problem(s): agents cannot be governed here until they are fixed",
            report.problems
        );
        Ok(1)
    } else if report.degraded {
        println!("\nenforcement is DEGRADED: see the WARN lines for the fix");
        Ok(2)
    } else {
        println!("\nfull enforcement: forbidden commands fail with EPERM before they run");
        Ok(0)
    }
}
