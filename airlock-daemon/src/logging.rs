//! The daemons' log output.

/// Logs to standard error (journald captures it under systemd), filtered by
/// `RUST_LOG` and at `info` when it is unset or invalid.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
