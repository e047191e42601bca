//! Service definitions: what a credential is for and how Airlock may use it.
//!
//! `/etc/airlock/services.d/*.toml` holds `[[service]]` tables. Each names
//! a service (the name grants and the credential store use), its kind
//! (`http`, `imap`, or a tool: `aws`, `kubernetes`, `git`, `docker`), its
//! upstream, the credential fields it needs, how
//! they reach the upstream, and for HTTP what read-only means beyond GET,
//! HEAD and OPTIONS: POST paths that only read (a search or embeddings
//! endpoint). The directory is validated like the policy directory: every
//! problem is reported with `file:line:column`, and an invalid set is never
//! used.

mod load;

use std::path::Path;

use crate::policy::Diagnostic;

pub use load::load_sources;

/// Where the service definitions live.
pub const DEFAULT_SERVICES_DIR: &str = "/etc/airlock/services.d";

/// One service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDef {
    pub name: String,
    pub description: String,
    /// The credential fields it needs, in the order written.
    pub fields: Vec<String>,
    pub kind: ServiceKind,
    /// `file:line:column` of its `name`.
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    Http(HttpService),
    Imap(ImapService),
    /// A command-line tool's own credential (AWS, Kubernetes, git, Docker),
    /// released to the granted caller through that tool's helper protocol.
    Tool(ToolService),
}

impl ServiceKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceKind::Http(_) => "http",
            ServiceKind::Imap(_) => "imap",
            ServiceKind::Tool(tool) => tool.tool.as_str(),
        }
    }
}

/// The tools whose credential-helper protocols Airlock speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `credential_process` in an AWS config file.
    Aws,
    /// The kubectl exec credential plugin.
    Kubernetes,
    /// A git credential helper.
    Git,
    /// A Docker credential helper (`docker-credential-airlock`).
    Docker,
}

impl Tool {
    pub const ALL: [Tool; 4] = [Tool::Aws, Tool::Kubernetes, Tool::Git, Tool::Docker];

    /// Its `kind` in a service file.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Aws => "aws",
            Tool::Kubernetes => "kubernetes",
            Tool::Git => "git",
            Tool::Docker => "docker",
        }
    }

    pub fn from_kind(kind: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.as_str() == kind)
    }

    /// Fields the service must list: each is one of the alternatives
    /// (git takes a password or a token).
    pub fn required_fields(self) -> &'static [&'static [&'static str]] {
        match self {
            Tool::Aws => &[&["access_key_id"], &["secret_access_key"]],
            Tool::Kubernetes => &[&["token"]],
            Tool::Git => &[&["username"], &["password", "token"]],
            Tool::Docker => &[&["username"], &["secret"]],
        }
    }

    /// Every field the tool's protocol can carry.
    pub fn known_fields(self) -> &'static [&'static str] {
        match self {
            Tool::Aws => &["access_key_id", "secret_access_key", "session_token"],
            Tool::Kubernetes => &["token"],
            Tool::Git => &["username", "password", "token"],
            Tool::Docker => &["username", "secret"],
        }
    }

    /// The extra key naming where the credential is used, if the tool has
    /// one: git's host, Docker's registry, the Kubernetes API server.
    pub fn server_key(self) -> Option<&'static str> {
        match self {
            Tool::Aws => None,
            Tool::Kubernetes => Some("server"),
            Tool::Git => Some("host"),
            Tool::Docker => Some("registry"),
        }
    }
}

/// A tool's credential: which tool, and (for all but AWS) where it is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolService {
    pub tool: Tool,
    /// git: the host (`github.com`); docker: the registry server
    /// (`ghcr.io`, `https://index.docker.io/v1/`); kubernetes: the API
    /// server's https URL.
    pub server: Option<String>,
}

/// Where a service is reached. Plain text (`http`, `imap`) only on
/// loopback, so a credential never crosses a network in the clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The path every request is under, without a trailing `/` ("" for
    /// the root).
    pub base_path: String,
}

