//! airlockctl's command line, apart from main so that the man page and
//! shell completions are generated from the same definition
//! (packaging/gen-docs includes this file).

use std::path::PathBuf;
use std::time::Duration;

use airlock_common::names;
use airlock_common::services::DEFAULT_SERVICES_DIR;
use airlock_common::timefmt::parse_duration;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "airlockctl",
    version,
    about = "Control Airlock: policy, approvals, grants and audit"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The tools whose credential helpers airlockctl serves.
pub const TOOLS: [&str; 4] = ["aws", "kube", "git", "docker"];

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

#[derive(Subcommand)]
pub enum Command {
    /// Show the gateway, policy and TOTP state.
    Status,
    /// Check, validate or reload policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Enrol or inspect the approver's TOTP authenticator.
    #[command(subcommand)]
    Totp(TotpCommand),
    /// Store, list or remove service credentials (held by the gateway,
    /// opened only under a grant).
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// Serve a tool's credential-helper protocol (what `credentials
    /// wire-up` configures the tools to run): `aws SERVICE`, `kube
    /// SERVICE`, `git SERVICE get|store|erase`, `docker [SERVICE]
    /// get|store|erase|list` (also run as docker-credential-airlock). The
    /// credential comes only under a live grant for this process.
    CredentialHelper {
        #[arg(value_parser = TOOLS)]
        tool: String,
        /// The service, then the action the tool passes (git, docker).
        #[arg(num_args = 0..=2)]
        args: Vec<String>,
    },
    /// Check or show the service definitions (services.d).
    #[command(subcommand)]
    Services(ServicesCommand),
    /// Ask a human for approval (prints the request id). Inside a governed
    /// session the request is for that session.
    Request {
        /// `command:terraform plan` or `services:gmail,calendar`.
        #[arg(
            long,
            required_unless_present = "services",
            conflicts_with = "services"
        )]
        scope: Option<String>,
        /// Services whose credentials the grant should open: `gmail,github`
        /// (the same as `--scope services:gmail,github`).
        #[arg(long)]
        services: Option<String>,
        #[arg(long)]
        reason: String,
        /// Lifetime to ask for, e.g. 30m (the approver may change it).
        #[arg(long, value_parser = duration)]
        ttl: Option<Duration>,
        /// File the request for this session (its owner or an admin).
        #[arg(long)]
        session: Option<String>,
    },
    /// Run a command (an agent) in a governed session: the kernel enforces
    /// the role's policy on its whole process tree.
    Run {
        /// Role (default: the one chosen with `airlockctl use`, else the
        /// gateway's default role).
        #[arg(long)]
        role: Option<String>,
        /// Run even without kernel enforcement (recorded in the audit log).
        #[arg(long)]
        unenforced: bool,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List governed sessions, revoke one, or bind a Unix user to one.
    Sessions {
        #[command(subcommand)]
        action: Option<SessionsCommand>,
        #[arg(long)]
        json: bool,
    },
    /// Choose the default role for future governed sessions.
    Use { role: String },
    /// Show the default role for future governed sessions.
    Current,
    /// Check what this machine can enforce, and how to fix what it cannot.
    Doctor,
    /// List pending requests.
    Requests {
        #[arg(long)]
        json: bool,
    },
    /// Approve a request with a TOTP code (prompted without echo).
    Approve {
        /// Request id; may be left out when exactly one request is pending.
        id: Option<String>,
        /// Grant lifetime (default: what was asked, else 60m; at most 8h).
        #[arg(long, value_parser = duration)]
        ttl: Option<Duration>,
        /// Grant write access (grants are read-only by default).
        #[arg(long)]
        write: bool,
        /// Read the code from standard input instead of the terminal.
        #[arg(long)]
        code_stdin: bool,
    },
    /// Deny a pending request (a third-party enforcer's `art-…` with a TOTP
    /// code, so that the enforcer can check a human decided).
    Deny {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// Read the code (for an enforcer's artifact) from standard input.
        #[arg(long)]
        code_stdin: bool,
    },
    /// Register or list third-party enforcer apps, or consent to one.
    Apps {
        #[command(subcommand)]
        action: Option<AppsCommand>,
        #[arg(long)]
        json: bool,
    },
    /// Personal access tokens for your third-party enforcers (X-PAT).
    #[command(subcommand)]
    Pat(PatCommand),
    /// Pair a third-party enforcer: the code it shows, or `--generate` one
    /// for it to claim.
    Pair {
        code: Option<String>,
        #[arg(long)]
        generate: bool,
    },
    /// List paired third-party enforcers with their presence, or unpair one.
    Enforcers {
        /// The pairing (`pn-…`) to revoke.
        #[arg(long)]
        unpair: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One operation on a service through airlock-proxy, its answer on
    /// stdout: a mail operation (list_messages, search, get_message,
    /// count_unread) with JSON parameters, or an HTTP service's path (GET).
    /// Without a live grant for the service it asks for one and approves it
    /// here with a TOTP code.
    Access {
        service: String,
        /// A mail operation, or a path under an HTTP service.
        op: String,
        /// The mail operation's parameters, a JSON object: '{"limit":5}'.
        #[arg(short = 'p', long = "params", value_name = "JSON")]
        params: Option<String>,
        /// airlock-proxy's Unix socket.
        #[arg(long, default_value = names::DEFAULT_PROXY_SOCKET)]
        socket: PathBuf,
        /// The service definitions.
        #[arg(long, default_value = DEFAULT_SERVICES_DIR)]
        services_dir: PathBuf,
        /// Read the TOTP code (if one is asked for) from standard input.
        #[arg(long)]
        code_stdin: bool,
    },
    /// List live grants.
    Grants {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant, or all of them.
    Revoke {
        grant: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Show the audit log, or verify its hash chain.
    Audit {
        #[command(subcommand)]
        verify: Option<AuditCommand>,
        /// `1h`, `7d`, `today` or an RFC 3339 time (`--last 7d` says the
        /// same).
        #[arg(long, visible_alias = "last", global = true)]
        since: Option<String>,
        /// A daemon (`gateway`, `totp`, `enforcer`) or a credential
        /// service (`gmail`): its records only.
        #[arg(long, global = true)]
        service: Option<String>,
        #[arg(long, global = true)]
        session: Option<String>,
        #[arg(long, global = true)]
        json: bool,
        /// Directory holding audit.jsonl.
        #[arg(long, default_value = names::DEFAULT_AUDIT_DIR, global = true)]
        audit_dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum AppsCommand {
    /// Register an app (admins): prints its App ID, Client ID and, for a
    /// confidential kind, its Client Secret, once.
    Add {
        /// desktop, agent or vscode (confidential: a client secret); web or
        /// mobile (public: checked by Origin).
        #[arg(long)]
        kind: String,
        /// An allowed Origin (public kinds), repeatable.
        #[arg(long = "origin")]
        origins: Vec<String>,
        name: String,
    },
    /// Consent to an app acting for you (or, with --deny, refuse it).
    Consent {
        app: String,
        #[arg(long)]
        deny: bool,
    },
}

#[derive(Subcommand)]
pub enum PatCommand {
    /// Create a token (printed once).
    Create {
        /// Lifetime, e.g. 90d (the default; at most a year).
        #[arg(long, value_parser = duration)]
        expires: Option<Duration>,
    },
    /// List tokens (not the tokens themselves).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: enforcers using it are refused from then on.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// Revoke a session: its processes are killed and nothing starts in it.
    Revoke { id: String },
    /// Govern every process of a (dedicated agent) Unix user (admins only).
    BindUser {
        user: String,
        #[arg(long)]
        role: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Print the decision for a command: exit 0 allow, 2 approve, 3 block, 1 error.
    Check {
        /// Evaluate a policy directory locally instead of asking the gateway.
        #[arg(long)]
        policies: Option<PathBuf>,
        #[arg(long)]
        role: String,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Report every error in a policy directory with file:line:column.
    Validate {
        #[arg(default_value = names::DEFAULT_POLICY_DIR)]
        dir: PathBuf,
    },
    /// Ask the gateway to re-read its policy directory.
    Reload,
}

#[derive(Subcommand)]
pub enum TotpCommand {
    /// Create a secret, show it as a QR code, and activate it with a code.
    Setup {
        /// Replace an enrolled secret without its code (root only).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        code_stdin: bool,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and name the first edited, removed or reordered record.
    Verify,
    /// Today's records (the same as `--since today`).
    Today,
}

#[derive(Subcommand)]
pub enum ServicesCommand {
    /// Report every error in a services directory with file:line:column.
    Validate {
        #[arg(default_value = DEFAULT_SERVICES_DIR)]
        dir: PathBuf,
    },
    /// Show each service: its upstream, fields and read-only rules.
    List {
        #[arg(default_value = DEFAULT_SERVICES_DIR)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum CredentialsCommand {
    /// Store a value (typed twice without echo) as SERVICE's FIELD (default
    /// `token`), replacing the old one (admins only).
    Add {
        service: String,
        field: Option<String>,
        /// Read the value from standard input instead (one final newline
        /// is dropped).
        #[arg(long)]
        stdin: bool,
    },
    /// List stored services and their fields, never values.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a field, or all of a service's (admins only).
    Remove {
        service: String,
        field: Option<String>,
    },
    /// Configure a tool (aws, kube, git, docker) to ask Airlock for
    /// SERVICE's credential: writes its configuration under
    /// ~/.config/airlock/tools/TOOL, which `airlockctl run` points the
    /// session at (no secret is written).
    WireUp {
        #[arg(value_parser = TOOLS)]
        tool: String,
        service: String,
        /// The service definitions to read SERVICE from.
        #[arg(long, default_value = DEFAULT_SERVICES_DIR)]
        services_dir: PathBuf,
    },
    /// Print a stored value after a TOTP code (admins only).
    Get {
        service: String,
        field: String,
        /// Read the code from standard input instead of the terminal.
        #[arg(long)]
        code_stdin: bool,
    },
}
