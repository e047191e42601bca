//! Who is calling: the sender's Unix uid, asked of the bus itself.
//!
//! The bus policy already restricts who may call what; checking the uid in the
//! service as well means a mistaken or missing policy file does not open the
//! door (defence in depth).

use std::ffi::CString;

use airlock_common::dbus::AirlockError;
use airlock_common::names;
use nix::unistd::{getgrouplist, Group, Uid, User};
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::names::BusName;

/// The uid of the connection that sent `header`'s message.
pub async fn caller_uid(dbus: &DBusProxy<'_>, header: &Header<'_>) -> Result<u32, AirlockError> {
    let sender = header
        .sender()
        .ok_or_else(|| AirlockError::AccessDenied("message has no sender".into()))?;
    dbus.get_connection_unix_user(BusName::Unique(sender.to_owned()))
        .await
        .map_err(|e| AirlockError::AccessDenied(format!("cannot identify the caller: {e}")))
}

/// The pid of the connection that sent `header`'s message.
pub async fn caller_pid(dbus: &DBusProxy<'_>, header: &Header<'_>) -> Result<u32, AirlockError> {
    let sender = header
        .sender()
        .ok_or_else(|| AirlockError::AccessDenied("message has no sender".into()))?;
    dbus.get_connection_unix_process_id(BusName::Unique(sender.to_owned()))
        .await
        .map_err(|e| AirlockError::AccessDenied(format!("cannot identify the caller: {e}")))
}

/// Root, or a member of the `airlock-admin` group.
pub fn is_admin(uid: u32) -> bool {
    if uid == 0 {
        return true;
    }
    let Ok(Some(group)) = Group::from_name(names::ADMIN_GROUP) else {
        return false;
    };
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    if user.gid == group.gid {
        return true;
    }
    let Ok(name) = CString::new(user.name) else {
        return false;
    };
    getgrouplist(&name, user.gid)
        .map(|groups| groups.contains(&group.gid))
        .unwrap_or(false)
}

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
