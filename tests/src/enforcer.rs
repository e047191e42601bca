//! A third-party enforcer, for the tests and benchmarks of the
//! Integrations Gateway API: a real HTTP client sending what the SDKs send
//! (every configured header on every request), and the approver's and the
//! user's side through the real airlockctl.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{Options, System, TestUser, AGENT, APPROVER};

/// What an enforcer is configured with.
pub struct Enforcer {
    pub http: Client,
    pub base: String,
    pub client_id: String,
    pub client_secret: String,
    pub pat: String,
}

/// A response: status and the JSON body (`Null` when there is none).
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl Reply {
    pub fn from(response: reqwest::blocking::Response) -> Reply {
        let status = response.status();
        let text = response.text().unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
        };
        Reply { status, body }
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        self.body
    }

    /// The spec's flat error shape with `code`.
    #[track_caller]
    pub fn flat(self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.body["error"], code, "{self:?}");
        assert!(self.body["message"].is_string(), "{self:?}");
    }

    /// The spec's envelope error shape with `code`.
    #[track_caller]
    pub fn envelope(self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.body["msgType"], "error", "{self:?}");
        assert_eq!(self.body["body"]["code"], code, "{self:?}");
    }
}

impl Enforcer {
    pub fn new(system: &System, client_id: &str, client_secret: &str, pat: &str) -> Enforcer {
        Enforcer {
            http: Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .unwrap(),
            base: system.integrations_url(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            pat: pat.into(),
        }
    }

    pub fn with(&self, pat: &str) -> Enforcer {
        Enforcer {
            http: self.http.clone(),
            base: self.base.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            pat: pat.into(),
        }
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        // Every configured header on every request, as the SDKs do.
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Client-Id", &self.client_id)
            .header("X-Client-Secret", &self.client_secret);
        if !self.pat.is_empty() {
            request = request.header("X-PAT", &self.pat);
        }
        request
    }

    pub fn get(&self, path: &str) -> Reply {
        Reply::from(self.request(reqwest::Method::GET, path).send().unwrap())
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        Reply::from(
            self.request(reqwest::Method::POST, path)
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(body).unwrap())
                .send()
                .unwrap(),
        )
    }

    pub fn post_raw(&self, path: &str, body: Vec<u8>) -> Reply {
        Reply::from(
            self.request(reqwest::Method::POST, path)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .unwrap(),
        )
    }

    /// Python's withdraw: no body at all.
    pub fn post_empty(&self, path: &str) -> Reply {
        Reply::from(
            self.request(reqwest::Method::POST, path)
                .header("Content-Length", "0")
                .send()
                .unwrap(),
        )
    }
}

pub fn start(requests_per_minute: &'static str) -> System {
    System::start_with(Options {
        integrations: Some(vec![("requests_per_minute", requests_per_minute)]),
        ..Options::default()
    })
}

/// `airlockctl apps add` as the approver: (App ID, Client ID, Client Secret).
pub fn add_app(system: &System, kind: &str, name: &str) -> (String, String, String) {
    let out = system.ctl(&APPROVER, &["apps", "add", "--kind", kind, name], "");
    out.success();
    let field = |label: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (
        field("App ID:"),
        field("Client ID:"),
        field("Client Secret:"),
    )
}

/// A new app of `kind` named `name`, and an enforcer speaking for it with
/// a fresh PAT of the agent user; returns it, the app's id and the PAT.
pub fn agent_enforcer(system: &System, kind: &str, name: &str) -> (Enforcer, String, String) {
    let (app_id, client_id, secret) = add_app(system, kind, name);
    let pat = create_pat(system, &AGENT);
    let enforcer = Enforcer::new(system, &client_id, &secret, &pat);
    (enforcer, app_id, pat)
}

pub fn create_pat(system: &System, user: &TestUser) -> String {
    create_pat_with_id(system, user).0
}

