//! airlock-proxy as its own user against a [`System`]'s bus, with its Unix
//! socket in the system's directory and a free loopback port.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use airlock_common::names;

use crate::{users, System};

pub struct Proxy {
    pub socket: PathBuf,
    pub port: u16,
    pub log: PathBuf,
    child: Child,
}

impl Proxy {
    /// Starts airlock-proxy as `airlock-proxy` and waits for its socket.
    pub fn start(system: &System) -> Proxy {
        Self::start_trusting(system, None)
    }

    /// The same, trusting the certificate authority `ca_pem` (PEM) for
    /// HTTPS upstreams instead of the system's.
    pub fn start_trusting(system: &System, ca_pem: Option<&str>) -> Proxy {
        let dir = system.path("proxy");
        // A second proxy of the system (a restart) reuses the directory.
        fs::create_dir_all(&dir).unwrap();
        let user = users::uid(names::PROXY_USER).as_raw();
        chown(&dir, Some(user), Some(user)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.join("proxy.sock");
        // The system's `proxy.listen` (given again for another build's proxy).
        let port = system.proxy_port;
        let log = system.path("airlock-proxy.log");
        let out = fs::File::create(&log).unwrap();
        let mut command = users::setpriv_as(names::PROXY_USER);
        command
            .arg(system.bin("airlock-proxy"))
            .arg("--config")
            .arg(system.path("airlock.toml"))
            .arg("--socket")
            .arg(&socket)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        if let Some(pem) = ca_pem {
            let ca = dir.join("ca.pem");
            fs::write(&ca, pem).unwrap();
            command.arg("--ca-file").arg(ca);
        }
        let child = command
            .env_clear()
            .env("DBUS_SYSTEM_BUS_ADDRESS", &system.bus_address)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut proxy = Proxy {
            socket,
            port,
            log,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !fs::read_to_string(&proxy.log)
            .unwrap_or_default()
            .contains("serving")
        {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                panic!("airlock-proxy exited with {status}:\n{}", proxy.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "airlock-proxy did not start:\n{}",
                proxy.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The proxy's process id (setpriv executes it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn tcp_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
