//! Kernel enforcement on this machine's own kernel, with the real enforcer.
//!
//! Our hosts refuse BPF LSM, so the enforcer runs degraded (exec-commit
//! kill); the VM suite (tests/vm/run) runs the same catalogue with BPF LSM.
//! These tests assert whatever the mode in force promises.

#![forbid(unsafe_code)]

use std::time::Duration;

use airlock_common::enforcement::EnforcementMode;
use airlock_tests::catalogue::{self, Expect};
use airlock_tests::sockets;
use airlock_tests::{Options, System};

fn system() -> System {
    System::start_with(Options {
        enforcer: true,
        ..Options::default()
    })
}

fn mode(system: &System) -> EnforcementMode {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let gateway = system.gateway_proxy().await;
        gateway.enforcer_status().await.unwrap().mode
    })
}

#[test]
fn the_bypass_catalogue_is_refused_in_the_mode_this_kernel_allows() {
    let system = system();
    let bench = catalogue::prepare_with_outside(&system);
    assert!(
        catalogue::runs_ungoverned(&system, &bench),
        "the stand-in must run outside a session"
    );
    let mode = mode(&system);
    let degraded = mode != EnforcementMode::Lsm;
    let mut failures = Vec::new();
    let mut refused = std::collections::BTreeMap::new();
    println!("enforcement mode: {mode}");
    for case in catalogue::cases(&bench) {
        let outcome = catalogue::run_case(&system, &bench, &case);
        refused.insert(case.name, !outcome.ran);
        let passed = outcome.passed(&case);
        // A row that needs a helper outside the session counts only if the
        // helper did its job ungoverned.
        if let Some((false, ungoverned)) = &outcome.ungoverned {
            failures.push(format!(
                "{}: did not get through even outside a session: {ungoverned:#?}",
                case.name
            ));
            continue;
        }
        let gap = degraded && case.degraded_gap.is_some();
        println!(
            "{}",
            catalogue::row(
                case.name,
                match (passed, case.expect) {
                    (true, Expect::Runs) => "ran",
                    (true, Expect::Refused) => "refused",
                    (false, _) if gap => "KNOWN GAP",
                    (false, _) => "FAILED",
                },
                &outcome.layers.join(","),
                case.degraded_gap.filter(|_| gap).unwrap_or(""),
            )
        );
        if let Some((false, output)) = &outcome.ungoverned {
            failures.push(format!(
                "{}: does not get through even outside a session, so its refusal proves \
                 nothing: {output:#?}",
                case.name
            ));
            continue;
        }
        if case.expect == Expect::Runs {
            assert!(passed, "{}: {:#?}", case.name, outcome.output);
            continue;
        }
        if !passed && !gap {
            failures.push(format!("{}: {:#?}", case.name, outcome.output));
        }
        if passed && case.name != "leave the session cgroup" {
            assert!(
                !outcome.layers.is_empty(),
                "{}: refused but nothing in the audit log says by whom: {:#?}",
                case.name,
                outcome.output
            );
        }
        // A refusal, not a kill: the agent reads why, as under BPF LSM.
        // (A looser session is refused by airlockctl itself, which says so;
        // a masked file or socket is simply not there, and Unix permissions
        // say nothing of Airlock. A refused connection or signal fails with
        // EPERM at once: the enforcer's message follows when it gets the
        // event, and a script that exits first never reads it.)
        let not_an_exec = |l: &String| {
            matches!(
                l.as_str(),
                "namespace" | "permissions" | "connect" | "unix_connect" | "signal" | "landlock"
            )
        };
        if passed
            && case.name != "a new session with a looser role"
            && !outcome.layers.iter().all(not_an_exec)
        {
            assert!(
                outcome.message,
                "{}: refused, but the agent got no Airlock message: {:#?}",
                case.name, outcome.output
            );
        }
    }
    assert!(
        failures.is_empty(),
        "bypasses: {failures:#?}\nenforcer log:\n{}",
        system.service_log("airlock-enforcer")
    );
    let doctor = sockets::doctor_agrees(&system, |row| refused.get(row).copied());
    println!("doctor: {doctor:?}");
    doctor.unwrap();
}

