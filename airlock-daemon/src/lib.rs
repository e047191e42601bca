//! What Airlock's three daemons (`airlock-gateway`, `airlock-totp`,
//! `airlock-enforcer`) share at start-up and around their state, written
//! once so that they cannot drift apart:
//!
//! - [`logging::init`]: one log format and filter (`RUST_LOG`, default
//!   `info`) on standard error;
//! - [`bus`]: connecting to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when
//!   set, as the tests do), serving an object, owning the well-known name
//!   with a clear error when it is taken, then telling systemd it is ready;
//! - [`state_dir::ensure`]: one rule for every directory a daemon keeps
//!   state in;
//! - [`lock::MutexExt`]: locking the daemons' shared state, with the one
//!   reason why a poisoned lock is recovered;
//! - [`admin::is_admin`]: who may approve;
//! - [`confine::apply`]: Landlock self-confinement where no service manager
//!   confines the daemon.

pub mod admin;
pub mod bus;
pub mod confine;
pub mod lock;
pub mod logging;
pub mod state_dir;
