//! The events Airlock records: one typed vocabulary for what the audit log
//! says and what the gateway's recovery replays.
//!
//! An [`Event`] becomes an audit record's `event` name and fields through
//! serde (`#[serde(tag = "event")]`), and a record read back becomes the
//! same `Event` again, so the writer and the replayer cannot disagree on a
//! name or a field. Field names are the ones the log has always used: logs
//! written before this type existed still parse (optional fields that older
//! records lack are `Option`s or `#[serde(default)]`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::audit::Record;
use crate::enforcement::{EnforcementMode, EventKind, Outcome, Stage};
use crate::grant::{Access, Scope, SignedGrant};
use crate::integrations::{AppKind, Ciphertext, EnforcerHello, SignedDecision};

/// Which process's doing an event is, recorded as the `service` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Gateway,
    Enforcer,
    Totp,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Gateway => "gateway",
            Service::Enforcer => "enforcer",
            Service::Totp => "totp",
        }
    }
}

/// Every event the gateway records. Variants are grouped by the part of the
/// state they change; [`Event::Other`] stands for records this build does not
/// know (written by a newer build, or by the audit log itself, such as
/// `chain_restarted`) and is only ever read, never recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    // ---- requests ----------------------------------------------------------
    AccessRequested {
        request_id: String,
        #[serde(with = "scope_text")]
        scope: Scope,
        reason: String,
        uid: u32,
        #[serde(default)]
        session: Option<String>,
        requested_ttl_secs: u64,
        /// Absent in records written before requests expired by their record.
        #[serde(default, with = "opt_rfc3339", skip_serializing_if = "Option::is_none")]
        expires_at: Option<i64>,
    },
    RequestDenied {
        request_id: String,
        reason: String,
        approver_uid: u32,
    },
    RequestExpired {
        request_id: String,
    },

    // ---- grants --------------------------------------------------------------
    GrantIssued {
        request_id: String,
        grant_id: String,
        #[serde(with = "scope_text")]
        scope: Scope,
        access: Access,
        uid: u32,
        approver_uid: u32,
        #[serde(with = "rfc3339")]
        expires_at: i64,
        /// The grant exactly as airlock-totp signed it, so that replaying the
        /// log restores it (re-verified against the pinned key). Records
        /// written before grants were replayable lack it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed: Option<SignedGrant>,
    },
    GrantRevoked {
        grant_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_uid: Option<u32>,
        /// Why, when no person revoked it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    GrantExpired {
        grant_id: String,
    },
    /// A stored grant that did not verify was dropped at start-up.
    GrantRejected {
        reason: String,
    },
    SigningKeyPinned {
        key: String,
    },

    // ---- sessions ------------------------------------------------------------
    SessionStarted {
        session: String,
        role: String,
        uid: u32,
        #[serde(default)]
        bound_uid: bool,
        #[serde(default, deserialize_with = "EnforcementMode::deserialize_lenient")]
        enforcement: EnforcementMode,
        /// The session's kernel index and PATH: with them, replay restores a
        /// session the state file missed. Older records lack them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<u32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        search_path: Vec<String>,
    },
    SessionStartFailed {
        session: String,
        error: String,
    },
    SessionExited {
        session: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_uid: Option<u32>,
    },
    SessionRevoked {
        session: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_uid: Option<u32>,
    },
    /// A governed process asked for another session.
    SessionRefused {
        session: String,
        uid: u32,
        role: String,
        stage: String,
        reason: String,
    },
    /// Someone ran an agent with `--unenforced`.
    SessionUnenforced {
        uid: u32,
        role: String,
        reason: String,
    },

    // ---- the kernel ----------------------------------------------------------
    ExecBlocked(KernelEvent),
    ExecApprovalRequired(KernelEvent),
    ExecGranted(KernelEvent),
    ExecSessionRevoked(KernelEvent),
    ExecMmapDenied(KernelEvent),
    CgroupWriteDenied(KernelEvent),
    DebugDenied(KernelEvent),
    NamespaceDenied(KernelEvent),
    /// The enforcer's seccomp supervisor took a degraded-mode session's
    /// execs (its first process handed over the listener before the agent
    /// started).
    SessionSupervised {
        session: String,
    },
    SocketDenied(KernelEvent),
    SignalDenied(KernelEvent),
    /// Repeats of a kernel event recorded in full just before, folded into
    /// one counted record (an agent looping on a refused command).
    KernelRepeated(RepeatedEvent),
    /// The enforcement mode was first seen or changed.
    EnforcementMode {
        #[serde(deserialize_with = "EnforcementMode::deserialize_lenient")]
        mode: EnforcementMode,
        #[serde(default)]
        detail: String,
        /// How to get full enforcement; older records wrote "" for none.
        #[serde(
            default,
            deserialize_with = "empty_as_none",
            skip_serializing_if = "Option::is_none"
        )]
        fix: Option<String>,
    },

    // ---- policy --------------------------------------------------------------
    PolicyReloaded {
        message: String,
    },
    PolicyReloadFailed {
        /// Older start-up records called it `message`.
        #[serde(alias = "message")]
        errors: String,
    },

    // ---- credentials (names only, never a value) -------------------------
    /// An admin stored a value for `credential` (a service) and `field`.
    CredentialStored {
        credential: String,
        field: String,
        by_uid: u32,
    },
    /// An admin removed one field, or (none) all of a service's.
    CredentialRemoved {
        credential: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        fields: u32,
        by_uid: u32,
    },
    /// An admin fetched a sealed value for `airlockctl credentials get`,
    /// which has airlock-totp open it with their code.
    CredentialFetched {
        credential: String,
        field: String,
        by_uid: u32,
    },

    /// One request through the credential proxy, allowed or refused.
    ServiceOperation {
        credential: String,
        /// `GET /repos/x/y/issues` (the path without its query).
        op: String,
        uid: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant_id: Option<String>,
        allowed: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refusal: Option<String>,
    },
    /// How a mail operation the proxy was let through ended (the seed's
    /// `{"event":"operation","op":"list_messages","count":10}`, with the
    /// service as `credential` since `service` names the writer).
    Operation {
        credential: String,
        op: String,
        uid: u32,
        grant_id: String,
        /// Messages listed or found, 1 for a message read, the unread
        /// count; absent when it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },

    // ---- TOTP ----------------------------------------------------------------
    /// airlock-totp verified a code for a request and signed a grant, as it
    /// reports it; `grant_issued` follows once the approver hands the grant
    /// to the gateway.
    TotpVerified {
        request_id: String,
        approver_uid: u32,
        /// The grant signed; records from before airlock-totp reported
        /// outcomes itself lack it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant_id: Option<String>,
    },
    TotpFailed(TotpFailure),
    TotpLocked(TotpFailure),
    TotpEnrolmentStarted {
        by_uid: u32,
        forced: bool,
    },
    TotpEnrolled {
        by_uid: u32,
    },

    // ---- the audit log itself ------------------------------------------------
    /// airlock-totp's countersignature of the chain head (see
    /// `audit::countersign`).
    AuditCountersigned {
        head_seq: u64,
        head_hash: String,
        prev_head_seq: u64,
        prev_head_hash: String,
        signature: String,
    },

    // ---- third-party enforcers (the Integrations Gateway API) ---------------
    /// An enforcer app registered (`airlockctl apps add`); a confidential
    /// app's client secret is kept as its SHA-256 only.
    IntegrationAppAdded {
        app_id: String,
        client_id: String,
        name: String,
        kind: AppKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_sha256: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        origins: Vec<String>,
        by_uid: u32,
    },
    /// A personal access token, kept as its SHA-256 only.
    PatCreated {
        pat_id: String,
        uid: u32,
        token_sha256: String,
        #[serde(with = "rfc3339")]
        expires_at: i64,
    },
    PatRevoked {
        pat_id: String,
        by_uid: u32,
    },
    /// An app's first use by a user asked for their consent.
    AppConsentRequested {
        app_id: String,
        uid: u32,
    },
    AppConsentDecided {
        app_id: String,
        uid: u32,
        allowed: bool,
    },
    /// An enforcer asked to pair (its code waits for the approver), or an
    /// approver pre-generated a code for an enforcer to claim.
    PairingStarted {
        nonce: String,
        uid: u32,
        #[serde(default)]
        app_id: String,
        code_sha256: String,
        #[serde(default)]
        enforcer: EnforcerHello,
        #[serde(default)]
        pregenerated: bool,
        #[serde(with = "rfc3339")]
        expires_at: i64,
    },
    /// The approver entered the code, or the enforcer claimed a
    /// pre-generated one (then `enforcer` and `app_id` are its).
    PairingCompleted {
        nonce: String,
        routing_sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enforcer: Option<EnforcerHello>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app_id: Option<String>,
        /// The approver's X25519 public key for end-to-end encryption
        /// (base64url), when the enforcer sent one of its own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approver_x25519: Option<String>,
        by_uid: u32,
    },
    PairingRevoked {
        nonce: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_uid: Option<u32>,
    },
    PairingExpired {
        nonce: String,
    },
    /// A paired enforcer's heartbeat after none for a while (or ever):
    /// presence changes are recorded, heartbeats are not.
    EnforcerOnline {
        nonce: String,
        enforcer_id: String,
    },
    /// A paired enforcer submitted an artifact: a pending request.
    ArtifactSubmitted {
        artifact_id: String,
        request_id: String,
        msg_id: String,
        pairing: String,
        uid: u32,
        app_id: String,
        enforcer_id: String,
        workspace: String,
        label: String,
        artifact_type: String,
        artifact_hash: String,
        ciphertext: Ciphertext,
        #[serde(with = "rfc3339")]
        expires_at: i64,
    },
    /// A human decided, with a TOTP code; airlock-totp signed the decision.
    ArtifactDecided {
        artifact_id: String,
        approver_uid: u32,
        decision: SignedDecision,
    },
    ArtifactWithdrawn {
        artifact_id: String,
    },
    ArtifactExpired {
        artifact_id: String,
    },
    /// The enforcer acknowledged the decision's delivery.
    DecisionAcked {
        artifact_id: String,
        msg_id: String,
    },
    /// A decided exchange past its retention, no longer readable.
    ExchangeForgotten {
        artifact_id: String,
    },

    // ---- the gateway itself --------------------------------------------------
    ServiceStarted {
        grants: usize,
        pending_requests: usize,
        #[serde(default)]
        restored_requests: Vec<String>,
    },

    /// A record this build does not know. Read only.
    #[serde(other)]
    Other,
}

