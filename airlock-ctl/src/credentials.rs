//! `airlockctl credentials`: the gateway's credential store.
//!
//! Values are read without echo (twice, to catch a typo) or, with
//! `--stdin`, from standard input; never from argv or the environment,
//! where other users and child processes could read them. `get` is for
//! root and group airlock-admin: the gateway hands out the sealed value,
//! airlock-totp unwraps its key for the admin's TOTP code, and the value is
//! opened here and written to standard output only.

use std::io::{IsTerminal, Read, Write};

use airlock_common::credential::bus::{CredentialInfo, Credentials1Proxy, Keys1Proxy};
use airlock_common::credential::{self, Purpose, Slot, KEY_LEN, MAX_SEALED_LEN, MAX_VALUE_LEN};
use airlock_common::grant::Scope;
use airlock_common::names;
use zbus::zvariant::Optional;
use zeroize::Zeroizing;

use crate::bus;
use crate::code::read_code;
use crate::printable::text;

async fn store_proxy() -> anyhow::Result<Credentials1Proxy<'static>> {
    Ok(Credentials1Proxy::new(&bus::system_bus().await?).await?)
}

async fn keys_proxy() -> anyhow::Result<Keys1Proxy<'static>> {
    Ok(Keys1Proxy::builder(&bus::system_bus().await?)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?)
}

fn checked<'a>(service: &'a str, field: &'a str) -> anyhow::Result<Slot<'a>> {
    let slot = Slot { service, field };
    slot.check().map_err(anyhow::Error::msg)?;
    Ok(slot)
}

/// The value to store: all of standard input (less one final newline), or
/// typed twice without echo.
fn read_value(from_stdin: bool, slot: Slot<'_>) -> anyhow::Result<Zeroizing<String>> {
    let value = if from_stdin {
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_VALUE_LEN + 2));
        std::io::stdin()
            .lock()
            .take(MAX_VALUE_LEN as u64 + 3)
            .read_to_end(&mut bytes)?;
        for end in [&b"\n"[..], b"\r"] {
            if bytes.ends_with(end) {
                bytes.pop();
            }
        }
        Zeroizing::new(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| anyhow::anyhow!("the value on standard input is not UTF-8"))?,
        )
    } else {
        let prompt = |p: &str| {
            rpassword::prompt_password(p)
                .map(Zeroizing::new)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read the value from the terminal ({e}); use --stdin in scripts"
                    )
                })
        };
        let first = prompt(&format!("{}/{} value: ", slot.service, slot.field))?;
        let second = prompt("again: ")?;
        anyhow::ensure!(
            *first == *second,
            "the two values differ; nothing was stored"
        );
        first
    };
    anyhow::ensure!(
        !value.is_empty() && value.len() <= MAX_VALUE_LEN,
        "a credential value is 1 to {MAX_VALUE_LEN} bytes; nothing was stored"
    );
    Ok(value)
}

pub async fn add(service: &str, field: Option<&str>, from_stdin: bool) -> anyhow::Result<i32> {
    let slot = checked(service, field.unwrap_or(credential::DEFAULT_FIELD))?;
    let value = read_value(from_stdin, slot)?;
    store_proxy()
        .await?
        .store(slot.service, slot.field, &value)
        .await
        .map_err(|e| bus::explain("store the credential", e))?;
    drop(value);
    eprintln!(
        "airlock: stored {}/{}; it opens only under a grant for service {}",
        slot.service, slot.field, slot.service
    );
    Ok(0)
}

pub async fn list(json: bool) -> anyhow::Result<i32> {
    let services = store_proxy()
        .await?
        .list()
        .await
        .map_err(|e| bus::explain("list credentials", e))?;
    if json {
        let value: Vec<_> = services
            .iter()
            .map(|s| serde_json::json!({"service": s.service, "fields": s.fields}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else if services.is_empty() {
        println!("no stored credentials");
    } else {
        for s in &services {
            let fields: Vec<_> = s.fields.iter().map(|f| text(f).into_owned()).collect();
            println!("{}: {}", text(&s.service), fields.join(", "));
        }
    }
    Ok(0)
}

pub async fn remove(service: &str, field: Option<&str>) -> anyhow::Result<i32> {
    checked(service, field.unwrap_or(credential::DEFAULT_FIELD))?;
    let count = store_proxy()
        .await?
        .remove(service, Optional::from(field))
        .await
        .map_err(|e| bus::explain("remove the credential", e))?;
    eprintln!("airlock: removed {count} field(s) of {service}");
    Ok(0)
}

pub async fn get(service: &str, field: &str, code_stdin: bool) -> anyhow::Result<i32> {
    let slot = checked(service, field)?;
    let sealed = store_proxy()
        .await?
        .sealed(service, field)
        .await
        .map_err(|e| bus::explain("fetch the credential", e))?;
    let code = read_code(code_stdin, "TOTP code: ")?;
    let key = keys_proxy()
        .await?
        .unwrap_for_admin(service, field, &sealed.wrapped_key, &code)
        .await
        .map_err(|e| bus::explain_totp("open the credential", e))?;
    let key = Zeroizing::new(key);
    let key = credential::decode(&key, KEY_LEN).map_err(anyhow::Error::msg)?;
    let sealed_value =
        credential::decode(&sealed.sealed_value, MAX_SEALED_LEN).map_err(anyhow::Error::msg)?;
    let value = credential::open(&key, slot, Purpose::Value, &sealed_value)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&value)?;
    if out.is_terminal() {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(0)
}

/// The stored services and their fields, none if the gateway cannot say.
pub async fn stored() -> Option<Vec<CredentialInfo>> {
    store_proxy().await.ok()?.list().await.ok()
}

/// For a services grant: what it opens (each service's stored fields) and
/// where the agent reaches it.
pub fn print_opens(scope: &str, stored: Option<&[CredentialInfo]>) {
    let Ok(Scope::Services { services }) = Scope::parse(scope) else {
        return;
    };
    for service in &services {
        let fields = match stored.map(|s| s.iter().find(|c| &c.service == service)) {
            Some(Some(info)) => info.fields.join(", "),
            Some(None) => "nothing stored yet".to_owned(),
            None => "unknown (the gateway did not say)".to_owned(),
        };
        println!(
            "  opens:   {} ({}) at http://{}/{}/… or {}",
            text(service),
            text(&fields),
            names::DEFAULT_PROXY_LISTEN,
            text(service),
            names::DEFAULT_PROXY_SOCKET
        );
    }
}
