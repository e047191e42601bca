//! Types that cross Airlock's process and kernel boundaries.
//!
//! Everything here is plain data and pure logic: the policy engine, the signed
//! grant format, the audit log format, the argument types of the D-Bus
//! interfaces, and (in [`kernel`]) the map layouts and policy evaluation the
//! eBPF program shares with userspace. The daemons, `airlockctl` and the
//! kernel program share it so that the two ends of every boundary agree by
//! construction.
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
pub mod dbus;
#[cfg(feature = "std")]
pub mod fsutil;
#[cfg(feature = "std")]
pub mod grant;
#[cfg(feature = "std")]
pub mod ids;
#[cfg(feature = "std")]
pub mod limits;
#[cfg(feature = "std")]
pub mod names;
#[cfg(feature = "std")]
pub mod policy;
#[cfg(feature = "std")]
pub mod timefmt;
#[cfg(feature = "std")]
pub mod validate;
