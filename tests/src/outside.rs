//! What lives outside a governed session and must stay out of its reach:
//! the agent user's credential files (fake ones, in their real home) and
//! servers the user started before the session (a tmux server, a screen
//! session, an ssh agent, the user's session bus, a plain process whose
//! `/proc/PID/root` shows the unmasked files), and the machine's job
//! schedulers that would run a command for the user later (`atd`, the
//! crontab spool).
//!
//! Each case is first run *ungoverned* as the same user and must get at
//! the thing (print its proof); only then does a refusal inside a session
//! count.

use std::fs;
use std::os::unix::fs::{chown, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::catalogue::{Bench, Case, Expect};
use crate::{users, Spawned, System, AGENT};

/// In every fake credential file: its appearance in a case's output means
/// the secret leaked.
pub const SECRET: &str = "AIRLOCK-FAKE-SECRET";

/// Fake credentials, one per kind the default protect list names, at the
/// place each tool reads them from.
const CREDENTIALS: &[&str] = &[
    ".aws/credentials",
    ".kube/config",
    ".config/gcloud/application_default_credentials.json",
    ".azure/msal_token_cache.json",
    ".ssh/deploy_key",
    ".docker/config.json",
    ".netrc",
    ".git-credentials",
    ".config/gh/hosts.yml",
    ".terraform.d/credentials.tfrc.json",
    ".pgpass",
];

/// The comment of the fake SSH key (in its public half, which stays
/// readable).
const KEY_COMMENT: &str = "airlock-fake-key";

/// The user's credential files and servers outside the session.
pub struct Outside {
    /// The agent user's home, from its passwd entry (the session's `$HOME`
    /// is elsewhere: the masks must not depend on it).
    pub home: PathBuf,
    private_key: Vec<u8>,
    public_key: Vec<u8>,
    /// A process of the agent user, outside any session, its cwd the home.
    sleeper: Spawned,
    /// Ended (by its pid) when dropped.
    _ssh_agent: Spawned,
    /// The ssh agent's socket (holding the fake key).
    pub ssh_socket: PathBuf,
    /// A tmux server's socket in the user's runtime directory, standing in
    /// for every server there (the systemd user manager, the session bus,
    /// gpg-agent, podman).
    pub runtime_socket: PathBuf,
    /// The user's session bus (a real `dbus-daemon --session`) in its
    /// runtime directory, where `systemd-run --user` and D-Bus-activated
    /// services are reached.
    pub session_bus: PathBuf,
    _session_bus_daemon: Spawned,
    /// `atd`, run by root as its package would.
    _atd: Spawned,
    /// What to undo when done.
    cleanup: Vec<PathBuf>,
    uid: u32,
}

fn agent_uid() -> u32 {
    users::uid(AGENT.name).as_raw()
}

/// Runs `script` as the agent user outside any session, with `path`.
fn as_agent(script: &str, path: &str) -> std::process::Output {
    users::setpriv_as(AGENT.name)
        .args(["/bin/sh", "-c", script])
        .env_clear()
        .env("PATH", path)
        .env("SHELL", "/bin/sh")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn make_dir(path: &Path, mode: u32, owner: Option<u32>) {
    if !path.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
            .unwrap();
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    if let Some(uid) = owner {
        chown(path, Some(uid), Some(uid)).unwrap();
    }
}

impl Outside {
    /// Fills the agent user's home with fake credentials and starts its
    /// servers, all outside any session.
    pub fn start(system: &System, bench: &Bench) -> Outside {
        let uid = agent_uid();
        let home = users::home(AGENT.name);
        make_dir(&home, 0o700, Some(uid));
        let mut cleanup = Vec::new();

        // A real key, so the ssh agent accepts it.
        let keys = system.path("fake-key");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", KEY_COMMENT, "-f"])
            .arg(&keys)
            .status()
            .expect("ssh-keygen (install openssh-client)");
        assert!(status.success());
        let private_key = fs::read(&keys).unwrap();
        let public_key = fs::read(keys.with_extension("pub")).unwrap();

        let path = bench.path();
        let sleeper = users::setpriv_as(AGENT.name)
            .args(["/bin/sh", "-c", "cd \"$0\" && exec sleep 100000"])
            .arg(&home)
            .env_clear()
            .stdin(Stdio::null())
            .spawn()
            .unwrap();

        // ssh-agent's own layout: a private directory in /tmp.
        let ssh_dir = PathBuf::from(format!(
            "/tmp/ssh-{}",
            system.dir.path().file_name().unwrap().to_string_lossy()
        ));
        make_dir(&ssh_dir, 0o700, Some(uid));
        cleanup.push(ssh_dir.clone());
        let ssh_socket = ssh_dir.join("agent.1");

        // The user's runtime directory (logind makes it; the VM has none).
        let runtime = PathBuf::from(format!("/run/user/{uid}"));
        if !runtime.exists() {
            make_dir(Path::new("/run/user"), 0o755, None);
            make_dir(&runtime, 0o700, Some(uid));
            cleanup.push(runtime.clone());
        }
        let runtime_socket = runtime.join("airlock-test-server");
        let session_bus = runtime.join("bus");
        let session_bus_daemon = users::setpriv_as(AGENT.name)
            .args(["dbus-daemon", "--session", "--nofork"])
            .arg(format!("--address=unix:path={}", session_bus.display()))
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("dbus-daemon (install dbus-daemon)");
        let atd = start_atd();
        // screen's socket directory, as its package makes it.
        if !Path::new("/run/screen").exists() {
            make_dir(Path::new("/run/screen"), 0o1777, None);
            cleanup.push(PathBuf::from("/run/screen"));
        }

        let ssh_agent = users::setpriv_as(AGENT.name)
            .args(["ssh-agent", "-D", "-a"])
            .arg(&ssh_socket)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent (install openssh-client)");
        let outside = Outside {
            home,
            private_key,
            public_key,
            sleeper: Spawned(sleeper),
            _ssh_agent: Spawned(ssh_agent),
            ssh_socket,
            runtime_socket,
            session_bus,
            _session_bus_daemon: Spawned(session_bus_daemon),
            _atd: atd,
            cleanup,
            uid,
        };
        outside.reset();
        let started = as_agent(
            &format!(
                "tmux new-session -d -s outside 'sleep 100000' && \
                 tmux -S {runtime} new-session -d -s outside 'sleep 100000' && \
                 screen -dmS outside sleep 100000 && \
                 i=0; while [ ! -S {ssh} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
                 SSH_AUTH_SOCK={ssh} ssh-add -q {key} && \
                 i=0; while [ ! -S {bus} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
                 [ -S {bus} ]",
                bus = outside.session_bus.display(),
                runtime = outside.runtime_socket.display(),
                ssh = outside.ssh_socket.display(),
                key = outside.home.join(".ssh/id_ed25519").display(),
            ),
            &path,
        );
        assert!(
            started.status.success(),
            "starting the servers outside the session: {started:?} (install tmux, screen, openssh-client)"
        );
        outside
    }

    /// Puts the fake credentials back as they were (a case run ungoverned
    /// may have changed them, as it was meant to).
    pub fn reset(&self) {
        let entries = fs::read_dir(&self.home).unwrap();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path).unwrap();
            } else {
                fs::remove_file(&path).unwrap();
            }
        }
        let write = |rel: &str, bytes: &[u8], mode: u32| {
            let path = self.home.join(rel);
            let mut dir = path.parent().unwrap().to_path_buf();
            let mut dirs = Vec::new();
            while dir != self.home {
                dirs.push(dir.clone());
                dir = dir.parent().unwrap().to_path_buf();
            }
            for dir in dirs.iter().rev() {
                make_dir(dir, 0o700, Some(self.uid));
            }
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            chown(&path, Some(self.uid), Some(self.uid)).unwrap();
        };
        for rel in CREDENTIALS {
            write(rel, format!("{SECRET} {rel}\n").as_bytes(), 0o600);
        }
        write(".ssh/id_ed25519", &self.private_key, 0o600);
        write(".ssh/id_ed25519.pub", &self.public_key, 0o644);
        write(
            ".ssh/known_hosts",
            format!("host.example {KEY_COMMENT}-known\n").as_bytes(),
            0o644,
        );
    }

    pub fn sleeper_pid(&self) -> u32 {
        self.sleeper.id()
    }

    /// The catalogue's rows for what lives outside the session.
    pub fn cases(&self, bench: &Bench) -> Vec<Case> {
        let home = self.home.display();
        let aws = format!("{home}/.aws/credentials");
        // A private key under another name than id_*: masked as a file.
        let key = format!("{home}/.ssh/deploy_key");
        let ssh_key = format!("{home}/.ssh/id_ed25519");
        let every: Vec<String> = CREDENTIALS
            .iter()
            .map(|rel| format!("{home}/{rel}"))
            .collect();
        let pid = self.sleeper_pid();
        let work = bench.work.display();
        let wait_for = |file: &str| {
            format!(
                "i=0; while [ ! -s {file} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; cat {file}"
            )
        };
        let nested = format!(
            "python3 -c '{}' {home} {work}/revealed",
            NESTED_NAMESPACE.replace('\'', "\"")
        );
        vec![
            secret("read every default credential file", format!("cat {}", every.join(" "))),
            secret("read ~/.aws/credentials", format!("cat {aws}")),
            secret("read the SSH private key", format!("cat {ssh_key}")).proving("PRIVATE KEY"),
            secret("list ~/.aws", format!("ls -a {home}/.aws | sed 's/^/LISTED /'"))
                .proving("LISTED credentials"),
            secret(
                "write ~/.aws/credentials",
                format!("echo x >> {aws} && echo WROTE-SECRET"),
            )
            .proving("WROTE-SECRET"),
            secret(
                "write the SSH private key",
                format!("echo x >> {key} && echo WROTE-SECRET"),
            )
            .proving("WROTE-SECRET"),
            secret(
                "hard link the credentials out",
                // Into the home: a hard link cannot leave its file system.
                format!("ln {aws} {home}/l1; ln {key} {home}/l2; cat {home}/l1 {home}/l2"),
            ),
            secret(
                "symlink to the credentials",
                format!("rm -f s1; ln -s {aws} s1; cat s1"),
            ),
            secret(
                "rename the credentials out",
                format!(
                    "mv {home}/.aws {home}/aws-moved; cat {home}/aws-moved/credentials; \
                     mv {key} {home}/moved-key; cat {home}/moved-key"
                ),
            ),
            secret(
                "rename the parent directory",
                format!("mv {home}/.config {home}/cfg && cat {home}/cfg/gh/hosts.yml"),
            ),
            secret(
                "copy the credentials",
                format!("rm -rf c1 c2; cp -r {home}/.aws c1; cp {key} c2; cat c1/credentials c2"),
            ),
            secret(
                "unmount or bind-reveal in a nested user+mount namespace",
                nested,
            ),
            secret(
                "/proc/PID/root of a process outside",
                format!("cat /proc/{pid}/root{aws}"),
            ),
            secret(
                "/proc/PID/cwd of a process outside",
                format!("cat /proc/{pid}/cwd/.aws/credentials"),
            ),
            secret(
                "open /proc/self/mem for writing",
                "python3 -c 'import os; fd = os.open(\"/proc/self/mem\", os.O_RDWR); print(\"OPENED-MEM\")'".into(),
            )
            .proving("OPENED-MEM"),
            Case {
                expect: Expect::Runs,
                ..secret(
                    "public key and known_hosts stay readable",
                    format!("cat {ssh_key}.pub {home}/.ssh/known_hosts"),
                )
                .proving(KEY_COMMENT)
            },
            helper(
                "tmux server started before the session",
                format!(
                    "rm -f tmux.out; tmux new-window 'terraform apply > {work}/tmux.out 2>&1' && {}",
                    wait_for("tmux.out")
                ),
            ),
            helper(
                "tmux -S a socket in /run/user/UID",
                format!(
                    "rm -f run.out; tmux -S {} new-window 'terraform apply > {work}/run.out 2>&1' && {}",
                    self.runtime_socket.display(),
                    wait_for("run.out")
                ),
            ),
            helper(
                "screen session started before the session",
                format!(
                    "rm -f screen.out; screen -S outside -X screen sh -c 'terraform apply > {work}/screen.out 2>&1' && {}",
                    wait_for("screen.out")
                ),
            ),
            helper(
                "the user's ssh agent",
                format!("SSH_AUTH_SOCK={} ssh-add -L", self.ssh_socket.display()),
            )
            .proving(KEY_COMMENT),
            helper(
                "the user's session bus (systemd-run --user's road)",
                format!(
                    "dbus-send --bus=unix:path={} --print-reply --dest=org.freedesktop.DBus \
                     /org/freedesktop/DBus org.freedesktop.DBus.ListNames && echo BUS-REACHED",
                    self.session_bus.display()
                ),
            )
            .proving("BUS-REACHED"),
        ]
        .into_iter()
        .chain(std::iter::once(
            // atd runs the job as the user at once (`at` wakes it).
            Case {
                layer: Some("permissions"),
                ..helper(
                    "an at job for the user's atd",
                    format!(
                        "rm -f at.out; echo 'terraform apply > {work}/at.out 2>&1' | at now 2>&1; {}",
                        wait_for("at.out")
                    ),
                )
            },
        ))
        .chain(std::iter::once(Case {
            // cron runs what the spool holds every minute: getting the
            // entry into the spool is getting the command run.
            layer: Some("permissions"),
            proof: "CRONTAB INSTALLED",
            ..helper(
                "a crontab entry for the user's cron",
                "echo '* * * * * terraform apply' | crontab - 2>&1 && crontab -l | grep -q \
                 'terraform apply' && echo CRONTAB INSTALLED; crontab -r 2>/dev/null; true"
                    .into(),
            )
        }))
        .collect()
    }
}

