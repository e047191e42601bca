//! The credential store's D-Bus interfaces: `org.airlock.Credentials1`, which
//! the gateway serves beside `Gateway1`, and `org.airlock.Keys1`, which
//! airlock-totp serves beside `Totp1`. Keys and sealed blobs travel as
//! standard base64; no plaintext value ever leaves the gateway except to an
//! admin who typed a TOTP code.

use serde::{Deserialize, Serialize};
use zbus::zvariant::{Optional, Type};

use crate::dbus::SignedGrantWire;

/// Interface names and where they are served.
pub const CREDENTIALS_INTERFACE: &str = "org.airlock.Credentials1";
pub const KEYS_INTERFACE: &str = "org.airlock.Keys1";

/// A service in the store and the names of its fields, never values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct CredentialInfo {
    pub service: String,
    pub fields: Vec<String>,
}

/// One stored value as the gateway keeps it: its data key wrapped by
/// airlock-totp, and the value sealed under that key (both base64).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SealedCredential {
    pub wrapped_key: String,
    pub sealed_value: String,
}

/// Who called airlock-proxy (or the gateway itself), as the kernel told it.
///
/// - On the Unix socket, `SO_PEERCRED` gives the uid and pid of the
///   process that connected; the gateway asks the enforcer which session
///   that process runs in.
/// - On the loopback port, `sock_diag` gives the connecting socket's owner
///   and the cgroup it was made in; the enforcer knows which session, if
///   any, that cgroup is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct CallerIdentity {
    pub uid: u32,
    /// The connecting process; 0 when unknown (loopback TCP).
    pub pid: u32,
    /// The cgroup id of the connecting socket; 0 when unknown (the Unix
    /// socket, or a kernel without `INET_DIAG_CGROUP_ID`).
    pub socket_cgroup: u64,
}

/// What the proxy needs to forward one request: where to, and the header
/// or query parameter that carries the credential (a secret: the proxy
/// zeroizes it after use and never logs it). Empty strings for none.
#[derive(Clone, Serialize, Deserialize, Type)]
pub struct ProxyGrant {
    /// `http` or `https`.
    pub scheme: String,
    /// `host:port`.
    pub authority: String,
    /// Prefix of every upstream path ("" for the root).
    pub base_path: String,
    pub header_name: String,
    pub header_value: String,
    pub query_name: String,
    pub query_value: String,
    /// The grant that covers the request.
    pub grant_id: String,
    pub access: crate::grant::Access,
}

impl std::fmt::Debug for ProxyGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyGrant")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("base_path", &self.base_path)
            .field("header_name", &self.header_name)
            .field("query_name", &self.query_name)
            .field("grant_id", &self.grant_id)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl zeroize::Zeroize for ProxyGrant {
    fn zeroize(&mut self) {
        self.header_value.zeroize();
        self.query_value.zeroize();
    }
}

impl Drop for ProxyGrant {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self);
    }
}

/// A tool's credential as `Release` hands it to the granted caller itself
/// (a secret: the helper zeroizes it once written to the tool, and it is
/// never logged).
#[derive(Clone, Serialize, Deserialize, Type)]
pub struct ReleasedCredential {
    /// `aws`, `kubernetes`, `git` or `docker`.
    pub tool: String,
    /// Where it is used (git's host, Docker's registry, the Kubernetes API
    /// server); "" for AWS.
    pub server: String,
    /// Field name and value, for the fields stored (an optional one, such
    /// as AWS's `session_token`, may be absent).
    pub fields: Vec<(String, String)>,
    /// When the grant that released it expires (Unix seconds): the tools
    /// are told to ask again then.
    pub expires_at: i64,
    pub grant_id: String,
}

impl ReleasedCredential {
    /// The value of `field`, if released.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, value)| value.as_str())
    }
}

impl std::fmt::Debug for ReleasedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.fields.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ReleasedCredential")
            .field("tool", &self.tool)
            .field("server", &self.server)
            .field("fields", &names)
            .field("expires_at", &self.expires_at)
            .field("grant_id", &self.grant_id)
            .finish()
    }
}

impl zeroize::Zeroize for ReleasedCredential {
    fn zeroize(&mut self) {
        for (_, value) in &mut self.fields {
            value.zeroize();
        }
    }
}

impl Drop for ReleasedCredential {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self);
    }
}

/// What the proxy needs for one mail operation: where the IMAP server is,
/// and the login (a secret: zeroized after `LOGIN`, never logged).
#[derive(Clone, Serialize, Deserialize, Type)]
pub struct MailLogin {
    /// TLS from the first byte, STARTTLS, or plain (loopback only). A
    /// string on the bus: the gateway and the proxy of one release agree.
    pub security: crate::services::MailSecurity,
    pub host: String,
    pub port: u16,
    /// The service's own CA file ("" for the proxy's, the system's).
    pub ca_file: String,
    pub user: String,
    pub password: String,
    pub grant_id: String,
}

