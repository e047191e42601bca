//! Writes the man pages (section 1 for airlockctl, 8 for the daemons) and
//! airlockctl's bash, zsh and fish completions from the very clap
//! definitions the programs parse with: each program keeps its command line
//! in its own `cli.rs`, which this tool includes, so the documentation cannot
//! drift from the binaries.
//!
//! Usage: `airlock-gen-docs OUT_DIR` (packaging/build calls it); writes
//! OUT_DIR/man/NAME.SECTION (troff; packaging/build compresses them) and
//! OUT_DIR/completions/{airlockctl.bash,_airlockctl,airlockctl.fish}.

#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

#[path = "../../../airlock-ctl/src/cli.rs"]
mod ctl;
#[path = "../../../airlock-enforcer/src/cli.rs"]
mod enforcer;
#[path = "../../../airlock-gateway/src/cli.rs"]
mod gateway;
#[path = "../../../airlock-integrations/src/cli.rs"]
mod integrations;
#[path = "../../../airlock-mcp/src/cli.rs"]
mod mcp;
#[path = "../../../airlock-proxy/src/cli.rs"]
mod proxy;
#[path = "../../../airlock-totp/src/cli.rs"]
mod totp;

/// A program, the section its page belongs in, and its clap definition.
struct Program {
    section: &'static str,
    command: clap::Command,
}

fn programs() -> Vec<Program> {
    vec![
        Program {
            section: "1",
            command: ctl::Cli::command(),
        },
        Program {
            section: "8",
            command: gateway::Args::command(),
        },
        Program {
            section: "8",
            command: totp::Args::command(),
        },
        Program {
            section: "8",
            command: enforcer::Args::command(),
        },
        Program {
            section: "8",
            command: integrations::Args::command(),
        },
        Program {
            section: "8",
            command: proxy::Args::command(),
        },
        // Run by the user's agent, not a service: section 1.
        Program {
            section: "1",
            command: mcp::Args::command(),
        },
    ]
}

/// Writes one page for a command and, recursively, one per subcommand
/// (`airlockctl-sessions-revoke.1`), as git and cargo do.
fn write_pages(dir: &Path, section: &str, command: &clap::Command) -> anyhow::Result<()> {
    let name = command.get_name().to_string();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section(section)
        .manual("Airlock")
        .source(format!("Airlock {}", env!("CARGO_PKG_VERSION")))
        .render(&mut page)?;
    let path = dir.join(format!("{name}.{section}"));
    fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    // clap's own `help` subcommand is not a command worth a page.
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let sub = sub.clone().name(format!("{name}-{}", sub.get_name()));
        write_pages(dir, section, &sub)?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: airlock-gen-docs OUT_DIR")?;
    let man = out.join("man");
    let completions = out.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&completions)?;
    for program in programs() {
        let mut command = program.command;
        command.build();
        write_pages(&man, program.section, &command)?;
    }
    // Docker runs `docker-credential-airlock`, which is airlockctl's
    // credential helper under another name: its page is that one's.
    fs::write(
        man.join("docker-credential-airlock.1"),
        ".so man1/airlockctl-credential-helper.1\n",
    )
    .context("writing docker-credential-airlock.1")?;
    let mut ctl = ctl::Cli::command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut ctl, "airlockctl", &completions)
            .with_context(|| format!("writing the {shell} completion"))?;
    }
    Ok(())
}
