//! Third-party enforcers: apps, personal access tokens, consent, pairing,
//! and deciding their artifacts with a TOTP code.
//!
//! A decision on an artifact is signed by airlock-totp (its decision key)
//! once the approver's code checks out: the code goes to airlock-totp only,
//! the signed decision to the gateway, which checks it and hands it to the
//! enforcer.

use std::time::Duration;

use airlock_common::integrations::{
    AppKind, ArtifactInfo, DecisionStatement, EnforcerInfo, Verdict, DECIDED_RETENTION_SECS,
};
use airlock_common::timefmt::{format_secs, now_unix, rfc3339};

use crate::bus;
use crate::code::read_code;
use crate::printable::{has_controls, text};

/// The prefix of the gateway's artifact ids, which `approve` and `deny`
/// take beside request ids.
pub const ARTIFACT_PREFIX: &str = "art-";

pub async fn apps_add(kind: &str, name: &str, origins: &[String]) -> anyhow::Result<i32> {
    let kind = AppKind::parse(kind).map_err(anyhow::Error::msg)?;
    let gateway = bus::gateway().await?;
    let origins: Vec<&str> = origins.iter().map(String::as_str).collect();
    let app = gateway
        .add_app(kind, name, &origins)
        .await
        .map_err(|e| bus::explain("apps add", e))?;
    println!("App ID:        {}", app.app_id);
    println!("Client ID:     {}", app.client_id);
    if kind.is_confidential() {
        println!("Client Secret: {}", app.client_secret);
        eprintln!("airlock: the client secret is shown this once; only its SHA-256 is kept");
    } else {
        eprintln!("airlock: a {} app is checked by its Origin", kind.as_str());
    }
    Ok(0)
}

pub async fn apps_list(json: bool) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    let apps = gateway
        .list_apps()
        .await
        .map_err(|e| bus::explain("apps", e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&apps)?);
    } else if apps.is_empty() {
        println!("no apps registered (`airlockctl apps add --kind desktop NAME`)");
    } else {
        for app in &apps {
            println!(
                "{}  {} ({}), client {}, your consent: {}",
                text(&app.app_id),
                text(&app.name),
                app.kind.as_str(),
                text(&app.client_id),
                app.consent
            );
        }
    }
    Ok(0)
}

pub async fn apps_consent(app: &str, deny: bool) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    gateway
        .set_app_consent(app, !deny)
        .await
        .map_err(|e| bus::explain("apps consent", e))?;
    println!(
        "{} app {app} for your enforcers",
        if deny { "denied" } else { "allowed" }
    );
    Ok(0)
}

pub async fn pat_create(expires: Option<Duration>) -> anyhow::Result<i32> {
    let ttl = expires.unwrap_or(Duration::from_secs(90 * 24 * 3600));
    let gateway = bus::gateway().await?;
    let pat = gateway
        .create_pat(ttl.as_secs())
        .await
        .map_err(|e| bus::explain("pat create", e))?;
    println!("{}", pat.token);
    eprintln!(
        "airlock: PAT {} expires {}; it is shown this once (only its SHA-256 is kept)",
        pat.id,
        rfc3339(pat.expires_at)
    );
    Ok(0)
}

pub async fn pat_list(json: bool) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    let pats = gateway
        .list_pats()
        .await
        .map_err(|e| bus::explain("pat list", e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&pats)?);
    } else if pats.is_empty() {
        println!("no personal access tokens");
    } else {
        for pat in &pats {
            println!(
                "{}  uid {}, created {}, expires {}",
                pat.id,
                pat.uid,
                rfc3339(pat.created_at),
                rfc3339(pat.expires_at)
            );
        }
    }
    Ok(0)
}

pub async fn pat_revoke(id: &str) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    gateway
        .revoke_pat(id)
        .await
        .map_err(|e| bus::explain("pat revoke", e))?;
    println!("revoked {id}");
    Ok(0)
}

fn print_enforcer(e: &EnforcerInfo) {
    let presence = if e.online {
        "online".to_string()
    } else if e.last_seen > 0 {
        format!("offline, last seen {}", rfc3339(e.last_seen))
    } else {
        "never seen".to_string()
    };
    println!(
        "{}  {} {:?} workspace {:?} device {:?} app {} uid {}: {}, {presence}",
        text(&e.pairing),
        text(&e.enforcer_id),
        text(&e.label),
        text(&e.workspace),
        text(&e.device_id),
        text(&e.app_id),
        e.uid,
        e.state
    );
}

/// `airlockctl pair CODE`: completes the pairing the enforcer shows the
/// code of; `--generate` makes a code an enforcer can claim instead.
pub async fn pair(code: Option<&str>, generate: bool) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    match (code, generate) {
        (Some(code), false) => {
            let enforcer = gateway
                .pair(code)
                .await
                .map_err(|e| bus::explain("pair", e))?;
            println!("paired:");
            print_enforcer(&enforcer);
        }
        (None, true) => {
            let view = gateway
                .pregenerate_pairing()
                .await
                .map_err(|e| bus::explain("pair", e))?;
            println!("{}", view.code);
            eprintln!(
                "airlock: an enforcer of yours can claim this code until {}",
                rfc3339(view.expires_at)
            );
        }
        _ => anyhow::bail!("give the code the enforcer shows, or --generate"),
    }
    Ok(0)
}

