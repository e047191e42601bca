//! What both ends of Airlock's process and kernel boundaries must agree on.
//!
//! The daemons, `airlockctl` and the kernel program share this crate so that
//! every boundary agrees by construction. Most of it is plain data and pure
//! logic: the policy engine's evaluation, the signed grant format, the D-Bus
//! argument and error types, and (in [`kernel`]) the map layouts and policy
//! evaluation the eBPF program shares with userspace.
//!
//! Some of it does I/O, because both sides of a format must read or write it
//! the same way:
//! - [`audit`] appends to the audit log (fsynced) and its head file, and
//!   verifies them; [`fsutil`] is the crash-safe file replacement it and
//!   the daemons' state files use;
//! - [`config`] and [`policy`] read the configuration file and the policy
//!   directory;
//! - `kernel::identity` (with `std`) reads the files rule heads name, so
//!   that the enforcer and `airlockctl policy check` see the same aliases;
//! - [`dbus`] holds the client proxies of the `org.airlock.*` interfaces
//!   and [`dbus::caller_uid`], which asks the bus daemon who called.
//!
//! Daemon start-up (logging, the bus name, state directories, readiness) is
//! not here but in `airlock-daemon`.
//!
//! Without the default `std` feature only [`kernel`] is built, `no_std`, for
//! the eBPF target.

#![cfg_attr(not(feature = "std"), no_std)]

pub mod kernel;

#[cfg(feature = "std")]
pub mod audit;
#[cfg(feature = "std")]
pub mod config;
#[cfg(feature = "std")]
pub mod credential;
#[cfg(feature = "std")]
pub mod dbus;
#[cfg(feature = "std")]
pub mod enforcement;
#[cfg(feature = "std")]
pub mod event;
#[cfg(feature = "std")]
pub mod fsutil;
#[cfg(feature = "std")]
pub mod grant;
#[cfg(feature = "std")]
pub mod ids;
#[cfg(feature = "std")]
pub mod integrations;
#[cfg(feature = "std")]
pub mod limits;
#[cfg(feature = "std")]
pub mod mail;
#[cfg(feature = "std")]
pub mod names;
#[cfg(feature = "std")]
pub mod policy;
#[cfg(feature = "std")]
pub mod services;
#[cfg(feature = "std")]
pub mod session;
#[cfg(feature = "std")]
pub mod timefmt;
#[cfg(feature = "std")]
pub mod validate;
