//! The bypass catalogue: ways an agent might run `terraform apply` that a
//! rule `terraform apply` must stop, each run in its own governed session
//! as the agent user, and the layer that stopped it read back from the
//! audit log.
//!
//! The same catalogue runs on the host (whose kernel refuses BPF LSM, so
//! enforcement is degraded) and in the VM with BPF LSM.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::outside::Outside;
use crate::sockets::Servers;
use crate::{bin, users, CtlOutput, Spawned, System, AGENT};

/// The role the catalogue runs under: `terraform apply` blocked,
/// `terraform plan` needs approval, everything else allowed.
pub const ROLE: &str = "terraform-restricted-agent";

/// Files the catalogue works with.
pub struct Bench {
    /// Holds the stand-in `terraform` (root-owned, on the agent's PATH).
    pub bin: PathBuf,
    /// Writable by the agent.
    pub work: PathBuf,
    /// The user's credentials and servers outside the session, for the
    /// catalogue's rows about them ([`prepare_with_outside`]).
    pub outside: Option<Outside>,
    /// The agent user's servers outside the session, reachable over
    /// sockets and signals, for the catalogue's rows about them
    /// ([`prepare_with_sockets`]).
    pub sockets: Option<Servers>,
}

impl Bench {
    pub fn terraform(&self) -> PathBuf {
        self.bin.join("terraform")
    }

    /// The agent's PATH: the stand-in first.
    pub fn path(&self) -> String {
        format!("{}:/usr/local/bin:/usr/bin:/bin", self.bin.display())
    }
}

/// Installs the stand-in as `terraform`, a hard link to it (made by root:
/// the agent may not link a file it does not own), and the agent's work
/// directory.
pub fn prepare(system: &System) -> Bench {
    let root = system.path("bench");
    let bin_dir = root.join("bin");
    let work = root.join("work");
    fs::create_dir_all(&bin_dir).unwrap();
    fs::create_dir_all(&work).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&bin_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let agent = users::uid(AGENT.name).as_raw();
    chown(&work, Some(agent), Some(agent)).unwrap();
    let terraform = bin_dir.join("terraform");
    fs::copy(bin("airlock-stand-in"), &terraform).unwrap();
    fs::set_permissions(&terraform, fs::Permissions::from_mode(0o755)).unwrap();
    fs::hard_link(&terraform, bin_dir.join("tf-hardlink")).unwrap();
    Bench {
        bin: bin_dir,
        work,
        outside: None,
        sockets: None,
    }
}

/// [`prepare`], with what the agent user has outside any session: fake
/// credentials in its home, its tmux, screen and ssh-agent servers
/// ([`Outside`]), and servers reachable over sockets and signals (a TCP and
/// a UDP daemon, Unix socket servers, a tmux server on its own socket, a
/// process that acts on a signal: [`Servers`]). One at a time per machine:
/// they are the agent user's.
pub fn prepare_with_outside(system: &System) -> Bench {
    let mut bench = prepare(system);
    bench.outside = Some(Outside::start(system, &bench));
    bench.sockets = Some(Servers::start(&bench));
    bench
}

/// [`prepare`], with only the servers reachable over sockets and signals
/// ([`Servers`]) started outside any session.
pub fn prepare_with_sockets(system: &System) -> Bench {
    let mut bench = prepare(system);
    bench.sockets = Some(Servers::start(&bench));
    bench
}

/// Which defence a case must meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Must not run.
    Refused,
    /// Must run (the same binary with allowed arguments).
    Runs,
}

pub struct Case {
    pub name: &'static str,
    /// A `sh -c` script run by the agent in the bench's work directory.
    pub script: String,
    pub expect: Expect,
    /// Set when the case is a known gap in degraded mode (no BPF LSM), with
    /// the reason.
    pub degraded_gap: Option<&'static str>,
    /// Output showing the case got through: the stand-in ran, a secret was
    /// read.
    pub proof: &'static str,
    /// Run the script outside any session first: it must get through
    /// there, or a refusal in the session proves nothing.
    pub ungoverned_first: bool,
    /// The layer that refuses when the audit log cannot say (the session's
    /// namespaces and Landlock record nothing).
    pub layer: Option<&'static str>,
}

