//! Requests, approvals and grants.

use std::time::Duration;

use airlock_common::dbus::{GrantInfo, RequestInfo};
use airlock_common::timefmt::{format_secs, now_unix, rfc3339};

use crate::bus;
use crate::code::read_code;

fn remaining(until: i64) -> String {
    format_secs(until.saturating_sub(now_unix()).max(0) as u64)
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| format!("{} ({uid})", u.name))
        .unwrap_or_else(|| uid.to_string())
}

fn print_request(r: &RequestInfo) {
    println!("request {}", r.id);
    println!("  scope:     {}", r.scope);
    println!("  reason:    {}", r.reason);
    println!("  requester: {}", user_name(r.requester_uid));
    if let Some(session) = r.session.as_deref() {
        println!("  session:   {session}");
    }
    if r.requested_ttl_secs > 0 {
        println!("  asks for:  {}", format_secs(r.requested_ttl_secs));
    }
    println!(
        "  expires:   in {} ({})",
        remaining(r.expires_at),
        rfc3339(r.expires_at)
    );
}

fn print_grant(g: &GrantInfo) {
    println!("grant {}", g.id);
    println!("  scope:   {} ({})", g.scope, g.access.as_str());
    println!("  for:     {}", user_name(g.subject_uid));
    if let Some(session) = g.session.as_deref() {
        println!("  session: {session}");
    }
    println!("  request: {}", g.request_id);
    println!(
        "  expires: in {} ({})",
        remaining(g.expires_at),
        rfc3339(g.expires_at)
    );
}

pub async fn request(
    scope: &str,
    reason: &str,
    ttl: Option<Duration>,
    session: Option<&str>,
) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    let ttl = ttl.map(|d| d.as_secs()).unwrap_or(0);
    let id = match session {
        Some(session) => {
            gateway
                .request_for_session(session, scope, reason, ttl)
                .await
        }
        None => gateway.request_approval(scope, reason, ttl).await,
    }
    .map_err(|e| bus::explain("request", e))?;
    println!("{id}");
    eprintln!("airlock: request {id} is waiting for a human: `airlockctl approve {id}`");
    Ok(0)
}

pub async fn list_requests(json: bool) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    let requests = gateway
        .list_requests()
        .await
        .map_err(|e| bus::explain("requests", e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&requests)?);
    } else if requests.is_empty() {
        println!("no pending requests");
    } else {
        requests.iter().for_each(print_request);
    }
    Ok(0)
}

pub async fn approve(
    id: Option<&str>,
    ttl: Option<Duration>,
    write: bool,
    code_stdin: bool,
) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    let request = match id {
        Some(id) => gateway
            .get_request(id)
            .await
            .map_err(|e| bus::explain("approve", e))?,
        None => {
            let mut pending = gateway
                .list_requests()
                .await
                .map_err(|e| bus::explain("approve", e))?;
            match pending.len() {
                0 => anyhow::bail!("no pending requests to approve"),
                1 => pending.remove(0),
                n => anyhow::bail!(
                    "{n} requests are pending; name one (`airlockctl requests` lists them)"
                ),
            }
        }
    };
    print_request(&request);
    println!(
        "  access:    {}",
        if write {
            "read-write (--write)"
        } else {
            "read-only"
        }
    );
    let code = read_code(code_stdin, "TOTP code: ")?;
    let grant = gateway
        .approve(
            &request.id,
            &code,
            ttl.map(|d| d.as_secs()).unwrap_or(0),
            write,
        )
        .await
        .map_err(|e| bus::explain("approve", e))?;
    print_grant(&grant);
    Ok(0)
}

pub async fn deny(id: &str, reason: &str) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    gateway
        .deny(id, reason)
        .await
        .map_err(|e| bus::explain("deny", e))?;
    println!("denied {id}");
    Ok(0)
}

pub async fn list_grants(json: bool) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    let grants = gateway
        .list_grants()
        .await
        .map_err(|e| bus::explain("grants", e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&grants)?);
    } else if grants.is_empty() {
        println!("no live grants");
    } else {
        grants.iter().for_each(print_grant);
    }
    Ok(0)
}

pub async fn revoke(grant: Option<&str>, all: bool) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    match (grant, all) {
        (Some(id), false) => {
            gateway
                .revoke(id)
                .await
                .map_err(|e| bus::explain("revoke", e))?;
            println!("revoked {id}");
        }
        (None, true) => {
            let n = gateway
                .revoke_all()
                .await
                .map_err(|e| bus::explain("revoke", e))?;
            println!("revoked {n} grant(s)");
        }
        _ => anyhow::bail!("name one grant, or pass --all"),
    }
    Ok(0)
}

pub async fn status() -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    let s = gateway
        .status()
        .await
        .map_err(|e| bus::explain("status", e))?;
    println!("gateway:   running");
    println!(
        "policy:    {} ({} policies, {} roles from {})",
        if s.policy_ok {
            "ok"
        } else {
            "LAST RELOAD FAILED"
        },
        s.policies,
        s.roles,
        s.policy_dir
    );
    if !s.policy_ok {
        println!("           {}", s.policy_message);
    }
    match gateway.enforcer_status().await {
        Ok(e) => println!("enforcer:  {} session(s); {}", e.sessions, e.detail),
        Err(_) => {
            println!("enforcer:  NOT RUNNING: governed sessions cannot start (`airlockctl doctor`)")
        }
    }
    println!("requests:  {} pending", s.pending_requests);
    println!("grants:    {} live", s.active_grants);
    if !s.totp_reachable {
        println!("totp:      NOT REACHABLE (is airlock-totp running?)");
    } else {
        let t = &s.totp;
        let state = if t.enrolled {
            "enrolled"
        } else if t.enrolment_pending {
            "enrolment pending confirmation"
        } else {
            "not enrolled (run `airlockctl totp setup`)"
        };
        println!("totp:      {state}, {} s period", t.period_secs);
        if t.locked_until > now_unix() {
            println!(
                "           LOCKED for {} after repeated wrong codes (lockout #{})",
                remaining(t.locked_until),
                t.lockouts
            );
        } else if t.recent_failures > 0 {
            println!("           {} recent wrong code(s)", t.recent_failures);
        }
    }
    Ok(0)
}
