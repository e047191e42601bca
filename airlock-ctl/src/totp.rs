//! `airlockctl totp setup`: enrol the approver's authenticator app.

use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;
use zeroize::Zeroizing;

use airlock_common::dbus::Gateway1Proxy;

use crate::bus;
use crate::code::read_code;

pub async fn setup(force: bool, code_stdin: bool) -> anyhow::Result<i32> {
    let gateway = bus::gateway().await?;
    let status = gateway
        .status()
        .await
        .map_err(|e| bus::explain("totp setup", e))?;
    anyhow::ensure!(
        status.totp_reachable,
        "airlock-totp is not reachable; start it first"
    );
    let current = if status.totp.enrolled && !force {
        eprintln!("A TOTP secret is already enrolled: replacing it needs a current code (or root with --force).");
        Some(read_code(code_stdin, "Current TOTP code: ")?)
    } else {
        None
    };
    let uri = Zeroizing::new(if force {
        begin_forced(&gateway).await?
    } else {
        gateway
            .totp_setup(false, current.as_deref().map(String::as_str).into())
            .await
            .map_err(|e| bus::explain("totp setup", e))?
    });
    if !code_stdin {
        let qr = QrCode::new(uri.as_bytes())?;
        println!("{}", qr.render::<Dense1x2>().quiet_zone(true).build());
    }
    println!("Scan the QR code, or enter this URI in your authenticator app:");
    println!("{}", uri.as_str());
    println!("The secret becomes active only once you type a valid code.");
    let code = read_code(code_stdin, "Code from the app: ")?;
    gateway
        .totp_confirm(&code)
        .await
        .map_err(|e| bus::explain("totp setup", e))?;
    println!("TOTP enrolment is active.");
    Ok(0)
}

/// Root replaces the secret without a code by asking airlock-totp directly,
/// so the new secret never passes through the gateway; the gateway audits it.
async fn begin_forced(gateway: &Gateway1Proxy<'_>) -> anyhow::Result<String> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "totp setup --force: only root may force a re-enrolment"
    );
    // On the record before the secret changes, so no reset goes unaudited.
    gateway
        .record_totp_reset()
        .await
        .map_err(|e| bus::explain("record the forced re-enrolment", e))?;
    let uri = bus::totp()
        .await?
        .begin_enrolment(true, None.into())
        .await
        .map_err(|e| bus::explain("totp setup --force", e))?;
    Ok(uri)
}