pub(crate) fn case(name: &'static str, script: String) -> Case {
    Case {
        name,
        script,
        expect: Expect::Refused,
        degraded_gap: None,
        proof: "STAND-IN RAN",
        ungoverned_first: false,
        layer: None,
    }
}

/// A case that changes `terraform initx` into `terraform apply` after its
/// exec was judged.
fn rewrite(name: &'static str, script: String) -> Case {
    Case {
        proof: "STAND-IN RAN apply",
        ungoverned_first: true,
        ..case(name, script)
    }
}

/// Writes `source` to `file` in the work directory, then runs `then`.
fn with_file(file: &str, source: &str, then: &str) -> String {
    format!("cat > {file} <<'AIRLOCK_EOF'\n{source}AIRLOCK_EOF\n{then}")
}

/// Starts `terraform initx` waiting (`STAND_IN_WAIT`), rewrites its argv[1]
/// in its memory with `WRITE` (process_vm_writev or /proc/PID/mem), then
/// lets it go on.
const REWRITE_PY: &str = r#"import ctypes, os, subprocess, sys, time
tf, how = sys.argv[1], sys.argv[2]
go = "go-" + how
if os.path.exists(go):
    os.remove(go)
child = subprocess.Popen([tf, "initx"], env=dict(os.environ, STAND_IN_WAIT=go))
time.sleep(0.3)
start = int(open("/proc/%d/stat" % child.pid).read().rsplit(")", 1)[1].split()[45])
argv1 = start + len(open("/proc/%d/cmdline" % child.pid, "rb").read().split(b"\0")[0]) + 1
try:
    if how == "process_vm_writev":
        class iovec(ctypes.Structure):
            _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
        libc = ctypes.CDLL(None, use_errno=True)
        new = ctypes.create_string_buffer(b"apply")
        local, remote = iovec(ctypes.addressof(new), 6), iovec(argv1, 6)
        if libc.process_vm_writev(child.pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) != 6:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    else:
        with open("/proc/%d/mem" % child.pid, "r+b", buffering=0) as mem:
            mem.seek(argv1)
            mem.write(b"apply\0")
    print(how, "rewrote argv[1]", flush=True)
except OSError as e:
    print(how, "failed:", e, flush=True)
open(go, "w").close()
child.wait()
"#;

/// Races the supervisor: one thread flips the path of an exec between an
/// allowed program and terraform while another execs it, so that what the
/// supervisor reads is not what the kernel then runs. The exec-commit
/// program must stop what gets past the supervisor.
const RACE_PY: &str = r#"import ctypes, os, sys, threading
tf, rounds = sys.argv[1].encode(), int(sys.argv[2])
ok = b"/bin/true"
n = max(len(tf), len(ok)) + 1
path = ctypes.create_string_buffer(n)
a, b = ctypes.create_string_buffer(tf, n), ctypes.create_string_buffer(ok, n)
libc = ctypes.CDLL(None, use_errno=True)
argv = (ctypes.c_char_p * 3)(b"tf", b"apply", None)
env = (ctypes.c_char_p * 1)(None)
def flip():
    while True:
        ctypes.memmove(path, a, n)
        ctypes.memmove(path, b, n)
for _ in range(rounds):
    pid = os.fork()
    if pid == 0:
        threading.Thread(target=flip, daemon=True).start()
        for _ in range(5):
            libc.execve(path, argv, env)
        os._exit(3)
    os.waitpid(pid, 0)
print("race done", flush=True)
"#;

