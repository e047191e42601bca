//! `airlockctl totp setup`: enrol the approver's authenticator app.
//!
//! Talks to airlock-totp alone: the new secret and the codes never pass the
//! gateway. airlock-totp reports each step to the gateway for the audit log.

use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;
use zeroize::Zeroizing;

use crate::bus;
use crate::code::read_code;

pub async fn setup(force: bool, code_stdin: bool) -> anyhow::Result<i32> {
    anyhow::ensure!(
        !force || nix::unistd::geteuid().is_root(),
        "totp setup --force: only root may force a re-enrolment"
    );
    let totp = bus::totp().await?;
    let status = totp
        .status()
        .await
        .map_err(|e| bus::explain_totp("totp setup", e))?;
    let current = if status.enrolled && !force {
        eprintln!("A TOTP secret is already enrolled: replacing it needs a current code (or root with --force).");
        Some(read_code(code_stdin, "Current TOTP code: ")?)
    } else {
        None
    };
    let uri = Zeroizing::new(
        totp.begin_enrolment(force, current.as_deref().map(String::as_str).into())
            .await
            .map_err(|e| bus::explain_totp("totp setup", e))?,
    );
    if !code_stdin {
        let qr = QrCode::new(uri.as_bytes())?;
        println!("{}", qr.render::<Dense1x2>().quiet_zone(true).build());
    }
    println!("Scan the QR code, or enter this URI in your authenticator app:");
    println!("{}", uri.as_str());
    println!("The secret becomes active only once you type a valid code.");
    let code = read_code(code_stdin, "Code from the app: ")?;
    totp.confirm_enrolment(&code)
        .await
        .map_err(|e| bus::explain_totp("totp setup", e))?;
    println!("TOTP enrolment is active.");
    Ok(0)
}
