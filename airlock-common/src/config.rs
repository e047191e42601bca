//! `/etc/airlock/airlock.toml`: one file, a section per daemon.
//!
//! Every key is optional; unknown keys are errors so that a typo never
//! silently leaves a default in force.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::names;
use crate::timefmt::parse_duration;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub totp: TotpConfig,
    #[serde(default)]
    pub integrations: IntegrationsConfig,
    #[serde(default)]
    pub proxy: ProxyConfig,
}

/// The default of `gateway.max_open_exchanges_per_user`: far more than a
/// person reviews, well under the gateway's global bound on exchanges.
pub const DEFAULT_MAX_OPEN_EXCHANGES_PER_USER: usize = 256;

/// `airlock-integrations`, the HTTP API third-party enforcers speak.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrationsConfig {
    /// Where it listens: loopback by default.
    pub listen: String,
    /// `Host` header values accepted besides the listening address itself
    /// (`localhost:PORT` always is): a DNS-rebinding page sends its own.
    pub allowed_hosts: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Requests per app (client id) per minute; more get 429.
    pub requests_per_minute: u32,
    /// The OIDC realm discovery names (`idp.baseUrl`); empty for none.
    pub idp_base_url: String,
    /// How enforcers reach this service, for the links it hands out (a
    /// consent refusal's `consentUrl`); empty: `http://` + `listen`.
    pub public_url: String,
    /// A second address served over TLS (empty: none), with its PEM
    /// certificate chain and private key.
    pub tls_listen: String,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

impl Default for IntegrationsConfig {
    fn default() -> Self {
        IntegrationsConfig {
            listen: "127.0.0.1:8470".into(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 64 * 1024,
            requests_per_minute: 60,
            idp_base_url: String::new(),
            public_url: String::new(),
            tls_listen: String::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
        }
    }
}

/// `airlock-proxy`: where agents reach services with credentials injected.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// The Unix socket (callers are identified by SO_PEERCRED).
    pub socket: PathBuf,
    /// The loopback address and port (callers are identified by the owner
    /// of the connecting socket and the cgroup it was made in).
    pub listen: String,
    /// The certificate authorities HTTPS upstreams are checked against (PEM).
    pub ca_file: PathBuf,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            socket: names::DEFAULT_PROXY_SOCKET.into(),
            listen: names::DEFAULT_PROXY_LISTEN.into(),
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub policy_dir: PathBuf,
    pub state_dir: PathBuf,
    pub audit_dir: PathBuf,
    /// How long a pending request waits for a human: a local one, or a
    /// third-party enforcer's artifact.
    pub request_ttl: String,
    pub default_grant_ttl: String,
    pub max_grant_ttl: String,
    /// Most pending requests one Unix user may have at once.
    pub max_pending_per_user: usize,
    /// Most exchanges (third-party enforcers' artifacts) one Unix user may
    /// have waiting for a decision at once; more are refused with
    /// `quota_exceeded` until some are decided, withdrawn or expire.
    pub max_open_exchanges_per_user: usize,
    /// The role of governed sessions started without `--role`.
    pub default_role: String,
    /// Service definitions (`*.toml`), for the credential proxy.
    pub services_dir: PathBuf,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            policy_dir: names::DEFAULT_POLICY_DIR.into(),
            state_dir: names::DEFAULT_GATEWAY_STATE_DIR.into(),
            audit_dir: names::DEFAULT_AUDIT_DIR.into(),
            request_ttl: "10m".into(),
            default_grant_ttl: "60m".into(),
            max_grant_ttl: DEFAULT_MAX_GRANT_TTL.into(),
            max_pending_per_user: 32,
            max_open_exchanges_per_user: DEFAULT_MAX_OPEN_EXCHANGES_PER_USER,
            default_role: "default".into(),
            services_dir: crate::services::DEFAULT_SERVICES_DIR.into(),
        }
    }
}

/// The longest grant, by default: the gateway never asks for more and
/// airlock-totp never signs more.
const DEFAULT_MAX_GRANT_TTL: &str = "8h";