pub async fn enforcers(unpair: Option<&str>, json: bool) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    if let Some(pairing) = unpair {
        gateway
            .unpair(pairing)
            .await
            .map_err(|e| bus::explain("enforcers --unpair", e))?;
        println!("unpaired {pairing}");
        return Ok(0);
    }
    let list = gateway
        .list_enforcers()
        .await
        .map_err(|e| bus::explain("enforcers", e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.is_empty() {
        println!("no enforcers paired");
    } else {
        list.iter().for_each(print_enforcer);
    }
    Ok(0)
}

/// The artifact's decrypted content, or why it cannot be read; none when
/// the caller may not read it (only approvers, admins, may).
pub async fn content(
    gateway: &airlock_common::dbus::Gateway1Proxy<'static>,
    id: &str,
) -> Option<Result<String, String>> {
    use airlock_common::dbus::AirlockError;
    match gateway.read_artifact(id).await {
        Ok(text) => Some(Ok(text)),
        // Refused by the bus policy or by the gateway: not an approver.
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.DBus.Error.AccessDenied" =>
        {
            None
        }
        Err(e) => match AirlockError::from_remote(e) {
            AirlockError::AccessDenied(_) => None,
            other => Some(Err(other.message())),
        },
    }
}

/// Content as the approver reads it: pretty JSON when it is JSON, every
/// line escaped.
fn print_content(content: &Result<String, String>) {
    match content {
        Ok(text) => {
            let pretty = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| text.clone());
            println!("  content (decrypted, matches its sha256):");
            for line in pretty.lines() {
                println!("    {}", crate::printable::text(line));
            }
        }
        Err(why) => println!("  content:   not readable: {}", text(why)),
    }
}

pub fn print_artifact(a: &ArtifactInfo, content: Option<&Result<String, String>>) {
    println!("request {} (third-party enforcer)", text(&a.id));
    println!(
        "  enforcer:  {} {:?} via app {:?}",
        text(&a.enforcer_id),
        text(&a.enforcer_label),
        text(&a.app_name)
    );
    println!("  workspace: {}", text(&a.workspace));
    println!("  for uid:   {}", a.uid);
    if !a.label.is_empty() {
        println!("  label:     {}", text(&a.label));
    }
    println!("  type:      {}", text(&a.artifact_type));
    println!("  sha256:    {}", text(&a.artifact_hash));
    println!(
        "  encrypted: {} bytes of {} ciphertext",
        a.ciphertext.data.len(),
        text(&a.ciphertext.alg)
    );
    if let Some(content) = content {
        print_content(content);
    }
    println!("  enforcer's request id: {}", text(&a.request_id));
    println!(
        "  expires:   in {} ({})",
        format_secs(a.expires_at.saturating_sub(now_unix()).max(0) as u64),
        rfc3339(a.expires_at)
    );
}

/// Approves or rejects an artifact with a TOTP code: airlock-totp signs
/// exactly the decision printed, and the gateway delivers it.
pub async fn decide(
    id: &str,
    verdict: Verdict,
    reason: &str,
    code_stdin: bool,
) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    let artifact = gateway
        .get_artifact(id)
        .await
        .map_err(|e| bus::explain("decide", e))?;
    anyhow::ensure!(
        ![
            &artifact.request_id,
            &artifact.enforcer_id,
            &artifact.enforcer_label,
            &artifact.workspace,
            &artifact.label,
            &artifact.app_name,
            &artifact.artifact_type,
        ]
        .into_iter()
        .any(|t| has_controls(t)),
        "artifact {} holds control characters that could disguise it on a terminal; \
         not deciding it",
        text(id)
    );
    let content = content(&gateway, id).await;
    print_artifact(&artifact, content.as_ref());
    let statement = DecisionStatement {
        request_id: artifact.request_id.clone(),
        artifact_hash: artifact.artifact_hash.clone(),
        decision: verdict,
        reason: reason.to_owned(),
    };
    println!(
        "deciding signs: {} {} (sha256 {}){}",
        verdict.as_str(),
        text(&statement.request_id),
        text(&statement.artifact_hash),
        if reason.is_empty() {
            String::new()
        } else {
            format!(", reason {:?}", text(reason))
        }
    );
    let totp = bus::totp().await?;
    let code = read_code(code_stdin, "TOTP code: ")?;
    let signed = totp
        .sign_decision(id, statement.clone(), &code)
        .await
        .map_err(|e| bus::explain_totp("decide", e))?;
    anyhow::ensure!(
        signed.statement == statement,
        "airlock-totp signed something other than what was shown; not recording it"
    );
    gateway
        .decide_artifact(id, &signed)
        .await
        .map_err(|e| bus::explain("decide", e))?;
    println!(
        "{} {id}: the enforcer receives the decision signed by {} (readable for {})",
        match verdict {
            Verdict::Approve => "approved",
            Verdict::Reject => "rejected",
        },
        signed.signer_key_id,
        format_secs(DECIDED_RETENTION_SECS as u64)
    );
    Ok(0)
}
