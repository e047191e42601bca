//! The system bus: connecting, serving one object under a well-known name,
//! and telling systemd when that is done.

use anyhow::Context;
use zbus::fdo::{RequestNameFlags, RequestNameReply};
use zbus::object_server::Interface;

/// The variable that points a daemon at another bus than the system's (the
/// tests start their own dbus-daemon).
const ADDRESS_VARIABLE: &str = "DBUS_SYSTEM_BUS_ADDRESS";

/// Connects to the system bus, or the bus `DBUS_SYSTEM_BUS_ADDRESS` names.
pub async fn connect() -> anyhow::Result<zbus::Connection> {
    zbus::Connection::system()
        .await
        .with_context(|| match std::env::var(ADDRESS_VARIABLE) {
            Ok(address) => format!("cannot connect to the D-Bus system bus at {address}"),
            Err(_) => "cannot connect to the D-Bus system bus".to_string(),
        })
}

/// What a daemon serves: its object and the well-known name it owns.
pub struct Service<I> {
    pub bus_name: &'static str,
    pub object_path: &'static str,
    pub object: I,
}

/// Serves `service.object` at its path, then owns its bus name (objects
/// first, so that no caller finds the name without the object), logs that it
/// serves and tells systemd it is ready.
pub async fn serve<I: Interface>(
    conn: &zbus::Connection,
    service: Service<I>,
) -> anyhow::Result<()> {
    conn.object_server()
        .at(service.object_path, service.object)
        .await
        .with_context(|| format!("serving {}", service.object_path))?;
    own_name(conn, service.bus_name).await?;
    let status = format!("serving {} on the system bus", service.bus_name);
    tracing::info!("{status}");
    notify_ready(&status);
    Ok(())
}

/// Owns `name`, or says plainly who has it.
///
/// Neither replacing an owner nor letting one be replaced (zbus's default
/// flags do both): a second instance would otherwise take the name from a
/// running daemon, which would go on without callers and without a word.
async fn own_name(conn: &zbus::Connection, name: &'static str) -> anyhow::Result<()> {
    match conn
        .request_name_with_flags(name, RequestNameFlags::DoNotQueue.into())
        .await
    {
        Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => Ok(()),
        Ok(RequestNameReply::Exists | RequestNameReply::InQueue) | Err(zbus::Error::NameTaken) => {
            let owner = match owner_pid(conn, name).await {
                Some(pid) => format!("process {pid}"),
                None => "another connection".to_string(),
            };
            anyhow::bail!(
                "{name} is already owned on the system bus by {owner}; is another instance \
                 running?"
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot own {name} on the system bus")),
    }
}

async fn owner_pid(conn: &zbus::Connection, name: &'static str) -> Option<u32> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await.ok()?;
    let name = zbus::names::BusName::try_from(name).ok()?;
    let owner = dbus.get_name_owner(name).await.ok()?;
    dbus.get_connection_unix_process_id(owner.into()).await.ok()
}

/// READY=1 with a STATUS= line; nothing happens outside systemd.
pub fn notify_ready(status: &str) {
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ],
    );
}

/// STOPPING=1, for a daemon on its way out.
pub fn notify_stopping() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    /// A private session bus, killed when dropped.
    struct PrivateBus {
        daemon: Child,
        address: String,
    }

    impl PrivateBus {
        /// None where dbus-daemon is not installed.
        fn start() -> Option<PrivateBus> {
            let mut daemon = Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--print-address"])
                .stdout(Stdio::piped())
                .spawn()
                .ok()?;
            let mut address = String::new();
            BufReader::new(daemon.stdout.take()?)
                .read_line(&mut address)
                .ok()?;
            Some(PrivateBus {
                daemon,
                address: address.trim().to_string(),
            })
        }

        async fn connect(&self) -> zbus::Connection {
            zbus::connection::Builder::address(self.address.as_str())
                .unwrap()
                .build()
                .await
                .unwrap()
        }
    }

    impl Drop for PrivateBus {
        fn drop(&mut self) {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
    }

    #[test]
    fn a_taken_name_is_refused_with_its_owner() {
        let Some(bus) = PrivateBus::start() else {
            eprintln!("skipped: no dbus-daemon");
            return;
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let first = bus.connect().await;
            own_name(&first, "org.airlock.Test1").await.unwrap();
            let second = bus.connect().await;
            let error = own_name(&second, "org.airlock.Test1")
                .await
                .unwrap_err()
                .to_string();
            let expected = format!(
                "org.airlock.Test1 is already owned on the system bus by process {}",
                std::process::id()
            );
            assert!(error.starts_with(&expected), "{error}");
        });
    }
}
