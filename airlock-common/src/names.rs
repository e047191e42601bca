//! Well-known names: bus names, object paths, Unix users and default paths.

/// Bus name, object path and interface of the gateway.
pub const GATEWAY_BUS_NAME: &str = "org.airlock.Gateway1";
pub const GATEWAY_OBJECT_PATH: &str = "/org/airlock/Gateway1";
pub const GATEWAY_INTERFACE: &str = "org.airlock.Gateway1";

/// Bus name, object path and interface of the TOTP verifier.
pub const TOTP_BUS_NAME: &str = "org.airlock.Totp1";
pub const TOTP_OBJECT_PATH: &str = "/org/airlock/Totp1";
pub const TOTP_INTERFACE: &str = "org.airlock.Totp1";

/// Bus name, object path and interface of the enforcer.
pub const ENFORCER_BUS_NAME: &str = "org.airlock.Enforcer1";
pub const ENFORCER_OBJECT_PATH: &str = "/org/airlock/Enforcer1";

/// Where the enforcer pins its maps and links (bpffs).
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/airlock";
/// The cgroup (under the cgroup2 mount) holding one cgroup per session.
pub const SESSION_CGROUP_DIR: &str = "airlock";

/// Prefix of every D-Bus error name Airlock returns.
pub const ERROR_PREFIX: &str = "org.airlock.Error";

/// Unix accounts. Each service runs as its own user; admins are members of
/// `ADMIN_GROUP`.
pub const GATEWAY_USER: &str = "airlock-gateway";
pub const TOTP_USER: &str = "airlock-totp";
/// The user of `airlock-integrations`, the HTTP API for third-party enforcers.
pub const INTEGRATIONS_USER: &str = "airlock-integrations";
pub const ADMIN_GROUP: &str = "airlock-admin";
/// `airlock-proxy`, which serves agents' HTTP requests to services with the
/// credential injected (the gateway authorizes each).
pub const PROXY_USER: &str = "airlock-proxy";
pub const DEFAULT_PROXY_SOCKET: &str = "/run/airlock-proxy/proxy.sock";
pub const DEFAULT_PROXY_LISTEN: &str = "127.0.0.1:7480";

/// Default locations, overridable on each daemon's command line.
pub const DEFAULT_CONFIG: &str = "/etc/airlock/airlock.toml";
pub const DEFAULT_POLICY_DIR: &str = "/etc/airlock/policies.d";
pub const DEFAULT_GATEWAY_STATE_DIR: &str = "/var/lib/airlock-gateway";
pub const DEFAULT_TOTP_STATE_DIR: &str = "/var/lib/airlock-totp";
pub const DEFAULT_AUDIT_DIR: &str = "/var/log/airlock";
pub const AUDIT_LOG_FILE: &str = "audit.jsonl";
pub const AUDIT_HEAD_FILE: &str = "audit.head";