#[test]
fn a_role_reaches_the_local_ports_it_allows_and_dns_but_no_other_listener() {
    let system = system();
    let bench = catalogue::prepare_with_sockets(&system);
    let servers = bench.sockets.as_ref().unwrap();
    let (tcp, udp) = (servers.tcp_port(), servers.udp_port());
    // A resolver stand-in on the DNS port (privileged: run by root, as a
    // real one is), on a loopback address nothing else uses.
    let mut dns = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.bind(('127.0.0.77', 53))\n\
             print('bound', flush=True)\n\
             while True:\n\
             \x20   d, p = s.recvfrom(512)\n\
             \x20   s.sendto(b'DNS-REACHED', p)\n",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = dns.stdout.take().unwrap();
    let _dns = airlock_tests::Spawned::from(dns);
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(line.trim(), "bound", "the resolver stand-in did not start");
    std::fs::write(
        system.policy_dir().join("local-ports.toml"),
        format!(
            "[[role]]\nid = \"local-db-agent\"\npolicies = [\"infra-mutation-block\"]\n\
             allow_local_ports = [{tcp}]\n"
        ),
    )
    .unwrap();
    system
        .ctl(&airlock_tests::APPROVER, &["policy", "reload"], "")
        .success();
    let allowed = servers.client("tcp", &format!("127.0.0.1:{tcp}"), "apply");
    let other = servers.client("udp", &format!("127.0.0.1:{udp}"), "apply");
    let resolver = servers.client("udp", "127.0.0.77:53", "query");
    for script in [&allowed, &other] {
        let out = catalogue::run_ungoverned(&system, &bench, script);
        assert!(
            out.stdout.contains("STAND-IN RAN apply"),
            "{script}: {out:?}"
        );
    }
    let out = catalogue::run_ungoverned(&system, &bench, &resolver);
    assert!(out.stdout.contains("DNS-REACHED"), "{out:?}");

    let run = |role: &str, script: &str| catalogue::run_in_session(&system, &bench, role, script);
    // The role's port reaches whoever listens there, here a daemon outside
    // the session; the catalogue's role, without the port, does not.
    let out = run("local-db-agent", &allowed);
    assert!(out.stdout.contains("STAND-IN RAN apply"), "{out:#?}");
    let out = run(catalogue::ROLE, &allowed);
    assert!(!out.stdout.contains("STAND-IN RAN"), "{out:#?}");
    assert!(out.stdout.contains("Operation not permitted"), "{out:#?}");
    // Any other port stays closed to it. The refused client waits until
    // its refusal is recorded: the enforcer names the executable from
    // /proc, which an exited process no longer has.
    let recorded = bench.work.join("udp-refusal-recorded");
    let held = format!("{other} {}", recorded.display());
    let peer = format!("\"peer\":\"udp 127.0.0.1:{udp}\"");
    let out = std::thread::scope(|scope| {
        let client = scope.spawn(|| run("local-db-agent", &held));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(system.audit_log())
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("socket_denied") && l.contains(&peer))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::write(&recorded, "").unwrap();
        client.join().unwrap()
    });
    assert!(!out.stdout.contains("STAND-IN RAN"), "{out:#?}");
    assert!(out.stdout.contains("Operation not permitted"), "{out:#?}");
    let session = catalogue::session_of(&out).expect("a session id");
    let events = catalogue::session_events(&system, &session, &["socket_"], Duration::from_secs(5));
    let refused = events
        .iter()
        .find(|e| e["event"] == "socket_denied")
        .unwrap_or_else(|| panic!("no socket_denied record: {events:#?}"));
    assert_eq!(refused["peer"], format!("udp 127.0.0.1:{udp}"), "{refused}");
    assert_eq!(refused["stage"], "connect");
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["executable"], "python3.11", "{refused}");
    // DNS is reachable from every role.
    for role in ["local-db-agent", catalogue::ROLE] {
        let out = run(role, &resolver);
        assert!(out.stdout.contains("DNS-REACHED"), "{role}: {out:#?}");
    }
    // Once a reload drops the port, the role reaches it no more.
    std::fs::write(
        system.policy_dir().join("local-ports.toml"),
        "[[role]]\nid = \"local-db-agent\"\npolicies = [\"infra-mutation-block\"]\n",
    )
    .unwrap();
    system
        .ctl(&airlock_tests::APPROVER, &["policy", "reload"], "")
        .success();
    let out = run("local-db-agent", &allowed);
    assert!(!out.stdout.contains("STAND-IN RAN"), "{out:#?}");
}

