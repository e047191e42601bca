//! What every request passes before the gateway is asked: the `Host`
//! header (a DNS-rebinding page names its own host), the per-app rate
//! limit (`crate::ratelimit`), and the credentials headers, copied for the
//! gateway unread.

use airlock_common::integrations::{ApiCode, ApiCredentials, MAX_FIELD_LEN};
use axum::http::{HeaderMap, StatusCode};

use crate::error::ApiError;

/// The `Host` values a request may carry.
pub struct Hosts {
    allowed: Vec<String>,
}

impl Hosts {
    /// The listening address itself, `localhost` with its port, and the
    /// configured extra names.
    pub fn new(listens: &[std::net::SocketAddr], extra: &[String]) -> Hosts {
        let mut allowed = Vec::new();
        for listen in listens {
            let port = listen.port();
            allowed.extend([
                listen.to_string(),
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ]);
        }
        allowed.extend(extra.iter().map(|h| h.to_ascii_lowercase()));
        Hosts { allowed }
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        match host {
            Some(host) if self.allowed.contains(&host) => Ok(()),
            _ => Err(ApiError::local(
                StatusCode::MISDIRECTED_REQUEST,
                "invalid_host",
                "this gateway does not serve that Host",
            )),
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Result<String, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(String::new());
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(ApiCode::Unauthorized, format!("{name} is not text")))?;
    if value.len() > MAX_FIELD_LEN {
        return Err(ApiError::new(
            ApiCode::Unauthorized,
            format!("{name} is too long"),
        ));
    }
    Ok(value.trim().to_owned())
}

/// The credentials a request carries, X-PAT before `Authorization: Bearer`.
pub fn credentials(headers: &HeaderMap) -> Result<ApiCredentials, ApiError> {
    let authorization = header(headers, "authorization")?;
    let bearer = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok(ApiCredentials {
        client_id: header(headers, "x-client-id")?,
        client_secret: header(headers, "x-client-secret")?,
        origin: header(headers, "origin")?,
        pat: header(headers, "x-pat")?,
        bearer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_gateways_hosts_pass() {
        let hosts = Hosts::new(&["127.0.0.1:8470".parse().unwrap()], &[]);
        let mut headers = HeaderMap::new();
        assert!(hosts.check(&headers).is_err());
        headers.insert("host", "localhost:8470".parse().unwrap());
        assert!(hosts.check(&headers).is_ok());
        headers.insert("host", "evil.example:8470".parse().unwrap());
        assert!(hosts.check(&headers).is_err());
    }
}
