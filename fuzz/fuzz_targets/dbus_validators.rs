//! The D-Bus argument validators on arbitrary arguments: they never panic,
//! accept exactly what the limits allow (checked against a reference written
//! here from the limits alone), never quote the argument back, and agree
//! with each other where one limit feeds another.
#![no_main]

use airlock_common::dbus::AirlockError;
use airlock_common::limits::{
    MAX_ARGV, MAX_ARG_LEN, MAX_CODE_LEN, MAX_EVENT_ARGV, MAX_EVENT_ARG_LEN, MAX_ID_LEN,
    MAX_PATH_LEN, MAX_POLICY_ID_LEN, MAX_SEARCH_PATH, MAX_SEARCH_PATH_SENT, MAX_TEXT_LEN,
};
use airlock_common::validate::*;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// A string, repeated so that short inputs reach the limits.
#[derive(Arbitrary, Debug)]
struct Text {
    base: String,
    times: u8,
}

impl Text {
    fn value(&self) -> String {
        let times = if self.base.len() > 64 { 1 } else { self.times as usize + 1 };
        self.base.repeat(times)
    }
}

/// A list of strings, itself repeated.
#[derive(Arbitrary, Debug)]
struct List {
    items: Vec<Text>,
    times: u8,
}

impl List {
    fn value(&self) -> Vec<String> {
        let items: Vec<String> = self.items.iter().map(Text::value).collect();
        let times = self.times as usize % 8 + 1;
        items.iter().cycle().take(items.len() * times).cloned().collect()
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    text: Text,
    list: List,
}

/// Every refusal message: fixed text, never the argument quoted back.
const MESSAGES: &[&str] = &[
    "malformed id: ids are 1-64 characters of a-z, A-Z, 0-9, - and _",
    "reason is longer than 1024 bytes",
    "reason contains control characters",
    "reason is too long",
    "role is malformed",
    "role id is too long",
    "a TOTP code is 6 digits",
    "argv is limited to 256 elements of at most 4096 bytes",
    "event argv is too large",
    "search path is too large",
];

/// `result` is `Ok` exactly when `expected`; a refusal is an
/// `InvalidArgument` with one of the fixed messages.
#[track_caller]
fn agrees(result: Result<(), AirlockError>, expected: bool, arg: &str) {
    match result {
        Ok(()) => assert!(expected, "accepted {arg:?}"),
        Err(AirlockError::InvalidArgument(message)) => {
            assert!(!expected, "refused {arg:?}: {message}");
            assert!(MESSAGES.contains(&message.as_str()), "unexpected message {message:?}");
        }
        Err(other) => panic!("not InvalidArgument: {other:?}"),
    }
}

fuzz_target!(|input: Input| {
    let text = input.text.value();
    let list = input.list.value();
    let joined = list.concat();

    let id_ok = !text.is_empty()
        && text.len() <= MAX_ID_LEN
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    agrees(check_id(&text), id_ok, &text);

    let short = text.len() <= MAX_TEXT_LEN;
    let clean = !text.chars().any(|c| c.is_control() && c != '\t');
    agrees(check_text("reason", &text), short && clean, &text);
    agrees(check_text_len("reason", &text), short, &text);

    let role_ok = text.len() <= MAX_POLICY_ID_LEN;
    agrees(
        check_short("role", &text),
        role_ok && !text.chars().any(char::is_control),
        &text,
    );
    agrees(check_role_len(&text), role_ok, &text);

    let code_ok = text.len() <= MAX_CODE_LEN;
    agrees(check_code(&text), code_ok && !text.is_empty(), &text);
    agrees(check_optional_code(&text), code_ok, &text);

    let argv_ok = list.len() <= MAX_ARGV && list.iter().all(|a| a.len() <= MAX_ARG_LEN);
    agrees(check_argv(&list), argv_ok, &joined);
    let event_ok =
        list.len() <= MAX_EVENT_ARGV && list.iter().all(|a| a.len() <= MAX_EVENT_ARG_LEN);
    agrees(check_event_argv(&list), event_ok, &joined);
    // An event argv the gateway records would pass a policy check too.
    assert!(!event_ok || argv_ok);

    let sent_ok = list.len() <= MAX_SEARCH_PATH_SENT && list.iter().all(|d| d.len() <= MAX_PATH_LEN);
    agrees(check_search_path(&list), sent_ok, &joined);
    let kept = usable_search_path(list.clone());
    // What the gateway keeps, the enforcer accepts: usable entries of the
    // input, in order, the first ones up to its limit.
    assert!(kept.len() <= MAX_SEARCH_PATH);
    let usable: Vec<&String> = list.iter().filter(|d| is_usable_directory(d)).collect();
    assert_eq!(kept.len(), usable.len().min(MAX_SEARCH_PATH));
    assert!(kept.iter().zip(&usable).all(|(a, b)| a == *b));
    for d in &kept {
        assert!(d.starts_with('/') && d.len() < MAX_PATH_LEN && !d.contains('\0'));
        agrees(check_search_path(std::slice::from_ref(d)), true, d);
    }
});
