//! The JSON the SDKs send and expect (camelCase), and its translation to
//! the gateway's types. Parsing is strict about types and lenient about
//! fields the SDKs add: a wrong type or a missing required field is a 400,
//! an unknown field is ignored.

use std::collections::BTreeMap;

use airlock_common::integrations::{
    decision_message, sha256_hex, ArtifactSubmission, Ciphertext, EnforcerHello, ExchangeView,
    PairingView, SignedDecision,
};
use airlock_common::timefmt::rfc3339;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// Parses a JSON body into `T`, refusing malformed JSON and wrong types.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "malformed JSON"
        } else {
            "invalid request"
        };
        ApiError::bad_request(format!("{what}: {e}"))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingInitiate {
    pub device_id: String,
    pub enforcer_id: String,
    /// Typed (a string or absent) but not used: the gateway knows its URL.
    #[serde(default)]
    #[allow(dead_code)]
    pub gateway_url: Option<String>,
    #[serde(default)]
    pub x25519_public_key: Option<String>,
    #[serde(default)]
    pub enforcer_label: Option<String>,
    #[serde(default)]
    pub workspace_name: Option<String>,
}

impl PairingInitiate {
    pub fn hello(self) -> EnforcerHello {
        EnforcerHello {
            device_id: self.device_id,
            enforcer_id: self.enforcer_id,
            enforcer_label: self.enforcer_label.unwrap_or_default(),
            workspace_name: self.workspace_name.unwrap_or_default(),
            x25519_public_key: self.x25519_public_key.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingClaim {
    pub pairing_code: String,
    #[serde(flatten)]
    pub enforcer: PairingInitiate,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revoke {
    pub routing_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    pub enforcer_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sender {
    pub enforcer_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireCiphertext {
    #[serde(default)]
    pub alg: Option<String>,
    pub data: String,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    /// Python sends `null`; the spec's encryption uses no AAD, so none is
    /// relayed (typed so that a non-string is refused).
    #[serde(default)]
    #[allow(dead_code)]
    pub aad: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactBody {
    pub artifact_type: String,
    pub artifact_hash: String,
    pub ciphertext: WireCiphertext,
    /// Not trusted: the gateway applies its own TTL (the SDKs disagree).
    #[serde(default)]
    #[allow(dead_code)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactSubmit {
    pub msg_id: String,
    pub msg_type: String,
    pub request_id: String,
    /// Typed, not used: the gateway dates the exchange itself.
    #[serde(default)]
    #[allow(dead_code)]
    pub created_at: Option<String>,
    pub sender: Sender,
    pub body: ArtifactBody,
}

impl ArtifactSubmit {
    pub fn submission(self) -> Result<ArtifactSubmission, ApiError> {
        if self.msg_type != "artifact.submit" {
            return Err(ApiError::bad_request("msgType must be artifact.submit"));
        }
        let mut metadata = self.body.metadata.unwrap_or_default();
        let routing_token = metadata.remove("routingToken").unwrap_or_default();
        if routing_token.is_empty() {
            return Err(ApiError::bad_request(
                "body.metadata.routingToken is required (pair first)",
            ));
        }
        let ciphertext = self.body.ciphertext;
        Ok(ArtifactSubmission {
            msg_id: self.msg_id,
            request_id: self.request_id,
            enforcer_id: self.sender.enforcer_id,
            artifact_type: self.body.artifact_type,
            artifact_hash: self.body.artifact_hash,
            ciphertext: Ciphertext {
                alg: ciphertext.alg.unwrap_or_default(),
                data: ciphertext.data,
                nonce: ciphertext.nonce.unwrap_or_default(),
                tag: ciphertext.tag.unwrap_or_default(),
            },
            routing_token,
            workspace_name: metadata.remove("workspaceName").unwrap_or_default(),
            request_label: metadata.remove("requestLabel").unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckBody {
    pub msg_id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    #[serde(default)]
    pub msg_type: Option<String>,
    pub request_id: String,
    pub body: AckBody,
}

fn put(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.into(), value.into());
    }
}

pub fn pairing_started(view: &PairingView, device_id: &str) -> Value {
    json!({
        "pairingNonce": view.nonce,
        "pairingCode": view.code,
        "deviceId": device_id,
        "expiresAt": rfc3339(view.expires_at),
    })
}

pub fn pairing_status(view: &PairingView) -> Value {
    let mut out = Map::new();
    out.insert("pairingNonce".into(), view.nonce.clone().into());
    out.insert("state".into(), view.state.clone().into());
    if let Some(token) = view.routing_token.as_deref() {
        out.insert("routingToken".into(), token.into());
    }
    // A JSON-encoded string, not an object (pydantic insists).
    if let Some(key) = view.approver_x25519.as_deref() {
        let response = json!({ "x25519PublicKey": key }).to_string();
        out.insert("responseJson".into(), response.into());
    }
    if view.state == "Pending" {
        out.insert("expiresAt".into(), rfc3339(view.expires_at).into());
    }
    Value::Object(out)
}

/// The decision's fields, as `decision.deliver` and exchange status carry
/// them. `decisionHash` (opaque to the SDKs, required non-empty by .NET's
/// verifier) is the SHA-256 of the signed message.
pub fn decision_body(decision: &SignedDecision) -> Value {
    let statement = &decision.statement;
    let mut body = Map::new();
    put(&mut body, "artifactHash", &statement.artifact_hash);
    put(&mut body, "decision", statement.decision.as_str());
    put(&mut body, "reason", &statement.reason);
    put(&mut body, "signerKeyId", &decision.signer_key_id);
    put(&mut body, "nonce", &decision.nonce);
    put(&mut body, "signature", &decision.signature);
    let message = decision_message(statement, &decision.nonce, &decision.signer_key_id);
    body.insert("decisionHash".into(), sha256_hex(&message).into());
    Value::Object(body)
}

pub fn decision_deliver(view: &ExchangeView, decision: &SignedDecision) -> Value {
    json!({
        "msgId": decision.msg_id,
        "msgType": "decision.deliver",
        "requestId": view.request_id,
        "body": decision_body(decision),
    })
}

pub fn exchange_status(view: &ExchangeView) -> Value {
    let mut body = Map::new();
    body.insert("requestId".into(), view.request_id.clone().into());
    body.insert("state".into(), view.state.clone().into());
    body.insert("createdAt".into(), rfc3339(view.created_at).into());
    body.insert("expiresAt".into(), rfc3339(view.expires_at).into());
    body.insert("artifactHash".into(), view.artifact_hash.clone().into());
    if let Some(decision) = (*view.decision).as_ref() {
        body.insert("decision".into(), decision_body(decision));
    }
    json!({"msgType": "exchange.status", "requestId": view.request_id, "body": body})
}