/// What the kernel did to one task, with the session's rule that decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelEvent {
    pub session: String,
    pub stage: Stage,
    pub outcome: Outcome,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub executable: String,
    pub argv: Vec<String>,
    pub comm: String,
    /// The deciding rule's command, policy and `file:line`; none for the
    /// role default.
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    /// What a socket or signal event was refused to reach
    /// (`tcp 127.0.0.1:22`, `unix /tmp/x/sock`, `process 4242`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// Repeats of one kernel event: the same event in the same session, by the
/// same executable with the same arguments, rule and peer; only the tasks
/// differ. The first one is recorded in full; these follow it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepeatedEvent {
    /// The repeated event's name (`exec_blocked`).
    pub of: String,
    /// Repeats folded into this record (the one recorded in full not
    /// included).
    pub count: u64,
    /// When the first and the last of them happened.
    #[serde(with = "rfc3339")]
    pub first_at: i64,
    #[serde(with = "rfc3339")]
    pub last_at: i64,
    /// The last repeat, as it would have been recorded.
    #[serde(flatten)]
    pub last: KernelEvent,
}

/// A code airlock-totp refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpFailure {
    /// The request being approved; none for an enrolment. Older records
    /// wrote "" for none.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub request_id: Option<String>,
    pub approver_uid: u32,
    /// The error's short name (`InvalidCode`, `CodeReused`, `Locked`).
    pub error: String,
    pub message: String,
}

