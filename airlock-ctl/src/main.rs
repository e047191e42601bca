//! airlockctl: the command-line front end of Airlock.

mod approvals;
mod audit;
mod bus;
mod code;
mod confine;
mod credentials;
mod doctor;
mod policy;
mod printable;
mod services;
mod sessions;
mod totp;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use airlock_common::audit::Filter;
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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

#[derive(Subcommand)]
enum Command {
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
    /// Deny a pending request.
    Deny {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
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
enum SessionsCommand {
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
enum PolicyCommand {
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
enum TotpCommand {
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
enum ServicesCommand {
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
enum CredentialsCommand {
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
    /// Print a stored value after a TOTP code (admins only).
    Get {
        service: String,
        field: String,
        /// Read the code from standard input instead of the terminal.
        #[arg(long)]
        code_stdin: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain and name the first edited, removed or reordered record.
    Verify,
    /// Today's records (the same as `--since today`).
    Today,
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Status => approvals::status().await,
        Command::Policy(PolicyCommand::Check {
            policies,
            role,
            argv,
        }) => policy::check(policies.as_deref(), &role, &argv).await,
        Command::Policy(PolicyCommand::Validate { dir }) => policy::validate(&dir),
        Command::Policy(PolicyCommand::Reload) => policy::reload().await,
        Command::Totp(TotpCommand::Setup { force, code_stdin }) => {
            totp::setup(force, code_stdin).await
        }
        Command::Services(ServicesCommand::Validate { dir }) => services::validate(&dir),
        Command::Services(ServicesCommand::List { dir }) => services::list(&dir),
        Command::Credentials(command) => match command {
            CredentialsCommand::Add {
                service,
                field,
                stdin,
            } => credentials::add(&service, field.as_deref(), stdin).await,
            CredentialsCommand::List { json } => credentials::list(json).await,
            CredentialsCommand::Remove { service, field } => {
                credentials::remove(&service, field.as_deref()).await
            }
            CredentialsCommand::Get {
                service,
                field,
                code_stdin,
            } => credentials::get(&service, &field, code_stdin).await,
        },
        Command::Request {
            scope,
            services,
            reason,
            ttl,
            session,
        } => {
            let scope = match (scope, services) {
                (Some(scope), _) => scope,
                (None, Some(services)) => format!("services:{services}"),
                (None, None) => unreachable!("clap requires --scope or --services"),
            };
            approvals::request(&scope, &reason, ttl, session.as_deref()).await
        }
        Command::Run {
            role,
            unenforced,
            command,
        } => sessions::run(role.as_deref(), unenforced, &command).await,
        Command::Sessions { action, json } => match action {
            None => sessions::list(json).await,
            Some(SessionsCommand::Revoke { id }) => sessions::revoke(&id).await,
            Some(SessionsCommand::BindUser { user, role }) => {
                sessions::bind_user(&user, role.as_deref()).await
            }
        },
        Command::Use { role } => sessions::use_role(&role).await,
        Command::Current => sessions::current().await,
        Command::Doctor => doctor::doctor().await,
        Command::Requests { json } => approvals::list_requests(json).await,
        Command::Approve {
            id,
            ttl,
            write,
            code_stdin,
        } => approvals::approve(id.as_deref(), ttl, write, code_stdin).await,
        Command::Deny { id, reason } => approvals::deny(&id, &reason).await,
        Command::Grants { json } => approvals::list_grants(json).await,
        Command::Revoke { grant, all } => approvals::revoke(grant.as_deref(), all).await,
        Command::Audit {
            verify: Some(AuditCommand::Verify),
            audit_dir,
            ..
        } => audit::verify(&audit_dir).await,
        Command::Audit {
            verify: verify @ (None | Some(AuditCommand::Today)),
            since,
            service,
            session,
            json,
            audit_dir,
        } => {
            let since = match verify {
                Some(AuditCommand::Today) => Some("today".to_owned()),
                _ => since,
            };
            let filter = Filter {
                since: since.as_deref().map(audit::parse_since).transpose()?,
                service,
                session,
            };
            audit::show(&audit_dir, &filter, json)
        }
    }
}

fn main() -> ExitCode {
    // The session's first process: before a runtime (or anything else) runs.
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(confine::SUBCOMMAND)) {
        return confine::main(args.collect());
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("airlockctl: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("airlockctl: {e:#}");
            ExitCode::from(1)
        }
    }
}
