//! airlock-mcp: Airlock's MCP server over stdio, started by the agent (for
//! example Claude Code or Codex) as the agent's user. It holds no secret and
//! no authority of its own: it asks the gateway over the D-Bus system bus
//! (as airlockctl does) and reaches services through airlock-proxy, which
//! identifies this process's user and checks its grants itself.

#![forbid(unsafe_code)]

mod cli;
mod grants;
mod proxy;
mod server;
mod session;
mod stdio;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = cli::Args::parse();
    // stdout carries the protocol: logs go to stderr only.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    // One thread: an MCP client sends one request at a time and the idle
    // RSS stays small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(server::serve(args))
}
