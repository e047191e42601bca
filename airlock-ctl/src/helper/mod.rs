//! `airlockctl credential-helper TOOL SERVICE …`: the credential-helper
//! protocols of AWS (`credential_process`), kubectl (exec credential
//! plugin), git and Docker, served from the gateway's store.
//!
//! The gateway releases a tool service's credential only to the process
//! that asks (its uid from the bus, its session from its cgroup) under a
//! live grant covering that service; this process writes it to the tool on
//! standard output and zeroizes it. A refusal goes to standard error (and,
//! for Docker, which shows a helper's standard output, there too) with how
//! to ask for a grant, and a non-zero exit that the tool reports.

mod aws;
mod docker;
mod git;
mod kube;

use std::io::{Read, Write};

use airlock_common::credential::bus::{Credentials1Proxy, ReleasedCredential};
use airlock_common::dbus::AirlockError;
use anyhow::anyhow;
use zeroize::Zeroizing;

use crate::bus;

pub use docker::{registry_host, SERVICES_FILE as DOCKER_SERVICES_FILE};

/// The name Docker runs (`credHelpers` value `airlock`); airlockctl
/// answers to it through a symlink.
pub const DOCKER_HELPER_NAME: &str = "docker-credential-airlock";

/// The most a tool writes to a helper's standard input: a few short lines.
const MAX_INPUT: u64 = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HelperTool {
    /// AWS CLI and SDKs: `credential_process` in an AWS config file.
    Aws,
    /// kubectl: the exec credential plugin of a kubeconfig user.
    Kube,
    /// git: a credential helper (`get`; `store` and `erase` do nothing).
    Git,
    /// Docker: a credential helper (`get` reads the registry on stdin).
    Docker,
}

impl HelperTool {
    /// The service kind it serves.
    pub fn kind(self) -> &'static str {
        match self {
            HelperTool::Aws => "aws",
            HelperTool::Kube => "kubernetes",
            HelperTool::Git => "git",
            HelperTool::Docker => "docker",
        }
    }
}

/// Runs the helper; returns the exit code for the tool.
pub async fn run(tool: HelperTool, service: Option<&str>, action: Option<&str>) -> i32 {
    let result = match tool {
        HelperTool::Aws => aws::run(required(service)).await,
        HelperTool::Kube => kube::run(required(service)).await,
        HelperTool::Git => git::run(required(service), action).await,
        HelperTool::Docker => docker::run(service, action).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let message = format!("airlock: {e:#}");
            if tool == HelperTool::Docker {
                // Docker reports what a helper printed on standard output.
                println!("{message}");
            }
            eprintln!("{message}");
            1
        }
    }
}

fn required(service: Option<&str>) -> anyhow::Result<&str> {
    service.ok_or_else(|| anyhow!("name the Airlock service: credential-helper TOOL SERVICE"))
}

/// Asks the gateway for `service`'s credential for this process, checking
/// it is the `tool`'s kind.
async fn release(
    tool: HelperTool,
    service: anyhow::Result<&str>,
) -> anyhow::Result<ReleasedCredential> {
    let service = service?;
    let connection = bus::system_bus().await?;
    let proxy = Credentials1Proxy::builder(&connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let released = proxy
        .release(service)
        .await
        .map_err(|e| refusal(service, e))?;
    if released.tool != tool.kind() {
        return Err(anyhow!(
            "service {service} is a {} credential, not {}: use `credential-helper {}`",
            released.tool,
            tool.kind(),
            match released.tool.as_str() {
                "kubernetes" => "kube",
                other => other,
            }
        ));
    }
    Ok(released)
}

/// The gateway's answer in words a person (or an agent) acts on.
fn refusal(service: &str, error: zbus::Error) -> anyhow::Error {
    match AirlockError::from_remote(error) {
        AirlockError::AccessDenied(why) => anyhow!("{service}: {why}"),
        AirlockError::ZBus(e) => bus::explain(&format!("fetching {service}'s credential"), e),
        other => anyhow!("{service}: {} ({})", other.message(), other.short_name()),
    }
}

/// A released field's value, or an error naming it.
fn field<'a>(
    released: &'a ReleasedCredential,
    service: &str,
    name: &str,
) -> anyhow::Result<&'a str> {
    released.field(name).ok_or_else(|| {
        anyhow!(
            "{service} has no {name} stored: an admin adds it with `airlockctl credentials add \
             {service} {name}`"
        )
    })
}

/// Standard input, bounded (a tool's request is a few lines).
fn read_input() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_INPUT)
        .read_to_string(&mut input)
        .map_err(|e| anyhow!("reading the tool's request on standard input: {e}"))?;
    Ok(input)
}

/// Writes the answer (which holds the secret) and zeroizes it.
fn answer(bytes: Zeroizing<Vec<u8>>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(())
}

/// JSON of `value` into memory that is zeroized after use.
fn json(value: &impl serde::Serialize) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(16 * 1024));
    serde_json::to_writer(&mut *bytes, value)?;
    bytes.push(b'\n');
    Ok(bytes)
}
