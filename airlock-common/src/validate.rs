//! Checks of D-Bus arguments against the [`limits`](crate::limits), before a
//! service acts on them or echoes them into an error, a log line or the
//! audit log. Each is pure and refuses with
//! [`AirlockError::InvalidArgument`], naming the argument but never quoting
//! it back.

use crate::dbus::AirlockError;
use crate::ids;
use crate::limits::{
    MAX_ARGV, MAX_ARG_LEN, MAX_CODE_LEN, MAX_EVENT_ARGV, MAX_EVENT_ARG_LEN, MAX_EVENT_PEER_LEN,
    MAX_ID_LEN, MAX_PATH_LEN, MAX_POLICY_ID_LEN, MAX_SEARCH_PATH, MAX_SEARCH_PATH_SENT,
    MAX_TEXT_LEN, TOTP_DIGITS,
};

fn invalid(message: impl Into<String>) -> AirlockError {
    AirlockError::InvalidArgument(message.into())
}

/// A request, grant or session id: 1 to [`MAX_ID_LEN`] of `a-zA-Z0-9-_`.
pub fn check_id(id: &str) -> Result<(), AirlockError> {
    if ids::is_well_formed(id) {
        Ok(())
    } else {
        Err(invalid(format!(
            "malformed id: ids are 1-{MAX_ID_LEN} characters of a-z, A-Z, 0-9, - and _"
        )))
    }
}

/// Free text (a reason): at most [`MAX_TEXT_LEN`] bytes, no control
/// characters but tab.
pub fn check_text(what: &str, text: &str) -> Result<(), AirlockError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(invalid(format!(
            "{what} is longer than {MAX_TEXT_LEN} bytes"
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(invalid(format!("{what} contains control characters")));
    }
    Ok(())
}

/// Free text of at most [`MAX_TEXT_LEN`] bytes, any characters (it is stored
/// as a JSON string, never printed raw).
pub fn check_text_len(what: &str, text: &str) -> Result<(), AirlockError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(invalid(format!("{what} is too long")));
    }
    Ok(())
}

/// A short name such as a role id: at most [`MAX_POLICY_ID_LEN`] bytes, no
/// control characters. Empty is allowed (the default role).
pub fn check_short(what: &str, text: &str) -> Result<(), AirlockError> {
    if text.len() > MAX_POLICY_ID_LEN || text.chars().any(char::is_control) {
        return Err(invalid(format!("{what} is malformed")));
    }
    Ok(())
}

/// The role of a policy check: at most [`MAX_POLICY_ID_LEN`] bytes (an
/// unknown role is refused later, by name).
pub fn check_role_len(role: &str) -> Result<(), AirlockError> {
    if role.len() > MAX_POLICY_ID_LEN {
        return Err(invalid("role id is too long"));
    }
    Ok(())
}

/// A TOTP code to verify: present and at most [`MAX_CODE_LEN`] bytes. Its
/// format is the TOTP daemon's to judge (it counts a bad one as a failure).
pub fn check_code(code: &str) -> Result<(), AirlockError> {
    if code.is_empty() {
        return Err(invalid(format!("a TOTP code is {TOTP_DIGITS} digits")));
    }
    check_optional_code(code)
}

/// A TOTP code that may be absent (empty), such as the current code of a
/// re-enrolment: at most [`MAX_CODE_LEN`] bytes.
pub fn check_optional_code(code: &str) -> Result<(), AirlockError> {
    if code.len() > MAX_CODE_LEN {
        return Err(invalid(format!("a TOTP code is {TOTP_DIGITS} digits")));
    }
    Ok(())
}

/// The argv of a policy check: at most [`MAX_ARGV`] elements of at most
/// [`MAX_ARG_LEN`] bytes.
pub fn check_argv(argv: &[String]) -> Result<(), AirlockError> {
    if argv.len() > MAX_ARGV || argv.iter().any(|a| a.len() > MAX_ARG_LEN) {
        return Err(invalid(format!(
            "argv is limited to {MAX_ARGV} elements of at most {MAX_ARG_LEN} bytes"
        )));
    }
    Ok(())
}

/// The argv of an enforcement event: at most [`MAX_EVENT_ARGV`] elements of
/// at most [`MAX_EVENT_ARG_LEN`] bytes.
pub fn check_event_argv(argv: &[String]) -> Result<(), AirlockError> {
    if argv.len() > MAX_EVENT_ARGV || argv.iter().any(|a| a.len() > MAX_EVENT_ARG_LEN) {
        return Err(invalid("event argv is too large"));
    }
    Ok(())
}

/// The peer of an enforcement event: at most [`MAX_EVENT_PEER_LEN`] bytes
/// without control characters (it names a socket an agent chose).
pub fn check_event_peer(peer: &str) -> Result<(), AirlockError> {
    if peer.len() > MAX_EVENT_PEER_LEN || peer.chars().any(char::is_control) {
        return Err(invalid(
            "event peer is too large or holds control characters",
        ));
    }
    Ok(())
}

/// The `PATH` a caller sends with a new session: at most
/// [`MAX_SEARCH_PATH_SENT`] entries of at most [`MAX_PATH_LEN`] bytes.
/// [`usable_search_path`] then picks the directories actually searched.
pub fn check_search_path(entries: &[String]) -> Result<(), AirlockError> {
    if entries.len() > MAX_SEARCH_PATH_SENT || entries.iter().any(|d| d.len() > MAX_PATH_LEN) {
        return Err(invalid("search path is too large"));
    }
    Ok(())
}

