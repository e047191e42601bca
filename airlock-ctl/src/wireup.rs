//! `airlockctl credentials wire-up TOOL SERVICE`: writes the tool's own
//! configuration so that it asks `airlockctl credential-helper` for
//! SERVICE's credential, in `~/.config/airlock/tools/TOOL/` (or under
//! `$XDG_CONFIG_HOME`), which governed sessions do not mask: the files hold
//! only the helper's command line and where the credential is used, never
//! a secret. `airlockctl run` points the tools there through environment
//! variables holding paths (see [`session_env`]).
//!
//! Each tool's directory keeps `wired.json` (service → where it is used);
//! every wire-up regenerates the tool's files from it, so wiring a second
//! service keeps the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use airlock_common::policy::protect::{is_protected, ProtectPattern};
use airlock_common::services::{ServiceKind, ServiceSet, Tool};
use anyhow::{anyhow, Context};

use crate::helper::{registry_host, DOCKER_HELPER_NAME, DOCKER_SERVICES_FILE};

const WIRED: &str = "wired.json";
const HEADER: &str = "written by `airlockctl credentials wire-up`; regenerated on each wire-up";

/// `~/.config/airlock/tools/TOOL` (or `$XDG_CONFIG_HOME/airlock/tools/TOOL`).
pub fn tool_dir(tool: &str) -> anyhow::Result<PathBuf> {
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => home()?.join(".config"),
    };
    Ok(config.join("airlock/tools").join(tool))
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("HOME is not set: cannot tell where your configuration goes"))
}

/// Where each tool's configuration file is, and the variable naming it.
fn config_file(tool: &str) -> anyhow::Result<PathBuf> {
    let dir = tool_dir(tool)?;
    Ok(match tool {
        "docker" => dir.join("config.json"),
        _ => dir.join("config"),
    })
}

pub fn wire_up(tool: &str, service: &str, services_dir: &Path) -> anyhow::Result<i32> {
    let set = ServiceSet::load_dir(services_dir).map_err(|ds| {
        let lines: Vec<String> = ds.iter().map(|d| d.to_string()).collect();
        anyhow!(
            "{} is not valid (`airlockctl services validate`):\n{}",
            services_dir.display(),
            lines.join("\n")
        )
    })?;
    let def = set.get(service).ok_or_else(|| {
        anyhow!(
            "no service {service:?} in {} (see `airlockctl services list`)",
            services_dir.display()
        )
    })?;
    let expected = match tool {
        "aws" => Tool::Aws,
        "kube" => Tool::Kubernetes,
        "git" => Tool::Git,
        _ => Tool::Docker,
    };
    let server = match &def.kind {
        ServiceKind::Tool(t) if t.tool == expected => t.server.clone().unwrap_or_default(),
        other => {
            return Err(anyhow!(
                "service {service} is {}, not {}: wire it up as that tool",
                other.as_str(),
                expected.as_str()
            ))
        }
    };
    let helper = std::env::current_exe().context("finding airlockctl's own executable")?;
    let helper = helper
        .to_str()
        .filter(|p| !p.contains(['\'', '"', '\\', '\n']))
        .ok_or_else(|| anyhow!("airlockctl's path {} cannot be quoted", helper.display()))?
        .to_owned();
    let dir = tool_dir(tool)?;
    let home = home()?;
    if is_protected(&ProtectPattern::defaults(), &home, &dir) {
        return Err(anyhow!(
            "{} is masked in governed sessions: set XDG_CONFIG_HOME elsewhere",
            dir.display()
        ));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let wired_path = dir.join(WIRED);
    let mut wired: BTreeMap<String, String> = match std::fs::read_to_string(&wired_path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not what wire-up wrote", wired_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", wired_path.display())),
    };
    wired.insert(service.to_owned(), server);
    let mut written = Vec::new();
    let file = config_file(tool)?;
    let text = match tool {
        "aws" => aws_config(&helper, service, &wired),
        "kube" => kube_config(&helper, service, &wired)?,
        "git" => git_config(&helper, &wired),
        _ => {
            let hosts: BTreeMap<&str, &str> = wired
                .iter()
                .map(|(s, server)| (registry_host(server), s.as_str()))
                .collect();
            let map = dir.join(DOCKER_SERVICES_FILE);
            write(&map, &(serde_json::to_string_pretty(&hosts)? + "\n"))?;
            written.push(map);
            docker_config(&wired)?
        }
    };
    write(&file, &text)?;
    written.push(file.clone());
    if tool == "aws" {
        // The SDKs also read a shared credentials file; an empty one keeps
        // them from reaching for the masked ~/.aws/credentials.
        let credentials = dir.join("credentials");
        if !credentials.exists() {
            write(&credentials, &format!("# {HEADER}: no secrets here\n"))?;
            written.push(credentials);
        }
    }
    write(&wired_path, &(serde_json::to_string_pretty(&wired)? + "\n"))?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    let how = match tool {
        "aws" => format!(
            "AWS_CONFIG_FILE={} (profile {service}{})",
            file.display(),
            if wired.keys().next().map(String::as_str) == Some(service) {
                ", also the default"
            } else {
                ""
            }
        ),
        "kube" => format!("KUBECONFIG={} (context {service})", file.display()),
        "git" => format!(
            "GIT_CONFIG_COUNT/GIT_CONFIG_KEY_n include.path={}",
            file.display()
        ),
        _ => format!(
            "DOCKER_CONFIG={} (credHelpers → {DOCKER_HELPER_NAME})",
            dir.display()
        ),
    };
    println!(
        "`airlockctl run` sets {how} for governed sessions; {service}'s credential is released \
         only under a grant (`airlockctl request --services {service} --reason \"…\"`)"
    );
    Ok(0)
}

