//! airlock-integrations's command line, apart from main so that the man page is
//! generated from the same definition (packaging/gen-docs includes this file).

use std::path::PathBuf;

use airlock_common::names;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "airlock-integrations",
    version,
    about = "Airlock Integrations Gateway: the HTTP API for third-party enforcers"
)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = names::DEFAULT_CONFIG)]
    pub config: PathBuf,
}
