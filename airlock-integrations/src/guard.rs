//! What every request passes before the gateway is asked: the `Host`
//! header (a DNS-rebinding page names its own host), the per-app rate
//! limit, and the credentials headers, copied for the gateway unread.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// A fixed window per app (client id): `limit` requests a minute.
pub struct RateLimit {
    limit: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

const WINDOW: Duration = Duration::from_secs(60);
/// Apps tracked at most; beyond, windows that ended are dropped first.
const MAX_TRACKED: usize = 4096;

impl RateLimit {
    pub fn new(limit: u32) -> RateLimit {
        RateLimit {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Charges one request to `app` (the client id as sent; none shares one
    /// anonymous window).
    pub fn charge(&self, app: &str, now: Instant) -> Result<(), ApiError> {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= MAX_TRACKED && !windows.contains_key(app) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.len() >= MAX_TRACKED {
                return Err(ApiError::new(ApiCode::QuotaExceeded, "too many clients"));
            }
        }
        let window = windows.entry(app.to_owned()).or_insert((now, 0));
        if now.duration_since(window.0) >= WINDOW {
            *window = (now, 0);
        }
        if window.1 >= self.limit {
            return Err(ApiError::new(
                ApiCode::QuotaExceeded,
                format!("more than {} requests a minute from this app", self.limit),
            ));
        }
        window.1 += 1;
        Ok(())
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
    fn the_window_refuses_the_sixty_first_and_reopens() {
        let limit = RateLimit::new(60);
        let start = Instant::now();
        for _ in 0..60 {
            limit.charge("app", start).unwrap();
        }
        let refused = limit.charge("app", start).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        limit.charge("other", start).unwrap();
        limit.charge("app", start + WINDOW).unwrap();
    }

    #[test]
    fn random_client_ids_cannot_grow_the_table_nor_free_a_limited_app() {
        let limit = RateLimit::new(60);
        let start = Instant::now();
        for _ in 0..60 {
            limit.charge("app", start).unwrap();
        }
        // A flood of made-up client ids, each sent once.
        let refused = (0..3 * MAX_TRACKED)
            .filter(|i| limit.charge(&format!("random-{i}"), start).is_err())
            .count();
        let tracked = limit.windows.lock().unwrap().len();
        assert!(tracked <= MAX_TRACKED, "{tracked} windows kept");
        assert_eq!(refused, 3 * MAX_TRACKED - (MAX_TRACKED - 1));
        // The limited app stays limited: the flood did not reset its window.
        let still = limit.charge("app", start).unwrap_err();
        assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS);
        // Once the flood's windows end, new apps get in again.
        limit.charge("new-app", start + WINDOW).unwrap();
        assert!(limit.windows.lock().unwrap().len() <= MAX_TRACKED);
    }

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