/// (the token, its id).
pub fn create_pat_with_id(system: &System, user: &TestUser) -> (String, String) {
    let out = system.ctl(user, &["pat", "create", "--expires", "90d"], "");
    let pat = out.success().stdout.trim().to_string();
    assert!(pat.starts_with("airpat_"), "{out:?}");
    let id = out
        .stderr
        .split_whitespace()
        .find(|w| w.starts_with("pat-"))
        .unwrap()
        .to_string();
    (pat, id)
}

pub fn hex32() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An `artifact.submit` envelope exactly as the Python SDK builds it.
pub fn artifact(request_id: &str, routing_token: &str, hash: &str) -> Value {
    json!({
        "msgId": format!("msg-{}", hex32()),
        "msgType": "artifact.submit",
        "requestId": request_id,
        "createdAt": "2026-11-22T20:04:13.456764+00:00",
        "sender": {"enforcerId": "enf-test"},
        "body": {
            "artifactType": "command-approval",
            "artifactHash": hash,
            "ciphertext": {"alg": "AES-256-GCM", "data": "c2VjcmV0IHBheWxvYWQ=",
                           "nonce": "AAAAAAAAAAAAAAAA", "tag": "AAAAAAAAAAAAAAAAAAAAAA==",
                           "aad": null},
            // In the past, as Python and Rust send it: must not be refused.
            "expiresAt": "2026-11-22T20:04:13.456764+00:00",
            "metadata": {"routingToken": routing_token, "workspaceName": "default",
                         "requestLabel": "dotnet test --filter Category=Integration"}
        }
    })
}

/// The test vector of the spec's §3.2.
pub const HASH: &str = "d3c2d7effb479ffc5085aad2144df886a452a4863396060f4e0ea29a8409d0fd";

/// Checks a `decision.deliver` body's signature as .NET's `VerifyDecision`
/// does, building the message independently: JCS of the six fields, absent
/// ones left out.
pub fn signature_verifies(request_id: &str, body: &Value, public_key: &str) -> bool {
    let mut fields = BTreeMap::new();
    for key in ["artifactHash", "decision", "nonce", "reason", "signerKeyId"] {
        if let Some(v) = body[key].as_str() {
            fields.insert(key, v.to_string());
        }
    }
    fields.insert("requestId", request_id.to_string());
    let message = serde_json::to_string(&fields).unwrap();
    assert!(!body["decisionHash"].as_str().unwrap_or("").is_empty());
    let signature = URL_SAFE_NO_PAD
        .decode(body["signature"].as_str().unwrap())
        .unwrap();
    assert_eq!(signature.len(), 64);
    let key = URL_SAFE_NO_PAD.decode(public_key).unwrap();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(message.as_bytes(), &signature)
        .is_ok()
}

pub fn audit_text(system: &System) -> String {
    std::fs::read_to_string(system.audit_log()).unwrap()
}

pub fn count(system: &System, event: &str) -> usize {
    audit_text(system)
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["event"] == event)
        .count()
}

/// The artifact id (`art-…`) `airlockctl requests` shows for `request_id`.
pub fn artifact_id(system: &System, request_id: &str) -> String {
    let out = system.ctl(&APPROVER, &["requests"], "");
    let stdout = &out.success().stdout;
    let mut current = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("request art-") {
            current = Some(format!("art-{}", rest.split_whitespace().next().unwrap()));
        }
        if line.trim() == format!("enforcer's request id: {request_id}") {
            return current.unwrap();
        }
    }
    panic!("{request_id} is not pending: {stdout}");
}

