//! A real Debian dovecot-imapd (2.3) for the mail tests: `dovecot -F -c
//! test.conf` with a passwd-file and a maildir in a temporary directory,
//! on a free loopback port: plain IMAP (loopback counts as secure, so plain
//! LOGIN works), or with a certificate the test made and `ssl = required`:
//! implicit TLS only (no plain listener), or STARTTLS on the plain port.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::users;

/// The mail user dovecot runs mailbox access as (the package's own).
const MAIL_USER: &str = "dovecot";

pub struct Dovecot {
    pub port: u16,
    dir: tempfile::TempDir,
    user: String,
    child: Child,
}

/// One message for the test mailbox: its raw RFC 5322 text and whether it
/// starts out seen.
pub struct Mail {
    pub raw: String,
    pub seen: bool,
}

/// A mailbox's first two messages: an unread report from Alice, a lunch
/// note from Bob already seen.
pub fn sample_mails() -> Vec<Mail> {
    vec![
        Mail {
            raw: "From: Alice Example <alice@example.test>\nTo: agent@example.test\n\
                  Subject: Quarterly report\nDate: Mon, 02 Nov 2026 09:00:00 +0000\n\
                  Message-ID: <q1@example.test>\n\nThe numbers are up.\n"
                .into(),
            seen: false,
        },
        Mail {
            raw: "From: bob@example.test\nTo: agent@example.test\nSubject: Lunch?\n\
                  Date: Tue, 03 Nov 2026 12:00:00 +0000\n\nNoon at the usual place.\n"
                .into(),
            seen: true,
        },
    ]
}

/// A service definition for plain IMAP to a server on this machine's
/// loopback at `port`, logging in with the fields `user` and `password`.
pub fn plain_imap_service(name: &str, port: u16) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nkind = \"imap\"\nupstream = \"imap://127.0.0.1:{port}\"\n\
         fields = [\"user\", \"password\"]\n\
         login = {{ user_field = \"user\", password_field = \"password\" }}\n\n"
    )
}

/// How a TLS dovecot takes TLS.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// From the first byte (imaps).
    Implicit,
    /// On the plain port, after STARTTLS.
    StartTls,
}

impl Dovecot {
    /// Starts dovecot with one user (`user`, `password`) whose INBOX holds
    /// `mails` in order, and waits for its greeting.
    pub fn start(user: &str, password: &str, mails: &[Mail]) -> Dovecot {
        Self::start_with(user, password, mails, None)
    }

    /// The same with `certificate` and `key` (PEM) and `ssl = required`:
    /// speaking only implicit TLS (an imaps listener), or offering STARTTLS
    /// on its plain port (dovecot may still count a loopback client as
    /// secure there, so a test tells a TLS login by its log line's `, TLS`).
    pub fn start_tls(
        user: &str,
        password: &str,
        mails: &[Mail],
        certificate: &str,
        key: &str,
        how: Tls,
    ) -> Dovecot {
        Self::start_with(user, password, mails, Some((certificate, key, how)))
    }

    fn start_with(
        user: &str,
        password: &str,
        mails: &[Mail],
        tls: Option<(&str, &str, Tls)>,
    ) -> Dovecot {
        let dir = tempfile::Builder::new()
            .prefix("airlock-dovecot")
            .tempdir()
            .unwrap();
        // Login processes (dovenull) chroot under base_dir.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path();
        let owner = users::uid(MAIL_USER).as_raw();
        let group = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(owner))
            .unwrap()
            .unwrap()
            .gid
            .as_raw();
        let maildir = root.join("mail").join(user);
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        for (i, mail) in mails.iter().enumerate() {
            let flags = if mail.seen { "S" } else { "" };
            let name = format!("{}.M{i}P1.airlock-test:2,{flags}", 1_700_000_000 + i);
            fs::write(
                maildir.join("cur").join(name),
                mail.raw.replace('\n', "\r\n"),
            )
            .unwrap();
        }
        chown_tree(&root.join("mail"), owner, group);
        fs::write(
            root.join("passwd"),
            format!("{user}:{{PLAIN}}{password}::::::\n"),
        )
        .unwrap();
        let port = crate::unclaimed_port();
        let d = root.display();
        let (ssl, plain_port, tls_port) = match tls {
            None => ("ssl = no\ndisable_plaintext_auth = no".to_owned(), port, 0),
            Some((certificate, key, how)) => {
                fs::write(root.join("cert.pem"), certificate).unwrap();
                fs::write(root.join("key.pem"), key).unwrap();
                fs::set_permissions(root.join("key.pem"), fs::Permissions::from_mode(0o600))
                    .unwrap();
                (
                    format!(
                        "ssl = required\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n\
                         disable_plaintext_auth = yes\nverbose_ssl = yes"
                    ),
                    if how == Tls::StartTls { port } else { 0 },
                    if how == Tls::Implicit { port } else { 0 },
                )
            }
        };
        let conf = format!(
            r#"protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
{ssl}
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={owner} gid={group} home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {plain_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"#
        );
        fs::write(root.join("test.conf"), conf).unwrap();
        let child = Command::new("dovecot")
            .args(["-F", "-c"])
            .arg(root.join("test.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(root.join("dovecot.stderr")).unwrap())
            .spawn()
            .expect("dovecot (apt-get install dovecot-imapd)");
        let mut server = Dovecot {
            port,
            dir,
            user: user.to_owned(),
            child,
        };
        server.wait_until_listening(!matches!(tls, Some((_, _, Tls::Implicit))));
        server
    }

    /// Plain: until it greets. TLS: until it accepts a connection (the
    /// greeting would come only after a handshake).
    fn wait_until_listening(&mut self, plain: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("dovecot exited with {status}: {}", self.logs());
            }
            if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                if !plain {
                    return;
                }
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("* OK") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "dovecot did not greet: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("dovecot.log"), read("dovecot.stderr"))
    }

    /// The INBOX's message files (their names carry the flags: `:2,S` is
    /// seen), read from the disk, not through IMAP.
    pub fn inbox_files(&self) -> Vec<PathBuf> {
        let maildir = self.dir.path().join("mail").join(&self.user);
        let mut files = Vec::new();
        for sub in ["cur", "new"] {
            for entry in fs::read_dir(maildir.join(sub)).unwrap() {
                files.push(entry.unwrap().path());
            }
        }
        files.sort();
        files
    }

    /// How many INBOX messages are flagged seen on disk.
    pub fn seen_on_disk(&self) -> usize {
        self.inbox_files()
            .iter()
            .filter(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                name.rsplit_once(":2,")
                    .is_some_and(|(_, flags)| flags.contains('S'))
            })
            .count()
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}
