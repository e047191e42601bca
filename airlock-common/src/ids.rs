//! Random identifiers for requests and grants.

use ring::rand::{SecureRandom, SystemRandom};

pub use crate::limits::MAX_ID_LEN;

/// A new id: `prefix` + `-` + 16 random bytes in hex.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the kernel's random source failed");
    format!("{prefix}-{}", hex::encode(bytes))
}

/// Whether `id` has the shape of an id (so that it can be echoed in an error
/// message or a log line without smuggling anything into either).
pub fn is_well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let a = new_id("req");
        let b = new_id("req");
        assert_ne!(a, b);
        assert!(a.starts_with("req-") && a.len() == 36);
        assert!(is_well_formed(&a));
    }

    #[test]
    fn hostile_ids_are_rejected() {
        assert!(!is_well_formed(""));
        assert!(!is_well_formed("req-1\nforged"));
        assert!(!is_well_formed("../../etc/passwd"));
        assert!(!is_well_formed(&"a".repeat(65)));
    }
}