impl Event {
    /// The audit record of a kernel event of `kind`.
    pub fn kernel(kind: EventKind, event: KernelEvent) -> Event {
        match kind {
            EventKind::Blocked => Event::ExecBlocked(event),
            EventKind::ApprovalRequired => Event::ExecApprovalRequired(event),
            EventKind::GrantUsed => Event::ExecGranted(event),
            EventKind::SessionRevoked => Event::ExecSessionRevoked(event),
            EventKind::MmapDenied => Event::ExecMmapDenied(event),
            EventKind::CgroupWriteDenied => Event::CgroupWriteDenied(event),
            EventKind::DebugDenied => Event::DebugDenied(event),
            EventKind::NamespaceDenied => Event::NamespaceDenied(event),
            EventKind::SocketDenied => Event::SocketDenied(event),
            EventKind::SignalDenied => Event::SignalDenied(event),
        }
    }

    /// The task and rule of a kernel event; `None` for any other (a folded
    /// [`Event::KernelRepeated`] included).
    pub fn kernel_event(&self) -> Option<&KernelEvent> {
        match self {
            Event::ExecBlocked(e)
            | Event::ExecApprovalRequired(e)
            | Event::ExecGranted(e)
            | Event::ExecSessionRevoked(e)
            | Event::ExecMmapDenied(e)
            | Event::CgroupWriteDenied(e)
            | Event::DebugDenied(e)
            | Event::NamespaceDenied(e)
            | Event::SocketDenied(e)
            | Event::SignalDenied(e) => Some(e),
            _ => None,
        }
    }

