//! Servers of the agent user that live outside the session, reachable over
//! sockets or signals, each of which runs `terraform apply` (the
//! catalogue's stand-in) when asked: a daemon on this machine's TCP and UDP
//! ports (standing in for `ssh localhost` or any local daemon), Unix
//! socket servers on an abstract name and on paths in /tmp, a tmux server
//! on a socket of its own, and a process that runs it on a signal. Each row
//! first runs ungoverned, as the same user, and must get the stand-in to
//! run; only then does a refusal inside a session count. The agent's own
//! servers inside the session must keep working.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::catalogue::{case, Bench, Case, Expect};
use crate::{users, Spawned, AGENT};

/// Runs one server: `server.py KIND WHERE READY [OUT]`. KIND is `tcp` or
/// `udp` (WHERE `v4` or `v6`: bound to every address of that family, `::`
/// dual-stack; `lo`: IPv4, bound to the loopback device), `unix` or `unix-dgram` (WHERE a path, or `@name` for an
/// abstract socket), or `signal` (runs on SIGUSR1, writing to OUT). Each
/// request is a word; the reply is what `terraform WORD` printed. READY
/// receives the port (or the pid) once it listens.
const SERVER: &str = r#"
import os, signal, socket, subprocess, sys, threading, time
kind, where, ready = sys.argv[1], sys.argv[2], sys.argv[3]

def run(word):
    word = word.strip() or "apply"
    done = subprocess.run(["terraform", word], capture_output=True, text=True)
    return (done.stdout + done.stderr).encode()

def announce(text):
    with open(ready + ".tmp", "w") as f:
        f.write(text)
    os.rename(ready + ".tmp", ready)

def address(where):
    return "\0" + where[1:] if where.startswith("@") else where

def handle(conn):
    with conn:
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        conn.sendall(run(data.decode()))

def serve_stream(s):
    s.listen(16)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()

def serve_datagrams(s):
    while True:
        data, peer = s.recvfrom(4096)
        s.sendto(run(data.decode()), peer)

if kind in ("tcp", "udp"):
    family = socket.AF_INET6 if where == "v6" else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    if where == "lo":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
    announce(str(s.getsockname()[1]))
    serve_stream(s) if kind == "tcp" else serve_datagrams(s)
elif kind in ("unix", "unix-dgram"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM if kind == "unix" else socket.SOCK_DGRAM)
    s.bind(address(where))
    announce("ok")
    serve_stream(s) if kind == "unix" else serve_datagrams(s)
elif kind == "signal":
    out = sys.argv[4]
    def on_signal(signum, frame):
        data = run("apply")
        with open(out + ".tmp", "wb") as f:
            f.write(data)
        os.rename(out + ".tmp", out)
    signal.signal(signal.SIGUSR1, on_signal)
    announce(str(os.getpid()))
    while True:
        time.sleep(3600)
"#;

/// `client.py KIND TARGET WORD [HOLD]`: sends WORD and prints the reply, or
/// the error; given HOLD, a refused client then waits (at most 30 s) for that
/// file before exiting, so that the enforcer can still name its executable
/// from /proc when it records the refusal. KIND is `tcp`, `tfo` (TCP fast open: the data goes with the
/// SYN, through `sendto`), `udp` (TARGET `host:port`, `[v6]:port`),
/// `unix` or `unix-dgram` (TARGET a path or `@name`).
const CLIENT: &str = r#"
import os, socket, sys, time
kind, target, word = sys.argv[1], sys.argv[2], sys.argv[3]
hold = sys.argv[4] if len(sys.argv) > 4 else None
message = (word + "\n").encode()
try:
    if kind in ("tcp", "tfo", "udp"):
        host, port = target.rsplit(":", 1)
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        datagram = kind == "udp"
        s = socket.socket(family, socket.SOCK_DGRAM if datagram else socket.SOCK_STREAM)
        dest = (host, int(port))
        if kind == "tcp":
            s.settimeout(20)
            s.connect(dest)
            s.sendall(message)
        elif kind == "tfo":
            # Blocking: a timeout makes the socket non-blocking, and the
            # connection would still be in progress when sendto returns.
            s.sendto(message, socket.MSG_FASTOPEN, dest)
            s.settimeout(20)
        else:
            s.settimeout(20)
            s.sendto(message, dest)
    else:
        name = "\0" + target[1:] if target.startswith("@") else target
        datagram = kind == "unix-dgram"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM if datagram else socket.SOCK_STREAM)
        s.settimeout(20)
        if datagram:
            s.bind("")
            s.sendto(message, name)
        else:
            s.connect(name)
            s.sendall(message)
    reply = b""
    while True:
        chunk = s.recv(65536)
        reply += chunk
        if not chunk or datagram:
            break
    print(reply.decode(errors="replace"))