/// Consent, pairing (with an X25519 key, as the SDKs do) and heartbeat: the
/// routing token and the end-to-end key derived as the SDKs derive it.
pub fn pair(system: &System, enforcer: &Enforcer, app_id: &str) -> (String, [u8; 32]) {
    // Consent: the first check asks for it, the next says it is pending.
    enforcer
        .get("/v1/consent/status")
        .flat(403, "app_consent_required");
    enforcer
        .get("/v1/consent/status")
        .flat(403, "app_consent_pending");
    system
        .ctl(&AGENT, &["apps", "consent", app_id], "")
        .success();
    let consent = enforcer.get("/v1/consent/status").expect(200);
    assert_eq!(consent["status"], "approved");

    let rng = ring::rand::SystemRandom::new();
    let private =
        ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::X25519, &rng).unwrap();
    let key = URL_SAFE_NO_PAD.encode(private.compute_public_key().unwrap().as_ref());
    let started = enforcer
        .post(
            "/v1/pairing/initiate",
            &json!({"deviceId": "dev-1", "enforcerId": "enf-test", "x25519PublicKey": key,
                    "enforcerLabel": "Test Enforcer CLI", "workspaceName": "default"}),
        )
        .expect(201);
    let nonce = started["pairingNonce"].as_str().unwrap().to_string();
    let code = started["pairingCode"].as_str().unwrap().to_string();
    assert_eq!(started["deviceId"], "dev-1");
    let status = enforcer
        .get(&format!("/v1/pairing/{nonce}/status"))
        .expect(200);
    assert_eq!(status["state"], "Pending");
    assert!(status.get("routingToken").is_none());

    let paired = system.ctl(&APPROVER, &["pair", &code], "");
    assert!(paired.success().stdout.contains("enf-test"), "{paired:?}");
    // The code is spent.
    system.ctl(&APPROVER, &["pair", &code], "").failure();
    let status = enforcer
        .get(&format!("/v1/pairing/{nonce}/status"))
        .expect(200);
    assert!(status["state"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case("completed"));
    let routing = status["routingToken"].as_str().unwrap().to_string();
    // responseJson is a JSON-encoded string holding the approver's key.
    let response: Value =
        serde_json::from_str(status["responseJson"].as_str().expect("a string")).unwrap();
    let approver = URL_SAFE_NO_PAD
        .decode(response["x25519PublicKey"].as_str().unwrap())
        .unwrap();
    assert_eq!(approver.len(), 32);
    let mut e2e = [0u8; 32];
    ring::agreement::agree_ephemeral(
        private,
        &ring::agreement::UnparsedPublicKey::new(&ring::agreement::X25519, approver),
        |shared| {
            ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[])
                .extract(shared)
                .expand(&[b"HARP-E2E-AES256GCM"], ring::hkdf::HKDF_SHA256)
                .unwrap()
                .fill(&mut e2e)
                .unwrap()
        },
    )
    .unwrap();

    let listed = system.ctl(&AGENT, &["enforcers"], "");
    assert!(listed.success().stdout.contains("never seen"), "{listed:?}");
    let beat = enforcer
        .post(
            "/v1/presence/heartbeat",
            &json!({"enforcerId": "enf-test", "workspaceName": "default",
                    "enforcerLabel": "Test Enforcer CLI"}),
        )
        .expect(200);
    assert_eq!(beat, json!({}));
    let listed = system.ctl(&AGENT, &["enforcers"], "");
    assert!(
        listed.success().stdout.contains("paired, online"),
        "{listed:?}"
    );
    (routing, e2e)
}

/// `encrypt_and_submit_artifact`: AES-256-GCM over the canonical text, no
/// AAD, detached tag, standard base64.
pub fn sealed_artifact(request_id: &str, routing: &str, key: &[u8; 32], canonical: &str) -> Value {
    use base64::engine::general_purpose::STANDARD;
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let mut nonce = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).unwrap();
    let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
    let mut data = canonical.as_bytes().to_vec();
    let tag = sealing
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .unwrap();
    let hash: String = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut envelope = artifact(request_id, routing, &hash);
    envelope["body"]["ciphertext"] = json!({"alg": "AES-256-GCM", "data": STANDARD.encode(&data),
        "nonce": STANDARD.encode(nonce), "tag": STANDARD.encode(tag.as_ref()), "aad": null});
    envelope
}
