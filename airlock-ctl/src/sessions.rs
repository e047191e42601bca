//! Governed sessions: `run`, `sessions`, `use` and `current`.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use airlock_common::dbus::{Confinement, Gateway1Proxy, SessionRecord};
use airlock_common::enforcement::EnforcementMode;
use airlock_common::timefmt::rfc3339;
use anyhow::{anyhow, Context};
use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::bus;
use crate::confine::{Control, Plan, ATTACHED};
use crate::policy::{resolve_executable, search_path};

/// Where `airlockctl use` keeps the default role: one line.
fn role_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("airlock/role"))
}

/// The role chosen with `airlockctl use`, if any.
fn chosen_role() -> Option<String> {
    let text = std::fs::read_to_string(role_file()?).ok()?;
    let role = text.trim();
    (!role.is_empty()).then(|| role.to_owned())
}

async fn check_role(gateway: &Gateway1Proxy<'_>, role: &str) -> anyhow::Result<()> {
    gateway
        .check_command(role, &["true"])
        .await
        .map(|_| ())
        .map_err(|e| bus::explain(&format!("role {role:?}"), e))
}

pub async fn use_role(role: &str) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    check_role(&gateway, role).await?;
    let path = role_file().ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, format!("{role}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("future governed sessions use role {role} (`airlockctl run -- CMD`)");
    Ok(0)
}

pub async fn current() -> anyhow::Result<i32> {
    match chosen_role() {
        Some(role) => println!("{role} (set by `airlockctl use`)"),
        None => println!("the gateway's default role (no `airlockctl use` yet)"),
    }
    Ok(0)
}

fn print_session(s: &SessionRecord) {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(s.uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| s.uid.to_string());
    let scope = if s.bound_uid {
        format!("every process of {user}")
    } else {
        format!("process tree of {user}")
    };
    println!("{}  {:<8} role {}  {scope}", s.id, s.state, s.role);
    print!("    started {}", rfc3339(s.created_at));
    if let Some(ended_at) = *s.ended_at {
        print!(", ended {}", rfc3339(ended_at));
    }
    // Unknown until the session started.
    if s.enforcement != EnforcementMode::Unknown {
        print!(", enforcement {}", s.enforcement.describe());
    }
    println!();
}

pub async fn list(json: bool) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    let sessions = gateway
        .list_sessions()
        .await
        .map_err(|e| bus::explain("sessions", e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&sessions)?);
    } else if sessions.is_empty() {
        println!("no sessions");
    } else {
        sessions.iter().for_each(print_session);
    }
    Ok(0)
}

pub async fn revoke(id: &str) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    gateway
        .revoke_session(id)
        .await
        .map_err(|e| bus::explain("revoke session", e))?;
    println!("revoked session {id}; its processes were killed");
    Ok(0)
}

pub async fn bind_user(user: &str, role: Option<&str>) -> anyhow::Result<i32> {
    let uid = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| anyhow!("no user {user:?}"))?
        .uid
        .as_raw();
    let gateway = bus::gateway().await?;
    let session = gateway
        .bind_user(role.into(), uid)
        .await
        .map_err(|e| bus::explain("bind user", e))?;
    print_session(&session);
    Ok(0)
}

/// A pidfd for `pid` (our child, so it cannot be reaped and reused before
/// we wait for it).
fn pidfd_open(pid: Pid) -> anyhow::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("pidfd_open");
    }
    // SAFETY: a fresh fd the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The child, held until its session is in place, then the command.
struct Held {
    pid: Pid,
    go: OwnedFd,
}

