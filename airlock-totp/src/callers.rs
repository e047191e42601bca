//! Who may ask airlock-totp for what. The bus policy restricts callers
//! already; each method checks the uid again so that a missing or mistaken
//! policy file does not open the door.
//!
//! The gateway user is the one airlock-totp is there to distrust: it may read
//! the status and the public key, never approve nor enrol, even if someone
//! added it to `airlock-admin`.

use airlock_common::dbus::AirlockError;
use airlock_common::names;
use airlock_daemon::admin::is_admin;

/// A caller airlock-totp answers at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Root,
    /// A member of `airlock-admin`: an approver at a terminal.
    Admin(u32),
    /// The gateway user.
    Gateway,
}

impl Caller {
    /// Classifies `uid`; anyone else is refused.
    pub fn of(uid: u32, gateway_uid: u32) -> Result<Caller, AirlockError> {
        if uid == 0 {
            Ok(Caller::Root)
        } else if uid == gateway_uid {
            Ok(Caller::Gateway)
        } else if is_admin(uid) {
            Ok(Caller::Admin(uid))
        } else {
            Err(AirlockError::AccessDenied(format!(
                "uid {uid} may not call the TOTP service; only root, group {} and the gateway may",
                names::ADMIN_GROUP
            )))
        }
    }

    pub fn uid(self, gateway_uid: u32) -> u32 {
        match self {
            Caller::Root => 0,
            Caller::Admin(uid) => uid,
            Caller::Gateway => gateway_uid,
        }
    }

    /// Approving and enrolling are for a person: root or an admin.
    pub fn require_person(self, action: &str) -> Result<(), AirlockError> {
        match self {
            Caller::Root | Caller::Admin(_) => Ok(()),
            Caller::Gateway => Err(AirlockError::AccessDenied(format!(
                "the gateway may not {action}: only root and group {} may, calling airlock-totp \
                 directly (`airlockctl`)",
                names::ADMIN_GROUP
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_never_a_person() {
        // Even if the gateway's uid were in airlock-admin, it stays the gateway.
        let gateway = Caller::of(4242, 4242).unwrap();
        assert_eq!(gateway, Caller::Gateway);
        assert!(gateway.require_person("approve").is_err());
        assert!(Caller::of(0, 4242)
            .unwrap()
            .require_person("approve")
            .is_ok());
        assert_eq!(Caller::of(0, 0).unwrap(), Caller::Root);
    }
}