impl std::fmt::Debug for MailLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailLogin")
            .field("security", &self.security)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("ca_file", &self.ca_file)
            .field("grant_id", &self.grant_id)
            .finish_non_exhaustive()
    }
}

impl zeroize::Zeroize for MailLogin {
    fn zeroize(&mut self) {
        self.user.zeroize();
        self.password.zeroize();
    }
}

impl Drop for MailLogin {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self);
    }
}

/// How a mail operation ended, as airlock-proxy reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct MailOutcome {
    pub service: String,
    pub op: String,
    pub caller_uid: u32,
    pub grant_id: String,
    /// Messages listed or found, 1 for a message read, the unread count.
    pub count: u32,
    /// Why it failed; empty if it did not.
    pub error: String,
}

/// Client side of `org.airlock.Credentials1` (the gateway). Storing,
/// removing and fetching a sealed value are for root and group
/// airlock-admin; listing names is for everyone.
#[zbus::proxy(
    interface = "org.airlock.Credentials1",
    default_service = "org.airlock.Gateway1",
    default_path = "/org/airlock/Gateway1"
)]
pub trait Credentials1 {
    /// Stores `value` as `service`'s `field`, replacing what was there.
    fn store(&self, service: &str, field: &str, value: &str) -> zbus::Result<()>;
    fn list(&self) -> zbus::Result<Vec<CredentialInfo>>;
    /// Removes one field, or (none) the whole service; returns how many
    /// fields went.
    fn remove(&self, service: &str, field: Optional<&str>) -> zbus::Result<u32>;
    /// The sealed value, for `airlockctl credentials get` to have
    /// airlock-totp open with the admin's code.
    fn sealed(&self, service: &str, field: &str) -> zbus::Result<SealedCredential>;
    /// airlock-proxy only: the credential for `method` on `path` (under the
    /// service) for the caller it identified, if a live grant covers it.
    /// A grant bound to a session covers the caller only when its process
    /// or its socket's cgroup is in that session. Audited.
    fn authorize(
        &self,
        service: &str,
        method: &str,
        path: &str,
        caller: CallerIdentity,
    ) -> zbus::Result<ProxyGrant>;
    /// airlock-proxy only: `http` or `imap`, so that it knows how to serve
    /// `/SERVICE/…`. NotFound for an undefined service.
    fn service_kind(&self, service: &str) -> zbus::Result<String>;
    /// airlock-proxy only: the login for mail operation `op` (one of
    /// [`MailOp`](crate::mail::MailOp)'s names) on `service` for the caller
    /// it identified, if a live grant covers it. Audited.
    fn authorize_mail(
        &self,
        service: &str,
        op: &str,
        caller: CallerIdentity,
    ) -> zbus::Result<MailLogin>;
    /// airlock-proxy only: how an operation `authorize_mail` let through
    /// ended. Audited as the seed's `operation` record.
    fn mail_done(&self, outcome: MailOutcome) -> zbus::Result<()>;
    /// A tool service's credential, for the calling process itself (its
    /// uid and, through its cgroup, its session come from the bus): only
    /// under a live grant that covers `service` for that uid and session.
    /// Audited, never with a value.
    fn release(&self, service: &str) -> zbus::Result<ReleasedCredential>;
}

/// Client side of `org.airlock.Keys1` (airlock-totp): it holds the
/// key-encryption key and unwraps a data key only for a live grant it signed
/// that names the service, or for a person with a valid TOTP code.
#[zbus::proxy(
    interface = "org.airlock.Keys1",
    default_service = "org.airlock.Totp1",
    default_path = "/org/airlock/Totp1"
)]
pub trait Keys1 {
    /// The gateway: wraps a fresh data key (base64) for `service`/`field`.
    fn wrap_key(&self, service: &str, field: &str, key: &str) -> zbus::Result<String>;
    /// The gateway: unwraps a data key for a live grant airlock-totp signed
    /// whose scope names `service`.
    fn unwrap_for_grant(
        &self,
        service: &str,
        field: &str,
        wrapped_key: &str,
        grant: SignedGrantWire,
    ) -> zbus::Result<String>;
    /// Root and group airlock-admin: unwraps a data key after a TOTP code.
    fn unwrap_for_admin(
        &self,
        service: &str,
        field: &str,
        wrapped_key: &str,
        code: &str,
    ) -> zbus::Result<String>;
}