impl Upstream {
    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpService {
    pub upstream: Upstream,
    pub inject: Injection,
    /// POST paths (under the service) that only read.
    pub read_only_post: Vec<PathRule>,
}

/// Methods that never change anything upstream.
pub const READ_ONLY_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS"];

impl HttpService {
    /// Whether `method` on `path` (under the service, starting with `/`)
    /// only reads: GET, HEAD and OPTIONS always, POST on a listed path.
    pub fn is_read_only(&self, method: &str, path: &str) -> bool {
        READ_ONLY_METHODS.contains(&method)
            || (method == "POST" && self.read_only_post.iter().any(|rule| rule.matches(path)))
    }
}

/// How an HTTP service's credential reaches the upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Injection {
    /// `Authorization: Bearer <field>`.
    Bearer { field: String },
    /// `<name>: <field>`.
    Header { name: String, field: String },
    /// `Authorization: Basic base64(<username_field>:<password_field>)`.
    Basic {
        username_field: String,
        password_field: String,
    },
    /// `?<name>=<field>` added to the query.
    Query { name: String, field: String },
}

impl Injection {
    /// The fields it reads.
    pub fn fields(&self) -> Vec<&str> {
        match self {
            Injection::Bearer { field }
            | Injection::Header { field, .. }
            | Injection::Query { field, .. } => vec![field],
            Injection::Basic {
                username_field,
                password_field,
            } => vec![username_field, password_field],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapService {
    pub upstream: Upstream,
    pub user_field: String,
    pub password_field: String,
    /// The certificate authorities the server's TLS certificate is checked
    /// against instead of the system's (`ca_file`, for a self-hosted
    /// server).
    pub ca_file: Option<std::path::PathBuf>,
    /// `imap://` upgraded with STARTTLS (`starttls = true`).
    pub starttls: bool,
}

impl ImapService {
    pub fn security(&self) -> MailSecurity {
        match (self.upstream.tls, self.starttls) {
            (true, _) => MailSecurity::Tls,
            (false, true) => MailSecurity::StartTls,
            (false, false) => MailSecurity::Plain,
        }
    }
}

/// How the proxy secures its connection to an IMAP server.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, zbus::zvariant::Type,
)]
#[serde(rename_all = "snake_case")]
#[zvariant(signature = "s")]
pub enum MailSecurity {
    /// TLS from the first byte (`imaps://`, port 993).
    Tls,
    /// Plain until the server's greeting, then `STARTTLS` before anything
    /// else is sent; a server that does not offer it gets nothing
    /// (`imap://` with `starttls = true`, port 143).
    StartTls,
    /// In the clear: to loopback only.
    Plain,
}

impl MailSecurity {
    /// As `airlockctl services` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            MailSecurity::Tls => "TLS",
            MailSecurity::StartTls => "STARTTLS",
            MailSecurity::Plain => "plain, loopback only",
        }
    }
}

/// A path, or with a final `*` every path it is a prefix of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRule {
    pub pattern: String,
}

impl PathRule {
    pub fn matches(&self, path: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.pattern,
        }
    }
}

/// A valid set of services.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSet {
    services: Vec<ServiceDef>,
}

impl ServiceSet {
    pub fn services(&self) -> &[ServiceDef] {
        &self.services
    }

    pub fn get(&self, name: &str) -> Option<&ServiceDef> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Reads the `.toml` files of `dir` in name order. A missing directory
    /// is the empty set (no services defined); every problem is reported.
    pub fn load_dir(dir: &Path) -> Result<ServiceSet, Vec<Diagnostic>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ServiceSet::default()),
            Err(e) => {
                return Err(vec![Diagnostic {
                    file: dir.to_path_buf(),
                    line: 1,
                    column: 1,
                    message: format!("cannot read the services directory: {e}"),
                }])
            }
        };
        let mut files = Vec::new();
        let mut diagnostics = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "toml") || path.is_dir() {
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(text) => files.push((path, text)),
                Err(e) => diagnostics.push(Diagnostic {
                    file: path,
                    line: 1,
                    column: 1,
                    message: format!("cannot read file: {e}"),
                }),
            }
        }
        match load_sources(&files) {
            Ok(set) if diagnostics.is_empty() => Ok(set),
            Ok(_) => Err(diagnostics),
            Err(more) => {
                diagnostics.extend(more);
                Err(diagnostics)
            }
        }
    }
}
