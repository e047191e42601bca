//! The Integrations Gateway API as a third-party enforcer speaks it: a real
//! HTTP client against airlock-integrations (its own user), the gateway and
//! airlock-totp on a real bus, approvals with computed TOTP codes through
//! the real airlockctl.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use airlock_tests::enforcer::*;
use airlock_tests::{Options, System, AGENT, APPROVER, OUTSIDER};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[test]
fn an_enforcer_pairs_submits_and_receives_a_signed_decision() {
    let system = start("1000");
    let mut app = system.enrol();
    let (app_id, client_id, secret) = add_app(&system, "desktop", "Test Enforcer");
    assert!(
        app_id.len() == 11 && app_id.as_bytes()[3] == b'-',
        "{app_id}"
    );
    assert_eq!(secret.len(), 40);
    let pat = create_pat(&system, &AGENT);
    let enforcer = Enforcer::new(&system, &client_id, &secret, &pat);

    // Discovery needs no credentials and names the decision key.
    let discovery = Reply::from(
        Client::new()
            .get(format!(
                "{}/v1/integrations/discovery",
                system.integrations_url()
            ))
            .send()
            .unwrap(),
    )
    .expect(200);
    assert_eq!(discovery["auth"]["patSupported"], true);
    assert_eq!(discovery["idp"]["clientId"], "airlock-integrations");
    let public_key = discovery["decisionSigning"]["publicKey"]
        .as_str()
        .unwrap()
        .to_string();
    let echo = enforcer.get("/echo").expect(200);
    for key in ["utc", "local", "timezone"] {
        assert!(echo[key].is_string(), "{echo}");
    }
    assert!(echo["offsetMinutes"].is_i64());

    let (routing, e2e) = pair(&system, &enforcer, &app_id);

    // Submit, encrypted end to end: a pending request beside the local ones,
    // whose content only the approver reads.
    let request_id = format!("req-{}", hex32());
    let canonical = r#"{"command":"dotnet test --filter Category=Integration","enforcerId":"enf-test","requestLabel":"Test approval request","workspaceName":"default"}"#;
    let sealed = sealed_artifact(&request_id, &routing, &e2e, canonical);
    let hash = sealed["body"]["artifactHash"].as_str().unwrap().to_string();
    let accepted = enforcer.post("/v1/artifacts", &sealed).expect(202);
    assert_eq!(accepted["msgType"], "artifact.accepted");
    let art = artifact_id(&system, &request_id);
    let shown = system.ctl(&APPROVER, &["requests"], "");
    assert!(shown.stdout.contains("Test Enforcer CLI"), "{shown:?}");
    assert!(shown.stdout.contains("workspace: default"), "{shown:?}");
    assert!(shown.stdout.contains("matches its sha256"), "{shown:?}");
    assert!(
        shown
            .stdout
            .contains(r#""command": "dotnet test --filter Category=Integration""#),
        "{shown:?}"
    );
    // An artifact is never picked for the approver; named, it is.
    let unnamed = system.ctl(&APPROVER, &["approve", "--code-stdin"], "");
    assert!(
        unnamed
            .failure()
            .stderr
            .contains(&format!("airlockctl approve {art}")),
        "{unnamed:?}"
    );
    // The agent sees its request, not the decrypted content.
    let own = system.ctl(&AGENT, &["requests"], "");
    assert!(own.success().stdout.contains(&art), "{own:?}");
    assert!(!own.stdout.contains("decrypted"), "{own:?}");
    let status = enforcer
        .get(&format!("/v1/exchanges/{request_id}"))
        .expect(200);
    assert_eq!(status["msgType"], "exchange.status");
    assert_eq!(status["body"]["state"], "PendingApproval");
    assert_eq!(status["body"]["artifactHash"], hash.as_str());

    // Nothing yet: 204 after the timeout, with no body.
    let started = Instant::now();
    let nothing = enforcer.get(&format!("/v1/exchanges/{request_id}/wait?timeout=1"));
    assert_eq!(nothing.status, StatusCode::NO_CONTENT);
    assert_eq!(nothing.body, Value::Null);
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A long-poll is waiting when the approver approves with a code.
    let waiting = {
        let enforcer = enforcer.with(&pat);
        let path = format!("/v1/exchanges/{request_id}/wait?timeout=30");
        std::thread::spawn(move || {
            let reply = enforcer.get(&path);
            (reply, Instant::now())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let code = app.next_code();
    let approved = system.ctl(
        &APPROVER,
        &["approve", &art, "--code-stdin"],
        &format!("{code}\n"),
    );
    let approved_at = Instant::now();
    assert!(
        approved.success().stdout.contains("approved"),
        "{approved:?}"
    );
    let (reply, delivered_at) = waiting.join().unwrap();
    println!(
        "long-poll delivery after airlockctl approve returned: {:?}",
        delivered_at.saturating_duration_since(approved_at)
    );
    let decision = reply.expect(200);
    assert_eq!(decision["msgType"], "decision.deliver");
    assert_eq!(decision["requestId"], request_id.as_str());
    assert_eq!(decision["body"]["decision"], "approve");
    assert_eq!(decision["body"]["artifactHash"], hash.as_str());
    assert_eq!(
        decision["body"]["signerKeyId"],
        discovery["decisionSigning"]["keyId"]
    );
    assert!(signature_verifies(
        &request_id,
        &decision["body"],
        &public_key
    ));
    // A forged decision does not verify.
    let mut forged = decision["body"].clone();
    forged["decision"] = "reject".into();
    assert!(!signature_verifies(&request_id, &forged, &public_key));
    let mut other_request = decision["body"].clone();
    other_request["artifactHash"] = HASH.into();
    assert!(!signature_verifies(
        &request_id,
        &other_request,
        &public_key
    ));

    // The decision is readable again, then acknowledged.
    let again = enforcer
        .get(&format!("/v1/exchanges/{request_id}/wait?timeout=5"))
        .expect(200);
    assert_eq!(again["msgId"], decision["msgId"]);
    let msg_id = decision["msgId"].as_str().unwrap();
    let ack = json!({"msgId": format!("ack-{}", hex32()), "msgType": "ack.submit",
                     "requestId": request_id, "createdAt": "2026-11-22T20:05:00Z", "sender": {},
                     "body": {"msgId": msg_id, "status": "delivered", "ackAt": "2026-11-22T20:05:00Z"}});
    enforcer.post("/v1/acks", &ack).expect(200);
    let status = enforcer
        .get(&format!("/v1/exchanges/{request_id}"))
        .expect(200);
    assert_eq!(status["body"]["state"], "Acknowledged");
    assert_eq!(status["body"]["decision"]["decision"], "approve");

    // Withdrawing a decided exchange is a conflict.
    enforcer
        .post_empty(&format!("/v1/exchanges/{request_id}/withdraw"))
        .envelope(409, "already_resolved");

    // A pending one can be withdrawn (Rust's `null` body too); then it is gone.
    let second = format!("req-{}", hex32());
    enforcer
        .post("/v1/artifacts", &artifact(&second, &routing, HASH))
        .expect(202);
    enforcer
        .post(&format!("/v1/exchanges/{second}/withdraw"), &Value::Null)
        .expect(200);
    enforcer
        .get(&format!("/v1/exchanges/{second}/wait?timeout=1"))
        .flat(404, "NotFound");
    assert!(!system
        .ctl(&APPROVER, &["requests"], "")
        .stdout
        .contains(&second));

    // A denial is signed too, with its reason.
    let third = format!("req-{}", hex32());
    enforcer
        .post("/v1/artifacts", &artifact(&third, &routing, HASH))
        .expect(202);
    let art3 = artifact_id(&system, &third);
    let shown = system.ctl(&APPROVER, &["requests"], "");
    assert!(shown.stdout.contains("not readable"), "{shown:?}");
    let code = app.next_code();
    system
        .ctl(
            &APPROVER,
            &["deny", &art3, "--reason", "not on a Friday", "--code-stdin"],
            &format!("{code}\n"),
        )
        .success();
    let rejected = enforcer
        .get(&format!("/v1/exchanges/{third}/wait?timeout=5"))
        .expect(200);
    assert_eq!(rejected["body"]["decision"], "reject");
    assert_eq!(rejected["body"]["reason"], "not on a Friday");
    assert!(signature_verifies(&third, &rejected["body"], &public_key));
    assert_ne!(rejected["body"]["nonce"], decision["body"]["nonce"]);

    // Revoking the pairing ends the routing token.
    let revoked = enforcer
        .post("/v1/pairing/revoke", &json!({"routingToken": routing}))
        .expect(200);
    assert_eq!(
        revoked,
        json!({"status": "revoked", "enforcerId": "enf-test"})
    );
    enforcer
        .post(
            "/v1/artifacts",
            &artifact(&format!("req-{}", hex32()), &routing, HASH),
        )
        .envelope(403, "pairing_revoked");
    let listed = system.ctl(&AGENT, &["enforcers"], "");
    assert!(listed.success().stdout.contains("revoked"), "{listed:?}");

    // Every step is on the record; no secret is.
    for (event, n) in [
        ("integration_app_added", 1),
        ("pat_created", 1),
        ("app_consent_requested", 1),
        ("app_consent_decided", 1),
        ("pairing_started", 1),
        ("pairing_completed", 1),
        ("enforcer_online", 1),
        ("artifact_submitted", 3),
        ("artifact_decided", 2),
        ("decision_acked", 1),
        ("artifact_withdrawn", 1),
        ("pairing_revoked", 1),
    ] {
        assert_eq!(count(&system, event), n, "{event}");
    }
    let log = audit_text(&system);
    for secret in [&pat, &secret, &routing] {
        assert!(
            !log.contains(secret.as_str()),
            "a secret is in the audit log"
        );
    }
    system.audit_verify().success();
}

#[test]
fn bad_credentials_and_hostile_input_get_a_clear_4xx_and_change_nothing() {
    let system = start("1000");
    let (enforcer, app_id, pat) = agent_enforcer(&system, "agent", "Agent Plugin");
    let (routing, _) = pair(&system, &enforcer, &app_id);

    // The authentication matrix.
    enforcer
        .with("")
        .get("/v1/consent/status")
        .flat(401, "unauthorized");
    enforcer
        .with("airlock_pat_wrongprefix")
        .get("/v1/consent/status")
        .flat(401, "unauthorized");
    enforcer
        .with(&format!("airpat_{}", hex32()))
        .get("/v1/consent/status")
        .flat(401, "unauthorized");
    let bearer_only = Reply::from(
        enforcer
            .with("")
            .request(reqwest::Method::GET, "/v1/consent/status")
            .header("Authorization", "Bearer eyJhbGciOi.x.y")
            .send()
            .unwrap(),
    );
    bearer_only.flat(401, "unauthorized");
    // X-PAT wins over a bogus bearer.
    let both = Reply::from(
        enforcer
            .request(reqwest::Method::GET, "/v1/consent/status")
            .header("Authorization", "Bearer bogus")
            .send()
            .unwrap(),
    );
    assert_eq!(both.expect(200)["status"], "approved");
    let mut wrong = enforcer.with(&pat);
    wrong.client_secret = "x".repeat(40);
    wrong.get("/v1/consent/status").flat(401, "invalid_client");
    wrong.client_secret = String::new();
    wrong.get("/v1/consent/status").flat(401, "invalid_client");
    wrong.client_id = "nobody".into();
    wrong.get("/v1/consent/status").flat(401, "invalid_client");
    // Another user's PAT works for them, but their consent is their own.
    let outsider_pat = create_pat(&system, &OUTSIDER);
    let outsider = enforcer.with(&outsider_pat);
    let refused = outsider.get("/v1/consent/status");
    assert_eq!(refused.body["appId"], app_id, "{refused:?}");
    assert!(refused.body["appName"].is_string(), "{refused:?}");
    let consent_url = refused.body["consentUrl"].as_str().unwrap().to_owned();
    assert_eq!(
        consent_url,
        format!("{}/consent/{app_id}", system.integrations_url())
    );
    refused.flat(403, "app_consent_required");
    // The page it points at says how to consent.
    let page = Client::new().get(&consent_url).send().unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let text = page.text().unwrap();
    assert!(
        text.contains(&format!("airlockctl apps consent {app_id}")),
        "{text}"
    );
    system
        .ctl(&OUTSIDER, &["apps", "consent", &app_id, "--deny"], "")
        .success();
    outsider
        .get("/v1/consent/status")
        .flat(403, "app_consent_denied");
    system
        .ctl(&OUTSIDER, &["apps", "consent", &app_id], "")
        .success();

    // A revoked PAT is refused at once; only its owner revokes it.
    let (doomed, doomed_id) = create_pat_with_id(&system, &AGENT);
    enforcer.with(&doomed).get("/v1/consent/status").expect(200);
    let list = system.ctl(&AGENT, &["pat", "list", "--json"], "");
    let pats: Vec<Value> = serde_json::from_str(&list.success().stdout).unwrap();
    assert_eq!(pats.len(), 2);
    assert!(!list.stdout.contains(&doomed), "pat list shows a token");
    system
        .ctl(&OUTSIDER, &["pat", "revoke", &doomed_id], "")
        .failure();
    enforcer.with(&doomed).get("/v1/consent/status").expect(200);
    system
        .ctl(&AGENT, &["pat", "revoke", &doomed_id], "")
        .success();
    enforcer
        .with(&doomed)
        .get("/v1/consent/status")
        .flat(401, "unauthorized");
    enforcer.get("/v1/consent/status").expect(200);

    // DNS rebinding: a page's own Host is refused.
    let rebound = Reply::from(
        enforcer
            .request(reqwest::Method::GET, "/echo")
            .header("Host", "attacker.example:80")
            .send()
            .unwrap(),
    );
    rebound.flat(421, "invalid_host");

    let before = audit_text(&system).lines().count();
    let submitted_before = count(&system, "artifact_submitted");

    // Oversized, malformed and mistyped bodies.
    let huge = vec![b' '; 70 * 1024];
    enforcer
        .post_raw("/v1/artifacts", huge)
        .flat(413, "payload_too_large");
    enforcer
        .post_raw("/v1/artifacts", b"{\"msgId\":".to_vec())
        .flat(400, "invalid_request");
    let mut typed = artifact("req-typed", &routing, HASH);
    typed["body"]["artifactHash"] = json!(42);
    enforcer
        .post("/v1/artifacts", &typed)
        .flat(400, "invalid_request");
    let mut no_hash = artifact("req-nohash", &routing, HASH);
    no_hash["body"]["artifactHash"] = json!("not-a-hash");
    enforcer
        .post("/v1/artifacts", &no_hash)
        .flat(400, "invalid_request");
    let mut wrong_type = artifact("req-type", &routing, HASH);
    wrong_type["msgType"] = json!("decision.deliver");
    enforcer
        .post("/v1/artifacts", &wrong_type)
        .flat(400, "invalid_request");
    let hostile_id = artifact("req-1\n{\"forged\":1}", &routing, HASH);
    enforcer
        .post("/v1/artifacts", &hostile_id)
        .flat(400, "invalid_request");
    // An unknown routing token.
    enforcer
        .post(
            "/v1/artifacts",
            &artifact("req-unrouted", "rt-nonsense", HASH),
        )
        .envelope(403, "pairing_revoked");
    // Another user cannot route with this user's token.
    outsider
        .post("/v1/artifacts", &artifact("req-stolen", &routing, HASH))
        .envelope(403, "pairing_revoked");
    assert_eq!(count(&system, "artifact_submitted"), submitted_before);
    assert!(audit_text(&system).lines().count() >= before);

    // One good submission, then its replay.
    let request_id = format!("req-{}", hex32());
    let envelope = artifact(&request_id, &routing, HASH);
    enforcer.post("/v1/artifacts", &envelope).expect(202);
    enforcer
        .post("/v1/artifacts", &envelope)
        .envelope(409, "AlreadyExistsConflict");
    assert_eq!(count(&system, "artifact_submitted"), submitted_before + 1);

    // Another user's ids are not found; nothing of theirs changes.
    outsider
        .get(&format!("/v1/exchanges/{request_id}"))
        .flat(404, "NotFound");
    outsider
        .post_empty(&format!("/v1/exchanges/{request_id}/withdraw"))
        .flat(404, "NotFound");
    outsider
        .get(&format!("/v1/exchanges/{request_id}/wait?timeout=1"))
        .flat(404, "NotFound");
    outsider
        .post("/v1/pairing/revoke", &json!({"routingToken": routing}))
        .envelope(403, "pairing_revoked");
    let status = enforcer
        .get(&format!("/v1/exchanges/{request_id}"))
        .expect(200);
    assert_eq!(status["body"]["state"], "PendingApproval");
    assert_eq!(count(&system, "pairing_revoked"), 0);
    enforcer
        .get("/v1/exchanges/req-unknown")
        .flat(404, "NotFound");
    enforcer
        .get(&format!("/v1/exchanges/{request_id}/wait?timeout=soon"))
        .flat(400, "invalid_request");
    enforcer.get("/v1/nowhere").flat(404, "NotFound");
    // An ack for a decision that does not exist.
    let ack = json!({"msgId": "ack-1", "msgType": "ack.submit", "requestId": request_id,
                     "sender": {}, "body": {"msgId": "dmsg-none", "status": "delivered"}});
    enforcer.post("/v1/acks", &ack).flat(404, "NotFound");
    // Nobody but an admin decides, and only with a valid code.
    let art = artifact_id(&system, &request_id);
    system
        .ctl(&AGENT, &["approve", &art, "--code-stdin"], "123456\n")
        .failure();
    system
        .ctl(&APPROVER, &["approve", &art, "--code-stdin"], "000000\n")
        .failure();
    let status = enforcer
        .get(&format!("/v1/exchanges/{request_id}"))
        .expect(200);
    assert_eq!(status["body"]["state"], "PendingApproval");
    assert_eq!(count(&system, "artifact_decided"), 0);

    // DND: authenticated, empty.
    let dnd = enforcer
        .get("/v1/policy/dnd/effective?enforcerId=enf-test&workspaceId=default")
        .expect(200);
    assert_eq!(dnd["msgType"], "dnd.policy.effective");
    assert_eq!(dnd["body"], json!([]));
    enforcer
        .get("/v1/policy/dnd/effective?enforcerId=enf-test")
        .flat(400, "invalid_request");
}

#[test]
fn an_app_gets_sixty_requests_a_minute_then_429() {
    let system = start("60");
    let (_, client_id, secret) = add_app(&system, "vscode", "Extension");
    let enforcer = Enforcer::new(&system, &client_id, &secret, "");
    for _ in 0..60 {
        enforcer.get("/echo").expect(200);
    }
    enforcer.get("/echo").envelope(429, "quota_exceeded");
    // Another app has its own budget.
    let mut other = enforcer.with("");
    other.client_id = "another-app".into();
    other.get("/echo").expect(200);
}

#[test]
fn an_enforcer_claims_a_pregenerated_code_and_a_public_app_is_checked_by_origin() {
    let system = start("1000");
    let (enforcer, app_id, pat) = agent_enforcer(&system, "desktop", "CLI");
    system
        .ctl(&AGENT, &["apps", "consent", &app_id], "")
        .success();

    let generated = system.ctl(&AGENT, &["pair", "--generate"], "");
    let code = generated.success().stdout.trim().to_string();
    assert_eq!(code.len(), 9, "{generated:?}");
    let hello = |code: &str| {
        json!({"pairingCode": code, "deviceId": "dev-2", "enforcerId": "enf-claim",
               "enforcerLabel": "Claimer", "workspaceName": "ws",
               "gatewayUrl": system.integrations_url()})
    };
    // Another user's enforcer cannot claim it.
    let outsider_pat = create_pat(&system, &OUTSIDER);
    system
        .ctl(&OUTSIDER, &["apps", "consent", &app_id], "")
        .success();
    enforcer
        .with(&outsider_pat)
        .post("/v1/pairing/claim", &hello(&code))
        .flat(404, "NotFound");
    let claimed = enforcer
        .post("/v1/pairing/claim", &hello(&code.to_lowercase()))
        .expect(201);
    let nonce = claimed["pairingNonce"].as_str().unwrap();
    assert!(claimed["expiresAt"].is_string());
    let status = enforcer
        .get(&format!("/v1/pairing/{nonce}/status"))
        .expect(200);
    assert_eq!(status["state"], "Completed");
    let routing = status["routingToken"].as_str().unwrap();
    // Spent.
    enforcer
        .post("/v1/pairing/claim", &hello(&code))
        .flat(404, "NotFound");
    let mut envelope = artifact(&format!("req-{}", hex32()), routing, HASH);
    envelope["sender"]["enforcerId"] = "enf-claim".into();
    enforcer.post("/v1/artifacts", &envelope).expect(202);
    // The token is this enforcer's only.
    let mut other = artifact(&format!("req-{}", hex32()), routing, HASH);
    other["sender"]["enforcerId"] = "enf-other".into();
    enforcer
        .post("/v1/artifacts", &other)
        .envelope(403, "forbidden");
    // Unpairing from airlockctl ends the token too.
    system
        .ctl(&OUTSIDER, &["enforcers", "--unpair", nonce], "")
        .failure();
    system
        .ctl(&AGENT, &["enforcers", "--unpair", nonce], "")
        .success();
    let mut after = artifact(&format!("req-{}", hex32()), routing, HASH);
    after["sender"]["enforcerId"] = "enf-claim".into();
    enforcer
        .post("/v1/artifacts", &after)
        .envelope(403, "pairing_revoked");

    // A public (web) app: no secret, its Origin must be allowed.
    system
        .ctl(
            &APPROVER,
            &["apps", "add", "--kind", "web", "Dashboard"],
            "",
        )
        .failure();
    let out = system.ctl(
        &APPROVER,
        &[
            "apps",
            "add",
            "--kind",
            "web",
            "--origin",
            "https://dash.example",
            "Dashboard",
        ],
        "",
    );
    assert!(!out.success().stdout.contains("Client Secret"), "{out:?}");
    let web_client = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Client ID:"))
        .unwrap()
        .trim()
        .to_string();
    let web = Enforcer::new(&system, &web_client, "", &pat);
    let with_origin = |origin: &str| {
        Reply::from(
            web.request(reqwest::Method::GET, "/v1/consent/status")
                .header("Origin", origin)
                .send()
                .unwrap(),
        )
    };
    with_origin("https://evil.example").flat(401, "invalid_client");
    web.get("/v1/consent/status").flat(401, "invalid_client");
    with_origin("https://dash.example").flat(403, "app_consent_required");
    // Only admins register apps.
    system
        .ctl(&AGENT, &["apps", "add", "--kind", "agent", "Mine"], "")
        .failure();
}

#[test]
fn pairings_and_pending_artifacts_survive_a_gateway_crash() {
    let mut system = start("1000");
    let mut app = system.enrol();
    let (enforcer, app_id, pat) = agent_enforcer(&system, "desktop", "Crash");
    let (routing, e2e) = pair(&system, &enforcer, &app_id);
    let request_id = format!("req-{}", hex32());
    let canonical = r#"{"command":"terraform apply"}"#;
    enforcer
        .post(
            "/v1/artifacts",
            &sealed_artifact(&request_id, &routing, &e2e, canonical),
        )
        .expect(202);

    // SIGKILL: no chance to save anything more.
    system.kill_gateway();
    enforcer
        .get(&format!("/v1/exchanges/{request_id}"))
        .envelope(503, "unavailable");
    system.start_gateway();

    // The PAT, the consent, the pairing, the exchange and its key are back.
    let status = enforcer
        .get(&format!("/v1/exchanges/{request_id}"))
        .expect(200);
    assert_eq!(status["body"]["state"], "PendingApproval");
    let art = artifact_id(&system, &request_id);
    let shown = system.ctl(&APPROVER, &["requests"], "");
    assert!(shown.stdout.contains("terraform apply"), "{shown:?}");
    let second = format!("req-{}", hex32());
    enforcer
        .post("/v1/artifacts", &artifact(&second, &routing, HASH))
        .expect(202);

    // A long-poll across the restart still gets the decision.
    let waiting = {
        let enforcer = enforcer.with(&pat);
        let path = format!("/v1/exchanges/{request_id}/wait?timeout=30");
        std::thread::spawn(move || enforcer.get(&path))
    };
    std::thread::sleep(Duration::from_millis(300));
    let code = app.next_code();
    system
        .ctl(
            &APPROVER,
            &["approve", &art, "--code-stdin"],
            &format!("{code}\n"),
        )
        .success();
    let decision = waiting.join().unwrap().expect(200);
    assert_eq!(decision["body"]["decision"], "approve");
    system.audit_verify().success();
}

/// Group commit: concurrent submissions share fsyncs, yet each 202 comes
/// only after its own record is in the log, in one unbroken chain.
#[test]
fn concurrent_submissions_are_all_in_the_log_when_acknowledged_and_survive_a_crash() {
    const CLIENTS: usize = 16;
    const EACH: usize = 12;
    let mut system = start("100000");
    let (enforcer, app_id, pat) = agent_enforcer(&system, "desktop", "Batch");
    let (routing, _) = pair(&system, &enforcer, &app_id);
    let accepted: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let enforcer = enforcer.with(&pat);
                let routing = routing.clone();
                scope.spawn(move || {
                    (0..EACH)
                        .map(|_| {
                            let id = format!("req-{}", hex32());
                            enforcer
                                .post("/v1/artifacts", &artifact(&id, &routing, HASH))
                                .expect(202);
                            id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(accepted.len(), CLIENTS * EACH);
    // Each acknowledged submission's record is in the log already.
    let text = audit_text(&system);
    for id in &accepted {
        assert!(
            text.contains(id.as_str()),
            "{id} acknowledged but not in the log"
        );
    }
    assert_eq!(count(&system, "artifact_submitted"), CLIENTS * EACH);

    system.kill_gateway();
    system.start_gateway();
    for id in &accepted {
        let status = enforcer.get(&format!("/v1/exchanges/{id}")).expect(200);
        assert_eq!(status["body"]["state"], "PendingApproval", "{id}");
    }
    system.audit_verify().success();
}

#[test]
fn the_api_is_also_served_over_tls_on_a_second_address() {
    use std::os::unix::fs::PermissionsExt;
    // A self-signed certificate for 127.0.0.1, readable by the daemon's user.
    let certs = tempfile::tempdir().unwrap();
    std::fs::set_permissions(certs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // An end-entity certificate (its own trust anchor), not a CA.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = airlock_tests::unclaimed_port();
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let system = System::start_with(Options {
        integrations: Some(vec![
            ("tls_listen", leak(format!("\"127.0.0.1:{port}\""))),
            (
                "tls_cert",
                leak(format!("{:?}", cert.display().to_string())),
            ),
            ("tls_key", leak(format!("{:?}", key.display().to_string()))),
        ]),
        ..Options::default()
    });
    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let client = Client::builder()
        .add_root_certificate(root)
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    // Wait until it listens (the plain listener was waited for).
    let url = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let echo = loop {
        match client.get(format!("{url}/echo")).send() {
            Ok(reply) => break Reply::from(reply),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!(
                "no TLS listener: {e:?}\n{}",
                system.service_log("airlock-integrations")
            ),
        }
    };
    assert!(echo.expect(200)["utc"].is_string());
    let (_, client_id, secret) = add_app(&system, "desktop", "Remote");
    let pat = create_pat(&system, &AGENT);
    let consent = Reply::from(
        client
            .get(format!("{url}/v1/consent/status"))
            .header("X-Client-Id", client_id)
            .header("X-Client-Secret", secret)
            .header("X-PAT", pat)
            .send()
            .unwrap(),
    );
    consent.flat(403, "app_consent_required");
    // Plain HTTP on the TLS port is refused.
    assert!(Client::new()
        .get(format!("http://127.0.0.1:{port}/echo"))
        .send()
        .is_err());
}

/// airlock-integrations keeps nothing: killed and restarted, the same
/// routing token still submits, and the exchange is still there.
#[test]
fn pairings_survive_an_integrations_restart() {
    let mut system = start("1000");
    let (enforcer, app_id, _) = agent_enforcer(&system, "desktop", "Restart");
    let (routing, _) = pair(&system, &enforcer, &app_id);
    let first = format!("req-{}", hex32());
    enforcer
        .post("/v1/artifacts", &artifact(&first, &routing, HASH))
        .expect(202);

    system.kill_integrations();
    assert!(
        Client::new()
            .get(format!("{}/echo", system.integrations_url()))
            .send()
            .is_err(),
        "airlock-integrations still answers after SIGKILL"
    );
    system.start_integrations();

    let second = format!("req-{}", hex32());
    enforcer
        .post("/v1/artifacts", &artifact(&second, &routing, HASH))
        .expect(202);
    for request_id in [&first, &second] {
        let status = enforcer
            .get(&format!("/v1/exchanges/{request_id}"))
            .expect(200);
        assert_eq!(status["body"]["state"], "PendingApproval");
    }
    enforcer
        .post("/v1/pairing/revoke", &json!({"routingToken": routing}))
        .expect(200);
    enforcer
        .post(
            "/v1/artifacts",
            &artifact(&format!("req-{}", hex32()), &routing, HASH),
        )
        .envelope(403, "pairing_revoked");
}

/// Each user may have `gateway.max_open_exchanges_per_user` exchanges
/// waiting; the next is refused with a message saying why, and nothing is
/// kept of it; once one is withdrawn there is room again.
#[test]
fn a_user_with_too_many_open_exchanges_is_refused_until_one_closes() {
    let system = System::start_with(Options {
        integrations: Some(vec![("requests_per_minute", "1000")]),
        gateway_config: vec![("max_open_exchanges_per_user", "2")],
        ..Options::default()
    });
    let (enforcer, app_id, _) = agent_enforcer(&system, "desktop", "Busy");
    let (routing, _) = pair(&system, &enforcer, &app_id);
    let open: Vec<String> = (0..2).map(|_| format!("req-{}", hex32())).collect();
    for request_id in &open {
        enforcer
            .post("/v1/artifacts", &artifact(request_id, &routing, HASH))
            .expect(202);
    }
    let third = format!("req-{}", hex32());
    let refused = enforcer.post("/v1/artifacts", &artifact(&third, &routing, HASH));
    let message = refused.body["body"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("2 requests waiting") && message.contains("max_open_exchanges_per_user"),
        "{refused:?}"
    );
    assert_eq!(refused.body["body"]["requestId"], third.as_str());
    refused.envelope(429, "quota_exceeded");
    enforcer
        .get(&format!("/v1/exchanges/{third}"))
        .flat(404, "NotFound");

    enforcer
        .post_empty(&format!("/v1/exchanges/{}/withdraw", open[0]))
        .expect(200);
    enforcer
        .post("/v1/artifacts", &artifact(&third, &routing, HASH))
        .expect(202);
}

#[test]
fn a_waiting_long_poll_answers_410_as_soon_as_its_exchange_expires() {
    // Artifacts live as long as local requests: four seconds here.
    let system = System::start_with(Options {
        integrations: Some(vec![("requests_per_minute", "1000")]),
        gateway_config: vec![("request_ttl", "\"4s\"")],
        ..Options::default()
    });
    let (enforcer, app_id, _) = agent_enforcer(&system, "desktop", "Expiring");
    let (routing, _) = pair(&system, &enforcer, &app_id);
    let request_id = format!("req-{}", hex32());
    enforcer
        .post("/v1/artifacts", &artifact(&request_id, &routing, HASH))
        .expect(202);
    let started = Instant::now();
    let reply = enforcer.get(&format!("/v1/exchanges/{request_id}/wait?timeout=60"));
    let took = started.elapsed();
    reply.envelope(410, "expired");
    // Woken by the expiry itself: an unprompted recheck comes 20 s or more
    // after the poll began, and the timeout asked for is 60 s.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "answered after {took:?}"
    );
    enforcer
        .get(&format!("/v1/exchanges/{request_id}"))
        .envelope(410, "expired");
}
