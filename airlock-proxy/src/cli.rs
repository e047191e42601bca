//! airlock-proxy's command line, apart from main so that the man page is
//! generated from the same definition (packaging/gen-docs includes this file).

use std::path::PathBuf;

use airlock_common::names;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "airlock-proxy",
    version,
    about = "Airlock credential proxy for HTTP services and mailboxes"
)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = names::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Unix socket (overrides proxy.socket).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Loopback address and port (overrides proxy.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// Certificate authorities for HTTPS upstreams, PEM (overrides
    /// proxy.ca_file).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Apply the confinement this daemon runs under when no service manager
    /// confines it (Landlock), show that it can write its socket's directory
    /// but not DIR, and exit: 0 if the confinement held.
    #[arg(long, value_name = "DIR")]
    pub confinement_selftest: Option<PathBuf>,
}
