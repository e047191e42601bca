//! Third-party enforcers' state, folded from the audit log like the rest:
//! registered apps (client secrets as SHA-256), PATs (SHA-256), each user's
//! consent per app, pairings (routing tokens as SHA-256) and the exchanges
//! (artifacts waiting for, or answered by, a human).
//!
//! Secrets never enter it in the clear. A routing token is shown to its
//! enforcer through the pairing status; the clear token is held in memory
//! only, until the enforcer has fetched it or the gateway restarts.

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;

use airlock_common::event::Event;
use airlock_common::integrations::{
    AppKind, ArtifactInfo, Ciphertext, EnforcerHello, SignedDecision, DECIDED_RETENTION_SECS,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub app_id: String,
    pub client_id: String,
    pub name: String,
    pub kind: AppKind,
    #[serde(default)]
    pub secret_sha256: Option<String>,
    #[serde(default)]
    pub origins: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pat {
    pub id: String,
    pub uid: u32,
    pub token_sha256: String,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    Pending,
    Approved,
    Denied,
}

impl Consent {
    pub fn as_str(self) -> &'static str {
        match self {
            Consent::Pending => "pending",
            Consent::Approved => "approved",
            Consent::Denied => "denied",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairingState {
    /// Waiting for the approver's `airlockctl pair CODE` (or, pre-generated,
    /// for an enforcer's claim).
    Pending,
    Completed,
    Revoked,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pairing {
    pub nonce: String,
    pub uid: u32,
    /// Empty until an enforcer claims a pre-generated code.
    pub app_id: String,
    pub code_sha256: String,
    pub enforcer: EnforcerHello,
    pub pregenerated: bool,
    pub state: PairingState,
    #[serde(default)]
    pub routing_sha256: Option<String>,
    pub created_at: i64,
    /// When a pending pairing's code runs out.
    pub expires_at: i64,
    /// The approver's X25519 public key (base64url), once paired with E2E.
    #[serde(default)]
    pub approver_x25519: Option<String>,
    /// The AES-256-GCM key agreed with the enforcer: in the state file
    /// (mode 0600, the gateway's) only, never in the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_key: Option<SecretKey>,
    /// The routing token in the clear, until the enforcer fetched it.
    #[serde(skip)]
    pub routing_token: Option<ClearToken>,
    /// The last heartbeat (memory only: presence is not audited).
    #[serde(skip)]
    pub last_seen: i64,
}

/// A symmetric key (standard base64), zeroized when dropped, never printed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretKey(pub String);

impl Drop for SecretKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A token in the clear: zeroized when dropped, never printed.
#[derive(Clone)]
pub struct ClearToken(pub Zeroizing<String>);

impl std::fmt::Debug for ClearToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClearToken(..)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeState {
    Pending,
    Decided,
    Acknowledged,
    /// Nobody decided in time: kept (for its 410) as long as a decision is.
    Expired,
}

impl ExchangeState {
    /// The word the SDKs see in `body.state`.
    pub fn wire(self) -> &'static str {
        match self {
            ExchangeState::Pending => "PendingApproval",
            ExchangeState::Decided => "Decided",
            ExchangeState::Acknowledged => "Acknowledged",
            ExchangeState::Expired => "Expired",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    pub artifact_id: String,
    pub request_id: String,
    pub msg_id: String,
    pub pairing: String,
    pub uid: u32,
    pub app_id: String,
    pub enforcer_id: String,
    pub workspace: String,
    pub label: String,
    pub artifact_type: String,
    pub artifact_hash: String,
    pub ciphertext: Ciphertext,
    pub created_at: i64,
    pub expires_at: i64,
    pub state: ExchangeState,
    #[serde(default)]
    pub decision: Option<SignedDecision>,
    #[serde(default)]
    pub decided_at: i64,
}

impl Exchange {
    pub fn info(&self, app_name: &str, enforcer_label: &str) -> ArtifactInfo {
        ArtifactInfo {
            id: self.artifact_id.clone(),
            request_id: self.request_id.clone(),
            enforcer_id: self.enforcer_id.clone(),
            enforcer_label: enforcer_label.to_owned(),
            workspace: self.workspace.clone(),
            app_name: app_name.to_owned(),
            uid: self.uid,
            artifact_type: self.artifact_type.clone(),
            artifact_hash: self.artifact_hash.clone(),
            label: self.label.clone(),
            ciphertext: self.ciphertext.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

/// How long a pairing whose code ran out still answers `Expired`.
const EXPIRED_PAIRING_SECS: i64 = 3600;

/// The part of the state file this module owns.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Integrations {
    #[serde(default)]
    pub apps: BTreeMap<String, App>,
    #[serde(default)]
    pub pats: BTreeMap<String, Pat>,
    /// Keyed `app_id/uid`.
    #[serde(default)]
    pub consents: BTreeMap<String, Consent>,
    #[serde(default)]
    pub pairings: BTreeMap<String, Pairing>,
    #[serde(default)]
    pub exchanges: Exchanges,
}

/// The exchanges by artifact id, with an index by the enforcer's request id
/// and a count of each user's open ones, so a submission or a poll finds its
/// exchange without scanning them all. Stored as the plain map; the index is
/// rebuilt on load, and kept by the only ways in (insert, update, remove).
#[derive(Clone, Debug, Default)]
pub struct Exchanges {
    by_artifact: BTreeMap<String, Exchange>,
    /// request id → artifact id.
    by_request: HashMap<String, String>,
    /// uid → exchanges still waiting for a decision.
    open: HashMap<u32, usize>,
}

impl Deref for Exchanges {
    type Target = BTreeMap<String, Exchange>;
    fn deref(&self) -> &Self::Target {
        &self.by_artifact
    }
}

impl Serialize for Exchanges {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.by_artifact.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Exchanges {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, Exchange>::deserialize(deserializer)?;
        let mut exchanges = Exchanges::default();
        for (_, exchange) in map {
            exchanges.insert(exchange);
        }
        Ok(exchanges)
    }
}

impl Exchanges {
    fn count(&mut self, exchange: &Exchange, up: bool) {
        if exchange.state != ExchangeState::Pending {
            return;
        }
        let open = self.open.entry(exchange.uid).or_default();
        if up {
            *open += 1;
        } else {
            *open = open.saturating_sub(1);
            if *open == 0 {
                self.open.remove(&exchange.uid);
            }
        }
    }

    pub fn insert(&mut self, exchange: Exchange) {
        self.remove(&exchange.artifact_id.clone());
        self.count(&exchange, true);
        self.by_request
            .insert(exchange.request_id.clone(), exchange.artifact_id.clone());
        self.by_artifact
            .insert(exchange.artifact_id.clone(), exchange);
    }

    pub fn remove(&mut self, artifact_id: &str) -> Option<Exchange> {
        let exchange = self.by_artifact.remove(artifact_id)?;
        self.count(&exchange, false);
        if self
            .by_request
            .get(&exchange.request_id)
            .map(String::as_str)
            == Some(artifact_id)
        {
            self.by_request.remove(&exchange.request_id);
        }
        Some(exchange)
    }

    /// Changes one exchange (not its ids); false if there is none.
    pub fn update(&mut self, artifact_id: &str, change: impl FnOnce(&mut Exchange)) -> bool {
        let Some(mut exchange) = self.by_artifact.remove(artifact_id) else {
            return false;
        };
        self.count(&exchange, false);
        change(&mut exchange);
        self.count(&exchange, true);
        self.by_artifact.insert(artifact_id.to_owned(), exchange);
        true
    }

    pub fn by_request(&self, request_id: &str) -> Option<&Exchange> {
        self.by_artifact.get(self.by_request.get(request_id)?)
    }

    /// How many of `uid`'s exchanges wait for a decision.
    pub fn open_for(&self, uid: u32) -> usize {
        self.open.get(&uid).copied().unwrap_or(0)
    }
}

pub fn consent_key(app_id: &str, uid: u32) -> String {
    format!("{app_id}/{uid}")
}

impl Integrations {
    pub fn app_by_client(&self, client_id: &str) -> Option<&App> {
        self.apps.values().find(|a| a.client_id == client_id)
    }

    pub fn pat_by_hash(&self, hash: &str) -> Option<&Pat> {
        self.pats.values().find(|p| p.token_sha256 == hash)
    }

    pub fn pairing_by_routing(&self, hash: &str) -> Option<&Pairing> {
        self.pairings
            .values()
            .find(|p| p.routing_sha256.as_deref() == Some(hash))
    }

    pub fn pending_pairing_by_code(&self, code_sha256: &str) -> Option<&Pairing> {
        self.pairings
            .values()
            .find(|p| p.state == PairingState::Pending && p.code_sha256 == code_sha256)
    }

    pub fn exchange_by_request(&self, request_id: &str) -> Option<&Exchange> {
        self.exchanges.by_request(request_id)
    }

    pub fn consent(&self, app_id: &str, uid: u32) -> Option<Consent> {
        self.consents.get(&consent_key(app_id, uid)).copied()
    }

    /// Pending pairings whose code ran out, exchanges nobody decided in time
    /// and decided ones past their retention, at `now`.
    pub fn stale(&self, now: i64) -> Vec<Event> {
        let pairings = self
            .pairings
            .values()
            // Shown as expired for a while (the CLIs stop on it), then
            // forgotten.
            .filter(|p| {
                p.state == PairingState::Pending && p.expires_at + EXPIRED_PAIRING_SECS <= now
            })
            .map(|p| Event::PairingExpired {
                nonce: p.nonce.clone(),
            });
        let exchanges = self.exchanges.values().filter_map(|e| match e.state {
            ExchangeState::Pending if e.expires_at <= now => Some(Event::ArtifactExpired {
                artifact_id: e.artifact_id.clone(),
            }),
            ExchangeState::Decided | ExchangeState::Acknowledged | ExchangeState::Expired
                if e.decided_at + DECIDED_RETENTION_SECS <= now =>
            {
                Some(Event::ExchangeForgotten {
                    artifact_id: e.artifact_id.clone(),
                })
            }
            _ => None,
        });
        pairings.chain(exchanges).collect()
    }

    /// Applies a recorded event at `ts`; returns whether anything changed.
    pub fn apply(&mut self, event: &Event, ts: i64) -> bool {
        match event {
            Event::IntegrationAppAdded {
                app_id,
                client_id,
                name,
                kind,
                secret_sha256,
                origins,
                ..
            } => {
                let app = App {
                    app_id: app_id.clone(),
                    client_id: client_id.clone(),
                    name: name.clone(),
                    kind: *kind,
                    secret_sha256: secret_sha256.clone(),
                    origins: origins.clone(),
                };
                self.apps.insert(app_id.clone(), app);
                true
            }
            Event::PatCreated {
                pat_id,
                uid,
                token_sha256,
                expires_at,
            } => {
                let pat = Pat {
                    id: pat_id.clone(),
                    uid: *uid,
                    token_sha256: token_sha256.clone(),
                    created_at: ts,
                    expires_at: *expires_at,
                };
                self.pats.insert(pat_id.clone(), pat);
                true
            }
            Event::PatRevoked { pat_id, .. } => self.pats.remove(pat_id).is_some(),
            Event::AppConsentRequested { app_id, uid } => {
                let key = consent_key(app_id, *uid);
                if self.consents.contains_key(&key) {
                    return false;
                }
                self.consents.insert(key, Consent::Pending);
                true
            }
            Event::AppConsentDecided {
                app_id,
                uid,
                allowed,
            } => {
                let consent = if *allowed {
                    Consent::Approved
                } else {
                    Consent::Denied
                };
                self.consents.insert(consent_key(app_id, *uid), consent);
                true
            }
            Event::PairingStarted {
                nonce,
                uid,
                app_id,
                code_sha256,
                enforcer,
                pregenerated,
                expires_at,
            } => {
                let pairing = Pairing {
                    nonce: nonce.clone(),
                    uid: *uid,
                    app_id: app_id.clone(),
                    code_sha256: code_sha256.clone(),
                    enforcer: enforcer.clone(),
                    pregenerated: *pregenerated,
                    state: PairingState::Pending,
                    routing_sha256: None,
                    created_at: ts,
                    expires_at: *expires_at,
                    approver_x25519: None,
                    e2e_key: None,
                    routing_token: None,
                    last_seen: 0,
                };
                self.pairings.insert(nonce.clone(), pairing);
                true
            }
            Event::PairingCompleted {
                nonce,
                routing_sha256,
                enforcer,
                app_id,
                approver_x25519,
                ..
            } => {
                let Some(pairing) = self.pairings.get_mut(nonce) else {
                    return false;
                };
                pairing.state = PairingState::Completed;
                pairing.approver_x25519 = approver_x25519.clone();
                pairing.routing_sha256 = Some(routing_sha256.clone());
                if let Some(enforcer) = enforcer {
                    pairing.enforcer = enforcer.clone();
                }
                if let Some(app_id) = app_id {
                    pairing.app_id = app_id.clone();
                }
                true
            }
            Event::PairingRevoked { nonce, .. } => {
                let Some(pairing) = self.pairings.get_mut(nonce) else {
                    return false;
                };
                pairing.state = PairingState::Revoked;
                pairing.routing_token = None;
                pairing.e2e_key = None;
                true
            }
            Event::PairingExpired { nonce } => self.pairings.remove(nonce).is_some(),
            Event::ArtifactSubmitted {
                artifact_id,
                request_id,
                msg_id,
                pairing,
                uid,
                app_id,
                enforcer_id,
                workspace,
                label,
                artifact_type,
                artifact_hash,
                ciphertext,
                expires_at,
            } => {
                let exchange = Exchange {
                    artifact_id: artifact_id.clone(),
                    request_id: request_id.clone(),
                    msg_id: msg_id.clone(),
                    pairing: pairing.clone(),
                    uid: *uid,
                    app_id: app_id.clone(),
                    enforcer_id: enforcer_id.clone(),
                    workspace: workspace.clone(),
                    label: label.clone(),
                    artifact_type: artifact_type.clone(),
                    artifact_hash: artifact_hash.clone(),
                    ciphertext: ciphertext.clone(),
                    created_at: ts,
                    expires_at: *expires_at,
                    state: ExchangeState::Pending,
                    decision: None,
                    decided_at: 0,
                };
                self.exchanges.insert(exchange);
                true
            }
            Event::ArtifactDecided {
                artifact_id,
                decision,
                ..
            } => self.exchanges.update(artifact_id, |exchange| {
                exchange.state = ExchangeState::Decided;
                exchange.decision = Some(decision.clone());
                exchange.decided_at = ts;
            }),
            Event::DecisionAcked { artifact_id, .. } => {
                self.exchanges.update(artifact_id, |exchange| {
                    exchange.state = ExchangeState::Acknowledged;
                })
            }
            Event::ArtifactExpired { artifact_id } => {
                self.exchanges.update(artifact_id, |exchange| {
                    exchange.state = ExchangeState::Expired;
                    exchange.decided_at = ts;
                })
            }
            Event::ArtifactWithdrawn { artifact_id } | Event::ExchangeForgotten { artifact_id } => {
                self.exchanges.remove(artifact_id).is_some()
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(artifact_id: &str, request_id: &str, uid: u32) -> Exchange {
        Exchange {
            artifact_id: artifact_id.into(),
            request_id: request_id.into(),
            msg_id: String::new(),
            pairing: String::new(),
            uid,
            app_id: String::new(),
            enforcer_id: String::new(),
            workspace: String::new(),
            label: String::new(),
            artifact_type: String::new(),
            artifact_hash: String::new(),
            ciphertext: Ciphertext::default(),
            created_at: 0,
            expires_at: 0,
            state: ExchangeState::Pending,
            decision: None,
            decided_at: 0,
        }
    }

    /// The request-id index and the open counts follow every change, and
    /// are rebuilt from the stored map alone.
    #[test]
    fn the_index_and_open_counts_follow_changes_and_survive_a_reload() {
        let mut exchanges = Exchanges::default();
        exchanges.insert(exchange("art-1", "req-1", 1000));
        exchanges.insert(exchange("art-2", "req-2", 1000));
        exchanges.insert(exchange("art-3", "req-3", 1001));
        assert_eq!(exchanges.open_for(1000), 2);
        assert_eq!(exchanges.by_request("req-2").unwrap().artifact_id, "art-2");
        assert!(exchanges.update("art-1", |e| e.state = ExchangeState::Decided));
        assert!(!exchanges.update("art-9", |e| e.state = ExchangeState::Decided));
        assert_eq!(exchanges.open_for(1000), 1);

        let stored = serde_json::to_string(&exchanges).unwrap();
        let mut loaded: Exchanges = serde_json::from_str(&stored).unwrap();
        assert_eq!(loaded.open_for(1000), 1);
        assert_eq!(loaded.open_for(1001), 1);
        assert_eq!(
            loaded.by_request("req-1").unwrap().state,
            ExchangeState::Decided
        );

        loaded.remove("art-2");
        assert!(loaded.by_request("req-2").is_none());
        assert_eq!(loaded.open_for(1000), 0);
        assert_eq!(loaded.len(), 2);
    }
}
