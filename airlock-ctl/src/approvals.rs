//! Requests, approvals and grants.

use std::borrow::Cow;
use std::io::Write;
use std::time::Duration;

use airlock_common::dbus::{GrantInfo, GrantRequest, RequestInfo};
use airlock_common::grant::Access;
use airlock_common::timefmt::{format_secs, now_unix, rfc3339};

use crate::bus;
use crate::code::read_code;
use crate::printable::{has_controls, text};

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

fn print_request(out: &mut dyn Write, r: &RequestInfo) {
    let _ = writeln!(out, "request {}", text(&r.id));
    let _ = writeln!(out, "  scope:     {}", text(&r.scope));
    let _ = writeln!(out, "  reason:    {}", text(&r.reason));
    let _ = writeln!(out, "  requester: {}", user_name(r.requester_uid));
    if let Some(session) = r.session.as_deref() {
        let _ = writeln!(out, "  session:   {}", text(session));
    }
    if r.requested_ttl_secs > 0 {
        let _ = writeln!(out, "  asks for:  {}", format_secs(r.requested_ttl_secs));
    }
    let _ = writeln!(
        out,
        "  expires:   in {} ({})",
        remaining(r.expires_at),
        rfc3339(r.expires_at)
    );
}

fn print_grant(out: &mut dyn Write, g: &GrantInfo) {
    let _ = writeln!(out, "grant {}", text(&g.id));
    let _ = writeln!(out, "  scope:   {} ({})", text(&g.scope), g.access.as_str());
    let _ = writeln!(out, "  for:     {}", user_name(g.subject_uid));
    if let Some(session) = g.session.as_deref() {
        let _ = writeln!(out, "  session: {}", text(session));
    }
    let _ = writeln!(out, "  request: {}", text(&g.request_id));
    let _ = writeln!(
        out,
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
    // Third-party enforcers' artifacts wait beside the local requests.
    let artifacts = gateway
        .list_artifacts()
        .await
        .map_err(|e| bus::explain("requests", e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&requests)?);
    } else if requests.is_empty() && artifacts.is_empty() {
        println!("no pending requests");
    } else {
        requests
            .iter()
            .for_each(|r| print_request(&mut std::io::stdout(), r));
        for artifact in &artifacts {
            // Only an approver (admin) may read the content.
            let content = crate::enforcers::content(&gateway, &artifact.id).await;
            crate::enforcers::print_artifact(artifact, content.as_ref());
        }
    }
    Ok(0)
}

/// Shows the request and exactly the grant that approving it signs, then
/// sends the code with that grant request to airlock-totp (never to the
/// gateway) and hands the signed grant to the gateway, which records it and
/// gives it to the kernel.
pub async fn approve(
    id: Option<&str>,
    ttl: Option<Duration>,
    write: bool,
    code_stdin: bool,
) -> anyhow::Result<i32> {
    approve_showing(&mut std::io::stdout(), id, ttl, write, code_stdin).await
}

/// [`approve`], showing the request and the grant on `out`.
pub async fn approve_showing(
    out: &mut dyn Write,
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
                0 => {
                    // An enforcer's artifact is named, never picked for the
                    // approver: say which there are.
                    let artifacts = gateway
                        .list_artifacts()
                        .await
                        .map_err(|e| bus::explain("approve", e))?;
                    match artifacts.as_slice() {
                        [] => anyhow::bail!("no pending requests to approve"),
                        [one] => anyhow::bail!(
                            "only a third-party enforcer's artifact is pending: \
                             `airlockctl approve {}`",
                            crate::printable::text(&one.id)
                        ),
                        many => anyhow::bail!(
                            "{} third-party enforcers' artifacts are pending; name one \
                             (`airlockctl requests` lists them)",
                            many.len()
                        ),
                    }
                }
                1 => pending.remove(0),
                n => anyhow::bail!(
                    "{n} requests are pending; name one (`airlockctl requests` lists them)"
                ),
            }
        }
    };
    let ttl_secs = ttl.map(|d| d.as_secs()).unwrap_or(0);
    let asked = gateway
        .prepare_approval(&request.id, ttl_secs, write)
        .await
        .map_err(|e| bus::explain("approve", e))?;
    check_proposal(&request, &asked, ttl_secs, write)?;
    print_request(out, &request);
    print_grant_request(out, &asked);
    out.flush()?;
    let totp = bus::totp().await?;
    let code = read_code(code_stdin, "TOTP code: ")?;
    // What is signed is what was just printed, byte for byte.
    let signed = totp
        .approve(asked, &code)
        .await
        .map_err(|e| bus::explain_totp("approve", e))?;
    let grant = gateway
        .approve(signed)
        .await
        .map_err(|e| bus::explain("approve", e))?;
    print_grant(out, &grant);
    Ok(0)
}

