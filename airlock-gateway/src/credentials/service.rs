//! `org.airlock.Credentials1`, served beside `Gateway1` on its object path.
//!
//! Storing, removing and fetching a sealed value are for root and group
//! airlock-admin; anyone may list service and field names. Values are sealed
//! here under a fresh data key that airlock-totp wraps at once; the
//! plaintext is zeroized as soon as it is sealed, and no value is ever
//! logged or audited (records carry names and uids only).

use std::sync::{Arc, Mutex};

use airlock_common::credential::bus::{
    CallerIdentity, CredentialInfo, Keys1Proxy, MailLogin, MailOutcome, ProxyGrant,
    ReleasedCredential, SealedCredential,
};
use airlock_common::credential::{self, Purpose, Slot, KEY_LEN, MAX_SEALED_LEN, MAX_VALUE_LEN};
use airlock_common::dbus::{AirlockError, Enforcer1Proxy};
use airlock_common::event::Event;
use airlock_common::grant::Access;
use airlock_common::mail::MailOp;
use airlock_common::names;
use airlock_common::services::{
    HttpService, ImapService, Injection, ServiceDef, ServiceKind, Tool,
};
use airlock_common::timefmt::now_unix;
use airlock_daemon::lock::MutexExt;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::zvariant::Optional;
use zeroize::Zeroizing;

use super::cache::{Injected, InjectionCache};
use super::services::Services;
use super::{CredentialStore, Entry, StoreError};
use crate::caller::{caller_pid, require_admin, Callers};
use crate::core::service_grants::Covering;
use crate::core::Core;

pub struct CredentialsService {
    store: Mutex<CredentialStore>,
    core: Arc<Mutex<Core>>,
    services: Arc<Services>,
    keys: Keys1Proxy<'static>,
    enforcer: Enforcer1Proxy<'static>,
    dbus: DBusProxy<'static>,
    callers: Arc<Callers>,
    /// airlock-proxy's uid, the only caller of `Authorize` but root.
    proxy_uid: Option<u32>,
    /// HTTP services' injections per live grant (see the cache module).
    injections: Arc<InjectionCache>,
}

/// What the gateway talks to on the bus.
pub struct Peers {
    pub keys: Keys1Proxy<'static>,
    pub enforcer: Enforcer1Proxy<'static>,
    pub dbus: DBusProxy<'static>,
    pub callers: Arc<Callers>,
}

/// A caller's standing for one service: its governed session (when a
/// session-bound grant made it worth asking the enforcer) and the live
/// grant that covers it, if any (write grants first, then the
/// longest-lived).
struct CallerGrant {
    uid: u32,
    session: Option<String>,
    grant: Option<Covering>,
}

impl CallerGrant {
    /// The audit record of one operation `op` on `service` by this caller.
    fn operation(&self, service: &str, op: &str, allowed: bool, refusal: Option<String>) -> Event {
        Event::ServiceOperation {
            credential: service.to_owned(),
            op: op.to_owned(),
            uid: self.uid,
            session: self.session.clone(),
            grant_id: self.grant.as_ref().map(|g| g.body.grant_id.clone()),
            allowed,
            refusal,
        }
    }

    /// Why nothing covers the caller, and how to ask (`more` ends it).
    fn no_grant(&self, service: &str, more: &str) -> String {
        format!(
            "no live grant lets uid {} use {service}{}; ask for one: `airlockctl request \
             --services {service} --reason \"…\"`, then an admin approves it with a TOTP \
             code{more}",
            self.uid,
            self.session
                .as_deref()
                .map(|s| format!(" in session {s}"))
                .unwrap_or_default()
        )
    }
}

/// The longest path the audit log keeps of an operation.
const MAX_AUDITED_PATH: usize = 256;
/// The longest path the proxy may ask about.
const MAX_PATH: usize = 4096;

impl CredentialsService {
    pub fn new(
        store: CredentialStore,
        core: Arc<Mutex<Core>>,
        services: Arc<Services>,
        injections: Arc<InjectionCache>,
        peers: Peers,
    ) -> Self {
        CredentialsService {
            store: Mutex::new(store),
            core,
            services,
            keys: peers.keys,
            enforcer: peers.enforcer,
            dbus: peers.dbus,
            callers: peers.callers,
            proxy_uid: nix::unistd::User::from_name(names::PROXY_USER)
                .ok()
                .flatten()
                .map(|user| user.uid.as_raw()),
            injections,
        }
    }