pub fn cases(bench: &Bench) -> Vec<Case> {
    let tf = bench.terraform();
    let tf = tf.display();
    let bin = bench.bin.display();
    let py_exec = |how: &str| format!("python3 -c '{how}'");
    vec![
        case("absolute path", format!("{tf} apply")),
        case("relative path", format!("cd {bin} && ./terraform apply")),
        case("PATH lookup", "terraform apply".into()),
        case(
            "symlink",
            format!("ln -s {tf} ./tf-link && ./tf-link apply"),
        ),
        case("hardlink", format!("{bin}/tf-hardlink apply")),
        case(
            "copy under another name",
            format!("cp {tf} ./not-terraform && ./not-terraform apply"),
        ),
        case(
            "/proc/self/fd/N",
            format!("exec 3<{tf}; /proc/self/fd/3 apply"),
        ),
        case("env", "env terraform apply".into()),
        case("sh -c", "sh -c 'terraform apply'".into()),
        case("bash -c", "bash -c 'terraform apply'".into()),
        case("xargs", "echo apply | xargs terraform".into()),
        case("find -exec", format!("find {bin} -name terraform -exec {{}} apply \\;")),
        case(
            "shebang script",
            "printf '#!/bin/sh\\nterraform apply\\n' > s.sh && chmod +x s.sh && ./s.sh".into(),
        ),
        case(
            "shebang interpreter",
            format!("printf '#!{tf} apply\\n' > i.tf && chmod +x i.tf && ./i.tf"),
        ),
        case(
            "python os.execv",
            py_exec(&format!("import os; os.execv(\"{tf}\", [\"terraform\", \"apply\"])")),
        ),
        case(
            "fexecve (execveat on an fd)",
            py_exec(&format!(
                "import os; fd = os.open(\"{tf}\", os.O_RDONLY); os.execve(fd, [\"terraform\", \"apply\"], dict(os.environ))"
            )),
        ),
        Case {
            degraded_gap: Some(
                "without BPF LSM there is no mmap hook: the loader maps the binary itself and no exec happens",
            ),
            ..case(
                "dynamic loader",
                format!("/lib64/ld-linux-x86-64.so.2 {tf} apply"),
            )
        },
        case(
            "memfd exec",
            py_exec(&format!(
                "import os; fd = os.memfd_create(\"x\"); os.write(fd, open(\"{tf}\", \"rb\").read()); os.execve(fd, [\"terraform\", \"apply\"], dict(os.environ))"
            )),
        ),
        case("busybox sh", "busybox sh -c 'terraform apply'".into()),
        case("nohup", "nohup terraform apply 2>&1; cat nohup.out 2>/dev/null".into()),
        case("setsid", "setsid -w terraform apply".into()),
        case("timeout", "timeout 10 terraform apply".into()),
        case(
            "double-forked child",
            "(terraform apply > double.out 2>&1 &); sleep 1; cat double.out".into(),
        ),
        case("argv[0] spoofing", "bash -c 'exec -a kubectl terraform apply'".into()),
        case(
            "leave the session cgroup",
            "cg=$(cut -d: -f3 /proc/self/cgroup); echo $$ > /sys/fs/cgroup/cgroup.procs; \
             echo $$ > /sys/fs/cgroup/unified/cgroup.procs; \
             if [ \"$(cut -d: -f3 /proc/self/cgroup)\" = \"$cg\" ]; then terraform apply; \
             else echo ESCAPED; echo STAND-IN RAN escaped; fi"
                .into(),
        ),
        // Inside the restricted role a plan needs approval; the shipped
        // `default` role would allow it.
        case(
            "a new session with a looser role",
            format!(
                "{} run --role default -- terraform plan",
                crate::bin("airlockctl").display()
            ),
        ),
        rewrite(
            "gdb rewrites argv after exec",
            "gdb -q -batch -ex 'set language c' -ex 'break main' -ex run \
             -ex 'set var *(int*)(*(long*)($rsi+8)) = 0x6c707061' \
             -ex 'set var *(short*)(*(long*)($rsi+8)+4) = 0x79' -ex continue \
             --args terraform initx 2>&1"
                .into(),
        ),
        rewrite(
            "process_vm_writev rewrites argv",
            with_file("rw.py", REWRITE_PY, &format!("python3 rw.py {tf} process_vm_writev")),
        ),
        Case {
            // Without BPF LSM nothing is recorded: the session's /proc is
            // mounted read-only, so the open for writing fails.
            layer: Some("namespace"),
            ..rewrite(
                "/proc/PID/mem rewrites argv",
                with_file("rw.py", REWRITE_PY, &format!("python3 rw.py {tf} mem")),
            )
        },
        Case {
            proof: "NAMESPACE CREATED",
            ungoverned_first: true,
            ..case(
                "a new user namespace (unshare -Ur)",
                "unshare -Ur true && echo NAMESPACE CREATED".into(),
            )
        },
        Case {
            ungoverned_first: true,
            ..case(
                "a thread races the exec check (TOCTOU)",
                with_file("race.py", RACE_PY, &format!("python3 race.py {tf} 40")),
            )
        },
        // Options before the subcommand: the rule's words are matched with
        // the tool's options skipped (policies/tools.toml).
        case("option before the subcommand", "terraform -chdir=. apply".into()),
        case("-chdir=DIR before the subcommand", "terraform -chdir=infra apply".into()),
        case("-chdir DIR (value in the next word)", "terraform -chdir infra apply".into()),
        case(
            "several options before the subcommand",
            "terraform -chdir=. -no-color apply -auto-approve".into(),
        ),
        case(
            "an option longer than the kernel reads",
            format!("terraform -chdir={} apply", "d".repeat(300)),
        ),
        case("approve rule behind an option", "terraform -chdir=. plan".into()),
        Case {
            expect: Expect::Runs,
            ..case("allowed arguments (terraform init)", "terraform init".into())
        },
        Case {
            expect: Expect::Runs,
            ..case("allowed arguments behind an option", "terraform -chdir=. init".into())
        },
    ]
    .into_iter()
    .chain(bench.outside.iter().flat_map(|o| o.cases(bench)))
    .chain(bench.sockets.iter().flat_map(|s| s.cases(bench)))
    .collect()
}

