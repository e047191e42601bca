//! The credential store's key-encryption key and `org.airlock.Keys1`.
//!
//! The gateway keeps every credential sealed under its own data key, and
//! every data key wrapped under this key, which never leaves airlock-totp.
//! A data key comes back out only
//! - to the gateway, for a grant this process signed that is live now and
//!   whose scope names the service (so a gateway without a live grant, or a
//!   copy of its state directory, reads nothing), or
//! - to a person (root or group airlock-admin) who typed a valid TOTP code,
//!   for `airlockctl credentials get`.
//!
//! Wrapping binds the service and field, so a wrapped key presented under
//! another service's name (one a grant does cover) does not unwrap.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use airlock_common::credential::{self, Purpose, Slot, KEY_LEN};
use airlock_common::dbus::{caller_uid, AirlockError, Gateway1Proxy, SignedGrantWire};
use airlock_common::grant::{Scope, SignedGrant};
use airlock_common::limits::MAX_SIGNED_GRANT_LEN;
use airlock_common::timefmt::now_unix;
use airlock_daemon::lock::MutexExt;
use anyhow::Context;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zeroize::Zeroizing;

use crate::authenticator::Authenticator;
use crate::callers::Caller;
use crate::files;
use crate::service::{report_refusal_to, to_dbus};

/// The key-encryption key: 32 random bytes, mode 0600.
pub const KEK_FILE: &str = "credential-kek.bin";
/// A wrapped data key is a sealed key: nonce, key, tag.
const MAX_WRAPPED_LEN: usize = 12 + KEY_LEN + 16;

/// The key-encryption key.
pub struct Kek(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// Loads the key from `dir`, or creates it on first start. A damaged
    /// file is an error, never replaced: that would lose every credential.
    pub fn open_or_create(dir: &Path) -> anyhow::Result<Kek> {
        let path = dir.join(KEK_FILE);
        let bytes = match files::read_optional(&path)
            .with_context(|| format!("reading {}", path.display()))?
        {
            Some(bytes) => bytes,
            None => {
                let key = credential::new_key()?;
                files::write_atomic(&path, key.as_ref(), 0o600)
                    .with_context(|| format!("writing {}", path.display()))?;
                Zeroizing::new(key.to_vec())
            }
        };
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!(
                "{} is not a {KEY_LEN}-byte key; restore it from a backup \
                 (without it no stored credential opens)",
                path.display()
            )
        })?;
        Ok(Kek(Zeroizing::new(key)))
    }

    pub fn wrap(&self, slot: Slot<'_>, data_key: &[u8]) -> Result<Vec<u8>, AirlockError> {
        if data_key.len() != KEY_LEN {
            return Err(AirlockError::InvalidArgument(format!(
                "a data key is {KEY_LEN} bytes"
            )));
        }
        credential::seal(self.0.as_ref(), slot, Purpose::DataKey, data_key)
            .map_err(|e| AirlockError::Internal(e.to_string()))
    }

    pub fn unwrap(
        &self,
        slot: Slot<'_>,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, AirlockError> {
        credential::open(self.0.as_ref(), slot, Purpose::DataKey, wrapped).map_err(|e| {
            AirlockError::InvalidArgument(format!(
                "the wrapped key for {}/{} does not unwrap: {e}",
                slot.service, slot.field
            ))
        })
    }
}

/// Why a grant does not open `service` now, if it does not.
pub fn grant_refusal(
    grant: &SignedGrant,
    public_key: &[u8],
    service: &str,
    now: i64,
) -> Option<String> {
    let body = match grant.verify(public_key) {
        Ok(body) => body,
        Err(e) => return Some(format!("the grant is not one airlock-totp signed: {e}")),
    };
    if !body.is_live(now) {
        return Some(format!("grant {} is not live", body.grant_id));
    }
    match &body.scope {
        Scope::Services { services } if services.iter().any(|s| s == service) => None,
        scope => Some(format!(
            "grant {} covers {scope}, not service {service}",
            body.grant_id
        )),
    }
}