#[test]
fn without_an_enforcer_run_refuses_unless_unenforced_and_that_is_audited() {
    let system = System::start();
    let bench = catalogue::prepare(&system);
    let out = catalogue::run_in_session(&system, &bench, catalogue::ROLE, "terraform init");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("airlock-enforcer"), "{out:#?}");
    assert!(out.stderr.contains("the agent was not started"), "{out:#?}");
    assert!(!out.stdout.contains("STAND-IN RAN"), "{out:#?}");

    let out = system.run_as_with_path(
        &airlock_tests::AGENT,
        &airlock_tests::bin("airlockctl"),
        &["run", "--unenforced", "--", "terraform", "init"],
        "",
        &bench.path(),
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("STAND-IN RAN init"));
    assert!(out.stderr.contains("UNENFORCED"), "{out:#?}");
    let log = std::fs::read_to_string(system.audit_log()).unwrap();
    assert!(log.contains("\"event\":\"session_unenforced\""), "{log}");
}

#[test]
fn approval_grant_expiry_and_revocation_reach_the_kernel() {
    let system = system();
    let bench = catalogue::prepare(&system);
    let mut app = system.enrol();
    let approval = catalogue::approval_scenario(&system, &bench, &mut app).unwrap_or_else(|e| {
        panic!(
            "{e}\nenforcer log:\n{}",
            system.service_log("airlock-enforcer")
        )
    });
    println!(
        "approve -> command ran in the session: {:?} (an allowed command: {:?})",
        approval.approve_to_run, approval.baseline
    );
    let log = std::fs::read_to_string(system.audit_log()).unwrap();
    for event in [
        "exec_approval_required",
        "exec_granted",
        "grant_revoked",
        "grant_expired",
    ] {
        assert!(
            log.contains(&format!("\"event\":\"{event}\"")),
            "{event} missing:\n{log}"
        );
    }
    assert!(log.contains(&approval.request));
}

#[test]
fn only_the_gateway_and_root_reach_the_enforcer_and_only_root_reports_events() {
    use airlock_tests::{AGENT, APPROVER};
    let system = system();
    let denied = |out: &airlock_tests::CtlOutput| {
        out.code != 0
            && (out.stderr.contains("Access denied") || out.stderr.contains("AccessDenied"))
    };
    let status = [
        "org.airlock.Enforcer1",
        "/org/airlock/Enforcer1",
        "org.airlock.Enforcer1",
        "Status",
    ];
    for user in [&AGENT, &APPROVER] {
        let out = system.busctl_call(user, &status);
        assert!(denied(&out), "{} reached the enforcer: {out:?}", user.name);
    }
    // A forged kernel event from an admin (who may call most of the
    // gateway) is refused by the bus policy.
    let forged = system.busctl_call(
        &APPROVER,
        &[
            "org.airlock.Gateway1",
            "/org/airlock/Gateway1",
            "org.airlock.Gateway1",
            "SessionExited",
            "s",
            "ses-1",
        ],
    );
    assert!(denied(&forged), "{forged:?}");
    // Binding a user to a session is for admins.
    let bind = system.ctl(&AGENT, &["sessions", "bind-user", AGENT.name], "");
    assert_ne!(bind.code, 0);
    assert!(
        bind.stderr.contains("refused") || bind.stderr.contains("AccessDenied"),
        "{bind:?}"
    );
}