/// What happened to one case.
pub struct Outcome {
    pub ran: bool,
    /// For a case run outside a session first: whether it got through
    /// there, and its output.
    pub ungoverned: Option<(bool, CtlOutput)>,
    /// The layers that acted, from the audit log: `exec_check` (BPF LSM,
    /// EPERM), `exec_commit` (killed before the first instruction), `mmap`,
    /// `file_open`; `permissions` when Unix permissions refused alone.
    pub layers: Vec<String>,
    /// The agent saw Airlock's message.
    pub message: bool,
    pub output: CtlOutput,
}

impl Outcome {
    pub fn passed(&self, case: &Case) -> bool {
        let works_outside = self.ungoverned.as_ref().is_none_or(|(ran, _)| *ran);
        match case.expect {
            Expect::Refused => !self.ran && works_outside,
            Expect::Runs => self.ran && works_outside,
        }
    }
}

/// The session id `airlockctl run` printed.
pub fn session_of(output: &CtlOutput) -> Option<String> {
    output
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("airlock: session "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

/// Audit records about `session`, waiting up to `wait` for at least one
/// whose event starts with one of `prefixes`.
pub fn session_events(
    system: &System,
    session: &str,
    prefixes: &[&str],
    wait: Duration,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + wait;
    loop {
        let text = fs::read_to_string(system.audit_log()).unwrap_or_default();
        let events: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["session"] == session)
            .collect();
        let found = events.iter().any(|e| {
            e["event"]
                .as_str()
                .is_some_and(|n| prefixes.iter().any(|p| n.starts_with(p)))
        });
        if found || Instant::now() >= deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `script` as the agent outside any session, as [`run_in_session`]
/// would inside one.
pub fn run_ungoverned(system: &System, bench: &Bench, script: &str) -> CtlOutput {
    let script = format!("cd {} && {script}", bench.work.display());
    system.run_as_with_path(
        &AGENT,
        Path::new("/bin/sh"),
        &["-c", &script],
        "",
        &bench.path(),
    )
}

/// Runs `script` as the agent in a governed session.
pub fn run_in_session(system: &System, bench: &Bench, role: &str, script: &str) -> CtlOutput {
    let script = format!("cd {} && {script}", bench.work.display());
    system.run_as_with_path(
        &AGENT,
        &bin("airlockctl"),
        &["run", "--role", role, "--", "sh", "-c", &script],
        "",
        &bench.path(),
    )
}

pub fn run_case(system: &System, bench: &Bench, case: &Case) -> Outcome {
    let reset = || {
        if let Some(outside) = &bench.outside {
            outside.reset();
        }
    };
    let ungoverned = case.ungoverned_first.then(|| {
        reset();
        let output = run_ungoverned(system, bench, &case.script);
        let ran = output.stdout.contains(case.proof) || output.stderr.contains(case.proof);
        (ran, output)
    });
    reset();
    let output = run_in_session(system, bench, ROLE, &case.script);
    let combined = format!("{}{}", output.stdout, output.stderr);
    let ran = combined.contains(case.proof);
    let mut layers = Vec::new();
    if let Some(session) = session_of(&output) {
        let wait = if ran {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(3)
        };
        let layer_events = [
            "exec_",
            "cgroup_",
            "debug_",
            "namespace_",
            "socket_",
            "signal_",
            "session_refused",
        ];
        for event in session_events(system, &session, &layer_events, wait)
            .iter()
            .filter(|e| {
                e["event"]
                    .as_str()
                    .is_some_and(|n| layer_events.iter().any(|p| n.starts_with(p)))
            })
        {
            if let Some(stage) = event["stage"].as_str() {
                if !layers.iter().any(|l| l == stage) {
                    layers.push(stage.to_owned());
                }
            }
        }
    }
    if let Some(layer) = case.layer.filter(|_| !ran && layers.is_empty()) {
        layers.push(layer.into());
    }
    if layers.is_empty() && !ran && combined.contains("Permission denied") {
        layers.push("permissions".into());
    }
    Outcome {
        ran,
        ungoverned,
        layers,
        message: combined.contains("airlock: POLICY BLOCK")
            || combined.contains("airlock: APPROVAL REQUIRED"),
        output,
    }
}

/// Prints a table row.
pub fn row(name: &str, verdict: &str, layers: &str, note: &str) -> String {
    format!("| {name:<36} | {verdict:<10} | {layers:<24} | {note}")
}

/// Checks the stand-in runs outside any session (so a refusal inside one is
/// Airlock's doing).
pub fn runs_ungoverned(system: &System, bench: &Bench) -> bool {
    let out = system.run_as_with_path(
        &AGENT,
        Path::new("/bin/sh"),
        &["-c", "terraform apply"],
        "",
        &bench.path(),
    );
    out.stdout.contains("STAND-IN RAN apply")
}

/// What the approval scenario measured.
pub struct Approval {
    pub request: String,
    /// From `airlockctl approve` returning to the command having run in
    /// the session (includes the shell starting it).
    pub approve_to_run: Duration,
    /// The same step with a command that needs no approval: what starting
    /// a program costs here, without any waiting for the kernel.
    pub baseline: Duration,
    /// The refusal's output named the request (LSM mode: the task is held
    /// for the message).
    pub message_named_request: bool,
}

pub(crate) fn wait_for(path: &Path, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not appear within {limit:?}",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

pub(crate) fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let agent = users::uid(AGENT.name).as_raw();
    chown(path, Some(agent), Some(agent)).unwrap();
}

pub(crate) fn trigger(path: &Path) {
    fs::write(path, "go\n").unwrap();
}

/// An approve rule end to end in one long-lived session: refused and a
/// request filed; approved with a TOTP code, after which the kernel lets it
/// run; refused again once the grant expired; approved again and revoked,
/// refused again.
pub fn approval_scenario(
    system: &System,
    bench: &Bench,
    app: &mut crate::totp::Authenticator,
) -> Result<Approval, String> {
    let work = &bench.work;
    for name in ["go0", "go1", "go2", "go3"] {
        fifo(&work.join(name));
    }
    // Earlier cases may have left requests for the same command pending in
    // their own sessions; the scenario's are the ones filed after this.
    let earlier: Vec<String> = pending_requests(system)?
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    let script = format!(
        "cd {work} && \
         terraform plan > p1.out 2>&1; echo rc=$? >> p1.out; echo > ready; \
         read l < go0; terraform init > p0.out 2>&1; echo > done0; \
         read l < go1; terraform plan > p2.out 2>&1; echo rc=$? >> p2.out; echo > done2; \
         read l < go2; terraform plan > p3.out 2>&1; echo rc=$? >> p3.out; echo > done3; \
         read l < go3; terraform plan > p4.out 2>&1; echo rc=$? >> p4.out; echo > done4",
        work = work.display()
    );
    let _agent = system.spawn_as_with_path(
        &AGENT,
        &bin("airlockctl"),
        &["run", "--role", ROLE, "--", "sh", "-c", &script],
        &bench.path(),
    );
    approval_steps(system, bench, app, &earlier)
}

/// A governed session under [`ROLE`] that runs a `terraform plan` command
/// once per trigger, for scenarios that change what the kernel knows in
/// between.
pub struct PlanLoop {
    work: PathBuf,
    step: usize,
    /// The session, as the request its first refused `terraform plan`
    /// filed names it.
    pub session: String,
    /// That request.
    pub request: String,
    _agent: Spawned,
}

impl PlanLoop {
    /// Most `terraform plan` runs one loop does.
    const STEPS: usize = 32;

    /// Starts the session in `bench.work/name`: a first `plan` (`terraform
    /// plan` with more words, or none; refused, and the kernel files a
    /// request for `terraform plan`), then `prelude` (shell, run in that
    /// directory), then `plan` again for each [`PlanLoop::plan`].
    pub fn start(
        system: &System,
        bench: &Bench,
        name: &str,
        plan: &str,
        prelude: &str,
    ) -> Result<PlanLoop, String> {
        assert!(plan.starts_with("terraform plan"), "{plan}");
        let work = bench.work.join(name);
        fs::create_dir(&work).unwrap();
        let agent = users::uid(AGENT.name).as_raw();
        chown(&work, Some(agent), Some(agent)).unwrap();
        // A fifo per step: with one fifo, a trigger's writer that has not
        // yet closed it when the next step's `read` opens it ends that
        // `read` with EOF, and the loop runs a plan nobody asked for (seen
        // under load: the steps' outputs then belong to the wrong grants).
        for n in 1..=Self::STEPS {
            fifo(&work.join(format!("go{n}")));
        }
        let earlier: Vec<String> = pending_requests(system)?
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
        let script = format!(
            "cd {work} && {plan} > plan0.out 2>&1; echo > ready; {prelude} \
             for n in $(seq 1 {steps}); do read l < go$n; {plan} > plan$n.out 2>&1; \
             echo rc=$? >> plan$n.out; echo > done$n; done",
            work = work.display(),
            prelude = if prelude.is_empty() {
                String::new()
            } else {
                format!("{prelude};")
            },
            steps = Self::STEPS,
        );
        let agent = system.spawn_as_with_path(
            &AGENT,
            &bin("airlockctl"),
            &["run", "--role", ROLE, "--", "sh", "-c", &script],
            &bench.path(),
        );
        wait_for(&work.join("ready"), Duration::from_secs(60))?;
        let first = read(&work.join("plan0.out"));
        if first.contains("STAND-IN RAN") {
            return Err(format!("terraform plan ran without approval: {first}"));
        }
        let request = wait_pending_request(system, &earlier)?;
        let session = pending_requests(system)?
            .iter()
            .find(|r| r["id"] == request.as_str())
            .and_then(|r| r["session"].as_str().map(str::to_owned))
            .ok_or("the refused terraform plan filed no request for its session")?;
        Ok(PlanLoop {
            work,
            step: 0,
            session,
            request,
            _agent: agent,
        })
    }

    /// The session's working directory.
    pub fn dir(&self) -> &Path {
        &self.work
    }

    /// Runs the next `plan` in the session: whether it ran, and what it
    /// printed.
    pub fn plan(&mut self) -> Result<(bool, String), String> {
        self.step += 1;
        if self.step > Self::STEPS {
            return Err("the session's script has no steps left".into());
        }
        trigger(&self.work.join(format!("go{}", self.step)));
        wait_for(
            &self.work.join(format!("done{}", self.step)),
            Duration::from_secs(30),
        )?;
        let out = read(&self.work.join(format!("plan{}.out", self.step)));
        Ok((out.contains("STAND-IN RAN plan"), out))
    }
}

/// The request id `airlockctl request` printed (alone on its line) to
/// `file`.
pub fn request_in(file: &Path) -> Result<String, String> {
    wait_for(file, Duration::from_secs(30))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = read(file);
        if let Some(id) = text.lines().find(|l| l.starts_with("req-")) {
            return Ok(id.to_owned());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "airlockctl request printed no request id: {text:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

pub(crate) fn pending_requests(system: &System) -> Result<Vec<serde_json::Value>, String> {
    let out = system.ctl(&crate::APPROVER, &["requests", "--json"], "");
    serde_json::from_str(&out.stdout).map_err(|e| format!("requests: {e}: {out:?}"))
}

/// The pending request of the session the scenario runs in: one filed for
/// a session, and not among those pending before the scenario started.
fn pending_request(system: &System, earlier: &[String]) -> Result<String, String> {
    let requests = pending_requests(system)?;
    requests
        .iter()
        .filter(|r| r["scope"] == "command:terraform plan" && r["session"] != "")
        .filter_map(|r| r["id"].as_str())
        .find(|id| !earlier.iter().any(|e| e == id))
        .map(str::to_owned)
        .ok_or_else(|| format!("no request was filed for the refused command: {requests:?}"))
}

/// The request the kernel's refusal filed (reported asynchronously).
pub(crate) fn wait_pending_request(system: &System, earlier: &[String]) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match pending_request(system, earlier) {
            Ok(id) => return Ok(id),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub fn approve(
    system: &System,
    app: &mut crate::totp::Authenticator,
    id: &str,
    ttl: &str,
) -> Result<String, String> {
    let code = app.next_code();
    let out = system.ctl(
        &crate::APPROVER,
        &["approve", id, "--ttl", ttl, "--code-stdin"],
        &format!("{code}\n"),
    );
    if out.code != 0 {
        return Err(format!("approve failed: {out:?}"));
    }
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("grant "))
        .map(str::to_owned)
        .ok_or_else(|| format!("approve printed no grant: {out:?}"))
}

fn approval_steps(
    system: &System,
    bench: &Bench,
    app: &mut crate::totp::Authenticator,
    earlier: &[String],
) -> Result<Approval, String> {
    let work = &bench.work;
    wait_for(&work.join("ready"), Duration::from_secs(60))?;
    let p1 = read(&work.join("p1.out"));
    if p1.contains("STAND-IN RAN") {
        return Err(format!("terraform plan ran without approval: {p1}"));
    }
    let request = wait_pending_request(system, earlier)?;
    let message_named_request = p1.contains(&format!("airlock: request={request}"));

    // What the same step costs for a command allowed anyway.
    let started = Instant::now();
    trigger(&work.join("go0"));
    wait_for(&work.join("done0"), Duration::from_secs(30))?;
    let baseline = started.elapsed();

    approve(system, app, &request, "6s")?;
    let approved = Instant::now();
    trigger(&work.join("go1"));
    wait_for(&work.join("done2"), Duration::from_secs(30))?;
    let approve_to_run = approved.elapsed();
    let p2 = read(&work.join("p2.out"));
    if !p2.contains("STAND-IN RAN plan") {
        return Err(format!("approved terraform plan did not run: {p2}"));
    }

    // Expiry: the kernel checks the grant's deadline itself.
    std::thread::sleep(Duration::from_secs(7).saturating_sub(approved.elapsed()));
    trigger(&work.join("go2"));
    wait_for(&work.join("done3"), Duration::from_secs(30))?;
    let p3 = read(&work.join("p3.out"));
    if p3.contains("STAND-IN RAN") {
        return Err(format!("terraform plan ran after the grant expired: {p3}"));
    }

    // Revocation.
    let again = wait_pending_request(system, earlier)?;
    let grant = approve(system, app, &again, "10m")?;
    let out = system.ctl(&crate::APPROVER, &["revoke", &grant], "");
    if out.code != 0 {
        return Err(format!("revoke failed: {out:?}"));
    }
    trigger(&work.join("go3"));
    wait_for(&work.join("done4"), Duration::from_secs(30))?;
    let p4 = read(&work.join("p4.out"));
    if p4.contains("STAND-IN RAN") {
        return Err(format!(
            "terraform plan ran after its grant was revoked: {p4}"
        ));
    }
    Ok(Approval {
        request,
        approve_to_run,
        baseline,
        message_named_request,
    })
}
