//! Harness for Airlock's system tests.
//!
//! Each [`System`] is a private, real deployment: a real `dbus-daemon` whose
//! configuration is Debian's own `system.conf` plus Airlock's shipped bus
//! policy, real Unix users, and `airlock-totp` and `airlock-gateway` running
//! as their own users with state directories owned as in production. Agent
//! and approver actions run the real `airlockctl` as those users.
//!
//! The tests need root (to create users and switch to them) and
//! `dbus-daemon`; they fail, not skip, without them.

#![forbid(unsafe_code)]

pub mod catalogue;
pub mod dovecot;
pub mod enforcer;
pub mod forged_grants;
pub mod mcp_client;
pub mod outside;
pub mod proxy;
pub mod sockets;
pub mod totp;
pub mod upstream;
pub mod users;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use airlock_common::dbus::{Gateway1Proxy, Totp1Proxy};
use airlock_common::names;

pub use users::{TestUser, AGENT, APPROVER, OUTSIDER};

/// Where cargo put the workspace's binaries (target/debug).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/system-xxxx (a test) or target/debug/x (a binary)
    let dir = exe.parent().expect("target dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`; scripts/test does)",
        path.display()
    );
    path
}

/// A process's resident memory (`VmRSS`), KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status_field(pid, "VmRSS:")
}

/// A process's thread count.
pub fn threads(pid: u32) -> u64 {
    proc_status_field(pid, "Threads:")
}

