//! Validating service files, every problem at its place (the policy
//! loader's helpers, so both report alike).

use std::net::IpAddr;
use std::path::PathBuf;

use super::{
    HttpService, ImapService, Injection, PathRule, ServiceDef, ServiceKind, ServiceSet, Tool,
    Upstream,
};
use crate::credential::{is_field_name, is_service_name};
use crate::policy::load::{FileCx, Table};
use crate::policy::tree::{parse_toml, Kind, Node};
use crate::policy::Diagnostic;

const TOP_KEYS: &[&str] = &["service"];
const HTTP_KEYS: &[&str] = &[
    "name",
    "description",
    "kind",
    "upstream",
    "fields",
    "inject",
    "read_only_post",
];
const IMAP_KEYS: &[&str] = &[
    "name",
    "description",
    "kind",
    "upstream",
    "fields",
    "login",
    "ca_file",
    "starttls",
];
const INJECT_KEYS: &[&str] = &["style", "field", "name", "username_field", "password_field"];
const LOGIN_KEYS: &[&str] = &["user_field", "password_field"];
/// Headers an injection may not set: they frame the request itself.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
];
const MAX_FIELDS: usize = 16;
const MAX_READ_ONLY_POST: usize = 64;
const MAX_PATH_RULE_LEN: usize = 256;

/// Validates `files` (path and text) in name order.
pub fn load_sources(files: &[(PathBuf, String)]) -> Result<ServiceSet, Vec<Diagnostic>> {
    let mut sorted: Vec<_> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut diagnostics = Vec::new();
    let mut services: Vec<ServiceDef> = Vec::new();
    for (path, text) in sorted {
        let root = match parse_toml(text) {
            Ok(root) => root,
            Err(err) => {
                diagnostics.push(err.in_file(path));
                continue;
            }
        };
        let mut file = FileCx::new(path, text, &mut diagnostics);
        let Some(top) = file.table(&root, "a service file", TOP_KEYS) else {
            continue;
        };
        let Some(node) = top.get("service") else {
            file.error(
                &(0..0),
                "no [[service]] table: a service file defines at least one".into(),
            );
            continue;
        };
        let Kind::Array(items) = &node.kind else {
            file.error(
                &node.span,
                "`service` must be an array of tables: write [[service]]".into(),
            );
            continue;
        };
        for item in items {
            let Some(service) = file.service(item) else {
                continue;
            };
            if let Some(first) = services.iter().find(|s| s.name == service.name) {
                let message = format!(
                    "service {:?} is defined twice (first at {})",
                    service.name, first.source
                );
                let at = item_name_span(item).unwrap_or(&item.span);
                file.error(at, message);
                continue;
            }
            services.push(service);
        }
    }
    if diagnostics.is_empty() {
        Ok(ServiceSet { services })
    } else {
        diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Err(diagnostics)
    }
}

fn item_name_span(item: &Node) -> Option<&std::ops::Range<usize>> {
    let Kind::Table(entries) = &item.kind else {
        return None;
    };
    entries
        .iter()
        .find(|e| e.key == "name")
        .map(|e| &e.node.span)
}

