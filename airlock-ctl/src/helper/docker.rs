//! The Docker credential-helper protocol, as `docker-credential-airlock`:
//! `get` reads the registry's server URL on standard input and answers
//! `{"ServerURL", "Username", "Secret"}`; `store` and `erase` do nothing;
//! `list` names no credentials. Docker names no Airlock service, so
//! `airlockctl credentials wire-up docker` writes which service serves
//! which registry beside the config.json it writes (`$DOCKER_CONFIG`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use serde::Serialize;

use super::{answer, field, json, read_input, release, HelperTool};

/// Beside config.json: registry host → Airlock service.
pub const SERVICES_FILE: &str = "airlock-services.json";

/// What Docker's client takes for "no such credential".
const NOT_FOUND: &str = "credentials not found in native keychain";

#[derive(Serialize)]
struct Credentials<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    #[serde(rename = "Username")]
    username: &'a str,
    #[serde(rename = "Secret")]
    secret: &'a str,
}

/// The host of a registry as Docker names it: `ghcr.io`,
/// `https://index.docker.io/v1/` → `index.docker.io`.
pub fn registry_host(server: &str) -> &str {
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    rest.split('/').next().unwrap_or_default()
}

/// Which service serves `host`, from the wire-up's file.
fn service_for(host: &str) -> anyhow::Result<Option<String>> {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir),
        None => crate::wireup::tool_dir("docker")?,
    };
    let path = dir.join(SERVICES_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let map: BTreeMap<String, String> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a registry → service map", path.display()))?;
    Ok(map.get(host).cloned())
}

pub async fn run(service: Option<&str>, action: Option<&str>) -> anyhow::Result<()> {
    match action {
        Some("get") => {}
        Some("store" | "erase") => {
            read_input()?;
            return Ok(());
        }
        Some("list") => {
            println!("{{}}");
            return Ok(());
        }
        Some(other) => return Err(anyhow!("unknown Docker credential action {other:?}")),
        None => {
            return Err(anyhow!(
                "Docker passes the action: get, store, erase or list"
            ))
        }
    }
    let input = read_input()?;
    let server_url = input.trim();
    let host = registry_host(server_url);
    let service = match service {
        Some(service) => service.to_owned(),
        None => match service_for(host)? {
            Some(service) => service,
            None => {
                // Docker then goes on without credentials (or its own store).
                println!("{NOT_FOUND}");
                std::process::exit(1);
            }
        },
    };
    let released = release(HelperTool::Docker, Ok(&service)).await?;
    if registry_host(&released.server) != host {
        drop(released);
        println!("{NOT_FOUND}");
        std::process::exit(1);
    }
    let out = Credentials {
        server_url,
        username: field(&released, &service, "username")?,
        secret: field(&released, &service, "secret")?,
    };
    answer(json(&out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_matched_by_host() {
        assert_eq!(registry_host("ghcr.io"), "ghcr.io");
        assert_eq!(
            registry_host("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(registry_host("localhost:5000"), "localhost:5000");
    }
}