/// In a new user and mount namespace (the agent holds every capability
/// there): unmount the mask, then bind-mount the home without its
/// submounts, which would show what the masks cover.
const NESTED_NAMESPACE: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
home, target = sys.argv[1], sys.argv[2]
def call(what, rc):
    if rc != 0:
        print(what + ":", os.strerror(ctypes.get_errno()))
call("unshare", libc.unshare(0x10000000 | 0x00020000))
call("umount", libc.umount2((home + "/.aws").encode(), 0))
call("umount -l", libc.umount2((home + "/.aws").encode(), 2))
os.makedirs(target, exist_ok=True)
call("bind", libc.mount(home.encode(), target.encode(), None, 4096, None))
for path in (home + "/.aws/credentials", target + "/.aws/credentials"):
    try:
        print(open(path).read())
    except OSError as e:
        print(path + ":", e.strerror)
"#;

fn secret(name: &'static str, script: String) -> Case {
    Case {
        proof: SECRET,
        ungoverned_first: true,
        layer: Some("namespace"),
        ..crate::catalogue::case(name, script)
    }
}

fn helper(name: &'static str, script: String) -> Case {
    Case {
        ungoverned_first: true,
        layer: Some("namespace"),
        ..crate::catalogue::case(name, script)
    }
}

impl Case {
    /// The text that shows the case worked.
    fn proving(self, proof: &'static str) -> Case {
        Case { proof, ..self }
    }
}

