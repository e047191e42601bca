//! Who is calling: the sender's Unix uid, asked of the bus itself.
//!
//! The bus policy already restricts who may call what; checking the uid in the
//! service as well means a mistaken or missing policy file does not open the
//! door (defence in depth).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use airlock_common::dbus::{caller_uid, AirlockError};
use airlock_common::names;
use airlock_daemon::lock::MutexExt;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::names::BusName;

/// What is known about a bus connection. A unique name is never reused
/// while the bus runs, and a connection's process keeps its uid, so these
/// need asking only once per connection.
#[derive(Clone, Default)]
struct Known {
    uid: Option<u32>,
    /// The governed session of the connection's process (itself optional),
    /// once the enforcer has answered.
    session: Option<Option<String>>,
}

/// Caches the bus daemon's and the enforcer's answers about callers.
#[derive(Default)]
pub struct Callers {
    known: Mutex<HashMap<String, Known>>,
    /// Whether airlock-enforcer owns its name: without it there is no one to
    /// ask which session a process is in.
    enforcer_present: AtomicBool,
}

/// Connections remembered at most; the cache starts over beyond that.
const MAX_KNOWN: usize = 4096;

impl Callers {
    fn get(&self, sender: &str) -> Known {
        let known = self.known.locked();
        known.get(sender).cloned().unwrap_or_default()
    }

    fn update(&self, sender: &str, f: impl FnOnce(&mut Known)) {
        let mut known = self.known.locked();
        if known.len() >= MAX_KNOWN && !known.contains_key(sender) {
            known.clear();
        }
        f(known.entry(sender.to_owned()).or_default());
    }

    /// The uid of the connection that sent `header`'s message.
    pub async fn uid(
        &self,
        dbus: &DBusProxy<'_>,
        header: &Header<'_>,
    ) -> Result<u32, AirlockError> {
        let sender = sender(header)?;
        if let Some(uid) = self.get(sender).uid {
            return Ok(uid);
        }
        let uid = caller_uid(dbus, header).await?;
        self.update(sender, |k| k.uid = Some(uid));
        Ok(uid)
    }

    /// The governed session the sender runs in, if any. `lookup` asks the
    /// enforcer for a pid's session. Without an enforcer
    /// on the bus there are no sessions to be in; an enforcer that cannot
    /// answer is an error rather than "none", so that an agent's request is
    /// never filed as its user's own (and an error is not cached).
    pub async fn session<F, Fut>(
        &self,
        dbus: &DBusProxy<'_>,
        header: &Header<'_>,
        lookup: F,
    ) -> Result<Option<String>, AirlockError>
    where
        F: FnOnce(u32) -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, AirlockError>>,
    {
        let sender = sender(header)?;
        if let Some(session) = self.get(sender).session {
            return Ok(session);
        }
        if !self.enforcer_present.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let pid = caller_pid(dbus, header).await?;
        let session = lookup(pid).await?;
        self.update(sender, |k| k.session = Some(session.clone()));
        Ok(session)
    }

    pub fn set_enforcer_present(&self, present: bool) {
        self.enforcer_present.store(present, Ordering::Relaxed);
    }

    /// Forgets a connection that left the bus.
    pub fn forget(&self, sender: &str) {
        let mut known = self.known.locked();
        known.remove(sender);
    }
}

fn sender<'h>(header: &'h Header<'_>) -> Result<&'h str, AirlockError> {
    header
        .sender()
        .map(|s| s.as_str())
        .ok_or_else(|| AirlockError::AccessDenied("message has no sender".into()))
}

/// The pid of the connection that sent `header`'s message.
pub async fn caller_pid(dbus: &DBusProxy<'_>, header: &Header<'_>) -> Result<u32, AirlockError> {
    let sender = sender(header)?;
    dbus.get_connection_unix_process_id(
        BusName::try_from(sender)
            .map_err(|e| AirlockError::AccessDenied(format!("malformed sender: {e}")))?,
    )
    .await
    .map_err(|e| AirlockError::AccessDenied(format!("cannot identify the caller: {e}")))
}

pub use airlock_daemon::admin::is_admin;

pub fn require_admin(uid: u32, action: &str) -> Result<(), AirlockError> {
    if is_admin(uid) {
        Ok(())
    } else {
        Err(AirlockError::AccessDenied(format!(
            "uid {uid} may not {action}: only root and members of group {} may",
            names::ADMIN_GROUP
        )))
    }
}