#[test]
fn a_bound_user_can_neither_unbind_itself_nor_start_a_looser_session() {
    use airlock_tests::{bin, APPROVER, OUTSIDER};
    let system = system();
    let bench = catalogue::prepare(&system);
    let bind = system.ctl(
        &APPROVER,
        &[
            "sessions",
            "bind-user",
            OUTSIDER.name,
            "--role",
            catalogue::ROLE,
        ],
        "",
    );
    assert_eq!(bind.code, 0, "{bind:?}");
    let id = bind.stdout.split_whitespace().next().unwrap().to_owned();

    let unbind = system.ctl(&OUTSIDER, &["sessions", "revoke", &id], "");
    assert_ne!(unbind.code, 0, "the bound user unbound itself: {unbind:?}");
    assert!(
        unbind.stderr.contains("revoke a user binding"),
        "{unbind:?}"
    );

    let looser = system.run_as_with_path(
        &OUTSIDER,
        &bin("airlockctl"),
        &["run", "--role", "default", "--", "terraform", "plan"],
        "",
        &bench.path(),
    );
    assert!(!looser.stdout.contains("STAND-IN RAN"), "{looser:?}");
    assert!(
        looser.stderr.contains("cannot start another session"),
        "{looser:?}"
    );

    let sessions = system.ctl(&APPROVER, &["sessions"], "").stdout;
    assert!(sessions.contains(&id), "{sessions}");
    system
        .ctl(&APPROVER, &["sessions", "revoke", &id], "")
        .success();
}

/// Waits for `path` to exist.
fn wait_for(path: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_policy_reload_and_a_gateway_restart_reach_running_sessions() {
    use std::os::unix::fs::chown;
    let mut system = system();
    let bench = catalogue::prepare(&system);
    let agent = airlock_tests::users::uid(airlock_tests::AGENT.name).as_raw();
    for name in ["go1", "go2"] {
        let path = bench.work.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        chown(&path, Some(agent), Some(agent)).unwrap();
    }
    let script = format!(
        "cd {} && terraform init > a.out 2>&1; echo > ready; \
         read l < go1; terraform init > b.out 2>&1; echo > done1; \
         read l < go2; terraform init > c.out 2>&1; terraform apply >> c.out 2>&1; echo > done2",
        bench.work.display()
    );
    let _agent = system.spawn_as_with_path(
        &airlock_tests::AGENT,
        &airlock_tests::bin("airlockctl"),
        &["run", "--role", catalogue::ROLE, "--", "sh", "-c", &script],
        &bench.path(),
    );
    wait_for(&bench.work.join("ready"));
    let read = |name: &str| std::fs::read_to_string(bench.work.join(name)).unwrap();
    assert!(read("a.out").contains("STAND-IN RAN init"));

    // The running session gets a stricter policy at once.
    std::fs::write(
        system.policy_dir().join("zz-no-init.toml"),
        "[[policy]]\nid = \"no-init\"\nname = \"No init\"\n\n[[policy.rule]]\naction = \"block\"\ncommands = [\"terraform init\"]\n",
    )
    .unwrap();
    let roles = system.policy_dir().join("roles.toml");
    let text = std::fs::read_to_string(&roles).unwrap().replace(
        "policies = [\"infra-mutation-block\", \"plan-needs-approval\"]",
        "policies = [\"infra-mutation-block\", \"plan-needs-approval\", \"no-init\"]",
    );
    std::fs::write(&roles, text).unwrap();
    system
        .ctl(&airlock_tests::APPROVER, &["policy", "reload"], "")
        .success();
    std::fs::write(bench.work.join("go1"), "go\n").unwrap();
    wait_for(&bench.work.join("done1"));
    assert!(!read("b.out").contains("STAND-IN RAN"), "{}", read("b.out"));

    // A restarted gateway still knows the session and keeps it enforced.
    system.kill_gateway();
    system.start_gateway();
    let sessions = system.ctl(&airlock_tests::AGENT, &["sessions", "--json"], "");
    assert!(
        sessions.success().stdout.contains("\"running\""),
        "{sessions:?}"
    );
    std::fs::write(bench.work.join("go2"), "go\n").unwrap();
    wait_for(&bench.work.join("done2"));
    assert!(!read("c.out").contains("STAND-IN RAN"), "{}", read("c.out"));
}

#[test]
fn the_enforcer_keeps_only_the_capabilities_it_needs_once_loaded() {
    let system = system();
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", system.enforcer_pid())).unwrap();
    let caps = |field: &str| {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("{field} missing"))
            .trim();
        u64::from_str_radix(hex, 16).unwrap()
    };
    // CAP_DAC_OVERRIDE (1), CAP_DAC_READ_SEARCH (2), CAP_KILL (5),
    // CAP_SYS_PTRACE (19): no CAP_BPF, CAP_SYS_ADMIN or CAP_PERFMON.
    let kept = (1 << 1) | (1 << 2) | (1 << 5) | (1 << 19);
    for field in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(caps(field), kept, "{field} of the enforcer:\n{status}");
    }
}