    /// `service`'s definition: a valid name that services.d defines.
    fn service_def(&self, service: &str) -> Result<ServiceDef, AirlockError> {
        slot(service, credential::DEFAULT_FIELD)?;
        self.services.get(service).ok_or_else(|| {
            AirlockError::NotFound(format!(
                "no service {service:?} is defined (see `airlockctl services list`)"
            ))
        })
    }

    /// What lets `caller` use `service` now.
    async fn caller_grant(&self, service: &str, caller: CallerIdentity) -> CallerGrant {
        let uid = caller.uid;
        let session = self.session_of(service, caller).await;
        let grant = self
            .core
            .locked()
            .service_grants(service, uid, session.as_deref(), now_unix())
            .into_iter()
            .next();
        CallerGrant {
            uid,
            session,
            grant,
        }
    }

    /// Records an operation and returns once its record is on disk. The
    /// record is written under the lock and synced outside it (group
    /// commit: concurrent operations share one fsync); nobody is answered
    /// before the sync covering its own record.
    async fn audit(&self, event: Event) -> Result<(), AirlockError> {
        let ticket = {
            let mut core = self.core.locked();
            core.record_deferred(event, now_unix())?;
            core.durability_ticket()
        };
        crate::service::durable(ticket).await
    }

    /// The caller's governed session, asked of the enforcer only when a
    /// session-bound grant could cover it; none if it cannot be told.
    async fn session_of(&self, service: &str, caller: CallerIdentity) -> Option<String> {
        let CallerIdentity {
            uid,
            pid,
            socket_cgroup,
        } = caller;
        let worth_asking =
            self.core
                .locked()
                .has_session_bound_service_grant(service, uid, now_unix());
        if !worth_asking {
            return None;
        }
        // Without a pid (loopback TCP) the socket's cgroup tells; without
        // that either (an older kernel), only a session binding the uid.
        let asked = if pid != 0 {
            self.enforcer.session_of_pid(pid).await
        } else {
            self.enforcer.session_of_socket(socket_cgroup, uid).await
        };
        match asked {
            Ok(session) => session.into(),
            Err(e) => {
                tracing::warn!("cannot tell the session of {caller:?}: {e}");
                None
            }
        }
    }

    /// Opens `field` of `service` with the data key airlock-totp unwraps
    /// for `grant`.
    async fn open_field(
        &self,
        service: &str,
        field: &str,
        grant: &airlock_common::grant::SignedGrant,
    ) -> Result<Zeroizing<Vec<u8>>, AirlockError> {
        let slot = Slot { service, field };
        let entry = self.store.locked().get(slot).map_err(|e| match e {
            StoreError::NoService(_) | StoreError::NoField { .. } => {
                AirlockError::NotFound(format!(
                    "{e}: an admin stores it with `airlockctl credentials add {service} {field}`"
                ))
            }
            other => store_error(other),
        })?;
        let key = self
            .keys
            .unwrap_for_grant(service, field, &entry.wrapped_key, grant.clone().into())
            .await
            .map_err(keys_error)?;
        let key = Zeroizing::new(key);
        let key = credential::decode(&key, KEY_LEN).map_err(AirlockError::Internal)?;
        let sealed = credential::decode(&entry.sealed_value, MAX_SEALED_LEN)
            .map_err(AirlockError::Internal)?;
        credential::open(&key, slot, Purpose::Value, &sealed)
            .map_err(|e| AirlockError::Internal(format!("{service}/{field}: {e}")))
    }

