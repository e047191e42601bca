//! `airlockctl audit` and `airlockctl audit verify`: read the log directly.
//!
//! The log is readable by root and group airlock-admin only, so these
//! commands work for exactly the people allowed to approve. `verify` also
//! asks airlock-totp for its key and its latest countersigned head.

use std::path::Path;

use airlock_common::audit::{self, countersign, Filter, Record};
use airlock_common::dbus::HeadSignature;
use airlock_common::names;
use airlock_common::timefmt::{now_unix, parse_duration, parse_rfc3339, rfc3339};

use crate::bus;

/// `1h`, `7d`, `today`, or an RFC 3339 time.
pub fn parse_since(text: &str) -> anyhow::Result<i64> {
    if text == "today" {
        let now = now_unix();
        return Ok(now - now.rem_euclid(86_400));
    }
    if let Some(t) = parse_rfc3339(text) {
        return Ok(t);
    }
    let d = parse_duration(text).map_err(anyhow::Error::msg)?;
    Ok(now_unix() - d.as_secs() as i64)
}

fn explain_io(path: &Path, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot read the audit log {} ({e}); it is readable by root and group {} only",
        path.display(),
        names::ADMIN_GROUP
    )
}

fn print_record(r: &Record) {
    // Fields hold text other users chose (reasons, argv): never raw
    // control characters on an admin's terminal.
    let mut details: Vec<String> = r
        .fields
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={}", crate::printable::text(s)),
            other => format!("{k}={}", crate::printable::text(&other.to_string())),
        })
        .collect();
    details.sort();
    println!(
        "{} #{:<5} {:<20} {}",
        rfc3339(r.ts),
        r.seq,
        crate::printable::text(&r.event),
        details.join(" ")
    );
}

pub fn show(dir: &Path, filter: &Filter, json: bool) -> anyhow::Result<i32> {
    let path = dir.join(names::AUDIT_LOG_FILE);
    let records = audit::read_records(&path).map_err(|e| explain_io(&path, e))?;
    for r in records.iter().filter(|r| filter.matches(r)) {
        if json {
            println!("{}", r.raw);
        } else {
            print_record(r);
        }
    }
    Ok(0)
}

/// Verifies the hash chain and its head anchor, then airlock-totp's
/// countersignatures: those in the log and airlock-totp's latest, asked of
/// it. Exit 0 intact, 1 tampered, 2 chain intact but the countersignatures
/// could not be checked (airlock-totp did not answer).
pub async fn verify(dir: &Path) -> anyhow::Result<i32> {
    let path = dir.join(names::AUDIT_LOG_FILE);
    // airlock-totp first, the log after: the gateway keeps appending (and
    // having heads countersigned) while we read, so a head asked of
    // airlock-totp after the read could be newer than the bytes read, and
    // a live log would look truncated. Asked first, it is covered by any
    // log not cut short since.
    let countersigner = countersigning_key_and_head().await;
    let head =
        audit::read_head(&dir.join(names::AUDIT_HEAD_FILE)).map_err(|e| explain_io(&path, e))?;
    // One read: the chain and the countersignatures are checked on the same
    // bytes, so the log cannot show one content to each check.
    let content = match audit::read_log(&path) {
        Ok(content) => content,
        Err(audit::AuditError::Io(e))
            if e.kind() == std::io::ErrorKind::NotFound && head.is_some() =>
        {
            Vec::new()
        }
        Err(e) => return Err(explain_io(&path, e)),
    };
    let report = audit::verify_bytes(&content, head.as_ref());
    if let Some(problem) = report.problem {
        println!("{}: TAMPERED: {problem}", path.display());
        return Ok(1);
    }
    let records = audit::parse_records(&content).map_err(|e| explain_io(&path, e))?;
    let (key, latest) = match countersigner {
        Ok(found) => found,
        Err(e) => {
            println!(
                "{}: chain intact ({} records, through record {}), but the countersignatures \
                 were NOT checked: {e:#}",
                path.display(),
                report.records,
                report.last_seq
            );
            return Ok(2);
        }
    };
    let countersigned = countersign::check(&records, &key, (latest.seq > 0).then_some(&latest));
    match countersigned.problem {
        None => {
            println!(
                "{}: intact, {} records, chain verified through record {}; {} countersignature(s) \
                 by airlock-totp hold, the latest covering record {}",
                path.display(),
                report.records,
                report.last_seq,
                countersigned.checked,
                countersigned.last_good
            );
            Ok(0)
        }
        Some(problem) => {
            println!("{}: TAMPERED: {problem}", path.display());
            Ok(1)
        }
    }
}

/// airlock-totp's public key and latest countersigned head, asked of it.
async fn countersigning_key_and_head() -> anyhow::Result<(Vec<u8>, HeadSignature)> {
    let totp = bus::totp().await?;
    let key = totp
        .public_key()
        .await
        .map_err(|e| bus::explain_totp("audit verify", e))?;
    let key = countersign::decode_public_key(&key).map_err(anyhow::Error::msg)?;
    let latest = totp
        .countersigned_head()
        .await
        .map_err(|e| bus::explain_totp("audit verify", e))?;
    Ok((key, latest))
}