pub struct KeyService {
    kek: Kek,
    /// The grant-signing public key: grants presented must verify with it.
    public_key: Vec<u8>,
    authenticator: Arc<Mutex<Authenticator>>,
    gateway_uid: u32,
    dbus: DBusProxy<'static>,
    gateway: Gateway1Proxy<'static>,
}

impl KeyService {
    pub fn new(
        kek: Kek,
        public_key: Vec<u8>,
        authenticator: Arc<Mutex<Authenticator>>,
        gateway_uid: u32,
        dbus: DBusProxy<'static>,
        gateway: Gateway1Proxy<'static>,
    ) -> Self {
        KeyService {
            kek,
            public_key,
            authenticator,
            gateway_uid,
            dbus,
            gateway,
        }
    }

    async fn caller(&self, header: &Header<'_>) -> Result<Caller, AirlockError> {
        Caller::of(caller_uid(&self.dbus, header).await?, self.gateway_uid)
    }

    /// The gateway (or root): the process that keeps the store.
    async fn require_store(&self, header: &Header<'_>, action: &str) -> Result<(), AirlockError> {
        match self.caller(header).await? {
            Caller::Gateway | Caller::Root => Ok(()),
            Caller::Admin(uid) => Err(AirlockError::AccessDenied(format!(
                "uid {uid} may not {action}: only the gateway may"
            ))),
        }
    }
}

fn slot<'a>(service: &'a str, field: &'a str) -> Result<Slot<'a>, AirlockError> {
    let slot = Slot { service, field };
    slot.check().map_err(AirlockError::InvalidArgument)?;
    Ok(slot)
}

fn decode_wrapped(text: &str) -> Result<Zeroizing<Vec<u8>>, AirlockError> {
    credential::decode(text, MAX_WRAPPED_LEN)
        .map_err(|e| AirlockError::InvalidArgument(format!("wrapped key: {e}")))
}

#[zbus::interface(name = "org.airlock.Keys1")]
impl KeyService {
    /// Wraps a fresh data key (base64) for `service`/`field`.
    async fn wrap_key(
        &self,
        #[zbus(header)] header: Header<'_>,
        service: &str,
        field: &str,
        key: &str,
    ) -> Result<String, AirlockError> {
        self.require_store(&header, "wrap credential keys").await?;
        let slot = slot(service, field)?;
        let key = credential::decode(key, KEY_LEN)
            .map_err(|e| AirlockError::InvalidArgument(format!("data key: {e}")))?;
        Ok(credential::encode(&self.kek.wrap(slot, &key)?))
    }

    /// Unwraps a data key for a live grant this process signed that names
    /// `service`.
    async fn unwrap_for_grant(
        &self,
        #[zbus(header)] header: Header<'_>,
        service: &str,
        field: &str,
        wrapped_key: &str,
        grant: SignedGrantWire,
    ) -> Result<String, AirlockError> {
        self.require_store(&header, "unwrap credential keys")
            .await?;
        let slot = slot(service, field)?;
        if grant.payload.len() > MAX_SIGNED_GRANT_LEN
            || grant.signature.len() > MAX_SIGNED_GRANT_LEN
        {
            return Err(AirlockError::InvalidArgument("grant is too large".into()));
        }
        let grant = SignedGrant::from(grant);
        if let Some(why) = grant_refusal(&grant, &self.public_key, service, now_unix()) {
            tracing::warn!("refused to unwrap {service}/{field}: {why}");
            return Err(AirlockError::AccessDenied(why));
        }
        let key = self.kek.unwrap(slot, &decode_wrapped(wrapped_key)?)?;
        Ok(credential::encode(&key))
    }

