//! Validating a tool's service (`kind = "aws" | "kubernetes" | "git" |
//! "docker"`): its fields are those the tool's helper protocol carries, and
//! where it is used (git's host, Docker's registry, the Kubernetes API
//! server) is written the way the tool names it, so the helper can tell a
//! request for it from one for somewhere else.

use super::parse_upstream;
use crate::policy::load::FileCx;
use crate::policy::tree::Node;
use crate::services::{ServiceDef, ServiceKind, Tool, ToolService};

const MAX_SERVER_LEN: usize = 256;

impl FileCx<'_> {
    pub(super) fn tool_service(&mut self, item: &Node, tool: Tool) -> Option<ServiceDef> {
        let mut allowed = vec!["name", "description", "kind", "fields"];
        allowed.extend(tool.server_key());
        let what = format!("a {} [[service]]", tool.as_str());
        let table = self.table(item, &what, &allowed)?;
        let name = self.service_name(&table);
        let description = self
            .optional_string(&table, "description")
            .unwrap_or_default()
            .to_owned();
        let mut fields = self.fields(&table);
        let mut fields_ok = true;
        if let (Some(fields), Some(node)) = (&fields, table.get("fields")) {
            let known = tool.known_fields();
            for field in fields {
                if !known.contains(&field.as_str()) {
                    fields_ok = false;
                    self.error(
                        &node.span,
                        format!(
                            "field {field:?} means nothing to {} (its fields: {})",
                            tool.as_str(),
                            known.join(", ")
                        ),
                    );
                }
            }
            for group in tool.required_fields() {
                let present = group.iter().filter(|g| fields.iter().any(|f| f == *g));
                let count = present.count();
                fields_ok &= count == 1;
                match count {
                    1 => {}
                    0 => self.error(
                        &node.span,
                        format!(
                            "a {} service needs the field {}",
                            tool.as_str(),
                            group.join(" or ")
                        ),
                    ),
                    _ => self.error(
                        &node.span,
                        format!("list one of {}, not both", group.join(" and ")),
                    ),
                }
            }
        }
        let server = match tool.server_key() {
            None => Some(None),
            Some(key) => match self.required_string(&table, key, &what) {
                None => None,
                Some((text, node)) => match check_server(tool, text) {
                    Ok(()) => Some(Some(text.to_owned())),
                    Err(message) => {
                        self.error(&node.span, format!("`{key}`: {message}"));
                        None
                    }
                },
            },
        };
        if !fields_ok {
            fields = None;
        }
        let (name, source) = name?;
        let fields = fields?;
        Some(ServiceDef {
            name,
            description,
            fields,
            kind: ServiceKind::Tool(ToolService {
                tool,
                server: server?,
            }),
            source,
        })
    }
}

fn check_server(tool: Tool, text: &str) -> Result<(), String> {
    if text.is_empty()
        || text.len() > MAX_SERVER_LEN
        || text.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "must be 1-{MAX_SERVER_LEN} characters without spaces or control characters"
        ));
    }
    match tool {
        Tool::Kubernetes => {
            let upstream = parse_upstream(text, true)?;
            if !upstream.tls {
                return Err("the API server must be reached over https".into());
            }
            Ok(())
        }
        Tool::Git => {
            // What git sends as `host=`: a name or address, maybe a port.
            if text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            {
                Ok(())
            } else {
                Err(format!(
                    "{text:?} is not a host as git names it (github.com, git.example:8443)"
                ))
            }
        }
        Tool::Docker => {
            // Docker names registries both ways: `ghcr.io` and
            // `https://index.docker.io/v1/`.
            let host = text
                .strip_prefix("https://")
                .or_else(|| text.strip_prefix("http://"))
                .unwrap_or(text);
            let host = host.split('/').next().unwrap_or_default();
            if !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            {
                Ok(())
            } else {
                Err(format!(
                    "{text:?} is not a registry server (ghcr.io, https://index.docker.io/v1/)"
                ))
            }
        }
        Tool::Aws => Ok(()),
    }
}