/// Waits for a line of the enforcer's log that holds every one of `parts`.
fn wait_for_enforcer_log(system: &System, parts: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = system.service_log("airlock-enforcer");
        if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no enforcer log line with {parts:?}:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_role_that_allows_debugging_may_debug_and_sessions_say_how_they_are_enforced() {
    use airlock_tests::APPROVER;
    let system = system();
    let bench = catalogue::prepare(&system);
    std::fs::write(
        system.policy_dir().join("zz-debugging.toml"),
        "[[role]]\nid = \"debugging-agent\"\npolicies = [\"infra-mutation-block\"]\n\
         allow_debugging = true\n",
    )
    .unwrap();
    system.ctl(&APPROVER, &["policy", "reload"], "").success();
    let gdb = catalogue::cases(&bench)
        .into_iter()
        .find(|c| c.name.starts_with("gdb"))
        .unwrap();
    // What the option allows: a debugger changes a program after its exec
    // was judged.
    let debugged = catalogue::run_in_session(&system, &bench, "debugging-agent", &gdb.script);
    assert!(
        debugged.stdout.contains(gdb.proof),
        "gdb did not work in a role that allows debugging: {debugged:#?}"
    );
    let refused = catalogue::run_in_session(&system, &bench, catalogue::ROLE, &gdb.script);
    assert!(!refused.stdout.contains(gdb.proof), "{refused:#?}");

    // Each session says how it is enforced, and so does the audit log.
    let mode = mode(&system);
    let expected = match mode {
        EnforcementMode::Lsm => EnforcementMode::Lsm,
        _ => EnforcementMode::Supervised,
    };
    let id = catalogue::session_of(&refused).unwrap();
    let sessions = system.ctl(&airlock_tests::AGENT, &["sessions"], "");
    sessions.success();
    let line = sessions
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with(&id))
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    assert!(
        line.contains(&format!("enforcement {}", expected.describe())),
        "{}",
        sessions.stdout
    );
    let log = std::fs::read_to_string(system.audit_log()).unwrap();
    if expected == EnforcementMode::Supervised {
        assert!(
            refused.stderr.contains("seccomp supervisor"),
            "{refused:#?}"
        );
        assert!(
            log.lines()
                .any(|l| l.contains("\"event\":\"session_supervised\"") && l.contains(&id)),
            "{log}"
        );
        assert!(log.contains("\"event\":\"debug_denied\""), "{log}");
        // doctor and status say what that means, and the audit log too.
        let doctor = system.ctl(&airlock_tests::AGENT, &["doctor"], "");
        assert_eq!(doctor.code, 2, "{doctor:#?}");
        assert!(doctor.stdout.contains("ok    seccomp:"), "{doctor:#?}");
        let degraded = "DEGRADED (seccomp supervisor + exec-commit kill)";
        assert!(doctor.stdout.contains(degraded), "{doctor:#?}");
        let status = system.ctl(&airlock_tests::AGENT, &["status"], "");
        assert!(status.stdout.contains(degraded), "{status:#?}");
        assert!(
            log.lines()
                .any(|l| l.contains("\"event\":\"enforcement_mode\"") && l.contains(degraded)),
            "{log}"
        );
    }
}

