//! `org.airlock.Enforcer1` on the system bus, for the gateway alone.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use airlock_common::dbus::{
    caller_uid, AirlockError, EnforcerStatus, SessionSpec, SignedGrantWire,
};
use airlock_common::ids;
use airlock_common::limits::{
    MAX_SEARCH_PATH, MAX_SIGNED_GRANT_LEN, MAX_SPEC_GRANTS, MAX_SPEC_RULES, MAX_SPEC_TOOLS,
};
use airlock_daemon::lock::MutexExt;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::zvariant::Optional;

use crate::cgroup::pid_of_pidfd;
use crate::loader::{Mode, LSM_FIX};
use crate::scope::Scopes;
use crate::sessions::Sessions;
use crate::supervisor::Supervisor;
use crate::totp_key::{Learned, TotpKey};

pub struct Enforcer {
    sessions: Arc<Mutex<Sessions>>,
    /// airlock-totp's key, which every grant must verify against.
    totp_key: Arc<TotpKey>,
    supervisor: Supervisor,
    mode: Mode,
    dbus: DBusProxy<'static>,
    /// The only non-root uid allowed to call.
    gateway_uid: Option<u32>,
    /// Under systemd: the sessions' scopes (scope.rs).
    scopes: Option<Scopes>,
}

impl Enforcer {
    pub fn new(
        supervisor: Supervisor,
        totp_key: Arc<TotpKey>,
        mode: Mode,
        dbus: DBusProxy<'static>,
        gateway_uid: Option<u32>,
        scopes: Option<Scopes>,
    ) -> Self {
        Enforcer {
            sessions: supervisor.sessions.clone(),
            supervisor,
            totp_key,
            mode,
            dbus,
            gateway_uid,
            scopes,
        }
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.locked()
    }

    /// airlock-totp's key to check `grants` with, asked for again if the
    /// one known does not vouch for them; a new key is applied to every
    /// session's grants first.
    async fn key_for<'g>(
        &self,
        grants: impl IntoIterator<Item = &'g SignedGrantWire>,
    ) -> Option<Vec<u8>> {
        let grants: Vec<SignedGrantWire> = grants.into_iter().cloned().collect();
        let (key, learned) = self.totp_key.for_grants(&grants).await;
        if let (Some(key), Learned::New) = (&key, learned) {
            self.sessions().recheck_grants(key);
        }
        key
    }

    /// Defence in depth behind the bus policy: root or the gateway only.
    async fn check_caller(&self, header: &Header<'_>) -> Result<(), AirlockError> {
        let uid = caller_uid(&self.dbus, header).await?;
        if uid == 0 || Some(uid) == self.gateway_uid {
            Ok(())
        } else {
            Err(AirlockError::AccessDenied(format!(
                "uid {uid} may not call the enforcer; only the gateway may"
            )))
        }
    }
}

fn check_spec(spec: &SessionSpec) -> Result<(), AirlockError> {
    if !ids::is_well_formed(&spec.id) {
        return Err(AirlockError::InvalidArgument("malformed session id".into()));
    }
    if spec.rules.len() > MAX_SPEC_RULES
        || spec.grants.len() > MAX_SPEC_GRANTS
        || spec.search_path.len() > MAX_SEARCH_PATH
        || spec.tools.len() > MAX_SPEC_TOOLS
    {
        return Err(AirlockError::InvalidArgument(
            "session spec is too large".into(),
        ));
    }
    if spec
        .grants
        .iter()
        .any(|g| g.payload.len() > MAX_SIGNED_GRANT_LEN || g.signature.len() > MAX_SIGNED_GRANT_LEN)
    {
        return Err(AirlockError::InvalidArgument(
            "a grant of the session spec is too large".into(),
        ));
    }
    for tool in &spec.tools {
        crate::sessions::grammar(tool).map_err(AirlockError::InvalidArgument)?;
    }
    Ok(())
}

fn failed(e: anyhow::Error) -> AirlockError {
    tracing::error!("{e:#}");
    AirlockError::Internal(format!("{e:#}"))
}

