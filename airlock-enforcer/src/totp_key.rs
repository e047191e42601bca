//! airlock-totp's grant-verification key, asked of airlock-totp itself.
//!
//! The gateway may not vouch for the key that checks the grants it hands
//! over, so the enforcer asks `Totp1.PublicKey` directly, of the connection
//! that owns `org.airlock.Totp1`, and only if that connection runs as the
//! airlock-totp user. Without a key no grant is installed (sessions are
//! governed all the same): the key is asked for at start, whenever
//! airlock-totp (re)appears on the bus, and whenever a spec brings grants the
//! known key does not vouch for; the key airlock-totp gives then replaces
//! it (airlock-totp keeps one signing key for good, so a change means its
//! state was replaced, and grants signed before no longer count).

use std::sync::Mutex;
use std::time::Duration;

use airlock_common::audit::countersign::decode_public_key;
use airlock_common::dbus::{SignedGrantWire, Totp1Proxy};
use airlock_common::names;
use airlock_daemon::lock::MutexExt;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_util::StreamExt;
use zbus::fdo::DBusProxy;
use zbus::names::{BusName, WellKnownName};

use crate::grants::signed_by_another_key;

/// How long airlock-totp has to answer: a spec waits for it.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct TotpKey {
    conn: zbus::Connection,
    dbus: DBusProxy<'static>,
    /// The airlock-totp user's uid; none if there is no such user (then no
    /// key is ever trusted).
    totp_uid: Option<u32>,
    key: Mutex<Option<Vec<u8>>>,
}

/// What asking airlock-totp changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Learned {
    /// The key known before, confirmed.
    Same,
    /// A key where there was none, or another one: installed grants must be
    /// checked again.
    New,
}

impl TotpKey {
    pub fn new(conn: zbus::Connection, dbus: DBusProxy<'static>, totp_uid: Option<u32>) -> Self {
        TotpKey {
            conn,
            dbus,
            totp_uid,
            key: Mutex::new(None),
        }
    }

    pub fn current(&self) -> Option<Vec<u8>> {
        self.key.locked().clone()
    }

    /// Asks airlock-totp for its key and keeps it. Errors say why there is
    /// none; the key known before stays.
    pub async fn ask(&self) -> Result<Learned, String> {
        let fresh = self.fetch().await?;
        let mut key = self.key.locked();
        match key.as_deref() {
            Some(known) if known == fresh.as_slice() => Ok(Learned::Same),
            Some(known) => {
                tracing::warn!(
                    "airlock-totp's grant-verification key changed from {} to {}: grants signed \
                     with the old key are no longer installed",
                    B64.encode(known),
                    B64.encode(&fresh)
                );
                *key = Some(fresh);
                Ok(Learned::New)
            }
            None => {
                tracing::info!(
                    "airlock-totp's grant-verification key: {}",
                    B64.encode(&fresh)
                );
                *key = Some(fresh);
                Ok(Learned::New)
            }
        }
    }

    /// The key to check `grants` with: the one known, unless there is none
    /// or it does not vouch for one of them, in which case airlock-totp is
    /// asked again first. Says whether the key changed.
    pub async fn for_grants(&self, grants: &[SignedGrantWire]) -> (Option<Vec<u8>>, Learned) {
        let known = self.current();
        let stale = match &known {
            None => !grants.is_empty(),
            Some(key) => grants.iter().any(|g| signed_by_another_key(g, key)),
        };
        if !stale {
            return (known, Learned::Same);
        }
        match self.ask().await {
            Ok(learned) => (self.current(), learned),
            Err(e) => {
                tracing::warn!("cannot ask airlock-totp for its grant-verification key: {e}");
                (known, Learned::Same)
            }
        }
    }

    /// Asks for the key now and again each time airlock-totp appears on the
    /// bus; `learned` gets every new key. Returns only if the bus fails.
    pub async fn watch(&self, learned: impl Fn(&[u8])) -> zbus::Result<()> {
        let mut appeared = self
            .dbus
            .receive_name_owner_changed_with_args(&[(0, names::TOTP_BUS_NAME)])
            .await?;
        loop {
            match self.ask().await {
                Ok(Learned::New) => {
                    if let Some(key) = self.current() {
                        learned(&key);
                    }
                }
                Ok(Learned::Same) => {}
                Err(e) => tracing::warn!(
                    "airlock-totp's grant-verification key is not available ({e}): sessions are \
                     governed, but no grant is installed until airlock-totp answers"
                ),
            }
            loop {
                let change = appeared.next().await.ok_or_else(|| {
                    zbus::Error::Failure("the bus stopped reporting name owners".into())
                })?;
                if change.args().is_ok_and(|a| a.new_owner().is_some()) {
                    break;
                }
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<u8>, String> {
        let totp_uid = self.totp_uid.ok_or_else(|| {
            format!(
                "there is no user {}, so no connection can vouch for the key",
                names::TOTP_USER
            )
        })?;
        let name = BusName::from(WellKnownName::from_static_str_unchecked(
            names::TOTP_BUS_NAME,
        ));
        let owner = self
            .dbus
            .get_name_owner(name)
            .await
            .map_err(|e| format!("{} is not on the bus ({e})", names::TOTP_BUS_NAME))?;
        // Asked of that one connection, so the answer comes from the process
        // whose uid was checked, even if the name changes hands meanwhile.
        let owner_uid = self
            .dbus
            .get_connection_unix_user(BusName::from(owner.as_ref()))
            .await
            .map_err(|e| format!("cannot tell who owns {} ({e})", names::TOTP_BUS_NAME))?;
        if owner_uid != totp_uid {
            return Err(format!(
                "{} is owned by uid {owner_uid}, not by {} (uid {totp_uid}); its key is not \
                 trusted",
                names::TOTP_BUS_NAME,
                names::TOTP_USER
            ));
        }
        let totp = async {
            Totp1Proxy::builder(&self.conn)
                .destination(owner.clone())?
                .build()
                .await
        }
        .await
        .map_err(|e: zbus::Error| e.to_string())?;
        let text = tokio::time::timeout(ASK_TIMEOUT, totp.public_key())
            .await
            .map_err(|_| format!("airlock-totp did not answer within {ASK_TIMEOUT:?}"))?
            .map_err(|e| format!("airlock-totp refused: {e}"))?;
        decode_public_key(&text).map_err(|e| format!("airlock-totp's key is malformed: {e}"))
    }
}