    /// The header or query parameter that carries the credential.
    async fn injection(
        &self,
        service: &str,
        http: &HttpService,
        grant: &airlock_common::grant::SignedGrant,
    ) -> Result<Injected, AirlockError> {
        let text = |bytes: Zeroizing<Vec<u8>>| -> Result<Zeroizing<String>, AirlockError> {
            match std::str::from_utf8(&bytes) {
                Ok(s) if !s.bytes().any(|b| b.is_ascii_control()) => {
                    Ok(Zeroizing::new(s.to_owned()))
                }
                _ => Err(AirlockError::Internal(format!(
                    "a stored value of {service} holds control characters and cannot be sent"
                ))),
            }
        };
        let none = || Zeroizing::new(String::new());
        let (header_name, header_value, query_name, query_value) = match &http.inject {
            Injection::Bearer { field } => {
                let value = text(self.open_field(service, field, grant).await?)?;
                let header = Zeroizing::new(format!("Bearer {}", value.as_str()));
                ("Authorization".into(), header, String::new(), none())
            }
            Injection::Header { name, field } => {
                let value = text(self.open_field(service, field, grant).await?)?;
                (name.clone(), value, String::new(), none())
            }
            Injection::Basic {
                username_field,
                password_field,
            } => {
                let user = text(self.open_field(service, username_field, grant).await?)?;
                let password = text(self.open_field(service, password_field, grant).await?)?;
                let pair = Zeroizing::new(format!("{}:{}", user.as_str(), password.as_str()));
                let header =
                    Zeroizing::new(format!("Basic {}", credential::encode(pair.as_bytes())));
                ("Authorization".into(), header, String::new(), none())
            }
            Injection::Query { name, field } => {
                let value = text(self.open_field(service, field, grant).await?)?;
                let encoded = Zeroizing::new(percent_encode(&value));
                (String::new(), none(), name.clone(), encoded)
            }
        };
        Ok(Injected {
            header_name,
            header_value,
            query_name,
            query_value,
        })
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The operation a release is audited as: the protocol it serves.
fn release_op(tool: Tool) -> &'static str {
    match tool {
        Tool::Aws => "credential_process",
        Tool::Kubernetes => "exec_credential",
        Tool::Git => "git_credential",
        Tool::Docker => "docker_credential",
    }
}

fn check_request(method: &str, path: &str) -> Result<(), AirlockError> {
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(AirlockError::InvalidArgument(
            "malformed HTTP method".into(),
        ));
    }
    if !path.starts_with('/')
        || path.len() > MAX_PATH
        || path.bytes().any(|b| b.is_ascii_control() || b == b' ')
    {
        return Err(AirlockError::InvalidArgument("malformed path".into()));
    }
    Ok(())
}

/// How a mail operation's error is kept in the audit log, at most.
const MAX_AUDITED_ERROR: usize = 512;

impl CredentialsService {
    /// Only airlock-proxy (or root) asks for what a caller's grant opens.
    async fn require_proxy(&self, header: &Header<'_>) -> Result<(), AirlockError> {
        let uid = self.callers.uid(&self.dbus, header).await?;
        if uid != 0 && Some(uid) != self.proxy_uid {
            return Err(AirlockError::AccessDenied(format!(
                "only airlock-proxy (user {}) asks for credentials to inject",
                names::PROXY_USER
            )));
        }
        Ok(())
    }

