//! Library side of `airlock-totp`: the TOTP verifier, the grant signer, the
//! credential store's key-encryption key (`keys`), the
//! file helpers both use, who may call what, and the D-Bus service that
//! wraps them.

#![forbid(unsafe_code)]

pub mod audit_head;
pub mod authenticator;
pub mod callers;
pub mod decision;
pub mod files;
pub mod keys;
pub mod service;
pub mod signer;
