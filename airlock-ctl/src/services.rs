//! `airlockctl services`: check and show the service definitions.

use std::path::Path;

use airlock_common::services::{Injection, ServiceKind, ServiceSet};

use crate::printable::text;

fn load(dir: &Path) -> Result<ServiceSet, i32> {
    ServiceSet::load_dir(dir).map_err(|diagnostics| {
        for d in &diagnostics {
            eprintln!("{d}");
        }
        eprintln!(
            "{}: {} error(s); these services would not be used",
            dir.display(),
            diagnostics.len()
        );
        1
    })
}

pub fn validate(dir: &Path) -> anyhow::Result<i32> {
    Ok(match load(dir) {
        Ok(set) => {
            println!(
                "{}: valid ({} services)",
                dir.display(),
                set.services().len()
            );
            0
        }
        Err(code) => code,
    })
}

pub fn list(dir: &Path) -> anyhow::Result<i32> {
    let set = match load(dir) {
        Ok(set) => set,
        Err(code) => return Ok(code),
    };
    if set.services().is_empty() {
        println!("no services defined in {}", dir.display());
    }
    for service in set.services() {
        let how = match &service.kind {
            ServiceKind::Http(http) => {
                let inject = match &http.inject {
                    Injection::Bearer { field } => format!("bearer {field}"),
                    Injection::Header { name, field } => format!("header {name}: {field}"),
                    Injection::Basic {
                        username_field,
                        password_field,
                    } => format!("basic {username_field}:{password_field}"),
                    Injection::Query { name, field } => format!("query {name}={field}"),
                };
                let scheme = if http.upstream.tls { "https" } else { "http" };
                format!(
                    "{scheme}://{}{} ({inject}; read-only POST: {})",
                    http.upstream.authority(),
                    http.upstream.base_path,
                    if http.read_only_post.is_empty() {
                        "none".to_owned()
                    } else {
                        http.read_only_post
                            .iter()
                            .map(|r| r.pattern.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )
            }
            ServiceKind::Imap(imap) => {
                let scheme = if imap.upstream.tls { "imaps" } else { "imap" };
                format!(
                    "{scheme}://{} ({})",
                    imap.upstream.authority(),
                    imap.security().as_str()
                )
            }
            ServiceKind::Tool(tool) => format!(
                "{} credential helper{}",
                tool.tool.as_str(),
                tool.server
                    .as_deref()
                    .map(|s| format!(" for {s}"))
                    .unwrap_or_default()
            ),
        };
        println!(
            "{} ({}): {}",
            text(&service.name),
            service.kind.as_str(),
            text(&how)
        );
        println!("  fields: {}", service.fields.join(", "));
    }
    Ok(0)
}