#[zbus::interface(name = "org.airlock.Enforcer1")]
impl Enforcer {
    async fn status(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<EnforcerStatus, AirlockError> {
        self.check_caller(&header).await?;
        let sessions = self.sessions();
        Ok(EnforcerStatus {
            mode: self.mode.enforcement(),
            detail: self.mode.describe(),
            fix: match self.mode {
                Mode::Lsm => None,
                Mode::Degraded { .. } => Some(LSM_FIX.to_owned()),
            }
            .into(),
            sessions: sessions.count() as u32,
            events_lost: sessions.kernel.events_lost(),
        })
    }

    async fn start_session(
        &self,
        #[zbus(header)] header: Header<'_>,
        spec: SessionSpec,
        pidfd: zbus::zvariant::OwnedFd,
    ) -> Result<(), AirlockError> {
        self.check_caller(&header).await?;
        check_spec(&spec)?;
        let pid = pid_of_pidfd(pidfd.as_raw_fd())
            .map_err(|e| AirlockError::InvalidArgument(format!("{e:#}")))?;
        let key = self.key_for(&spec.grants).await;
        if let Some(scopes) = &self.scopes {
            self.sessions().admit(&spec, pid).map_err(failed)?;
            scopes.start(&spec.id, pid).await.map_err(failed)?;
        }
        self.sessions()
            .start(spec, pid, key.as_deref())
            .map_err(failed)
    }

    async fn bind_user(
        &self,
        #[zbus(header)] header: Header<'_>,
        spec: SessionSpec,
    ) -> Result<(), AirlockError> {
        self.check_caller(&header).await?;
        check_spec(&spec)?;
        let key = self.key_for(&spec.grants).await;
        self.sessions()
            .bind_user(spec, key.as_deref())
            .map_err(failed)
    }

    async fn update_session(
        &self,
        #[zbus(header)] header: Header<'_>,
        spec: SessionSpec,
    ) -> Result<(), AirlockError> {
        self.check_caller(&header).await?;
        check_spec(&spec)?;
        let key = self.key_for(&spec.grants).await;
        self.sessions().update(spec, key.as_deref()).map_err(failed)
    }

    async fn end_session(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: &str,
        kill: bool,
    ) -> Result<(), AirlockError> {
        self.check_caller(&header).await?;
        // Not found only when there is nothing to end; a failure to end
        // one is a failure, so the gateway does not record it as ended.
        match self.sessions().end(id, kill) {
            Ok(true) => Ok(()),
            Ok(false) => Err(AirlockError::NotFound(format!("no session {id}"))),
            Err(e) => Err(failed(e)),
        }
    }

    async fn sync(
        &self,
        #[zbus(header)] header: Header<'_>,
        specs: Vec<SessionSpec>,
    ) -> Result<Vec<String>, AirlockError> {
        self.check_caller(&header).await?;
        for spec in &specs {
            check_spec(spec)?;
        }
        let key = self.key_for(specs.iter().flat_map(|s| &s.grants)).await;
        let (lost, errors) = self.sessions().sync(specs, key.as_deref());
        if errors.is_empty() {
            Ok(lost)
        } else {
            Err(AirlockError::Internal(errors.join("; ")))
        }
    }

    /// Takes a degraded-mode session's seccomp listener (see `supervisor`).
    async fn supervise_exec(
        &self,
        #[zbus(header)] header: Header<'_>,
        session: &str,
        listener: zbus::zvariant::OwnedFd,
    ) -> Result<(), AirlockError> {
        self.check_caller(&header).await?;
        if !ids::is_well_formed(session) {
            return Err(AirlockError::InvalidArgument("malformed session id".into()));
        }
        if self.mode == Mode::Lsm {
            return Err(AirlockError::Conflict(
                "BPF LSM refuses execs itself; sessions take no seccomp supervisor".into(),
            ));
        }
        let listener: std::os::fd::OwnedFd = listener.into();
        self.supervisor
            .attach(session, listener)
            .map_err(|e| AirlockError::InvalidArgument(format!("{e:#}")))
    }

    async fn session_of_pid(
        &self,
        #[zbus(header)] header: Header<'_>,
        pid: u32,
    ) -> Result<Optional<String>, AirlockError> {
        self.check_caller(&header).await?;
        Ok(self.sessions().session_of_pid(pid).into())
    }

    async fn session_of_socket(
        &self,
        #[zbus(header)] header: Header<'_>,
        cgroup: u64,
        uid: u32,
    ) -> Result<Optional<String>, AirlockError> {
        self.check_caller(&header).await?;
        Ok(self.sessions().session_of_socket(cgroup, uid).into())
    }
}
