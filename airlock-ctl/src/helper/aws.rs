//! AWS `credential_process`: one JSON object on standard output, Version 1,
//! with the key, the secret, the session token if stored, and the grant's
//! expiry, after which the SDK asks again.

use airlock_common::timefmt::rfc3339;
use serde::Serialize;

use super::{answer, field, json, release, HelperTool};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessCredentials<'a> {
    version: u8,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_token: Option<&'a str>,
    expiration: String,
}

pub async fn run(service: anyhow::Result<&str>) -> anyhow::Result<()> {
    let name = service.as_ref().map(|s| s.to_string()).unwrap_or_default();
    let released = release(HelperTool::Aws, service).await?;
    let out = ProcessCredentials {
        version: 1,
        access_key_id: field(&released, &name, "access_key_id")?,
        secret_access_key: field(&released, &name, "secret_access_key")?,
        session_token: released.field("session_token"),
        expiration: rfc3339(released.expires_at),
    };
    answer(json(&out)?)
}
