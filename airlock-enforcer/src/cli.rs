//! airlock-enforcer's command line, apart from main so that the man page is
//! generated from the same definition (packaging/gen-docs includes this file).

use std::path::PathBuf;

use airlock_common::names;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "airlock-enforcer",
    version,
    about = "Airlock enforcer: kernel enforcement of governed sessions"
)]
pub struct Args {
    /// bpffs directory for pinned maps and links.
    #[arg(long, default_value = names::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Directory under the cgroup2 mount that holds the session cgroups.
    #[arg(long, default_value = names::SESSION_CGROUP_DIR)]
    pub cgroup_dir: String,
    /// The user the gateway runs as: the only non-root caller allowed.
    #[arg(long, default_value = names::GATEWAY_USER)]
    pub gateway_user: String,
    /// The user airlock-totp runs as: grants are checked with the key only
    /// a connection of that user may give.
    #[arg(long, default_value = names::TOTP_USER)]
    pub totp_user: String,
    /// Airlock's configuration: its `proxy.socket` is a socket sessions
    /// may reach.
    #[arg(long, default_value = names::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Report what enforcement this machine supports and exit.
    #[arg(long)]
    pub check: bool,
}
