//! The policy loader on arbitrary text as a seed-style JSON policy (one
//! object with `blocked_commands`), beside a roles file that attaches it.
#![no_main]

use airlock_fuzz::{load_and_check, named};
use libfuzzer_sys::fuzz_target;

const ROLES: &str = "[[role]]\nid = \"fuzz\"\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = [named("policy.json", text), named("roles.toml", ROLES)];
    let Some(set) = load_and_check(&files) else {
        return;
    };
    // What the loader accepts is JSON, and the policy is the object's.
    let value: serde_json::Value =
        serde_json::from_str(text).expect("the loader accepted text that is not JSON");
    let [policy] = set.policies() else {
        panic!("a JSON file is one policy, loaded {:?}", set.policies());
    };
    assert_eq!(value["id"].as_str(), Some(policy.id.as_str()));
    assert_eq!(value["name"].as_str(), Some(policy.name.as_str()));
    let blocked = value["blocked_commands"].as_array().map_or(0, Vec::len);
    let rules: usize = value["rules"].as_array().map_or(0, |rules| {
        rules
            .iter()
            .map(|r| r["commands"].as_array().map_or(0, Vec::len))
            .sum()
    });
    assert_eq!(policy.rules.len(), blocked + rules, "{policy:?}");
});