/// The gateway's durations, parsed.
#[derive(Clone, Copy, Debug)]
pub struct GatewayTimes {
    pub request_ttl: Duration,
    pub default_grant_ttl: Duration,
    pub max_grant_ttl: Duration,
}

impl GatewayConfig {
    pub fn times(&self) -> Result<GatewayTimes, String> {
        let times = GatewayTimes {
            request_ttl: parse_duration(&self.request_ttl)?,
            default_grant_ttl: parse_duration(&self.default_grant_ttl)?,
            max_grant_ttl: parse_duration(&self.max_grant_ttl)?,
        };
        if times.default_grant_ttl > times.max_grant_ttl {
            return Err("gateway.default_grant_ttl is longer than gateway.max_grant_ttl".into());
        }
        if times.request_ttl.is_zero() || times.max_grant_ttl.is_zero() {
            return Err("gateway durations must be positive".into());
        }
        Ok(times)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TotpConfig {
    pub state_dir: PathBuf,
    /// RFC 6238 time step.
    pub period_secs: u32,
    pub issuer: String,
    /// Hard upper bound on any grant the signer issues, whatever the gateway asks.
    pub max_grant_ttl: String,
    /// The gateway user: it may read the TOTP status and public key, never
    /// approve or enrol.
    pub gateway_user: String,
}

impl Default for TotpConfig {
    fn default() -> Self {
        TotpConfig {
            state_dir: names::DEFAULT_TOTP_STATE_DIR.into(),
            period_secs: 30,
            issuer: "Airlock".into(),
            max_grant_ttl: DEFAULT_MAX_GRANT_TTL.into(),
            gateway_user: names::GATEWAY_USER.into(),
        }
    }
}

impl Config {
    /// Reads the file; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.gateway.times()?;
        parse_duration(&config.totp.max_grant_ttl)?;
        config
            .integrations
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("integrations.listen: {e}"))?;
        let tls = &config.integrations;
        if !tls.tls_listen.is_empty() {
            tls.tls_listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| format!("integrations.tls_listen: {e}"))?;
            if tls.tls_cert.as_os_str().is_empty() || tls.tls_key.as_os_str().is_empty() {
                return Err("integrations.tls_listen needs tls_cert and tls_key".into());
            }
        }
        if config.integrations.max_body_bytes < 1024 || config.integrations.requests_per_minute == 0
        {
            return Err(
                "integrations.max_body_bytes must be at least 1024 and requests_per_minute positive"
                    .into(),
            );
        }
        if !(15..=120).contains(&config.totp.period_secs) {
            return Err("totp.period_secs must be between 15 and 120".into());
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let c = Config::parse("").unwrap();
        let t = c.gateway.times().unwrap();
        assert_eq!(t.default_grant_ttl, Duration::from_secs(3600));
        assert_eq!(t.max_grant_ttl, Duration::from_secs(480 * 60));
        assert_eq!(t.request_ttl, Duration::from_secs(600));
        assert_eq!(c.totp.period_secs, 30);
    }

    #[test]
    fn the_shipped_file_with_every_key_set_gives_the_defaults() {
        let shipped = include_str!("../../packaging/airlock.toml");
        let uncommented: String = shipped
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::parse(&uncommented).unwrap();
        assert_eq!(c.proxy.listen, names::DEFAULT_PROXY_LISTEN);
        assert_eq!(c.proxy.socket, Path::new(names::DEFAULT_PROXY_SOCKET));
        assert_eq!(c.proxy.ca_file, ProxyConfig::default().ca_file);
        assert_eq!(
            c.gateway.services_dir,
            Path::new(crate::services::DEFAULT_SERVICES_DIR)
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        assert!(Config::parse("[gateway]\nmax_grant_tll = \"1h\"").is_err());
        assert!(Config::parse("[gateway]\ndefault_grant_ttl = \"9h\"").is_err());
        assert!(Config::parse("[totp]\nperiod_secs = 1").is_err());
        assert!(Config::parse("[gateway]\nrequest_ttl = \"soon\"").is_err());
    }
}