    /// Unwraps a data key for a person who typed a valid code.
    async fn unwrap_for_admin(
        &self,
        #[zbus(header)] header: Header<'_>,
        service: &str,
        field: &str,
        wrapped_key: &str,
        code: &str,
    ) -> Result<String, AirlockError> {
        let caller = self.caller(&header).await?;
        caller.require_person("open a stored credential")?;
        let uid = caller.uid(self.gateway_uid);
        let slot = slot(service, field)?;
        // Checked before a code is spent.
        let wrapped = decode_wrapped(wrapped_key)?;
        let verified = self
            .authenticator
            .locked()
            .verify(code, now_unix())
            .map_err(to_dbus);
        if let Err(e) = verified {
            report_refusal_to(&self.gateway, uid, None, &e).await;
            return Err(e);
        }
        let key = self.kek.unwrap(slot, &wrapped)?;
        tracing::info!("uid {uid} opened the stored credential {service}/{field} with a code");
        Ok(credential::encode(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_common::dbus::GrantRequest;
    use airlock_common::grant::Access;
    use airlock_common::ids;

    use crate::signer::GrantSigner;

    const NOW: i64 = 1_700_000_000;
    const GITHUB: Slot<'static> = Slot {
        service: "github",
        field: "token",
    };

    fn grant(signer: &GrantSigner, scope: &str, now: i64) -> SignedGrant {
        signer
            .sign(
                &GrantRequest {
                    request_id: ids::new_id("req"),
                    subject_uid: 1000,
                    session: None.into(),
                    scope: scope.into(),
                    access: Access::Read,
                    ttl_secs: 600,
                },
                now,
                3600,
            )
            .unwrap()
    }

    #[test]
    fn the_key_persists_with_mode_0600_and_a_damaged_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::open_or_create(dir.path()).unwrap();
        let wrapped = kek.wrap(GITHUB, &[7u8; KEY_LEN]).unwrap();
        let again = Kek::open_or_create(dir.path()).unwrap();
        assert_eq!(
            again.unwrap(GITHUB, &wrapped).unwrap().as_slice(),
            [7u8; 32]
        );
        assert_eq!(files::mode_of(&dir.path().join(KEK_FILE)).unwrap(), 0o600);
        assert!(again
            .unwrap(
                Slot {
                    service: "gmail",
                    field: "token"
                },
                &wrapped
            )
            .is_err());
        assert!(kek.wrap(GITHUB, &[1u8; 16]).is_err());

        std::fs::write(dir.path().join(KEK_FILE), b"short").unwrap();
        assert!(Kek::open_or_create(dir.path()).is_err());
        assert_eq!(std::fs::read(dir.path().join(KEK_FILE)).unwrap(), b"short");
        assert_eq!(format!("{kek:?}"), "Kek(..)");
    }

    #[test]
    fn only_a_live_signed_grant_for_the_service_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        let signer = GrantSigner::open_or_create(dir.path()).unwrap();
        let key = signer.public_key();
        let live = grant(&signer, "services:gmail,github", NOW);
        assert_eq!(grant_refusal(&live, key, "github", NOW + 1), None);
        assert!(grant_refusal(&live, key, "openrouter", NOW + 1)
            .unwrap()
            .contains("not service openrouter"));
        assert!(grant_refusal(&live, key, "github", NOW + 600)
            .unwrap()
            .contains("not live"));
        assert!(grant_refusal(&live, key, "github", NOW - 1)
            .unwrap()
            .contains("not live"));
        let command = grant(&signer, "command:git push", NOW);
        assert!(grant_refusal(&command, key, "github", NOW).is_some());

        let mut forged = live.clone();
        forged.payload = forged.payload.replace("gmail", "gmaix");
        assert!(grant_refusal(&forged, key, "github", NOW)
            .unwrap()
            .contains("not one airlock-totp signed"));
        let other_dir = tempfile::tempdir().unwrap();
        let other = GrantSigner::open_or_create(other_dir.path()).unwrap();
        let foreign = grant(&other, "services:github", NOW);
        assert!(grant_refusal(&foreign, key, "github", NOW).is_some());
    }
}