/// The gateway proposes the grant request; it must be for the request shown,
/// with the access and lifetime asked for. Whatever it proposes is printed
/// before the code is read, so it cannot slip anything past the approver.
fn check_proposal(
    request: &RequestInfo,
    asked: &GrantRequest,
    ttl_secs: u64,
    write: bool,
) -> anyhow::Result<()> {
    let access = if write { Access::Write } else { Access::Read };
    // What the approver reads must be what it is: text that could move the
    // cursor or hide what follows is refused, not only escaped.
    anyhow::ensure!(
        ![&request.id, &request.scope, &request.reason]
            .into_iter()
            .chain(request.session.as_ref())
            .any(|t| has_controls(t)),
        "request {} holds control characters that could disguise it on a terminal; \
         not approving it",
        text(&request.id)
    );
    anyhow::ensure!(
        asked.request_id == request.id
            && asked.subject_uid == request.requester_uid
            && *asked.session == *request.session
            && asked.scope == request.scope
            && asked.access == access
            && (ttl_secs == 0 || asked.ttl_secs == ttl_secs),
        "the gateway proposed a grant that differs from request {}; not approving it",
        text(&request.id)
    );
    Ok(())
}

/// Everything airlock-totp will sign.
fn print_grant_request(out: &mut dyn Write, asked: &GrantRequest) {
    let _ = writeln!(out, "approving signs this grant:");
    let _ = writeln!(out, "  scope:     {}", text(&asked.scope));
    let _ = writeln!(out, "  for:       {}", user_name(asked.subject_uid));
    let _ = writeln!(
        out,
        "  session:   {}",
        asked
            .session
            .as_deref()
            .map_or(Cow::Borrowed("(none: every process of the user)"), text)
    );
    let _ = writeln!(
        out,
        "  access:    {}",
        match asked.access {
            Access::Write => "read-write (--write)",
            Access::Read => "read-only",
        }
    );
    let _ = writeln!(out, "  lifetime:  {}", format_secs(asked.ttl_secs));
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
        let stored = crate::credentials::stored().await;
        for grant in &grants {
            print_grant(&mut std::io::stdout(), grant);
            crate::credentials::print_opens(&grant.scope, stored.as_deref());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(reason: &str) -> RequestInfo {
        RequestInfo {
            id: "req-1".into(),
            scope: "command:terraform plan".into(),
            reason: reason.into(),
            requester_uid: 1000,
            session: None.into(),
            requested_ttl_secs: 0,
            created_at: 0,
            expires_at: 0,
        }
    }

    fn proposal() -> GrantRequest {
        GrantRequest {
            request_id: "req-1".into(),
            subject_uid: 1000,
            session: None.into(),
            scope: "command:terraform plan".into(),
            access: Access::Read,
            ttl_secs: 3600,
        }
    }

    #[test]
    fn a_request_that_could_disguise_itself_on_a_terminal_is_not_approved() {
        assert!(check_proposal(&request("plan\tstaging"), &proposal(), 0, false).is_ok());
        // Cursor up, erase the line: it could overwrite what is signed.
        let error = check_proposal(&request("x\u{1b}[1A\u{1b}[2K"), &proposal(), 0, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("control characters"), "{error}");
    }

    #[test]
    fn a_proposal_for_more_than_was_asked_is_refused() {
        let mut wider = proposal();
        wider.access = Access::Write;
        assert!(check_proposal(&request("r"), &wider, 0, false).is_err());
        let mut other = proposal();
        other.subject_uid = 0;
        assert!(check_proposal(&request("r"), &other, 0, false).is_err());
    }
}
