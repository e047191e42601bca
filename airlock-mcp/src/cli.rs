//! Command line of airlock-mcp (also read by packaging/gen-docs).

use std::path::PathBuf;

use clap::Parser;

/// Airlock's MCP server over stdio: an agent sees its grants, asks for
/// access, waits for a human's decision and reaches services through
/// airlock-proxy under a grant.
#[derive(Parser, Debug)]
#[command(name = "airlock-mcp", version)]
pub struct Args {
    /// airlock-proxy's Unix socket.
    #[arg(long, default_value = airlock_common::names::DEFAULT_PROXY_SOCKET)]
    pub proxy_socket: PathBuf,
}
