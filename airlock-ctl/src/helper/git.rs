//! A git credential helper: `get` reads `key=value` lines up to a blank
//! line (or the end) and answers `username` and `password` when the
//! request is for the service's host; for another host it answers nothing,
//! so git goes on to its next helper. `store` and `erase` do nothing:
//! the credential lives in Airlock's store.

use std::collections::HashMap;

use anyhow::anyhow;
use zeroize::Zeroizing;

use super::{answer, field, read_input, release, HelperTool};

/// The request's attributes (git's `key=value` lines).
pub fn parse_request(input: &str) -> HashMap<&str, &str> {
    input
        .lines()
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once('='))
        .collect()
}

pub async fn run(service: anyhow::Result<&str>, action: Option<&str>) -> anyhow::Result<()> {
    match action {
        Some("get") => {}
        Some("store" | "erase") => {
            // Drain the request so git is not left writing to a closed pipe.
            read_input()?;
            return Ok(());
        }
        Some(other) => return Err(anyhow!("unknown git credential action {other:?}")),
        None => return Err(anyhow!("git passes the action: get, store or erase")),
    }
    let input = read_input()?;
    let request = parse_request(&input);
    let name = service.as_ref().map(|s| s.to_string()).unwrap_or_default();
    // A credential never travels over a connection git would send in the
    // clear: for any protocol but https, answer nothing (before asking, so
    // nothing is released or audited for it).
    if request.get("protocol").is_some_and(|p| *p != "https") {
        eprintln!(
            "airlock: {name}'s credential is given to git over https only, not {}",
            request["protocol"]
        );
        return Ok(());
    }
    let released = release(HelperTool::Git, service).await?;
    if request.get("host").copied() != Some(released.server.as_str()) {
        // Not ours: say nothing, and git asks its other helpers.
        return Ok(());
    }
    let username = field(&released, &name, "username")?;
    let password = released
        .field("password")
        .or_else(|| released.field("token"))
        .ok_or_else(|| anyhow!("{name} has no password or token stored"))?;
    let mut out = Zeroizing::new(Vec::with_capacity(16 * 1024));
    for (key, value) in [("username", username), ("password", password)] {
        if value.contains('\n') {
            return Err(anyhow!("{name}'s {key} holds a newline git cannot take"));
        }
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    answer(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_attributes_up_to_the_blank_line() {
        let request = parse_request("protocol=https\nhost=github.com\n\nhost=evil.example\n");
        assert_eq!(request.get("host"), Some(&"github.com"));
        assert_eq!(request.get("protocol"), Some(&"https"));
        assert_eq!(request.len(), 2);
    }
}
