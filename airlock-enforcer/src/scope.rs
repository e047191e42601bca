//! Under systemd, a process-tree session is a transient scope unit, as
//! `systemd-run --scope` makes them: `airlock-session-<id>.scope` in
//! `airlock.slice`, started with the session's first process in it and
//! `Delegate=yes`. systemd makes the cgroup (root's, so the agent cannot
//! leave it) and treats what is below it as Airlock's; restarting the
//! enforcer or reloading systemd leaves the session where it is, and the
//! scope goes away by itself when its last process ends.
//!
//! Hand-written because it is one D-Bus call; zbus already speaks the bus.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use zbus::zvariant::{OwnedObjectPath, Value};

use crate::cgroup::{scope_unit, SLICE};

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    #[allow(clippy::type_complexity)]
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;
}

/// Whether systemd is the init system (what `sd_booted()` checks).
pub fn systemd_booted() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

pub struct Scopes {
    manager: ManagerProxy<'static>,
}

impl Scopes {
    /// Connects to systemd on the system bus.
    pub async fn connect() -> anyhow::Result<Scopes> {
        let bus = zbus::Connection::system()
            .await
            .context("connecting to the system bus to reach systemd")?;
        Ok(Scopes {
            manager: ManagerProxy::new(&bus).await?,
        })
    }

    /// Starts the session's scope with `pid` in it, and returns once the
    /// process is there.
    pub async fn start(&self, session: &str, pid: u32) -> anyhow::Result<()> {
        let unit = scope_unit(session);
        let description = format!("Airlock governed session {session}");
        let properties = [
            ("Description", Value::from(description.as_str())),
            ("Slice", Value::from(SLICE)),
            ("Delegate", Value::from(true)),
            ("PIDs", Value::from(vec![pid])),
            // Forgotten once it ends, however it ends.
            ("CollectMode", Value::from("inactive-or-failed")),
        ];
        self.manager
            .start_transient_unit(&unit, "fail", &properties, &[])
            .await
            .with_context(|| format!("asking systemd to start {unit}"))?;
        // systemd moves the process when it runs the job, right after
        // queueing it; wait for that rather than for the job signal.
        let wanted = format!("0::/{SLICE}/{unit}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .with_context(|| format!("process {pid} is gone"))?;
            if cgroup.lines().any(|l| l == wanted) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("systemd did not move process {pid} into {unit} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