/// The directories of `entries` the enforcer searches: absolute, shorter
/// than [`MAX_PATH_LEN`], without NUL, the first [`MAX_SEARCH_PATH`] of
/// them in order. Anything else could never name a directory.
pub fn usable_search_path(entries: impl IntoIterator<Item = String>) -> Vec<String> {
    entries
        .into_iter()
        .filter(|d| is_usable_directory(d))
        .take(MAX_SEARCH_PATH)
        .collect()
}

/// Whether `entry` can stand in a session's search path.
pub fn is_usable_directory(entry: &str) -> bool {
    entry.starts_with('/') && entry.len() < MAX_PATH_LEN && !entry.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<(), AirlockError>) -> String {
        match result {
            Err(AirlockError::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn strings(n: usize, each: &str) -> Vec<String> {
        vec![each.to_owned(); n]
    }

    #[test]
    fn ids() {
        assert!(check_id("req-0123abcd").is_ok());
        assert!(check_id(&"a".repeat(MAX_ID_LEN)).is_ok());
        for bad in ["", "req-1\nforged", "../x", &"a".repeat(MAX_ID_LEN + 1)] {
            assert_eq!(
                message(check_id(bad)),
                "malformed id: ids are 1-64 characters of a-z, A-Z, 0-9, - and _"
            );
        }
    }

    #[test]
    fn text() {
        assert!(check_text("reason", "").is_ok());
        assert!(check_text("reason", "deploy\tnow é").is_ok());
        assert!(check_text("reason", &"x".repeat(MAX_TEXT_LEN)).is_ok());
        assert_eq!(
            message(check_text("reason", &"x".repeat(MAX_TEXT_LEN + 1))),
            "reason is longer than 1024 bytes"
        );
        for bad in ["a\nb", "\u{1b}[31m", "\u{85}"] {
            assert_eq!(
                message(check_text("reason", bad)),
                "reason contains control characters"
            );
        }
        assert!(check_text_len("reason", "a\nb").is_ok());
        assert!(check_text_len("reason", &"x".repeat(MAX_TEXT_LEN)).is_ok());
        assert_eq!(
            message(check_text_len("reason", &"x".repeat(MAX_TEXT_LEN + 1))),
            "reason is too long"
        );
    }

    #[test]
    fn roles() {
        assert!(check_short("role", "").is_ok());
        assert!(check_short("role", &"r".repeat(MAX_POLICY_ID_LEN)).is_ok());
        for bad in ["a\0b".to_owned(), "r".repeat(MAX_POLICY_ID_LEN + 1)] {
            assert_eq!(message(check_short("role", &bad)), "role is malformed");
        }
        assert!(check_role_len(&"r".repeat(MAX_POLICY_ID_LEN)).is_ok());
        assert_eq!(
            message(check_role_len(&"r".repeat(MAX_POLICY_ID_LEN + 1))),
            "role id is too long"
        );
    }

    #[test]
    fn codes() {
        assert!(check_code("123456").is_ok());
        // The format is the TOTP daemon's to judge.
        assert!(check_code("12x").is_ok());
        assert!(check_code(&"1".repeat(MAX_CODE_LEN)).is_ok());
        for bad in ["".to_owned(), "1".repeat(MAX_CODE_LEN + 1)] {
            assert_eq!(message(check_code(&bad)), "a TOTP code is 6 digits");
        }
        assert!(check_optional_code("").is_ok());
        assert_eq!(
            message(check_optional_code(&"1".repeat(MAX_CODE_LEN + 1))),
            "a TOTP code is 6 digits"
        );
    }

    #[test]
    fn argv() {
        assert!(check_argv(&[]).is_ok());
        assert!(check_argv(&strings(MAX_ARGV, &"x".repeat(MAX_ARG_LEN))).is_ok());
        for bad in [
            strings(MAX_ARGV + 1, "x"),
            strings(1, &"x".repeat(MAX_ARG_LEN + 1)),
        ] {
            assert_eq!(
                message(check_argv(&bad)),
                "argv is limited to 256 elements of at most 4096 bytes"
            );
        }
        assert!(check_event_argv(&strings(MAX_EVENT_ARGV, &"x".repeat(MAX_EVENT_ARG_LEN))).is_ok());
        for bad in [
            strings(MAX_EVENT_ARGV + 1, "x"),
            strings(1, &"x".repeat(MAX_EVENT_ARG_LEN + 1)),
        ] {
            assert_eq!(message(check_event_argv(&bad)), "event argv is too large");
        }
    }

    #[test]
    fn search_paths() {
        let long = format!("/{}", "d".repeat(MAX_PATH_LEN - 1));
        assert!(check_search_path(&strings(MAX_SEARCH_PATH_SENT, "/bin")).is_ok());
        assert!(check_search_path(std::slice::from_ref(&long)).is_ok());
        for bad in [
            strings(MAX_SEARCH_PATH_SENT + 1, "/bin"),
            vec![format!("{long}d")],
        ] {
            assert_eq!(message(check_search_path(&bad)), "search path is too large");
        }

        // Relative, NUL-bearing and PATH_MAX-long entries are dropped, the
        // rest kept in order up to the limit.
        let sent = vec![
            "bin".to_owned(),
            "/usr/bin".to_owned(),
            "/a\0b".to_owned(),
            long,
            String::new(),
            "/bin".to_owned(),
        ];
        assert_eq!(usable_search_path(sent), ["/usr/bin", "/bin"]);
        let many: Vec<String> = (0..MAX_SEARCH_PATH_SENT)
            .map(|i| format!("/d{i}"))
            .collect();
        let kept = usable_search_path(many.clone());
        assert_eq!(kept, many[..MAX_SEARCH_PATH]);
    }
}
