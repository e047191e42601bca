//! Connecting to the gateway and explaining its errors to people.

use airlock_common::dbus::{AirlockError, Gateway1Proxy, Totp1Proxy};
use anyhow::anyhow;

pub async fn system_bus() -> anyhow::Result<zbus::Connection> {
    zbus::Connection::system().await.map_err(|e| {
        anyhow!(
            "cannot reach the D-Bus system bus ({e}); is dbus-daemon running? \
             (`sudo scripts/airlock-up` starts one on machines without systemd)"
        )
    })
}

pub async fn gateway() -> anyhow::Result<Gateway1Proxy<'static>> {
    Ok(Gateway1Proxy::new(&system_bus().await?).await?)
}

/// airlock-totp itself: root and group airlock-admin approve and enrol
/// there directly, so codes and secrets never pass the gateway.
pub async fn totp() -> anyhow::Result<Totp1Proxy<'static>> {
    // Totp1 has no properties: without a cache to set up, the first call
    // (the approval, after the code is typed) costs one round trip.
    Ok(Totp1Proxy::builder(&system_bus().await?)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?)
}

/// Turns a failed gateway call into a sentence that says what to do.
pub fn explain(action: &str, error: zbus::Error) -> anyhow::Error {
    explain_for("airlock-gateway", action, error)
}

/// Turns a failed airlock-totp call into a sentence that says what to do.
pub fn explain_totp(action: &str, error: zbus::Error) -> anyhow::Error {
    explain_for("airlock-totp", action, error)
}

fn explain_for(service: &str, action: &str, error: zbus::Error) -> anyhow::Error {
    if let zbus::Error::MethodError(name, message, _) = &error {
        let message = message.clone().unwrap_or_default();
        match name.as_str() {
            "org.freedesktop.DBus.Error.AccessDenied" => {
                return anyhow!(
                    "{action}: the bus policy refused this call for your user ({message}); \
                     approving, denying, revoking, enrolment and reloads need root or group airlock-admin"
                )
            }
            "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
                return anyhow!(
                    "{action}: {service} is not running on the system bus; start it \
                     (`systemctl start {service}` or `sudo scripts/airlock-up`)"
                )
            }
            _ => {}
        }
    }
    match AirlockError::from_remote(error) {
        AirlockError::ZBus(e) => anyhow!("{action}: {e}"),
        other => anyhow!("{action}: {} ({})", other.message(), other.short_name()),
    }
}
