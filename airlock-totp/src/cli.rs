//! airlock-totp's command line, apart from main so that the man page is
//! generated from the same definition (packaging/gen-docs includes this file).

use std::path::PathBuf;

use airlock_common::names;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "airlock-totp",
    version,
    about = "Airlock TOTP verifier and grant signer"
)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = names::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// State directory (overrides totp.state_dir).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Apply the confinement this daemon runs under when no service manager
    /// confines it (Landlock), show that it can write its state but not DIR,
    /// and exit: 0 if the confinement held.
    #[arg(long, value_name = "DIR")]
    pub confinement_selftest: Option<PathBuf>,
}