#[test]
fn without_airlock_totps_key_no_grant_is_installed_until_it_answers() {
    let mut system = system();
    let bench = catalogue::prepare(&system);
    let mut app = system.enrol();
    let mut agent =
        catalogue::PlanLoop::start(&system, &bench, "no-key", "terraform plan", "").unwrap();
    let grant = catalogue::approve(&system, &mut app, &agent.request, "10m").unwrap();
    let (ran, out) = agent.plan().unwrap();
    assert!(ran, "the approved terraform plan did not run: {out}");

    // An enforcer that starts while airlock-totp is away cannot check the
    // grant the gateway sends it again: the session stays governed and the
    // grant stays out of the kernel, the one the previous enforcer installed
    // included.
    system.kill_totp();
    system.kill_enforcer();
    system.start_enforcer();
    let refused = wait_for_enforcer_log(
        &system,
        &[
            &agent.session,
            &format!("grant {grant} refused"),
            "key is not known",
        ],
    );
    println!("{refused}");
    let (ran, out) = agent.plan().unwrap();
    assert!(
        !ran,
        "terraform plan ran with no key to check its grant: {out}"
    );

    // airlock-totp is back: the enforcer asks it for its key and installs
    // the grant after all.
    system.start_totp();
    wait_for_enforcer_log(
        &system,
        &[&agent.session, "grants checked again", "1 installed"],
    );
    let (ran, out) = agent.plan().unwrap();
    if mode(&system) == EnforcementMode::Lsm {
        assert!(
            ran,
            "the grant was not installed once airlock-totp answered: {out}"
        );
    } else {
        // Without BPF LSM the session's seccomp listener went with the old
        // enforcer: the session runs nothing more (fail closed), grant or
        // not; the log line above shows the grant reached the kernel maps.
        assert!(
            !ran && out.contains("Function not implemented"),
            "a session whose supervisor is gone ran a command: {out}"
        );
    }
}

fn libc_sigpipe() -> u32 {
    nix::sys::signal::Signal::SIGPIPE as u32
}

