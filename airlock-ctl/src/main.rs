//! airlockctl: the command-line front end of Airlock.

mod access;
mod approvals;
mod audit;
mod bus;
mod cli;
mod code;
mod confine;
mod credentials;
mod doctor;
mod enforcers;
mod helper;
mod policy;
mod printable;
mod services;
mod sessions;
mod totp;
mod wireup;

use std::process::ExitCode;

use airlock_common::audit::Filter;
use airlock_common::integrations::Verdict;
use clap::Parser;

use crate::cli::{
    AppsCommand, AuditCommand, Cli, Command, CredentialsCommand, PatCommand, PolicyCommand,
    ServicesCommand, SessionsCommand, TotpCommand,
};

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
            CredentialsCommand::WireUp {
                tool,
                service,
                services_dir,
            } => wireup::wire_up(&tool, &service, &services_dir),
        },
        Command::CredentialHelper { tool, args } => Ok(credential_helper(&tool, &args).await),
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
            id: Some(id),
            code_stdin,
            ..
        } if id.starts_with(enforcers::ARTIFACT_PREFIX) => {
            enforcers::decide(&id, Verdict::Approve, "", code_stdin).await
        }
        Command::Approve {
            id,
            ttl,
            write,
            code_stdin,
        } => approvals::approve(id.as_deref(), ttl, write, code_stdin).await,
        Command::Deny {
            id,
            reason,
            code_stdin,
        } if id.starts_with(enforcers::ARTIFACT_PREFIX) => {
            enforcers::decide(&id, Verdict::Reject, &reason, code_stdin).await
        }
        Command::Deny { id, reason, .. } => approvals::deny(&id, &reason).await,
        Command::Apps { action, json } => match action {
            None => enforcers::apps_list(json).await,
            Some(AppsCommand::Add {
                kind,
                origins,
                name,
            }) => enforcers::apps_add(&kind, &name, &origins).await,
            Some(AppsCommand::Consent { app, deny }) => enforcers::apps_consent(&app, deny).await,
        },
        Command::Pat(PatCommand::Create { expires }) => enforcers::pat_create(expires).await,
        Command::Pat(PatCommand::List { json }) => enforcers::pat_list(json).await,
        Command::Pat(PatCommand::Revoke { id }) => enforcers::pat_revoke(&id).await,
        Command::Pair { code, generate } => enforcers::pair(code.as_deref(), generate).await,
        Command::Enforcers { unpair, json } => enforcers::enforcers(unpair.as_deref(), json).await,
        Command::Access {
            service,
            op,
            params,
            socket,
            services_dir,
            code_stdin,
        } => {
            access::run(&access::Access {
                service: &service,
                op: &op,
                params: params.as_deref(),
                socket: &socket,
                services_dir: &services_dir,
                code_stdin,
            })
            .await
        }
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

/// `credential-helper TOOL ARGS`: the service first, then the action the
/// tool passes; Docker passes only the action.
async fn credential_helper(tool: &str, args: &[String]) -> i32 {
    let tool = match tool {
        "aws" => helper::HelperTool::Aws,
        "kube" => helper::HelperTool::Kube,
        "git" => helper::HelperTool::Git,
        _ => helper::HelperTool::Docker,
    };
    let (service, action) = match (tool, args) {
        (helper::HelperTool::Docker, [action]) => (None, Some(action.as_str())),
        (_, [service]) => (Some(service.as_str()), None),
        (_, [service, action]) => (Some(service.as_str()), Some(action.as_str())),
        _ => (None, None),
    };
    helper::run(tool, service, action).await
}

fn main() -> ExitCode {
    // The session's first process: before a runtime (or anything else) runs.
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(confine::SUBCOMMAND)) {
        return confine::main(args.collect());
    }
    // Docker runs `docker-credential-airlock ACTION`: a symlink to us.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let cli = if std::path::Path::new(&argv0).file_name()
        == Some(std::ffi::OsStr::new(helper::DOCKER_HELPER_NAME))
    {
        let mut argv = vec![
            std::ffi::OsString::from("airlockctl"),
            "credential-helper".into(),
            "docker".into(),
        ];
        argv.extend(std::env::args_os().skip(1));
        Cli::parse_from(argv)
    } else {
        Cli::parse()
    };
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
