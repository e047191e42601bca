//! Types that cross Airlock's process boundaries.
//!
//! Everything here is plain data and pure logic: the policy engine, the signed
//! grant format, the audit log format, and the argument types of the D-Bus
//! interfaces. The daemons and `airlockctl` share it so that the two ends of
//! every boundary agree by construction.

pub mod audit;
pub mod config;
pub mod dbus;
pub mod fsutil;
pub mod grant;
pub mod ids;
pub mod names;
pub mod policy;
pub mod timefmt;