except OSError as e:
    print("client:", e, flush=True)
    deadline = time.monotonic() + 30
    while hold and not os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.01)
"#;

/// Where a container engine listens (`/var/run` is a link to `/run`).
const ENGINE_SOCKET: &str = "/run/docker.sock";

/// The servers outside the session, and where they listen.
pub struct Servers {
    /// The agent user's directory in /tmp for sockets and readiness files.
    dir: PathBuf,
    server: PathBuf,
    client: PathBuf,
    tcp_port: u16,
    udp_port: u16,
    /// A TCP daemon bound to the loopback device (`SO_BINDTODEVICE`).
    device_port: u16,
    /// The TCP server is bound dual-stack (IPv6 works here).
    v6: bool,
    /// This machine's own addresses other than loopback (at most one of
    /// each family).
    own_addrs: Vec<IpAddr>,
    abstract_name: String,
    signal_pid: u32,
    tmux_socket: PathBuf,
    _processes: Vec<Spawned>,
}

fn agent_uid() -> u32 {
    users::uid(AGENT.name).as_raw()
}

/// `program ARGS` as the agent user, outside any session, with the bench's
/// PATH (so `terraform` is the stand-in) and a shell tmux can use.
fn as_agent(bench: &Bench, program: &str, args: &[&str]) -> Command {
    let mut command = users::setpriv_as(AGENT.name);
    command
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", bench.path())
        .env("SHELL", "/bin/sh")
        .env("HOME", &bench.work)
        .current_dir(&bench.work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = fs::read_to_string(path) {
            if !text.is_empty() {
                return text.trim().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared: a server outside the session did not start",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// This machine's addresses other than loopback and link-local: the first
/// IPv4 and the first IPv6 one.
fn own_addresses() -> Vec<IpAddr> {
    let mut found: Vec<IpAddr> = Vec::new();
    for interface in nix::ifaddrs::getifaddrs().into_iter().flatten() {
        let Some(addr) = interface.address else {
            continue;
        };
        let ip = match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
            (Some(v4), _) => IpAddr::V4(v4.ip()),
            (_, Some(v6)) => IpAddr::V6(v6.ip()),
            _ => continue,
        };
        let link_local = matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        if ip.is_loopback() || link_local || found.iter().any(|f| f.is_ipv4() == ip.is_ipv4()) {
            continue;
        }
        found.push(ip);
    }
    found
}

impl Servers {
    /// Starts the servers as the agent user, outside any session.
    pub fn start(bench: &Bench) -> Servers {
        // A VM's init may leave loopback down.
        let _ = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        let tag = bench
            .work
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = PathBuf::from(format!("/tmp/airlock-sockets-{tag}"));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        chown(&dir, Some(agent_uid()), Some(agent_uid())).unwrap();
        let server = bench.bin.join("socket-server.py");
        let client = bench.bin.join("socket-client.py");
        fs::write(&server, SERVER).unwrap();
        fs::write(&client, CLIENT).unwrap();

        let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
        let mut processes = Vec::new();
        let mut start = |kind: &str, at: &str, ready: &str, out: &str| {
            let ready = dir.join(ready);
            let mut args = vec![server.to_str().unwrap(), kind, at, ready.to_str().unwrap()];
            if !out.is_empty() {
                args.push(out);
            }
            let child = as_agent(bench, "python3", &args).spawn().unwrap();
            processes.push(Spawned(child));
            wait_for_file(&ready)
        };
        let family = if v6 { "v6" } else { "v4" };
        let tcp_port = start("tcp", family, "tcp.ready", "").parse().unwrap();
        let udp_port = start("udp", "v4", "udp.ready", "").parse().unwrap();
        let device_port = start("tcp", "lo", "device.ready", "").parse().unwrap();
        let abstract_name = format!("@airlock-test-{tag}");
        start("unix", &abstract_name, "abstract.ready", "");
        let stream = dir.join("server.sock");
        start("unix", stream.to_str().unwrap(), "unix.ready", "");
        let dgram = dir.join("dgram.sock");
        start("unix-dgram", dgram.to_str().unwrap(), "dgram.ready", "");
        let signal_out = bench.work.join("signal.out");
        let signal_pid = start("signal", "-", "signal.ready", signal_out.to_str().unwrap())
            .parse()
            .unwrap();

        let tmux_socket = dir.join("tmux");
        let status = as_agent(
            bench,
            "tmux",
            &[
                "-S",
                tmux_socket.to_str().unwrap(),
                "new-session",
                "-d",
                "-s",
                "outside",
                "sleep 100000",
            ],
        )
        .status()
        .expect("tmux (install the tmux package)");
        assert!(
            status.success(),
            "starting a tmux server outside the session"
        );

        // A container engine's socket, where root's daemon listens (docker,
        // podman): a stand-in server run by root, open to the user (as the
        // `docker` group makes it). The session masks the path.
        let engine = PathBuf::from(ENGINE_SOCKET);
        let _ = fs::remove_file(&engine);
        let ready = dir.join("engine.ready");
        let child = Command::new("python3")
            .args([server.to_str().unwrap(), "unix", ENGINE_SOCKET])
            .arg(&ready)
            .env_clear()
            .env("PATH", bench.path())
            .current_dir(&bench.work)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        processes.push(Spawned(child));
        wait_for_file(&ready);
        fs::set_permissions(&engine, fs::Permissions::from_mode(0o666)).unwrap();

        Servers {
            dir,
            server,
            client,
            tcp_port,
            udp_port,
            device_port,
            v6,
            own_addrs: own_addresses(),
            abstract_name,
            signal_pid,
            tmux_socket,
            _processes: processes,
        }
    }

    /// The port of the TCP daemon outside the session (every address).
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }

    /// The port of the UDP daemon outside the session (every address).
    pub fn udp_port(&self) -> u16 {
        self.udp_port
    }

    /// A script line sending `word` to the server at `target` (see the
    /// client's kinds) and printing the reply or the error.
    pub fn client(&self, kind: &str, target: &str, word: &str) -> String {
        format!("python3 {} {kind} {target} {word}", self.client.display())
    }

    /// The catalogue's rows for them.
    pub fn cases(&self, bench: &Bench) -> Vec<Case> {
        let tcp = |host: &str| format!("{host}:{}", self.tcp_port);
        let work = bench.work.display();
        let stream = self.dir.join("server.sock");
        let dgram = self.dir.join("dgram.sock");
        let path_gap = "without BPF LSM nothing refuses a Unix socket bound to a path outside the \
                        masked directories (Landlock before ABI 9 cannot scope them)";
        let mut cases = vec![
            outside(
                "TCP to a daemon on 127.0.0.1 (ssh localhost)",
                self.client("tcp", &tcp("127.0.0.1"), "apply"),
            ),
            outside(
                "TCP to 127.0.0.2 (the rest of 127/8)",
                self.client("tcp", &tcp("127.0.0.2"), "apply"),
            ),
            outside(
                "TCP to 0.0.0.0 (connects to this machine)",
                self.client("tcp", &tcp("0.0.0.0"), "apply"),
            ),
            outside(
                "TCP fast open to 127.0.0.1 (data in the SYN)",
                self.client("tfo", &tcp("127.0.0.1"), "apply"),
            ),
            // The program's lookup cannot see a listener bound to a device;
            // the connection fails as if nothing listened (not audited).
            Case {
                layer: Some("connect"),
                ..outside(
                    "TCP to a daemon bound to the lo device",
                    self.client("tcp", &format!("127.0.0.1:{}", self.device_port), "apply"),
                )
            },
            outside(
                "UDP datagram to a daemon on 127.0.0.1",
                self.client("udp", &format!("127.0.0.1:{}", self.udp_port), "apply"),
            ),
        ];
        if self.v6 {
            cases.push(outside(
                "TCP to ::1",
                self.client("tcp", &tcp("[::1]"), "apply"),
            ));
            cases.push(outside(
                "TCP to ::ffff:127.0.0.1 (IPv4-mapped)",
                self.client("tcp", &tcp("[::ffff:127.0.0.1]"), "apply"),
            ));
        }
        for ip in &self.own_addrs {
            let (name, host) = match ip {
                IpAddr::V4(v4) => ("TCP to this machine's IPv4 address", v4.to_string()),
                IpAddr::V6(v6) => ("TCP to this machine's IPv6 address", format!("[{v6}]")),
            };
            if ip.is_ipv6() && !self.v6 {
                continue;
            }
            cases.push(outside(name, self.client("tcp", &tcp(&host), "apply")));
        }
        cases.extend([
            Case {
                layer: Some("landlock"),
                ..outside(
                    "abstract Unix socket server",
                    self.client("unix", &self.abstract_name, "apply"),
                )
            },
            Case {
                degraded_gap: Some(path_gap),
                ..outside(
                    "Unix socket server in /tmp",
                    self.client("unix", &stream.display().to_string(), "apply"),
                )
            },
            Case {
                degraded_gap: Some(path_gap),
                ..outside(
                    "Unix datagram socket in /tmp",
                    self.client("unix-dgram", &dgram.display().to_string(), "apply"),
                )
            },
            Case {
                degraded_gap: Some(path_gap),
                ..outside(
                    "tmux -S a socket in /tmp (server started before the session)",
                    format!(
                        "rm -f tmux.out; tmux -S {} new-window 'terraform apply > {work}/tmux.out \
                         2>&1' && {}",
                        self.tmux_socket.display(),
                        wait_and_show("tmux.out")
                    ),
                )
            },
            Case {
                layer: Some("namespace"),
                ..outside(
                    "a container engine's socket (/run/docker.sock, root's stand-in daemon)",
                    self.client("unix", ENGINE_SOCKET, "apply"),
                )
            },
            Case {
                layer: Some("landlock"),
                ..outside(
                    "signal to a process outside the session",
                    format!(
                        "rm -f signal.out; kill -USR1 {} && {}",
                        self.signal_pid,
                        wait_and_show("signal.out")
                    ),
                )
            },
            own(
                "the agent's own TCP server on localhost",
                self.own_server("tcp", "v4", |port| {
                    self.client("tcp", &format!("127.0.0.1:{port}"), "init")
                }),
            ),
            own(
                "the agent's own Unix socket server (path)",
                self.own_server("unix", &format!("{work}/own.sock"), |_| {
                    self.client("unix", &format!("{work}/own.sock"), "init")
                }),
            ),
            own(
                "the agent's own Unix socket server (abstract)",
                self.own_server("unix", &format!("{}-own", self.abstract_name), |_| {
                    self.client("unix", &format!("{}-own", self.abstract_name), "init")
                }),
            ),
            // A client waiting for its own server to come up sees what it
            // would without Airlock.
            Case {
                proof: "Connection refused",
                ..own(
                    "nothing listening on localhost: connection refused",
                    self.client("tcp", "127.0.0.1:1", "init"),
                )
            },
            Case {
                proof: "gateway:   running",
                ..own(
                    "the system bus stays reachable (airlockctl status)",
                    format!("{} status", crate::bin("airlockctl").display()),
                )
            },
        ]);
        cases
    }

    /// A script that starts `server.py KIND WHERE` in the session, waits
    /// for it, runs `client(port)` against it and stops it.
    fn own_server(&self, kind: &str, at: &str, client: impl Fn(&str) -> String) -> String {
        format!(
            "rm -f own.ready own.sock; python3 {server} {kind} {at} own.ready & srv=$!; {wait}; \
             {client}; kill $srv",
            server = self.server.display(),
            wait = wait_until("own.ready"),
            client = client("$(cat own.ready)"),
        )
    }
}

/// `airlockctl doctor`'s line for each channel, and the catalogue row that
/// shows what the kernel does with it.
const DOCTOR_LINES: [(&str, &str); 4] = [
    (
        "sockets: TCP/UDP to this machine",
        "TCP to a daemon on 127.0.0.1 (ssh localhost)",
    ),
    ("sockets: abstract Unix", "abstract Unix socket server"),
    (
        "sockets: Unix sockets bound to a path",
        "Unix socket server in /tmp",
    ),
    (
        "signals to processes outside",
        "signal to a process outside the session",
    ),
];

/// Checks that `airlockctl doctor` tells the truth about this kernel: a
/// channel it reports `ok` was refused in the catalogue (`refused(row)`),
/// one it warns about got through.
pub fn doctor_agrees(
    system: &crate::System,
    refused: impl Fn(&str) -> Option<bool>,
) -> Result<String, String> {
    let out = system.ctl(&AGENT, &["doctor"], "");
    let mut said = Vec::new();
    for (what, row) in DOCTOR_LINES {
        let line = out
            .stdout
            .lines()
            .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(what)))
            .ok_or_else(|| format!("doctor says nothing about {what}: {out:?}"))?;
        let claims_refused = line.starts_with("ok ");
        match refused(row) {
            Some(seen) if seen == claims_refused => {
                said.push(format!("{what}: {}", if seen { "ok" } else { "WARN" }))
            }
            Some(seen) => {
                return Err(format!(
                    "doctor says `{line}`, but the catalogue's `{row}` was {}",
                    if seen { "refused" } else { "not refused" }
                ))
            }
            None => return Err(format!("the catalogue has no row `{row}`")),
        }
    }
    Ok(said.join("; "))
}

/// Waits (up to 10 s) for `file` to be written, then prints it.
fn wait_and_show(file: &str) -> String {
    format!("{}; cat {file}", wait_until(file))
}

fn wait_until(file: &str) -> String {
    format!("i=0; while [ ! -s {file} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done")
}

/// A row reaching a server outside the session: it must work ungoverned,
/// and be refused in the session.
fn outside(name: &'static str, script: String) -> Case {
    Case {
        ungoverned_first: true,
        ..case(name, script)
    }
}

/// A row the session must keep working (its own servers, the bus).
fn own(name: &'static str, script: String) -> Case {
    Case {
        expect: Expect::Runs,
        ..case(name, script)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = users::setpriv_as(AGENT.name)
            .args(["tmux", "-S"])
            .arg(&self.tmux_socket)
            .arg("kill-server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(ENGINE_SOCKET);
    }
}