impl Held {
    /// Forks a child that waits on a pipe and then execs `program`, keeping
    /// `inherited` open through the exec.
    fn spawn(program: &CString, argv: &[CString], inherited: OwnedFd) -> anyhow::Result<Held> {
        // Close-on-exec: neither end is session-init's business.
        let (wait_end, go_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        // execv's pointer array, built here: the child must not allocate.
        let argv: Vec<*const libc::c_char> = argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        // SAFETY: the child only calls async-signal-safe functions (close,
        // read, execv, _exit) on memory prepared before the fork,
        // and allocates nothing.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop(go_end);
                let fd = std::os::fd::AsRawFd::as_raw_fd(&wait_end);
                let mut byte = [0u8; 1];
                let started = matches!(nix::unistd::read(fd, &mut byte), Ok(1));
                if started {
                    // SAFETY: `program` is a NUL-terminated string and `argv`
                    // a null-terminated array of them, all alive until the
                    // exec replaces this process (or fails and we exit).
                    unsafe { libc::execv(program.as_ptr(), argv.as_ptr()) };
                }
                // SAFETY: leave the child without running the parent's
                // destructors or atexit handlers.
                unsafe { libc::_exit(if started { 127 } else { 126 }) }
            }
            ForkResult::Parent { child } => {
                drop(wait_end);
                drop(inherited);
                Ok(Held {
                    pid: child,
                    go: go_end,
                })
            }
        }
    }

    /// Lets the child exec `session-init`.
    fn release(&mut self) -> anyhow::Result<()> {
        nix::unistd::write(self.go.as_fd(), b"g")?;
        Ok(())
    }

    /// Waits for the command; returns its exit code.
    fn wait(self) -> anyhow::Result<i32> {
        drop(self.go);
        loop {
            match waitpid(self.pid, None)? {
                WaitStatus::Exited(_, code) => return Ok(code),
                WaitStatus::Signaled(_, sig, _) => return Ok(128 + sig as i32),
                _ => continue,
            }
        }
    }

    /// Kills the child before it ran anything.
    fn abandon(self) {
        let _ = signal::kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

pub async fn run(role: Option<&str>, unenforced: bool, command: &[String]) -> anyhow::Result<i32> {
    let name = command
        .first()
        .ok_or_else(|| anyhow!("no command to run"))?;
    let program = resolve_executable(name).ok_or_else(|| anyhow!("{name}: command not found"))?;
    // Tools wired to Airlock's credential helpers find their configuration
    // (paths only). Set before anything else runs: this process is still
    // single-threaded here, and the session inherits its environment.
    for (key, value) in crate::wireup::session_env() {
        std::env::set_var(key, value);
    }
    let (control, child_end) = Control::pair()?;
    // The held child becomes `airlockctl session-init --control FD PROGRAM
    // ARGV...`, which confines itself and then execs the command.
    let init = std::env::current_exe().context("finding airlockctl's own executable")?;
    let control_fd = child_end.as_raw_fd().to_string();
    let init_argv = [
        init.as_os_str(),
        std::ffi::OsStr::new(crate::confine::SUBCOMMAND),
        std::ffi::OsStr::new(crate::confine::CONTROL_ARG),
        std::ffi::OsStr::new(&control_fd),
        program.as_os_str(),
    ]
    .into_iter()
    .map(|a| a.as_encoded_bytes())
    .chain(command.iter().map(|a| a.as_bytes()))
    .map(CString::new)
    .collect::<Result<Vec<_>, _>>()
    .map_err(|_| anyhow!("an argument contains a NUL byte"))?;
    let init = CString::new(init.as_os_str().as_encoded_bytes())?;
    let role = role.map(str::to_owned).or_else(chosen_role);

    // The command must not start before it is governed: fork it held.
    let mut held = Held::spawn(&init, &init_argv, child_end)?;
    let started = match govern(&held, role.as_deref(), unenforced).await {
        Ok(started) => started,
        Err(e) => {
            held.abandon();
            return Err(e);
        }
    };
    // The terminal's ^C reaches the command directly; we only wait.
    // SAFETY: installing SIG_IGN has no handler code to be unsafe about.
    unsafe {
        let _ = signal::signal(Signal::SIGINT, SigHandler::SigIgn);
        let _ = signal::signal(Signal::SIGQUIT, SigHandler::SigIgn);
    }
    held.release()?;
    // Whatever goes wrong from here, session-init does not start the agent
    // unless it was told it may (and says why on its stderr).
    if let Err(e) = confine(&control, &started).await {
        eprintln!("airlock: {e:#}");
    }
    drop(control);
    held.wait()
}

/// How the command was put under governance.
enum Started {
    Session {
        gateway: Gateway1Proxy<'static>,
        session: SessionRecord,
        plan: Confinement,
    },
    Unenforced,
}

/// Tells session-init how to confine the session and, without BPF LSM,
/// hands its filter's listener to the enforcer through the gateway.
async fn confine(control: &Control, started: &Started) -> anyhow::Result<()> {
    let Started::Session {
        gateway,
        session,
        plan,
    } = started
    else {
        return control.send_plan(&Plan::Unenforced);
    };
    control.send_plan(&Plan::Session {
        protect: session.protect.clone(),
        confinement: plan.clone(),
    })?;
    if !plan.supervise {
        return Ok(());
    }
    let (_, listener) = control.receive()?;
    let listener = listener.ok_or_else(|| anyhow!("session-init sent no seccomp listener"))?;
    let attached = gateway
        .supervise_exec(&session.id, zbus::zvariant::Fd::from(&listener))
        .await
        .map_err(|e| bus::explain("seccomp supervisor", e));
    drop(listener);
    match attached {
        Ok(()) => {
            eprintln!(
                "airlock: enforcement: {}: the enforcer's seccomp supervisor refuses forbidden \
                 commands before they run; what races it is killed at exec commit. Some bypass \
                 guards are off; `airlockctl doctor` says how to fix it",
                EnforcementMode::Supervised.describe()
            );
            control.send(ATTACHED, None)
        }
        Err(e) => {
            control.send(&format!("{e:#}"), None)?;
            Err(e)
        }
    }
}

/// Puts `held` under enforcement, in `role` or the gateway's default role.
async fn govern(held: &Held, role: Option<&str>, unenforced: bool) -> anyhow::Result<Started> {
    let gateway = match bus::gateway().await {
        Ok(gateway) => gateway,
        Err(e) => {
            return Err(anyhow!(
                "{e:#}\nairlock: the agent was not started: it would run ungoverned. \
                 Without the gateway even --unenforced cannot be recorded in the audit log."
            ))
        }
    };
    let search_path = search_path();
    let pidfd = pidfd_open(held.pid)?;
    let started = gateway
        .start_session(role.into(), zbus::zvariant::Fd::from(&pidfd), search_path)
        .await;
    match started {
        Ok(session) => {
            let plan = gateway
                .session_confinement(&session.id)
                .await
                .map_err(|e| bus::explain("session confinement", e))?;
            // A supervised session says so once its supervisor has it.
            if plan.supervise {
                eprintln!(
                    "airlock: session {} (role {}) governs this command",
                    session.id, session.role
                );
            } else {
                eprintln!(
                    "airlock: session {} (role {}) governs this command; enforcement: {}",
                    session.id, session.role, session.enforcement
                );
            }
            if session.enforcement != EnforcementMode::Lsm && !plan.supervise {
                eprintln!(
                    "airlock: WARNING: enforcement is {}: without BPF LSM some bypass guards are \
                     off; `airlockctl doctor` says how to fix it",
                    session.enforcement
                );
            }
            Ok(Started::Session {
                gateway,
                session,
                plan,
            })
        }
        // Refused on purpose (a governed process starting another session):
        // neither a broken enforcer nor something --unenforced may skip.
        Err(zbus::Error::MethodError(name, message, _)) if name.ends_with(".AccessDenied") => {
            Err(anyhow!(
                "start session: {}",
                message.unwrap_or_else(|| name.to_string())
            ))
        }
        Err(e) if unenforced => {
            let error = bus::explain("start session", e);
            gateway
                .record_unenforced(role.into(), &format!("{error:#}"))
                .await
                .map_err(|e| bus::explain("record unenforced run", e))?;
            eprintln!(
                "airlock: WARNING: running UNENFORCED (--unenforced): {error:#}\n\
                 airlock: this run is recorded in the audit log; nothing is masked either"
            );
            Ok(Started::Unenforced)
        }
        Err(e) => Err(anyhow!(
            "{:#}\nairlock: the agent was not started: it would run ungoverned. Fix the \
             enforcer (`airlockctl doctor`), or pass --unenforced to run it anyway (audited).",
            bus::explain("start session", e)
        )),
    }
}
