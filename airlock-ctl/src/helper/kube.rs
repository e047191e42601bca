//! The kubectl exec credential plugin: an `ExecCredential` on standard
//! output with the token and the grant's expiry. kubectl describes the
//! request in `KUBERNETES_EXEC_INFO`: its apiVersion is answered in kind,
//! and with `provideClusterInfo` the cluster's server must be the
//! service's, so a token never goes to another cluster.

use airlock_common::timefmt::rfc3339;
use anyhow::anyhow;
use serde::{Deserialize, Serialize};

use super::{answer, field, json, release, HelperTool};

const V1: &str = "client.authentication.k8s.io/v1";
const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecInfo {
    api_version: Option<String>,
    #[serde(default)]
    spec: ExecSpec,
}

#[derive(Default, Deserialize)]
struct ExecSpec {
    cluster: Option<ClusterInfo>,
}

#[derive(Deserialize)]
struct ClusterInfo {
    server: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredential<'a> {
    api_version: &'a str,
    kind: &'static str,
    status: Status<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    token: &'a str,
    expiration_timestamp: String,
}

/// What kubectl asked, from `KUBERNETES_EXEC_INFO` (absent: v1, no
/// cluster information).
fn exec_info() -> anyhow::Result<(&'static str, Option<String>)> {
    let Some(text) = std::env::var_os("KUBERNETES_EXEC_INFO") else {
        return Ok((V1, None));
    };
    let text = text
        .into_string()
        .map_err(|_| anyhow!("KUBERNETES_EXEC_INFO is not UTF-8"))?;
    let info: ExecInfo = serde_json::from_str(&text)
        .map_err(|e| anyhow!("KUBERNETES_EXEC_INFO is not an ExecCredential: {e}"))?;
    let version = match info.api_version.as_deref() {
        None | Some(V1) => V1,
        Some(V1BETA1) => V1BETA1,
        Some(other) => {
            return Err(anyhow!(
                "kubectl asks for {other}; this plugin speaks {V1} and {V1BETA1}"
            ))
        }
    };
    Ok((version, info.spec.cluster.and_then(|c| c.server)))
}

pub async fn run(service: anyhow::Result<&str>) -> anyhow::Result<()> {
    let (api_version, server) = exec_info()?;
    let name = service.as_ref().map(|s| s.to_string()).unwrap_or_default();
    let released = release(HelperTool::Kube, service).await?;
    if let Some(server) = server {
        if server.trim_end_matches('/') != released.server.trim_end_matches('/') {
            return Err(anyhow!(
                "{name}'s token is for {}, and kubectl is talking to {server}: not released",
                released.server
            ));
        }
    }
    let out = ExecCredential {
        api_version,
        kind: "ExecCredential",
        status: Status {
            token: field(&released, &name, "token")?,
            expiration_timestamp: rfc3339(released.expires_at),
        },
    };
    answer(json(&out)?)
}