/// Starts `atd` in the foreground, as root, as its package would; first
/// gives it a writable spool if the root file system is read-only (the VM
/// shares this machine's root). The crontab spool gets the same.
fn start_atd() -> Spawned {
    let spool = Path::new("/var/spool/cron");
    let writable =
        fs::create_dir_all(spool).is_ok() && fs::write(spool.join(".airlock-probe"), b"").is_ok();
    let _ = fs::remove_file(spool.join(".airlock-probe"));
    if !writable {
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0755", "airlock-spool"])
            .arg(spool)
            .status();
        assert!(
            mounted.is_ok_and(|s| s.success()),
            "a writable {}",
            spool.display()
        );
        // As the at and cron packages make them.
        for (dir, owner, mode) in [
            ("atjobs", "daemon:daemon", "1770"),
            ("atspool", "daemon:daemon", "1750"),
            ("crontabs", "root:crontab", "1730"),
        ] {
            let dir = spool.join(dir);
            fs::create_dir_all(&dir).unwrap();
            let _ = Command::new("chown").arg(owner).arg(&dir).status();
            let _ = Command::new("chmod").arg(mode).arg(&dir).status();
        }
        let _ = fs::write(spool.join("atjobs/.SEQ"), b"0\n");
        let _ = Command::new("chown")
            .arg("daemon:daemon")
            .arg(spool.join("atjobs/.SEQ"))
            .status();
    }
    let child = Command::new("/usr/sbin/atd")
        .arg("-f")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("atd (install at)");
    Spawned(child)
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = as_agent(
            &format!(
                "tmux kill-server; tmux -S {} kill-server; screen -S outside -X quit",
                self.runtime_socket.display(),
            ),
            "/usr/bin:/bin",
        );
        for path in self.cleanup.iter().rev() {
            let _ = fs::remove_dir_all(path);
        }
    }
}