    /// The user and password of an IMAP service, as text.
    async fn mail_login(
        &self,
        service: &str,
        imap: &ImapService,
        grant: &airlock_common::grant::SignedGrant,
    ) -> Result<(Zeroizing<String>, Zeroizing<String>), AirlockError> {
        let text = |bytes: Zeroizing<Vec<u8>>| -> Result<Zeroizing<String>, AirlockError> {
            match std::str::from_utf8(&bytes) {
                Ok(s) if !s.bytes().any(|b| b.is_ascii_control()) => {
                    Ok(Zeroizing::new(s.to_owned()))
                }
                _ => Err(AirlockError::Internal(format!(
                    "a stored value of {service} holds control characters and cannot be sent"
                ))),
            }
        };
        let user = text(self.open_field(service, &imap.user_field, grant).await?)?;
        let password = text(
            self.open_field(service, &imap.password_field, grant)
                .await?,
        )?;
        Ok((user, password))
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
        // Injections made from the old value are not served again.
        self.injections.forget_service(service);
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
        self.injections.forget_service(service);
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

    /// airlock-proxy asks for the credential of one request: `method` on
    /// `path` under `service`, for the caller it identified. Refused without a
    /// live grant for the caller (and, for a session-bound grant, its
    /// session), and for a method that writes under a read-only grant;
    /// every answer is audited, never with a value.
    async fn authorize(
        &self,
        #[zbus(header)] header: Header<'_>,
        service: &str,
        method: &str,
        path: &str,
        caller: CallerIdentity,
    ) -> Result<ProxyGrant, AirlockError> {
        self.require_proxy(&header).await?;
        check_request(method, path)?;
        let def = self.service_def(service)?;
        let ServiceKind::Http(http) = &def.kind else {
            return Err(AirlockError::InvalidArgument(format!(
                "service {service} is {}, not reached over HTTP",
                def.kind.as_str()
            )));
        };
        let mut audited: String = path.chars().take(MAX_AUDITED_PATH).collect();
        if audited.len() < path.len() {
            audited.push('…');
        }
        let op = format!("{method} {audited}");
        let standing = self.caller_grant(service, caller).await;
        let read_only = http.is_read_only(method, path);
        let refusal = match &standing.grant {
            None => Some(standing.no_grant(service, "")),
            Some(grant) if !read_only && grant.body.access == Access::Read => Some(format!(
                "grant {} for {service} is read-only, and {method} {audited} may change \
                 something (read-only is GET, HEAD, OPTIONS and the service's read-only POST \
                 paths); ask for write access: `airlockctl request --services {service} \
                 --reason \"…\"`, approved with `airlockctl approve --write`",
                grant.body.grant_id
            )),
            Some(_) => None,
        };
        if let Some(why) = refusal {
            self.audit(standing.operation(service, &op, false, Some(why.clone())))
                .await?;
            return Err(AirlockError::AccessDenied(why));
        }
        let grant = standing
            .grant
            .as_ref()
            .expect("a grant when nothing refused");
        let grant_id = grant.body.grant_id.as_str();
        let cached = self
            .injections
            .get(grant_id, service, &http.inject, now_unix());
        let injected = match cached {
            Some(hit) => hit,
            None => {
                let generation = self.injections.generation();
                match self.injection(service, http, &grant.signed).await {
                    Ok(made) => {
                        self.injections.put(
                            generation,
                            (grant_id, service),
                            &http.inject,
                            grant.body.expires_at,
                            made.clone(),
                        );
                        made
                    }
                    Err(e) => {
                        self.audit(standing.operation(service, &op, false, Some(e.message())))
                            .await?;
                        return Err(e);
                    }
                }
            }
        };
        self.audit(standing.operation(service, &op, true, None))
            .await?;
        Ok(ProxyGrant {
            scheme: if http.upstream.tls { "https" } else { "http" }.into(),
            authority: http.upstream.authority(),
            base_path: http.upstream.base_path.clone(),
            header_name: injected.header_name,
            header_value: injected.header_value.as_str().to_owned(),
            query_name: injected.query_name,
            query_value: injected.query_value.as_str().to_owned(),
            grant_id: grant.body.grant_id.clone(),
            access: grant.body.access,
        })
    }

    /// A tool service's credential for the calling process itself: its uid
    /// from the bus, its session from its pid's cgroup (as the enforcer
    /// tells it). Released only under a live grant covering `service` for
    /// that uid and session; every answer is audited as an operation
    /// (`op` names the tool's protocol), never with a value.
    async fn release(
        &self,
        #[zbus(header)] header: Header<'_>,
        service: &str,
    ) -> Result<ReleasedCredential, AirlockError> {
        let uid = self.callers.uid(&self.dbus, &header).await?;
        let def = self.service_def(service)?;
        let ServiceKind::Tool(tool) = &def.kind else {
            return Err(AirlockError::InvalidArgument(format!(
                "service {service} is {}: its credential is never released, Airlock uses it \
                 for you (the proxy or `airlockctl access`)",
                def.kind.as_str()
            )));
        };
        let pid = caller_pid(&self.dbus, &header).await?;
        let caller = CallerIdentity {
            uid,
            pid,
            socket_cgroup: 0,
        };
        let standing = self.caller_grant(service, caller).await;
        let op = release_op(tool.tool);
        let Some(grant) = &standing.grant else {
            let why = standing.no_grant(service, " (`airlockctl approve`)");
            self.audit(standing.operation(service, op, false, Some(why.clone())))
                .await?;
            return Err(AirlockError::AccessDenied(why));
        };
        let mut released = ReleasedCredential {
            tool: tool.tool.as_str().to_owned(),
            server: tool.server.clone().unwrap_or_default(),
            fields: Vec::with_capacity(def.fields.len()),
            expires_at: grant.body.expires_at,
            grant_id: grant.body.grant_id.clone(),
        };
        // Each field's key is unwrapped by airlock-totp: ask for all at once.
        let opened = futures_util::future::join_all(
            def.fields
                .iter()
                .map(|field| self.open_field(service, field, &grant.signed)),
        )
        .await;
        for (field, opened) in def.fields.iter().zip(opened) {
            let optional = !tool
                .tool
                .required_fields()
                .iter()
                .any(|group| group.contains(&field.as_str()));
            let value = match opened {
                Ok(value) => value,
                Err(AirlockError::NotFound(_)) if optional => continue,
                Err(e) => {
                    self.audit(standing.operation(service, op, false, Some(e.message())))
                        .await?;
                    return Err(e);
                }
            };
            match std::str::from_utf8(&value) {
                Ok(text) if !text.bytes().any(|b| b.is_ascii_control()) => {
                    released.fields.push((field.clone(), text.to_owned()));
                }
                _ => {
                    let e = AirlockError::Internal(format!(
                        "the stored {service}/{field} holds control characters: a tool's \
                         protocol cannot carry it (store it again)"
                    ));
                    self.audit(standing.operation(service, op, false, Some(e.message())))
                        .await?;
                    return Err(e);
                }
            }
        }
        self.audit(standing.operation(service, op, true, None))
            .await?;
        tracing::info!(
            "released {service} to uid {uid} (pid {pid}) under {}",
            released.grant_id
        );
        Ok(released)
    }

    /// airlock-proxy asks how `/SERVICE/…` is served: `http` or `imap`.
    async fn service_kind(
        &self,
        #[zbus(header)] header: Header<'_>,
        service: &str,
    ) -> Result<String, AirlockError> {
        self.require_proxy(&header).await?;
        Ok(self.service_def(service)?.kind.as_str().to_owned())
    }

    /// airlock-proxy asks for the login of one mail operation `op` on
    /// `service` for the caller it identified. Refused for a name that is
    /// not one of the read operations, and without a live grant for the
    /// caller (and its session); every answer is audited, never with a
    /// value. All mail operations read, so a read-only grant suffices.
    async fn authorize_mail(
        &self,
        #[zbus(header)] header: Header<'_>,
        service: &str,
        op: &str,
        caller: CallerIdentity,
    ) -> Result<MailLogin, AirlockError> {
        self.require_proxy(&header).await?;
        let def = self.service_def(service)?;
        let ServiceKind::Imap(imap) = &def.kind else {
            return Err(AirlockError::InvalidArgument(format!(
                "service {service} is {}, not a mailbox",
                def.kind.as_str()
            )));
        };
        let audited_op: String = op.chars().take(64).filter(|c| !c.is_control()).collect();
        let standing = self.caller_grant(service, caller).await;
        let refusal = if MailOp::parse(op).is_none() {
            Some(MailOp::refusal(op))
        } else if standing.grant.is_none() {
            Some(standing.no_grant(
                service,
                &format!(
                    " (or run `airlockctl access {service} {op}`, which asks and approves at \
                     the terminal)"
                ),
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            self.audit(standing.operation(service, &audited_op, false, Some(why.clone())))
                .await?;
            return Err(AirlockError::AccessDenied(why));
        }
        let grant = standing
            .grant
            .as_ref()
            .expect("a grant when nothing refused");
        let (user, password) = match self.mail_login(service, imap, &grant.signed).await {
            Ok(login) => login,
            Err(e) => {
                self.audit(standing.operation(service, &audited_op, false, Some(e.message())))
                    .await?;
                return Err(e);
            }
        };
        self.audit(standing.operation(service, &audited_op, true, None))
            .await?;
        Ok(MailLogin {
            security: imap.security(),
            host: imap.upstream.host.clone(),
            port: imap.upstream.port,
            ca_file: imap
                .ca_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            user: user.as_str().to_owned(),
            password: password.as_str().to_owned(),
            grant_id: grant.body.grant_id.clone(),
        })
    }

    /// airlock-proxy reports how a mail operation it was let through
    /// ended; recorded as the seed's `operation` record.
    async fn mail_done(
        &self,
        #[zbus(header)] header: Header<'_>,
        outcome: MailOutcome,
    ) -> Result<(), AirlockError> {
        self.require_proxy(&header).await?;
        let MailOutcome {
            service,
            op,
            caller_uid,
            grant_id,
            count,
            error,
        } = outcome;
        slot(&service, credential::DEFAULT_FIELD)?;
        let op = MailOp::parse(&op)
            .ok_or_else(|| AirlockError::InvalidArgument(MailOp::refusal(&op)))?;
        if grant_id.len() > 128 || grant_id.bytes().any(|b| b.is_ascii_control()) {
            return Err(AirlockError::InvalidArgument("malformed grant id".into()));
        }
        let printable: Vec<char> = error.chars().filter(|c| !c.is_control()).collect();
        let mut kept: String = printable.iter().take(MAX_AUDITED_ERROR).collect();
        if printable.len() > MAX_AUDITED_ERROR {
            kept.push('…');
        }
        self.audit(Event::Operation {
            credential: service,
            op: op.as_str().to_owned(),
            uid: caller_uid,
            grant_id,
            count: kept.is_empty().then_some(count),
            error: (!kept.is_empty()).then_some(kept),
        })
        .await
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