fn proc_status_field(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds a bus configuration from the distribution's `system.conf`, so the
/// default-deny rules are the real ones, with Airlock's policy file included
/// and a private socket instead of /run/dbus.
fn bus_config(socket: &Path, policy: &Path, extra_policy: Option<&Path>) -> String {
    let system = fs::read_to_string("/usr/share/dbus-1/system.conf")
        .expect("/usr/share/dbus-1/system.conf (install the dbus package)");
    let mut out = String::new();
    for line in system.lines() {
        let t = line.trim();
        let drop = t.starts_with("<user>")
            || t == "<fork/>"
            || t.starts_with("<pidfile>")
            || t == "<syslog/>"
            || t.starts_with("<servicehelper>")
            || t == "<standard_system_servicedirs/>"
            || t.starts_with("<includedir>")
            || t.starts_with("<include ")
            || t.starts_with("<include>");
        if t.starts_with("<listen>") {
            out.push_str(&format!(
                "  <listen>unix:path={}</listen>\n",
                socket.display()
            ));
        } else if t == "</busconfig>" {
            out.push_str(&format!("  <include>{}</include>\n", policy.display()));
            if let Some(extra) = extra_policy {
                out.push_str(&format!("  <include>{}</include>\n", extra.display()));
            }
            out.push_str(line);
            out.push('\n');
        } else if !drop {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Creates `dir` with `files`, or with a copy of the repository's
/// `shipped` directory.
fn fill_dir(dir: &Path, files: Option<&[(String, String)]>, shipped: &str) {
    fs::create_dir(dir).unwrap();
    match files {
        Some(files) => {
            for (name, text) in files {
                fs::write(dir.join(name), text).unwrap();
            }
        }
        None => {
            for entry in fs::read_dir(repo_root().join(shipped)).unwrap() {
                let entry = entry.unwrap();
                fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
            }
        }
    }
}

/// Options for a [`System`].
#[derive(Clone, Default)]
pub struct Options {
    /// Extra `key = value` lines for the `[gateway]` section of airlock.toml;
    /// values are TOML (strings need their quotes).
    pub gateway_config: Vec<(&'static str, &'static str)>,
    /// Replace the shipped policy directory with these files.
    pub policies: Option<Vec<(String, String)>>,
    /// Replace the shipped service definitions (services/) with these files.
    pub services: Option<Vec<(String, String)>>,
    /// A bus policy that lets everyone call everything, to prove the
    /// services' own uid checks (defence in depth).
    pub permissive_bus: bool,
    /// Also run airlock-enforcer (as root), with its own bpffs pin
    /// directory and session cgroup parent.
    pub enforcer: bool,
    /// The daemons and airlockctl of another build (a benchmark's baseline
    /// revision) with that revision's bus policy; such a gateway may not
    /// have its audit head countersigned, so start-up does not wait for it.
    pub other_build: Option<OtherBuild>,
    /// Also run airlock-integrations (the enforcer HTTP API) on a free
    /// loopback port, with these extra `[integrations]` lines.
    pub integrations: Option<Vec<(&'static str, &'static str)>>,
}

/// Binaries and bus policy of another revision.
#[derive(Clone)]
pub struct OtherBuild {
    pub bin_dir: PathBuf,
    pub bus_policy: PathBuf,
}

pub struct System {
    pub dir: tempfile::TempDir,
    pub bus_address: String,
    bus: Child,
    totp: Option<Child>,
    gateway: Option<Child>,
    enforcer: Option<Child>,
    integrations: Option<Child>,
    /// Where airlock-integrations listens (when started).
    pub integrations_addr: Option<std::net::SocketAddr>,
    /// The loopback port a [`proxy::Proxy`] of this system listens on, as
    /// `proxy.listen` says (the enforcer lets sessions reach it).
    pub proxy_port: u16,
    /// Unique per system: the enforcer's pin directory and cgroup name.
    tag: String,
    options: Options,
}

impl System {
    pub fn start() -> System {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> System {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the system tests need root: they create users and run each service as its user"
        );
        users::ensure_all();
        let dir = tempfile::Builder::new()
            .prefix("airlock-test-")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();

        let socket = dir.path().join("system_bus_socket");
        let extra = options.permissive_bus.then(|| {
            let path = dir.path().join("permissive.conf");
            fs::write(
                &path,
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><policy context="mandatory">
  <allow send_destination="org.airlock.Gateway1"/>
  <allow send_destination="org.airlock.Totp1"/>
</policy></busconfig>
"#,
            )
            .unwrap();
            path
        });
        let config = dir.path().join("bus.conf");
        let policy = options.other_build.as_ref().map_or_else(
            || repo_root().join("systemd/org.airlock.conf"),
            |other| other.bus_policy.clone(),
        );
        fs::write(&config, bus_config(&socket, &policy, extra.as_deref())).unwrap();
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .arg("--print-address")
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon (install the dbus-daemon package)");
        let mut address = String::new();
        BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let bus_address = address.trim().to_string();
        assert!(!bus_address.is_empty(), "dbus-daemon printed no address");

        // Directories owned as in production.
        let totp_state = dir.path().join("totp");
        let gateway_state = dir.path().join("gateway");
        let audit = dir.path().join("audit");
        let policies = dir.path().join("policies");
        for (path, owner, group, mode) in [
            (&totp_state, names::TOTP_USER, names::TOTP_USER, 0o700),
            (
                &gateway_state,
                names::GATEWAY_USER,
                names::GATEWAY_USER,
                0o700,
            ),
            (&audit, names::GATEWAY_USER, names::ADMIN_GROUP, 0o2750),
        ] {
            fs::create_dir(path).unwrap();
            chown(
                path,
                Some(users::uid(owner).as_raw()),
                Some(users::gid(group).as_raw()),
            )
            .unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        }
        fill_dir(&policies, options.policies.as_deref(), "policies");
        let services = dir.path().join("services");
        fill_dir(&services, options.services.as_deref(), "services");
        let mut config_text = format!(
            "[totp]\nstate_dir = {:?}\n[gateway]\nstate_dir = {:?}\naudit_dir = {:?}\npolicy_dir = {:?}\n",
            totp_state, gateway_state, audit, policies
        );
        // Another build's gateway may not know the key.
        if options.other_build.is_none() {
            config_text.push_str(&format!("services_dir = {services:?}\n"));
        }
        for (key, value) in &options.gateway_config {
            config_text.push_str(&format!("{key} = {value}\n"));
        }
        // The enforcer reads where the proxy listens (a test's proxy, see
        // `proxy::Proxy`), to let sessions reach it under BPF LSM.
        let proxy_port = unclaimed_port();
        if options.other_build.is_none() {
            let socket = dir.path().join("proxy").join("proxy.sock");
            config_text.push_str(&format!(
                "[proxy]\nsocket = {socket:?}\nlisten = \"127.0.0.1:{proxy_port}\"\n"
            ));
        }
        let integrations_addr = options.integrations.as_ref().map(|extra| {
            let port = unclaimed_port();
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            config_text.push_str(&format!("[integrations]\nlisten = \"{addr}\"\n"));
            for (key, value) in extra {
                config_text.push_str(&format!("{key} = {value}\n"));
            }
            addr
        });
        fs::write(dir.path().join("airlock.toml"), config_text).unwrap();

        let tag = format!(
            "airlock-test-{}",
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace(['.', '-'], "")
        );
        let with_enforcer = options.enforcer;
        let mut system = System {
            dir,
            bus_address,
            bus,
            totp: None,
            gateway: None,
            enforcer: None,
            integrations: None,
            integrations_addr,
            proxy_port,
            tag,
            options,
        };
        system.start_totp();
        if with_enforcer {
            system.start_enforcer();
        }
        system.start_gateway();
        if system.integrations_addr.is_some() {
            system.start_integrations();
        }
        system
    }

    /// Starts airlock-integrations as its user and waits until it listens.
    pub fn start_integrations(&mut self) {
        let addr = self.integrations_addr.expect("Options::integrations");
        self.integrations =
            Some(self.spawn_service("airlock-integrations", names::INTEGRATIONS_USER));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(Some(status)) = self.integrations.as_mut().map(|c| c.try_wait().unwrap()) {
                panic!(
                    "airlock-integrations exited with {status}:\n{}",
                    self.service_log("airlock-integrations")
                );
            }
            assert!(
                Instant::now() < deadline,
                "airlock-integrations does not listen on {addr}:\n{}",
                self.service_log("airlock-integrations")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL for airlock-integrations: it keeps no state, so nothing of a
    /// pairing may be lost with it.
    pub fn kill_integrations(&mut self) {
        if let Some(mut child) = self.integrations.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// airlock-integrations' process id.
    pub fn integrations_pid(&self) -> u32 {
        self.integrations
            .as_ref()
            .expect("no airlock-integrations")
            .id()
    }

    /// The enforcer API's base URL.
    pub fn integrations_url(&self) -> String {
        format!(
            "http://{}",
            self.integrations_addr.expect("Options::integrations")
        )
    }

    /// The enforcer's bpffs pin directory for this system.
    pub fn pin_dir(&self) -> PathBuf {
        PathBuf::from("/sys/fs/bpf").join(&self.tag)
    }

    /// The session cgroup parent's name for this system.
    pub fn cgroup_dir(&self) -> &str {
        &self.tag
    }

    pub fn start_enforcer(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("airlock-enforcer.log"))
            .unwrap();
        let mut command = Command::new(self.bin("airlock-enforcer"));
        command
            .arg("--pin-dir")
            .arg(self.pin_dir())
            .arg("--cgroup-dir")
            .arg(&self.tag);
        if self.options.other_build.is_none() {
            command.arg("--config").arg(self.path("airlock.toml"));
        }
        let child = command
            .env_clear()
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.enforcer = Some(child);
        self.wait_for_name(names::ENFORCER_BUS_NAME, "airlock-enforcer");
    }

    /// The enforcer's process id.
    pub fn enforcer_pid(&self) -> u32 {
        self.enforcer.as_ref().expect("no enforcer").id()
    }

    /// SIGKILLs the enforcer; its pinned programs stay in force.
    pub fn kill_enforcer(&mut self) {
        if let Some(mut child) = self.enforcer.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn audit_dir(&self) -> PathBuf {
        self.path("audit")
    }
    pub fn audit_log(&self) -> PathBuf {
        self.path("audit").join(names::AUDIT_LOG_FILE)
    }
    pub fn policy_dir(&self) -> PathBuf {
        self.path("policies")
    }
    pub fn options(&self) -> &Options {
        &self.options
    }

    fn spawn_service(&self, binary: &str, user: &str) -> Child {
        let log = fs::File::create(self.path(&format!("{binary}.log"))).unwrap();
        Command::new("setpriv")
            .args(["--reuid", user, "--regid", user, "--init-groups", "--"])
            .arg(self.bin(binary))
            .arg("--config")
            .arg(self.path("airlock.toml"))
            .env_clear()
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// SIGKILLs airlock-totp.
    pub fn kill_totp(&mut self) {
        if let Some(mut child) = self.totp.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn start_totp(&mut self) {
        self.totp = Some(self.spawn_service("airlock-totp", names::TOTP_USER));
        self.wait_for_name(names::TOTP_BUS_NAME, "airlock-totp");
    }

    pub fn start_gateway(&mut self) {
        let countersigned = self.countersignatures();
        self.gateway = Some(self.spawn_service("airlock-gateway", names::GATEWAY_USER));
        self.wait_for_name(names::GATEWAY_BUS_NAME, "airlock-gateway");
        // The gateway has airlock-totp countersign its start-up records at
        // once; waiting for that keeps the log still for tests that compare
        // it before and after.
        if self.options.other_build.is_none() {
            self.wait_for_countersignature(countersigned);
        }
    }

    /// This system's binary `name`: this build's, or the other build's.
    pub fn bin(&self, name: &str) -> PathBuf {
        match &self.options.other_build {
            Some(other) => other.bin_dir.join(name),
            None => bin(name),
        }
    }

    /// Starts `airlockctl ARGS` as `user` with piped stdin and stdout, for
    /// a caller that answers its prompts as they come.
    pub fn spawn_ctl(&self, user: &TestUser, args: &[&str]) -> Child {
        self.as_user(
            user,
            &self.bin("airlockctl"),
            args,
            "/usr/local/bin:/usr/bin:/bin",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    }

    /// Whether `user` can read the file at `path`.
    pub fn can_read(&self, user: &TestUser, path: &Path) -> bool {
        self.run_as(user, Path::new("/bin/cat"), &[path.to_str().unwrap()], "")
            .code
            == 0
    }

    /// Every record of the audit log, as JSON.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(self.audit_log())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `audit_countersigned` records in the log so far.
    pub fn countersignatures(&self) -> usize {
        fs::read_to_string(self.audit_log())
            .unwrap_or_default()
            .matches("\"audit_countersigned\"")
            .count()
    }

    /// Waits until the log holds more than `before` countersignatures.
    pub fn wait_for_countersignature(&self, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.countersignatures() <= before {
            assert!(
                Instant::now() < deadline,
                "airlock-totp did not countersign the audit log:\n{}\n{}",
                self.service_log("airlock-gateway"),
                self.service_log("airlock-totp")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs the gateway: no chance to flush anything.
    pub fn kill_gateway(&mut self) {
        if let Some(mut child) = self.gateway.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn signal_gateway(&self, signal: nix::sys::signal::Signal) {
        // setpriv execs the daemon, so the child's pid is the daemon's.
        let pid = self.gateway.as_ref().unwrap().id();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
    }

    /// Process ids of (airlock-totp, airlock-gateway).
    pub fn service_pids(&self) -> (u32, u32) {
        (
            self.totp.as_ref().unwrap().id(),
            self.gateway.as_ref().unwrap().id(),
        )
    }

    pub fn service_log(&self, binary: &str) -> String {
        fs::read_to_string(self.path(&format!("{binary}.log"))).unwrap_or_default()
    }

    fn wait_for_name(&mut self, name: &str, binary: &str) {
        // The enforcer's programs go through the BPF verifier, which takes
        // tens of seconds under emulation (the VM suite).
        let limit = if binary == "airlock-enforcer" {
            180
        } else {
            20
        };
        let deadline = Instant::now() + Duration::from_secs(limit);
        loop {
            let out = Command::new("busctl")
                .arg(format!("--address={}", self.bus_address))
                .args(["status", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            if out.success() {
                return;
            }
            let child = match binary {
                "airlock-totp" => self.totp.as_mut(),
                "airlock-enforcer" => self.enforcer.as_mut(),
                _ => self.gateway.as_mut(),
            };
            if let Some(Some(status)) = child.map(|c| c.try_wait().unwrap()) {
                panic!(
                    "{binary} exited with {status}:\n{}",
                    self.service_log(binary)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not appear on the bus:\n{}",
                self.service_log(binary)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `airlockctl` as `user`, with `stdin` as its standard input.
    pub fn ctl(&self, user: &TestUser, args: &[&str], stdin: &str) -> CtlOutput {
        self.run_as(user, &self.bin("airlockctl"), args, stdin)
    }

    /// `airlockctl audit verify` of this system's log, as the approver.
    pub fn audit_verify(&self) -> CtlOutput {
        let dir = self.audit_dir();
        let dir = dir.to_str().expect("test paths are UTF-8");
        self.ctl(&APPROVER, &["audit", "verify", "--audit-dir", dir], "")
    }

    /// `busctl call ARGS...` as `user` on this system's bus.
    pub fn busctl_call(&self, user: &TestUser, args: &[&str]) -> CtlOutput {
        let address = format!("--address={}", self.bus_address);
        let mut all = vec![address.as_str(), "call"];
        all.extend_from_slice(args);
        self.run_as(user, Path::new("/usr/bin/busctl"), &all, "")
    }

    /// Runs any program as `user` against this system's bus.
    pub fn run_as(&self, user: &TestUser, program: &Path, args: &[&str], stdin: &str) -> CtlOutput {
        self.run_as_with_path(user, program, args, stdin, "/usr/local/bin:/usr/bin:/bin")
    }

    /// `program` as `user` (with their groups), against this system's bus,
    /// with a clean environment; the caller chooses its stdio.
    pub fn as_user(&self, user: &TestUser, program: &Path, args: &[&str], path: &str) -> Command {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid",
                user.name,
                "--regid",
                user.name,
                "--init-groups",
                "--",
            ])
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address);
        command
    }

    /// Starts `program` as `user` with a given PATH, without waiting; it is
    /// killed when the handle is dropped.
    pub fn spawn_as_with_path(
        &self,
        user: &TestUser,
        program: &Path,
        args: &[&str],
        path: &str,
    ) -> Spawned {
        let child = self
            .as_user(user, program, args, path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Spawned(child)
    }

    /// `run_as` with a given PATH.
    pub fn run_as_with_path(
        &self,
        user: &TestUser,
        program: &Path,
        args: &[&str],
        stdin: &str,
        path: &str,
    ) -> CtlOutput {
        use std::io::Write;
        let mut child = self
            .as_user(user, program, args, path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A program may exit without reading its input (a refusal before
        // the prompt): its output and exit code are what the test checks.
        match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
        CtlOutput::from(child.wait_with_output().unwrap())
    }

    /// A connection as root, for calls that bypass airlockctl (hostile args).
    pub async fn root_connection(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.bus_address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap()
    }

    /// Stores `value` as `service`'s `field`, as the approver (from stdin,
    /// as a script would).
    pub fn store_credential(&self, service: &str, field: &str, value: &str) {
        self.ctl(
            &APPROVER,
            &["credentials", "add", service, field, "--stdin"],
            &format!("{value}\n"),
        )
        .success();
    }

    /// Files a read-only request for `services` as the agent (outside any
    /// session) and has the approver approve it with a code; returns the
    /// request id.
    pub fn grant_services(
        &self,
        app: &mut totp::Authenticator,
        services: &str,
        reason: &str,
    ) -> String {
        let out = self.ctl(
            &AGENT,
            &["request", "--services", services, "--reason", reason],
            "",
        );
        let id = out.success().stdout.trim().to_owned();
        self.ctl(
            &APPROVER,
            &["approve", &id, "--code-stdin"],
            &format!("{}\n", app.next_code()),
        )
        .success();
        id
    }

    /// Enrols a TOTP secret through `airlockctl totp setup --code-stdin` as
    /// the approver, reading the URI it prints like a phone scanning the QR
    /// code, and returns the matching authenticator.
    pub fn enrol(&self) -> totp::Authenticator {
        use std::io::Write;
        let mut child = Command::new("setpriv")
            .args([
                "--reuid",
                APPROVER.name,
                "--regid",
                APPROVER.name,
                "--init-groups",
                "--",
            ])
            .arg(self.bin("airlockctl"))
            .args(["totp", "setup", "--code-stdin"])
            .env_clear()
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut uri = String::new();
        while !uri.starts_with("otpauth://") {
            uri.clear();
            assert_ne!(
                stdout.read_line(&mut uri).unwrap(),
                0,
                "totp setup printed no URI"
            );
        }
        let mut app = totp::Authenticator::from_uri(uri.trim());
        let code = app.next_code();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{code}\n").as_bytes())
            .unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "totp setup failed: {rest}");
        assert!(rest.contains("enrolment is active"), "{rest}");
        app
    }

    pub async fn gateway_proxy(&self) -> Gateway1Proxy<'static> {
        Gateway1Proxy::new(&self.root_connection().await)
            .await
            .unwrap()
    }

    pub async fn totp_proxy(&self) -> Totp1Proxy<'static> {
        Totp1Proxy::new(&self.root_connection().await)
            .await
            .unwrap()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        for child in [
            self.integrations.as_mut(),
            self.gateway.as_mut(),
            self.totp.as_mut(),
            self.enforcer.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.bus.kill();
        let _ = self.bus.wait();
        if self.options.enforcer {
            cleanup_kernel_state(&self.pin_dir(), &self.tag);
        }
    }
}

/// Unpins an enforcer's programs and maps (detaching them) and removes its
/// session cgroups, killing whatever is left in them.
pub fn cleanup_kernel_state(pin_dir: &Path, cgroup_dir: &str) {
    let _ = fs::remove_dir_all(pin_dir);
    let Some(root) = cgroup2_root() else {
        return;
    };
    let base = root.join(cgroup_dir);
    if let Ok(entries) = fs::read_dir(&base) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                let _ = fs::write(path.join("cgroup.kill"), b"1");
                for _ in 0..50 {
                    if fs::remove_dir(&path).is_ok() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    let _ = fs::remove_dir(&base);
}

/// The cgroup2 mount point.
pub fn cgroup2_root() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next() != Some("cgroup2") {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// A background process that is killed and reaped when dropped.
pub struct Spawned(pub(crate) Child);

impl From<Child> for Spawned {
    fn from(child: Child) -> Spawned {
        Spawned(child)
    }
}

impl Spawned {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().unwrap()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug)]
pub struct CtlOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for CtlOutput {
    fn from(o: Output) -> Self {
        CtlOutput {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl CtlOutput {
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        self
    }
    #[track_caller]
    pub fn failure(&self) -> &Self {
        assert_ne!(self.code, 0, "expected failure, got {self:#?}");
        self
    }
}

/// A loopback port nothing listens on, below the kernel's ephemeral range:
/// one the test binds later stays free until then, since no connection
/// is ever given it as its own port (a released port from the ephemeral
/// range may be). Starts from this process's id, so that concurrent test
/// processes seldom try the same ones.
pub fn unclaimed_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral_start: u32 = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|&start| start > LOWEST + 1_000)
        .unwrap_or(32_768);
    let span = ephemeral_start - LOWEST;
    let base = std::process::id().wrapping_mul(7_919);
    for _ in 0..span {
        let offset = base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(101));
        let port = (LOWEST + offset % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {ephemeral_start}");
}