/// Writes `text` to `path` through a temporary file, so a tool never reads
/// half a configuration.
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("airlock-tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn aws_config(helper: &str, _service: &str, wired: &BTreeMap<String, String>) -> String {
    let mut text = format!("# {HEADER}\n");
    let process = |s: &str| format!("credential_process = '{helper}' credential-helper aws {s}\n");
    if let Some(first) = wired.keys().next() {
        text.push_str("\n[default]\n");
        text.push_str(&process(first));
    }
    for service in wired.keys() {
        text.push_str(&format!("\n[profile {service}]\n"));
        text.push_str(&process(service));
    }
    text
}

fn kube_config(
    helper: &str,
    service: &str,
    wired: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    // JSON is YAML: kubectl reads it as a kubeconfig.
    let entries = |f: &dyn Fn(&str, &str) -> serde_json::Value| -> Vec<serde_json::Value> {
        wired.iter().map(|(s, server)| f(s, server)).collect()
    };
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": entries(&|s, server| serde_json::json!({
            "name": s, "cluster": { "server": server }
        })),
        "users": entries(&|s, _| serde_json::json!({
            "name": s,
            "user": { "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": helper,
                "args": ["credential-helper", "kube", s],
                "interactiveMode": "Never",
                "provideClusterInfo": true,
            } }
        })),
        "contexts": entries(&|s, _| serde_json::json!({
            "name": s, "context": { "cluster": s, "user": s }
        })),
        "current-context": service,
    });
    Ok(serde_json::to_string_pretty(&config)? + "\n")
}

fn git_config(helper: &str, wired: &BTreeMap<String, String>) -> String {
    let mut text = format!("# {HEADER}\n");
    for (service, host) in wired {
        // The empty helper drops helpers configured before (the user's
        // store, whose file the session masks) for this host.
        text.push_str(&format!(
            "[credential \"https://{host}\"]\n\thelper =\n\thelper = \"!'{helper}' credential-helper git {service}\"\n"
        ));
    }
    text
}

fn docker_config(wired: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let helper = DOCKER_HELPER_NAME.trim_start_matches("docker-credential-");
    let helpers: BTreeMap<&str, &str> = wired.values().map(|s| (s.as_str(), helper)).collect();
    Ok(serde_json::to_string_pretty(&serde_json::json!({ "credHelpers": helpers }))? + "\n")
}

/// Environment for a governed session pointing each wired tool at its
/// configuration: paths only, and only for files that exist.
pub fn session_env() -> Vec<(String, String)> {
    let mut env = Vec::new();
    let exists = |tool: &str| config_file(tool).ok().filter(|p| p.is_file());
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    if let Some(file) = exists("aws") {
        env.push(("AWS_CONFIG_FILE".into(), path(file.clone())));
        if let Some(dir) = file.parent() {
            let credentials = dir.join("credentials");
            if credentials.is_file() {
                env.push(("AWS_SHARED_CREDENTIALS_FILE".into(), path(credentials)));
            }
        }
    }
    if let Some(file) = exists("kube") {
        env.push(("KUBECONFIG".into(), path(file)));
    }
    if let Some(file) = exists("git") {
        // After any GIT_CONFIG_KEY_n the user already passes.
        let count: usize = std::env::var("GIT_CONFIG_COUNT")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        env.push((format!("GIT_CONFIG_KEY_{count}"), "include.path".into()));
        env.push((format!("GIT_CONFIG_VALUE_{count}"), path(file)));
        env.push(("GIT_CONFIG_COUNT".into(), (count + 1).to_string()));
    }
    if let Some(file) = exists("docker") {
        if let Some(dir) = file.parent() {
            env.push(("DOCKER_CONFIG".into(), path(dir.to_path_buf())));
        }
    }
    env
}