    /// Whose doing the event is.
    pub fn service(&self) -> Service {
        match self {
            Event::ExecBlocked(_)
            | Event::ExecApprovalRequired(_)
            | Event::ExecGranted(_)
            | Event::ExecSessionRevoked(_)
            | Event::ExecMmapDenied(_)
            | Event::CgroupWriteDenied(_)
            | Event::DebugDenied(_)
            | Event::NamespaceDenied(_)
            | Event::SessionSupervised { .. }
            | Event::SocketDenied(_)
            | Event::SignalDenied(_)
            | Event::KernelRepeated(_)
            | Event::EnforcementMode { .. } => Service::Enforcer,
            Event::AuditCountersigned { .. }
            | Event::TotpVerified { .. }
            | Event::TotpFailed(_)
            | Event::TotpLocked(_)
            | Event::TotpEnrolmentStarted { .. }
            | Event::TotpEnrolled { .. } => Service::Totp,
            _ => Service::Gateway,
        }
    }

    /// The record's event name and fields (with `service`). `None` for
    /// [`Event::Other`], which is never recorded.
    pub fn to_record(&self) -> Option<(String, Map<String, Value>)> {
        if matches!(self, Event::Other) {
            return None;
        }
        let Ok(Value::Object(mut fields)) = serde_json::to_value(self) else {
            unreachable!("an internally tagged enum serializes to an object");
        };
        let Some(Value::String(name)) = fields.remove("event") else {
            unreachable!("the tag is a string");
        };
        fields.insert("service".into(), self.service().as_str().into());
        Some((name, fields))
    }

    /// The event a record holds: [`Event::Other`] for a name this build does
    /// not know, an error for a known name whose fields do not fit (an
    /// edited record, or a bug), naming the record.
    pub fn from_record(record: &Record) -> Result<Event, String> {
        let mut object = record.fields.clone();
        object.insert("event".into(), record.event.clone().into());
        serde_json::from_value(Value::Object(object)).map_err(|e| {
            format!(
                "audit record {} ({}) does not fit its event: {e}",
                record.seq, record.event
            )
        })
    }
}

/// A scope as its text form (`command:terraform plan`), as the log has it.
mod scope_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::grant::Scope;

    pub fn serialize<S: Serializer>(scope: &Scope, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(scope)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Scope, D::Error> {
        let text = String::deserialize(d)?;
        Scope::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Unix seconds as RFC 3339 text, as the log has them.
mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(unix: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::timefmt::rfc3339(*unix))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        crate::timefmt::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

mod opt_rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(unix: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match unix {
            Some(unix) => super::rfc3339::serialize(unix, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => crate::timefmt::parse_rfc3339(&text)
                .map(Some)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time"))
                }),
        }
    }
}

/// Older records wrote "" where there was nothing.
fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests;