/// The pid of `parent`'s first child.
fn child_of(parent: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

#[test]
fn run_passes_the_agents_exit_status_input_terminal_and_signals_through() {
    use airlock_tests::{bin, AGENT};
    let system = system();
    let bench = catalogue::prepare(&system);
    let run = |script: &str, stdin: &str| {
        system.run_as_with_path(
            &AGENT,
            &bin("airlockctl"),
            &["run", "--role", catalogue::ROLE, "--", "sh", "-c", script],
            stdin,
            &bench.path(),
        )
    };
    assert_eq!(run("exit 7", "").code, 7);
    // Killed by a signal: 128 + the signal, as a shell reports it.
    assert_eq!(run("kill -KILL $$", "").code, 137);
    let read = run("read line; echo \"got $line\"", "hello\n");
    assert!(read.stdout.contains("got hello"), "{read:?}");
    // The agent starts with the signal dispositions and mask its caller
    // had (airlockctl ignores SIGPIPE; the agent must not).
    let status = "grep -E '^Sig(Ign|Blk)' /proc/self/status";
    let outside = catalogue::run_ungoverned(&system, &bench, status);
    let inside = run(status, "");
    assert_eq!(inside.stdout, outside.stdout, "{inside:?}");
    let ignored = |out: &airlock_tests::CtlOutput| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
            .expect("a SigIgn line")
    };
    let sigpipe = 1 << (libc_sigpipe() - 1);
    assert_eq!(ignored(&inside) & sigpipe, 0, "SIGPIPE ignored: {inside:?}");
    // A caller that ignores SIGINT (a background job of a script) passes
    // that on, as it would to any program.
    let ignoring = |command: &str| {
        system.run_as_with_path(
            &AGENT,
            std::path::Path::new("/bin/sh"),
            &[
                "-c",
                &format!("trap '' INT; exec {command} sh -c \"grep SigIgn /proc/self/status\""),
            ],
            "",
            &bench.path(),
        )
    };
    let outside = ignoring("");
    let inside = ignoring(&format!(
        "{} run --role {} --",
        bin("airlockctl").display(),
        catalogue::ROLE
    ));
    assert_eq!(ignored(&outside) & 2, 2, "SIGINT not ignored: {outside:?}");
    assert_eq!(inside.stdout, outside.stdout, "{inside:?}");

    // On a terminal, the agent has the terminal.
    let ctl = bin("airlockctl");
    let on_tty = system.run_as_with_path(
        &AGENT,
        std::path::Path::new("/usr/bin/script"),
        &[
            "-qec",
            &format!(
                "{} run --role {} -- sh -c 'test -t 0 && test -t 1 && echo ON-A-TTY'",
                ctl.display(),
                catalogue::ROLE
            ),
            "/dev/null",
        ],
        "",
        &bench.path(),
    );
    assert!(on_tty.stdout.contains("ON-A-TTY"), "{on_tty:?}");

    // SIGTERM to the session's first process reaches the agent, whose exit
    // status airlockctl returns.
    let script = format!(
        "cd {} && trap 'echo > got-term; exit 3' TERM; echo > term-ready; \
         while :; do sleep 0.1; done",
        bench.work.display()
    );
    let mut agent = system.spawn_as_with_path(
        &AGENT,
        &bin("airlockctl"),
        &["run", "--role", catalogue::ROLE, "--", "sh", "-c", &script],
        &bench.path(),
    );
    wait_for(&bench.work.join("term-ready"));
    let init = child_of(agent.id()).expect("airlockctl run has a child");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for(&bench.work.join("got-term"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = agent.try_wait() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "airlockctl run did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3));
}

#[test]
fn without_user_namespaces_the_agent_does_not_start_and_doctor_says_why() {
    use airlock_tests::{bin, AGENT};
    let system = system();
    let bench = catalogue::prepare(&system);
    let doctor = system.ctl(&AGENT, &["doctor"], "");
    assert!(
        doctor.stdout.contains("ok    session namespaces"),
        "{doctor:?}"
    );

    // The limit is per user namespace: in one of its own, root sets it to
    // 0 for everything below, as `sysctl user.max_user_namespaces=0` would
    // for the machine.
    let ctl = bin("airlockctl");
    let script = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces || exit 99; \
         {ctl} doctor; echo doctor=$?; {ctl} run -- terraform init; echo run=$?",
        ctl = ctl.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &script])
        .env_clear()
        .env("PATH", bench.path())
        .env("DBUS_SYSTEM_BUS_ADDRESS", &system.bus_address)
        .output()
        .unwrap();
    let out = airlock_tests::CtlOutput::from(out);
    assert!(out.stdout.contains("doctor=1"), "{out:#?}");
    assert!(
        out.stdout.contains("FAIL  session namespaces")
            && out.stdout.contains("user.max_user_namespaces = 0"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("run=126"), "{out:#?}");
    assert!(!out.stdout.contains("STAND-IN RAN"), "{out:#?}");
    assert!(
        out.stderr.contains("the agent was not started")
            && out.stderr.contains("sysctl -w user.max_user_namespaces"),
        "{out:#?}"
    );
}

#[test]
fn a_degraded_session_whose_supervisor_is_gone_runs_nothing_more() {
    let mut system = system();
    if mode(&system) == EnforcementMode::Lsm {
        // BPF LSM sessions have no supervisor to lose.
        return;
    }
    let bench = catalogue::prepare(&system);
    let agent = airlock_tests::users::uid(airlock_tests::AGENT.name).as_raw();
    let go = bench.work.join("go-nosup");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::os::unix::fs::chown(&go, Some(agent), Some(agent)).unwrap();
    let script = format!(
        "cd {} && terraform init > before.out 2>&1; echo > ready; read l < go-nosup; \
         terraform init > after.out 2>&1; echo rc=$? >> after.out; echo > done",
        bench.work.display()
    );
    let _agent = system.spawn_as_with_path(
        &airlock_tests::AGENT,
        &airlock_tests::bin("airlockctl"),
        &["run", "--role", catalogue::ROLE, "--", "sh", "-c", &script],
        &bench.path(),
    );
    wait_for(&bench.work.join("ready"));
    let read = |name: &str| std::fs::read_to_string(bench.work.join(name)).unwrap();
    assert!(read("before.out").contains("STAND-IN RAN init"));
    system.kill_enforcer();
    std::fs::write(&go, "go\n").unwrap();
    wait_for(&bench.work.join("done"));
    let after = read("after.out");
    assert!(
        !after.contains("STAND-IN RAN"),
        "an unsupervised session ran a command: {after}"
    );
    assert!(after.contains("Function not implemented"), "{after}");
    system.start_enforcer();
}
