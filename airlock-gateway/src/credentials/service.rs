//! `org.airlock.Credentials1`, served beside `Gateway1` on its object path.
//!
//! Storing, removing and fetching a sealed value are for root and group
//! airlock-admin; anyone may list service and field names. Values are sealed
//! here under a fresh data key that airlock-totp wraps at once; the
//! plaintext is zeroized as soon as it is sealed, and no value is ever
//! logged or audited (records carry names and uids only).

use std::sync::{Arc, Mutex};

use airlock_common::credential::bus::{CredentialInfo, Keys1Proxy, SealedCredential};
use airlock_common::credential::{self, Purpose, Slot, MAX_VALUE_LEN};
use airlock_common::dbus::AirlockError;
use airlock_common::event::Event;
use airlock_common::timefmt::now_unix;
use airlock_daemon::lock::MutexExt;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::zvariant::Optional;
use zeroize::Zeroizing;

use super::{CredentialStore, Entry, StoreError};
use crate::caller::{require_admin, Callers};
use crate::core::Core;

pub struct CredentialsService {
    store: Mutex<CredentialStore>,
    core: Arc<Mutex<Core>>,
    keys: Keys1Proxy<'static>,
    dbus: DBusProxy<'static>,
    callers: Arc<Callers>,
}

impl CredentialsService {
    pub fn new(
        store: CredentialStore,
        core: Arc<Mutex<Core>>,
        keys: Keys1Proxy<'static>,
        dbus: DBusProxy<'static>,
        callers: Arc<Callers>,
    ) -> Self {
        CredentialsService {
            store: Mutex::new(store),
            core,
            keys,
            dbus,
            callers,
        }
    }

    async fn admin(&self, header: &Header<'_>, action: &str) -> Result<u32, AirlockError> {
        let uid = self.callers.uid(&self.dbus, header).await?;
        require_admin(uid, action)?;
        Ok(uid)
    }

    fn record(&self, event: Event) -> Result<(), AirlockError> {
        self.core.locked().record(event, now_unix())
    }
}

fn slot<'a>(service: &'a str, field: &'a str) -> Result<Slot<'a>, AirlockError> {
    let slot = Slot { service, field };
    slot.check().map_err(AirlockError::InvalidArgument)?;
    Ok(slot)
}

fn store_error(error: StoreError) -> AirlockError {
    let message = error.to_string();
    match error {
        StoreError::NoService(_) | StoreError::NoField { .. } => AirlockError::NotFound(message),
        StoreError::Full(_) => AirlockError::LimitExceeded(message),
        StoreError::Io { .. } | StoreError::Corrupt { .. } => {
            tracing::error!("{message}");
            AirlockError::Internal(message)
        }
    }
}

/// airlock-totp did not answer, or refused.
fn keys_error(e: zbus::Error) -> AirlockError {
    match AirlockError::from_remote(e) {
        AirlockError::ZBus(e) => AirlockError::Unavailable(format!(
            "airlock-totp did not answer ({e}); it holds the key that protects credentials: \
             is the airlock-totp service running?"
        )),
        other => other,
    }
}

#[zbus::interface(name = "org.airlock.Credentials1")]
impl CredentialsService {
    /// Seals `value` for `service`/`field` under a fresh data key, has
    /// airlock-totp wrap the key, and stores both (replacing an older value).
    async fn store(
        &self,
        #[zbus(header)] header: Header<'_>,
        service: &str,
        field: &str,
        value: &str,
    ) -> Result<(), AirlockError> {
        let uid = self.admin(&header, "store credentials").await?;
        let slot = slot(service, field)?;
        let value = Zeroizing::new(value.as_bytes().to_vec());
        if value.is_empty() || value.len() > MAX_VALUE_LEN {
            return Err(AirlockError::InvalidArgument(format!(
                "a credential value is 1 to {MAX_VALUE_LEN} bytes"
            )));
        }
        let data_key = credential::new_key().map_err(|e| AirlockError::Internal(e.to_string()))?;
        let sealed = credential::seal(data_key.as_ref(), slot, Purpose::Value, &value)
            .map_err(|e| AirlockError::Internal(e.to_string()))?;
        drop(value);
        let encoded_key = Zeroizing::new(credential::encode(data_key.as_ref()));
        drop(data_key);
        let wrapped_key = self
            .keys
            .wrap_key(service, field, &encoded_key)
            .await
            .map_err(keys_error)?;
        drop(encoded_key);
        let entry = Entry {
            wrapped_key,
            sealed_value: credential::encode(&sealed),
            stored_at: now_unix(),
            stored_by: uid,
        };
        let store = self.store.locked();
        let previous = store.put(slot, entry).map_err(store_error)?;
        let recorded = self.record(Event::CredentialStored {
            credential: service.to_owned(),
            field: field.to_owned(),
            by_uid: uid,
        });
        if let Err(e) = recorded {
            // Not on the record, so not stored.
            if let Err(undo) = store.restore(slot, previous) {
                tracing::error!("cannot undo an unaudited store of {service}/{field}: {undo}");
            }
            return Err(e);
        }
        tracing::info!("uid {uid} stored credential {service}/{field}");
        Ok(())
    }

    /// Service and field names, never values.
    async fn list(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<CredentialInfo>, AirlockError> {
        self.callers.uid(&self.dbus, &header).await?;
        self.store.locked().list().map_err(store_error)
    }

    /// Removes one field, or every field of `service`; returns how many.
    async fn remove(
        &self,
        #[zbus(header)] header: Header<'_>,
        service: &str,
        field: Optional<&str>,
    ) -> Result<u32, AirlockError> {
        let uid = self.admin(&header, "remove credentials").await?;
        slot(service, field.unwrap_or(credential::DEFAULT_FIELD))?;
        let store = self.store.locked();
        let removed = store.remove(service, *field).map_err(store_error)?;
        let count = removed.len() as u32;
        let recorded = self.record(Event::CredentialRemoved {
            credential: service.to_owned(),
            field: field.map(str::to_owned),
            fields: count,
            by_uid: uid,
        });
        if let Err(e) = recorded {
            if let Err(undo) = store.unremove(service, removed) {
                tracing::error!("cannot undo an unaudited removal from {service}: {undo}");
            }
            return Err(e);
        }
        tracing::info!("uid {uid} removed {count} field(s) of credential {service}");
        Ok(count)
    }

    /// The sealed value, for an admin's `airlockctl credentials get`, which
    /// has airlock-totp unwrap its key with the admin's code. Audited here,
    /// before the code is typed.
    async fn sealed(
        &self,
        #[zbus(header)] header: Header<'_>,
        service: &str,
        field: &str,
    ) -> Result<SealedCredential, AirlockError> {
        let uid = self.admin(&header, "read credentials").await?;
        let slot = slot(service, field)?;
        let entry = self.store.locked().get(slot).map_err(store_error)?;
        self.record(Event::CredentialFetched {
            credential: service.to_owned(),
            field: field.to_owned(),
            by_uid: uid,
        })?;
        Ok(entry.sealed())
    }
}
