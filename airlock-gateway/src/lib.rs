//! airlock-gateway: owns policy, approval requests, grants, sessions and the
//! audit log, and serves `org.airlock.Gateway1` on the system bus.
//!
//! Module graph (no cycles): `service` (D-Bus) → `core` (coordination) →
//! `journal` (audit log + state, one path) → `state` (`requests`, `grants`,
//! `sessions`: each applies events) and `store` (the state file); `core`
//! also uses `policy`, `specs` (what the enforcer is told) and
//! `enforcement` (kernel events) and `fold` (their repeats). `caller` and `ratelimit` serve `service`;
//! `countersign` has airlock-totp countersign the audit head on the tick.
//! `credentials` is the credential store and `org.airlock.Credentials1`,
//! beside `service`; it records through `core`.

#![forbid(unsafe_code)]

pub mod caller;
pub mod core;
pub mod countersign;
pub mod credentials;
pub mod e2e;
pub mod enforcement;
pub mod fold;
pub mod journal;
pub mod policy;
pub mod ratelimit;
pub mod service;
pub mod specs;
pub mod state;
pub mod store;
