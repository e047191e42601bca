//! The daemons' log output.
//!
//! Under systemd (standard error is the journal stream, as `JOURNAL_STREAM`
//! says) events go to journald natively, so their fields become journal
//! fields: `journalctl -u airlock-gateway SESSION_ID=…` finds every line
//! about a session, and likewise `REQUEST_ID=` and `GRANT_ID=`. Elsewhere
//! they are text on standard error. Either way filtered by `RUST_LOG`, at
//! `info` when it is unset or invalid.
//!
//! Libraries that log the bytes they send are silenced whatever `RUST_LOG`
//! says: async-imap logs each command at trace level, `LOGIN` with its
//! password included. zbus stays at `warn` unless `RUST_LOG` names it.

use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Log targets whose output can hold a secret.
const SILENCED: &[&str] = &["async_imap", "imap_proto"];

/// Log targets held at `warn` unless `RUST_LOG` names them. zbus opens an
/// info-level span for every method call it dispatches, and formats the
/// whole message and header into it: a tenth of the gateway's CPU per
/// call (perf, during the exec storm), for nothing a user reads.
const QUIETED: &[&str] = &["zbus"];

pub fn init() {
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    for target in SILENCED {
        filter = filter.add_directive(format!("{target}=off").parse().expect("a valid directive"));
    }
    for target in QUIETED.iter().filter(|t| !asked.contains(*t)) {
        filter = filter.add_directive(format!("{target}=warn").parse().expect("a valid directive"));
    }
    if stderr_is_journal() {
        // Field names as they are (`session_id`, upcased by the layer), not
        // behind the layer's default `F_` prefix.
        match tracing_journald::layer() {
            Ok(journal) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(journal.with_field_prefix(None))
                    .init();
                return;
            }
            Err(e) => eprintln!("cannot log to journald ({e}); logging to standard error"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Whether standard error is the stream systemd connected to the journal:
/// `JOURNAL_STREAM` is `DEVICE:INODE` of that stream, and a child that
/// inherited the variable with another standard error must not use it.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream
        .to_str()
        .and_then(|s| s.split_once(':'))
        .is_some_and(|(dev, ino)| {
            dev.parse() == Ok(stderr.dev()) && ino.parse() == Ok(stderr.ino())
        })
}
