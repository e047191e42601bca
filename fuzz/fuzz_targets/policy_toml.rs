//! The policy loader on arbitrary TOML text: one file of `[[policy]]` and
//! `[[role]]` tables.
#![no_main]

use airlock_fuzz::{load_and_check, named};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(set) = load_and_check(&[named("fuzz.toml", text)]) {
        // What the loader accepts is TOML.
        assert!(
            toml::from_str::<toml::Table>(text).is_ok(),
            "the loader accepted text that is not TOML"
        );
        let _ = set;
    }
});
