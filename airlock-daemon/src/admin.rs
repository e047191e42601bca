//! Who may approve: root, or a member of the `airlock-admin` group, by the
//! user database. The gateway and airlock-totp both ask it of the uid the
//! bus daemon vouches for.

use std::ffi::CString;

use airlock_common::names;
use nix::unistd::{getgrouplist, Group, Uid, User};

/// Root, or a member of the `airlock-admin` group (primary or
/// supplementary).
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