impl FileCx<'_> {
    fn service(&mut self, item: &Node) -> Option<ServiceDef> {
        // The kind decides which keys are allowed: read it first.
        let kind = match &item.kind {
            Kind::Table(entries) => entries.iter().find(|e| e.key == "kind").map(|e| &e.node),
            _ => None,
        };
        let kind_name = match kind {
            None => {
                self.error(
                    &item.span,
                    "missing required key `kind` in [[service]] (\"http\" or \"imap\")".into(),
                );
                // Still check the rest, as an HTTP service.
                "http"
            }
            Some(node) => match self.string(node, "`kind`")? {
                kind @ ("http" | "imap") => kind,
                // A tool's credential (additive: see tool.rs).
                tool if Tool::from_kind(tool).is_some() => {
                    return self.tool_service(item, Tool::from_kind(tool)?);
                }
                other => {
                    self.error(
                        &node.span,
                        format!(
                            "`kind`: unknown kind {other:?} (expected \"http\", \"imap\", \
                             \"aws\", \"kubernetes\", \"git\" or \"docker\")"
                        ),
                    );
                    return None;
                }
            },
        };
        let allowed = if kind_name == "http" {
            HTTP_KEYS
        } else {
            IMAP_KEYS
        };
        let table = self.table(item, &format!("an {kind_name} [[service]]"), allowed)?;
        let name = self.service_name(&table);
        let description = self
            .optional_string(&table, "description")
            .unwrap_or_default()
            .to_owned();
        let fields = self.fields(&table);
        let starttls = self.starttls(&table, kind_name == "http");
        // An invalid `starttls` is reported once: the upstream and the CA
        // file are checked as if it were true, so neither adds an error of
        // its own because of it.
        let upstream = self.upstream(&table, kind_name == "http", starttls.unwrap_or(true));
        let kind = if kind_name == "http" {
            let inject = self.injection(&table, fields.as_deref());
            let read_only_post = self.read_only_post(&table);
            ServiceKind::Http(HttpService {
                upstream: upstream?,
                inject: inject?,
                read_only_post: read_only_post?,
            })
        } else {
            let login = self.login(&table, fields.as_deref());
            let starttls = match (starttls, upstream.as_ref(), table.get("starttls")) {
                (Some(true), Some(upstream), Some(node)) if upstream.tls => {
                    self.error(
                        &node.span,
                        "`starttls` is for an imap:// upstream; imaps:// is TLS from the first \
                         byte"
                            .into(),
                    );
                    None
                }
                (starttls, ..) => starttls,
            };
            let ca_file = self.ca_file(&table, upstream.as_ref(), starttls.unwrap_or(true));
            let (user_field, password_field) = login?;
            ServiceKind::Imap(ImapService {
                upstream: upstream?,
                user_field,
                password_field,
                ca_file: ca_file?,
                starttls: starttls?,
            })
        };
        let (name, source) = name?;
        Some(ServiceDef {
            name,
            description,
            fields: fields?,
            kind,
            source,
        })
    }

    fn service_name(&mut self, table: &Table<'_>) -> Option<(String, String)> {
        let (name, node) = self.required_string(table, "name", "[[service]]")?;
        if !is_service_name(name) {
            self.error(
                &node.span,
                format!("`name`: {name:?} must be 1-64 characters of a-z, 0-9, - and _"),
            );
            return None;
        }
        Some((name.to_owned(), self.place(&node.span)))
    }

    fn fields(&mut self, table: &Table<'_>) -> Option<Vec<String>> {
        let Some(node) = table.get("fields") else {
            self.error(
                table.span,
                "missing required key `fields` in [[service]] (the credential fields it needs)"
                    .into(),
            );
            return None;
        };
        let items = self.array(node, "`fields`")?;
        if items.is_empty() || items.len() > MAX_FIELDS {
            self.error(
                &node.span,
                format!("`fields` names 1 to {MAX_FIELDS} credential fields"),
            );
            return None;
        }
        let mut fields: Vec<String> = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(field) = self.string(item, "a field") else {
                ok = false;
                continue;
            };
            if !is_field_name(field) {
                self.error(
                    &item.span,
                    format!("field {field:?} must be 1-64 characters of a-z, 0-9, - and _"),
                );
                ok = false;
            } else if fields.iter().any(|f| f == field) {
                self.error(&item.span, format!("field {field:?} is listed twice"));
                ok = false;
            } else {
                fields.push(field.to_owned());
            }
        }
        ok.then_some(fields)
    }

    fn upstream(&mut self, table: &Table<'_>, http: bool, starttls: bool) -> Option<Upstream> {
        let (text, node) = self.required_string(table, "upstream", "[[service]]")?;
        match parse_upstream_upgraded(text, http, starttls) {
            Ok(upstream) => Some(upstream),
            Err(message) => {
                self.error(&node.span, format!("`upstream`: {message}"));
                None
            }
        }
    }

    /// `starttls = true|false` (an IMAP key; absent: false).
    fn starttls(&mut self, table: &Table<'_>, http: bool) -> Option<bool> {
        let Some(node) = table.get("starttls") else {
            return Some(false);
        };
        match node.kind {
            // An HTTP service's unknown key is reported by the key check.
            _ if http => Some(false),
            Kind::Bool(value) => Some(value),
            _ => {
                self.expected(node, "`starttls`", "a boolean");
                None
            }
        }
    }

    /// A field the injection or login reads: a string naming a declared
    /// field.
    fn field_ref(
        &mut self,
        table: &Table<'_>,
        key: &str,
        what: &str,
        fields: Option<&[String]>,
    ) -> Option<String> {
        let (field, node) = self.required_string(table, key, what)?;
        if let Some(fields) = fields {
            if !fields.iter().any(|f| f == field) {
                self.error(
                    &node.span,
                    format!(
                        "`{key}`: {field:?} is not one of the service's `fields` ({})",
                        fields.join(", ")
                    ),
                );
                return None;
            }
        }
        Some(field.to_owned())
    }

    fn injection(&mut self, table: &Table<'_>, fields: Option<&[String]>) -> Option<Injection> {
        let Some(node) = table.get("inject") else {
            self.error(
                table.span,
                "missing required key `inject` in an http [[service]] (how the credential is \
                 sent: bearer, header, basic or query)"
                    .into(),
            );
            return None;
        };
        let inject = self.table(node, "`inject`", INJECT_KEYS)?;
        let (style, style_node) = self.required_string(&inject, "style", "`inject`")?;
        let allowed: &[&str] = match style {
            "bearer" => &["style", "field"],
            "header" | "query" => &["style", "field", "name"],
            "basic" => &["style", "username_field", "password_field"],
            other => {
                self.error(
                    &style_node.span,
                    format!(
                        "`style`: unknown injection {other:?} (expected \"bearer\", \"header\", \
                         \"basic\" or \"query\")"
                    ),
                );
                return None;
            }
        };
        for entry in inject.entries {
            if !allowed.contains(&entry.key.as_str()) && INJECT_KEYS.contains(&entry.key.as_str()) {
                self.error(
                    &entry.key_span,
                    format!("`{}` does not apply to a {style} injection", entry.key),
                );
            }
        }
        let what = "`inject`";
        Some(match style {
            "bearer" => Injection::Bearer {
                field: self.field_ref(&inject, "field", what, fields)?,
            },
            "basic" => Injection::Basic {
                username_field: self.field_ref(&inject, "username_field", what, fields)?,
                password_field: self.field_ref(&inject, "password_field", what, fields)?,
            },
            _ => {
                let field = self.field_ref(&inject, "field", what, fields);
                let (name, name_node) = self.required_string(&inject, "name", what)?;
                let checked = if style == "header" {
                    check_header_name(name)
                } else {
                    check_query_name(name)
                };
                if let Err(message) = checked {
                    self.error(&name_node.span, format!("`name`: {message}"));
                    return None;
                }
                let (name, field) = (name.to_owned(), field?);
                if style == "header" {
                    Injection::Header { name, field }
                } else {
                    Injection::Query { name, field }
                }
            }
        })
    }

    fn read_only_post(&mut self, table: &Table<'_>) -> Option<Vec<PathRule>> {
        let Some(node) = table.get("read_only_post") else {
            return Some(Vec::new());
        };
        let items = self.array(node, "`read_only_post`")?;
        if items.len() > MAX_READ_ONLY_POST {
            self.error(
                &node.span,
                format!("`read_only_post` lists at most {MAX_READ_ONLY_POST} paths"),
            );
            return None;
        }
        let mut rules = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(path) = self.string(item, "a read-only POST path") else {
                ok = false;
                continue;
            };
            match check_path_rule(path) {
                Ok(()) => rules.push(PathRule {
                    pattern: path.to_owned(),
                }),
                Err(message) => {
                    self.error(
                        &item.span,
                        format!("read-only POST path {path:?}: {message}"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(rules)
    }

    /// An imaps service's own certificate authorities (a self-hosted
    /// server's CA): an absolute path to a PEM file holding at least one
    /// certificate, read now so that a typo is reported here rather than
    /// at the first operation.
    fn ca_file(
        &mut self,
        table: &Table<'_>,
        upstream: Option<&Upstream>,
        starttls: bool,
    ) -> Option<Option<PathBuf>> {
        let Some(node) = table.get("ca_file") else {
            return Some(None);
        };
        let path = self.string(node, "`ca_file`")?;
        let problem = if upstream.is_some_and(|u| !u.tls) && !starttls {
            Some(
                "is for an imaps or STARTTLS upstream: plain imap (loopback only) has no \
                 certificate to check"
                    .to_owned(),
            )
        } else if !path.starts_with('/') || path.chars().any(char::is_control) {
            Some(format!("{path:?} is not an absolute path"))
        } else {
            match std::fs::read(path) {
                Err(e) => Some(format!("cannot read {path}: {e}")),
                Ok(pem) if !has_pem_certificate(&pem) => Some(format!(
                    "{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                )),
                Ok(_) => None,
            }
        };
        match problem {
            Some(message) => {
                self.error(&node.span, format!("`ca_file`: {message}"));
                None
            }
            None => Some(Some(PathBuf::from(path))),
        }
    }

    fn login(&mut self, table: &Table<'_>, fields: Option<&[String]>) -> Option<(String, String)> {
        let Some(node) = table.get("login") else {
            self.error(
                table.span,
                "missing required key `login` in an imap [[service]] \
                 (`{ user_field = \"…\", password_field = \"…\" }`)"
                    .into(),
            );
            return None;
        };
        let login = self.table(node, "`login`", LOGIN_KEYS)?;
        let user = self.field_ref(&login, "user_field", "`login`", fields);
        let password = self.field_ref(&login, "password_field", "`login`", fields);
        Some((user?, password?))
    }
}

/// Whether `pem` holds a certificate block (the proxy parses it in full
/// when it connects).
fn has_pem_certificate(pem: &[u8]) -> bool {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    pem.windows(BEGIN.len()).any(|w| w == BEGIN)
}

/// `scheme://host[:port][/base/path]`: http or https for HTTP, imap or
/// imaps for IMAP; plain text only to a loopback address.
pub(crate) fn parse_upstream(text: &str, http: bool) -> Result<Upstream, String> {
    parse_upstream_upgraded(text, http, false)
}

/// As [`parse_upstream`]; `starttls`: an `imap://` upstream that STARTTLS
/// secures before the login is sent, so to any host.
fn parse_upstream_upgraded(text: &str, http: bool, starttls: bool) -> Result<Upstream, String> {
    let (schemes, default_ports): (&[&str], [u16; 2]) = if http {
        (&["https", "http"], [443, 80])
    } else {
        (&["imaps", "imap"], [993, 143])
    };
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("{text:?} is not a URL: write {}://host", schemes[0]))?;
    let tls = if scheme == schemes[0] {
        true
    } else if scheme == schemes[1] {
        false
    } else {
        return Err(format!(
            "scheme {scheme:?} is not {} or {}",
            schemes[0], schemes[1]
        ));
    };
    if rest.contains(['?', '#', '@']) || rest.chars().any(|c| c.is_control() || c == ' ') {
        return Err("the URL may hold no user, query, fragment, space or control character".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !http && !path.is_empty() && path != "/" {
        return Err("an IMAP upstream has no path".into());
    }
    let (host, port) = split_authority(authority)?;
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {port:?} is not 1-65535"))?,
        None => default_ports[usize::from(!tls)],
    };
    if host.is_empty()
        || !(host.parse::<IpAddr>().is_ok()
            || host.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
    {
        return Err(format!("host {host:?} is not a DNS name or an IP address"));
    }
    if !tls && !starttls && !is_loopback(host) {
        return Err(format!(
            "{scheme} sends the credential in the clear: only to a loopback address \
             (use {} for {host}{})",
            schemes[0],
            if http { "" } else { ", or `starttls = true`" }
        ));
    }
    if path.contains("//") || path.split('/').any(|s| s == "." || s == "..") {
        return Err("the path may hold no empty, `.` or `..` segment".into());
    }
    Ok(Upstream {
        tls,
        host: host.to_owned(),
        port,
        base_path: path.trim_end_matches('/').to_owned(),
    })
}

fn split_authority(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing `]`")?;
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or_else(|| format!("unexpected {after:?} after the address")),
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn check_header_name(name: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > 64 || !name.bytes().all(token) {
        return Err(format!("{name:?} is not an HTTP header name"));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "{name} frames the request itself and cannot carry a credential"
        ));
    }
    Ok(())
}

fn check_query_name(name: &str) -> Result<(), String> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
    if name.is_empty() || name.len() > 64 || !name.bytes().all(ok) {
        return Err(format!(
            "{name:?} must be 1-64 characters of A-Z, a-z, 0-9, -, _ and ."
        ));
    }
    Ok(())
}

fn check_path_rule(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must start with /".into());
    }
    if path.len() > MAX_PATH_RULE_LEN {
        return Err(format!("is longer than {MAX_PATH_RULE_LEN} bytes"));
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"?#%\\".contains(&b))
    {
        return Err("may hold only printable ASCII, without ?, #, % or \\".into());
    }
    if path.split('/').any(|s| s == "." || s == "..") || path.contains("//") {
        return Err("may hold no empty, `.` or `..` segment".into());
    }
    if path.trim_end_matches('*').contains('*') || path.ends_with("**") {
        return Err("`*` may only end the path (a prefix)".into());
    }
    Ok(())
}

mod tool;

#[cfg(test)]
mod tests;
